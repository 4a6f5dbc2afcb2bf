"""The export zoo: small Keras models that exercise every path of the exporter.

Each entry of :data:`ZOO` maps a name to a builder. A builder takes no arguments
and returns a :class:`ZooCase`: a built Keras model, an example input for it
(deterministic: every builder draws from its own seeded generator), and what a
test needs to use them (layout of the input, options for ``spikeonnx.export``,
objects such as a ``tf.Variable`` the model depends on).

The models cover Dense/Conv/pooling layers around ``SpikingActivation``,
``Lowpass`` and ``Alpha``; ``TimeDistributed`` wrappers; time-major layers;
a custom activation function; layers with different ``dt`` (one a
``tf.Variable``); spiking cells in a plain ``keras.layers.RNN``;
``return_state``; stateful layers; a nested model; a model without spiking
layers; fixed-length (static time) models; a model whose initial voltage is a
model input; the digits classifier and the demo's convolutional classifier.

The weights are drawn by Keras' initialisers from its global seed unless the
builder fixes them; call ``keras.utils.set_random_seed`` first for repeatable
weights.

Example
-------
>>> from spikeonnx.examples.zoo import ZOO
>>> case = ZOO["dense_spiking_sequential"]()
>>> case.x.shape  # (batch, time, features)
(3, 17, 5)
>>> tuple(case.model(case.x, training=False).shape)
(3, 17, 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Union

import numpy as np

__all__ = ["ZooCase", "ZOO", "build", "TIME_DISTRIBUTED_INNER"]

ExampleInput = Union[np.ndarray, List[np.ndarray]]


@dataclass
class ZooCase:
    """A zoo model with an example input.

    Attributes
    ----------
    model : keras.Model
        The built (uncompiled) model.
    x : numpy.ndarray or list of numpy.ndarray
        Example input, float32; a list for models with several inputs, in the
        order of ``model.inputs``.
    time_major : bool
        Whether ``x`` is laid out (time, batch, ...) instead of (batch, time, ...).
    export_kwargs : dict
        Keyword arguments the zoo test passes to ``spikeonnx.export``.
    extras : dict
        Anything else a test needs (e.g. the ``tf.Variable`` holding a ``dt``).
    """

    model: Any
    x: ExampleInput
    time_major: bool = False
    export_kwargs: Dict[str, Any] = field(default_factory=dict)
    extras: Dict[str, Any] = field(default_factory=dict)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _f32(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)


# -- builders -------------------------------------------------------------------


def dense_spiking_sequential() -> ZooCase:
    """Sequential ``Dense -> SpikingActivation(relu, seed 3) -> Dense``."""
    import keras

    import keras_layers as kl

    model = keras.Sequential(
        [
            keras.Input((None, 5)),
            keras.layers.Dense(8),
            kl.SpikingActivation("relu", dt=0.01, seed=3),
            keras.layers.Dense(2),
        ]
    )
    return ZooCase(model, _f32(_rng(1).uniform(0, 30, (3, 17, 5))))


def dense_spiking_functional() -> ZooCase:
    """Functional ``Dense -> SpikingActivation -> Dense`` with the spikes as a second output."""
    import keras

    import keras_layers as kl

    inp = keras.Input((None, 6), name="rates_in")
    hidden = keras.layers.Dense(10, name="hidden")(inp)
    spikes = kl.SpikingActivation("relu", dt=0.005, seed=11, name="spikes")(hidden)
    out = keras.layers.Dense(3, name="readout")(spikes)
    model = keras.Model(inp, [spikes, out])
    return ZooCase(model, _f32(_rng(2).uniform(0, 400, (4, 23, 6))))


def unseeded_spiking() -> ZooCase:
    """A lone unseeded ``SpikingActivation``; exported with ``default_seed=7``."""
    import keras

    import keras_layers as kl

    inp = keras.Input((None, 4))
    spikes = kl.SpikingActivation("relu", dt=0.01, name="sa")(inp)
    model = keras.Model(inp, spikes)
    return ZooCase(model, _f32(_rng(3).uniform(0, 60, (2, 15, 4))), export_kwargs={"default_seed": 7})


def conv_lowpass_readout() -> ZooCase:
    """``TimeDistributed(Conv2D) -> SpikingActivation -> TimeDistributed(AveragePooling2D,
    Flatten) -> Dense -> Lowpass(return_sequences=False)``, spikes as a second output."""
    import keras

    import keras_layers as kl

    inp = keras.Input((None, 8, 8, 1))
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(4, 3, activation=None), name="conv")(inp)
    spikes = kl.SpikingActivation("relu", dt=0.01, seed=1, name="conv_spikes")(x)
    x = keras.layers.TimeDistributed(keras.layers.AveragePooling2D(2), name="pool")(spikes)
    x = keras.layers.TimeDistributed(keras.layers.Flatten(), name="flat")(x)
    x = keras.layers.Dense(5, name="dense")(x)
    out = kl.Lowpass(0.02, dt=0.01, return_sequences=False, name="readout")(x)
    model = keras.Model(inp, [spikes, out])
    return ZooCase(model, _f32(_rng(4).uniform(0, 20, (3, 9, 8, 8, 1))))


def _td_dense() -> Any:
    import keras

    return keras.layers.Dense(20)


def _td_conv1d() -> Any:
    import keras

    return keras.layers.Conv1D(3, 2, padding="same")


def _td_conv3d() -> Any:
    import keras

    return keras.layers.Conv3D(2, 2)


def _td_maxpool2d() -> Any:
    import keras

    return keras.layers.MaxPooling2D(2)


def _td_dropout() -> Any:
    import keras

    return keras.layers.Dropout(0.5)


#: Layers wrapped by the ``time_distributed_*`` entries: name -> (layer factory, input shape).
TIME_DISTRIBUTED_INNER: Dict[str, Any] = {
    "dense": (_td_dense, (2, 5, 10)),
    "conv1d": (_td_conv1d, (2, 4, 6, 2)),
    "conv3d": (_td_conv3d, (2, 3, 3, 3, 3, 1)),
    "maxpool2d": (_td_maxpool2d, (2, 3, 4, 4, 2)),
    "dropout": (_td_dropout, (2, 3, 7)),
}


def _time_distributed(kind: str, seed: int) -> Callable[[], ZooCase]:
    def builder() -> ZooCase:
        import keras

        factory, shape = TIME_DISTRIBUTED_INNER[kind]
        model = keras.Sequential([keras.Input((None, *shape[2:])), keras.layers.TimeDistributed(factory())])
        return ZooCase(model, _f32(_rng(seed).normal(size=shape)))

    builder.__name__ = f"time_distributed_{kind}"
    builder.__doc__ = f"A Sequential model of one ``TimeDistributed`` around a {kind} layer."
    return builder


def alpha_initial_level() -> ZooCase:
    """A lone ``Alpha`` filter with a nonzero initial level (0.5)."""
    import keras

    import keras_layers as kl

    model = keras.Sequential(
        [
            keras.Input((None, 4)),
            kl.Alpha(0.03, dt=0.005, level_initializer=keras.initializers.Constant(0.5), name="alpha"),
        ]
    )
    return ZooCase(model, _f32(_rng(5).uniform(-5, 5, (2, 40, 4))))


def time_major_layers() -> ZooCase:
    """Time-major ``SpikingActivation -> Lowpass``; the input is (time, batch, 4)."""
    import keras

    import keras_layers as kl

    model = keras.Sequential(
        [
            keras.Input((None, 4)),  # (T, B, 4), seen by Keras as (batch=T, time=B)
            kl.SpikingActivation("relu", dt=0.01, seed=5, time_major=True, name="sa"),
            kl.Lowpass(0.02, dt=0.01, time_major=True, name="lp"),
        ]
    )
    return ZooCase(model, _f32(_rng(6).uniform(0, 80, (12, 3, 4))), time_major=True)


def custom_activation() -> ZooCase:
    """``SpikingActivation`` of a custom function (relu and sin: standard ops before the node)."""
    import keras
    import tensorflow as tf

    import keras_layers as kl

    def bumpy(x: Any) -> Any:
        return tf.nn.relu(x) * 3.0 + tf.square(tf.sin(x)) * 20.0

    inp = keras.Input((None, 5))
    spikes = kl.SpikingActivation(bumpy, dt=0.004, seed=9, name="custom")(inp)
    model = keras.Model(inp, spikes)
    return ZooCase(model, _f32(_rng(7).uniform(-10, 30, (2, 25, 5))))


def several_dt() -> ZooCase:
    """Four spiking layers with different ``dt``, one a ``tf.Variable`` (set to 0.004).

    ``extras["dt_var"]`` is the variable.
    """
    import keras
    import tensorflow as tf

    import keras_layers as kl

    dt_var = tf.Variable(0.002, dtype=tf.float32, trainable=False)
    inp = keras.Input((None, 3))
    a = kl.SpikingActivation("relu", dt=0.01, seed=1, name="sa_fast")(inp)
    b = kl.Lowpass(0.05, dt=dt_var, name="lp_var")(a)
    c = kl.SpikingActivation("relu", dt=0.001, seed=2, name="sa_slow")(b)
    d = kl.Alpha(0.01, dt=0.003, name="alpha", return_sequences=False)(c)
    model = keras.Model(inp, [c, d])
    dt_var.assign(0.004)  # the model runs (and exports) at the variable's current value
    return ZooCase(model, _f32(_rng(8).uniform(0, 200, (2, 30, 3))), extras={"dt_var": dt_var})


def plain_rnn_cells() -> ZooCase:
    """``SpikingActivationCell`` and ``LowpassCell`` in plain ``keras.layers.RNN`` layers."""
    import keras

    import keras_layers as kl

    inp = keras.Input((None, 4))
    s = keras.layers.RNN(kl.SpikingActivationCell(4, "relu", dt=0.01, seed=6), return_sequences=True,
                         name="rnn_sa")(inp)
    f = keras.layers.RNN(kl.LowpassCell(4, 0.03, dt=0.01), return_sequences=False, name="rnn_lp")(s)
    model = keras.Model(inp, [s, f])
    return ZooCase(model, _f32(_rng(9).uniform(0, 90, (3, 14, 4))))


def return_state() -> ZooCase:
    """``Lowpass(return_state=True, return_sequences=False)``: output and final state."""
    import keras

    import keras_layers as kl

    inp = keras.Input((None, 3))
    y, state = kl.Lowpass(0.02, dt=0.01, return_state=True, return_sequences=False, name="lp")(inp)
    model = keras.Model(inp, [y, state])
    return ZooCase(model, _f32(_rng(10).uniform(-3, 3, (2, 8, 3))))


def stateful() -> ZooCase:
    """Stateful ``Dense -> SpikingActivation -> Lowpass`` with a fixed batch of 2."""
    import keras

    import keras_layers as kl

    inp = keras.Input(batch_shape=(2, None, 3))
    hidden = keras.layers.Dense(6, name="hidden")(inp)
    spikes = kl.SpikingActivation("relu", dt=0.01, seed=4, stateful=True, name="sa")(hidden)
    out = kl.Lowpass(0.05, dt=0.01, stateful=True, name="lp")(spikes)
    model = keras.Model(inp, [spikes, out])
    return ZooCase(model, _f32(_rng(11).uniform(0, 40, (2, 30, 3))))


def nested() -> ZooCase:
    """A functional model used as a layer of another (``Dense -> SpikingActivation`` inside)."""
    import keras

    import keras_layers as kl

    inner_in = keras.Input((None, 4))
    inner_out = kl.SpikingActivation("relu", dt=0.01, seed=2, name="inner_sa")(keras.layers.Dense(4)(inner_in))
    inner = keras.Model(inner_in, inner_out, name="inner")
    outer_in = keras.Input((None, 4))
    outer = keras.Model(outer_in, keras.layers.Dense(2, name="top")(inner(outer_in)))
    return ZooCase(outer, _f32(_rng(12).uniform(0, 50, (2, 9, 4))))


def no_spiking() -> ZooCase:
    """A plain MLP on (batch, 7) without time or spiking layers; exported at opset 15."""
    import keras

    model = keras.Sequential([keras.Input((7,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(2)])
    return ZooCase(model, _f32(_rng(13).normal(size=(4, 7))), export_kwargs={"opset": 15})


def fixed_length_flatten() -> ZooCase:
    """Fixed length 6: ``SpikingActivation -> Flatten (over time) -> Dense``; time stays static."""
    import keras

    import keras_layers as kl

    model = keras.Sequential(
        [
            keras.Input((6, 3)),
            kl.SpikingActivation("relu", dt=0.01, seed=8, name="sa"),
            keras.layers.Flatten(),
            keras.layers.Dense(4),
        ]
    )
    return ZooCase(model, _f32(_rng(14).uniform(0, 200, (2, 6, 3))))


def fixed_length_dense() -> ZooCase:
    """Fixed length 10: ``Dense -> SpikingActivation -> Dense``, exportable with dynamic time."""
    import keras

    import keras_layers as kl

    inp = keras.Input((10, 6), name="rates_in")
    x = keras.layers.Dense(7, activation="relu", name="hidden")(inp)
    x = kl.SpikingActivation("relu", dt=0.01, seed=12, name="sa")(x)
    out = keras.layers.Dense(3, name="readout")(x)
    return ZooCase(keras.Model(inp, out), _f32(_rng(15).uniform(0, 50, (3, 10, 6))))


def initial_state_input() -> ZooCase:
    """The initial voltage of a ``SpikingActivation`` is a model input; Keras ops after it."""
    import keras

    import keras_layers as kl

    rates = keras.Input((None, 3), name="rates")
    v0 = keras.Input((3,), name="v0")
    spikes = kl.SpikingActivation("relu", dt=0.01, name="sa")(rates, initial_state=[v0])
    out = keras.layers.Add(name="sum")([keras.ops.add(spikes, 1.0), spikes])
    model = keras.Model([rates, v0], out)
    rng = _rng(16)
    x = _f32(rng.uniform(0, 150, (2, 9, 3)))
    v = _f32(rng.uniform(0, 1, (2, 3)))
    return ZooCase(model, [x, v])


def time_major_alpha() -> ZooCase:
    """A lone time-major ``Alpha`` with initial level 0.3; input (time 40, batch 2, 3)."""
    import keras

    import keras_layers as kl

    model = keras.Sequential(
        [
            keras.Input((None, 3)),
            kl.Alpha(0.02, dt=0.005, time_major=True, name="al", level_initializer=keras.initializers.Constant(0.3)),
        ]
    )
    return ZooCase(model, _f32(_rng(17).uniform(-3, 3, (40, 2, 3))), time_major=True)


def _alpha_between_dense(time_major: bool) -> Callable[[], ZooCase]:
    def builder() -> ZooCase:
        import keras

        import keras_layers as kl

        model = keras.Sequential(
            [
                keras.Input((None, 5)),
                keras.layers.Dense(6, name="d_in"),
                kl.Alpha(
                    keras.initializers.RandomUniform(0.005, 0.05),
                    dt=0.002,
                    time_major=time_major,
                    name="al",
                    level_initializer=keras.initializers.RandomUniform(-1, 1),
                ),
                keras.layers.Dense(3, name="d_out"),
            ]
        )
        shape = (30, 3, 5) if time_major else (3, 30, 5)
        return ZooCase(model, _f32(_rng(18 + time_major).uniform(-2, 2, shape)), time_major=time_major)

    builder.__name__ = "alpha_between_dense" + ("_time_major" if time_major else "")
    builder.__doc__ = (
        f"``Dense -> Alpha (random tau and level{', time-major' if time_major else ''}) -> Dense``."
    )
    return builder


def digits_classifier() -> ZooCase:
    """The digits classifier of :mod:`spikeonnx.examples.digits` (untrained), 10 steps of random images."""
    from . import digits

    images = _rng(20).uniform(0, 16, (8, 64))
    return ZooCase(digits.build_model(hidden=32, seed=0), digits.to_sequences(images, 10))


def demo_conv() -> ZooCase:
    """The demo's convolutional classifier (``spikeonnx.demo.build_conv_model``), untrained."""
    from ..demo import build_conv_model

    x = _f32(_rng(21).uniform(0, 1, (4, 6, 8, 8, 1)))
    return ZooCase(build_conv_model(seed=0), x)


