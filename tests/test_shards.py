"""Local streaming over ``.npy`` shards: ``spikeonnx.shards`` and ``spikeonnx run`` on a folder or glob."""

import os

import numpy as np
import pytest

from spikeonnx import shards
from spikeonnx.cli import main
from spikeonnx.runtime import InferenceSession
from tests.conftest import shard_dataset
from tests.conftest import shard_expected as expected  # noqa: F401  (also used by test_distributed)
from tests.conftest import shard_mlp_model as mlp_model

pytestmark = pytest.mark.needs_ops

TAU = np.array([[0.05, 0.02, 0.1]], np.float32)
ROWS = (5, 1, 7, 3, 12)


@pytest.fixture
def dataset(tmp_path):
    """A model and five shards of uneven row counts (names sort numerically, not as text)."""
    return shard_dataset(tmp_path, ROWS, name_step=5)


def test_expand_orders_numerically_and_keeps_list_order(dataset, tmp_path):
    _, folder, _ = dataset
    names = [p.name for p in shards.expand_shards(folder)]
    assert names == ["part0.npy", "part5.npy", "part10.npy", "part15.npy", "part20.npy"]
    assert [p.name for p in shards.expand_shards(str(folder / "part1*.npy"))] == ["part10.npy", "part15.npy"]
    given = [folder / "part20.npy", folder / "part0.npy"]
    assert shards.expand_shards(given) == given
    assert shards.is_shard_spec(str(folder)) and shards.is_shard_spec(str(folder / "*.npy"))
    assert not shards.is_shard_spec(str(folder / "part0.npy"))


