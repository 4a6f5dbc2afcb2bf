"""Numerical tests of the KerasSpiking layers against independent NumPy models.

The NumPy functions below are written from the formulas only (they import nothing
from ``keras_layers``): spikes must agree element for element, filters to float32
round-off.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import keras_layers as ks  # noqa: E402

F32 = np.float32


# --------------------------------------------------------------- NumPy references


def np_relu(x):
    return np.maximum(x, 0).astype(F32)


def np_tanh(x):
    # the base activation is not under test: take TensorFlow's float32 tanh so that
    # rates agree bit for bit (NumPy's tanh can differ by one ulp)
    return tf.math.tanh(tf.constant(x, tf.float32)).numpy()


def np_sigmoid(x):
    return tf.math.sigmoid(tf.constant(x, tf.float32)).numpy()


def np_spiking(rates_fn, x, v0, dt):
    """Spiking activation in float32: v += r*dt; n = floor(v); v -= n; out = n/dt.

    ``x`` is (B, T, *S); returns (spikes, final voltage).
    """
    dt = F32(dt)
    v = np.array(v0, dtype=F32, copy=True)
    out = np.empty(x.shape, F32)
    for t in range(x.shape[1]):
        r = rates_fn(x[:, t]).astype(F32)
        # each operation rounded to float32 separately (no fused multiply-add)
        v = (v + (r * dt).astype(F32)).astype(F32)
        n = np.floor(v)
        v = (v - n).astype(F32)
        out[:, t] = (n / dt).astype(F32)
    return out, v


def np_lowpass(x, tau, level, dt):
    """First-order lowpass in float64; returns (y, final level)."""
    x = x.astype(np.float64)
    a = np.exp(-dt / np.maximum(np.asarray(tau, np.float64), 1e-8))
    y = np.broadcast_to(np.asarray(level, np.float64), (x.shape[0], *x.shape[2:])).copy()
    out = np.empty_like(x)
    for t in range(x.shape[1]):
        y = (1 - a) * x[:, t] + a * y
        out[:, t] = y
    return out, y


def np_alpha(x, tau, level, dt):
    """Alpha filter in float64 by the continuous-time solution of two lowpass stages.

    Independent of the layer's closed-form update: each step integrates
    s1' = (u - s1)/tau, s2' = (s1 - s2)/tau exactly with u held constant, written
    in terms of the deviation from the fixed point u. Both stages start at
    ``level`` (at rest). Returns (y, final state (B, 2, *S)) in the layer's
    (KerasSpiking's) state layout ``(v, y) = ((s1 - s2) / tau, s2)``, v = dy/dt.
    """
    x = x.astype(np.float64)
    tau = np.maximum(np.asarray(tau, np.float64), 1e-8)
    shape = (x.shape[0], *x.shape[2:])
    s1 = np.broadcast_to(np.asarray(level, np.float64), shape).copy()
    s2 = s1.copy()
    h = dt / tau
    e = np.exp(-h)
    out = np.empty_like(x)
    for t in range(x.shape[1]):
        u = x[:, t]
        d1, d2 = s1 - u, s2 - u
        # d1(t) = d1 e^{-t/tau};  d2(t) = (d2 + d1 t/tau) e^{-t/tau}
        s1, s2 = u + d1 * e, u + (d2 + d1 * h) * e
        out[:, t] = s2
    return out, np.stack([(s1 - s2) / tau, s2], axis=1)


def assert_filter_close(actual, expected, rtol=1e-6):
    """Relative agreement, measured against the scale of the signal.

    Values crossing zero make a pure element-wise relative error meaningless, so
    the error is normalised by max(|expected|) (at least 1e-3).
    """
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    scale = max(np.max(np.abs(expected)), 1e-3)
    err = np.max(np.abs(actual - expected)) / scale
    assert err <= rtol, f"relative error {err:.3g} > {rtol:.1g}"


RNG = np.random.default_rng(1234)
UNIT_SHAPES = [(5,), (3, 4), (2, 3, 2)]  # input ranks 3, 4, 5


def _inputs(shape, steps=12, batch=3, scale=40.0):
    return (RNG.standard_normal((batch, steps, *shape)) * scale).astype(F32)


# ---------------------------------------------------------------- SpikingActivation


@pytest.mark.parametrize("units", UNIT_SHAPES)
@pytest.mark.parametrize("activation,np_fn", [("relu", np_relu), ("tanh", np_tanh)])
def test_spiking_activation_matches_numpy(units, activation, np_fn):
    dt = 0.01 if activation == "relu" else 0.37
    x = _inputs(units, scale=80.0 if activation == "relu" else 3.0)
    v0 = RNG.uniform(0, 1, (x.shape[0], *units)).astype(F32)
    layer = ks.SpikingActivation(activation, dt=dt, return_state=True)
    spikes, v_final = layer(x, initial_state=[v0])
    expected, v_expected = np_spiking(np_fn, x, v0, dt)
    assert spikes.shape == x.shape
    np.testing.assert_array_equal(spikes.numpy(), expected)
    np.testing.assert_array_equal(v_final.numpy(), v_expected)
    # sanity: the test input actually produces spikes, some multiple per step
    assert np.count_nonzero(expected) > 0


def test_spiking_negative_and_multiple_spikes():
    x = np.array([[[-2500.0], [2500.0], [2500.0]]], F32)
    layer = ks.SpikingActivation(lambda z: z, dt=0.001)
    out = layer(x, initial_state=[np.array([[0.25]], F32)]).numpy()
    expected, _ = np_spiking(lambda z: z, x, np.array([[0.25]], F32), 0.001)
    np.testing.assert_array_equal(out, expected)
    # by hand: v = 0.25-2.5 -> -3 spikes; 0.75+2.5 -> 3; 0.25+2.5 -> 2
    np.testing.assert_array_equal(out[0, :, 0], np.array([-3, 3, 2], F32) / F32(0.001))


def test_seeded_initial_voltage_is_stateless_uniform():
    units, batch, seed = (3, 2), 4, 17
    x = _inputs(units, batch=batch, scale=30.0)
    layer = ks.SpikingActivation("relu", dt=0.01, seed=seed, return_state=True)
    out, _ = layer(x)
    v0 = tf.random.stateless_uniform((batch, *units), seed=(seed, seed), dtype=tf.float32)
    np.testing.assert_array_equal(layer.cell.get_initial_state(batch)[0].numpy(), v0.numpy())
    expected, _ = np_spiking(np_relu, x, v0.numpy(), 0.01)
    np.testing.assert_array_equal(out.numpy(), expected)
    # same seed, new layer -> same spikes; different seed -> a different draw
    again = ks.SpikingActivation("relu", dt=0.01, seed=seed)(x)
    np.testing.assert_array_equal(again.numpy(), out.numpy())
    other = ks.SpikingActivationCell(units, "relu", seed=seed + 1).get_initial_state(batch)[0]
    assert not np.array_equal(other.numpy(), v0.numpy())


def test_unseeded_initial_voltage_is_uniform():
    cell = ks.SpikingActivationCell((50, 40), "relu")
    v = cell.get_initial_state(batch_size=5)[0].numpy()
    assert v.shape == (5, 50, 40) and v.dtype == np.float32
    assert v.min() >= 0 and v.max() < 1
    assert abs(v.mean() - 0.5) < 0.02  # 10000 samples: std of mean ~0.003
    assert not np.array_equal(v, cell.get_initial_state(batch_size=5)[0].numpy())


# ------------------------------------------------------------------ Lowpass / Alpha


FILTERS = [("Lowpass", np_lowpass), ("Alpha", np_alpha)]


@pytest.mark.parametrize("units", UNIT_SHAPES)
@pytest.mark.parametrize("name,np_fn", FILTERS)
def test_filter_matches_numpy(units, name, np_fn):
    dt = 0.002
    x = _inputs(units, steps=40, scale=1.0)
    # weight shapes as in KerasSpiking: Lowpass (1, *S), Alpha (prod(S),)
    weight_shape = (1, *units) if name == "Lowpass" else (int(np.prod(units)),)
    tau = RNG.uniform(0.003, 0.05, weight_shape)
    level = RNG.uniform(-1, 1, weight_shape)
    layer = getattr(ks, name)(
        keras.initializers.Constant(tau),
        dt=dt,
        level_initializer=keras.initializers.Constant(level),
        return_state=True,
    )
    y, state = layer(x)
    # compare against the float32 weights actually held by the layer
    tau32 = layer.cell.tau.numpy()
    level32 = layer.cell.initial_level.numpy()
    assert tau32.shape == weight_shape and level32.shape == weight_shape
    expected, state_expected = np_fn(x, tau32.reshape(1, *units), level32.reshape(1, *units), dt)
    assert_filter_close(y.numpy(), expected)
    assert_filter_close(state.numpy(), state_expected)
    if name == "Alpha":
        assert state.shape == (x.shape[0], 2, *units)


@pytest.mark.parametrize("name,np_fn", FILTERS)
def test_filter_return_sequences_false(name, np_fn):
    x = _inputs((4,), steps=9, scale=1.0)
    layer = getattr(ks, name)(0.01, dt=0.001, return_sequences=False)
    y = layer(x).numpy()
    expected, _ = np_fn(x, 0.01, 0.0, 0.001)
    assert y.shape == (x.shape[0], 4)
    assert_filter_close(y, expected[:, -1])


def test_spiking_return_sequences_false():
    x = _inputs((4,), scale=100.0)
    v0 = RNG.uniform(0, 1, (x.shape[0], 4)).astype(F32)
    y = ks.SpikingActivation("relu", dt=0.01, return_sequences=False)(x, initial_state=v0)
    expected, _ = np_spiking(np_relu, x, v0, 0.01)
    np.testing.assert_array_equal(y.numpy(), expected[:, -1])


def _make(name, **kwargs):
    if name == "SpikingActivation":
        return ks.SpikingActivation("relu", dt=0.01, seed=5, **kwargs)
    return getattr(ks, name)(0.02, dt=0.003, level_initializer=keras.initializers.Constant(0.4), **kwargs)


LAYERS = ["SpikingActivation", "Lowpass", "Alpha"]


@pytest.mark.parametrize("name", LAYERS)
def test_stateful_two_calls_equal_one(name):
    x = _inputs((2, 3), steps=10, batch=2, scale=60.0)
    whole = _make(name)(x).numpy()
    layer = _make(name, stateful=True)
    first = layer(x[:, :4]).numpy()
    second = layer(x[:, 4:]).numpy()
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), whole)
    # reset goes back to the initial state, not zeros
    layer.reset_states()
    np.testing.assert_array_equal(layer(x).numpy(), whole)


@pytest.mark.parametrize("name", LAYERS)
def test_time_major(name):
    x = _inputs((3, 2), steps=7, scale=60.0)
    batch_major = _make(name, return_state=True)(x)
    time_major = _make(name, time_major=True, return_state=True)(np.swapaxes(x, 0, 1))
    np.testing.assert_array_equal(np.swapaxes(time_major[0].numpy(), 0, 1), batch_major[0].numpy())
    # states stay batch-first
    np.testing.assert_array_equal(time_major[1].numpy(), batch_major[1].numpy())
    last = _make(name, time_major=True, return_sequences=False)(np.swapaxes(x, 0, 1))
    np.testing.assert_array_equal(last.numpy(), batch_major[0].numpy()[:, -1])


def test_unroll_matches_loop():
    x = _inputs((4,), steps=6, scale=1.0)
    a = ks.Alpha(0.01, unroll=True)(x).numpy()
    b = ks.Alpha(0.01)(x).numpy()
    assert_filter_close(a, b)


def test_dt_variable_is_read_every_call():
    dt = tf.Variable(0.01)
    x = _inputs((3,), steps=8, scale=100.0)
    v0 = RNG.uniform(0, 1, (x.shape[0], 3)).astype(F32)
    spiking = ks.SpikingActivation("relu", dt=dt)
    lowpass = ks.Lowpass(0.05, dt=dt)
    assert spiking.dt is dt and lowpass.dt is dt
    for value in (0.01, 0.004):
        dt.assign(value)
        np.testing.assert_array_equal(
            spiking(x, initial_state=[v0]).numpy(), np_spiking(np_relu, x, v0, F32(value))[0]
        )
        assert_filter_close(lowpass(x).numpy(), np_lowpass(x, F32(0.05), 0.0, F32(value))[0])
    assert spiking.cell.dt is dt and lowpass.cell.dt is dt


def test_layer_in_functional_model_with_unknown_time():
    inp = keras.Input((None, 2, 3))
    out = ks.Alpha(0.01, return_state=True)(inp)
    assert tuple(out[0].shape) == (None, None, 2, 3)
    assert tuple(out[1].shape) == (None, 2, 2, 3)
    model = keras.Model(inp, out)
    x = _inputs((2, 3), steps=5, scale=1.0)
    y, state = model.predict(x, verbose=0)
    expected, state_expected = np_alpha(x, F32(0.01), 0.0, 0.001)
    assert_filter_close(y, expected)
    assert_filter_close(state, state_expected)


# ------------------------------------------------------------ cells in a user RNN


def test_cells_in_user_rnn():
    x = _inputs((10,), steps=6, scale=1.0)
    lp = keras.layers.RNN(ks.LowpassCell(size=10, tau_initializer=0.01), return_sequences=True)
    assert_filter_close(lp(x).numpy(), np_lowpass(x, F32(0.01), 0.0, 0.001)[0])

    al = keras.layers.RNN(
        ks.AlphaCell(size=10, tau_initializer=0.01, level_initializer="ones"),
        return_sequences=True,
    )
    assert_filter_close(al(x).numpy(), np_alpha(x, F32(0.01), 1.0, 0.001)[0])

    xs = x * 500
    cell = ks.SpikingActivationCell(size=10, activation=tf.nn.relu, seed=3)
    sp = keras.layers.RNN(cell, return_sequences=True)
    v0 = tf.random.stateless_uniform((x.shape[0], 10), seed=(3, 3)).numpy()
    np.testing.assert_array_equal(sp(xs).numpy(), np_spiking(np_relu, xs, v0, 0.001)[0])

    # and symbolically, inside a functional model
    inp = keras.Input((None, 10))
    model = keras.Model(
        inp, keras.layers.RNN(ks.LowpassCell(10, 0.01), return_sequences=True)(inp)
    )
    assert_filter_close(model.predict(x, verbose=0), np_lowpass(x, F32(0.01), 0.0, 0.001)[0])


def test_cell_initial_state_layouts():
    batch = 3
    assert ks.LowpassCell((2, 3), 0.01).size == (2, 3)
    lp = ks.LowpassCell((2, 3), 0.01, level_initializer=keras.initializers.Constant(0.5))
    lp.build((batch, 2, 3))
    (level,) = lp.get_initial_state(batch)
    np.testing.assert_array_equal(level.numpy(), np.full((batch, 2, 3), 0.5, F32))
    al = ks.AlphaCell((2, 3), 0.01, level_initializer=keras.initializers.Constant(0.5))
    al.build((batch, 2, 3))
    (state,) = al.get_initial_state(batch)
    # at rest at the level: (dy/dt, y) = (0, 0.5)
    np.testing.assert_array_equal(state.numpy()[:, 0], np.zeros((batch, 2, 3), F32))
    np.testing.assert_array_equal(state.numpy()[:, 1], np.full((batch, 2, 3), 0.5, F32))
    assert al.state_size == 12 and al.output_size == 6


# --------------------------------------------------------------------- gradients


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_spiking_aware_gradient_is_base_activation_gradient(activation):
    x = tf.constant(_inputs((4,), steps=5, scale=2.0))
    weights = tf.constant(RNG.standard_normal(x.shape).astype(F32))
    layer = ks.SpikingActivation(activation, dt=0.01, seed=0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x, training=True)
        loss = tf.reduce_sum(out * weights)
    grad = tape.gradient(loss, x).numpy()
    # forward pass in training is still spiking
    v0 = tf.random.stateless_uniform((x.shape[0], 4), seed=(0, 0)).numpy()
    np_fn = {"relu": np_relu, "tanh": np_tanh, "sigmoid": np_sigmoid}
    np.testing.assert_array_equal(out.numpy(), np_spiking(np_fn[activation], x.numpy(), v0, 0.01)[0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        base = keras.activations.get(activation)(x)
    expected = tape.gradient(base, x, output_gradients=weights).numpy()
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-7)
    assert np.count_nonzero(grad) > 0


def test_spiking_aware_gradient_in_graph_mode_and_fit():
    x = tf.constant(_inputs((3,), steps=4, scale=2.0))
    layer = ks.SpikingActivation("tanh", dt=0.01, seed=2)

    @tf.function
    def grad_fn(inp):
        with tf.GradientTape() as tape:
            tape.watch(inp)
            loss = tf.reduce_sum(layer(inp, training=True))
        return tape.gradient(loss, inp)

    with tf.GradientTape() as tape:
        tape.watch(x)
        base = tf.math.tanh(x)
    expected = tape.gradient(base, x).numpy()
    np.testing.assert_allclose(grad_fn(x).numpy(), expected, rtol=1e-6, atol=1e-7)

    # fit: gradients pass through the spiking layer to the Dense layer before it
    model = keras.Sequential(
        # positive weights keep the ReLUs alive on the all-ones input whatever the global RNG state
        [keras.Input((None, 3)), keras.layers.Dense(4, kernel_initializer=keras.initializers.Constant(0.5)),
         ks.SpikingActivation("relu", dt=0.1, seed=0)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    before = model.layers[0].kernel.numpy().copy()
    model.fit(np.ones((4, 5, 3), F32), np.ones((4, 5, 4), F32), epochs=1, verbose=0)
    assert not np.array_equal(model.layers[0].kernel.numpy(), before)


def test_non_spiking_aware_training_uses_base_activation():
    x = _inputs((4,), steps=5, scale=2.0)
    layer = ks.SpikingActivation("tanh", dt=0.01, spiking_aware_training=False, seed=1)
    np.testing.assert_allclose(layer(x, training=True).numpy(), np.tanh(x), rtol=1e-6, atol=1e-7)
    v0 = tf.random.stateless_uniform((x.shape[0], 4), seed=(1, 1)).numpy()
    np.testing.assert_array_equal(layer(x, training=False).numpy(), np_spiking(np_tanh, x, v0, 0.01)[0])


def _filter_fit(name, apply_during_training):
    inp = keras.Input((6, 3))
    filt = getattr(ks, name)(
        0.01, apply_during_training=apply_during_training, level_initializer="ones"
    )
    model = keras.Model(inp, filt(inp))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    x = _inputs((3,), steps=6, batch=8, scale=1.0)
    before = [w.numpy().copy() for w in filt.weights]
    train_out = model(x, training=True).numpy()
    model.fit(x, np.zeros_like(x), epochs=2, batch_size=4, verbose=0)
    after = [w.numpy() for w in filt.weights]
    return filt, x, train_out, before, after


@pytest.mark.filterwarnings("ignore:The model does not have any trainable weights")
@pytest.mark.parametrize("name", ["Lowpass", "Alpha"])
def test_apply_during_training_false_is_identity_and_frozen(name):
    filt, x, train_out, before, after = _filter_fit(name, apply_during_training=False)
    np.testing.assert_array_equal(train_out, x)
    assert filt.trainable_weights == [] and len(filt.non_trainable_weights) == 2
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    # at inference the filter still filters
    np_fn = dict(FILTERS)[name]
    assert_filter_close(filt(x).numpy(), np_fn(x, before[1], before[0], 0.001)[0])


def test_apply_during_training_true_trains_weights():
    # the counterpart of the test above: the same fit does change trainable filters
    filt, x, train_out, before, after = _filter_fit("Lowpass", apply_during_training=True)
    assert len(filt.trainable_weights) == 2
    assert not np.allclose(train_out, x)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_mean_tau_constraint_applied_in_fit():
    inp = keras.Input((4, 3))
    filt = ks.Lowpass(
        keras.initializers.Constant([[0.01, 0.02, 0.06]]),
        tau_constraint=ks.constraints.Mean(),
    )
    model = keras.Model(inp, filt(inp))
    model.compile(optimizer=keras.optimizers.SGD(1e-6), loss="mse")
    model.fit(np.ones((2, 4, 3), F32), np.zeros((2, 4, 3), F32), epochs=1, verbose=0)
    tau = filt.cell.tau.numpy()
    assert np.ptp(tau) == 0
    np.testing.assert_allclose(tau, 0.03, rtol=1e-3)


# ------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("name", LAYERS)
def test_rank_below_three_raises(name):
    with pytest.raises(ValueError, match="rank >= 3"):
        _make(name)(np.ones((2, 5), F32))


@pytest.mark.parametrize("dt", [0, -0.001, float("nan")])
def test_non_positive_dt_raises(dt):
    with pytest.raises(ValueError, match="dt"):
        ks.SpikingActivation("relu", dt=dt)
    with pytest.raises(ValueError, match="dt"):
        ks.Lowpass(0.01, dt=dt)
    with pytest.raises(ValueError, match="dt"):
        ks.AlphaCell(3, 0.01, dt=dt)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="not_an_activation"):
        ks.SpikingActivation("not_an_activation")
    with pytest.raises(ValueError, match="not_an_activation"):
        ks.SpikingActivationCell(3, "not_an_activation")
    with pytest.raises(TypeError, match="dt"):
        ks.Lowpass(0.01, dt="fast")
    with pytest.raises(ValueError, match="tau"):
        ks.Lowpass(-0.01)
    with pytest.raises(ValueError, match="tau"):
        ks.AlphaCell(3, 0.0)
    with pytest.raises(ValueError, match="dt"):
        ks.Lowpass(0.01, dt=tf.Variable([0.1, 0.2]))  # a variable's value is free, its shape is not
    with pytest.raises(ValueError, match="size"):
        ks.LowpassCell((3, None), 0.01)
    with pytest.raises(ValueError, match="unit axes"):
        ks.Lowpass(0.01)(keras.Input((None, None)))
    with pytest.raises(ValueError, match="stateful"):
        ks.Lowpass(0.01, stateful=True)(keras.Input((None, 3)))
    with pytest.raises(TypeError, match="seed"):
        ks.SpikingActivation("relu", seed=1.5)
