"""Export zoo: Keras models with spiking layers, exported and run in onnxruntime.

Each model runs in Keras (inference mode) and, after ``spikeonnx.export``, in
``spikeonnx.InferenceSession`` on the same inputs and initial states. Spikes
must be identical element for element, filtered/dense outputs within 1e-5
(relative to the output scale). A few models also run in
``onnx.reference.ReferenceEvaluator`` with the NumPy reference ops.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict

import keras
import numpy as np
import onnx
import pytest
import tensorflow as tf
from onnx.reference import ReferenceEvaluator

from spikeonnx import export
from spikeonnx.contract import OP_TYPES
from spikeonnx.examples.zoo import TIME_DISTRIBUTED_INNER, ZOO, ZooCase
from spikeonnx.reference import REFERENCE_OPS, tf_stateless_uniform
from spikeonnx.schemas import register_schemas

needs_ops = pytest.mark.needs_ops

RNG = np.random.default_rng(2024)  # states fed in by the tests; the models' inputs come from the zoo


@pytest.fixture(autouse=True)
def _deterministic_weights():
    keras.utils.set_random_seed(1234)  # weight initialisers draw from the global seed


# -- helpers ------------------------------------------------------------------


def keras_outputs(model, *inputs, **kwargs):
    """Keras outputs as a list of NumPy arrays (inference mode)."""
    out = model(inputs[0] if len(inputs) == 1 else list(inputs), training=False, **kwargs)
    return [np.asarray(o) for o in tf.nest.flatten(out)]


def ort_outputs(model: onnx.ModelProto, feeds):
    from spikeonnx.runtime import InferenceSession

    session = InferenceSession(model)
    return session.run(None, feeds)


def reference_outputs(model: onnx.ModelProto, feeds):
    return ReferenceEvaluator(model, new_ops=REFERENCE_OPS).run(None, feeds)


def assert_close(actual, expected, rtol=1e-5):
    """Within ``rtol`` of the output's scale (elementwise relative would punish near-zeros)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = max(float(np.abs(expected).max()), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def metadata(model: onnx.ModelProto):
    props = {p.key: p.value for p in model.metadata_props}
    return {k: (json.loads(v) if k != "spikeonnx.version" else v) for k, v in props.items()}


def spiking_nodes(model: onnx.ModelProto):
    # the spiking ops only (the event ops of spikeonnx.events share the domain)
    return [n for n in model.graph.node if n.domain == "spikeonnx" and n.op_type in OP_TYPES]


def check_valid(model: onnx.ModelProto):
    register_schemas()
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version <= 10
    assert model.producer_name == "spikeonnx"


