"""``spikeonnx export``: convert a saved Keras model (``.keras``) to ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..contract import DOMAIN
from . import CLIError, subcommand


def _load_keras_model(path: Path):
    """Load a ``.keras``/``.h5`` file with the KerasSpiking layers registered."""
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
        if not 13 <= args.opset <= 21:
            raise CLIError(f"--opset must be from 13 to 21, got {args.opset}")

        from ..exporter import export

        model = _load_keras_model(source)
        onnx_model = export(model, target, state_io=args.state_io, opset=args.opset, default_seed=args.seed,
                            functions=args.functions)
        spiking = [n for n in onnx_model.graph.node if n.domain == DOMAIN]
        print(f"wrote {target}: {len(onnx_model.graph.node)} nodes, {len(spiking)} spiking "
              f"({', '.join(n.op_type + ' ' + n.name for n in spiking) or 'none'}); "
              f"inputs {[i.name for i in onnx_model.graph.input]}, "
              f"outputs {[o.name for o in onnx_model.graph.output]}")
        return 0

    return run
