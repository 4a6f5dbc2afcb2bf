"""``spikeonnx energy``: per-layer statistics and energy estimates of an ONNX model."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

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


def axis_entry(text: str) -> Tuple[Optional[str], int]:
    """argparse type of ``--batch-axis``: ``AXIS`` (every input) or ``NAME=AXIS`` (one input)."""
    name, sep, axis = text.rpartition("=")
    try:
        value = int(axis)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected AXIS or NAME=AXIS with an integer AXIS, got {text!r}") from None
    if sep and not name:
        raise argparse.ArgumentTypeError(f"expected NAME=AXIS with an input NAME, got {text!r}")
    return (name if sep else None), value


def batch_axes(model: str, entries: Optional[List[Tuple[Optional[str], int]]]) -> Union[int, Dict[str, Optional[int]]]:
    """The analyzer's ``batch_axis`` from the ``--batch-axis`` entries.

    A plain ``AXIS`` applies to every input (default 0); ``NAME=AXIS`` entries override it
    for their input. Inputs of rank 0 have no batch axis unless one is named for them.
    """
    entries = entries or []
    plain = [axis for name, axis in entries if name is None]
    named: Dict[str, int] = {}
    for name, axis in entries:
        if name is None:
            continue
        if name in named:
            raise CLIError(f"--batch-axis names input {name!r} twice")
        named[name] = axis
    if len(plain) > 1:
        raise CLIError(f"--batch-axis gives the axis of every input more than once ({plain})")
    default = plain[0] if plain else 0
    if not named:
        return default
    from ..contract import load_model

    proto, _ = load_model(model, load_external_data=False)
    weights = {t.name for t in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in weights]
    unknown = sorted(set(named) - {v.name for v in inputs})
    if unknown:
        raise CLIError(f"--batch-axis: {', '.join(map(repr, unknown))} is not a graph input of {model} "
                       f"(inputs: {', '.join(v.name for v in inputs)})")
    axes: Dict[str, Optional[int]] = {}
    for value in inputs:
        shape = value.type.tensor_type.shape if value.type.tensor_type.HasField("shape") else None
        scalar = shape is not None and len(shape.dim) == 0
        axes[value.name] = named.get(value.name, None if scalar else default)
    return axes


def _write_csv(report: dict, devices: List[str], stream: Any) -> None:
    """One CSV row per layer: statistics, then synop/neuron/total joules per inference per device."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["layer", "type", "output_shape", "params", "connections", "neurons", "rate_hz",
                     *(f"{part}_j_{d}" for d in devices for part in ("synop", "neuron", "energy"))])
    for layer in report["layers"]:
        shape = layer["output_shape"]
        writer.writerow([
            layer["name"], layer["type"], "" if shape is None else "x".join("?" if d is None else str(d) for d in shape),
            layer["params"], layer["connections"], layer["neurons"], "" if layer["rate"] is None else repr(layer["rate"]),
            *(repr(layer["energy"][d][part]) for d in devices for part in ("synop", "neuron", "total")),
        ])


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
    parser.add_argument("--batch-axis", type=axis_entry, action="append", metavar="[NAME=]AXIS",
                        help="batch axis of the inputs (default 0; inputs of rank 0 have none); NAME=AXIS "
                             "sets it for one input (repeatable)")
    parser.add_argument("--time-axis", type=int, default=None, help="time axis of the inputs (default: none)")
    parser.add_argument("--events", choices=("estimated", "measured"), default="estimated",
                        help="synaptic events of event-driven layers: estimated from connections x mean input "
                             "rate (default), or measured by running the model on --data (an .npy/.npz file)")
    machine = parser.add_mutually_exclusive_group()
    machine.add_argument("--json", action="store_true", help="print the results as JSON")
    machine.add_argument("--csv", action="store_true",
                         help="print one CSV row per layer (statistics, and synop/neuron/total joules per "
                              "inference on each device)")
    parser.add_argument("--plot", metavar="FILE.png", help="write a per-layer, per-device energy bar chart")
    parser.add_argument("--width", "--line-length", dest="line_length", type=positive_int, default=None,
                        help="longest table line; devices that do not fit go to further tables (default: the "
                             "terminal's width, or $COLUMNS)")

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
                batch_axis = batch_axes(args.model, args.batch_axis)
                energy = GraphEnergy(args.model, data, batch_axis=batch_axis, time_axis=args.time_axis,
                                     events=args.events)
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
        elif args.csv:
            _write_csv(report, devices, sys.stdout)
        else:
            print(energy.summary_string(
                columns=("name", "output_shape", "params", "connections", "neurons",
                         *(["rate"] if args.data is not None else []),
                         *(f"energy {d}" for d in devices)),
                timesteps_per_inference=args.timesteps, dt=args.dt,
                width=shutil.get_terminal_size().columns if args.line_length is None else args.line_length,
            ))
        if args.plot:
            written = _plot(report, Path(args.plot), devices)
            if not (args.json or args.csv):
                print(f"plot written to {written}")
        return 0

    return run
