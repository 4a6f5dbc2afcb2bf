"""Tests of keras_layers.regularizers against NumPy references."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_layers import regularizers

PERCENTILES = (0, 12.5, 50, 99, 100)
AXES = (0, 1, -1, (0, 2), (1, 3), None)


def np_l1l2(d, l1, l2):
    """Reference L1/L2 penalty of distances ``d`` (float64).

    Keras turns the Python weights into tensors through float32 (``ops.cast``), so
    the weights are rounded the same way here.
    """
    d = np.asarray(d, dtype=np.float64)
    l1, l2 = float(np.float32(l1)), float(np.float32(l2))
    return l1 * np.abs(d).sum() + l2 * np.square(d).sum()


def np_distance(x, low, high):
    """Distance of ``x`` from the range [low, high] (zero inside), by cases."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    out[x < low] = (x - low)[x < low]
    out[x > high] = (x - high)[x > high]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("q", PERCENTILES)
@pytest.mark.parametrize("axis", AXES)
def test_percentile_function_matches_numpy_exactly(dtype, q, axis):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 5, 3, 4)).astype(dtype)
    got = regularizers.percentile(tf.constant(x), q, axis=axis).numpy()
    want = np.percentile(x, q, axis=axis)
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    # Same float64 index arithmetic and the same two-sided lerp as NumPy: bit-exact.
    np.testing.assert_array_equal(got, want)


def test_percentile_with_ties_and_unknown_batch():
    # Ties and an unknown (None) batch dimension inside a traced function.
    x = np.array([[3, 1], [1, 1], [2, 5], [3, 0]], dtype=np.float32)
    fn = tf.function(
        lambda t: regularizers.percentile(t, 37.5, axis=0),
        input_signature=[tf.TensorSpec((None, 2), tf.float32)],
    )
    np.testing.assert_array_equal(fn(tf.constant(x)).numpy(), np.percentile(x, 37.5, axis=0))


def test_percentile_gradient_goes_to_the_two_neighbours():
    x = np.array([0.3, -1.2, 2.5, 0.9, 1.7, -0.4], dtype=np.float64)
    q = 30.0
    xt = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = regularizers.percentile(xt, q, axis=0)
    grad = tape.gradient(y, xt).numpy()
    # By hand: position q/100*(n-1) = 1.5 in sorted order -> half weight on each of
    # the 2nd and 3rd smallest elements.
    order = np.argsort(x)
    want = np.zeros_like(x)
    want[order[1]] = 0.5
    want[order[2]] = 0.5
    np.testing.assert_allclose(grad, want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("q", PERCENTILES)
@pytest.mark.parametrize("axis", [0, (0, 1)])
@pytest.mark.parametrize("target", [0.25, (-0.2, 0.4)])
def test_percentile_regularizer_value(q, axis, target):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 3, 5)).astype(np.float64)
    reg = regularizers.Percentile(percentile=q, axis=axis, target=target, l1=0.03, l2=0.2)
    low, high = (target, target) if np.isscalar(target) else target
    want = np_l1l2(np_distance(np.percentile(x, q, axis=axis), low, high), 0.03, 0.2)
    np.testing.assert_allclose(float(reg(tf.constant(x))), want, rtol=1e-12)


@pytest.mark.parametrize("cls, kwargs, l1, l2", [
    (regularizers.L1L2, {"l1": 0.05, "l2": 0.3}, 0.05, 0.3),
    (regularizers.L1, {}, 0.01, 0.0),
    (regularizers.L2, {}, 0.0, 0.01),
    (regularizers.L1, {"l1": 0.2}, 0.2, 0.0),
    (regularizers.L2, {"l2": 0.7}, 0.0, 0.7),
])
def test_ranged_l1_l2_outside_and_inside_range(cls, kwargs, l1, l2):
    low, high = -0.5, 1.5
    reg = cls(target=(low, high), **kwargs)
    inside = np.linspace(low, high, 11)  # endpoints included
    assert float(reg(tf.constant(inside))) == 0.0
    rng = np.random.default_rng(3)
    x = rng.uniform(-4, 4, size=(6, 7))
    assert (x < low).any() and (x > high).any()
    np.testing.assert_allclose(float(reg(tf.constant(x))), np_l1l2(np_distance(x, low, high), l1, l2), rtol=1e-12)


def test_scalar_target_penalises_every_departure():
    x = np.array([[0.0, 2.0, 3.5], [-1.0, 2.0, 7.0]])
    reg = regularizers.L1L2(l1=0.1, l2=0.4, target=2.0)
    np.testing.assert_allclose(float(reg(tf.constant(x))), np_l1l2(x - 2.0, 0.1, 0.4), rtol=1e-12)


