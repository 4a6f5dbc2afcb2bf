"""Batch inference over shards: local streaming vs Ray Data with 1 and 2 actors.

Exports the spiking digits classifier (briefly trained: accuracy does not matter
for throughput), writes ``--shards`` shards of ``--rows`` digit sequences, and
times ``spikeonnx.shards.run_shards`` (one process, streaming) and
``spikeonnx.distributed.run_shards`` on a local Ray cluster with 1 and 2 actors,
all in one run. One untimed Ray job first starts the cluster's worker processes.

Two figures per configuration: rows/s of the whole job, and rows/s once running,
from the times at which the driver writes the shards' outputs (first to last
write), which leaves out the fixed cost of a job (a Ray job starts its actors:
processes, imports, one session each). Ray's overhead per shard compares the
running time per shard with local streaming's; every figure is the best of
``--repeats`` runs, as other work on the machine only ever slows a run down.

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
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per figure")
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

        writes = []  # when the driver wrote each shard's outputs (both paths write with ShardOutputs.write)
        write = shards.ShardOutputs.write

        def timed_write(self):
            path = write(self)
            writes.append(time.perf_counter())
            return path

        shards.ShardOutputs.write = timed_write

        def timed(run, repeats=1):
            """Best (total seconds, seconds per shard once running) over ``repeats`` runs."""
            best_total = best_shard = float("inf")
            for _ in range(repeats):
                out = tmp / "out"
                shutil.rmtree(out, ignore_errors=True)
                writes.clear()
                start = time.perf_counter()
                run(files, out)
                best_total = min(best_total, time.perf_counter() - start)
                best_shard = min(best_shard, (writes[-1] - writes[0]) / (len(writes) - 1))
            return best_total, best_shard

        def local(folder, out):
            shards.run_shards(InferenceSession(path), folder, out, batch_size=args.batch_size, progress=False)

        def on_ray(actors):
            def run(folder, out):
                distributed.run_shards(path, folder, out, concurrency=actors, batch_size=args.batch_size,
                                       progress=False)
            return run

        results = {}
        timed(local)  # warm-up: page cache, first session
        results["local streaming"] = timed(local, args.repeats)
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        try:
            for actors in (1, 2):
                run = on_ray(actors)
                timed(run)  # warm-up: worker processes, imports
                results[f"Ray, {actors} actor{'s' if actors > 1 else ''}"] = timed(run, args.repeats)
        finally:
            ray.shutdown()

        local_shard = results["local streaming"][1]
        for name, (t_total, t_shard) in results.items():
            line = (f"  {name:16s}: {total / t_total:7.0f} rows/s job ({t_total:5.2f} s) | running "
                    f"{args.rows / t_shard:7.0f} rows/s, {t_shard * 1e3:6.1f} ms per shard")
            if name != "local streaming":
                line += (f" | fixed cost {t_total - t_shard * args.shards:4.1f} s"
                         f" | overhead per shard vs local {(t_shard - local_shard) * 1e3:+6.1f} ms"
                         f" ({(t_shard / local_shard - 1) * 100:+.0f} %)")
            print(line)
        print(f"(best of {args.repeats} runs; the fixed cost is the job's time beyond its shards at the running pace)")


if __name__ == "__main__":
    main()
