"""Batch inference over shards: local streaming vs Ray Data with 1 and 2 actors.

Exports the spiking digits classifier (briefly trained: accuracy does not matter
for throughput), writes ``--shards`` shards of ``--rows`` digit sequences, and
times ``spikeonnx.shards.run_shards`` (one process, streaming) and
``spikeonnx.distributed.run_shards`` on a local Ray cluster with 1 and 2 actors,
all in one run. Ray's overhead per shard is the difference of the per-shard slopes:
each configuration also runs on the first half of the shards, so fixed costs
(actor start-up, the first model load) cancel out; one untimed Ray job first
starts the cluster's worker processes.

Needs the ``ray`` and ``keras`` extras::

    .venv/bin/python benchmarks/bench_distributed.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--rows", type=int, default=1000, help="rows (digit sequences) per shard")
    parser.add_argument("--steps", type=int, default=100, help="timesteps per sequence")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per figure")
    args = parser.parse_args()

    import keras
    import ray

    from spikeonnx import distributed, export, shards
    from spikeonnx.examples import digits
    from spikeonnx.runtime import InferenceSession

    keras.utils.set_random_seed(0)
    data = digits.load_data(n_steps=10)
    model = digits.build_model()
    digits.train(model, data, epochs=args.epochs)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "digits.onnx"
        export(model, path)
        from sklearn.datasets import load_digits

        images = load_digits().data
        rng = np.random.default_rng(0)
        folder = tmp / "shards"
        folder.mkdir()
        files = []
        for i in range(args.shards):
            picks = images[rng.integers(0, len(images), args.rows)]
            files.append(folder / f"shard{i:03d}.npy")
            np.save(files[-1], digits.to_sequences(picks, args.steps))
        total = args.rows * args.shards
        print(f"digits classifier, {args.shards} shards x {args.rows} rows x {args.steps} steps x 64 "
              f"({total} rows), batch {args.batch_size}, on {os.cpu_count()} CPUs")

        def timed(run, n, repeats=1):
            best = float("inf")
            for _ in range(repeats):
                out = tmp / "out"
                shutil.rmtree(out, ignore_errors=True)
                start = time.perf_counter()
                run(files[:n], out)
                best = min(best, time.perf_counter() - start)
            return best

        def local(folder, out):
            shards.run_shards(InferenceSession(path), folder, out, batch_size=args.batch_size, progress=False)

        def on_ray(actors):
            def run(folder, out):
                distributed.run_shards(path, folder, out, concurrency=actors, batch_size=args.batch_size,
                                       progress=False)
            return run

        results = {}
        timed(local, 2)  # warm-up: page cache, first session
        results["local streaming"] = (timed(local, args.shards // 2, args.repeats),
                                      timed(local, args.shards, args.repeats))
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        try:
            for actors in (1, 2):
                run = on_ray(actors)
                timed(run, 2)  # warm-up: worker processes, imports
                results[f"Ray, {actors} actor{'s' if actors > 1 else ''}"] = (
                    timed(run, args.shards // 2, args.repeats), timed(run, args.shards, args.repeats))
        finally:
            ray.shutdown()

        half = args.shards - args.shards // 2
        local_slope = (results["local streaming"][1] - results["local streaming"][0]) / half
        for name, (t_half, t_full) in results.items():
            slope = (t_full - t_half) / half
            line = (f"  {name:16s}: {total / t_full:8.0f} rows/s over {args.shards} shards ({t_full:6.2f} s; "
                    f"{args.shards // 2} shards {t_half:6.2f} s) | per shard {slope * 1e3:7.1f} ms")
            if name != "local streaming":
                line += (f" | fixed cost {t_full - slope * args.shards:5.1f} s"
                         f" | overhead per shard vs local {(slope - local_slope) * 1e3:+7.1f} ms"
                         f" ({(slope / local_slope - 1) * 100:+.0f} %)")
            print(line)
        print(f"(best of {args.repeats} wall times; a Ray job starts its own actors, which is the fixed cost)")


if __name__ == "__main__":
    main()
