"""Property-based fuzzing of the compiled ``spikeonnx`` kernels against ``reference.py``.

Hypothesis draws an op, element type, layout, shape (zero-sized axes included), ``dt``,
``seed``, which optional inputs are given and in which broadcast form, whether the state
output is asked for, and sometimes a wrongly shaped state-like input.  Each example runs
as a one-node model in onnxruntime and is held against the NumPy reference:

* where the reference raises ``ValueError``, the kernel raises too (and vice versa);
* otherwise spikes and final voltages agree bit for bit, in float32 and float64, and the
  filters agree bit for bit in float32 (both sides perform the same IEEE operations in
  the same order and round ``exp`` once from float64, see ``tests/test_ops_kernels.py``);
  float64 filters agree to 1e-12 of the signal's scale, because the C library's and
  NumPy's float64 ``exp`` may differ in the last bit.

Bounded for CI: a few hundred small examples, seconds on two cores.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import onnx
import onnxruntime as ort
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from spikeonnx import reference
from spikeonnx.contract import DOMAIN, MAX_IR_VERSION
from spikeonnx.ops import library_path

_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _model(op: str, inputs: List[Optional[np.ndarray]], n_outputs: int, dtype, **attrs) -> onnx.ModelProto:
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    while names and not names[-1]:
        names.pop()
    outputs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outputs, domain=DOMAIN, name="fuzz", **attrs)
    elem = _TYPES[np.dtype(dtype)]
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, elem, None) for n in names if n],
        [helper.make_tensor_value_info(o, elem, None) for o in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = MAX_IR_VERSION
    return model


def _run(model: onnx.ModelProto, inputs: List[Optional[np.ndarray]], threads: int) -> list:
    options = ort.SessionOptions()
    options.register_custom_ops_library(library_path())
    options.intra_op_num_threads = threads
    options.log_severity_level = 4
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {f"in{i}": v for i, v in enumerate(inputs) if v is not None})


def _assert_bitwise(actual: np.ndarray, expected: np.ndarray) -> None:
    expected = np.ascontiguousarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (actual.shape, expected.shape)
    width = np.uint32 if actual.dtype == np.float32 else np.uint64
    mismatch = actual.view(width) != expected.view(width)
    assert not mismatch.any(), f"{mismatch.sum()} of {mismatch.size} elements differ"


def _assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    if expected.size:
        scale = max(float(np.abs(expected).max()), 1e-30)
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * scale)


# -- strategies ----------------------------------------------------------------------------

dims = st.integers(0, 4)


@st.composite
def geometries(draw) -> Tuple[Tuple[int, ...], bool]:
    """(B, T, *S) and time_major; unit axes of 0 to 5 elements, one of them sometimes long."""
    batch = draw(st.integers(0, 3))
    time = draw(st.integers(0, 6))
    units = draw(st.lists(dims, min_size=0, max_size=3))
    if units and draw(st.booleans()):
        units[-1] = draw(st.sampled_from([65, 130, 1025]))  # several kernel blocks
    return (batch, time, *units), draw(st.booleans())


def _layout(shape: Tuple[int, ...], time_major: bool) -> Tuple[int, ...]:
    return (shape[1], shape[0], *shape[2:]) if time_major else shape


def _values(draw, shape, dtype, low: float, high: float) -> np.ndarray:
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).uniform(low, high, shape).astype(dtype)


def _perturbed(draw, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """A shape near ``shape``: one axis changed, dropped or added."""
    shape = list(shape)
    kind = draw(st.sampled_from(["change", "drop", "add"]))
    if kind == "change" and shape:
        i = draw(st.integers(0, len(shape) - 1))
        shape[i] = draw(st.integers(0, 4).filter(lambda d, old=shape[i]: d != old))
    elif kind == "drop" and shape:
        del shape[draw(st.integers(0, len(shape) - 1))]
    else:
        shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(1, 3)))
    return tuple(shape)


dtypes = st.sampled_from([np.float32, np.float64])
dts = st.sampled_from([0.001, 0.1, 1.0, 0.0137]) | st.floats(1e-4, 2.0).map(lambda v: float(np.float32(v)))


# -- SpikingActivation -----------------------------------------------------------------------


@FUZZ
@given(data=st.data(), geometry=geometries(), dtype=dtypes, dt=dts,
       seed=st.integers(-(2**63), 2**63 - 1), n_outputs=st.integers(1, 2), threads=st.integers(1, 2))
def test_spiking_activation_matches_reference(data, geometry, dtype, dt, seed, n_outputs, threads):
    shape, time_major = geometry
    rates = _values(data.draw, _layout(shape, time_major), dtype, -300.0, 1500.0)
    state_shape = (shape[0], *shape[2:])
    form = data.draw(st.sampled_from(["absent", "exact", "perturbed"]))
    voltage = None
    if form != "absent":
        v_shape = state_shape if form == "exact" else _perturbed(data.draw, state_shape)
        voltage = _values(data.draw, v_shape, dtype, 0.0, 1.0)
    model = _model("SpikingActivation", [rates, voltage], n_outputs, dtype, dt=dt, seed=seed,
                   time_major=int(time_major))
    try:
        want = reference.spiking_activation(rates, np.float32(dt), initial_voltage=voltage, seed=seed,
                                            time_major=time_major)
    except ValueError:
        try:
            _run(model, [rates, voltage], threads)
        except (ort.capi.onnxruntime_pybind11_state.InvalidArgument,
                ort.capi.onnxruntime_pybind11_state.Fail) as err:
            assert "initial_voltage" in str(err)
            return
        raise AssertionError(
            f"the kernel accepted initial_voltage of shape {voltage.shape}, the reference did not"
        ) from None
    got = _run(model, [rates, voltage], threads)
    assert len(got) == n_outputs
    for actual, expected in zip(got, want[:n_outputs], strict=True):
        _assert_bitwise(actual, expected)


# -- Lowpass and Alpha -----------------------------------------------------------------------


def _param_form(draw, target: Tuple[int, ...]) -> Tuple[int, ...]:
    """A shape that broadcasts to ``target`` (a suffix with some axes set to 1), or a perturbed one."""
    if draw(st.integers(0, 5)) == 0:
        return _perturbed(draw, target)
    keep = draw(st.integers(0, len(target)))
    suffix = list(target[len(target) - keep:])
    for i in range(len(suffix)):
        if draw(st.booleans()):
            suffix[i] = 1
    return tuple(suffix)


@FUZZ
@given(data=st.data(), op=st.sampled_from(["Lowpass", "Alpha"]), geometry=geometries(), dtype=dtypes, dt=dts,
       n_outputs=st.integers(1, 2), threads=st.integers(1, 2))
def test_filters_match_reference(data, op, geometry, dtype, dt, n_outputs, threads):
    shape, time_major = geometry
    x = _values(data.draw, _layout(shape, time_major), dtype, -2.0, 3.0)
    units = shape[2:]
    state_shape = (shape[0], *units)
    tau = _values(data.draw, _param_form(data.draw, (1, *units)), dtype, -0.01, 0.2)
    level = None
    if data.draw(st.booleans()):
        level = _values(data.draw, _param_form(data.draw, state_shape), dtype, -1.0, 1.0)
    state = None
    if op == "Alpha" and data.draw(st.booleans()):
        full = (shape[0], 2, *units)
        form = data.draw(st.sampled_from(["batch", "shared", "perturbed"]))
        s_shape = {"batch": full, "shared": (1, *full[1:])}.get(form) or _perturbed(data.draw, full)
        state = _values(data.draw, s_shape, dtype, -1.0, 1.0)
    inputs = [x, tau, level] + ([state] if op == "Alpha" else [])
    model = _model(op, inputs, n_outputs, dtype, dt=dt, time_major=int(time_major))
    # The kernel runs without initial_level (rest at 0); the reference takes 0 for it.
    ref_level = np.zeros((), dtype) if level is None else level
    extra = {"initial_state": state} if state is not None else {}
    func = reference.lowpass if op == "Lowpass" else reference.alpha
    try:
        want = func(x, tau, ref_level, float(np.float32(dt)), time_major=time_major, **extra)
    except ValueError:
        try:
            _run(model, inputs, threads)
        except (ort.capi.onnxruntime_pybind11_state.InvalidArgument,
                ort.capi.onnxruntime_pybind11_state.Fail):
            return
        raise AssertionError("the kernel accepted inputs the reference refused") from None
    got = _run(model, inputs, threads)
    assert len(got) == n_outputs
    for actual, expected in zip(got, want[:n_outputs], strict=True):
        if dtype == np.float32:
            _assert_bitwise(actual, expected)
        else:
            _assert_close(actual, np.ascontiguousarray(expected))