def assert_alpha_wired_directly(model: onnx.ModelProto, layer: str, state_io: bool):
    """The Alpha node of ``layer`` is the whole layer: no standard ops around it.

    Its level/tau come from constants, the state input and output (if any) are the
    graph's ``{layer}/state_in`` / ``{layer}/state_out`` themselves, and whatever
    consumes its output belongs to another layer (or is a graph output).
    """
    (node,) = [n for n in spiking_nodes(model) if n.op_type == "Alpha"]
    constants = {t.name for t in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    assert node.input[1] in constants and node.input[2] in constants
    graph_outputs = [o.name for o in model.graph.output]
    if state_io:
        assert list(node.input[3:]) == [f"{layer}/state_in"]
        assert list(node.output) == [node.output[0], f"{layer}/state_out"]
    else:
        assert len(node.input) == 3 and len(node.output) == 1
    layers = metadata(model)["spikeonnx.layers"]
    # nothing else was emitted for the layer (the old s1 correction was an Exp/Mul/Add subgraph)
    assert [name for name, owner in layers.items() if owner == layer] == [node.name]
    consumers = [n for n in model.graph.node if node.output[0] in n.input]
    assert consumers or node.output[0] in graph_outputs
    for consumer in consumers:
        assert consumer.name in layers and layers[consumer.name] != layer, consumer
        assert consumer.op_type not in ("Add", "Mul", "Sub", "Exp"), consumer


def uniform_voltage(shape, seed):
    return tf_stateless_uniform(shape, seed)


# -- models ---------------------------------------------------------------------
# One check per zoo entry (or group of entries); ``test_zoo_model`` at the end runs
# every entry of the zoo through its check, or through ``check_matches_keras``.

_CHECKS: Dict[str, Callable[[str, ZooCase, Path], None]] = {}


def checks(*names: str):
    """Register the decorated function as the check of the zoo entries ``names``."""

    def register(check):
        for name in names:
            assert name not in _CHECKS, f"two checks for zoo entry {name!r}"
            _CHECKS[name] = check
        return check

    return register


@checks("dense_spiking_sequential")
def check_dense_spiking_dense_sequential(name, case, tmp_path):
    model, x = case.model, case.x
    onnx_model = export(model)
    check_valid(model=onnx_model)
    nodes = spiking_nodes(onnx_model)
    assert [n.op_type for n in nodes] == ["SpikingActivation"]
    (node,) = nodes
    # the base activation stays a standard op right before the spiking node
    producer = {o: n for n in onnx_model.graph.node for o in n.output}[node.input[0]]
    assert producer.op_type == "Relu" and producer.domain == ""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["seed"] == 3 and attrs["time_major"] == 0 and attrs["dt"] == pytest.approx(0.01)
    (inp,) = onnx_model.graph.input
    assert [d.dim_param for d in inp.type.tensor_type.shape.dim[:2]] == ["batch", "time"]

    (expected,) = keras_outputs(model, x)
    (actual,) = ort_outputs(onnx_model, {inp.name: x})
    assert_close(actual, expected)

    meta = metadata(onnx_model)
    layer_names = [layer.name for layer in model.layers]
    assert meta["spikeonnx.layers"][node.name] == layer_names[1]
    attributed = set(meta["spikeonnx.layers"].values())
    assert {layer_names[0], layer_names[2]} <= attributed  # the Dense nodes are attributed too
    matmul_layers = {meta["spikeonnx.layers"].get(n.name) for n in onnx_model.graph.node
                     if n.op_type in ("MatMul", "EventMatMul")}
    assert matmul_layers == {layer_names[0], layer_names[2]}
    assert meta["spikeonnx.dt"] == {node.name: 0.01}
    assert meta["spikeonnx.seeds"] == {node.name: 3}
    assert meta["spikeonnx.batch_axes"] == {inp.name: 0, onnx_model.graph.output[0].name: 0}
    assert meta["spikeonnx.time_axes"] == {inp.name: 1, onnx_model.graph.output[0].name: 1}


@checks("dense_spiking_functional")
def check_dense_spiking_dense_functional_spikes_identical_and_reference_agrees(name, case, tmp_path):
    model, x = case.model, case.x

    onnx_model = export(model)
    check_valid(onnx_model)
    assert [o.name for o in onnx_model.graph.output] == ["spikes", "readout"]
    expected_spikes, expected_out = keras_outputs(model, x)
    assert np.count_nonzero(expected_spikes) > 50  # the test must see spikes
    spikes_ort, out_ort = ort_outputs(onnx_model, {"rates_in": x})
    np.testing.assert_array_equal(spikes_ort, expected_spikes)
    assert_close(out_ort, expected_out)
    spikes_ref, out_ref = reference_outputs(onnx_model, {"rates_in": x})
    np.testing.assert_array_equal(spikes_ref, spikes_ort)
    assert_close(out_ref, out_ort)


@checks("unseeded_spiking")
def check_unseeded_layer_gets_recorded_seed_and_state_io_takes_keras_initial_state(name, case, tmp_path):
    model, x = case.model, case.x
    assert case.export_kwargs == {"default_seed": 7}

    onnx_model = export(model, **case.export_kwargs)
    (node,) = spiking_nodes(onnx_model)
    assert metadata(onnx_model)["spikeonnx.seeds"] == {node.name: 7}
    v0 = uniform_voltage((2, 4), 7)
    layer = model.layers[-1]
    expected = np.asarray(layer(x, initial_state=[tf.constant(v0)], training=False))
    (actual,) = ort_outputs(onnx_model, {onnx_model.graph.input[0].name: x})
    np.testing.assert_array_equal(actual, expected)

    # state_io: the caller supplies the voltage, as Keras' initial_state does
    streaming = export(model, state_io=True)
    check_valid(streaming)
    names = [i.name for i in streaming.graph.input]
    assert names == [onnx_model.graph.input[0].name, "sa/state_in"]
    assert [o.name for o in streaming.graph.output] == ["sa", "sa/state_out"]
    v1 = RNG.uniform(0, 1, (2, 4)).astype(np.float32)
    expected = np.asarray(layer(x, initial_state=[tf.constant(v1)], training=False))
    spikes, final = ort_outputs(streaming, {names[0]: x, "sa/state_in": v1})
    np.testing.assert_array_equal(spikes, expected)
    v = v1.copy()  # the final voltage, recomputed independently in NumPy
    for t in range(x.shape[1]):
        v = v + np.maximum(x[:, t], 0) * np.float32(0.01)
        v = v - np.floor(v)
    np.testing.assert_array_equal(final, v)
    meta = metadata(streaming)
    assert meta["spikeonnx.initial_state"] == {"sa/state_in": {"kind": "uniform_seed", "seed": 0}}
    assert meta["spikeonnx.state_io"] == {"sa/state_in": "sa/state_out"}


@checks("conv_lowpass_readout")
def check_conv_timedistributed_model_with_lowpass_readout(name, case, tmp_path):
    model, images = case.model, case.x

    onnx_model = export(model)
    check_valid(onnx_model)
    assert sorted(n.op_type for n in spiking_nodes(onnx_model)) == ["Lowpass", "SpikingActivation"]
    expected_spikes, expected = keras_outputs(model, images)
    assert np.count_nonzero(expected_spikes) > 20
    spikes_ort, out_ort = ort_outputs(onnx_model, {onnx_model.graph.input[0].name: images})
    np.testing.assert_array_equal(spikes_ort, expected_spikes)
    assert out_ort.shape == (3, 5)
    assert_close(out_ort, expected)
    meta = metadata(onnx_model)
    assert meta["spikeonnx.time_axes"]["readout"] is None
    assert meta["spikeonnx.batch_axes"]["readout"] == 0
    # the Conv on the model's input is an event op (images held over steps computed once)
    conv_layers = {meta["spikeonnx.layers"].get(n.name) for n in onnx_model.graph.node if n.op_type == "EventConv"}
    assert conv_layers == {"conv"}


@checks(*(f"time_distributed_{kind}" for kind in TIME_DISTRIBUTED_INNER))
def check_time_distributed_matches_keras(name, case, tmp_path):
    kind = name[len("time_distributed_"):]
    model, x = case.model, case.x
    assert x.shape == TIME_DISTRIBUTED_INNER[kind][1]
    onnx_model = export(model)
    check_valid(onnx_model)
    (expected,) = keras_outputs(model, x)
    (actual,) = ort_outputs(onnx_model, {onnx_model.graph.input[0].name: x})
    assert actual.shape == expected.shape
    assert_close(actual, expected)


@checks("alpha_initial_level")
def check_alpha_with_initial_level_and_streaming_state(name, case, tmp_path):
    model, x = case.model, case.x
    onnx_model = export(model)
    check_valid(onnx_model)
    assert [n.op_type for n in spiking_nodes(onnx_model)] == ["Alpha"]
    assert_alpha_wired_directly(onnx_model, "alpha", state_io=False)
    (expected,) = keras_outputs(model, x)
    (actual,) = ort_outputs(onnx_model, {onnx_model.graph.input[0].name: x})
    assert_close(actual, expected)
    (ref,) = reference_outputs(onnx_model, {onnx_model.graph.input[0].name: x})
    assert_close(ref, actual)

    # a full (s1, s2) state fed in: the streaming port takes the op's cascade state,
    # Keras' initial_state the same state in its (dy/dt, y) layout
    streaming = export(model, state_io=True)
    check_valid(streaming)
    assert_alpha_wired_directly(streaming, "alpha", state_io=True)
    state = RNG.uniform(-1, 1, (2, 2, 4)).astype(np.float32)
    layer = model.layers[-1]
    tau = np.asarray(layer.cell.tau).reshape(1, 4)
    keras_state = tf.constant(np.stack([(state[:, 0] - state[:, 1]) / tau, state[:, 1]], axis=1))
    expected = np.asarray(layer(x, initial_state=[keras_state], training=False))
    y, final = ort_outputs(streaming, {streaming.graph.input[0].name: x, "alpha/state_in": state})
    assert_close(y, expected)
    assert final.shape == (2, 2, 4)
    # the final state continues the sequence: a second half from it equals the whole run
    whole = np.asarray(layer(np.concatenate([x, x], 1), initial_state=[keras_state], training=False))
    y2, _ = ort_outputs(streaming, {streaming.graph.input[0].name: x, "alpha/state_in": final})
    assert_close(y2, whole[:, 40:])
    meta = metadata(streaming)
    assert meta["spikeonnx.initial_state"]["alpha/state_in"] == {
        "kind": "constant",
        "value": [[0.5] * 4, [0.5] * 4],
    }


@checks("time_major_layers")
def check_time_major_layers(name, case, tmp_path):
    # (T, B, 4) seen by Keras as (batch=T, time=B)
    model, x = case.model, case.x
    assert case.time_major
    onnx_model = export(model)
    check_valid(onnx_model)
    for node in spiking_nodes(onnx_model):
        assert onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == "time_major")) == 1
    (expected,) = keras_outputs(model, x)
    (actual,) = ort_outputs(onnx_model, {onnx_model.graph.input[0].name: x})
    assert_close(actual, expected)
    meta = metadata(onnx_model)
    name_in, name_out = onnx_model.graph.input[0].name, onnx_model.graph.output[0].name
    assert meta["spikeonnx.time_axes"] == {name_in: 0, name_out: 0}
    assert meta["spikeonnx.batch_axes"] == {name_in: 1, name_out: 1}


