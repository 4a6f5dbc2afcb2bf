"""Ray Data: ``spikeonnx.distributed`` and ``--ray`` on a local 2-CPU cluster (one for the module)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from spikeonnx.analysis import GraphEnergy  # noqa: E402
from spikeonnx.cli import main  # noqa: E402
from spikeonnx.runtime import InferenceSession  # noqa: E402
from tests.conftest import shard_dataset  # noqa: E402
from tests.conftest import shard_expected as expected  # noqa: E402
from tests.conftest import shard_mlp_model as mlp_model  # noqa: E402

pytestmark = pytest.mark.needs_ops

TIME_LIMIT = 240  # seconds per test: a stuck Ray job fails the test instead of hanging the suite

ROWS = (5, 2, 7, 4)


@pytest.fixture(scope="module")
def cluster():
    import cloudpickle

    # the instrumented actor class below lives in this test module, which the workers cannot import
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(autouse=True)
def time_limit():
    import signal

    def expire(signum, frame):
        raise TimeoutError(f"test took more than {TIME_LIMIT} s (a Ray job waiting forever?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TIME_LIMIT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def dataset(tmp_path):
    return shard_dataset(tmp_path, ROWS)


def check_outputs(model, folder, arrays, out):
    """Every shard's file holds exactly what one InferenceSession gives on that shard."""
    session = InferenceSession(model)
    assert sorted(os.listdir(out)) == [f"part{i}.npz" for i in range(len(arrays))]  # no temporary files
    for i, x in enumerate(arrays):
        want = session.run(None, {"x": x})
        with np.load(out / f"part{i}.npz") as got:
            np.testing.assert_array_equal(got["y"], want[0])
            np.testing.assert_array_equal(got["s"], want[1])
            np.testing.assert_allclose(got["y"], expected(x), rtol=1e-6, atol=1e-7)


def test_outputs_equal_one_session_in_shard_and_row_order(cluster, dataset, tmp_path):
    from spikeonnx import distributed

    model, folder, arrays = dataset
    # task_rows=2 (rounded up to one batch of 3): shards of 5 and 7 rows go out as several work items
    written = distributed.run_shards(model, str(folder / "*.npy"), tmp_path / "out", concurrency=2,
                                     batch_size=3, task_rows=2, progress=False)
    assert [p.name for p in written] == [f"part{i}.npz" for i in range(len(ROWS))]
    check_outputs(model, folder, arrays, tmp_path / "out")
    # task_rows=6: a task ends one shard and goes on with the next (part1's 2 rows share a task)
    distributed.run_shards(model, str(folder / "*.npy"), tmp_path / "out", concurrency=2, batch_size=3,
                           task_rows=6, overwrite=True, progress=False)
    check_outputs(model, folder, arrays, tmp_path / "out")


def test_tasks_span_shards_in_whole_batches():
    from spikeonnx import distributed
    from spikeonnx.shards import Shard

    shards = [Shard(f"s{i}.npy", (rows, 4, 3), np.dtype(np.float32)) for i, rows in enumerate((5, 2, 7, 4))]
    tasks = distributed._work_items(shards, 6, 3)
    ranges = [(s, a, b) for t in tasks for s, a, b in zip(t[distributed.SHARD_COLUMN], t[distributed.START_COLUMN],
                                                           t[distributed.STOP_COLUMN], strict=True)]
    # every row once, in shard and row order; a range starts at a whole batch of its shard
    assert [(s, r) for s, a, b in ranges for r in range(a, b)] == [(s, r) for s, n in enumerate((5, 2, 7, 4))
                                                                   for r in range(n)]
    assert all(a % 3 == 0 for s, a, b in ranges)
    assert [sum(b - a for a, b in zip(t[distributed.START_COLUMN], t[distributed.STOP_COLUMN], strict=True))
            for t in tasks] == [5, 5, 4, 4]  # at most 6 rows a task; part1 shares one with part2
    assert tasks[1][distributed.SHARD_COLUMN] == [1, 2]
    # the model's batches are a local run's: a full task is not filled with a partial batch
    assert distributed._work_items(shards[:1], 4, 2) == [
        {distributed.SHARD_COLUMN: [0], distributed.START_COLUMN: [0], distributed.STOP_COLUMN: [4]},
        {distributed.SHARD_COLUMN: [0], distributed.START_COLUMN: [4], distributed.STOP_COLUMN: [5]}]


