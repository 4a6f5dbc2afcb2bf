"""Regression tests of issue 10 (sessions, export, CLI): one test per numbered item.

Items 1, 5 and 6 (the kernels) are in ``tests/test_robustness_ops.py``. Every test
here failed on the code before its fix.
"""

from __future__ import annotations

import os
import threading
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnx import helper as oh

from spikeonnx.cli import main
from spikeonnx.runtime import InferenceSession, StreamingSession
from tests.conftest import cli_lowpass_model as lowpass_model
from tests.conftest import finish_model, streaming_model

pytestmark = pytest.mark.needs_ops

RNG = np.random.default_rng(1010)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code, err, command, *fragments):
    """Exit status 2 and one line on stderr, naming each fragment; no traceback."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"spikeonnx {command}: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def options(intra=0, inter=0):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra
    opts.inter_op_num_threads = inter
    return opts


# -- 2. thread counts ----------------------------------------------------------------


def test_2_thread_counts_are_validated(tmp_path, capsys):
    bound = 4 * (os.cpu_count() or 1)
    model = streaming_model()
    for bad in (-1, bound + 1):
        for opts in (options(intra=bad), options(inter=bad)):
            for cls in (InferenceSession, StreamingSession):
                with pytest.raises(ValueError, match=f"from 0 to {bound}.*got {bad}"):
                    cls(model, sess_options=opts)
    # the bound itself and onnxruntime's default (0) are fine
    InferenceSession(model, sess_options=options(intra=bound))
    StreamingSession(model, sess_options=options(intra=1, inter=2))

    path = lowpass_model(tmp_path / "m.onnx", state_io=False)
    np.save(tmp_path / "x.npy", np.zeros((1, 4, 3), np.float32))
    for bad in ("-1", str(bound + 1), "many"):
        with pytest.raises(SystemExit) as exit_info:
            main(["run", str(path), str(tmp_path / "x.npy"), "--threads", bad, "-o", str(tmp_path / "o.npz")])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "--threads" in err and "Traceback" not in err
    assert not (tmp_path / "o.npz").exists()
    code, _, _ = run_cli(capsys, "run", path, tmp_path / "x.npy", "--threads", "1", "-o", tmp_path / "o.npz")
    assert code == 0 and (tmp_path / "o.npz").is_file()


# -- 7. StreamingSession from several threads ------------------------------------------


def test_7_streaming_session_shared_by_threads_equals_sequential_runs():
    model = streaming_model(seed=5)
    stream = StreamingSession(model)
    inputs = [(RNG.standard_normal((2, 40, 3)) * 300).astype(np.float32) for _ in range(8)]
    # sequential: each sequence from the initial state, two timesteps per call
    expected = [StreamingSession(model).run_chunked(x, chunk=2) for x in inputs]
    results = [[None] * 4 for _ in inputs]
    barrier = threading.Barrier(len(inputs))
    errors = []

    def worker(i):
        try:
            barrier.wait()
            for round_ in range(4):
                results[i][round_] = stream.run_chunked(inputs[i], chunk=2)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for want, got_rounds in zip(expected, results):
        for got in got_rounds:
            np.testing.assert_array_equal(got["spikes"], want["spikes"])
            np.testing.assert_array_equal(got["y"], want["y"])
    assert "lock" in StreamingSession.__doc__


# -- 8. an output that is the input ----------------------------------------------------


def test_8_output_onto_its_input_is_refused(tmp_path, capsys):
    source = tmp_path / "m.keras"
    with zipfile.ZipFile(source, "w") as archive:  # stands in for a model: refused before loading
        archive.writestr("config.json", "{}")
    original = source.read_bytes()
    os.symlink(source, tmp_path / "link.keras")
    os.link(source, tmp_path / "hard.keras")
    for target in (source, tmp_path / "link.keras", tmp_path / "hard.keras"):
        code, _, err = run_cli(capsys, "export", source, "-o", target)
        assert_user_error(code, err, "export", "is the input")
    assert source.read_bytes() == original

    model = lowpass_model(tmp_path / "m.onnx", state_io=False)
    model_bytes = model.read_bytes()
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 4, 3), np.float32))
    data_bytes = (tmp_path / "x.npz").read_bytes()
    os.symlink(tmp_path / "x.npz", tmp_path / "xlink.npz")
    for target in (tmp_path / "x.npz", tmp_path / "xlink.npz", tmp_path / "x"):  # "x" means x.npz
        code, _, err = run_cli(capsys, "run", model, tmp_path / "x.npz", "-o", target)
        assert_user_error(code, err, "run", "is the input")
    assert (tmp_path / "x.npz").read_bytes() == data_bytes
    odd_name = tmp_path / "model.npz"  # a model file whose name numpy would keep
    odd_name.write_bytes(model_bytes)
    code, _, err = run_cli(capsys, "run", odd_name, tmp_path / "x.npz", "-o", odd_name)
    assert_user_error(code, err, "run", "is the input")
    assert odd_name.read_bytes() == model_bytes


# -- 9. interrupted writes leave the old file ----------------------------------------


def _fail_midway(write_part):
    """A writer that writes part of the file, then fails as a SIGINT would."""

    def writer(target, *args, **kwargs):
        write_part(target)
        raise KeyboardInterrupt

    return writer


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_9_interrupted_writes_leave_the_old_file(tmp_path, capsys, monkeypatch):
    model = lowpass_model(tmp_path / "m.onnx", state_io=False)
    np.save(tmp_path / "x.npy", np.ones((1, 4, 3), np.float32))
    out = tmp_path / "out.npz"
    out.write_bytes(b"the old outputs")
    files = {"m.onnx", "x.npy", "out.npz"}

    def part(target):
        (target if hasattr(target, "write") else open(target, "wb")).write(b"PK\x03\x04 half a zip")

    monkeypatch.setattr(np, "savez", _fail_midway(part))
    assert run_cli(capsys, "run", model, tmp_path / "x.npy", "-o", out) == (130, "", "spikeonnx run: interrupted\n")
    monkeypatch.undo()
    assert out.read_bytes() == b"the old outputs"
    assert _leftovers(tmp_path, files) == []

    # plots (spikeonnx energy --plot, the demo)
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from spikeonnx.plots import plot_energy

    report = {"model": "m.onnx", "layers": [{"name": "a", "type": "Dense", "energy": {"cpu": {"total": 1e-9}}}],
              "total_energy": {"cpu": 1e-9}}
    png = tmp_path / "energy.png"
    png.write_bytes(b"the old plot")
    monkeypatch.setattr(Figure, "savefig", lambda self, target, **kw: part(target) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        plot_energy(report, png, ["cpu"])
    monkeypatch.undo()
    assert png.read_bytes() == b"the old plot"
    assert _leftovers(tmp_path, files | {"energy.png"}) == []
    assert plot_energy(report, png, ["cpu"]) == png and png.read_bytes()[:4] == b"\x89PNG"

    # the demo's Keras model file
    from spikeonnx.demo import save_keras_atomically

    class Model:
        def save(self, target):
            part(target)
            raise KeyboardInterrupt

    keras_file = tmp_path / "model.keras"
    keras_file.write_bytes(b"the old model")
    with pytest.raises(KeyboardInterrupt):
        save_keras_atomically(Model(), keras_file)
    assert keras_file.read_bytes() == b"the old model"
    assert _leftovers(tmp_path, files | {"energy.png", "model.keras"}) == []


# -- 10. inputs declared without a shape ---------------------------------------------


def test_10_input_without_declared_shape_takes_any_shape():
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, None)
    scalar = oh.make_tensor_value_info("s", TensorProto.FLOAT, [])
    graph = oh.make_graph([oh.make_node("Relu", ["x"], ["r"]), oh.make_node("Mul", ["r", "s"], ["y"])],
                          "g", [x, scalar], [y])
    session = InferenceSession(finish_model(graph))
    for shape in [(2, 3), (), (4, 1, 5)]:
        value = RNG.standard_normal(shape).astype(np.float32)
        (out,) = session.run(None, {"x": value, "s": np.float32(2)})
        np.testing.assert_array_equal(out, np.maximum(value, 0) * np.float32(2))
    # a declared rank-0 input still is rank 0
    with pytest.raises(ValueError, match="'s': expected shape \\(\\), got \\(1,\\)"):
        session.run(None, {"x": np.zeros(2, np.float32), "s": np.zeros(1, np.float32)})


# -- 11. library errors are one line; zero-length chunks -----------------------------


def _vi(name, shape):
    return oh.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_11_library_errors_are_one_line_naming_the_file(tmp_path, capsys):
    np.save(tmp_path / "x2.npy", np.zeros(2, np.float32))
    np.save(tmp_path / "empty.npy", np.zeros((2, 0, 3), np.float32))
    cyclic = finish_model(oh.make_graph(
        [oh.make_node("Add", ["x", "b"], ["a"]), oh.make_node("Relu", ["a"], ["b"])], "cyc", [_vi("x", [2])],
        [_vi("a", [2])]))
    onnx.save(cyclic, tmp_path / "cyclic.onnx")
    # what an exported Dense does over time: (B, T, S) -> (B*T, S); with T = 0 "-1" is undefined
    flatten = finish_model(oh.make_graph(
        [oh.make_node("Reshape", ["x", "shape"], ["y"])], "flat", [_vi("x", ["B", "T", 3])], [_vi("y", None)],
        [oh.make_tensor("shape", TensorProto.INT64, [2], [-1, 0])]))
    onnx.save(flatten, tmp_path / "flatten.onnx")
    outside = oh.make_tensor("w", TensorProto.FLOAT, [2], [1, 2])
    outside.ClearField("float_data")
    outside.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../outside.bin"), ("offset", "0"), ("length", "8")):
        outside.external_data.add(key=key, value=value)
    external = finish_model(oh.make_graph(
        [oh.make_node("Add", ["x", "w"], ["y"])], "ext", [_vi("x", [2])], [_vi("y", [2])], [outside]))
    onnx.save(external, tmp_path / "external.onnx")
    for tag, axis in (("huge", "1e400"), ("text", '"x"')):
        meta = streaming_model()
        meta.metadata_props.add(key="spikeonnx.batch_axes", value='{"x": %s}' % axis)
        onnx.save(meta, tmp_path / f"meta_{tag}.onnx")

    out = tmp_path / "o.npz"
    cases = [
        (["run", tmp_path / "cyclic.onnx", tmp_path / "x2.npy"], ["cyclic.onnx", "acyclic"]),
        (["run", tmp_path / "flatten.onnx", tmp_path / "empty.npy"], ["flatten.onnx", "Reshape"]),
        (["run", tmp_path / "external.onnx", tmp_path / "x2.npy"], ["external.onnx", "outside"]),
        (["run", tmp_path / "meta_huge.onnx", tmp_path / "empty.npy", "--stream", "1"],
         ["meta_huge.onnx", "spikeonnx.batch_axes", "'x'"]),
        (["run", tmp_path / "meta_text.onnx", tmp_path / "empty.npy", "--stream", "1"],
         ["meta_text.onnx", "spikeonnx.batch_axes", "'x'"]),
        (["energy", tmp_path / "external.onnx", "--data", tmp_path / "x2.npy"], ["external.onnx", "outside"]),
        (["energy", tmp_path / "meta_text.onnx"], ["meta_text.onnx", "spikeonnx.batch_axes"]),
    ]
    for argv, fragments in cases:
        if argv[0] == "run":
            argv = [*argv, "-o", out]
        code, _, err = run_cli(capsys, *argv)
        assert_user_error(code, err, argv[0], *fragments)
    assert not out.exists()


def test_11_streaming_step_on_zero_timesteps_returns_empty_outputs(monkeypatch):
    for time_major in (0, 1):
        stream = StreamingSession(streaming_model(time_major=time_major))
        x = (RNG.standard_normal((2, 9, 3) if not time_major else (9, 2, 3)) * 300).astype(np.float32)
        whole = StreamingSession(streaming_model(time_major=time_major)).run_chunked(x, chunk=9)
        axis = time_major ^ 1
        first, rest = np.split(x, [4], axis=axis)
        parts = [stream.step(first)]
        carried = {k: v.copy() for k, v in stream.states.items()}

        def no_run(*args, **kwargs):
            raise AssertionError("onnxruntime ran on an empty chunk")

        monkeypatch.setattr(stream.session, "run", no_run)
        empty = stream.step(np.take(x, [], axis=axis))
        want = (2, 0, 3) if not time_major else (0, 2, 3)
        assert {k: (v.shape, v.dtype) for k, v in empty.items()} == {
            "y": (want, np.float32), "spikes": (want, np.float32)}
        for name, value in stream.states.items():
            np.testing.assert_array_equal(value, carried[name])  # untouched
        monkeypatch.undo()
        parts.append(empty)
        parts.append(stream.step(rest))
        np.testing.assert_array_equal(np.concatenate([p["spikes"] for p in parts], axis=axis), whole["spikes"])
        # a whole sequence of zero timesteps, and still the feed checks
        assert stream.run_chunked(np.take(x, [], axis=axis), chunk=3)["y"].shape == want
        with pytest.raises(ValueError, match="'x'.*float32.*float64"):
            stream.step(np.take(x, [], axis=axis).astype(np.float64))


# -- 13. messages that mislead ------------------------------------------------------------


def test_13_messages_say_what_happened(tmp_path, capsys, monkeypatch):
    model = lowpass_model(tmp_path / "m.onnx", state_io=False)
    np.save(tmp_path / "x.npy", np.ones((1, 4, 3), np.float32))
    # run -o DIR writes DIR.npz and says so
    code, out, _ = run_cli(capsys, "run", model, tmp_path / "x.npy", "-o", tmp_path / "result")
    assert code == 0 and f"wrote {tmp_path / 'result.npz'} (" in out
    assert (tmp_path / "result.npz").is_file() and not (tmp_path / "result").exists()
    # energy --plot NAME writes NAME.png and says so
    pytest.importorskip("matplotlib")
    code, out, _ = run_cli(capsys, "energy", model, "--plot", tmp_path / "chart")
    assert code == 0 and f"plot written to {tmp_path / 'chart.png'}" in out
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"

    # a string state is a dtype problem
    stream = StreamingSession(streaming_model())
    with pytest.raises(ValueError, match="initial state 'spike/state_in': dtype <U3 is not numeric"):
        stream.reset(batch_size=2, states={"spike/state_in": "abc"})

    # a garbage .keras / .h5 file is not a Keras model (rather than "File not found")
    for name in ("junk.keras", "junk.h5"):
        (tmp_path / name).write_bytes(b"garbage")
        code, _, err = run_cli(capsys, "export", tmp_path / name, "-o", tmp_path / "junk.onnx")
        assert_user_error(code, err, "export", name, "is not a Keras model file")
        assert "not found" not in err

    # NaN example data names the input
    bad = np.ones((1, 4, 3), np.float32)
    bad[0, 1, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    code, _, err = run_cli(capsys, "energy", model, "--data", tmp_path / "nan.npy")
    assert_user_error(code, err, "energy", "input 'x'", "non-finite")

    # a missing output folder fails before the model runs
    def no_run(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(InferenceSession, "run", no_run)
    code, _, err = run_cli(capsys, "run", model, tmp_path / "x.npy", "-o", tmp_path / "nodir" / "out.npz")
    assert_user_error(code, err, "run", "nodir", "does not exist")
    code, _, err = run_cli(capsys, "energy", model, "--plot", tmp_path / "nodir" / "chart.png")
    assert_user_error(code, err, "energy", "nodir", "does not exist")


# -- 3. seeds of 2**63 and more ---------------------------------------------------------


def _spiking_model(seed, dtype="float32", dt=0.01):
    keras = pytest.importorskip("keras")
    kl = pytest.importorskip("keras_layers")
    x = keras.Input((None, 5), dtype=dtype, name="x")
    y = kl.SpikingActivation("relu", seed=seed, dt=dt, dtype=dtype, name="spiking")(x)
    return keras.Model(x, y)


def test_3_seeds_from_2_63_export_the_seed_keras_uses():
    from spikeonnx.contract import read_metadata
    from spikeonnx.exporter import ExportError, export

    seed = 2**63 + 5
    model = _spiking_model(seed)
    x = (RNG.standard_normal((3, 12, 5)) * 80).astype(np.float32)
    keras_spikes = model.predict(x, verbose=0)  # TensorFlow reads the seed as seed - 2**64
    onnx_model = export(model)
    (node,) = [n for n in onnx_model.graph.node if n.op_type == "SpikingActivation"]
    attrs = {a.name: oh.get_attribute_value(a) for a in node.attribute}
    assert attrs["seed"] == seed - 2**64
    assert read_metadata(onnx_model).seeds == {node.name: seed - 2**64}
    (spikes,) = InferenceSession(onnx_model).run(None, {"x": x})
    np.testing.assert_array_equal(spikes, keras_spikes)
    assert np.abs(spikes).sum() > 0
    # and the same through a state input: the metadata's initial state draws the same voltage
    streamed = StreamingSession(export(model, state_io=True)).run_chunked(x, chunk=5)
    np.testing.assert_array_equal(streamed["spiking"], keras_spikes)

    # (Keras itself cannot build a layer with seed=2**64; the default seed is the exporter's)
    with pytest.raises(ExportError, match="'spiking'.*default_seed=1180591620717411303424"):
        export(_spiking_model(None), default_seed=2**70)


# -- 4. float64 models ------------------------------------------------------------------


def test_4_float64_model_exports_float64_and_equals_keras():
    keras = pytest.importorskip("keras")
    kl = pytest.importorskip("keras_layers")
    from spikeonnx.exporter import ExportError, export

    dt = 2.0**-6  # a dt float32 holds exactly: the node's dt attribute is a float32
    x_in = keras.Input((None, 4), dtype="float64", name="x")
    v_in = keras.Input((3,), dtype="float64", name="v0")
    h = keras.layers.Dense(3, dtype="float64", name="dense")(x_in)
    spikes = kl.SpikingActivation("relu", dt=dt, dtype="float64", name="spikes")(h, initial_state=[v_in])
    lowpass = kl.Lowpass(0.05, dt=dt, dtype="float64", name="lowpass")(spikes)
    alpha = kl.Alpha(0.03, dt=dt, dtype="float64", name="alpha")(spikes)
    model = keras.Model([x_in, v_in], [spikes, lowpass, alpha])
    x = RNG.standard_normal((2, 9, 4)) * 100
    v0 = RNG.random((2, 3))
    expected = model.predict([x, v0], verbose=0)

    onnx_model = export(model)
    double = TensorProto.DOUBLE
    assert [v.type.tensor_type.elem_type for v in [*onnx_model.graph.input, *onnx_model.graph.output]] == [double] * 5
    assert not [n for n in onnx_model.graph.node if n.op_type == "Cast" and n.attribute[0].i == TensorProto.FLOAT]
    got = InferenceSession(onnx_model).run(None, {"x": x, "v0": v0})
    for name, want, value in zip(("spikes", "lowpass", "alpha"), expected, got):
        assert value.dtype == np.float64 and want.dtype == np.float64, name
    np.testing.assert_array_equal(got[0], expected[0])  # spikes: exactly
    assert np.abs(got[0]).sum() > 0
    # The filters in float64 precision (the op and Keras order Alpha's arithmetic differently,
    # an ulp apart at times); a float32 path would be ~1e-7 off.
    for name, want, value in zip(("lowpass", "alpha"), expected[1:], got[1:]):
        np.testing.assert_allclose(value, want, rtol=1e-13, atol=1e-12, err_msg=name)

    # what float64 cannot reproduce is refused, naming the layer and the reason
    with pytest.raises(ExportError, match="'spiking' is float64 with seed=7.*float64 numbers"):
        export(_spiking_model(7, dtype="float64", dt=dt))
    with pytest.raises(ExportError, match="'spiking' is float64 with dt=0.001.*float32"):
        export(_spiking_model(None, dtype="float64", dt=0.001))


# -- 12. rank-0 inputs; per-input batch axes on the command line ---------------------------


def _model_with_condition(path):
    """z = If(flag, x + 1, x - 1) + w.T with a rank-0 bool input and w (3, B) batched on axis 1."""
    then_graph = oh.make_graph([oh.make_node("Add", ["x", "one"], ["t"])], "then", [], [_vi("t", ["B", 3])])
    else_graph = oh.make_graph([oh.make_node("Sub", ["x", "one"], ["e"])], "else", [], [_vi("e", ["B", 3])])
    graph = oh.make_graph(
        [oh.make_node("If", ["flag"], ["y"], then_branch=then_graph, else_branch=else_graph),
         oh.make_node("Transpose", ["w"], ["wt"]), oh.make_node("Add", ["y", "wt"], ["z"])],
        "cond",
        [_vi("x", ["B", 3]), oh.make_tensor_value_info("flag", TensorProto.BOOL, []), _vi("w", [3, "B"])],
        [_vi("z", ["B", 3])],
        [oh.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    onnx.save(finish_model(graph), path)
    return path


def test_12_rank0_inputs_have_no_batch_axis_and_cli_takes_named_axes(tmp_path, capsys):
    from spikeonnx.analysis import GraphEnergy

    path = _model_with_condition(tmp_path / "cond.onnx")
    energy = GraphEnergy(str(path))  # default batch_axis=0 for every input
    assert energy.to_dict(["cpu"], 1, None)["layers"]
    data = {"x": np.ones((2, 3), np.float32), "flag": np.array(True), "w": np.ones((3, 2), np.float32)}
    np.savez(tmp_path / "data.npz", **data)
    GraphEnergy(str(path), data)

    from spikeonnx.cli.energy import batch_axes

    assert batch_axes(str(path), None) == 0
    assert batch_axes(str(path), [("w", 1)]) == {"x": 0, "flag": None, "w": 1}
    assert batch_axes(str(path), [(None, 1), ("x", 0)]) == {"x": 0, "flag": None, "w": 1}
    code, out, err = run_cli(capsys, "energy", path, "--batch-axis", "w=1", "--batch-axis", "0", "--json",
                             "--data", tmp_path / "data.npz")
    assert code == 0, err
    code, _, err = run_cli(capsys, "energy", path, "--batch-axis", "w=5")
    assert_user_error(code, err, "energy", "'w'", "5")
    code, _, err = run_cli(capsys, "energy", path, "--batch-axis", "nope=1")
    assert_user_error(code, err, "energy", "'nope'", "not a graph input")
    with pytest.raises(SystemExit):
        main(["energy", str(path), "--batch-axis", "w=one"])
    assert "NAME=AXIS" in capsys.readouterr().err
