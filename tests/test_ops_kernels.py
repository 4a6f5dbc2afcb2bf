"""Numerics of the compiled ``spikeonnx`` onnxruntime kernels.

Every op runs as a one-node ONNX model in onnxruntime with the library from
``spikeonnx.ops.library_path()`` and is compared with the NumPy oracle in
``spikeonnx.reference``.  In float32 all three ops agree with it bit for bit: both sides
perform the same IEEE operations in the same order, and both round the filter
coefficient ``a = exp(-dt/tau)`` once from a float64 ``exp`` (a float32 ``exp`` differs
by an ulp or two between libraries, which the alpha filter's ``1 - a - r*a`` would
amplify).  The filters are also checked against an inline NumPy loop written here from
the contract, and the alpha filter against its closed-form impulse response.  float64
results are compared to 1e-12 (float64 ``exp`` itself may differ in the last bit between
NumPy and the C library).  The seeded initial voltage is checked against TensorFlow
itself.
"""

from __future__ import annotations

import threading
from typing import Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from spikeonnx import reference
from spikeonnx.ops import DOMAIN, library_path
from tests.conftest import finish_model, one_node_model


def _run(model: onnx.ModelProto, inputs: Sequence[Optional[np.ndarray]], threads: int = 1) -> list:
    options = ort.SessionOptions()
    options.register_custom_ops_library(library_path())
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {f"in{i}": value for i, value in enumerate(inputs) if value is not None}
    return session.run(None, feeds)


