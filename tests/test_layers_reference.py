"""The Keras layers (``keras_layers``) against the NumPy reference (``spikeonnx.reference``).

Random inputs, several shapes and layouts. ``SpikingActivation`` must give the
reference's spikes bit for bit: both do ``v += r * dt; n = floor(v); v -= n;
spike = n / dt`` in float32, one rounding per operation, in the same order (ReLU is
exact), and a seeded layer draws its initial voltage as the reference does (TF's
stateless Philox). The filters agree within float32 round-off only, see ``FILTER_RTOL``.
"""

from __future__ import annotations

import numpy as np
import pytest

import keras_layers as ks
from spikeonnx import reference as ref

RNG = np.random.default_rng(4321)

# Why the filters are not bit-exact: the layers compute a = exp(-dt/tau) with
# TensorFlow's float32 exp, the reference rounds a float64 exp once, so a may differ by
# an ulp (6e-8); with tau up to 100 steps, 1 - a is ~0.01 and that ulp is a ~6e-6 change
# of the filter's time constant, of which the output sees a fraction. Lowpass is exact
# whenever the two exps agree (22 of 30 random cases). Alpha also keeps its state as
# (v, y), v = (s1 - s2) / tau (KerasSpiking's layout), converting to and from the
# reference's cascade (s1, s2) every step: a few more roundings, never exact.
# Measured: at most 6.8e-7 (Lowpass) and 5.6e-7 (Alpha) of the signal scale over
# 30 random cases each (these shapes and (4, 200, 8)); the bounds leave ~7x.
FILTER_RTOL = {"Lowpass": 5e-6, "Alpha": 5e-6}

SHAPES = [(3, 40, 5), (2, 25, 3, 2)]  # (batch, time, *units)


def _rates(shape, time_major=False):
    """Rates in Hz, a quarter of them negative (ReLU zeroes them), as (B, T, *S) or (T, B, *S)."""
    x = RNG.uniform(-40.0, 120.0, shape).astype(np.float32)
    return np.ascontiguousarray(np.swapaxes(x, 0, 1)) if time_major else x


def _scaled_error(actual, expected):
    """Max abs error relative to the signal scale max|expected| (values cross zero)."""
    expected = np.asarray(expected, np.float64)
    scale = max(float(np.abs(expected).max()), 1e-6)
    return float(np.abs(np.asarray(actual, np.float64) - expected).max()) / scale


# -- SpikingActivation ------------------------------------------------------------------


@pytest.mark.parametrize("spiking_aware_training", [True, False])
@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_seeded_spiking_activation_is_the_reference(shape, time_major, spiking_aware_training):
    dt, seed = 0.01, 17
    x = _rates(shape, time_major)
    layer = ks.SpikingActivation(
        "relu", dt=dt, seed=seed, spiking_aware_training=spiking_aware_training, time_major=time_major
    )
    spikes = np.asarray(layer(x, training=False))
    expected, _ = ref.spiking_activation(np.maximum(x, 0), dt, seed=seed, time_major=time_major)
    assert np.count_nonzero(expected) > x.size // 10  # the comparison sees spikes
    np.testing.assert_array_equal(spikes, expected)