@checks("custom_activation")
def check_custom_activation_callable(name, case, tmp_path):
    model, x = case.model, case.x
    onnx_model = export(model)
    check_valid(onnx_model)
    op_types = {n.op_type for n in onnx_model.graph.node}
    assert {"Relu", "Sin"} <= op_types
    (expected,) = keras_outputs(model, x)
    (actual,) = ort_outputs(onnx_model, {onnx_model.graph.input[0].name: x})
    np.testing.assert_array_equal(actual, expected)


@checks("several_dt")
def check_several_spiking_layers_with_different_dt_one_variable(name, case, tmp_path):
    model, x = case.model, case.x
    dt_var = case.extras["dt_var"]
    assert isinstance(dt_var, tf.Variable) and float(dt_var.numpy()) == np.float32(0.004)
    onnx_model = export(model)
    check_valid(onnx_model)
    meta = metadata(onnx_model)
    assert meta["spikeonnx.dt"] == {"sa_fast": 0.01, "lp_var": 0.004, "sa_slow": 0.001, "alpha": 0.003}
    expected_spikes, expected = keras_outputs(model, x)
    spikes, out = ort_outputs(onnx_model, {onnx_model.graph.input[0].name: x})
    np.testing.assert_array_equal(spikes, expected_spikes)
    assert_close(out, expected)
    ref_spikes, ref_out = reference_outputs(onnx_model, {onnx_model.graph.input[0].name: x})
    np.testing.assert_array_equal(ref_spikes, spikes)
    assert_close(ref_out, out)


