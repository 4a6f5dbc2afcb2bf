"""Tests of the op contract's Python side: spikeonnx.reference and spikeonnx.schemas.

The reference functions are compared with straightforward per-element loops written
here, with closed-form filter responses, and (for the seeded voltage) with TensorFlow.
"""

from __future__ import annotations

import math
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as oh
from onnx.reference import ReferenceEvaluator

from spikeonnx import reference as ref
from spikeonnx.schemas import DOMAIN, OPSET, make_opset_imports, register_schemas
from tests.conftest import finish_model

RNG = np.random.default_rng(1234)


# ---------------------------------------------------------------------------
# Independent per-element loops (deliberately naive: one scalar at a time)
# ---------------------------------------------------------------------------


def loop_spiking(rates, dt, v0):
    """Per-element integrate-and-fire on batch-first data, scalar arithmetic."""
    ftype = rates.dtype.type
    dt = ftype(dt)
    spikes = np.zeros_like(rates)
    final = np.zeros_like(v0)
    batch, steps = rates.shape[:2]
    units = int(np.prod(rates.shape[2:]))
    flat_rates = rates.reshape(batch, steps, units)
    flat_spikes = spikes.reshape(batch, steps, units)
    flat_v0 = v0.reshape(batch, units)
    flat_final = final.reshape(batch, units)
    for b in range(batch):
        for k in range(units):
            v = ftype(flat_v0[b, k])
            for t in range(steps):
                increment = ftype(flat_rates[b, t, k] * dt)
                v = ftype(v + increment)
                n = ftype(math.floor(v))
                v = ftype(v - n)
                flat_spikes[b, t, k] = ftype(n / dt)
            flat_final[b, k] = v
    return spikes, final


def loop_lowpass(x, tau, level, dt):
    """Per-element lowpass in float64 Python scalars, batch-first data."""
    batch, steps = x.shape[:2]
    tau = np.broadcast_to(tau, (1, *x.shape[2:]))[0]
    level = np.broadcast_to(level, (batch, *x.shape[2:]))
    y = np.zeros(x.shape, dtype=np.float64)
    for b in range(batch):
        for idx in np.ndindex(*x.shape[2:]):
            a = math.exp(-dt / max(float(tau[idx]), 1e-8))
            state = float(level[(b, *idx)])
            for t in range(steps):
                state = (1 - a) * float(x[(b, t, *idx)]) + a * state
                y[(b, t, *idx)] = state
    return y


def loop_alpha(x, tau, level, dt, state=None):
    """Per-element alpha filter (cascade form) in float64 scalars; returns y and final state.

    Starts at rest at ``level`` (s1 = s2 = level), or at ``state`` ((B or 1, 2, *S)) if given.
    """
    batch, steps = x.shape[:2]
    tau = np.broadcast_to(tau, (1, *x.shape[2:]))[0]
    level = np.broadcast_to(level, (batch, *x.shape[2:]))
    if state is not None:
        state = np.broadcast_to(state, (batch, 2, *x.shape[2:]))
    y = np.zeros(x.shape, dtype=np.float64)
    final = np.zeros((batch, 2, *x.shape[2:]), dtype=np.float64)
    for b in range(batch):
        for idx in np.ndindex(*x.shape[2:]):
            r = dt / max(float(tau[idx]), 1e-8)
            a = math.exp(-r)
            if state is None:
                s1 = s2 = float(level[(b, *idx)])
            else:
                s1, s2 = float(state[(b, 0, *idx)]), float(state[(b, 1, *idx)])
            for t in range(steps):
                u = float(x[(b, t, *idx)])
                s1, s2 = a * s1 + (1 - a) * u, r * a * s1 + a * s2 + (1 - a - r * a) * u
                y[(b, t, *idx)] = s2
            final[(b, 0, *idx)] = s1
            final[(b, 1, *idx)] = s2
    return y, final


# ---------------------------------------------------------------------------
# SpikingActivation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 40), (3, 25, 4), (2, 12, 3, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dt", [0.001, 0.01, 0.37])
def test_spiking_matches_elementwise_loop(shape, dtype, dt):
    rates = (RNG.standard_normal(shape) * 300).astype(dtype)
    v0 = RNG.random((shape[0], *shape[2:])).astype(dtype)
    spikes, final = ref.spiking_activation(rates, dt, initial_voltage=v0)
    expected_spikes, expected_final = loop_spiking(rates, dt, v0)
    assert spikes.dtype == dtype and final.dtype == dtype
    np.testing.assert_array_equal(spikes, expected_spikes)
    np.testing.assert_array_equal(final, expected_final)
    assert spikes.shape == shape and final.shape == v0.shape


