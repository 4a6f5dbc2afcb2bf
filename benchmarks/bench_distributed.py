"""Batch inference over shards: local streaming vs Ray Data with 1 and 2 actors.

Exports the spiking digits classifier (briefly trained: accuracy does not matter
for throughput), writes ``--shards`` shards of ``--rows`` digit sequences and hard-links
them into a job of ``--shards + --more`` shards (the same data, so the larger job reads no
more from disk than the smaller), and times, all in one run, jobs over the first
``--shards`` shards and over all of them:
``spikeonnx.shards.run_shards`` (one process, streaming),
``spikeonnx.distributed.run_shards`` on a local Ray cluster with 1 and 2 actors
(its defaults: tasks of about half a second of model time, at most each actor's
share of the rows), and a user's own pipeline (``ray.data.read_numpy`` over the
shards, mapped by ``spikeonnx.distributed.Predictor`` on 2 actors, consumed by the
driver; timed on ``--shards`` and ``--shards + --pipeline-more`` shards, as it is slow).
One untimed job per configuration first starts the cluster's workers.

Per configuration: rows/s of the job over ``--shards`` shards, and the cost of one
more shard, ``(T(n + more) - T(n)) / more``: the difference of the two jobs leaves out what a
job pays once (a Ray job starts its actors - processes, imports, one session each -
and its first and last tasks wait for them), so Ray's overhead per shard compares
that slope with local streaming's. A job's fixed cost is ``T(n)`` minus ``n`` times
the slope. Every time is the best of ``--repeats`` runs, as other work on the
machine only ever slows a run down; each repeat runs every job once, in turn, so
that a slow spell of the machine hits every configuration alike.

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
from typing import Callable, List

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=20, help="shards of the smaller job")
    parser.add_argument("--more", type=int, default=180, help="shards the larger job has beyond the smaller")
    parser.add_argument("--pipeline-more", type=int, default=20,
                        help="shards the larger read_numpy+Predictor job has beyond the smaller")
    parser.add_argument("--rows", type=int, default=1000, help="rows (digit sequences) per shard")
    parser.add_argument("--steps", type=int, default=100, help="timesteps per sequence")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--task-rows", type=int, default=None, help="rows per Ray task (run_shards' default if unset)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs per figure")
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
        distinct = []
        for i in range(args.shards):
            picks = images[rng.integers(0, len(images), args.rows)]
            distinct.append(folder / f"shard{i:04d}.npy")
            np.save(distinct[-1], digits.to_sequences(picks, args.steps))
        files = list(distinct)
        for i in range(args.shards, args.shards + args.more):  # more shards, the same data
            files.append(folder / f"shard{i:04d}.npy")
            os.link(distinct[i % args.shards], files[-1])
        n, big = args.shards, args.shards + args.more
        print(f"digits classifier, jobs of {n} and {big} shards x {args.rows} rows x {args.steps} steps x 64, "
              f"batch {args.batch_size}, on {os.cpu_count()} CPUs")

        def timed(run: Callable[[List[Path], Path], None], count: int) -> float:
            out = tmp / "out"
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            run(files[:count], out)
            return time.perf_counter() - start

        def local(job: List[Path], out: Path) -> None:
            shards.run_shards(InferenceSession(path), job, out, batch_size=args.batch_size, progress=False)

        def on_ray(actors: int) -> Callable[[List[Path], Path], None]:
            def run(job: List[Path], out: Path) -> None:
                extra = {} if args.task_rows is None else {"task_rows": args.task_rows}
                distributed.run_shards(path, job, out, concurrency=actors, batch_size=args.batch_size,
                                       progress=False, **extra)
            return run

        def pipeline(job: List[Path], out: Path) -> None:
            """A user's own pipeline: read_numpy over the shards, Predictor on 2 actors of 1 thread."""
            ds = ray.data.read_numpy([str(f) for f in job])
            ds.context.enable_progress_bars = False
            # num_cpus=0.5: two actors of 1 CPU would leave the 2-CPU cluster none for the read tasks
            mapped = ds.map_batches(distributed.Predictor, fn_constructor_args=(str(path),), concurrency=2,
                                    num_cpus=0.5, batch_size=args.batch_size, batch_format="numpy")
            rows = sum(len(batch["logits"]) for batch in mapped.iter_batches(batch_format="numpy", batch_size=None))
            assert rows == len(job) * args.rows, (rows, len(job) * args.rows)

        sizes = {"local streaming": big, "Ray, 1 actor": big, "Ray, 2 actors": big,
                 "read_numpy+Pred.": n + args.pipeline_more}
        configs = {"local streaming": local}
        best = {name: [float("inf"), float("inf")] for name in sizes}
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        try:
            configs.update({"Ray, 1 actor": on_ray(1), "Ray, 2 actors": on_ray(2), "read_numpy+Pred.": pipeline})
            for run in configs.values():
                timed(run, n)  # warm-up: page cache, worker processes, imports
            for _ in range(args.repeats):
                for name, run in configs.items():
                    for i, count in enumerate((n, sizes[name])):
                        best[name][i] = min(best[name][i], timed(run, count))
        finally:
            ray.shutdown()
        results = {name: tuple(times) for name, times in best.items()}

        local_slope = (results["local streaming"][1] - results["local streaming"][0]) / args.more
        for name, (t_n, t_big) in results.items():
            slope = (t_big - t_n) / (sizes[name] - n)
            line = (f"  {name:16s}: {n * args.rows / t_n:7.0f} rows/s job of {n} ({t_n:5.2f} s), of {sizes[name]} "
                    f"({t_big:5.2f} s) | one more shard {slope * 1e3:6.1f} ms ({args.rows / slope:7.0f} rows/s)")
            if name != "local streaming":
                line += (f" | fixed cost {t_n - n * slope:4.1f} s | overhead per shard vs local "
                         f"{(slope - local_slope) * 1e3:+6.1f} ms ({(slope / local_slope - 1) * 100:+.0f} %)")
            print(line)
        print(f"(best of {args.repeats} runs per job, the configurations in turn; one more shard: (T(large) - T({n})) / "
              f"(large - {n}); fixed cost: T({n}) - {n} x that; read_numpy+Pred.: ray.data.read_numpy + "
              "map_batches(Predictor), 2 actors, outputs consumed by the driver, not written)")

if __name__ == "__main__":
    main()