def test_expand_errors(dataset, tmp_path):
    _, folder, _ = dataset
    with pytest.raises(FileNotFoundError, match="no shard files match"):
        shards.expand_shards(str(tmp_path / "nothing*.npy"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no .npy shards"):
        shards.expand_shards(tmp_path / "empty")
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt is not a .npy file"):
        shards.expand_shards(str(folder / "*"))
    with pytest.raises(ValueError, match="listed twice"):
        shards.expand_shards([folder / "part0.npy", folder / "part0.npy"])


def test_run_shards_streams_batches_and_matches_one_session(dataset, tmp_path, monkeypatch):
    model, folder, arrays = dataset
    session = InferenceSession(model)
    calls = []
    run = session.run

    def recording_run(names, feed):
        calls.append(feed["x"].copy())
        return run(names, feed)

    monkeypatch.setattr(session, "run", recording_run)
    written = shards.run_shards(session, str(folder / "*.npy"), tmp_path / "out", batch_size=2, progress=False)
    assert [p.name for p in written] == ["part0.npz", "part5.npz", "part10.npz", "part15.npz", "part20.npz"]
    # one batch of at most 2 rows per call, every row once, in shard and row order
    assert all(len(c) <= 2 for c in calls)
    np.testing.assert_array_equal(np.concatenate(calls), np.concatenate(arrays))
    whole = InferenceSession(model).run(None, {"x": np.concatenate(arrays)})
    start = 0
    for path, x in zip(written, arrays, strict=True):
        with np.load(path) as out:
            assert sorted(out.files) == ["s", "y"]
            np.testing.assert_allclose(out["y"], expected(x), rtol=1e-6, atol=1e-7)  # the NumPy reference
            np.testing.assert_array_equal(out["y"], whole[0][start:start + len(x)])  # one call, exactly
            np.testing.assert_array_equal(out["s"], whole[1][start:start + len(x)])
        start += len(x)
    assert sorted(os.listdir(tmp_path / "out")) == sorted(p.name for p in written)  # no temporary files


def test_open_shard_is_memory_mapped(dataset):
    _, folder, arrays = dataset
    shard = shards.plan_shards(folder, shards.InputSpec("x", (None, None, 3), np.dtype(np.float32)))[2]
    array = shards.open_shard(shard)
    assert isinstance(array, np.memmap) and shard.rows == len(arrays[2])


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 4, 3), np.float64), r"part7\.npy: dtype float64, but model input 'x' takes float32"),
    (np.zeros((2, 4, 5), np.float32), r"part7\.npy: shape \(2, 4, 5\), but model input 'x' has shape \(\?, \?, 3\)"),
    (np.zeros((2, 12), np.float32), r"part7\.npy: shape \(2, 12\), but model input 'x' has rank 3"),
    (np.zeros((0, 4, 3), np.float32), r"part7\.npy: has no rows"),
])
def test_bad_shard_is_refused_before_anything_runs(dataset, tmp_path, bad, message):
    model, folder, _ = dataset
    np.save(folder / "part7.npy", bad)
    with pytest.raises(ValueError, match=message):
        shards.run_shards(model, folder, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_unreadable_shard_mid_job_keeps_earlier_outputs(dataset, tmp_path):
    model, folder, arrays = dataset
    # a valid header but truncated data: only found when the shard is opened
    data = (folder / "part10.npy").read_bytes()
    (folder / "part10.npy").write_bytes(data[:-20])
    with pytest.raises(ValueError, match=r"shard .*part10\.npy: cannot read it"):
        shards.run_shards(model, folder, tmp_path / "out", batch_size=4, progress=False)
    assert sorted(os.listdir(tmp_path / "out")) == ["part0.npz", "part5.npz"]  # complete files only
    for name, x in (("part0.npz", arrays[0]), ("part5.npz", arrays[1])):
        with np.load(tmp_path / "out" / name) as out:
            np.testing.assert_allclose(out["y"], expected(x), rtol=1e-6, atol=1e-7)


def test_outputs_of_one_shard_never_duplicate_rows(tmp_path):
    shard = shards.Shard(tmp_path / "a.npy", (3, 2), np.dtype(np.float32))
    outputs = shards.ShardOutputs(shard, tmp_path)
    outputs.add({"y": np.ones((2, 2))}, 2)
    with pytest.raises(ValueError, match="a.npy: got outputs for 5 rows but it has 3"):
        outputs.add({"y": np.ones((3, 2))}, 3)
    with pytest.raises(ValueError, match="only 2 of 3 rows"):
        outputs.write()
    with pytest.raises(ValueError, match="output 'y' has shape \\(2,\\) for a batch of 1"):
        outputs.add({"y": np.ones(2)}, 1)


def test_output_folder_is_not_silently_overwritten(dataset, tmp_path):
    model, folder, arrays = dataset
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not empty; pass --overwrite"):
        shards.run_shards(model, folder, out, progress=False)
    assert os.listdir(out) == ["keep.txt"]
    shards.run_shards(model, folder, out, overwrite=True, progress=False)
    assert (out / "keep.txt").read_text() == "mine"  # other files are left alone
    assert len(os.listdir(out)) == len(ROWS) + 1
    with pytest.raises(ValueError, match="is a file"):
        shards.run_shards(model, folder, out / "keep.txt", progress=False)


def test_shards_with_the_same_name_are_refused(dataset, tmp_path):
    model, folder, _ = dataset
    (tmp_path / "other").mkdir()
    np.save(tmp_path / "other" / "part0.npy", np.zeros((1, 4, 3), np.float32))
    with pytest.raises(ValueError, match="would both write"):
        shards.run_shards(model, [folder / "part0.npy", tmp_path / "other" / "part0.npy"], tmp_path / "out",
                          progress=False)


def test_cli_run_shards(dataset, tmp_path, capsys):
    model, folder, arrays = dataset
    out = tmp_path / "out"
    code = main(["run", str(model), str(folder / "*.npy"), "-o", str(out), "--batch-size", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"wrote 5 output files to {out}" in captured.out
    assert captured.err == ""  # stderr is not a terminal: no progress bar, no escape codes
    with np.load(out / "part20.npz") as result:
        np.testing.assert_allclose(result["y"], expected(arrays[4]), rtol=1e-6, atol=1e-7)
    # again: refused without --overwrite, one line on stderr
    assert main(["run", str(model), str(folder), "-o", str(out)]) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert main(["run", str(model), str(folder), "-o", str(out), "--overwrite"]) == 0
    # shards need an output folder
    assert main(["run", str(model), str(folder)]) == 2
    assert "needs -o/--output" in capsys.readouterr().err
    # a bad shard: exit status 2, the error names the file
    np.save(folder / "part3.npy", np.zeros((2, 4, 3), np.int32))
    assert main(["run", str(model), str(folder), "-o", str(tmp_path / "out2")]) == 2
    assert "part3.npy: dtype int32" in capsys.readouterr().err


def test_progress_bar_counts_rows(dataset, tmp_path, capsys):
    model, folder, _ = dataset
    shards.run_shards(model, folder, tmp_path / "out", batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert f"{sum(ROWS)}/{sum(ROWS)}" in err


# -- streaming energy -------------------------------------------------------------------


def test_streamed_energy_equals_one_call_on_the_concatenation(tmp_path):
    from fractions import Fraction

    from spikeonnx.analysis import GraphEnergy
    from spikeonnx.analysis.rates import RateSums

    model = mlp_model(tmp_path / "mlp.onnx")
    folder = tmp_path / "shards"
    folder.mkdir()
    rng = np.random.default_rng(4)
    arrays = [(rng.normal(size=(rows, 4, 6)) * 10.0 ** rng.integers(-3, 4, size=(rows, 4, 6))).astype(np.float32)
              for rows in (5, 2, 9, 3, 6)]
    for i, x in enumerate(arrays):
        np.save(folder / f"s{i}.npy", x)
    whole = np.concatenate(arrays)
    one = GraphEnergy(model, whole)
    for batch_size in (2, 3, 100):
        streamed = GraphEnergy(model, shards.Shards(folder, batch_size=batch_size, progress=False))
        assert streamed.layer_rates == one.layer_rates  # exactly
        devices = ["cpu", "loihi"]
        assert streamed.to_dict(devices, 4, 0.01) == one.to_dict(devices, 4, 0.01)
    # the input layer's rate is the correctly rounded mean |x| (independent exact arithmetic)
    exact = sum(Fraction(float(v)) for v in np.abs(whole).ravel()) / whole.size
    first = next(name for name in one.layer_rates if name in ("x", "d1"))
    assert one.layer_rates[first] == float(exact)
    assert len(set(one.layer_rates.values())) > 2  # the layers do have different rates
    # partial sums merge in any order to the same rates
    sums = [shards.Shards([folder / f"s{i}.npy"], progress=False).rate_sums(one.graph) for i in range(5)]
    merged = RateSums()
    for part in reversed(sums):
        merged.merge(part)
    assert merged.rows == len(whole)
    assert GraphEnergy(model, merged).layer_rates == one.layer_rates


def test_streamed_energy_names_a_bad_shard(tmp_path):
    from spikeonnx.analysis import GraphEnergy

    model = mlp_model(tmp_path / "mlp.onnx")
    folder = tmp_path / "shards"
    folder.mkdir()
    np.save(folder / "a.npy", np.ones((2, 4, 6), np.float32))
    np.save(folder / "b.npy", np.ones((2, 4, 7), np.float32))
    with pytest.raises(ValueError, match=r"shard .*b\.npy: shape \(2, 4, 7\)"):
        GraphEnergy(model, shards.Shards(folder, progress=False))


def test_cli_energy_over_shards(tmp_path, capsys):
    import json

    from spikeonnx.analysis import GraphEnergy

    model = mlp_model(tmp_path / "mlp.onnx")
    folder = tmp_path / "shards"
    folder.mkdir()
    rng = np.random.default_rng(5)
    arrays = [rng.normal(size=(rows, 4, 6)).astype(np.float32) for rows in (3, 4)]
    for i, x in enumerate(arrays):
        np.save(folder / f"s{i}.npy", x)
    code = main(["energy", str(model), "--data", str(folder / "*.npy"), "--json", "--device", "loihi",
                 "--batch-size", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    expected = GraphEnergy(model, np.concatenate(arrays)).to_dict(["loihi"])
    assert report == json.loads(json.dumps(expected))
