"""Saving KerasSpiking layers and cells to ``.keras`` and loading them back."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import keras_layers as ks  # noqa: E402

RNG = np.random.default_rng(7)


def _randomise_weights(model):
    # make the saved values differ from what the initializers would recreate,
    # so an unloaded weight cannot pass unnoticed
    for w in model.weights:
        w.assign(RNG.uniform(0.005, 0.05, w.shape).astype(w.dtype))


def _roundtrip(model, tmp_path, x):
    expected = model.predict(x, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    actual = loaded.predict(x, verbose=0)
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            np.testing.assert_array_equal(a, e)
    else:
        np.testing.assert_array_equal(actual, expected)
    return loaded


LAYER_FACTORIES = {
    "SpikingActivation": lambda: ks.SpikingActivation(
        "tanh", dt=0.004, seed=11, spiking_aware_training=False, name="spk"
    ),
    "Lowpass": lambda: ks.Lowpass(
        0.02,
        dt=0.002,
        apply_during_training=False,
        level_initializer="ones",
        tau_constraint=ks.constraints.Mean(),
        initial_level_constraint="non_neg",
        name="spk",
    ),
    "Alpha": lambda: ks.Alpha(
        keras.initializers.RandomUniform(0.01, 0.03, seed=1), dt=0.001, name="spk"
    ),
}


@pytest.mark.parametrize("name", sorted(LAYER_FACTORIES))
def test_layer_roundtrip(name, tmp_path):
    inp = keras.Input((None, 3, 2))
    x = keras.layers.TimeDistributed(keras.layers.Dense(2))(inp)
    layer = LAYER_FACTORIES[name]()
    model = keras.Model(inp, layer(x))
    _randomise_weights(model)
    data = (RNG.standard_normal((2, 9, 3, 2)) * 50).astype(np.float32)
    loaded = _roundtrip(model, tmp_path, data)
    new = loaded.get_layer("spk")
    assert type(new) is type(layer)
    assert new.get_config() == layer.get_config()
    assert type(new.cell) is type(layer.cell)
    assert new.cell.size == layer.cell.size == (3, 2)
    for w_old, w_new in zip(layer.weights, new.weights):
        np.testing.assert_array_equal(w_new.numpy(), w_old.numpy())
    if name == "Lowpass":
        assert isinstance(new.cell.tau_constraint, ks.constraints.Mean)
        assert new.cell.trainable_weights == []


def test_options_roundtrip(tmp_path):
    inp = keras.Input((5, 4), batch_size=2)
    outs = ks.Alpha(0.01, time_major=True, return_state=True, return_sequences=False, name="a")(inp)
    model = keras.Model(inp, outs)
    _randomise_weights(model)
    loaded = _roundtrip(model, tmp_path, RNG.standard_normal((2, 5, 4)).astype(np.float32))
    layer = loaded.get_layer("a")
    assert (layer.time_major, layer.return_state, layer.return_sequences) == (True, True, False)


def test_dt_variable_saved_as_value(tmp_path):
    dt = tf.Variable(0.25)
    inp = keras.Input((None, 3))
    model = keras.Model(inp, ks.Lowpass(0.5, dt=dt, name="lp")(inp))
    dt.assign(0.125)
    loaded = _roundtrip(model, tmp_path, RNG.standard_normal((2, 6, 3)).astype(np.float32))
    assert loaded.get_layer("lp").dt == 0.125
    assert loaded.get_layer("lp").cell.dt == 0.125


def test_cells_in_user_rnn_roundtrip(tmp_path):
    inp = keras.Input((None, 6))
    x = keras.layers.RNN(
        ks.SpikingActivationCell(6, "relu", dt=0.01, seed=2), return_sequences=True
    )(inp)
    x = keras.layers.RNN(ks.LowpassCell(6, 0.03, dt=0.01), return_sequences=True)(x)
    x = keras.layers.RNN(ks.AlphaCell(6, 0.02, dt=0.01), return_sequences=True)(x)
    model = keras.Model(inp, x)
    _randomise_weights(model)
    _roundtrip(model, tmp_path, (RNG.standard_normal((2, 8, 6)) * 100).astype(np.float32))


@pytest.mark.parametrize(
    "cell",
    [
        lambda: ks.SpikingActivationCell((2, 3), "sigmoid", dt=0.02, seed=4),
        lambda: ks.LowpassCell(4, 0.01, apply_during_training=False, tau_constraint=ks.constraints.Mean(axis=-1)),
        lambda: ks.AlphaCell((2, 2), "ones", level_initializer="zeros"),
        lambda: ks.KerasSpikingCell((2, 3), state_size=4, dt=0.5, always_use_inference=False),
    ],
)
def test_cell_config_roundtrip(cell):
    original = cell()
    cfg = original.get_config()
    clone = type(original).from_config(cfg)
    assert clone.get_config() == cfg
    assert clone.size == original.size
    assert clone.state_size == original.state_size
    assert clone.always_use_inference == original.always_use_inference
    # and through Keras' generic (de)serialisation, i.e. the registered names
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(original))
    assert type(restored) is type(original) and restored.get_config() == cfg


def test_registered_names():
    for cls in (
        ks.SpikingActivation,
        ks.SpikingActivationCell,
        ks.Lowpass,
        ks.LowpassCell,
        ks.Alpha,
        ks.AlphaCell,
        ks.KerasSpikingCell,
        ks.KerasSpikingLayer,
        ks.constraints.Mean,
    ):
        assert keras.saving.get_registered_name(cls) == f"keras_spiking>{cls.__name__}"
