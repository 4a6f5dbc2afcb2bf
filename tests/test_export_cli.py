"""``spikeonnx export`` on a trained spiking digits classifier, and CLI error handling.

A classifier is trained with spiking-aware training on scikit-learn's digits,
saved as ``.keras``, exported with the command line and evaluated on the test
split in onnxruntime: same predicted class for every sample, hence the same
accuracy, as Keras.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import onnx
import pytest

from spikeonnx.cli import main
from spikeonnx.examples import digits

needs_ops = pytest.mark.needs_ops

TRAIN_STEPS = 10
TEST_STEPS = 30


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained digits classifier saved as .keras, with its data."""
    keras.utils.set_random_seed(3)
    data = digits.load_data(n_steps=TRAIN_STEPS, seed=0)
    model = digits.build_model(hidden=48, dt=0.01, seed=3)
    digits.train(model, data, epochs=15)
    path = tmp_path_factory.mktemp("digits") / "digits.keras"
    model.save(path)
    return model, path


@needs_ops
def test_cli_export_of_trained_digits_classifier_matches_keras(trained, tmp_path, capsys):
    from spikeonnx.runtime import InferenceSession

    model, keras_path = trained
    out = tmp_path / "digits.onnx"
    assert main(["export", str(keras_path), "-o", str(out)]) == 0
    assert "SpikingActivation spikes" in capsys.readouterr().out
    onnx_model = onnx.load(str(out))
    assert onnx_model.ir_version <= 10
    # the hidden Dense on the image held over the steps becomes an event op (equal rows computed once)
    assert [n.op_type for n in onnx_model.graph.node if n.domain == "spikeonnx"] == ["EventGemm", "SpikingActivation"]

    # evaluate with more timesteps than in training: the time axis is dynamic
    data = digits.load_data(n_steps=TEST_STEPS, seed=0)
    loaded = keras.saving.load_model(keras_path, compile=False)
    keras_logits = np.asarray(loaded(data.x_test, training=False))
    session = InferenceSession(str(out))
    (onnx_logits,) = session.run(None, {"image": data.x_test})
    keras_classes = keras_logits.argmax(-1)
    onnx_classes = onnx_logits.argmax(-1)
    np.testing.assert_array_equal(onnx_classes, keras_classes)
    keras_accuracy = digits.accuracy(keras_logits, data.y_test)
    assert digits.accuracy(onnx_logits, data.y_test) == keras_accuracy
    assert keras_accuracy > 0.8  # it did learn


@needs_ops
def test_cli_export_state_io_and_opset(trained, tmp_path):
    _, keras_path = trained
    out = tmp_path / "streaming.onnx"
    assert main(["export", str(keras_path), "-o", str(out), "--state-io", "--opset", "18"]) == 0
    onnx_model = onnx.load(str(out))
    assert [i.name for i in onnx_model.graph.input] == ["image", "spikes/state_in"]
    assert {o.domain: o.version for o in onnx_model.opset_import}[""] == 18
    meta = {p.key: p.value for p in onnx_model.metadata_props}
    assert json.loads(meta["spikeonnx.initial_state"]) == {"spikes/state_in": {"kind": "uniform_seed", "seed": 3}}


def test_cli_export_default_output_name(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    path = tmp_path / "plain.keras"
    model.save(path)
    assert main(["export", str(path)]) == 0
    assert (tmp_path / "plain.onnx").is_file()


@pytest.mark.parametrize(
    "argv_tail, message",
    [
        (["missing.keras"], "model file not found"),
        (["model.txt"], "expected a .keras"),
        (["plain.keras", "-o", "no/such/dir/x.onnx"], "does not exist"),
        (["plain.keras", "--opset", "5"], "--opset must be from 13 to 21"),
    ],
)
def test_cli_export_user_errors(tmp_path, capsys, argv_tail, message):
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(tmp_path / "plain.keras")
    (tmp_path / "model.txt").write_text("not a model")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        status = main(["export", *argv_tail])
    finally:
        os.chdir(cwd)
    assert status == 2
    assert message in capsys.readouterr().err


def test_cli_export_reports_unsupported_layer(tmp_path, capsys):
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="spikeonnx_test")
    class Gamma(keras.layers.Layer):
        def call(self, x):
            return tf.math.igamma(x + 1.0, x + 1.0)

    inp = keras.Input((3,))
    keras.Model(inp, Gamma(name="gamma")(inp)).save(tmp_path / "odd.keras")
    assert main(["export", str(tmp_path / "odd.keras")]) == 2
    err = capsys.readouterr().err
    assert "layer 'gamma' of class Gamma" in err and "register_export_handler(Gamma" in err