@checks("plain_rnn_cells")
def check_plain_rnn_with_spiking_cells(name, case, tmp_path):
    model, x = case.model, case.x
    onnx_model = export(model)
    check_valid(onnx_model)
    assert [n.op_type for n in spiking_nodes(onnx_model)] == ["SpikingActivation", "Lowpass"]
    # keras.layers.RNN draws its initial state from the cell: the TF-identical seeded draw
    expected_spikes, expected = keras_outputs(model, x)
    spikes, out = ort_outputs(onnx_model, {onnx_model.graph.input[0].name: x})
    np.testing.assert_array_equal(spikes, expected_spikes)
    assert_close(out, expected)


@checks("return_state")
def check_return_state_outputs_final_state(name, case, tmp_path):
    model, x = case.model, case.x
    onnx_model = export(model)
    check_valid(onnx_model)
    expected = keras_outputs(model, x)
    actual = ort_outputs(onnx_model, {onnx_model.graph.input[0].name: x})
    for a, e in zip(actual, expected):
        assert_close(a, e)


@checks("stateful")
def check_stateful_model_streams_in_chunks_like_one_long_run(name, case, tmp_path):
    from spikeonnx.runtime import StreamingSession

    model, x = case.model, case.x
    expected_spikes, expected = keras_outputs(model, x)  # one long run from the reset state

    onnx_model = export(model)  # stateful layers always get state inputs
    check_valid(onnx_model)
    assert [i.name for i in onnx_model.graph.input][1:] == ["sa/state_in", "lp/state_in"]
    session = StreamingSession(onnx_model)
    chunked = session.run_chunked(x, chunk=7)
    np.testing.assert_array_equal(chunked["sa"], expected_spikes)
    assert_close(chunked["lp"], expected)


