"""Export failures are clear Python exceptions, and the handler registry works."""

from __future__ import annotations

import os

import keras
import numpy as np
import onnx
import pytest
import tensorflow as tf
from onnx.reference import ReferenceEvaluator

import keras_layers as kl
from spikeonnx import export, register_export_handler
from spikeonnx.exporter import ExportError, registered_handlers
from spikeonnx.reference import REFERENCE_OPS


class NumpyScale(keras.layers.Layer):
    """A layer tf2onnx cannot convert: it calls back into Python."""

    def call(self, x):
        y = tf.numpy_function(lambda a: (a * 2).astype(np.float32), [x], tf.float32)
        y.set_shape(x.shape)
        return y


class IncompleteGamma(keras.layers.Layer):
    """A layer whose TensorFlow op (Igamma) has no tf2onnx converter."""

    def call(self, x):
        return tf.math.igamma(x + 1.0, x + 1.0)


class Doubler(keras.layers.Layer):
    """A layer of our own, for the registry; exported through a handler."""

    def call(self, x):
        y = tf.numpy_function(lambda a: (a * 2).astype(np.float32), [x], tf.float32)
        y.set_shape(x.shape)
        return y

    def compute_output_shape(self, input_shape):
        return input_shape


def _model(layer, shape=(None, 3)):
    inp = keras.Input(shape)
    return keras.Model(inp, layer(inp))


@pytest.mark.parametrize("layer_class, op", [(NumpyScale, "PyFunc"), (IncompleteGamma, "Igamma")])
def test_unsupported_layer_names_class_and_registry_call(layer_class, op):
    model = _model(layer_class(name="odd_one"))
    with pytest.raises(ExportError) as info:
        export(model)
    message = str(info.value)
    assert "'odd_one'" in message
    assert layer_class.__name__ in message
    assert op in message
    assert f"spikeonnx.register_export_handler({layer_class.__name__}, handler)" in message


def test_registered_handler_exports_a_custom_layer():
    calls = []

    @register_export_handler(Doubler)
    def export_doubler(layer, ctx, x, **kwargs):
        calls.append(layer.name)
        return x * 2.0  # plain TensorFlow ops that tf2onnx converts

    try:
        inp = keras.Input((None, 3))
        out = kl.SpikingActivation("relu", dt=0.01, seed=1, name="sa")(Doubler(name="twice")(inp))
        model = keras.Model(inp, out)
        onnx_model = export(model)
        assert calls == ["twice"]
        assert Doubler in registered_handlers()
        x = np.random.default_rng(0).uniform(0, 50, (2, 6, 3)).astype(np.float32)
        (actual,) = ReferenceEvaluator(onnx_model, new_ops=REFERENCE_OPS).run(None, {onnx_model.graph.input[0].name: x})
        np.testing.assert_array_equal(actual, np.asarray(model(x, training=False)))
        # a subclass is served by its parent's handler (MRO lookup)
        class Tripler(Doubler):
            pass

        inp2 = keras.Input((3,))
        assert export(keras.Model(inp2, Tripler(name="sub")(inp2))) is not None
        assert calls[-1] == "sub"
    finally:
        from spikeonnx.exporter.handlers import HANDLERS

        if Doubler in HANDLERS:
            HANDLERS.unregister(Doubler)


def test_register_export_handler_rejects_non_classes_and_non_callables():
    with pytest.raises(TypeError, match="layer class"):
        register_export_handler("Dense", lambda *a: None)
    with pytest.raises(TypeError, match="callable"):
        register_export_handler(Doubler, 42)


def test_bad_arguments():
    model = _model(keras.layers.Dense(2))
    with pytest.raises(TypeError, match="keras.Model"):
        export(keras.layers.Dense(2))
    with pytest.raises(ValueError, match="opset"):
        export(model, opset=9)
    with pytest.raises(ValueError, match="default_seed"):
        export(model, default_seed=1.5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export(model, os.path.join("/nonexistent-dir-for-spikeonnx", "m.onnx"))


def test_unbuilt_model_is_rejected():
    with pytest.raises(ExportError, match="not built"):
        export(keras.Sequential([keras.layers.Dense(2)]))


def test_backwards_spiking_rnn_is_rejected():
    inp = keras.Input((None, 3))
    rnn = keras.layers.RNN(kl.LowpassCell(3, 0.01, dt=0.01), go_backwards=True, return_sequences=True, name="back")
    with pytest.raises(ExportError, match="'back'.*go_backwards"):
        export(keras.Model(inp, rnn(inp)))


def test_subclassed_model_with_spiking_layer_is_rejected():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.sa = kl.SpikingActivation("relu", dt=0.01)

        def call(self, x):
            return self.sa(x)

    net = Net()
    net(np.zeros((1, 2, 3), np.float32))
    with pytest.raises((ExportError, TypeError)):
        export(net)


def test_non_spiking_export_has_no_spikeonnx_domain():
    model = _model(keras.layers.Dense(2), shape=(4,))
    onnx_model = export(model)
    assert all(node.domain == "" for node in onnx_model.graph.node)
    assert "spikeonnx" not in {o.domain for o in onnx_model.opset_import}
    onnx.checker.check_model(onnx_model, full_check=True)


def test_shared_spiking_layer_gets_two_nodes_but_cannot_export_one_state():
    shared = kl.SpikingActivation("relu", dt=0.01, seed=2, name="shared")
    a, b = keras.Input((None, 3)), keras.Input((None, 3))
    model = keras.Model([a, b], [shared(a), shared(b)])
    onnx_model = export(model)
    assert [n.name for n in onnx_model.graph.node if n.domain == "spikeonnx"] == ["shared", "shared_2"]
    with pytest.raises(ExportError, match="'shared' is called more than once"):
        export(model, state_io=True)
