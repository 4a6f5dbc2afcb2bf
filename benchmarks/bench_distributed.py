"""Batch inference over shards: local streaming vs Ray Data with 1 and 2 actors.

Exports the spiking digits classifier (briefly trained: accuracy does not matter
for throughput), writes ``--shards`` shards of ``--rows`` digit sequences, and
times ``spikeonnx.shards.run_shards`` (one process, streaming),
``spikeonnx.distributed.run_shards`` on a local Ray cluster with 1 and 2 actors,
and a user's own pipeline (``ray.data.read_numpy`` over the shards, mapped by
``spikeonnx.distributed.Predictor`` on 2 actors, consumed by the driver), all in
one run. One untimed Ray job per configuration first starts the cluster's worker
processes.

Two figures per configuration: rows/s of the whole job, and rows/s once running:
from the first model call (in any process) to the last shard's outputs written
(``run_shards``) or received (the pipeline), per shard. That leaves out the fixed
cost of a job (a Ray job starts its actors: processes, imports, one session
each) but not Ray's cost per task, however many shards a task holds (a task of
``run_shards`` spans shards, so outputs reach the driver several shards at a
time: the time between the first and last write would leave out the first
task). Ray's overhead per shard compares the running time per shard with local
streaming's; every figure is the best of ``--repeats`` runs, as other work on
the machine only ever slows a run down.

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

        first_call = tmp / "first_call"  # each process appends the wall time of its first model call
        done = []  # wall time of the last output written (run_shards) or received (the pipeline)
        write = shards.ShardOutputs.write

        def timed_write(self):
            path = write(self)
            done.append(time.time())
            return path

        shards.ShardOutputs.write = timed_write

        def note_first_call(obj):
            if not getattr(obj, "_bench_called", False):
                obj._bench_called = True
                with open(first_call, "a") as handle:
                    handle.write(f"{time.time()!r}\n")

        class FirstCall:
            """Mixin of the actor classes: notes the first model call (classes of __main__ travel by value)."""

            def __call__(self, batch):
                note_first_call(self)
                return super().__call__(batch)

        class TimedRangePredictor(FirstCall, distributed.ShardRangePredictor):
            pass

        class TimedPredictor(FirstCall, distributed.Predictor):
            pass

        class TimedSession(InferenceSession):
            def run(self, *a, **k):
                note_first_call(self)
                return super().run(*a, **k)

        def timed(run, repeats=1):
            """Best (total seconds, seconds per shard once running) over ``repeats`` runs."""
            best_total = best_shard = float("inf")
            for _ in range(repeats):
                out = tmp / "out"
                shutil.rmtree(out, ignore_errors=True)
                first_call.unlink(missing_ok=True)
                done.clear()
                start = time.perf_counter()
                run(files, out)
                best_total = min(best_total, time.perf_counter() - start)
                began = min(float(t) for t in first_call.read_text().split())
                best_shard = min(best_shard, (done[-1] - began) / args.shards)
            return best_total, best_shard

        def local(folder, out):
            shards.run_shards(TimedSession(path), folder, out, batch_size=args.batch_size, progress=False)

        def on_ray(actors):
            def run(folder, out):
                distributed.run_shards(path, folder, out, concurrency=actors, batch_size=args.batch_size,
                                       progress=False, predictor=TimedRangePredictor)
            return run

        def pipeline(folder, out):
            """A user's own pipeline: read_numpy over the shards, Predictor on 2 actors of 1 thread."""
            ds = ray.data.read_numpy([str(f) for f in folder])
            ds.context.enable_progress_bars = False
            # num_cpus=0.5: two actors of 1 CPU would leave the 2-CPU cluster none for the read tasks
            mapped = ds.map_batches(TimedPredictor, fn_constructor_args=(str(path),), concurrency=2,
                                    num_cpus=0.5, batch_size=args.batch_size, batch_format="numpy")
            rows = 0
            for batch in mapped.iter_batches(batch_format="numpy", batch_size=None):
                rows += len(batch["logits"])
            done.append(time.time())
            assert rows == total, (rows, total)

        results = {}
        timed(local)  # warm-up: page cache, first session
        results["local streaming"] = timed(local, args.repeats)
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        try:
            for actors in (1, 2):
                run = on_ray(actors)
                timed(run)  # warm-up: worker processes, imports
                results[f"Ray, {actors} actor{'s' if actors > 1 else ''}"] = timed(run, args.repeats)
            timed(pipeline)
            results["read_numpy+Pred."] = timed(pipeline, args.repeats)
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
        print(f"(best of {args.repeats} runs; running: first model call to last output, per shard; the fixed cost "
              "is the job's time beyond its shards at the running pace; read_numpy+Pred.: ray.data.read_numpy "
              "+ map_batches(Predictor), 2 actors, outputs consumed by the driver, not written)")


if __name__ == "__main__":
    main()