@checks("nested")
def check_nested_model_is_walked(name, case, tmp_path):
    outer, x = case.model, case.x
    onnx_model = export(outer)
    check_valid(onnx_model)
    assert [n.name for n in spiking_nodes(onnx_model)] == ["inner_sa"]
    (expected,) = keras_outputs(outer, x)
    (actual,) = ort_outputs(onnx_model, {onnx_model.graph.input[0].name: x})
    assert_close(actual, expected)


@checks("no_spiking")
def check_model_without_spiking_layers_is_plain_onnx(name, case, tmp_path):
    import onnxruntime as ort

    model, x = case.model, case.x
    assert case.export_kwargs == {"opset": 15}
    path = tmp_path / "plain.onnx"
    onnx_model = export(model, path, **case.export_kwargs)
    assert path.is_file()
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert all(o.domain != "spikeonnx" for o in onnx_model.opset_import)
    assert {o.domain: o.version for o in onnx_model.opset_import}[""] == 15
    # runs in plain onnxruntime, without our op library
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {onnx_model.graph.input[0].name: x})
    (expected,) = keras_outputs(model, x)
    assert_close(actual, expected)


@checks("fixed_length_flatten")
def check_fixed_length_model_falls_back_to_static_time(name, case, tmp_path):
    # Flatten over time needs the declared number of timesteps
    model, x = case.model, case.x
    onnx_model = export(model)
    check_valid(onnx_model)
    dims = onnx_model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 6
    assert metadata(onnx_model)["spikeonnx.time_axes"][onnx_model.graph.input[0].name] is None
    (expected,) = keras_outputs(model, x)
    (actual,) = ort_outputs(onnx_model, {onnx_model.graph.input[0].name: x})
    assert_close(actual, expected)


@checks("initial_state_input")
def check_initial_state_from_a_model_input_and_keras_ops(name, case, tmp_path):
    model, (x, v) = case.model, case.x
    onnx_model = export(model)
    check_valid(onnx_model)
    assert [i.name for i in onnx_model.graph.input] == ["rates", "v0"]
    (node,) = spiking_nodes(onnx_model)
    assert len(node.input) == 2  # the voltage comes from the graph input, not a seed
    assert metadata(onnx_model)["spikeonnx.batch_axes"]["v0"] == 0
    (actual,) = ort_outputs(onnx_model, {"rates": x, "v0": v})
    np.testing.assert_array_equal(actual, np.asarray(model([x, v], training=False)))


def test_export_is_the_function_in_any_import_order():
    import spikeonnx
    import spikeonnx.exporter as module

    assert spikeonnx.export is module.export and callable(spikeonnx.export)
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert isinstance(spikeonnx.export(plain), onnx.ModelProto)


