"""Regression tests for issue 10, items 1, 5 and 6: the ops on hostile or careless input.

1. Empty work is free and sizes are checked: an empty input (T = 0, B = 0 or a zero unit
   axis) draws no seeded voltage nobody asked for and allocates no per-unit buffer; an
   output whose size overflows int64 or cannot be allocated is an error naming the op,
   the node, the output and the input (never ``std::bad_alloc`` or an onnxruntime
   internal message alone).  With T = 0 the final state is the initial one, the seeded
   draw included, in the kernel and in ``reference.py`` alike.
5. Attributes of the wrong type (``time_major=1.0``, ``seed=3.0``, ``dt=1``) are refused
   when the session is created, by the kernels, by ``ReferenceEvaluator`` and by
   :class:`spikeonnx.runtime.InferenceSession`; unknown attributes (which the kernel API
   cannot list) are refused by the latter two.
6. ``initial_voltage`` must be exactly ``(B, *S)``: ``(1, S)``, ``(S,)`` and ``()`` are
   refused, with both shapes in the message.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from spikeonnx import reference
from spikeonnx.contract import DOMAIN, MAX_IR_VERSION
from spikeonnx.ops import library_path
from spikeonnx.runtime import InferenceSession

_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
TAU = np.array([0.01], np.float32)


def _model(op: str, n_inputs: int, n_outputs: int, dtype=np.float32, **attrs) -> onnx.ModelProto:
    """One node with graph inputs in0.. (no declared shape) and outputs out0.."""
    names = [f"in{i}" for i in range(n_inputs)]
    outputs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outputs, domain=DOMAIN, name="node0", **attrs)
    elem = _TYPES[np.dtype(dtype)]
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, elem, None) for n in names],
        [helper.make_tensor_value_info(o, elem, None) for o in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = MAX_IR_VERSION
    return model


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.register_custom_ops_library(library_path())
    options.log_severity_level = 4
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _run_values(model: onnx.ModelProto, values: Sequence) -> list:
    """Run with OrtValues (numpy cannot hold every empty shape onnxruntime can)."""
    feeds = {f"in{i}": v for i, v in enumerate(values)}
    return _session(model).run_with_ort_values(None, feeds)


def _empty(shape: Sequence[int], dtype=np.float32) -> ort.OrtValue:
    return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype)


def _ort_error(model: onnx.ModelProto, values: Optional[Sequence] = None) -> str:
    with pytest.raises(Exception) as info:
        session = _session(model)
        if values is not None:
            session.run_with_ort_values(None, {f"in{i}": v for i, v in enumerate(values)})
    assert type(info.value).__module__.startswith("onnxruntime"), type(info.value)
    return str(info.value)


def _mentions(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def _filter_inputs(op: str, x) -> list:
    """x and tau (the level input is optional for the kernels)."""
    del op  # same inputs for both filters
    return [x, ort.OrtValue.ortvalue_from_numpy(TAU)]


# ---------------------------------------------------------------------------------------
# Item 1: empty work is free, sizes are checked
# ---------------------------------------------------------------------------------------

# 2**40 units per batch entry: a final state would be 4 TiB, a per-unit float buffer too.
HUGE_EMPTY = [(1, 0, 2**20, 2**20), (0, 3, 2**20, 2**20), (2, 5, 0, 2**40)]


def test_empty_seeded_spiking_activation_draws_nothing():
    # Before the fix this drew 2**40 seeded voltages that nothing used (about 47 minutes).
    # Run in a child process so that a regression fails the test instead of hanging the
    # suite: the timeout is a hang guard four orders of magnitude above the real cost.
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        from test_robustness_ops import _empty, _model, _run_values
        (spikes,) = _run_values(_model("SpikingActivation", 1, 1, dt=0.001, seed=5), [_empty((1, 0, 2**20, 2**20))])
        print(tuple(spikes.shape()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str((1, 0, 2**20, 2**20))


@pytest.mark.parametrize("shape", HUGE_EMPTY)
@pytest.mark.parametrize("op", ["Lowpass", "Alpha"])
def test_empty_filters_allocate_no_per_unit_buffers(op, shape):
    # Before the fix: std::bad_alloc from the (1, *S) coefficient buffers (4 TiB).
    (y,) = _run_values(_model(op, 2, 1, dt=0.001), _filter_inputs(op, _empty(shape)))
    assert tuple(y.shape()) == shape


@pytest.mark.parametrize("shape", [(0, 3, 2**20, 2**20), (2, 5, 0, 2**40)])
@pytest.mark.parametrize("op", ["SpikingActivation", "Lowpass", "Alpha"])
def test_empty_state_outputs_of_empty_batches(op, shape):
    inputs = [_empty(shape)] if op == "SpikingActivation" else _filter_inputs(op, _empty(shape))
    y, state = _run_values(_model(op, len(inputs), 2, dt=0.001), inputs)
    assert tuple(y.shape()) == shape
    units = shape[2:]
    assert tuple(state.shape()) == (shape[0], *((2,) if op == "Alpha" else ()), *units)


@pytest.mark.parametrize(
    "op, output", [("SpikingActivation", "final_voltage"), ("Lowpass", "final_level"), ("Alpha", "final_state")]
)
@pytest.mark.parametrize("shape", [(3, 0, 2**31, 2**31), (1, 0, 2**40, 2**40)])
def test_state_output_overflowing_int64_is_a_clear_error(op, output, shape):
    # Before the fix the size wrapped around (or onnxruntime's own overflow check fired
    # with a message that named neither the op nor the input).
    name = "rates" if op == "SpikingActivation" else "x"
    inputs = [_empty(shape)] if op == "SpikingActivation" else _filter_inputs(op, _empty(shape))
    message = _ort_error(_model(op, len(inputs), 2, dt=0.001), inputs)
    _mentions(message, op, "node0", f"'{output}'", f"'{name}'", str(shape), "int64")


@pytest.mark.parametrize(
    "op, output", [("SpikingActivation", "final_voltage"), ("Lowpass", "final_level"), ("Alpha", "final_state")]
)
def test_state_output_too_large_to_allocate_is_a_clear_error(op, output):
    # (1, 2**29, 2**29) float32 is 2**60 bytes: no machine can allocate it.
    shape = (1, 0, 2**29, 2**29)
    inputs = [_empty(shape)] if op == "SpikingActivation" else _filter_inputs(op, _empty(shape))
    message = _ort_error(_model(op, len(inputs), 2, dt=0.001), inputs)
    _mentions(message, op, "node0", f"'{output}'", str(shape), "cannot be allocated")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("time_major", [0, 1])
def test_zero_steps_final_voltage_is_the_seeded_draw(dtype, time_major):
    # The contract: with T = 0 the final state is the initial one; for a seeded node
    # that is the draw, so kernel and reference agree on it bit for bit.
    rates = np.zeros((0, 3, 4, 5) if time_major else (3, 0, 4, 5), dtype)
    model = _model("SpikingActivation", 1, 2, dtype, dt=0.001, seed=17, time_major=time_major)
    spikes, final = _session(model).run(None, {"in0": rates})
    want_spikes, want_final = reference.spiking_activation(rates, 0.001, seed=17, time_major=bool(time_major))
    assert spikes.shape == want_spikes.shape == rates.shape
    np.testing.assert_array_equal(final, reference.tf_stateless_uniform((3, 4, 5), 17).astype(dtype))
    np.testing.assert_array_equal(final, want_final)
    (ref_spikes, ref_final) = ReferenceEvaluator(model, new_ops=reference.REFERENCE_OPS).run(None, {"in0": rates})
    np.testing.assert_array_equal(ref_final, final)


@pytest.mark.parametrize("op", ["Lowpass", "Alpha"])
def test_zero_steps_filters_return_their_start_state(op):
    rng = np.random.default_rng(1)
    x = np.zeros((3, 0, 4), np.float32)
    level = rng.uniform(-1, 1, (1, 4)).astype(np.float32)  # broadcast over the batch
    inputs = [x, TAU, level]
    if op == "Alpha":
        inputs.append(rng.uniform(-1, 1, (1, 2, 4)).astype(np.float32))  # shared by the batch
    model = _model(op, len(inputs), 2, dt=0.001)
    y, final = _session(model).run(None, {f"in{i}": v for i, v in enumerate(inputs)})
    extra = {"initial_state": inputs[3]} if op == "Alpha" else {}
    want_y, want_final = getattr(reference, op.lower())(x, TAU, level, 0.001, **extra)
    assert y.shape == want_y.shape == x.shape
    np.testing.assert_array_equal(final, want_final)
    if op == "Alpha":
        # Without a state both stages rest at the level.
        y, final = _session(_model(op, 3, 2, dt=0.001)).run(None, {"in0": x, "in1": TAU, "in2": level})
        np.testing.assert_array_equal(final, np.broadcast_to(level[:, None], (3, 2, 4)))


def test_reference_evaluator_empty_input_is_free():
    # The reference skips the draw and the coefficients too (it would otherwise try to
    # allocate 4 TiB arrays).
    x = np.empty((1, 0, 2**20, 2**20), np.float32)
    level = np.zeros((1,), np.float32)
    for op, feeds in [("SpikingActivation", [x]), ("Lowpass", [x, TAU, level]), ("Alpha", [x, TAU, level])]:
        model = _model(op, len(feeds), 1, dt=0.001)
        (y,) = ReferenceEvaluator(model, new_ops=reference.REFERENCE_OPS).run(
            None, {f"in{i}": v for i, v in enumerate(feeds)}
        )
        assert y.shape == x.shape


# ---------------------------------------------------------------------------------------
# Item 5: wrongly typed and unknown attributes
# ---------------------------------------------------------------------------------------

WRONG_TYPES = [
    ("SpikingActivation", 1, {"dt": 0.001, "time_major": 1.0}, "time_major", "INT", "FLOAT"),
    ("SpikingActivation", 1, {"dt": 0.001, "seed": 3.0}, "seed", "INT", "FLOAT"),
    ("SpikingActivation", 1, {"dt": 0.001, "seed": "3"}, "seed", "INT", "STRING"),
    ("SpikingActivation", 1, {"dt": 1}, "dt", "FLOAT", "INT"),
    ("Lowpass", 2, {"dt": 0.001, "time_major": 1.0}, "time_major", "INT", "FLOAT"),
    ("Alpha", 2, {"dt": 0.001, "time_major": 0.0}, "time_major", "INT", "FLOAT"),
    ("Alpha", 2, {"dt": 2}, "dt", "FLOAT", "INT"),
]


@pytest.mark.parametrize("op, n_inputs, attrs, name, want, got", WRONG_TYPES)
def test_kernel_refuses_wrongly_typed_attribute_at_session_creation(op, n_inputs, attrs, name, want, got):
    # Before the fix time_major=1.0 ran batch-major, seed=3.0 ran seed 0.
    message = _ort_error(_model(op, n_inputs, 1, **attrs))  # no run: creation fails
    _mentions(message, op, "node0", f"'{name}'", want, got)


@pytest.mark.parametrize("op, n_inputs, attrs, name, want, got", WRONG_TYPES)
def test_reference_evaluator_refuses_wrongly_typed_attribute(op, n_inputs, attrs, name, want, got):
    with pytest.raises(ValueError) as info:
        ReferenceEvaluator(_model(op, n_inputs, 1, **attrs), new_ops=reference.REFERENCE_OPS)
    _mentions(str(info.value), op, "node0", f"'{name}'", want, got)


@pytest.mark.parametrize("op, n_inputs, attrs, name, want, got", WRONG_TYPES)
def test_inference_session_refuses_wrongly_typed_attribute(op, n_inputs, attrs, name, want, got):
    with pytest.raises(ValueError) as info:
        InferenceSession(_model(op, n_inputs, 1, **attrs))
    _mentions(str(info.value), op, "node0", f"'{name}'", want, got)


@pytest.mark.parametrize("op, n_inputs", [("SpikingActivation", 1), ("Lowpass", 2), ("Alpha", 2)])
def test_unknown_attribute_is_refused(op, n_inputs):
    model = _model(op, n_inputs, 1, dt=0.001, time_mayor=1)
    with pytest.raises(ValueError) as info:
        InferenceSession(model)
    _mentions(str(info.value), op, "node0", "'time_mayor'", "unknown attribute")
    with pytest.raises(ValueError) as info:
        ReferenceEvaluator(model, new_ops=reference.REFERENCE_OPS)
    _mentions(str(info.value), op, "node0", "'time_mayor'", "unknown attribute")


def test_unknown_attribute_inside_a_subgraph_is_refused():
    bad = helper.make_node("Lowpass", ["x", "tau"], ["y"], domain=DOMAIN, name="inner", dt=0.001, seed=1)
    body = helper.make_graph([bad], "body", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    node = helper.make_node("If", ["cond"], ["out"], then_branch=body, else_branch=body)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, t, None) for n, t in
         [("cond", TensorProto.BOOL), ("x", TensorProto.FLOAT), ("tau", TensorProto.FLOAT)]],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = MAX_IR_VERSION
    with pytest.raises(ValueError, match="Lowpass node 'inner': unknown attribute 'seed'"):
        InferenceSession(model)


def test_correctly_typed_attributes_still_run():
    x = np.full((2, 4, 3), 400.0, np.float32)
    model = _model("SpikingActivation", 1, 2, dt=0.001, time_major=1, seed=3)
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("in0", TensorProto.FLOAT, ["T", "B", 3]))
    spikes, final = InferenceSession(model).run(None, {"in0": x})
    want = reference.spiking_activation(x, 0.001, seed=3, time_major=True)
    np.testing.assert_array_equal(spikes, want[0])
    np.testing.assert_array_equal(final, want[1])


# ---------------------------------------------------------------------------------------
# Item 6: initial_voltage is exactly (B, *S)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("voltage_shape", [(1, 3), (3,), ()], ids=["1xS", "S", "scalar"])
def test_initial_voltage_is_not_broadcast(voltage_shape):
    # Before the fix the kernel broadcast these; the contract and reference.py refuse them.
    x = np.full((2, 5, 3), 100.0, np.float32)
    voltage = np.full(voltage_shape, 0.5, np.float32)
    model = _model("SpikingActivation", 2, 1, dt=0.001)
    message = _ort_error(model, [ort.OrtValue.ortvalue_from_numpy(x), ort.OrtValue.ortvalue_from_numpy(voltage)])
    _mentions(message, "SpikingActivation", "node0", "'initial_voltage'", "(B, *S) = (2, 3)",
              str(voltage_shape), "no broadcasting")
    with pytest.raises(ValueError, match="initial_voltage"):
        reference.spiking_activation(x, 0.001, initial_voltage=voltage)
