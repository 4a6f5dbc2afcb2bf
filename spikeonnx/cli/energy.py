"""``spikeonnx energy``: per-layer statistics and energy estimates of an ONNX model."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, List

from ..fileio import check_output_path
from ..shards import Shards, is_shard_spec
from . import CLIError, is_library_error, positive_float, positive_int, subcommand


def _plot(report: dict, path: Path, devices: List[str]) -> Path:
    """Write the per-layer, per-device energy chart; user-facing errors as CLIError."""
    from ..plots import plot_energy

    try:
        return plot_energy(report, path, devices)
    except (ImportError, OSError) as err:
        raise CLIError(str(err)) from None


@subcommand("energy", help="Estimate per-layer energy of an ONNX model on neuromorphic and standard devices.")
def configure(parser: argparse.ArgumentParser):
    parser.add_argument("model", help="the ONNX model file")
    parser.add_argument("--data", help="example input (.npy, or .npz with one array per input) to measure firing "
                                       "rates; or a folder or quoted glob ('shards/*.npy') of .npy shards, streamed")
    parser.add_argument("--batch-size", type=positive_int, default=256,
                        help="shards: rows per model call (default 256)")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="shards: measure the rates on a Ray cluster: 'auto', 'ray://host:10001', or no "
                             "ADDRESS for a local cluster (needs spikeonnx[ray] on every node)")
    parser.add_argument("--concurrency", type=positive_int, default=1,
                        help="--ray: number of actors (default 1)")
    parser.add_argument("--device", action="append", dest="devices", metavar="D",
                        help="device to estimate for (repeatable; default: every device the data allows)")
    parser.add_argument("--timesteps", type=positive_int, default=1, help="timesteps per inference (default 1)")
    parser.add_argument("--dt", type=positive_float, default=None, help="device timestep in seconds (default 0.001)")
    parser.add_argument("--batch-axis", type=int, default=0, help="batch axis of the inputs (default 0)")
    parser.add_argument("--time-axis", type=int, default=None, help="time axis of the inputs (default: none)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="write a per-layer, per-device energy bar chart")
    parser.add_argument("--line-length", type=positive_int, default=98, help="table width (default 98)")

    def run(args: argparse.Namespace) -> int:
        from ..analysis import GraphEnergy
        from ..devices import DEVICES, get_device

        if not Path(args.model).exists():
            raise CLIError(f"model file not found: {args.model}")
        if args.plot:
            from ..plots import figure_path

            # before the analysis, which may take a while; never over the model or data
            check_output_path(figure_path(args.plot), args.model, *([args.data] if args.data else []))
        data: Any = args.data
        if args.ray is not None and (args.data is None or not is_shard_spec(args.data)):
            raise CLIError("--ray measures rates over shards: give --data a folder or glob of .npy files")
        if args.ray is not None:
            from .run import import_distributed

            data = import_distributed().DatasetRates(args.data, address=args.ray, concurrency=args.concurrency,
                                                     batch_size=args.batch_size)
        elif args.data is not None and is_shard_spec(args.data):
            data = Shards(args.data, batch_size=args.batch_size)
        elif args.data is not None and not Path(args.data).is_file():
            raise CLIError(f"data file not found: {args.data}")
        if args.devices:
            devices = [get_device(d).name for d in args.devices]
            spiking = [d for d in devices if DEVICES[d].spiking]
            if spiking and args.data is None:
                raise CLIError(f"device {spiking[0]!r} is spiking: its estimate needs --data")
        else:
            devices = [d.name for d in DEVICES.values() if args.data is not None or not d.spiking]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                energy = GraphEnergy(args.model, data, batch_axis=args.batch_axis, time_axis=args.time_axis)
                report: Any = energy.to_dict(devices, args.timesteps, args.dt)
            except Exception as err:
                if not (isinstance(err, (ValueError, TypeError, OSError, OverflowError)) or is_library_error(err)):
                    raise
                # one line on stderr, whatever the message of the underlying library
                raise CLIError(" ".join(str(err).split())) from None
        for w in caught:
            print(f"spikeonnx energy: warning: {' '.join(str(w.message).split())}", file=sys.stderr)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(energy.summary_string(
                columns=("name", "output_shape", "params", "connections", "neurons",
                         *(["rate"] if args.data is not None else []),
                         *(f"energy {d}" for d in devices)),
                timesteps_per_inference=args.timesteps, dt=args.dt, line_length=args.line_length,
            ))
        if args.plot:
            written = _plot(report, Path(args.plot), devices)
            if not args.json:
                print(f"plot written to {written}")
        return 0

    return run
