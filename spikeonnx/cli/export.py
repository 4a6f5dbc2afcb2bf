"""``spikeonnx export``: convert a saved Keras model (``.keras``) to ONNX."""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

from ..contract import DOMAIN
from ..fileio import check_output_path
from . import CLIError, subcommand

# First bytes of every HDF5 file (the format of legacy .h5 Keras models).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_keras_file(path: Path) -> None:
    """Refuse a file that is not what its suffix says (Keras then reports "File not found")."""
    if path.suffix == ".keras":
        ok, kind = zipfile.is_zipfile(path), "a .keras model is a zip archive"
    else:
        with open(path, "rb") as handle:
            ok, kind = handle.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE, "an .h5 model is an HDF5 file"
    if not ok:
        raise CLIError(f"{path} is not a Keras model file ({kind}; this file is not one)")


def _load_keras_model(path: Path):
    """Load a ``.keras``/``.h5`` file with the KerasSpiking layers registered."""
    _check_keras_file(path)
    import keras

    import keras_layers  # noqa: F401  (registers the spiking layers for deserialization)

    try:
        return keras.saving.load_model(str(path), compile=False)
    except (ValueError, TypeError, OSError, KeyError) as err:
        raise CLIError(f"cannot load Keras model {path}: {err}") from None


@subcommand("export", help="Export a Keras model (.keras) with spiking layers to ONNX.")
def configure(parser: argparse.ArgumentParser):
    parser.add_argument("model", help="the saved Keras model (.keras)")
    parser.add_argument("-o", "--output", help="the .onnx file to write (default: MODEL with .onnx suffix)")
    parser.add_argument("--state-io", action="store_true",
                        help="give every spiking layer a state input/output for streaming")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset of the default domain (13-21; default 17)")
    parser.add_argument("--no-functions", dest="functions", action="store_false",
                        help="do not attach the spiking ops' definitions in standard ONNX ops "
                             "(the model then runs only where the spikeonnx op library is loaded)")
    parser.add_argument("--no-events", dest="events", action="store_false",
                        help="keep MatMul/Gemm/Conv fed by spikes as standard ops instead of the "
                             "event-driven ops that compute only where spikes arrived")
    parser.add_argument("--seed", type=int, default=0,
                        help="initial-voltage seed for SpikingActivation layers created without one (default 0)")

    def run(args: argparse.Namespace) -> int:
        source = Path(args.model)
        if not source.is_file():
            raise CLIError(f"model file not found: {source}")
        if source.suffix not in (".keras", ".h5"):
            raise CLIError(f"expected a .keras (or .h5) model file, got {source.name}")
        target = Path(args.output) if args.output else source.with_suffix(".onnx")
        if target.is_dir():
            raise CLIError(f"output {target} is a directory; give a file name")
        if not target.parent.exists():
            raise CLIError(f"output directory {target.parent} does not exist")
        # the ONNX bytes must never replace the model they come from (also through links)
        check_output_path(target, source)
        if not 13 <= args.opset <= 21:
            raise CLIError(f"--opset must be from 13 to 21, got {args.opset}")

        from ..exporter import export
        from ..schemas import EVENT_OP_TYPES

        model = _load_keras_model(source)
        onnx_model = export(model, target, state_io=args.state_io, opset=args.opset, default_seed=args.seed,
                            functions=args.functions, events=args.events)
        spiking = [n for n in onnx_model.graph.node if n.domain == DOMAIN and n.op_type not in EVENT_OP_TYPES]
        print(f"wrote {target}: {len(onnx_model.graph.node)} nodes, {len(spiking)} spiking "
              f"({', '.join(n.op_type + ' ' + n.name for n in spiking) or 'none'}); "
              f"inputs {[i.name for i in onnx_model.graph.input]}, "
              f"outputs {[o.name for o in onnx_model.graph.output]}")
        return 0

    return run