#: Name -> builder of every zoo model.
ZOO: Dict[str, Callable[[], ZooCase]] = {
    "dense_spiking_sequential": dense_spiking_sequential,
    "dense_spiking_functional": dense_spiking_functional,
    "unseeded_spiking": unseeded_spiking,
    "conv_lowpass_readout": conv_lowpass_readout,
    **{f"time_distributed_{kind}": _time_distributed(kind, 30 + i) for i, kind in enumerate(TIME_DISTRIBUTED_INNER)},
    "alpha_initial_level": alpha_initial_level,
    "time_major_layers": time_major_layers,
    "custom_activation": custom_activation,
    "several_dt": several_dt,
    "plain_rnn_cells": plain_rnn_cells,
    "return_state": return_state,
    "stateful": stateful,
    "nested": nested,
    "no_spiking": no_spiking,
    "fixed_length_flatten": fixed_length_flatten,
    "fixed_length_dense": fixed_length_dense,
    "initial_state_input": initial_state_input,
    "time_major_alpha": time_major_alpha,
    "alpha_between_dense": _alpha_between_dense(False),
    "alpha_between_dense_time_major": _alpha_between_dense(True),
    "digits_classifier": digits_classifier,
    "demo_conv": demo_conv,
}


def build(name: str) -> ZooCase:
    """Build the zoo model ``name``.

    Raises
    ------
    KeyError
        If there is no such entry (the message lists the entries).
    """
    try:
        builder = ZOO[name]
    except KeyError:
        raise KeyError(f"no zoo model {name!r}; known: {', '.join(sorted(ZOO))}") from None
    return builder()
