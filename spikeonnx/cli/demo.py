"""``spikeonnx demo``: the whole pipeline on scikit-learn's digits."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import CLIError, positive_int, subcommand


@subcommand("demo", help="Train a spiking CNN on the bundled digits, export it, run it in onnxruntime "
                         "and report its energy.")
def configure(parser: argparse.ArgumentParser):
    parser.add_argument("--out", default="spikeonnx-demo", help="output folder (default: spikeonnx-demo)")
    parser.add_argument("--epochs", type=positive_int, default=15, help="training epochs (default 15)")
    parser.add_argument("--timesteps", type=positive_int, default=20,
                        help="timesteps per test image at inference (default 20)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no live progress bars (they are shown only on a terminal; logs get one line per "
                             "training epoch either way)")

    def run(args: argparse.Namespace) -> int:
        try:
            import keras_layers  # noqa: F401  (the demo trains in Keras)

            from ..demo import run_demo
        except ImportError as err:
            raise CLIError(f"the demo needs the keras extra (pip install 'spikeonnx[keras]'): {err}") from None
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise CLIError(f"--out {out} exists and is not a folder")
        run_demo(out, epochs=args.epochs, timesteps=args.timesteps, progress=not args.no_progress)
        return 0

    return run
