"""DtScheduler, the Mean constraint, default settings and the public API surface."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import keras_layers as keras_spiking  # noqa: E402  (the drop-in spelling)


@pytest.fixture
def restore_default_dt():
    saved = keras_spiking.default.dt
    yield
    keras_spiking.default.dt = saved


# ------------------------------------------------------------------- DtScheduler


def test_dt_scheduler_reference_example():
    # the example from the KerasSpiking documentation, unchanged but for tf.keras
    dt = tf.Variable(1.0)

    inp = keras.Input((None, 10))
    x = keras_spiking.SpikingActivation("relu", dt=dt)(inp)
    x = keras_spiking.Lowpass(0.1, dt=dt)(x)
    model = keras.Model(inp, x)

    callback = keras_spiking.callbacks.DtScheduler(
        dt, keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=5, decay_rate=0.9)
    )

    model.compile(loss="mse", optimizer="sgd")
    model.fit(
        np.ones((100, 2, 10)),
        np.ones((100, 2, 10)),
        epochs=10,
        batch_size=20,
        callbacks=[callback],
        verbose=0,
    )
    # 10 epochs x 5 batches; the last update happens before batch number 49
    assert int(model.optimizer.iterations.numpy()) == 50
    expected = np.float32(0.9 ** (49 / 5))
    np.testing.assert_allclose(dt.numpy(), expected, rtol=1e-6)
    # the value stays after fit, also through predict/evaluate
    model.predict(np.ones((4, 2, 10)), verbose=0)
    model.evaluate(np.ones((4, 2, 10)), np.ones((4, 2, 10)), verbose=0)
    np.testing.assert_allclose(dt.numpy(), expected, rtol=1e-6)


def test_layers_use_the_scheduled_dt():
    dt = tf.Variable(0.5)
    inp = keras.Input((None, 4))
    out = keras_spiking.Lowpass(0.05, dt=dt)(keras_spiking.SpikingActivation("relu", dt=dt, seed=3)(inp))
    model = keras.Model(inp, out)
    model.compile(loss="mse", optimizer="sgd")
    schedule = lambda step: 0.01 / (1 + step)  # noqa: E731  (a plain callable works too)
    x = np.abs(np.random.default_rng(0).standard_normal((6, 5, 4))).astype(np.float32) * 50
    model.fit(x, x, epochs=2, batch_size=3, callbacks=[keras_spiking.callbacks.DtScheduler(dt, schedule)], verbose=0)
    final = np.float32(0.01 / (1 + 3))  # 4 steps: last update at step 3
    assert dt.numpy() == final
    # predictions equal those of fresh layers built with the final dt as a float
    ref_in = keras.Input((None, 4))
    ref = keras.Model(
        ref_in,
        keras_spiking.Lowpass(0.05, dt=float(final))(
            keras_spiking.SpikingActivation("relu", dt=float(final), seed=3)(ref_in)
        ),
    )
    ref.set_weights(model.get_weights())
    np.testing.assert_array_equal(model.predict(x, verbose=0), ref.predict(x, verbose=0))


def test_dt_scheduler_counts_global_steps_across_fits(capsys):
    dt = tf.Variable(1.0)
    inp = keras.Input((2, 3))
    model = keras.Model(inp, keras_spiking.Lowpass(0.1, dt=dt)(inp))
    model.compile(loss="mse", optimizer="sgd")
    seen = []

    def schedule(step):
        seen.append(int(step))
        return 1.0 + step

    cb = keras_spiking.callbacks.DtScheduler(dt, schedule, verbose=True)
    data = np.ones((4, 2, 3), np.float32)
    model.fit(data, data, epochs=1, batch_size=2, callbacks=[cb], verbose=0)
    model.fit(data, data, epochs=1, batch_size=2, callbacks=[cb], verbose=0)
    assert seen == [0, 1, 2, 3]
    assert dt.numpy() == 4.0
    assert "DtScheduler epoch=0 dt=" in capsys.readouterr().out


def test_dt_scheduler_bad_arguments():
    with pytest.raises(TypeError, match="tf.Variable"):
        keras_spiking.callbacks.DtScheduler(0.001, lambda step: 0.001)
    with pytest.raises(TypeError, match="scheduler"):
        keras_spiking.callbacks.DtScheduler(tf.Variable(0.1), 0.5)


# ------------------------------------------------------------------- constraints


def test_mean_constraint():
    w = np.arange(12, dtype=np.float32).reshape(1, 3, 4) - 7
    out = keras_spiking.constraints.Mean(axis=None)(tf.constant(w)).numpy()
    np.testing.assert_array_equal(out, np.full(w.shape, w.mean(), np.float32))
    out = keras_spiking.constraints.Mean(axis=-1)(tf.constant(w)).numpy()
    np.testing.assert_array_equal(out, np.broadcast_to(w.mean(axis=-1, keepdims=True), w.shape))
    out = keras_spiking.constraints.Mean(axis=None, non_neg=True)(tf.constant(w)).numpy()
    np.testing.assert_array_equal(out, np.zeros(w.shape, np.float32))  # mean is -1.5
    cfg = keras_spiking.constraints.Mean(axis=(1, 2), non_neg=True).get_config()
    assert cfg == {"axis": [1, 2], "non_neg": True}
    assert keras_spiking.constraints.Mean.from_config(cfg).axis == (1, 2)


# ------------------------------------------------------------------------ config


def test_default_dt_is_read_at_construction(restore_default_dt):
    assert isinstance(keras_spiking.default, keras_spiking.config.DefaultManager)
    assert keras_spiking.config.default is keras_spiking.default
    assert keras_spiking.default.dt == 0.001
    before = keras_spiking.Lowpass(0.01)
    before_cell = keras_spiking.SpikingActivationCell(3, "relu")
    keras_spiking.default.dt = 0.02
    after = keras_spiking.Lowpass(0.01)
    after_cell = keras_spiking.AlphaCell(3, 0.01)
    explicit = keras_spiking.SpikingActivation("relu", dt=0.5)
    x = np.ones((1, 3, 2), np.float32)
    before(x)
    after(x)
    assert before.dt == 0.001 and before.cell.dt == 0.001 and before_cell.dt == 0.001
    assert after.dt == 0.02 and after.cell.dt == 0.02 and after_cell.dt == 0.02
    assert explicit.dt == 0.5
    # the built layers really use their own dt
    a = np.exp(-0.001 / 0.01)
    np.testing.assert_allclose(before(x).numpy()[0, 0], 1 - a, rtol=1e-6)
    a = np.exp(-0.02 / 0.01)
    np.testing.assert_allclose(after(x).numpy()[0, 0], 1 - a, rtol=1e-6)


def test_default_manager_validates():
    manager = keras_spiking.config.DefaultManager()
    assert manager.dt == 0.001
    assert keras_spiking.config.DefaultManager(dt=0.1).dt == 0.1
    with pytest.raises(ValueError, match="dt"):
        manager.dt = 0
    with pytest.raises(TypeError, match="dt"):
        manager.dt = "0.1"
    assert manager.dt == 0.001


# -------------------------------------------------------------------- public API


def test_public_api_names():
    for name in [
        "SpikingActivation",
        "SpikingActivationCell",
        "Lowpass",
        "LowpassCell",
        "Alpha",
        "AlphaCell",
        "KerasSpikingCell",
        "KerasSpikingLayer",
        "ModelEnergy",
        "default",
        "__version__",
    ]:
        assert hasattr(keras_spiking, name), name
    for module in ["layers", "config", "constraints", "callbacks", "regularizers", "model_energy"]:
        assert hasattr(keras_spiking, module), module
    assert keras_spiking.layers.SpikingActivation is keras_spiking.SpikingActivation
    assert keras_spiking.model_energy.ModelEnergy is keras_spiking.ModelEnergy
    assert isinstance(keras_spiking.__version__, str)


def test_constructor_defaults_match_reference():
    layer = keras_spiking.SpikingActivation("relu")
    assert (layer.seed, layer.spiking_aware_training, layer.dt) == (None, True, 0.001)
    assert (layer.return_sequences, layer.return_state, layer.stateful) == (True, False, False)
    assert (layer.unroll, layer.time_major) == (False, False)
    lp = keras_spiking.Lowpass(0.01)
    assert lp.apply_during_training is True
    assert lp.initial_level_constraint is None and lp.tau_constraint is None
    assert isinstance(lp.level_initializer, keras.initializers.Zeros)
    cell = keras_spiking.LowpassCell(4, 0.01)
    assert cell.always_use_inference is True and cell.size == (4,)
    sa_cell = keras_spiking.SpikingActivationCell(4, "relu", spiking_aware_training=False)
    assert sa_cell.always_use_inference is False
    base = keras_spiking.KerasSpikingCell(3)
    assert base.always_use_inference is True and base.state_size == 3
    with pytest.raises(NotImplementedError):
        base.call_inference(tf.zeros((1, 3)), [tf.zeros((1, 3))])