def test_spiking_counts_spikes_like_rate_times_duration():
    # With dt a power of two, r*dt and the running voltage are exact in float32, so a
    # constant rate fires exactly floor(T * r * dt) times from zero voltage.
    dt = 1.0 / 64
    rates = np.full((1, 100, 3), [16.0, 40.0, 200.0], dtype=np.float32)
    spikes, final = ref.spiking_activation(rates, dt, initial_voltage=np.zeros((1, 3), np.float32))
    np.testing.assert_array_equal((spikes * np.float32(dt)).sum(axis=1)[0], [25, 62, 312])
    np.testing.assert_array_equal(final[0], [0.0, 0.5, 0.5])
    assert set(np.unique(spikes * np.float32(dt))) <= {0.0, 1.0, 3.0, 4.0}


def test_spiking_seeded_initial_voltage_is_tf_uniform():
    rates = (RNG.random((3, 6, 5)) * 100).astype(np.float32)
    spikes, final = ref.spiking_activation(rates, 0.01, seed=17)
    v0 = ref.tf_stateless_uniform((3, 5), 17)
    expected_spikes, expected_final = loop_spiking(rates, 0.01, v0)
    np.testing.assert_array_equal(spikes, expected_spikes)
    np.testing.assert_array_equal(final, expected_final)
    # a different seed changes the starting voltage, hence the final one
    _, other = ref.spiking_activation(rates, 0.01, seed=18)
    assert not np.array_equal(final, other)


def test_spiking_time_major_is_a_transpose():
    rates = (RNG.random((4, 9, 3)) * 200).astype(np.float32)
    v0 = RNG.random((4, 3)).astype(np.float32)
    bm_spikes, bm_final = ref.spiking_activation(rates, 0.005, initial_voltage=v0)
    tm_spikes, tm_final = ref.spiking_activation(
        np.swapaxes(rates, 0, 1).copy(), 0.005, initial_voltage=v0, time_major=True
    )
    np.testing.assert_array_equal(np.swapaxes(tm_spikes, 0, 1), bm_spikes)
    np.testing.assert_array_equal(tm_final, bm_final)


def test_spiking_chunks_carry_voltage():
    rates = (RNG.random((2, 30, 4)) * 400).astype(np.float32)
    full, full_final = ref.spiking_activation(rates, 0.001, seed=5)
    first, voltage = ref.spiking_activation(rates[:, :13], 0.001, seed=5)
    second, final = ref.spiking_activation(rates[:, 13:], 0.001, initial_voltage=voltage)
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), full)
    np.testing.assert_array_equal(final, full_final)


def test_spiking_zero_timesteps_returns_initial_voltage():
    v0 = RNG.random((2, 3)).astype(np.float32)
    spikes, final = ref.spiking_activation(np.zeros((2, 0, 3), np.float32), 0.1, initial_voltage=v0)
    assert spikes.shape == (2, 0, 3)
    np.testing.assert_array_equal(final, v0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rates=np.zeros((2, 3), np.float32), dt=0.0), "dt"),
        (dict(rates=np.zeros((2, 3), np.float32), dt=-1.0), "dt"),
        (dict(rates=np.zeros((2, 3), np.float32), dt=float("nan")), "dt"),
        (dict(rates=np.zeros((2, 3), np.float32), dt=float("inf")), "dt"),
        (dict(rates=np.zeros((3,), np.float32), dt=0.1), "at least 2 dimensions"),
        (dict(rates=np.zeros((2, 3), np.int32), dt=0.1), "float32 or float64"),
        (dict(rates=np.zeros((2, 3, 4), np.float32), dt=0.1, initial_voltage=np.zeros((2, 3))), r"initial_voltage.*\(2, 4\)"),
        (dict(rates=np.zeros((2, 3), np.float32), dt=0.1, time_major=2), "time_major"),
    ],
)
def test_spiking_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ref.spiking_activation(**kwargs)


# ---------------------------------------------------------------------------
# tf_stateless_uniform against TensorFlow itself
# ---------------------------------------------------------------------------


def test_tf_stateless_uniform_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")  # part of the [keras] extra the suite installs
    shapes = [(), (1,), (3,), (5, 7), (2, 3, 5), (1001,), (4, 0)]
    seeds = [0, 1, 2, 2**31 - 1, 987654321, -7]
    for seed in seeds:
        for shape in shapes:
            expected = tf.random.stateless_uniform(shape, seed=(seed, seed), dtype=tf.float32).numpy()
            got = ref.tf_stateless_uniform(shape, seed)
            assert got.dtype == np.float32 and got.shape == tuple(shape)
            np.testing.assert_array_equal(got, expected, err_msg=f"seed={seed} shape={shape}")


