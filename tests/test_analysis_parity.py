"""GraphEnergy on exported models agrees with keras_layers.ModelEnergy on the Keras model.

Each Keras model is exported with ``spikeonnx.export`` (which writes the Keras layer
names and the batch/time axes into the ONNX metadata); the ONNX analysis must then
give the same per-layer connections, neurons and spiking flags (exactly), the same
input rates on the same example data, and the same energy on every device.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import keras_layers as kl
from spikeonnx import devices as dev
from spikeonnx import export
from spikeonnx.analysis import GraphEnergy

RNG = np.random.default_rng(77)


def _dense_published():
    inp = keras.Input((784,), name="pixels")
    out = keras.layers.Dense(128, activation="relu", name="dense")(inp)
    x = RNG.uniform(0, 1, (8, 784)).astype(np.float32)
    return keras.Model(inp, out), x


def _dense_spiking():
    inp = keras.Input((None, 6), name="rates_in")
    x = keras.layers.Dense(10, activation="relu", name="hidden")(inp)
    x = kl.SpikingActivation("relu", dt=0.005, seed=11, name="spikes")(x)
    x = kl.Lowpass(0.02, dt=0.005, name="smooth")(x)
    x = keras.layers.Dense(5, name="readout")(x)
    out = keras.layers.Activation("softmax", name="probs")(x)
    data = RNG.uniform(0, 40, (4, 23, 6)).astype(np.float32)
    return keras.Model(inp, out), data


def _conv_spiking():
    inp = keras.Input((None, 8, 8, 1), name="frames")
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(4, 3, activation=None), name="conv")(inp)
    x = kl.SpikingActivation("relu", dt=0.01, seed=1, name="conv_spikes")(x)
    x = keras.layers.TimeDistributed(keras.layers.Flatten(), name="flat")(x)
    x = keras.layers.Dense(6, activation="tanh", name="fc")(x)
    x = kl.SpikingActivation("relu", dt=0.01, seed=2, name="fc_spikes")(x)
    out = kl.Alpha(0.01, dt=0.01, name="alpha")(x)
    data = RNG.uniform(0, 50, (3, 9, 8, 8, 1)).astype(np.float32)
    return keras.Model(inp, out), data


MODELS = {
    "dense_published": _dense_published,
    "dense_spiking": _dense_spiking,
    "dense_spiking_state_io": _dense_spiking,
    "conv_spiking": _conv_spiking,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parity_with_model_energy(name):
    model, data = MODELS[name]()
    state_io = name.endswith("state_io")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown-layer notices are compared below, not here
        keras_energy = kl.ModelEnergy(model, data)
        onnx_model = export(model, state_io=state_io)
        # with state inputs, the example data is still only the Keras input: the
        # analyzer starts the states as the metadata says (the seeded voltage draw)
        assert (len(onnx_model.graph.input) > 1) == state_io
        graph_energy = GraphEnergy(onnx_model, data)

    keras_layers = {layer.name: layer for layer in keras_energy.layer_stats}
    graph_stats = graph_energy.layer_stats
    assert set(keras_layers) <= set(graph_stats), (sorted(keras_layers), sorted(graph_stats))
    for extra in set(graph_stats) - set(keras_layers):
        # anything the exporter could not attribute must count nothing
        assert graph_stats[extra]["connections"] == graph_stats[extra]["neurons"] == 0, extra
    assert any(s["connections"] for s in graph_stats.values())

    for layer_name, layer in keras_layers.items():
        expected = keras_energy.layer_stats[layer]
        got = graph_stats[layer_name]
        assert got["connections"] == expected.get("connections", 0), layer_name
        assert got["neurons"] == expected.get("neurons", 0), layer_name
        assert got["spiking"] == expected.get("spiking", True), layer_name
        assert graph_energy.layer_rates[layer_name] == pytest.approx(
            keras_energy.layer_rates[layer], rel=1e-5, abs=1e-9
        ), layer_name

    for device in dev.devices():
        for steps, dt in ((1, None), (10, 0.002)):
            keras_total = keras_energy.total_energy(device.name, steps, dt)
            graph_total = graph_energy.total_energy(device.name, steps, dt)
            if device.spiking:
                assert graph_total == pytest.approx(keras_total, rel=1e-5), device.name
            else:
                # integer statistics and the same formula: identical floats
                assert graph_total == keras_total, device.name
            for layer_name, layer in keras_layers.items():
                want = keras_energy.layer_energy(layer, device.name, steps, dt)
                got = graph_energy.layer_energy(layer_name, device.name, steps, dt)
                assert got == pytest.approx(want, rel=1e-5, abs=1e-30), (layer_name, device.name)

    if name == "dense_published":
        assert graph_stats["dense"] == {"connections": 100352, "neurons": 128, "spiking": False}
        assert f"{graph_energy.total_energy('cpu'):.2e}" == "8.64e-04"