@checks("time_major_alpha")
def check_time_major_alpha_streams_in_chunks(name, case, tmp_path):
    from spikeonnx.runtime import StreamingSession

    model, x = case.model, case.x
    assert case.time_major and x.shape == (40, 2, 3)  # (T, B, S)
    onnx_model = export(model, state_io=True)
    check_valid(onnx_model)
    assert metadata(onnx_model)["spikeonnx.time_axes"] == {
        onnx_model.graph.input[0].name: 0, "al/state_in": None, "al": 0, "al/state_out": None,
    }
    assert_alpha_wired_directly(onnx_model, "al", state_io=True)
    stream = StreamingSession(onnx_model)
    chunked = stream.run_chunked(x, chunk=7)["al"]
    whole = stream.run_chunked(x, chunk=40)["al"]
    np.testing.assert_array_equal(chunked, whole)  # the op carries (s1, s2) exactly
    (expected,) = keras_outputs(model, x)
    assert_close(chunked, expected)


@checks("alpha_between_dense", "alpha_between_dense_time_major")
def check_alpha_between_dense_layers_streams_exactly(name, case, tmp_path):
    from spikeonnx.runtime import StreamingSession

    time_major = name.endswith("_time_major")
    model, x = case.model, case.x
    assert case.time_major == time_major and x.shape == ((30, 3, 5) if time_major else (3, 30, 5))
    plain = export(model)
    check_valid(plain)
    assert_alpha_wired_directly(plain, "al", state_io=False)
    (expected,) = keras_outputs(model, x)
    (actual,) = ort_outputs(plain, {plain.graph.input[0].name: x})
    assert_close(actual, expected)
    (ref,) = reference_outputs(plain, {plain.graph.input[0].name: x})
    assert_close(ref, actual, rtol=1e-6)

    streaming = export(model, state_io=True)
    check_valid(streaming)
    assert_alpha_wired_directly(streaming, "al", state_io=True)
    level = np.asarray(model.get_layer("al").cell.initial_level).reshape(-1).tolist()
    assert metadata(streaming)["spikeonnx.initial_state"]["al/state_in"] == {"kind": "constant",
                                                                             "value": [level, level]}
    stream = StreamingSession(streaming)
    chunked = stream.run_chunked(x, chunk=4)
    final = stream.states["al/state_in"]
    whole = stream.run_chunked(x, chunk=30)
    np.testing.assert_array_equal(chunked["d_out"], whole["d_out"])
    np.testing.assert_array_equal(final, stream.states["al/state_in"])
    np.testing.assert_array_equal(whole["d_out"], actual)  # the rest state is the op's own start
    assert_close(chunked["d_out"], expected)


def check_matches_keras(name, case, tmp_path):
    """The check of a zoo entry without one of its own: Keras and onnxruntime agree."""
    onnx_model = export(case.model, **case.export_kwargs)
    check_valid(onnx_model)
    assert [n.op_type for n in spiking_nodes(onnx_model)].count("SpikingActivation") >= 1
    expected = keras_outputs(case.model, case.x)
    actual = ort_outputs(onnx_model, {onnx_model.graph.input[0].name: case.x})
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert_close(a, e)
    if name == "fixed_length_dense":
        # exported with a dynamic time axis: it also runs on another number of steps
        assert metadata(onnx_model)["spikeonnx.time_axes"][onnx_model.graph.input[0].name] == 1
        (longer,) = ort_outputs(onnx_model, {onnx_model.graph.input[0].name: np.concatenate([case.x] * 2, 1)})
        assert longer.shape == (case.x.shape[0], 2 * case.x.shape[1], 3)


@needs_ops
@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model(name, tmp_path):
    """Every zoo entry, by construction: its own check above, or the generic one."""
    case = ZOO[name]()
    _CHECKS.get(name, check_matches_keras)(name, case, tmp_path)


def test_every_check_is_of_a_zoo_entry():
    assert set(_CHECKS) <= set(ZOO), sorted(set(_CHECKS) - set(ZOO))
