"""GraphEnergy on exported models agrees with keras_layers.ModelEnergy on the Keras model.

Every model of the export zoo (``spikeonnx.examples.zoo.ZOO``), plus a few models
made for this test (a published KerasSpiking example, Activation layers, state
inputs), is exported with ``spikeonnx.export``; ``GraphEnergy`` on the ONNX model
and ``ModelEnergy`` on the Keras model, given the same example data, must agree:

- per Keras layer name: connections and neurons exactly, the spiking flag, the input
  rate within 1e-6 relative; a layer present on one side only counts nothing;
- energy per layer and in total on cpu, gpu, arm, loihi, spinnaker, spinnaker2 and a
  custom device registered here, for one timestep at the default dt and for ten
  timesteps of 2 ms.

The one documented exception (``docs/op-contract.md``, "Energy analysis
conventions"): a Keras input with a fixed number of timesteps T that the exporter
made dynamic. ModelEnergy, like KerasSpiking, cannot tell that axis from space and
counts it as T positions in every layer that is not time-aware (all but spiking
layers, TimeDistributed and RNN layers); GraphEnergy counts per timestep. For
those layers the test asserts ModelEnergy = T x GraphEnergy exactly.
"""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest

import keras_layers as kl
from spikeonnx import devices as dev
from spikeonnx import export
from spikeonnx.analysis import GraphEnergy
from spikeonnx.examples.zoo import ZOO, ZooCase

BUILTIN_DEVICES = ("cpu", "gpu", "arm", "loihi", "spinnaker", "spinnaker2")
CUSTOM_DEVICE = "parity-test-device"
RATE_RTOL = 1e-6
ENERGY_RTOL = 1e-6


# GraphEnergy runs the model in onnxruntime (with our ops) to measure rates
needs_ops = pytest.mark.needs_ops


# -- models of this test (not in the zoo) ------------------------------------------


def _dense_published() -> ZooCase:
    inp = keras.Input((784,), name="pixels")
    out = keras.layers.Dense(128, activation="relu", name="dense")(inp)
    x = np.random.default_rng(77).uniform(0, 1, (8, 784)).astype(np.float32)
    return ZooCase(keras.Model(inp, out), x)


def _dense_spiking(state_io: bool = False) -> ZooCase:
    inp = keras.Input((None, 6), name="rates_in")
    x = keras.layers.Dense(10, activation="relu", name="hidden")(inp)
    x = kl.SpikingActivation("relu", dt=0.005, seed=11, name="spikes")(x)
    x = kl.Lowpass(0.02, dt=0.005, name="smooth")(x)
    x = keras.layers.Dense(5, name="readout")(x)
    out = keras.layers.Activation("softmax", name="probs")(x)
    data = np.random.default_rng(78).uniform(0, 40, (4, 23, 6)).astype(np.float32)
    # with state inputs the example data is still only the Keras input: the analyzer
    # starts the states as the metadata says (the seeded voltage draw)
    return ZooCase(keras.Model(inp, out), data, export_kwargs={"state_io": state_io})


def _conv_spiking() -> ZooCase:
    inp = keras.Input((None, 8, 8, 1), name="frames")
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(4, 3, activation=None), name="conv")(inp)
    x = kl.SpikingActivation("relu", dt=0.01, seed=1, name="conv_spikes")(x)
    x = keras.layers.TimeDistributed(keras.layers.Flatten(), name="flat")(x)
    x = keras.layers.Dense(6, activation="tanh", name="fc")(x)
    x = kl.SpikingActivation("relu", dt=0.01, seed=2, name="fc_spikes")(x)
    out = kl.Alpha(0.01, dt=0.01, name="alpha")(x)
    data = np.random.default_rng(79).uniform(0, 50, (3, 9, 8, 8, 1)).astype(np.float32)
    return ZooCase(keras.Model(inp, out), data)


EXTRA = {
    "extra_dense_published": _dense_published,
    "extra_dense_spiking": _dense_spiking,
    "extra_dense_spiking_state_io": lambda: _dense_spiking(state_io=True),
    "extra_conv_spiking": _conv_spiking,
}
CASES = {**ZOO, **EXTRA}
NOTHING_COUNTED = {
    "time_distributed_maxpool2d", "time_distributed_dropout", "alpha_initial_level", "return_state",
    "time_major_alpha",
}


@pytest.fixture(scope="module")
def custom_device():
    """A spiking device with figures unlike any built-in one, removed afterwards."""
    dev.register_device(CUSTOM_DEVICE, energy_per_synop=3.7e-11, energy_per_neuron=1.3e-10, spiking=True)
    yield CUSTOM_DEVICE
    del dev.DEVICES[CUSTOM_DEVICE]


# -- helpers -------------------------------------------------------------------------


def _fixed_time_length(case: ZooCase, onnx_model) -> int:
    """T if the Keras input declared T timesteps but the export made time dynamic, else 1."""
    if case.time_major or len(case.model.inputs) != 1:
        return 1
    shape = tuple(case.model.inputs[0].shape)
    if len(shape) < 3 or shape[1] is None:
        return 1
    props = {p.key: p.value for p in onnx_model.metadata_props}
    time_axes = json.loads(props["spikeonnx.time_axes"])
    return int(shape[1]) if time_axes.get(onnx_model.graph.input[0].name) == 1 else 1