def test_tf_stateless_uniform_range_and_errors():
    values = ref.tf_stateless_uniform((4096,), 3)
    assert values.min() >= 0.0 and values.max() < 1.0
    assert abs(values.mean() - 0.5) < 0.03
    with pytest.raises(ValueError, match="non-negative"):
        ref.tf_stateless_uniform((2, -1), 0)
    with pytest.raises(ValueError, match="int64"):
        ref.tf_stateless_uniform((2,), 2**63)
    with pytest.raises(ValueError, match="integer"):
        ref.tf_stateless_uniform((2,), 1.5)


def test_philox_known_answer():
    # Known-answer vectors of Philox4x32-10 published with Random123 (kat_vectors).
    zero = [np.zeros(1, np.uint32)] * 4
    out = [int(w[0]) for w in ref.philox4x32(zero, (0, 0))]
    assert out == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    ones = [np.full(1, 0xFFFFFFFF, np.uint32)] * 4
    out = [int(w[0]) for w in ref.philox4x32(ones, (0xFFFFFFFF, 0xFFFFFFFF))]
    assert out == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    digits = [np.full(1, w, np.uint32) for w in (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344)]
    out = [int(w[0]) for w in ref.philox4x32(digits, (0xA4093822, 0x299F31D0))]
    assert out == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


# ---------------------------------------------------------------------------
# Lowpass
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape, tau_shape", [((2, 30), ()), ((3, 20, 4), (4,)), ((2, 15, 3, 2), (1, 3, 2))])
def test_lowpass_matches_loop(shape, tau_shape):
    x = RNG.standard_normal(shape)
    tau = RNG.uniform(0.002, 0.05, tau_shape)
    level = RNG.standard_normal((shape[0], *shape[2:]))
    y64, final64 = ref.lowpass(x, tau, level, 0.003)
    expected = loop_lowpass(x, tau, level, 0.003)
    np.testing.assert_allclose(y64, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(final64, expected[:, -1], rtol=1e-12, atol=1e-14)
    # float32 inputs are computed in float32: close to the float64 loop, not equal to it
    y32, final32 = ref.lowpass(x.astype(np.float32), tau.astype(np.float32), level.astype(np.float32), 0.003)
    assert y32.dtype == np.float32 and final32.dtype == np.float32
    np.testing.assert_allclose(y32, expected, rtol=2e-5, atol=2e-6)


def test_lowpass_step_closed_form():
    # From level L with constant input u: y_k = u + (L - u) a^(k+1).
    dt, tau, level, u = 0.001, 0.02, 0.25, 1.5
    x = np.full((1, 200, 1), u)
    y, _ = ref.lowpass(x, tau, level, dt)
    k = np.arange(200)
    expected = u + (level - u) * np.exp(-dt / tau) ** (k + 1)
    np.testing.assert_allclose(y[0, :, 0], expected, rtol=1e-12)


def test_lowpass_tiny_and_negative_tau_pass_input_through():
    x = RNG.standard_normal((2, 5, 3))
    y, _ = ref.lowpass(x, np.array([0.0, -1.0, 1e-12]), 0.0, 0.001)
    np.testing.assert_array_equal(y, x)  # a = exp(-dt/1e-8) underflows to exactly 0


def test_lowpass_time_major_and_chunking():
    x = RNG.standard_normal((3, 16, 2)).astype(np.float32)
    tau = np.float32(0.01)
    level = np.zeros((3, 2), np.float32)
    y, final = ref.lowpass(x, tau, level, 0.001)
    y_tm, final_tm = ref.lowpass(np.swapaxes(x, 0, 1), tau, level, 0.001, time_major=True)
    np.testing.assert_array_equal(np.swapaxes(y_tm, 0, 1), y)
    np.testing.assert_array_equal(final_tm, final)
    first, mid = ref.lowpass(x[:, :7], tau, level, 0.001)
    second, end = ref.lowpass(x[:, 7:], tau, mid, 0.001)
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), y)
    np.testing.assert_array_equal(end, final)


@pytest.mark.parametrize("func", [ref.lowpass, ref.alpha])
@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros((2, 3, 4)), np.zeros(5), 0.0, 0.1), "tau"),
        ((np.zeros((2, 3, 4)), np.float64("nan"), 0.0, 0.1), "NaN"),
        ((np.zeros((2, 3, 4)), 0.1, np.zeros((3, 4)), 0.1), "initial_level"),
        ((np.zeros((2, 3, 4)), 0.1, 0.0, 0.0), "dt"),
        ((np.zeros((2,)), 0.1, 0.0, 0.1), "at least 2 dimensions"),
        ((np.zeros((2, 3), np.float16), 0.1, 0.0, 0.1), "float32 or float64"),
    ],
)
def test_filters_reject_bad_input(func, args, match):
    with pytest.raises(ValueError, match=match):
        func(*args)


