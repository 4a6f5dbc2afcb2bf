"""``spikeonnx plot``: pictures of a model's spikes, firing rates and energy."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, List

from ..fileio import check_output_path
from . import CLIError, is_library_error, positive_float, positive_int, subcommand

_DEFAULT_OUTPUT = {"spikes": "spikes.png", "rates": "firing_rates.png", "energy": "energy.png"}


def _user_errors(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)`` with errors about the model, data or file as one-line CLIErrors."""
    try:
        return call(*args, **kwargs)
    except Exception as err:
        if not (isinstance(err, (ValueError, TypeError, OSError, ImportError, OverflowError))
                or is_library_error(err)):
            raise
        raise CLIError(" ".join(str(err).split())) from None


def _print_warnings(caught: List[warnings.WarningMessage]) -> None:
    for w in caught:
        print(f"spikeonnx plot: warning: {' '.join(str(w.message).split())}", file=sys.stderr)


@subcommand("plot", help="Draw a model's spike raster, firing-rate distribution or energy per layer and device.")
def configure(parser: argparse.ArgumentParser):
    parser.add_argument("kind", choices=("spikes", "rates", "energy"),
                        help="spikes: raster of one sample (time x neuron, per spiking layer); rates: distribution "
                             "of per-neuron firing rates per spiking layer; energy: energy per layer and device")
    parser.add_argument("model", help="the ONNX model file")
    parser.add_argument("data", nargs="?",
                        help="input data (.npy, or .npz with one array per input), with batch and time axes; "
                             "optional for 'energy' (then non-spiking devices only)")
    parser.add_argument("-o", "--output", help="image file to write (default: spikes.png, firing_rates.png or "
                                               "energy.png; the suffix picks the format)")
    parser.add_argument("--sample", type=int, default=0, help="spikes: which sample of the data (default 0)")
    parser.add_argument("--max-neurons", type=positive_int, default=300,
                        help="spikes: most neurons drawn per layer, sampled evenly (default 300)")
    parser.add_argument("--device", action="append", dest="devices", metavar="D",
                        help="energy: device to show (repeatable; default: every device the data allows)")
    parser.add_argument("--timesteps", type=positive_int, default=1,
                        help="energy: timesteps per inference (default 1)")
    parser.add_argument("--dt", type=positive_float, default=None,
                        help="energy: device timestep in seconds (default 0.001)")
    parser.add_argument("--batch-axis", type=int, default=0, help="batch axis of the inputs (default 0)")
    parser.add_argument("--time-axis", type=int, default=None, help="time axis of the inputs (default: none)")

    def run(args: argparse.Namespace) -> int:
        from .. import plots

        if not Path(args.model).is_file():
            raise CLIError(f"model file not found: {args.model}")
        if args.data is not None and not Path(args.data).is_file():
            raise CLIError(f"data file not found: {args.data}")
        if args.data is None and args.kind != "energy":
            raise CLIError(f"'plot {args.kind}' needs input data (a .npy or .npz file after the model)")
        target = plots.figure_path(args.output or _DEFAULT_OUTPUT[args.kind])
        if target.is_dir():
            raise CLIError(f"output {target} is a directory; give a file name")
        if not target.parent.exists():
            raise CLIError(f"output directory {target.parent} does not exist")
        check_output_path(target, args.model, *([args.data] if args.data else []))
        axes = {"batch_axis": args.batch_axis, "time_axis": args.time_axis}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.kind == "energy":
                written = _energy(args, target, axes)
            else:
                recording = _user_errors(plots.record_spikes, args.model, args.data, **axes)
                if args.kind == "spikes":
                    written = _user_errors(plots.plot_spikes, recording, target, sample=args.sample,
                                           max_neurons=args.max_neurons)
                else:
                    written = _user_errors(plots.plot_firing_rates, recording, target)
        _print_warnings(caught)
        print(f"wrote {written}")
        return 0

    return run


def _energy(args: argparse.Namespace, target: Path, axes: dict) -> Path:
    from .. import plots
    from ..analysis import GraphEnergy
    from ..devices import DEVICES, get_device

    if args.devices:
        devices = [_user_errors(get_device, d).name for d in args.devices]
        spiking = [d for d in devices if DEVICES[d].spiking]
        if spiking and args.data is None:
            raise CLIError(f"device {spiking[0]!r} is spiking: its estimate needs data")
    else:
        devices = [d.name for d in DEVICES.values() if args.data is not None or not d.spiking]
    energy = _user_errors(GraphEnergy, args.model, args.data, **axes)
    report = _user_errors(energy.to_dict, devices, args.timesteps, args.dt)
    return _user_errors(plots.plot_energy, report, target, devices)