def test_actor_sessions_stop_spinning_between_runs(dataset):
    from spikeonnx import distributed

    model, folder, arrays = dataset
    options = distributed.Predictor(str(model)).session.session.get_session_options()
    # onnxruntime's threads would otherwise spin on after each run, taking the cores Ray needs
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    assert options.intra_op_num_threads == 1


def test_predictor_in_a_users_read_numpy_pipeline(cluster, dataset):
    from spikeonnx import distributed

    model, folder, arrays = dataset
    files = [str(folder / f"part{i}.npy") for i in range(len(arrays))]
    ds = ray.data.read_numpy(files, include_paths=True)
    ds.context.execution_options.preserve_order = True
    # num_cpus=0.5: two actors of 1 CPU would leave the 2-CPU cluster none for the read tasks
    out = ds.map_batches(distributed.Predictor, fn_constructor_args=(str(model),), concurrency=2, batch_size=3,
                         num_cpus=0.5)
    rows = out.take_all()
    assert sorted(rows[0]) == ["path", "s", "y"]  # outputs added, input column dropped, path passed through
    whole = np.concatenate(arrays)
    want = InferenceSession(model).run(None, {"x": whole})
    np.testing.assert_array_equal(np.stack([r["y"] for r in rows]), want[0])
    np.testing.assert_array_equal(np.stack([r["s"] for r in rows]), want[1])
    assert [os.path.basename(r["path"]) for r in rows] == [f"part{i}.npy" for i, n in enumerate(ROWS) for _ in range(n)]


class KillOnce:
    """Mixin: the first actor to reach its second batch kills its own process (once per job)."""

    marker = None  # set per test: a file created when the kill happens
    pids = None  # a file each actor appends its pid to when it starts

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0
        with open(self.pids, "a") as handle:
            handle.write(f"{os.getpid()}\n")

    def __call__(self, batch):
        self.calls += 1
        if self.calls == 2:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os._exit(1)  # the actor process dies mid-job, with a batch in hand
        return super().__call__(batch)


def test_killed_actor_is_restarted_and_no_row_is_lost_or_repeated(cluster, dataset, tmp_path):
    from spikeonnx import distributed

    model, folder, arrays = dataset
    killer = type("KillingPredictor", (KillOnce, distributed.ShardRangePredictor),
                  {"marker": str(tmp_path / "killed"), "pids": str(tmp_path / "pids")})
    distributed.run_shards(model, folder, tmp_path / "out", concurrency=1, batch_size=2, task_rows=2,
                           progress=False, predictor=killer)
    assert (tmp_path / "killed").exists()  # the kill did happen ...
    pids = (tmp_path / "pids").read_text().split()
    assert len(set(pids)) >= 2  # ... and Ray started a new actor process
    # the driver refuses a shard with missing or extra rows; the values are those of one session
    check_outputs(model, folder, arrays, tmp_path / "out")


