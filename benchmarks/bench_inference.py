"""Inference speed: the digits classifier in Keras vs the exported model in onnxruntime.

Trains the spiking digits classifier briefly, exports it, then times both on the
same 1000 samples x 100 timesteps, for each batch size (the same for both), and
prints the speed-up. Both runs are on CPU; the ONNX model runs through
``spikeonnx.InferenceSession`` with the spikeonnx op library.

Run from the source tree (after building the op library)::

    PYTHONPATH=. SPIKEONNX_OPS_LIBRARY=build/dev/ops/libspikeonnx_ops.so \\
        .venv/bin/python benchmarks/bench_inference.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _best_of(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batches", default="32,1000",
                        help="comma-separated batch sizes, the same for both runs (32 is Keras predict's default)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import keras

    from spikeonnx import export
    from spikeonnx.examples import digits
    from spikeonnx.runtime import InferenceSession

    keras.utils.set_random_seed(0)
    data = digits.load_data(n_steps=10)
    model = digits.build_model()
    digits.train(model, data, epochs=args.epochs)

    rng = np.random.default_rng(0)
    from sklearn.datasets import load_digits

    images = load_digits().data
    chosen = images[rng.integers(0, len(images), args.samples)]
    x = digits.to_sequences(chosen, args.steps)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digits.onnx"
        export(model, path)
        session = InferenceSession(str(path))

    print(f"digits classifier, {args.samples} samples x {args.steps} timesteps "
          f"(best of {args.repeats}, {os.cpu_count()} CPUs)")
    for batch in (int(b) for b in args.batches.split(",")):

        def run_keras(batch=batch):
            return model.predict(x, batch_size=batch, verbose=0)

        def run_onnx(batch=batch):
            outs = [session.run(None, {"image": x[i : i + batch]})[0] for i in range(0, len(x), batch)]
            return np.concatenate(outs)

        same = np.array_equal(run_keras().argmax(-1), run_onnx().argmax(-1))
        t_keras = _best_of(run_keras, args.repeats)
        t_onnx = _best_of(run_onnx, args.repeats)
        print(f"  batch {batch:5d}: Keras predict {t_keras * 1e3:8.1f} ms | onnxruntime {t_onnx * 1e3:7.1f} ms"
              f" | speed-up {t_keras / t_onnx:5.1f}x | same predicted classes: {same}")


if __name__ == "__main__":
    main()
