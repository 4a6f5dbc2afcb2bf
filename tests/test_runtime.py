"""Tests of spikeonnx.runtime: InferenceSession and StreamingSession on the C++ op library.

Models are built by hand with onnx.helper. Results are compared with
spikeonnx.reference (exactly for spikes) and chunked runs with single calls (exactly).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnx import helper as oh

from spikeonnx import reference as ref
from spikeonnx.runtime import InferenceSession, StreamingSession
from spikeonnx.schemas import DOMAIN
from tests.conftest import finish_model, streaming_model

pytestmark = pytest.mark.needs_ops

RNG = np.random.default_rng(77)
DT = 0.002
DT32 = np.float32(DT)
TAU = np.array([0.01, 0.02, 0.005], dtype=np.float32)


def vi(name, shape, elem=TensorProto.FLOAT):
    return oh.make_tensor_value_info(name, elem, shape)


def one_node_model(op_type, n_in, n_out, x_shape, state_shape, elem=TensorProto.FLOAT, **attrs):
    """A model with a single spikeonnx node whose inputs/outputs are all graph inputs/outputs."""
    in_names = ["x", "tau", "level"][:n_in] if op_type != "SpikingActivation" else ["x", "v0"][:n_in]
    out_names = ["y", "state"][:n_out]
    node = oh.make_node(op_type, in_names, out_names, domain=DOMAIN, **attrs)
    inputs = [vi("x", x_shape, elem)]
    if op_type == "SpikingActivation" and n_in == 2:
        inputs.append(vi("v0", state_shape, elem))
    elif op_type != "SpikingActivation":
        inputs += [vi("tau", [len(TAU)], elem), vi("level", state_shape if op_type == "Lowpass" else state_shape[:1] + state_shape[2:], elem)]
    outputs = [vi("y", x_shape, elem)] + ([vi("state", state_shape, elem)] if n_out == 2 else [])
    return finish_model(oh.make_graph([node], op_type, inputs, outputs))


def reference_stream(x, v0, level, time_major=False):
    """The streaming model computed with spikeonnx.reference."""
    spikes, voltage = ref.spiking_activation(np.maximum(x, np.float32(0)), DT32, initial_voltage=v0, time_major=time_major)
    y, final_level = ref.lowpass(spikes, TAU[None], level, DT32, time_major=time_major)
    return spikes, y, voltage, final_level


# ---------------------------------------------------------------------------
# InferenceSession
# ---------------------------------------------------------------------------


def test_inference_session_spiking_matches_reference_exactly(tmp_path):
    x = (RNG.random((4, 40, 3)) * 300).astype(np.float32)
    v0 = RNG.random((4, 3)).astype(np.float32)
    model = one_node_model("SpikingActivation", 2, 2, ["B", 40, 3], ["B", 3], dt=DT)
    path = tmp_path / "spiking.onnx"
    onnx.save(model, str(path))
    expected = ref.spiking_activation(x, DT32, initial_voltage=v0)
    for source in (model, model.SerializeToString(), str(path), path):
        session = InferenceSession(source)
        spikes, final = session.run(None, {"x": x, "v0": v0})
        np.testing.assert_array_equal(spikes, expected[0])
        np.testing.assert_array_equal(final, expected[1])


def test_inference_session_seeded_spiking_uses_tf_uniform():
    x = (RNG.random((3, 25, 3)) * 300).astype(np.float32)
    model = one_node_model("SpikingActivation", 1, 2, ["B", 25, 3], ["B", 3], dt=DT, seed=11)
    spikes, final = InferenceSession(model).run(None, {"x": x})
    expected = ref.spiking_activation(x, DT32, initial_voltage=ref.tf_stateless_uniform((3, 3), 11))
    np.testing.assert_array_equal(spikes, expected[0])
    np.testing.assert_array_equal(final, expected[1])


@pytest.mark.parametrize("op_type", ["Lowpass", "Alpha"])
def test_inference_session_filters_match_reference(op_type):
    x = RNG.standard_normal((2, 30, 3)).astype(np.float32)
    level = RNG.standard_normal((2, 3)).astype(np.float32)
    state_shape = ["B", 3] if op_type == "Lowpass" else ["B", 2, 3]
    model = one_node_model(op_type, 3, 2, ["B", 30, 3], state_shape, dt=DT)
    y, state = InferenceSession(model).run(None, {"x": x, "tau": TAU, "level": level})
    func = ref.lowpass if op_type == "Lowpass" else ref.alpha
    expected_y, expected_state = func(x, TAU, level, DT32)
    # Same float32 operations in the same order (see tests/test_ops_kernels.py): exact.
    np.testing.assert_array_equal(y, expected_y)
    np.testing.assert_array_equal(state, expected_state)


def test_inference_session_lowers_ir_version_without_touching_the_caller():
    model = one_node_model("SpikingActivation", 2, 1, [2, 5, 3], [2, 3], dt=DT)
    model.ir_version = 14  # what onnx 1.23's make_model writes; onnxruntime 1.31 refuses it
    session = InferenceSession(model)
    assert model.ir_version == 14
    assert session.model.ir_version == 10
    x = np.ones((2, 5, 3), np.float32)
    v0 = np.zeros((2, 3), np.float32)
    np.testing.assert_array_equal(session.run(["y"], {"x": x, "v0": v0})[0], ref.spiking_activation(x, DT32, v0)[0])


def test_inference_session_api_and_shared_options():
    model = streaming_model()
    options = ort.SessionOptions()
    first = InferenceSession(model, sess_options=options)
    second = InferenceSession(model, sess_options=options)  # library registered once per options
    assert isinstance(first.session, ort.InferenceSession)
    assert [a.name for a in first.get_inputs()] == ["x", "spike/state_in", "lp/state_in"]
    assert [a.name for a in second.get_outputs()] == ["y", "spikes", "spike/state_out", "lp/state_out"]
    meta = first.get_modelmeta().custom_metadata_map
    assert json.loads(meta["spikeonnx.initial_state"])["spike/state_in"]["seed"] == 3
    assert first.session.get_providers() == ["CPUExecutionProvider"]


def test_inference_session_missing_and_bad_files(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        InferenceSession(str(missing))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not an onnx model at all \x00\xff\x13")
    with pytest.raises(ValueError, match="garbage.onnx.*not an ONNX model"):
        InferenceSession(garbage)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.onnx"):
        InferenceSession(empty)
    with pytest.raises(ValueError, match="bytes"):
        InferenceSession(b"\x08\x01garbage")
    with pytest.raises(TypeError, match="path, bytes or onnx.ModelProto"):
        InferenceSession(42)


@pytest.mark.parametrize(
    "feed_change, match",
    [
        (lambda f: f.update(x=f["x"].astype(np.float64)), r"'x'.*float32.*float64"),
        (lambda f: f.update(x=f["x"][0]), r"'x'.*expected shape \(B, 40, 3\), got \(40, 3\)"),
        (lambda f: f.update(x=f["x"][:, :, :2]), r"'x'.*expected shape \(B, 40, 3\), got \(4, 40, 2\)"),
        (lambda f: f.update(bogus=f["x"]), r"unknown input.*bogus"),
        (lambda f: f.pop("v0"), r"missing input.*v0"),
        (lambda f: f.update(v0=f["v0"].astype(np.int32)), r"'v0'.*float32.*int32"),
    ],
)
def test_inference_session_rejects_bad_feeds(feed_change, match):
    session = InferenceSession(one_node_model("SpikingActivation", 2, 1, ["B", 40, 3], ["B", 3], dt=DT))
    feed = {"x": np.zeros((4, 40, 3), np.float32), "v0": np.zeros((4, 3), np.float32)}
    feed_change(feed)
    with pytest.raises(ValueError, match=match):
        session.run(None, feed)


def test_inference_session_rejects_unknown_output():
    session = InferenceSession(one_node_model("SpikingActivation", 2, 1, ["B", 4, 3], ["B", 3], dt=DT))
    feed = {"x": np.zeros((1, 4, 3), np.float32), "v0": np.zeros((1, 3), np.float32)}
    with pytest.raises(ValueError, match="unknown output.*'z'"):
        session.run(["z"], feed)


# ---------------------------------------------------------------------------
# StreamingSession
# ---------------------------------------------------------------------------


def test_streaming_ten_chunks_equal_one_call_and_reference():
    batch, steps = 3, 200
    x = (RNG.standard_normal((batch, steps, 3)) * 250).astype(np.float32)
    model = streaming_model(seed=3, level=(0.1, 0.2, 0.3))
    stream = StreamingSession(model)
    assert stream.input_names == ["x"] and stream.output_names == ["y", "spikes"]
    chunked = stream.run_chunked(x, chunk=steps // 10)

    v0 = ref.tf_stateless_uniform((batch, 3), 3)
    level = np.broadcast_to(np.float32([0.1, 0.2, 0.3]), (batch, 3)).copy()
    y, spikes, voltage, final_level = InferenceSession(model).run(
        None, {"x": x, "spike/state_in": v0, "lp/state_in": level}
    )
    # chunked == one call, exactly (same kernels, state carried bit for bit)
    np.testing.assert_array_equal(chunked["spikes"], spikes)
    np.testing.assert_array_equal(chunked["y"], y)
    np.testing.assert_array_equal(stream.states["spike/state_in"], voltage)
    np.testing.assert_array_equal(stream.states["lp/state_in"], final_level)
    # and both equal the NumPy reference (spikes exactly, the filter to float32 accuracy)
    exp_spikes, exp_y, exp_voltage, exp_level = reference_stream(x, v0, level)
    np.testing.assert_array_equal(spikes, exp_spikes)
    np.testing.assert_array_equal(voltage, exp_voltage)
    np.testing.assert_allclose(y, exp_y, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(final_level, exp_level, rtol=1e-5, atol=1e-4)
    assert np.abs(spikes).sum() > 0  # the test exercises actual spiking


def alpha_streaming_model(level, time_major=0):
    """One Alpha node fed with al/state_in (B, 2, 3) through its initial_state input.

    The metadata gives the exporter's default: the rest state [level, level].
    """
    seq = ["T", "B", 3] if time_major else ["B", "T", 3]
    node = oh.make_node("Alpha", ["x", "tau", "level", "al/state_in"], ["y", "al/state_out"],
                        domain=DOMAIN, dt=DT, time_major=time_major)
    graph = oh.make_graph(
        [node], "alpha_stream",
        [vi("x", seq), vi("al/state_in", ["B", 2, 3])],
        [vi("y", seq), vi("al/state_out", ["B", 2, 3])],
        initializer=[oh.make_tensor("tau", TensorProto.FLOAT, [1, 3], TAU.tolist()),
                     oh.make_tensor("level", TensorProto.FLOAT, [1, 3], list(level))],
    )
    axis = 0 if time_major else 1
    return finish_model(graph, metadata={
        "spikeonnx.time_axes": {"x": axis, "y": axis, "al/state_in": None, "al/state_out": None},
        "spikeonnx.initial_state": {"al/state_in": {"kind": "constant", "value": [list(level), list(level)]}},
    })


@pytest.mark.parametrize("time_major", [0, 1])
def test_streaming_alpha_from_rest_chunked_equals_one_call(time_major):
    level = (0.5, -0.25, 1.0)
    model = alpha_streaming_model(level, time_major)
    onnx.checker.check_model(model, full_check=True)
    x = RNG.standard_normal((70, 2, 3) if time_major else (2, 70, 3)).astype(np.float32)
    stream = StreamingSession(model)
    chunked = stream.run_chunked(x, chunk=9)  # 7 * 9 + 7
    rest = np.broadcast_to(np.float32(level), (2, 3))
    y, final = InferenceSession(model).run(None, {"x": x, "al/state_in": np.stack([rest, rest], axis=1)})
    np.testing.assert_array_equal(chunked["y"], y)
    np.testing.assert_array_equal(stream.states["al/state_in"], final)
    # The default (rest) state is what the op does without a state input.
    want_y, want_final = ref.alpha(x, TAU, np.float32(level), DT32, time_major=bool(time_major))
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(final, want_final)


def test_streaming_uneven_chunks_and_manual_steps():
    x = (RNG.standard_normal((2, 53, 3)) * 250).astype(np.float32)
    stream = StreamingSession(streaming_model(seed=8))
    whole = stream.run_chunked({"x": x}, chunk=53)
    uneven = stream.run_chunked({"x": x}, chunk=7)  # 7 * 7 + 4
    np.testing.assert_array_equal(uneven["y"], whole["y"])
    np.testing.assert_array_equal(uneven["spikes"], whole["spikes"])
    # the same by hand with step()/run()
    stream.reset(batch_size=2)
    parts = [stream.step(x[:, :20]), stream.run({"x": x[:, 20:21]}), stream.step(x[:, 21:])]
    np.testing.assert_array_equal(np.concatenate([p["spikes"] for p in parts], axis=1), whole["spikes"])
    # run_chunked(reset=False) continues from the carried state
    stream.reset()
    first = stream.run_chunked(x[:, :30], chunk=9)
    rest = stream.run_chunked(x[:, 30:], chunk=9, reset=False)
    np.testing.assert_array_equal(np.concatenate([first["y"], rest["y"]], axis=1), whole["y"])


def test_streaming_time_major_without_metadata():
    # No metadata: time axis 0 because the nodes are time_major; states start at zeros.
    x = (RNG.standard_normal((60, 2, 3)) * 250).astype(np.float32)  # (T, B, S)
    stream = StreamingSession(streaming_model(time_major=1, with_metadata=False))
    assert stream.time_axes["x"] == 0 and stream.batch_axes["x"] == 1
    out = stream.run_chunked(x, chunk=6)
    zeros = np.zeros((2, 3), np.float32)
    exp_spikes, exp_y, _, _ = reference_stream(x, zeros, zeros, time_major=True)
    np.testing.assert_array_equal(out["spikes"], exp_spikes)
    np.testing.assert_allclose(out["y"], exp_y, rtol=1e-5, atol=1e-4)


def test_streaming_caller_initial_states():
    x = (RNG.standard_normal((2, 40, 3)) * 250).astype(np.float32)
    v0 = RNG.random((2, 3)).astype(np.float32)
    stream = StreamingSession(streaming_model())
    stream.reset(states={"spike/state_in": v0, "lp/state_in": np.float32([1.0, -1.0, 0.5])})
    out = stream.run_chunked(x, chunk=8)  # restarts from the states given to reset()
    level = np.broadcast_to(np.float32([1.0, -1.0, 0.5]), (2, 3))
    exp_spikes, exp_y, _, _ = reference_stream(x, v0, level)
    np.testing.assert_array_equal(out["spikes"], exp_spikes)
    np.testing.assert_allclose(out["y"], exp_y, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="unknown state 'nope/state_in'"):
        stream.reset(states={"nope/state_in": v0})
    with pytest.raises(ValueError, match="does not broadcast"):
        stream.reset(batch_size=2, states={"spike/state_in": np.zeros((5, 3), np.float32)})


def test_streaming_rejects_bad_use():
    stream = StreamingSession(streaming_model())
    x = np.zeros((2, 10, 3), np.float32)
    stream.step(x)
    with pytest.raises(ValueError, match="batch size 3.*has 2"):
        stream.step(np.zeros((3, 10, 3), np.float32))
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        stream.run_chunked(x, chunk=0)
    with pytest.raises(ValueError, match="unknown input.*'spike/state_in'"):
        stream.step({"x": x, "spike/state_in": np.zeros((2, 3), np.float32)})
    with pytest.raises(ValueError, match="'x'.*float32.*float64"):
        stream.step(x.astype(np.float64))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        stream.reset(batch_size=0)


def test_streaming_rejects_models_without_state_pairs():
    with pytest.raises(ValueError, match="no state inputs"):
        StreamingSession(one_node_model("SpikingActivation", 1, 1, ["B", 4, 3], ["B", 3], dt=DT))
    model = streaming_model()
    # drop the Lowpass state output: the state input is left without its partner
    outputs = [o for o in model.graph.output if o.name != "lp/state_out"]
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    with pytest.raises(ValueError, match="'lp/state_in' has no matching graph output 'lp/state_out'"):
        StreamingSession(model)


@pytest.mark.parametrize(
    "initial, match",
    [
        ({"spike/state_in": {"kind": "gaussian"}}, "unknown initial state"),
        ({"spike/state_in": {"kind": "uniform_seed", "seed": "x"}}, "'seed' must be an int"),
        ({"lp/state_in": {"kind": "constant", "value": [1.0, 2.0]}}, "does not broadcast"),
    ],
)
def test_streaming_rejects_bad_initial_state_metadata(initial, match):
    model = streaming_model()
    for prop in model.metadata_props:
        if prop.key == "spikeonnx.initial_state":
            prop.value = json.dumps(initial)
    stream = StreamingSession(model)
    with pytest.raises(ValueError, match=match):
        stream.step(np.zeros((1, 4, 3), np.float32))


def test_streaming_rejects_malformed_metadata():
    model = streaming_model()
    model.metadata_props.add(key="spikeonnx.state_io", value="{not json")
    with pytest.raises(ValueError, match="spikeonnx.state_io.*not valid JSON"):
        StreamingSession(model)