def test_bad_shard_is_named_and_written_outputs_stay_valid(cluster, dataset, tmp_path):
    from spikeonnx import distributed

    model, folder, arrays = dataset
    np.save(folder / "part9.npy", np.zeros((2, 4, 3), np.float64))
    with pytest.raises(ValueError, match=r"shard .*part9\.npy: dtype float64, but model input 'x' takes float32"):
        distributed.run_shards(model, folder, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # refused before any work
    # a shard that only fails when read on the cluster (valid header, truncated data)
    os.remove(folder / "part9.npy")
    data = (folder / "part2.npy").read_bytes()
    (folder / "part2.npy").write_bytes(data[:-24])
    with pytest.raises(ValueError, match=r"the Ray job failed: shard .*part2\.npy: cannot read it"):
        distributed.run_shards(model, folder, tmp_path / "out", batch_size=2, progress=False)
    session = InferenceSession(model)
    written = sorted(os.listdir(tmp_path / "out"))
    assert set(written) <= {"part0.npz", "part1.npz"}  # only shards before the bad one, no temporary files
    for name in written:
        x = arrays[int(name[4])]
        with np.load(tmp_path / "out" / name) as got:
            np.testing.assert_array_equal(got["y"], session.run(None, {"x": x})[0])


def test_cli_ray_refuses_a_non_empty_output_folder(cluster, dataset, tmp_path, capsys):
    model, folder, arrays = dataset
    out = tmp_path / "out"
    out.mkdir()
    (out / "part0.npz").write_bytes(b"an old result")
    args = ["run", str(model), str(folder / "*.npy"), "-o", str(out), "--ray", "--concurrency", "2"]
    assert main(args) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert (out / "part0.npz").read_bytes() == b"an old result"
    assert main([*args, "--overwrite"]) == 0, capsys.readouterr().err
    check_outputs(model, folder, arrays, out)
    assert main(["run", str(model), str(folder / "part0.npy"), "--ray"]) == 2
    assert "--ray runs shards" in capsys.readouterr().err


def test_energy_over_a_ray_dataset_equals_one_local_call(cluster, tmp_path, capsys):
    from spikeonnx import distributed

    model = mlp_model(tmp_path / "mlp.onnx")
    folder = tmp_path / "shards"
    folder.mkdir()
    rng = np.random.default_rng(6)
    arrays = [(rng.normal(size=(rows, 4, 6)) * 10.0 ** rng.integers(-3, 4, size=(rows, 4, 6))).astype(np.float32)
              for rows in (6, 3, 8)]
    for i, x in enumerate(arrays):
        np.save(folder / f"s{i}.npy", x)
    whole = np.concatenate(arrays)
    one = GraphEnergy(model, whole)
    # a user's own dataset, reduced exactly: the same rates as one local call
    sums = distributed.rate_sums(ray.data.from_numpy(np.array_split(whole, 3)), one.graph, concurrency=2,
                                 batch_size=4)
    assert sums.rows == len(whole)
    assert GraphEnergy(model, sums).layer_rates == one.layer_rates
    # the command line over shards
    code = main(["energy", str(model), "--data", str(folder), "--ray", "--concurrency", "2", "--json",
                 "--device", "loihi", "--batch-size", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out) == json.loads(json.dumps(one.to_dict(["loihi"])))


def test_core_and_analyzer_do_not_import_ray(tmp_path):
    model = mlp_model(tmp_path / "mlp.onnx")
    np.save(tmp_path / "x.npy", np.ones((2, 4, 6), np.float32))
    code = (
        "import sys, numpy as np, spikeonnx\n"
        "from spikeonnx.analysis import GraphEnergy\n"
        "from spikeonnx.cli import main\n"
        f"GraphEnergy({str(model)!r}, np.ones((2, 4, 6), np.float32)).summary_string()\n"
        f"assert main(['energy', {str(model)!r}, '--data', {str(tmp_path)!r}, '--json']) == 0\n"
        f"assert main(['run', {str(model)!r}, {str(tmp_path / '*.npy')!r}, '-o', {str(tmp_path / 'out')!r}]) == 0\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "import spikeonnx.distributed\n"
        "assert 'ray' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_default_task_rows_come_from_the_model_time(tmp_path, monkeypatch):
    """Without task_rows, a task holds about TASK_SECONDS of the model's time, timed on one
    batch: a tiny target gives one batch per task, a large one far more rows than the
    shards hold (run_shards then caps it at the actors' share)."""
    from spikeonnx import distributed
    from spikeonnx.shards import InputSpec, Shard, plan_shards

    model, folder, _ = shard_dataset(tmp_path, ROWS)
    session = InferenceSession(str(model))
    spec = InputSpec.from_session(session)
    planned = plan_shards(folder, spec)
    monkeypatch.setattr(distributed, "TASK_SECONDS", 1e-12)
    assert distributed._timed_task_rows(session, spec.name, planned, 3, fixed=False) == 3
    monkeypatch.setattr(distributed, "TASK_SECONDS", 1e3)
    assert distributed._timed_task_rows(session, spec.name, planned, 3, fixed=False) > 10**4
    empty = [Shard(p.path, (0,) + tuple(p.shape[1:]), p.dtype) for p in planned]
    assert distributed._timed_task_rows(session, spec.name, empty, 3, fixed=False) == distributed.TASK_ROWS


def test_timing_the_task_size_names_the_shard_when_the_model_fails(tmp_path):
    from spikeonnx import distributed
    from spikeonnx.shards import InputSpec, plan_shards

    model, folder, _ = shard_dataset(tmp_path, ROWS)
    session = InferenceSession(str(model))
    spec = InputSpec.from_session(session)
    planned = plan_shards(folder, spec)

    class Failing:
        def run(self, *args, **kwargs):
            raise RuntimeError("bad node")

    with pytest.raises(ValueError, match=re.escape(f"shard {planned[0].path}: running the model failed: bad node")):
        distributed._timed_task_rows(Failing(), spec.name, planned, 3, fixed=False)
