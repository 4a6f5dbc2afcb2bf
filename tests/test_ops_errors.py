"""Bad inputs to the compiled ``spikeonnx`` kernels raise clear onnxruntime errors.

One test per kind of mistake.  Each checks that onnxruntime raises (when the session is
created for bad attributes, when it runs for bad tensors), that the message names the op,
the offending input or attribute and what was expected, and that the process carries on:
a correct model still runs in the same interpreter afterwards.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from spikeonnx.ops import library_path
from tests.conftest import one_node_model


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.register_custom_ops_library(library_path())
    options.log_severity_level = 4  # the expected errors would otherwise be logged too
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _error_of(op: str, inputs: Sequence[Optional[np.ndarray]], **attrs) -> str:
    """Message of the onnxruntime exception raised while building or running the model."""
    with pytest.raises(Exception) as info:
        session = _session(one_node_model(op, inputs, name="bad_node", **attrs))
        session.run(None, {f"in{i}": v for i, v in enumerate(inputs) if v is not None})
    # onnxruntime's own exception classes (InvalidArgument, RuntimeException, Fail, ...).
    assert type(info.value).__module__.startswith("onnxruntime"), type(info.value)
    _still_works()
    return str(info.value)


def _still_works() -> None:
    # Rate 2 with dt 0.5 fills the voltage by exactly 1 per step: one spike (of 1/dt) each.
    x = np.full((1, 3, 2), 2.0, np.float32)
    initial = np.zeros((1, 2), np.float32)
    (spikes,) = _session(one_node_model("SpikingActivation", [x, initial], name="bad_node", dt=0.5)).run(None, {"in0": x, "in1": initial})
    np.testing.assert_array_equal(spikes, np.full((1, 3, 2), 2.0, np.float32))


def _assert_mentions(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


X = np.ones((2, 5, 3), np.float32)
TAU = np.array([0.01], np.float32)


# ---------------------------------------------------------------------------------------
# Sequence input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("op, name", [("SpikingActivation", "rates"), ("Lowpass", "x"), ("Alpha", "x")])
def test_rank_one_sequence(op, name):
    x = np.ones((5,), np.float32)
    inputs = [x] if op == "SpikingActivation" else [x, TAU]
    message = _error_of(op, inputs, dt=0.001)
    _assert_mentions(message, op, f"'{name}'", "(B, T, *S)", "(5,)")


def test_rank_one_sequence_time_major_names_layout():
    message = _error_of("Lowpass", [np.ones((4,), np.float32), TAU], dt=0.001, time_major=1)
    _assert_mentions(message, "Lowpass", "'x'", "(T, B, *S)")


@pytest.mark.parametrize("op, name", [("SpikingActivation", "rates"), ("Lowpass", "x"), ("Alpha", "x")])
def test_integer_sequence(op, name):
    x = np.ones((2, 5, 3), np.int32)
    inputs = [x] if op == "SpikingActivation" else [x, np.ones((1,), np.int32)]
    message = _error_of(op, inputs, dt=0.001)
    _assert_mentions(message, op, f"'{name}'", "float32 or float64", "int32", "(B, T, *S)")


# ---------------------------------------------------------------------------------------
# Parameters and states
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["Lowpass", "Alpha"])
def test_tau_not_broadcastable(op):
    message = _error_of(op, [X, np.ones((4,), np.float32)], dt=0.001)
    _assert_mentions(message, op, "'tau'", "(4,)", "(1, *S) = (1, 3)")


@pytest.mark.parametrize("op", ["Lowpass", "Alpha"])
def test_tau_with_too_many_dimensions(op):
    # (2, 3) would broadcast numerically with x's batch, but tau is per unit only.
    message = _error_of(op, [X, np.ones((2, 3), np.float32)], dt=0.001)
    _assert_mentions(message, op, "'tau'", "(2, 3)", "(1, *S) = (1, 3)")


@pytest.mark.parametrize("op", ["Lowpass", "Alpha"])
def test_tau_wrong_dtype(op):
    message = _error_of(op, [X, np.ones((3,), np.float64)], dt=0.001)
    _assert_mentions(message, op, "'tau'", "float32", "float64", "(1, *S) = (1, 3)")


@pytest.mark.parametrize("op", ["Lowpass", "Alpha"])
def test_tau_nan(op):
    message = _error_of(op, [X, np.array([0.01, math.nan, 0.02], np.float32)], dt=0.001)
    _assert_mentions(message, op, "'tau'", "NaN", "(1, *S) = (1, 3)")


@pytest.mark.parametrize("op", ["Lowpass", "Alpha"])
def test_initial_level_not_broadcastable(op):
    message = _error_of(op, [X, TAU, np.ones((3, 3), np.float32)], dt=0.001)
    _assert_mentions(message, op, "'initial_level'", "(3, 3)", "(B, *S) = (2, 3)")


@pytest.mark.parametrize(
    "state_shape",
    [(2, 3), (2, 3, 3), (3, 2, 3), (2, 2, 4), (2, 2, 3, 1), (2, 1, 3)],
    ids=["rank2", "three-stages", "batch3", "units4", "rank4", "one-stage"],
)
def test_initial_state_wrong_shape(state_shape):
    message = _error_of("Alpha", [X, TAU, np.zeros((2, 3), np.float32), np.zeros(state_shape, np.float32)], dt=0.001)
    _assert_mentions(message, "Alpha", "bad_node", "'initial_state'", "(B, 2, *S) = (2, 2, 3)", str(state_shape))


def test_initial_state_wrong_shape_time_major():
    # (T, B, S) = (5, 2, 3): the state is still batch-first, (B, 2, *S) = (2, 2, 3).
    x = np.ones((5, 2, 3), np.float32)
    message = _error_of("Alpha", [x, TAU, np.zeros((2, 3), np.float32), np.zeros((5, 2, 3), np.float32)],
                        dt=0.001, time_major=1)
    _assert_mentions(message, "Alpha", "'initial_state'", "(B, 2, *S) = (2, 2, 3)", "(5, 2, 3)")


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_initial_state_wrong_dtype(dtype):
    message = _error_of("Alpha", [X, TAU, np.zeros((2, 3), np.float32), np.zeros((2, 2, 3), dtype)], dt=0.001)
    _assert_mentions(message, "Alpha", "'initial_state'", "float32", np.dtype(dtype).name, "(B, 2, *S) = (2, 2, 3)")


def test_initial_voltage_not_broadcastable():
    message = _error_of("SpikingActivation", [X, np.ones((2, 4), np.float32)], dt=0.001)
    _assert_mentions(message, "SpikingActivation", "'initial_voltage'", "(2, 4)", "(B, *S) = (2, 3)")


def test_initial_voltage_wrong_dtype():
    message = _error_of("SpikingActivation", [X, np.ones((2, 3), np.float64)], dt=0.001)
    _assert_mentions(message, "SpikingActivation", "'initial_voltage'", "float64", "(B, *S) = (2, 3)")


def test_missing_tau():
    message = _error_of("Alpha", [X, None, np.zeros((2, 3), np.float32)], dt=0.001)
    # onnxruntime itself rejects a missing required input when the graph is checked.
    _assert_mentions(message, "Alpha", "input 1")


# ---------------------------------------------------------------------------------------
# Attributes (rejected when the session is created)
# ---------------------------------------------------------------------------------------

ALL_OPS = [("SpikingActivation", [X]), ("Lowpass", [X, TAU]), ("Alpha", [X, TAU])]


@pytest.mark.parametrize("op, inputs", ALL_OPS)
@pytest.mark.parametrize("dt", [0.0, -0.001])
def test_dt_not_positive(op, inputs, dt):
    message = _error_of(op, inputs, dt=dt)
    _assert_mentions(message, op, "'dt'", "> 0")


@pytest.mark.parametrize("op, inputs", ALL_OPS)
def test_dt_nan(op, inputs):
    message = _error_of(op, inputs, dt=math.nan)
    _assert_mentions(message, op, "'dt'", "finite", "nan")


@pytest.mark.parametrize("op, inputs", ALL_OPS)
def test_dt_infinite(op, inputs):
    message = _error_of(op, inputs, dt=math.inf)
    _assert_mentions(message, op, "'dt'", "finite", "inf")


@pytest.mark.parametrize("op, inputs", ALL_OPS)
def test_dt_missing(op, inputs):
    message = _error_of(op, inputs)
    _assert_mentions(message, op, "'dt'", "missing")


def test_dt_as_string():
    message = _error_of("Lowpass", [X, TAU], dt="fast")
    _assert_mentions(message, "Lowpass", "'dt'")


def test_time_major_out_of_range():
    message = _error_of("Lowpass", [X, TAU], dt=0.001, time_major=2)
    _assert_mentions(message, "Lowpass", "'time_major'", "0 or 1", "2")


def test_integer_dt_is_rejected():
    # helper.make_node(dt=1) stores an INT attribute; the schema says FLOAT, and a kernel
    # that quietly converted it would disagree with onnx.checker, so it is refused.
    message = _error_of("SpikingActivation", [X], dt=1)
    _assert_mentions(message, "SpikingActivation", "bad_node", "'dt'", "FLOAT", "INT")