def _assert_bitwise(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    width = np.uint32 if actual.dtype == np.float32 else np.uint64
    mismatch = actual.view(width) != np.ascontiguousarray(expected).view(width)
    assert not mismatch.any(), f"{mismatch.sum()} of {mismatch.size} elements differ"


def _assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    # Relative to the signal's scale, so that values crossing zero do not blow up the ratio.
    scale = max(float(np.abs(expected).max()), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# (B, T, *S) shapes of ranks 2 to 5, including B=1, T=1 and unit blocks that do not
# divide the kernel's block size.
SHAPES = [(3, 7), (1, 1), (2, 9, 5), (1, 4, 700), (2, 6, 3, 4), (3, 1, 2, 3, 5), (2, 5, 2, 1, 600)]


def _layout(shape, time_major: bool):
    return (shape[1], shape[0], *shape[2:]) if time_major else shape


# ---------------------------------------------------------------------------------------
# SpikingActivation
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("with_initial", [True, False])
def test_spiking_activation_bit_exact(shape, time_major, with_initial):
    rng = np.random.default_rng(sum(shape) + 10 * time_major + with_initial)
    dt = 0.001
    rates = rng.uniform(-200.0, 1200.0, _layout(shape, time_major)).astype(np.float32)
    state_shape = (shape[0], *shape[2:])
    initial = rng.uniform(0.0, 1.0, state_shape).astype(np.float32) if with_initial else None
    spikes, final = _run(one_node_model("SpikingActivation", [rates, initial], 2, dt=dt, time_major=int(time_major), seed=3),
                         [rates, initial])
    want_spikes, want_final = reference.spiking_activation(
        rates, dt, initial_voltage=initial, seed=3, time_major=time_major
    )
    _assert_bitwise(spikes, want_spikes)
    _assert_bitwise(final, want_final)
    # Sanity of the oracle comparison itself: these inputs really spike.
    assert np.count_nonzero(spikes) > 0 or rates.size < 10


def test_spiking_activation_without_state_output_and_float_dt_edge():
    # dt that is not a power of two and rates whose products land on integers exactly.
    rng = np.random.default_rng(1)
    rates = (rng.integers(-3, 40, (4, 30, 17)) * 10.0).astype(np.float32)
    initial = rng.uniform(0.0, 1.0, (4, 17)).astype(np.float32)
    (spikes,) = _run(one_node_model("SpikingActivation", [rates, initial], 1, dt=0.1), [rates, initial])
    _assert_bitwise(spikes, reference.spiking_activation(rates, 0.1, initial_voltage=initial)[0])


def test_spiking_activation_float64():
    rng = np.random.default_rng(2)
    rates = rng.uniform(-50.0, 900.0, (2, 40, 3, 7))
    initial = rng.uniform(0.0, 1.0, (2, 3, 7))
    spikes, final = _run(one_node_model("SpikingActivation", [rates, initial], 2, dt=0.002), [rates, initial])
    want_spikes, want_final = reference.spiking_activation(rates, np.float32(0.002), initial_voltage=initial)
    _assert_bitwise(spikes, want_spikes)
    _assert_bitwise(final, want_final)


def test_spiking_activation_omitted_initial_voltage_uses_seed():
    rng = np.random.default_rng(3)
    rates = rng.uniform(0.0, 500.0, (3, 20, 11)).astype(np.float32)
    spikes, final = _run(one_node_model("SpikingActivation", [rates, None], 2, dt=0.001, seed=42), [rates, None])
    want_spikes, want_final = reference.spiking_activation(rates, 0.001, seed=42)
    _assert_bitwise(spikes, want_spikes)
    _assert_bitwise(final, want_final)


@pytest.mark.parametrize(
    "state_shape, seed",
    # (3, 2051): work items of 1024 units that start inside a Philox block, over many blocks
    [((1, 1), 0), ((3, 5, 7), 1), ((2, 1001), 12345), ((4, 3, 2, 5), -7), ((5, 6), 2**31 - 1), ((3, 2051), 5)],
)
def test_seeded_initial_voltage_matches_tensorflow(state_shape, seed):
    tf = pytest.importorskip("tensorflow")
    expected = tf.random.stateless_uniform(state_shape, seed=(seed, seed), dtype=tf.float32).numpy()
    # One step of zero rate leaves the voltage untouched: final_voltage is the draw itself.
    rates = np.zeros((state_shape[0], 1, *state_shape[1:]), np.float32)
    _, final = _run(one_node_model("SpikingActivation", [rates], 2, dt=0.001, seed=seed), [rates])
    _assert_bitwise(final, expected)


def _seeded_session(seed: int, dtype: type = np.float32, threads: int = 0) -> ort.InferenceSession:
    """A session of one seeded SpikingActivation whose rates (B, T, U) have free sizes."""
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    rates = helper.make_tensor_value_info("in0", elem, ["B", "T", "U"])
    node = helper.make_node("SpikingActivation", ["in0"], ["out0", "out1"], domain=DOMAIN, dt=0.001, seed=seed)
    outs = [helper.make_tensor_value_info(o, elem, None) for o in ("out0", "out1")]
    options = ort.SessionOptions()
    options.register_custom_ops_library(library_path())
    options.intra_op_num_threads = threads
    model = finish_model(helper.make_graph([node], "g", [rates], outs))
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seeded_initial_voltage_is_the_same_draw_at_every_call_and_shape(dtype):
    """The kernel keeps a node's draws between calls (extending them for a larger batch):
    every call of one session, smaller or larger than the last, float32 or float64, still
    gets exactly the seeded voltage of its own shape."""
    session = _seeded_session(11, dtype)
    rng = np.random.default_rng(4)
    # the last two extend the kept draws by more than one work item of 2**16 draws
    for shape in [(2, 3, 700), (5, 2, 2051), (1, 4, 3), (5, 2, 2051), (7, 1, 2051), (1, 2, 70001), (3, 1, 70001)]:
        rates = rng.uniform(0.0, 900.0, shape).astype(dtype)
        spikes, final = session.run(None, {"in0": rates})
        # dt as the node holds it: a float32 attribute
        want_spikes, want_final = reference.spiking_activation(rates, np.float32(0.001), seed=11)
        _assert_bitwise(spikes, want_spikes)
        _assert_bitwise(final, want_final)


def test_seeded_initial_voltage_under_concurrent_calls_of_growing_batches():
    """Calls of one session from several threads at once, with batches that grow the kept
    draws while other calls use them, each get exactly their own shape's seeded voltage."""
    session = _seeded_session(23, threads=1)
    rng = np.random.default_rng(5)
    feeds = [rng.uniform(0.0, 900.0, (batch, 2, 3001)).astype(np.float32) for batch in (1, 9, 2, 17, 4, 33, 8, 65)]
    barrier = threading.Barrier(len(feeds))
    results: list = [None] * len(feeds)

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = [session.run(None, {"in0": feeds[i]}) for _ in range(3)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(feeds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for rates, runs in zip(feeds, results):
        want_spikes, want_final = reference.spiking_activation(rates, 0.001, seed=23)
        for spikes, final in runs:
            _assert_bitwise(spikes, want_spikes)
            _assert_bitwise(final, want_final)


# ---------------------------------------------------------------------------------------
# Lowpass and Alpha
# ---------------------------------------------------------------------------------------

FILTERS = {"Lowpass": reference.lowpass, "Alpha": reference.alpha}


def _oracle(op, x, tau, initial, dt, time_major=False, state=None):
    """Contract formulas step by step in x's dtype, with a = exp(-r) correctly rounded.

    Alpha starts at rest at the level (s1 = s2 = initial), or at ``state`` (B or 1, 2, *S).
    """
    dtype = x.dtype.type
    dt = float(np.float32(dt))  # the ONNX attribute is a float32
    steps = np.moveaxis(x, 0 if time_major else 1, 0)  # (T, B, *S)
    state_shape = steps.shape[1:]
    tau = np.broadcast_to(np.asarray(tau, x.dtype), (1, *state_shape[1:]))
    r = dtype(dt) / np.maximum(tau, dtype(1e-8))
    a = np.exp(-r.astype(np.float64)).astype(x.dtype)
    one = dtype(1)
    level = np.broadcast_to(np.asarray(initial, x.dtype), state_shape).copy()
    s1 = level.copy()
    if state is not None:
        full = np.broadcast_to(np.asarray(state, x.dtype), (state_shape[0], 2, *state_shape[1:]))
        s1, level = full[:, 0].copy(), full[:, 1].copy()
    y = np.empty_like(steps)
    for t, u in enumerate(steps):
        if op == "Lowpass":
            level = (one - a) * u + a * level
        else:
            ra = r * a
            s1, level = a * s1 + (one - a) * u, ra * s1 + a * level + ((one - a) - ra) * u
        y[t] = level
    final = level if op == "Lowpass" else np.stack([s1, level], axis=1)
    return np.moveaxis(y, 0, 0 if time_major else 1), final


def _tau_forms(unit_shape):
    """Every way of giving tau that broadcasts to (1, *S)."""
    rng = np.random.default_rng(len(unit_shape))
    forms = {"scalar": np.array(0.02), "one": np.array([0.05])}
    if unit_shape:
        forms["last"] = rng.uniform(0.005, 0.1, unit_shape[-1:])
        forms["full"] = rng.uniform(0.005, 0.1, (1, *unit_shape))
        forms["units"] = rng.uniform(0.005, 0.1, unit_shape)
    return forms


def _starts(op, rng, state_shape):
    """(initial_level, initial_state) pairs to try: none, a level, and for Alpha full states."""
    level = rng.uniform(-1.0, 1.0, state_shape).astype(np.float32)
    starts = [(None, None), (level, None)]
    if op == "Alpha":
        full = (state_shape[0], 2, *state_shape[1:])
        starts.append((level, rng.uniform(-1.0, 1.0, full).astype(np.float32)))
        # (1, 2, *S) is shared by the batch; the level input is then ignored (and may be absent).
        starts.append((None, rng.uniform(-1.0, 1.0, (1, *full[1:])).astype(np.float32)))
    return starts


@pytest.mark.parametrize("op", sorted(FILTERS))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("time_major", [False, True])
def test_filters_match_reference(op, shape, time_major):
    rng = np.random.default_rng(sum(shape) + 3 * time_major)
    dt = 0.001
    x = rng.uniform(-1.0, 3.0, _layout(shape, time_major)).astype(np.float32)
    state_shape = (shape[0], *shape[2:])
    for tau in _tau_forms(shape[2:]).values():
        tau = tau.astype(np.float32)
        for initial, state in _starts(op, rng, state_shape):
            inputs = [x, tau, initial] + ([state] if state is not None else [])
            y, final = _run(one_node_model(op, inputs, 2, dt=dt, time_major=int(time_major)), inputs)
            level = np.float32(0.0) if initial is None else initial
            want_y, want_final = _oracle(op, x, tau, level, dt, time_major, state)
            _assert_close(y, want_y, 1e-6)
            _assert_close(final, want_final, 1e-6)
            extra = {} if state is None else {"initial_state": state}
            ref_y, ref_final = FILTERS[op](x, tau, level, dt, time_major=time_major, **extra)
            _assert_bitwise(y, ref_y)
            _assert_bitwise(final, ref_final)


@pytest.mark.parametrize("op", sorted(FILTERS))
def test_filters_broadcast_initial_level_and_single_output(op):
    rng = np.random.default_rng(4)
    x = rng.uniform(0.0, 2.0, (3, 25, 4, 6)).astype(np.float32)
    tau = rng.uniform(0.002, 0.05, (4, 1)).astype(np.float32)  # broadcast over the last unit axis
    for initial in (np.array(0.5, np.float32), rng.uniform(0, 1, (6,)).astype(np.float32),
                    rng.uniform(0, 1, (1, 4, 6)).astype(np.float32)):
        (y,) = _run(one_node_model(op, [x, tau, initial], 1, dt=0.001), [x, tau, initial])
        _assert_close(y, _oracle(op, x, tau, initial, 0.001)[0], 1e-6)
        _assert_bitwise(y, FILTERS[op](x, tau, initial, 0.001)[0])


@pytest.mark.parametrize("op", sorted(FILTERS))
def test_filters_float64(op):
    rng = np.random.default_rng(5)
    x = rng.uniform(-1.0, 1.0, (2, 60, 9))
    tau = rng.uniform(0.001, 0.2, (9,))
    initial = rng.uniform(-1.0, 1.0, (2, 9))
    y, final = _run(one_node_model(op, [x, tau, initial], 2, dt=0.001), [x, tau, initial])
    want_y, want_final = FILTERS[op](x, tau, initial, float(np.float32(0.001)))
    _assert_close(y, want_y, 1e-12)
    _assert_close(final, want_final, 1e-12)
    if op == "Alpha":
        state = rng.uniform(-1.0, 1.0, (2, 2, 9))
        y, final = _run(one_node_model(op, [x, tau, initial, state], 2, dt=0.001), [x, tau, initial, state])
        want_y, want_final = reference.alpha(x, tau, initial, float(np.float32(0.001)), initial_state=state)
        _assert_close(y, want_y, 1e-12)
        _assert_close(final, want_final, 1e-12)


@pytest.mark.parametrize("op", sorted(FILTERS))
def test_filters_tiny_and_nonpositive_tau_are_clamped(op):
    # tau <= 1e-8 means "no smoothing at all" for the lowpass: y follows x exactly.
    rng = np.random.default_rng(6)
    x = rng.uniform(-1.0, 1.0, (2, 10, 4)).astype(np.float32)
    tau = np.array([0.0, -1.0, 1e-9, 0.01], np.float32)
    y, final = _run(one_node_model(op, [x, tau], 2, dt=0.001), [x, tau])
    want_y, want_final = _oracle(op, x, tau, 0.0, 0.001)
    _assert_close(y, want_y, 1e-6)
    _assert_close(final, want_final, 1e-6)
    _assert_bitwise(y, FILTERS[op](x, tau, np.float32(0.0), 0.001)[0])
    if op == "Lowpass":
        np.testing.assert_array_equal(y[..., :3], x[..., :3])


def test_alpha_impulse_response_is_t_over_tau_squared():
    # Independent of the reference: the exact discretisation of the alpha filter under a
    # zero-order hold gives, for a unit step of input on the first step only, samples of
    # the continuous response to a dt-wide pulse.  Integrating the impulse response over
    # the pulse: y(t) = (1 - e^{-t/tau}(1 + t/tau)) - (same at t - dt).
    tau, dt, steps = 0.01, 0.001, 80
    x = np.zeros((1, steps, 1))
    x[0, 0, 0] = 1.0
    (y,) = _run(one_node_model("Alpha", [x, np.array([tau])], 1, dt=dt), [x, np.array([tau])])
    dt = float(np.float32(dt))  # what the float attribute actually holds
    t = dt * np.arange(1, steps + 1)

    def step_response(time):
        time = np.maximum(time, 0.0)
        return 1.0 - np.exp(-time / tau) * (1.0 + time / tau)

    expected = step_response(t) - step_response(t - dt)
    np.testing.assert_allclose(y[0, :, 0], expected, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("time_major", [False, True])
def test_alpha_final_state_fed_back_continues_bit_for_bit(time_major):
    rng = np.random.default_rng(11)
    shape = (3, 50, 4, 5)
    x = rng.uniform(-2.0, 2.0, _layout(shape, time_major)).astype(np.float32)
    tau = rng.uniform(0.002, 0.05, (4, 5)).astype(np.float32)
    level = rng.uniform(-1.0, 1.0, (3, 4, 5)).astype(np.float32)
    whole = _run(one_node_model("Alpha", [x, tau, level], 2, dt=0.001, time_major=int(time_major)), [x, tau, level])
    axis = 0 if time_major else 1
    parts, state = [], None
    for start in range(0, 50, 17):
        chunk = np.ascontiguousarray(np.take(x, range(start, min(start + 17, 50)), axis=axis))
        # The first chunk starts from the level alone, the others from the carried state.
        inputs = [chunk, tau, level] + ([] if state is None else [state])
        y, state = _run(one_node_model("Alpha", inputs, 2, dt=0.001, time_major=int(time_major)), inputs)
        parts.append(y)
    _assert_bitwise(np.concatenate(parts, axis=axis), whole[0])
    _assert_bitwise(state, whole[1])


def test_alpha_constant_input_at_the_level_stays_put():
    # Started at rest, an input equal to the level is a fixed point of the filter (each row
    # of the update sums to one); only float32 round-off may move the output.
    level = np.array([[0.25, -1.5, 3.0]], np.float32)
    x = np.repeat(level[:, None, :], 200, axis=1)
    tau = np.array([0.003, 0.02, 0.1], np.float32)
    y, final = _run(one_node_model("Alpha", [x, tau, level], 2, dt=0.001), [x, tau, level])
    np.testing.assert_allclose(y, x, rtol=2e-6)
    np.testing.assert_allclose(final, np.stack([level, level], axis=1), rtol=2e-6)


# ---------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["SpikingActivation", "Lowpass", "Alpha"])
@pytest.mark.parametrize("time_major", [False, True])
# Several full unit blocks per batch entry; and one entry split into small blocks.
@pytest.mark.parametrize("shape", [(5, 40, 3, 700), (1, 30, 3, 100)])
def test_one_and_two_threads_are_bit_identical(op, time_major, shape):
    rng = np.random.default_rng(7)
    x = rng.uniform(0.0, 400.0, _layout(shape, time_major)).astype(np.float32)
    if op == "SpikingActivation":
        inputs = [x]
        attrs = {"seed": 9}
    else:
        inputs = [x, rng.uniform(0.001, 0.1, shape[2:]).astype(np.float32),
                  rng.uniform(0, 1, (shape[0], *shape[2:])).astype(np.float32)]
        if op == "Alpha":
            inputs.append(rng.uniform(-1, 1, (shape[0], 2, *shape[2:])).astype(np.float32))
        attrs = {}
    model = one_node_model(op, inputs, 2, dt=0.001, time_major=int(time_major), **attrs)
    one = _run(model, inputs, threads=1)
    two = _run(model, inputs, threads=2)
    for a, b in zip(one, two, strict=True):
        _assert_bitwise(a, b)
    # And the threaded result is the right one.
    if op == "SpikingActivation":
        _assert_bitwise(two[0], reference.spiking_activation(x, 0.001, seed=9, time_major=time_major)[0])
    else:
        state = inputs[3] if op == "Alpha" else None
        extra = {} if state is None else {"initial_state": state}
        want = FILTERS[op](x, inputs[1], inputs[2], 0.001, time_major=time_major, **extra)
        _assert_bitwise(two[0], want[0])
        _assert_bitwise(two[1], want[1])
        _assert_close(two[0], _oracle(op, x, inputs[1], inputs[2], 0.001, time_major, state)[0], 1e-6)


# ---------------------------------------------------------------------------------------
# Streaming (non-temporal) stores for big outputs
# ---------------------------------------------------------------------------------------

# The kernels switch to streaming stores for sequence outputs of 4 MiB or more
# (kStreamMinBytes in ops/src/kernel_common.h).  1001 units per step (not a multiple of the
# vector width) put consecutive rows at every possible alignment, so each row has a
# scalar head and tail around its aligned, streamed middle.
_BIG_UNITS = 1001
_STREAM_MIN_BYTES = 4 << 20


def _big_inputs(op: str, shape, time_major: bool, dtype, rng) -> list:
    x = rng.uniform(-20.0, 900.0, _layout(shape, time_major)).astype(dtype)
    state_shape = (shape[0], *shape[2:])
    if op == "SpikingActivation":
        return [x, rng.uniform(0.0, 1.0, state_shape).astype(dtype)]
    inputs = [x, rng.uniform(0.002, 0.05, shape[2:]).astype(dtype), rng.uniform(-1, 1, state_shape).astype(dtype)]
    if op == "Alpha":
        inputs.append(rng.uniform(-1, 1, (shape[0], 2, *shape[2:])).astype(dtype))
    return inputs


def _want(op: str, inputs: list, dt: float, time_major: bool) -> list:
    if op == "SpikingActivation":
        return list(reference.spiking_activation(inputs[0], dt, initial_voltage=inputs[1], time_major=time_major))
    extra = {"initial_state": inputs[3]} if op == "Alpha" else {}
    return list(FILTERS[op](inputs[0], inputs[1], inputs[2], dt, time_major=time_major, **extra))


@pytest.mark.parametrize("op", ["SpikingActivation", "Lowpass", "Alpha"])
@pytest.mark.parametrize("time_major", [False, True])
def test_streamed_big_outputs_are_bit_exact(op, time_major):
    shape = (3, 360, _BIG_UNITS)
    assert np.prod(shape) * 4 >= _STREAM_MIN_BYTES  # really on the streaming path
    rng = np.random.default_rng(11 + time_major)
    dt = 0.001
    inputs = _big_inputs(op, shape, time_major, np.float32, rng)
    model = one_node_model(op, inputs, 2, dt=dt, time_major=int(time_major))
    one = _run(model, inputs, threads=1)
    two = _run(model, inputs, threads=2)
    for got_one, got_two, want in zip(one, two, _want(op, inputs, dt, time_major), strict=True):
        _assert_bitwise(got_one, want)
        _assert_bitwise(got_two, want)
    assert np.count_nonzero(one[0]) > one[0].size // 4  # a non-trivial signal


@pytest.mark.parametrize("op", ["SpikingActivation", "Lowpass", "Alpha"])
@pytest.mark.parametrize("time_major", [False, True])
def test_streamed_and_ordinary_stores_agree_float64(op, time_major):
    # float64 filters are only compared to the oracle to 1e-12 (exp may differ in the last
    # bit), so here the streamed result is compared bit for bit with the same kernel on one
    # batch entry at a time: outputs far below the threshold, written with ordinary stores.
    shape = (3, 180, _BIG_UNITS)
    assert np.prod(shape) * 8 >= _STREAM_MIN_BYTES > np.prod(shape[1:]) * 8
    rng = np.random.default_rng(21 + time_major)
    inputs = _big_inputs(op, shape, time_major, np.float64, rng)
    model = one_node_model(op, inputs, 2, dt=0.001, time_major=int(time_major))
    y, final = _run(model, inputs, threads=2)
    batch_axis = 1 if time_major else 0
    for b in range(shape[0]):
        part = [value.take([b], axis=batch_axis if i == 0 else 0) for i, value in enumerate(inputs)]
        if op != "SpikingActivation":
            part[1] = inputs[1]  # tau is per unit, not per batch entry
        small_y, small_final = _run(one_node_model(op, part, 2, dt=0.001, time_major=int(time_major)), part)
        _assert_bitwise(y.take([b], axis=batch_axis), small_y)
        _assert_bitwise(final[b : b + 1], small_final)
    # The dt attribute is a float32; the oracle works in float64 with that value.
    want = _want(op, inputs, float(np.float32(0.001)), time_major)[0]
    if op == "SpikingActivation":
        _assert_bitwise(y, want)
    else:
        _assert_close(y, want, 1e-12)


def test_zero_sized_axes_are_fine():
    x = np.zeros((0, 5, 3), np.float32)
    spikes, final = _run(one_node_model("SpikingActivation", [x], 2, dt=0.001), [x])
    assert spikes.shape == (0, 5, 3) and final.shape == (0, 3)
    x = np.ones((2, 0, 3), np.float32)
    initial = np.full((2, 3), 0.25, np.float32)
    y, final = _run(one_node_model("Lowpass", [x, np.array([0.01], np.float32), initial], 2, dt=0.001),
                    [x, np.array([0.01], np.float32), initial])
    assert y.shape == (2, 0, 3)
    np.testing.assert_array_equal(final, initial)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_graph_inputs_without_shapes(dtype):
    # Without static shapes only the element type can be inferred for the outputs; the
    # kernels still produce the right shapes and values.
    rng = np.random.default_rng(8)
    x = rng.uniform(0.0, 1.0, (2, 6, 5)).astype(dtype)
    tau = np.full((5,), 0.02, dtype)
    model = one_node_model("Alpha", [x, tau], 2, dt=0.001)
    for value_info in model.graph.input:
        value_info.type.tensor_type.ClearField("shape")
    y, final = _run(model, [x, tau])
    want_y, want_final = _oracle("Alpha", x, tau, 0.0, 0.001)
    _assert_close(y, want_y, 1e-6 if dtype == np.float32 else 1e-12)
    _assert_close(final, want_final, 1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dims", [[None, None, 3], ["N", None, 3], ["N", "T", 3], [2, 7, 3]])
def test_inferred_output_shapes_agree_with_results(dims, capfd):
    # The ops tell onnxruntime their output shapes; a wrong or made-up dimension (e.g. -1
    # for an unnamed unknown one) makes onnxruntime warn when the results come back.
    x = np.ones((2, 7, 3), np.float32)
    tau = np.full((3,), 0.01, np.float32)
    node = helper.make_node("Alpha", ["x", "tau"], ["y", "state"], domain=DOMAIN, dt=0.001, time_major=0)
    relu = helper.make_node("Relu", ["y"], ["z"])
    graph = helper.make_graph(
        [node, relu], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims),
         helper.make_tensor_value_info("tau", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, None)],
    )
    model = finish_model(graph)
    options = ort.SessionOptions()
    options.register_custom_ops_library(library_path())
    options.log_severity_level = 1  # show warnings
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    z, state = session.run(None, {"x": x, "tau": tau})
    assert z.shape == (2, 7, 3) and state.shape == (2, 2, 3)
    assert "Expected shape" not in capfd.readouterr().err