# ---------------------------------------------------------------------------
# Alpha
# ---------------------------------------------------------------------------


def alpha_step_response(t, tau):
    return 1 - np.exp(-t / tau) * (1 + t / tau)


@pytest.mark.parametrize("tau", [0.003, 0.02, 0.1])
def test_alpha_step_response_is_exact(tau):
    dt, steps = 0.001, 300
    y, _ = ref.alpha(np.ones((1, steps, 1)), tau, 0.0, dt)
    t = dt * np.arange(1, steps + 1)  # y_k is the state after applying input k
    np.testing.assert_allclose(y[0, :, 0], alpha_step_response(t, tau), rtol=1e-10, atol=1e-13)


def test_alpha_impulse_response():
    dt, tau, steps = 1e-4, 0.01, 2000
    x = np.zeros((1, steps, 1))
    x[0, 0, 0] = 1.0 / dt  # unit area over the first step
    y, _ = ref.alpha(x, tau, 0.0, dt)
    t = dt * np.arange(1, steps + 1)
    # zero-order hold: exactly the difference of two shifted step responses
    exact = (alpha_step_response(t, tau) - alpha_step_response(t - dt, tau)) / dt
    np.testing.assert_allclose(y[0, :, 0], exact, rtol=1e-7, atol=1e-9)
    # and, for small dt, the sampled continuous impulse response (t / tau^2) exp(-t / tau)
    h = (t - dt / 2) / tau**2 * np.exp(-(t - dt / 2) / tau)
    np.testing.assert_allclose(y[0, :, 0], h, rtol=1e-3, atol=1e-3 * h.max())
    assert abs(y.sum() * dt - 1.0) < 2e-3  # unit DC gain


def test_alpha_starts_at_rest_at_the_initial_level():
    # Matches keras-spiking 0.3.0: a constant input equal to the level keeps the output there.
    level = np.array([[0.5, -2.0, 0.0], [3.0, 1.25, -0.75]])
    x = np.broadcast_to(level[:, None, :], (2, 40, 3)).copy()
    y, final = ref.alpha(x, np.array([0.004, 0.02, 0.1]), level, 0.001)
    np.testing.assert_allclose(y, x, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(final, np.stack([level, level], axis=1), rtol=1e-13, atol=1e-15)


def test_alpha_free_response_from_rest_and_from_a_state():
    # With no input, A_d^k = a^k [[1, 0], [k r, 1]]: s1_k = a^k s1, s2_k = a^k (s2 + k r s1).
    dt, tau = 0.001, 0.01
    r, steps = dt / tau, 60
    k = np.arange(1, steps + 1)[:, None]
    level = np.array([[0.5, -2.0]])
    y, final = ref.alpha(np.zeros((1, steps, 2)), tau, level, dt)
    np.testing.assert_allclose(y[0], level * np.exp(-r) ** k * (1 + k * r), rtol=1e-12)
    state = np.array([[[0.7, -1.0], [0.2, 3.0]]])  # (B, 2, S): s1 row, then s2 row
    y, final = ref.alpha(np.zeros((1, steps, 2)), tau, 123.0, dt, initial_state=state)
    s1, s2 = state[:, 0], state[:, 1]
    np.testing.assert_allclose(y[0], np.exp(-r) ** k * (s2 + k * r * s1), rtol=1e-12, atol=1e-15)  # crosses 0
    np.testing.assert_allclose(final[:, 0], np.exp(-r) ** steps * s1, rtol=1e-12)


@pytest.mark.parametrize("shape, tau_shape", [((2, 25), ()), ((2, 20, 3), (3,)), ((3, 10, 2, 2), (2, 2))])
@pytest.mark.parametrize("with_state", [False, True])
def test_alpha_matches_loop(shape, tau_shape, with_state):
    x = RNG.standard_normal(shape)
    tau = RNG.uniform(0.001, 0.03, tau_shape)
    level = RNG.standard_normal((shape[0], *shape[2:]))
    state = RNG.standard_normal((shape[0], 2, *shape[2:])) if with_state else None
    y, final = ref.alpha(x, tau, level, 0.002, initial_state=state)
    expected, expected_final = loop_alpha(x, tau, level, 0.002, state)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(final, expected_final, rtol=1e-12, atol=1e-14)
    state32 = None if state is None else state.astype(np.float32)
    y32, final32 = ref.alpha(x.astype(np.float32), tau.astype(np.float32), level.astype(np.float32), 0.002,
                             initial_state=state32)
    assert y32.dtype == np.float32 and final32.shape == (shape[0], 2, *shape[2:])
    np.testing.assert_allclose(y32, expected, rtol=1e-4, atol=1e-5)


def test_alpha_initial_state_overrides_level_and_broadcasts_over_batch():
    x = RNG.standard_normal((3, 15, 2, 4)).astype(np.float32)
    tau = RNG.uniform(0.002, 0.02, (2, 4)).astype(np.float32)
    one = RNG.standard_normal((1, 2, 2, 4)).astype(np.float32)
    shared = ref.alpha(x, tau, np.float32(7.0), 0.001, initial_state=one)
    tiled = ref.alpha(x, tau, np.float32(-3.0), 0.001, initial_state=np.repeat(one, 3, axis=0))
    for got, want in zip(shared, tiled):
        np.testing.assert_array_equal(got, want)
    # The rest state given explicitly is the same as the level alone.
    level = RNG.standard_normal((3, 2, 4)).astype(np.float32)
    explicit = ref.alpha(x, tau, np.float32(0.0), 0.001, initial_state=np.stack([level, level], axis=1))
    for got, want in zip(explicit, ref.alpha(x, tau, level, 0.001)):
        np.testing.assert_array_equal(got, want)


def test_alpha_chunks_continue_exactly():
    x = RNG.standard_normal((2, 30, 3)).astype(np.float32)
    tau = np.array([0.003, 0.01, 0.05], np.float32)
    level = np.float32(0.4)
    y, final = ref.alpha(x, tau, level, 0.001)
    first, mid = ref.alpha(x[:, :11], tau, level, 0.001)
    second, end = ref.alpha(x[:, 11:], tau, level, 0.001, initial_state=mid)
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), y)
    np.testing.assert_array_equal(end, final)


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), np.zeros((2, 3, 3)), np.zeros((3, 2, 3)), np.zeros((2, 2, 4)),
                                 np.zeros((2, 2, 3, 1))])
