"""Drop-in compatibility with KerasSpiking 0.3.0 (issue 11): one section per difference.

Each test pins a behaviour a script written for KerasSpiking relies on, with
expected values computed here from KerasSpiking's documented behaviour (the Alpha
state from its documented state-space equations, in NumPy).
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_layers as keras_spiking  # the drop-in spelling
from keras_layers.model_energy import ModelEnergy

F32 = np.float32
needs_ops = pytest.mark.needs_ops


# ------------------------------------------------- 1. trainable=False freezes the filters


@pytest.mark.parametrize("name", ["Lowpass", "Alpha"])
def test_trainable_false_freezes_tau_and_initial_level(name):
    cls = getattr(keras_spiking, name)
    inp = keras.Input((None, 3))
    frozen = cls(0.05, dt=0.01, trainable=False, name="frozen")
    free = cls(0.05, dt=0.01, name="free")
    model = keras.Model(inp, [frozen(inp), free(inp)])
    paths = [v.path for v in model.trainable_variables]
    assert paths and all(p.startswith("free/") for p in paths), paths
    before = [w.numpy().copy() for w in frozen.weights]
    assert len(before) == 2
    x = np.ones((4, 6, 3), F32)
    target = np.full((4, 6, 3), 0.3, F32)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    model.fit(x, [target, target], epochs=3, verbose=0)
    for w, b in zip(frozen.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), b)
    # the other one did train: the test can tell frozen from free
    assert any(not np.array_equal(w.numpy(), b) for w, b in zip(free.weights, before, strict=True))


def test_trainable_false_on_a_cell_and_set_after_build():
    cell = keras_spiking.AlphaCell(3, 0.05, trainable=False)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    rnn(np.zeros((1, 2, 3), F32))
    assert rnn.trainable_weights == [] and len(rnn.non_trainable_weights) == 2

    layer = keras_spiking.Lowpass(0.05)
    layer(np.zeros((1, 2, 3), F32))
    assert len(layer.trainable_weights) == 2
    layer.trainable = False
    assert layer.trainable_weights == [] and not any(w.trainable for w in layer.weights)
    layer.trainable = True
    assert len(layer.trainable_weights) == 2
    # apply_during_training=False keeps the weights frozen whatever `trainable` says
    skip = keras_spiking.Alpha(0.05, apply_during_training=False)
    skip(np.zeros((1, 2, 3), F32))
    skip.trainable = False
    skip.trainable = True
    assert skip.trainable_weights == []


# -------------------------------------------- 2. Alpha weights are (n,), Lowpass (1, ...)


def test_weight_shapes_match_keras_spiking_and_load_with_set_weights():
    x = np.random.default_rng(1).standard_normal((2, 5, 4)).astype(F32)
    alpha = keras_spiking.Alpha(0.05)
    alpha(x)
    assert [tuple(w.shape) for w in alpha.weights] == [(4,), (4,)]  # initial_level, tau
    tau = np.array([0.01, 0.02, 0.04, 0.08], F32)
    level = np.array([0.5, -0.5, 1.0, 0.0], F32)
    alpha.set_weights([level, tau])  # arrays shaped as a KerasSpiking model saves them
    np.testing.assert_array_equal(alpha.cell.tau.numpy(), tau)
    # the per-unit values are used per unit: each column equals a one-unit filter
    out = alpha(x).numpy()
    for i in range(4):
        single = keras_spiking.Alpha(float(tau[i]), level_initializer=float(level[i]))
        np.testing.assert_allclose(out[:, :, i : i + 1], single(x[:, :, i : i + 1]).numpy(), rtol=1e-6, atol=1e-7)

    lowpass = keras_spiking.Lowpass(0.05)
    lowpass(x)
    assert [tuple(w.shape) for w in lowpass.weights] == [(1, 4), (1, 4)]

    # multi-dimensional units: Alpha's weights are flat, (prod(S),), as in KerasSpiking
    cell = keras_spiking.AlphaCell((2, 3), 0.05)
    keras.layers.RNN(cell)(np.zeros((1, 2, 2, 3), F32))
    assert tuple(cell.tau.shape) == (6,) and tuple(cell.initial_level.shape) == (6,)


# ---------------------------------------------------- 3. dt variables, DtScheduler output


def test_dt_variable_holding_zero_is_accepted_and_scheduled(capsys):
    dt = tf.Variable(0.0, trainable=False)
    inp = keras.Input((None, 4))
    x = keras_spiking.SpikingActivation("relu", dt=dt, seed=0)(inp)
    x = keras_spiking.Lowpass(0.1, dt=dt)(x)
    out = keras_spiking.Alpha(0.1, dt=dt)(x)
    model = keras.Model(inp, out)
    model.compile(optimizer="sgd", loss="mse")
    # steps 0 and 1 (epoch 0): 0.5; steps 2 and 3 (epoch 1): 0.25
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1], [0.5, 0.25])
    callback = keras_spiking.callbacks.DtScheduler(dt, schedule, verbose=True)
    model.fit(np.ones((4, 3, 4), F32), np.ones((4, 3, 4), F32), epochs=2, batch_size=2, callbacks=[callback],
              verbose=0)
    printed = capsys.readouterr().out
    # printed at each epoch start with four decimals: 0 before the first batch set it
    assert "DtScheduler epoch=0 dt=0.0000\n" in printed
    assert "DtScheduler epoch=1 dt=0.5000\n" in printed
    assert float(dt.numpy()) == 0.25


# -------------------------------------------------- 4. messages start like KerasSpiking's


def _first_sentence(message: str, expected: str) -> None:
    assert message.startswith(expected), message
    assert len(message) > len(expected) + 10, "our extra detail follows the first sentence"


def test_dt_scheduler_and_regularizer_messages():
    with pytest.raises(TypeError) as info:
        keras_spiking.callbacks.DtScheduler(tf.constant(0.1), lambda step: 0.1)
    _first_sentence(str(info.value), "DtScheduler requires `dt` to be stored as a `tf.Variable`")

    regs = keras_spiking.regularizers
    with pytest.raises(ValueError) as info:
        regs.RangedRegularizer(target=(1, 2, 3))
    _first_sentence(
        str(info.value), "Target ranges should be specified as a tuple with two elements `(min, max)` (got 3 elements)"
    )
    with pytest.raises(ValueError) as info:
        regs.L1(target=(2, 1))
    _first_sentence(str(info.value), "`minimum` cannot exceed `maximum`")
    for bad in (-1, 100.5):
        with pytest.raises(ValueError) as info:
            regs.Percentile(percentile=bad, l1=1)
        _first_sentence(str(info.value), "`percentile` must be in the range [0, 100]")
    with pytest.warns(UserWarning) as record:
        regs.Percentile()
    _first_sentence(str(record[0].message), "Regularization weight is zero, it will have no effect")


class _Unknown(keras.layers.Layer):
    def call(self, x):
        return x


def test_model_energy_messages():
    with pytest.raises(ValueError) as info:
        ModelEnergy.compute_layer_stats(object())
    _first_sentence(str(info.value), "Cannot compute stats for layer of type 'object'")

    unknown = _Unknown()
    unknown(keras.Input((5,)))
    with pytest.warns(UserWarning) as record:
        ModelEnergy.compute_layer_stats(unknown)
    _first_sentence(str(record[0].message), "Cannot compute stats for layer of type '_Unknown'")

    with pytest.raises(ValueError) as info:
        ModelEnergy.compute_layer_stats(keras.layers.Dense(3))
    _first_sentence(str(info.value), "Layer dense")
    assert "has never been applied to any inputs, so its stats are undefined" in str(info.value)

    with ModelEnergy.layer_stats_computers.saved():
        ModelEnergy.register_layer(_Unknown)(lambda node: {})
        with pytest.warns(UserWarning) as record:
            ModelEnergy.register_layer(_Unknown)(lambda node: {"neurons": 1})
        _first_sentence(str(record[0].message), "Layer '_Unknown' already registered. Overwriting.")

    inp = keras.Input((5, 10))
    model = keras.Model(inp, keras.layers.Dense(20, activation="relu")(inp))
    energy = ModelEnergy(model)
    with pytest.raises(ValueError) as info:
        energy.total_energy("notadevice")
    _first_sentence(str(info.value), "Energy specs unknown for device 'notadevice'")
    with pytest.raises(ValueError) as info:
        energy.summary_string(columns=["name", "notacolumn"])
    _first_sentence(str(info.value), "Unknown column type 'notacolumn'")
    with pytest.raises(ValueError, match="example_data must be given"):
        energy.total_energy("loihi")

    inp = keras.Input((None, None, 5))
    with pytest.raises(ValueError) as info:
        ModelEnergy(keras.Model(inp, keras.layers.Dense(20)(inp)))
    assert re.search(r"output shape \(None, 20\) contains undefined elements", str(info.value)), info.value


def test_model_energy_device_registered_twice():
    from spikeonnx import devices

    with devices.DEVICES.saved():
        ModelEnergy.register_device("compat_dev", energy_per_synop=1e-12, energy_per_neuron=1e-10, spiking=True)
        with pytest.warns(UserWarning) as record:
            ModelEnergy.register_device("compat_dev", energy_per_synop=2e-12, energy_per_neuron=1e-10, spiking=True)
        _first_sentence(str(record[0].message), "Device 'compat_dev' already registered. Overwriting.")
    assert "compat_dev" not in devices.DEVICES


def test_model_energy_footer_lines():
    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(4, activation="relu")(inp))
    energy = ModelEnergy(model, example_data=np.ones((2, 8), F32))
    lines = energy.summary_string(columns=("name", "energy cpu", "energy loihi"), line_length=300).splitlines()
    notes = [line for line in lines if line.startswith("* ")]
    assert len(notes) == 2
    _first_sentence(notes[0], "* These are estimates only; see the documentation for a list of the assumptions")
    _first_sentence(notes[1], "* This model contains non-spiking activations")
    # without a spiking device column only the first note
    lines = energy.summary_string(columns=("name", "energy cpu"), line_length=300).splitlines()
    assert [line for line in lines if line.startswith("* ")] == [notes[0]]


# -------------------------------------------------- 5. HAS_TFP and the version module


def test_has_tfp_and_version_module(monkeypatch):
    regs = keras_spiking.regularizers
    assert regs.HAS_TFP is True  # percentiles below 100 need no extra package here
    x = np.random.default_rng(3).uniform(-1, 10, (6, 5)).astype(F32)
    got = float(regs.Percentile(percentile=30, axis=0, target=4, l1=0.5)(x))
    np.testing.assert_allclose(got, 0.5 * np.abs(np.percentile(x, 30, axis=0) - 4).sum(), rtol=1e-5)
    monkeypatch.setattr(regs, "HAS_TFP", False)
    with pytest.raises(ValueError) as info:
        regs.Percentile(percentile=50, l1=1)
    _first_sentence(str(info.value), "`percentile` < 100 requires tensorflow-probability to be installed")
    regs.Percentile(percentile=100, l1=1)  # the maximum never needed it

    from keras_layers import version

    assert isinstance(version.version_info, tuple) and all(isinstance(v, int) for v in version.version_info)
    expected = ".".join(map(str, version.version_info)) + ("" if version.dev is None else f".dev{version.dev}")
    assert version.version == expected == keras_spiking.__version__


# ----------------------------------------------------------- 6. Mean() is along axis -1


def test_mean_constraint_defaults_to_last_axis():
    w = np.arange(12, dtype=F32).reshape(3, 4) ** 2
    out = keras_spiking.constraints.Mean()(tf.constant(w)).numpy()
    np.testing.assert_allclose(out, np.repeat(w.mean(axis=-1, keepdims=True), 4, axis=-1), rtol=1e-6)
    assert keras_spiking.constraints.Mean().get_config() == {"axis": -1}
    restored = keras_spiking.constraints.Mean.from_config({"axis": -1})  # a KerasSpiking config
    assert restored.axis == -1 and restored.non_neg is False
    assert keras_spiking.constraints.Mean(axis=None, non_neg=True).get_config() == {"axis": None, "non_neg": True}


# ------------------------------------------------ 7. Alpha's state is (dy/dt, y)


def _expm(m: np.ndarray) -> np.ndarray:
    """Matrix exponential in float64 by scaling and squaring a Taylor series."""
    squarings = max(0, int(np.ceil(np.log2(max(np.abs(m).sum(axis=1).max(), 1e-300)))) + 1)
    scaled = m / 2.0**squarings
    term = np.eye(len(m))
    total = term.copy()
    for k in range(1, 30):
        term = term @ scaled / k
        total = total + term
    for _ in range(squarings):
        total = total @ total
    return total


def _keras_spiking_alpha(x, tau, dt, state):
    """KerasSpiking's Alpha cell in float64 NumPy, from its documented equations.

    State ``(v, y)`` of ``tau^2 y'' + 2 tau y' + y = u``:
    ``d/dt [v, y] = [[-2/tau, -1/tau^2], [1, 0]] [v, y] + [1/tau^2, 0] u``,
    discretised with a zero-order hold (input held over each step).
    x: (B, T, n); tau: (n,); state: (B, 2, n). Returns (outputs, final state).
    """
    x = x.astype(np.float64)
    state = state.astype(np.float64).copy()
    out = np.empty_like(x)
    for unit, t in enumerate(np.asarray(tau, np.float64)):
        augmented = np.zeros((3, 3))
        augmented[:2, :2] = [[-2 / t, -1 / t**2], [1, 0]]
        augmented[0, 2] = 1 / t**2
        step = _expm(augmented * dt)
        a, b = step[:2, :2], step[:2, 2]
        for i in range(x.shape[1]):
            state[:, :, unit] = state[:, :, unit] @ a.T + np.outer(x[:, i, unit], b)
            out[:, i, unit] = state[:, 1, unit]
    return out, state


def _scaled(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1.0))


def test_alpha_state_is_keras_spiking_layout():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 50, 4)).astype(F32)
    tau = np.array([0.01, 0.02, 0.05, 0.003], F32)
    level = np.array([0.5, -1.0, 0.0, 2.0], F32)
    dt = 0.002
    layer = keras_spiking.Alpha(0.01, dt=dt, return_state=True)
    layer(x[:, :1])
    layer.set_weights([level, tau])

    # from rest at the initial level: KerasSpiking starts at (v, y) = (0, level)
    rest = np.stack([np.zeros((3, 4)), np.broadcast_to(level, (3, 4))], axis=1)
    want_y, want_state = _keras_spiking_alpha(x, tau, dt, rest)
    y, state = layer(x)
    assert state.shape == (3, 2, 4)
    assert _scaled(y, want_y) < 1e-5
    assert _scaled(state[:, 1], want_state[:, 1]) < 1e-5  # y
    assert _scaled(state[:, 0], want_state[:, 0]) < 1e-5  # v = dy/dt, in units per second

    # a state handed in means the same: continuing from it gives KerasSpiking's result
    start = np.stack([rng.uniform(-50, 50, (3, 4)), rng.uniform(-1, 1, (3, 4))], axis=1).astype(F32)
    want_y, want_state = _keras_spiking_alpha(x, tau, dt, start)
    y, state = layer(x, initial_state=[tf.constant(start)])
    assert _scaled(y, want_y) < 1e-5 and _scaled(state, want_state) < 1e-5
    assert _scaled(layer.cell.get_initial_state(batch_size=3)[0], rest) == 0

    # stateful reset_states takes a state in the same layout
    stateful = keras_spiking.Alpha(0.01, dt=dt, stateful=True, return_state=True)
    stateful(x[:, :1])
    stateful.set_weights([level, tau])
    stateful.reset_states(states=[start])
    y, _ = stateful(x)
    assert _scaled(y, want_y) < 1e-5


def test_alpha_accepts_a_keras_spiking_shaped_state_for_multid_units():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 10, 2, 3)).astype(F32)
    start = rng.uniform(-1, 1, (2, 2, 6)).astype(F32)  # KerasSpiking flattens the unit axes
    layer = keras_spiking.Alpha(0.02, return_state=True)
    y_flat, state = layer(x, initial_state=[tf.constant(start)])
    y_full, state_full = layer(x, initial_state=[tf.constant(start.reshape(2, 2, 2, 3))])
    np.testing.assert_array_equal(y_flat, y_full)
    # the state comes back in the layout it was handed in
    assert state.shape == (2, 2, 6) and state_full.shape == (2, 2, 2, 3)
    np.testing.assert_array_equal(np.reshape(state, (2, 2, 2, 3)), state_full)
    # reset_states of a stateful layer takes the flat layout as well
    stateful = keras_spiking.Alpha(0.02, stateful=True)
    stateful(x[:, :1])
    stateful.reset_states(states=[start])
    np.testing.assert_array_equal(stateful(x), y_full)


@needs_ops
def test_exported_alpha_converts_keras_states():
    """Keras passes (v, y); the op carries (s1, s2): export converts both ways."""
    from spikeonnx import export
    from spikeonnx.runtime import InferenceSession

    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 30, 3)).astype(F32)
    start = np.stack([rng.uniform(-20, 20, (2, 3)), rng.uniform(-1, 1, (2, 3))], axis=1).astype(F32)
    inp = keras.Input((None, 3), name="x")
    s0 = keras.Input((2, 3), name="s0")
    alpha = keras_spiking.Alpha(0.02, dt=0.004, return_state=True, name="al")
    y, final = alpha(inp, initial_state=[s0])
    model = keras.Model([inp, s0], [y, final])
    alpha.set_weights([np.array([0.3, -0.2, 0.0], F32), np.array([0.01, 0.02, 0.05], F32)])
    want_y, want_final = (np.asarray(t) for t in model([x, start], training=False))

    onnx_model = export(model)
    got_y, got_final = InferenceSession(onnx_model).run(None, {"x": x, "s0": start})
    assert _scaled(got_y, want_y) < 1e-5
    assert _scaled(got_final, want_final) < 1e-5
    # and both equal KerasSpiking's own formula
    ref_y, ref_final = _keras_spiking_alpha(x, [0.01, 0.02, 0.05], 0.004, start)
    assert _scaled(got_y, ref_y) < 1e-5 and _scaled(got_final, ref_final) < 1e-5


# ------------------------------------- 8. RangedRegularizer passes the distance outside


def test_ranged_regularizer_passes_unsigned_distance_outside_the_range():
    regs = keras_spiking.regularizers
    custom = regs.RangedRegularizer(target=(3, 4), regularizer=lambda e: tf.reduce_sum(e))
    # 0 is 3 below the range, 10 is 6 above it: 3 + 6
    assert float(custom(tf.constant([0.0, 10.0]))) == 9.0
    assert float(custom(tf.constant([3.0, 3.5, 4.0]))) == 0.0
    seen = []
    recorder = regs.RangedRegularizer(target=(-1, 1), regularizer=lambda e: seen.append(e.numpy()) or 0.0)
    recorder(tf.constant([-3.0, 0.0, 2.5]))
    np.testing.assert_array_equal(seen[0], [2.0, 0.0, 1.5])
    # a single target still gets the signed difference x - target
    single = regs.RangedRegularizer(target=2, regularizer=lambda e: tf.reduce_sum(e))
    assert float(single(tf.constant([0.0, 5.0]))) == 1.0
    # L1/L2 unchanged
    x = np.array([0.0, 3.5, 10.0], F32)
    assert float(regs.L2(0.1, target=(3, 4))(x)) == pytest.approx(0.1 * (9 + 36))
    assert float(regs.L1(0.1, target=(3, 4))(x)) == pytest.approx(0.1 * 9)