def test_ranged_regularizer_default_and_custom():
    x = np.array([-3.0, 0.5, 4.0])
    # Default penalty is L2 with weight 0.01.
    default = regularizers.RangedRegularizer(target=(0, 1))
    np.testing.assert_allclose(float(default(tf.constant(x))), np_l1l2([-3.0, 3.0], 0, 0.01), rtol=1e-12)
    custom = regularizers.RangedRegularizer(target=(0, 1), regularizer=keras.regularizers.L1(0.5))
    np.testing.assert_allclose(float(custom(tf.constant(x))), np_l1l2([-3.0, 3.0], 0.5, 0), rtol=1e-12)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="two elements"):
        regularizers.L1(target=(1, 2, 3))
    with pytest.raises(ValueError, match="`minimum` cannot exceed `maximum`"):
        regularizers.L2(target=(2, 1))
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        regularizers.Percentile(percentile=101, l2=0.1)
    with pytest.raises(ValueError, match="axis"):
        regularizers.Percentile(axis="batch", l2=0.1)
    with pytest.raises(ValueError, match="l1"):
        regularizers.L1(l1=-1.0)
    with pytest.raises(TypeError, match="unexpected"):
        regularizers.L1L2(l1=0.1, bogus=3)
    reg = regularizers.Percentile(axis=3, l2=0.1)
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        reg(tf.zeros((2, 3)))
    with pytest.raises(ValueError, match="floating-point"):
        regularizers.percentile(tf.constant([1, 2, 3]), 50, 0)


def test_zero_weights_warn():
    with pytest.warns(UserWarning, match="Regularization weight is zero"):
        regularizers.L1L2()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        regularizers.L1()


@pytest.mark.parametrize("reg", [
    regularizers.L1L2(l1=0.1, l2=0.2, target=(1, 2)),
    regularizers.L1(l1=0.3, target=0.5),
    regularizers.L2(l2=0.4, target=(0, 3)),
    regularizers.Percentile(percentile=12.5, axis=(0, 1), target=(5, 10), l1=0.1, l2=0.01),
    regularizers.RangedRegularizer(target=(-1, 1), regularizer=keras.regularizers.L1(0.2)),
])
def test_config_round_trip(reg):
    x = tf.constant(np.random.default_rng(4).normal(size=(5, 4, 3)) * 3)
    config = reg.get_config()
    clone = type(reg).from_config(config)
    assert float(clone(x)) == float(reg(x))
    # Through the Keras registry (name "keras_spiking>ClassName").
    serialized = keras.regularizers.serialize(reg)
    assert serialized["registered_name"] == f"keras_spiking>{type(reg).__name__}"
    restored = keras.regularizers.deserialize(serialized)
    assert type(restored) is type(reg)
    assert float(restored(x)) == float(reg(x))


def test_saved_model_keeps_activity_regularizer(tmp_path):
    reg = regularizers.Percentile(percentile=50, axis=0, target=(0.2, 0.3), l2=0.5)
    inp = keras.Input((6,))
    out = keras.layers.Dense(4, activity_regularizer=reg, name="reg_dense")(inp)
    model = keras.Model(inp, out)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)

    restored = loaded.get_layer("reg_dense").activity_regularizer
    assert isinstance(restored, regularizers.Percentile)
    assert restored.get_config() == reg.get_config()

    x = np.random.default_rng(5).normal(size=(8, 6)).astype(np.float32)
    loaded(x)
    kernel, bias = (w.numpy() for w in loaded.get_layer("reg_dense").weights)
    y = x @ kernel + bias
    # Keras divides activity penalties by the batch size.
    want = 0.5 * np.square(np_distance(np.percentile(y, 50, axis=0), 0.2, 0.3)).sum() / len(x)
    np.testing.assert_allclose(float(sum(loaded.losses)), want, rtol=1e-5)


def test_percentile_training_example_keeps_rates_in_range():
    """The Percentile example of the KerasSpiking reference, on fewer samples.

    Differences from the text: 40 960 instead of 102 400 training samples (for time);
    explicit layer names, since Keras 3 names layers from a process-wide counter; and
    Keras 3 wants a loss entry and a target for every output, so the spike output gets
    ``None`` for both.
    """
    import keras_layers as keras_spiking

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    train_x = rng.uniform(-1, 1, size=(1024 * 40, 2))
    train_y = train_x[:, :1] * train_x[:, 1:]
    test_x = rng.uniform(-1, 1, size=(128, 2))
    test_y = test_x[:, :1] * test_x[:, 1:]

    # train using one timestep, to speed things up
    train_seq = train_x[:, None]
    # test using 10 timesteps
    n_steps = 10
    test_seq = np.tile(test_x[:, None], (1, n_steps, 1))

    inp = x = keras.Input((None, 2))
    x = keras.layers.TimeDistributed(keras.layers.Dense(50))(x)
    x = spikes = keras_spiking.SpikingActivation(
        "relu",
        dt=1,
        activity_regularizer=keras_spiking.regularizers.Percentile(target=(5, 10), l2=0.01),
        name="spikes",
    )(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(1, name="dense_1")(x)
    model = keras.Model(inp, (x, spikes))
    model.compile(
        optimizer="rmsprop",
        loss={"dense_1": "mse", "spikes": None},
        metrics={"dense_1": "mae"},
    )
    model.fit(train_seq, (train_y, None), epochs=5, verbose=0)

    outputs, spikes = model.predict(test_seq, verbose=0)
    rates = spikes.mean(axis=1)
    max_rates = rates.max(axis=0)
    print("Max rates: %s, %s" % (max_rates.mean(), max_rates.std()))
    error = np.mean(np.abs(outputs - test_y))
    print("MAE: %s" % (error,))

    # Trained without the regularizer the maximum rates end near 2 Hz; with it, 5-10 Hz.
    assert 4.5 <= max_rates.mean() <= 10.5
    assert error < 0.15