def test_alpha_rejects_bad_initial_state(bad):
    pattern = r"'initial_state'.*\(B, 2, \*S\) = \(2, 2, 3\).*got " + re.escape(str(bad.shape))
    with pytest.raises(ValueError, match=pattern):
        ref.alpha(np.zeros((2, 5, 3)), 0.01, 0.0, 0.001, initial_state=bad)
    with pytest.raises(ValueError, match="'initial_state' must be numeric"):
        ref.alpha(np.zeros((2, 5, 3)), 0.01, 0.0, 0.001, initial_state=np.full((2, 2, 3), "a"))


def test_alpha_time_major_is_a_transpose():
    x = RNG.standard_normal((3, 12, 2)).astype(np.float32)
    y, final = ref.alpha(x, np.float32(0.004), np.float32(0.2), 0.001)
    y_tm, final_tm = ref.alpha(np.swapaxes(x, 0, 1), np.float32(0.004), np.float32(0.2), 0.001, time_major=True)
    np.testing.assert_array_equal(np.swapaxes(y_tm, 0, 1), y)
    np.testing.assert_array_equal(final_tm, final)


# ---------------------------------------------------------------------------
# ONNX models: ReferenceEvaluator, checker, shape inference
# ---------------------------------------------------------------------------


def vi(name, shape, elem=TensorProto.FLOAT):
    return oh.make_tensor_value_info(name, elem, shape)


def make_model(nodes, inputs, outputs, initializers=()):
    return finish_model(oh.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers)))


def const(name, value, elem=TensorProto.FLOAT):
    value = np.asarray(value, dtype=np.float32 if elem == TensorProto.FLOAT else np.float64)
    return oh.make_tensor(name, elem, value.shape, value.ravel().tolist())


def test_evaluator_spiking_with_and_without_optional_io():
    rates = (RNG.random((2, 7, 3)) * 100).astype(np.float32)
    v0 = RNG.random((2, 3)).astype(np.float32)
    # seeded, both outputs
    node = oh.make_node("SpikingActivation", ["r"], ["s", "v"], domain=DOMAIN, dt=0.01, seed=9)
    model = make_model([node], [vi("r", [2, 7, 3])], [vi("s", [2, 7, 3]), vi("v", [2, 3])])
    spikes, final = ReferenceEvaluator(model, new_ops=ref.REFERENCE_OPS).run(None, {"r": rates})
    exp_spikes, exp_final = loop_spiking(rates, np.float32(0.01), ref.tf_stateless_uniform((2, 3), 9))
    np.testing.assert_array_equal(spikes, exp_spikes)
    np.testing.assert_array_equal(final, exp_final)
    # explicit initial voltage, spikes only
    node = oh.make_node("SpikingActivation", ["r", "v0"], ["s"], domain=DOMAIN, dt=0.01)
    model = make_model([node], [vi("r", [2, 7, 3]), vi("v0", [2, 3])], [vi("s", [2, 7, 3])])
    (spikes,) = ReferenceEvaluator(model, new_ops=ref.REFERENCE_OPS).run(None, {"r": rates, "v0": v0})
    np.testing.assert_array_equal(spikes, loop_spiking(rates, np.float32(0.01), v0)[0])
    # an empty name for the optional input means "absent": seed 0 draw
    node = oh.make_node("SpikingActivation", ["r", ""], ["s"], domain=DOMAIN, dt=0.01)
    model = make_model([node], [vi("r", [2, 7, 3])], [vi("s", [2, 7, 3])])
    (spikes,) = ReferenceEvaluator(model, new_ops=ref.REFERENCE_OPS).run(None, {"r": rates})
    np.testing.assert_array_equal(spikes, loop_spiking(rates, np.float32(0.01), ref.tf_stateless_uniform((2, 3), 0))[0])