def _time_aware(layer) -> bool:
    """Layers whose ModelEnergy handler never counts the time axis as positions."""
    return isinstance(layer, (kl.SpikingActivation, keras.layers.TimeDistributed, keras.layers.RNN,
                              keras.layers.InputLayer))


def _energies(estimator, layer, device):
    """(synop, neuron) energies for 1 step at the default dt and 10 steps of 2 ms, flat."""
    return [e for steps, dt in ((1, None), (10, 0.002)) for e in estimator.layer_energy(layer, device, steps, dt)]


def _totals(estimator, device):
    return [estimator.total_energy(device, steps, dt) for steps, dt in ((1, None), (10, 0.002))]


# -- the test ------------------------------------------------------------------------


@needs_ops
@pytest.mark.parametrize("name", list(CASES))
def test_parity_with_model_energy(name, custom_device):
    keras.utils.set_random_seed(1234)  # repeatable weights for the zoo builders
    case = CASES[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown-layer notices: the counts are compared below
        keras_energy = kl.ModelEnergy(case.model, case.x)
        onnx_model = export(case.model, **case.export_kwargs)
        graph_energy = GraphEnergy(onnx_model, case.x)

    fixed_t = _fixed_time_length(case, onnx_model)
    keras_layers = {layer.name: layer for layer in keras_energy.layers}
    graph_stats = graph_energy.layer_stats
    # a layer on one side only must count nothing
    for only_graph in set(graph_stats) - set(keras_layers):
        assert graph_stats[only_graph]["connections"] == graph_stats[only_graph]["neurons"] == 0, only_graph
    for only_keras in set(keras_layers) - set(graph_stats):
        stats = keras_energy.layer_stats[keras_layers[only_keras]]
        assert stats["connections"] == stats["neurons"] == 0, only_keras
    shared = [n for n in keras_layers if n in graph_stats]
    counted = [n for n in shared if graph_stats[n]["connections"] or graph_stats[n]["neurons"]]
    # only filters, pooling and dropout count nothing; everywhere else the counts are compared
    assert bool(counted) == (name not in NOTHING_COUNTED), counted

    factors = {}
    for layer_name in shared:
        layer = keras_layers[layer_name]
        factors[layer_name] = 1 if _time_aware(layer) else fixed_t
        expected = keras_energy.layer_stats[layer]
        got = graph_stats[layer_name]
        assert got["connections"] * factors[layer_name] == expected["connections"], layer_name
        assert got["neurons"] * factors[layer_name] == expected["neurons"], layer_name
        assert got["spiking"] == expected["spiking"], layer_name
        assert graph_energy.layer_rates[layer_name] == pytest.approx(
            keras_energy.layer_rates[layer], rel=RATE_RTOL, abs=1e-12
        ), layer_name

    for device in BUILTIN_DEVICES + (custom_device,):
        for layer_name in shared:
            want = _energies(keras_energy, keras_layers[layer_name], device)
            got = [e * factors[layer_name] for e in _energies(graph_energy, layer_name, device)]
            assert got == pytest.approx(want, rel=ENERGY_RTOL, abs=1e-30), (layer_name, device)
        if fixed_t == 1:
            assert _totals(graph_energy, device) == pytest.approx(
                _totals(keras_energy, device), rel=ENERGY_RTOL, abs=1e-30
            ), device
        else:
            # the total is the per-layer sum of the relation above
            want = _totals(keras_energy, device)
            per_layer = {n: _energies(graph_energy, n, device) for n in shared}
            got = [
                sum((per_layer[n][2 * i] + per_layer[n][2 * i + 1]) * factors[n] for n in shared)
                for i in range(2)
            ]
            assert got == pytest.approx(want, rel=ENERGY_RTOL, abs=1e-30), device

    if name == "extra_dense_published":
        # KerasSpiking's published figures for Dense(128) on 784 inputs
        assert graph_stats["dense"] == {"connections": 100352, "neurons": 128, "spiking": False}
        assert f"{graph_energy.total_energy('cpu'):.2e}" == "8.64e-04"
    if name == "fixed_length_dense":
        assert fixed_t == 10  # the relation is really exercised



def test_model_energy_rows_of_nested_models():
    """A nested Sequential is one row summing its layers; a nested subclassed model, without
    a layer graph, counts nothing and says so."""

    class Sub(keras.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    seq = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)],
                           name="seq")
    inp = keras.Input((5,))
    model = keras.Model(inp, [Sub()(inp), keras.layers.Dense(3, name="top")(seq(inp))])
    with pytest.warns(UserWarning, match="'sub'"):
        energy = kl.ModelEnergy(model)
    stats = {layer.name: s for layer, s in energy.layer_stats.items()}
    assert stats["seq"] == {"connections": 5 * 4 + 4 * 2, "neurons": 4, "spiking": False}
    assert stats["top"] == {"connections": 2 * 3, "neurons": 0, "spiking": True}
    assert stats["sub"] == {"connections": 0, "neurons": 0, "spiking": True}