@pytest.mark.parametrize("spiking_aware_training", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_unseeded_spiking_activation_from_a_given_voltage_is_the_reference(shape, spiking_aware_training):
    dt = 0.005
    x = _rates(shape)
    v0 = RNG.uniform(0.0, 1.0, (shape[0], *shape[2:])).astype(np.float32)
    layer = ks.SpikingActivation("relu", dt=dt, spiking_aware_training=spiking_aware_training, return_state=True)
    spikes, final = (np.asarray(t) for t in layer(x, initial_state=[v0], training=False))
    expected, expected_final = ref.spiking_activation(np.maximum(x, 0), dt, initial_voltage=v0)
    np.testing.assert_array_equal(spikes, expected)
    np.testing.assert_array_equal(final, expected_final)


@pytest.mark.parametrize("spiking_aware_training", [True, False])
def test_unseeded_spiking_activation_counts_lie_between_the_extreme_starts(spiking_aware_training):
    # An unseeded layer draws its initial voltage in [0, 1) from TensorFlow's global
    # generator, which NumPy cannot replay; what the reference fixes is the range:
    # the number of spikes of a unit is that of starting at 0 or at most one more
    # (starting just below 1).
    dt, shape = 0.002, (4, 60, 6)
    x = _rates(shape)
    layer = ks.SpikingActivation("relu", dt=dt, spiking_aware_training=spiking_aware_training)
    spikes = np.asarray(layer(x, training=False))
    state = (shape[0], *shape[2:])
    low, _ = ref.spiking_activation(np.maximum(x, 0), dt, initial_voltage=np.zeros(state, np.float32))
    high, _ = ref.spiking_activation(
        np.maximum(x, 0), dt, initial_voltage=np.full(state, np.nextafter(np.float32(1), np.float32(0)))
    )
    count = np.rint(spikes.sum(axis=1) * np.float32(dt))
    assert np.all(np.rint(low.sum(axis=1) * np.float32(dt)) <= count)
    assert np.all(count <= np.rint(high.sum(axis=1) * np.float32(dt)))
    assert np.all(np.isin(spikes * np.float32(dt), [0.0, 1.0]))  # < 1 spike per step at these rates


def test_spiking_aware_training_decides_the_training_forward_pass():
    dt, seed = 0.01, 5
    x = _rates((2, 30, 4))
    expected, _ = ref.spiking_activation(np.maximum(x, 0), dt, seed=seed)
    aware = ks.SpikingActivation("relu", dt=dt, seed=seed, spiking_aware_training=True)
    np.testing.assert_array_equal(np.asarray(aware(x, training=True)), expected)  # spikes forward
    rate = ks.SpikingActivation("relu", dt=dt, seed=seed, spiking_aware_training=False)
    np.testing.assert_array_equal(np.asarray(rate(x, training=True)), np.maximum(x, 0))  # the rates


# -- Lowpass and Alpha ------------------------------------------------------------------


def _filter_case(shape, time_major, dt):
    units = shape[2:]
    x = RNG.standard_normal(shape).astype(np.float32)
    if time_major:
        x = np.ascontiguousarray(np.swapaxes(x, 0, 1))
    # time constants from a tenth of a step (a ~ 0) to 100 steps (a ~ 1)
    tau = (dt * 10.0 ** RNG.uniform(-1, 2, int(np.prod(units)))).astype(np.float32)
    level = RNG.uniform(-1, 1, int(np.prod(units))).astype(np.float32)
    return x, tau, level


def _given(values):
    """An initializer returning ``values`` in the shape the layer asks for."""
    return lambda shape, dtype=None: np.reshape(values, shape)


@pytest.mark.parametrize("op", ["Lowpass", "Alpha"])
@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_filter_layers_match_the_reference(op, shape, time_major):
    dt = 0.002
    x, tau, level = _filter_case(shape, time_major, dt)
    units = shape[2:]
    layer = getattr(ks, op)(
        _given(tau),  # the layers keep tau and the level as (1, *S) or flat (prod(S),)
        dt=dt,
        level_initializer=_given(level),
        return_state=True,
        time_major=time_major,
    )
    y, state = (np.asarray(t) for t in layer(x, training=False))
    func = ref.lowpass if op == "Lowpass" else ref.alpha
    expected, expected_state = func(x, tau.reshape(units), level.reshape(units), dt, time_major=time_major)
    assert y.shape == expected.shape and y.dtype == expected.dtype
    assert _scaled_error(y, expected) <= FILTER_RTOL[op]
    # the final filter output: the Lowpass state; the second row of Alpha's (v, y) state
    final = state if op == "Lowpass" else state[:, 1]
    expected_final = expected_state if op == "Lowpass" else expected_state[:, 1]
    assert _scaled_error(final.reshape(expected_final.shape), expected_final) <= FILTER_RTOL[op]