@pytest.mark.parametrize("op_type", ["Lowpass", "Alpha"])
def test_evaluator_filters_time_major_double(op_type):
    x = RNG.standard_normal((6, 2, 3))  # (T, B, S)
    node = oh.make_node(op_type, ["x", "tau", "lvl"], ["y", "state"], domain=DOMAIN, dt=0.002, time_major=1)
    state_shape = [2, 3] if op_type == "Lowpass" else [2, 2, 3]
    model = make_model(
        [node],
        [vi("x", [6, 2, 3], TensorProto.DOUBLE), vi("lvl", [2, 3], TensorProto.DOUBLE)],
        [vi("y", [6, 2, 3], TensorProto.DOUBLE), vi("state", state_shape, TensorProto.DOUBLE)],
        [const("tau", [0.01, 0.02, 0.005], TensorProto.DOUBLE)],
    )
    onnx.checker.check_model(model, full_check=True)
    level = RNG.standard_normal((2, 3))
    y, state = ReferenceEvaluator(model, new_ops=ref.REFERENCE_OPS).run(None, {"x": x, "lvl": level})
    dt = float(np.float32(0.002))  # the attribute is stored as float32
    tau = np.array([0.01, 0.02, 0.005])
    if op_type == "Lowpass":
        expected = loop_lowpass(np.swapaxes(x, 0, 1), tau, level, dt)
        np.testing.assert_allclose(state, expected[:, -1], rtol=1e-12)
    else:
        expected, expected_state = loop_alpha(np.swapaxes(x, 0, 1), tau, level, dt)
        np.testing.assert_allclose(state, expected_state, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.swapaxes(y, 0, 1), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("time_major", [0, 1])
def test_evaluator_alpha_with_initial_state_input(time_major):
    # The 4-input form, checked and shape-inferred; an empty 4th name means "absent".
    register_schemas()
    seq = [6, "B", 3] if time_major else ["B", 6, 3]
    node = oh.make_node("Alpha", ["x", "tau", "lvl", "st"], ["y", "state"], domain=DOMAIN, dt=0.002,
                        time_major=time_major)
    model = make_model(
        [node], [vi("x", seq), vi("st", ["B", 2, 3])], [vi("y", seq), vi("state", ["B", 2, 3])],
        [const("tau", [0.01, 0.02, 0.005]), const("lvl", 5.0)],
    )
    onnx.checker.check_model(model, full_check=True)
    assert infer(model)["state"] == (TensorProto.FLOAT, ("B", 2, 3))
    x = RNG.standard_normal((6, 2, 3) if time_major else (2, 6, 3)).astype(np.float32)
    state = RNG.standard_normal((2, 2, 3)).astype(np.float32)
    y, final = ReferenceEvaluator(model, new_ops=ref.REFERENCE_OPS).run(None, {"x": x, "st": state})
    batch_first = np.swapaxes(x, 0, 1) if time_major else x
    expected, expected_final = loop_alpha(batch_first.astype(np.float64), np.array([0.01, 0.02, 0.005]), 5.0,
                                          float(np.float32(0.002)), state.astype(np.float64))
    np.testing.assert_allclose(np.swapaxes(y, 0, 1) if time_major else y, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(final, expected_final, rtol=1e-4, atol=1e-5)
    # Without the state (empty name) the filter starts at rest at the level.
    node = oh.make_node("Alpha", ["x", "tau", "lvl", ""], ["y"], domain=DOMAIN, dt=0.002, time_major=time_major)
    model = make_model([node], [vi("x", seq)], [vi("y", seq)], [const("tau", [0.01, 0.02, 0.005]), const("lvl", 5.0)])
    onnx.checker.check_model(model, full_check=True)
    (y,) = ReferenceEvaluator(model, new_ops=ref.REFERENCE_OPS).run(None, {"x": x})
    want, _ = ref.alpha(x, np.array([0.01, 0.02, 0.005], np.float32), np.float32(5.0), 0.002, time_major=time_major)
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("state_shape", [["B", 2, 3, 5], [1, 2, 3, 5], [4, 2, 3, 5]])
def test_shape_inference_accepts_alpha_initial_state(state_shape):
    register_schemas()
    node = oh.make_node("Alpha", ["x", "tau", "lvl", "st"], ["y", "state"], domain=DOMAIN, dt=0.001)
    model = make_model([node], [vi("x", ["B", 7, 3, 5]), vi("st", state_shape)], [],
                       [const("tau", 0.1), const("lvl", 0.0)])
    model.graph.output.extend([oh.make_tensor_value_info("y", 0, None), oh.make_tensor_value_info("state", 0, None)])
    types = infer(model)
    assert types["y"] == (TensorProto.FLOAT, ("B", 7, 3, 5))
    assert types["state"] == (TensorProto.FLOAT, ("B", 2, 3, 5))


@pytest.mark.parametrize("state_shape", [["B", 3, 5], ["B", 3, 3, 5], ["B", 2, 3, 6], [3, 2, 3, 5], ["B", 2, 3, 5, 1]])
def test_shape_inference_rejects_bad_alpha_initial_state(state_shape):
    register_schemas()
    node = oh.make_node("Alpha", ["x", "tau", "lvl", "st"], ["y"], domain=DOMAIN, dt=0.001)
    model = make_model([node], [vi("x", [4, 7, 3, 5]), vi("st", state_shape)], [vi("y", [4, 7, 3, 5])],
                       [const("tau", 0.1), const("lvl", 0.0)])
    with pytest.raises(Exception, match=r"'initial_state'.*\(B, 2, \*S\) = \(4, 2, 3, 5\)"):
        onnx.checker.check_model(model, full_check=True)


def test_evaluator_multi_node_graph():
    # Relu -> SpikingActivation -> Lowpass -> Alpha, all through the evaluator
    register_schemas()
    nodes = [
        oh.make_node("Relu", ["x"], ["rates"]),
        oh.make_node("SpikingActivation", ["rates"], ["spikes"], domain=DOMAIN, dt=0.001, seed=4),
        oh.make_node("Lowpass", ["spikes", "tau1", "zero"], ["smooth"], domain=DOMAIN, dt=0.001),
        oh.make_node("Alpha", ["smooth", "tau2", "zero"], ["y"], domain=DOMAIN, dt=0.001),
    ]
    model = make_model(
        nodes, [vi("x", ["B", 20, 4])], [vi("y", ["B", 20, 4])],
        [const("tau1", 0.01), const("tau2", [0.005, 0.01, 0.02, 0.04]), const("zero", 0.0)],
    )
    onnx.checker.check_model(model, full_check=True)
    x = (RNG.standard_normal((3, 20, 4)) * 200).astype(np.float32)
    (y,) = ReferenceEvaluator(model, new_ops=ref.REFERENCE_OPS).run(None, {"x": x})
    spikes, _ = ref.spiking_activation(np.maximum(x, 0), 0.001, seed=4)
    smooth, _ = ref.lowpass(spikes, np.float32(0.01), np.float32(0), 0.001)
    expected, _ = ref.alpha(smooth, np.array([0.005, 0.01, 0.02, 0.04], np.float32), np.float32(0), 0.001)
    np.testing.assert_array_equal(y, expected)
    assert y.dtype == np.float32


def test_evaluator_missing_dt_is_an_error():
    node = oh.make_node("Lowpass", ["x", "tau", "lvl"], ["y"], domain=DOMAIN)
    model = make_model([node], [vi("x", [1, 2])], [vi("y", [1, 2])], [const("tau", 0.1), const("lvl", 0.0)])
    with pytest.raises(ValueError, match="'dt' is missing"):
        ReferenceEvaluator(model, new_ops=ref.REFERENCE_OPS).run(None, {"x": np.zeros((1, 2), np.float32)})


def test_register_schemas_is_idempotent():
    for _ in range(3):
        register_schemas()
    for name in ("SpikingActivation", "Lowpass", "Alpha"):
        schema = onnx.defs.get_schema(name, OPSET, DOMAIN)
        assert schema.domain == DOMAIN and schema.since_version == OPSET
        assert schema.attributes["dt"].required
        assert not schema.attributes["time_major"].required
    alpha = onnx.defs.get_schema("Alpha", OPSET, DOMAIN)
    assert [p.name for p in alpha.inputs] == ["x", "tau", "initial_level", "initial_state"]
    assert alpha.inputs[3].option == onnx.defs.OpSchema.FormalParameterOption.Optional
    assert alpha.inputs[2].option == onnx.defs.OpSchema.FormalParameterOption.Single
    assert len(onnx.defs.get_schema("Lowpass", OPSET, DOMAIN).inputs) == 3
    spiking = onnx.defs.get_schema("SpikingActivation", OPSET, DOMAIN)
    assert spiking.attributes["seed"].default_value.i == 0
    assert spiking.inputs[1].option == onnx.defs.OpSchema.FormalParameterOption.Optional
    assert spiking.outputs[1].option == onnx.defs.OpSchema.FormalParameterOption.Optional


def test_make_opset_imports():
    imports = make_opset_imports(19)
    assert [(o.domain, o.version) for o in imports] == [("", 19), (DOMAIN, OPSET)]
    with pytest.raises(ValueError, match="default_opset"):
        make_opset_imports(0)


def infer(model):
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_param or d.dim_value for d in tensor.shape.dim) if tensor.HasField("shape") else None
        types[value.name] = (tensor.elem_type, dims)
    return types


@pytest.mark.parametrize("time_major", [0, 1])
def test_shape_inference_single_nodes(time_major):
    register_schemas()
    seq = ["T", "B", 3, 5] if time_major else ["B", "T", 3, 5]
    for op_type, inputs, state in [
        ("SpikingActivation", ["x"], ("B", 3, 5)),
        ("Lowpass", ["x", "tau", "lvl"], ("B", 3, 5)),
        ("Alpha", ["x", "tau", "lvl"], ("B", 2, 3, 5)),
    ]:
        node = oh.make_node(op_type, inputs, ["y", "state"], domain=DOMAIN, dt=0.001, time_major=time_major)
        model = make_model(
            [node], [vi("x", seq, TensorProto.DOUBLE)], [],
            [const("tau", [0.1] * 5, TensorProto.DOUBLE), const("lvl", 0.0, TensorProto.DOUBLE)],
        )
        model.graph.output.extend([oh.make_tensor_value_info("y", 0, None), oh.make_tensor_value_info("state", 0, None)])
        types = infer(model)
        assert types["y"] == (TensorProto.DOUBLE, tuple(seq)), op_type
        assert types["state"] == (TensorProto.DOUBLE, state), op_type


def test_shape_inference_multi_node_and_checker():
    register_schemas()
    nodes = [
        oh.make_node("SpikingActivation", ["x"], ["s", "v"], domain=DOMAIN, dt=0.001),
        oh.make_node("Alpha", ["s", "tau", "lvl"], ["a", "a_state"], domain=DOMAIN, dt=0.001),
        oh.make_node("Lowpass", ["a", "tau", "lvl"], ["y"], domain=DOMAIN, dt=0.001),
    ]
    model = make_model(nodes, [vi("x", [4, 10, 6])], [vi("y", [4, 10, 6])], [const("tau", 0.01), const("lvl", 0.0)])
    onnx.checker.check_model(model, full_check=True)
    types = infer(model)
    assert types["s"] == (TensorProto.FLOAT, (4, 10, 6))
    assert types["v"] == (TensorProto.FLOAT, (4, 6))
    assert types["a_state"] == (TensorProto.FLOAT, (4, 2, 6))
    assert types["y"] == (TensorProto.FLOAT, (4, 10, 6))


@pytest.mark.parametrize(
    "node_kwargs, x_shape, match",
    [
        (dict(dt=-0.5), [2, 3], "dt"),
        (dict(dt=0.1, time_major=3), [2, 3], "time_major"),
        (dict(dt=0.1), [5], "at least 2 dimensions"),
        (dict(), [2, 3], "dt"),
    ],
)
def test_checker_rejects_bad_nodes(node_kwargs, x_shape, match):
    register_schemas()
    node = oh.make_node("Lowpass", ["x", "tau", "lvl"], ["y"], domain=DOMAIN, **node_kwargs)
    model = make_model([node], [vi("x", x_shape)], [vi("y", x_shape)], [const("tau", 0.1), const("lvl", 0.0)])
    with pytest.raises(Exception, match=match):
        onnx.checker.check_model(model, full_check=True)


def test_checker_rejects_wrong_type():
    register_schemas()
    node = oh.make_node("Lowpass", ["x", "tau", "lvl"], ["y"], domain=DOMAIN, dt=0.1)
    model = make_model(
        [node], [vi("x", [2, 3], TensorProto.INT32)], [vi("y", [2, 3], TensorProto.INT32)],
        [oh.make_tensor("tau", TensorProto.INT32, [], [1]), oh.make_tensor("lvl", TensorProto.INT32, [], [0])],
    )
    with pytest.raises(Exception, match="(?i)type"):
        onnx.checker.check_model(model, full_check=True)
