"""Figures: the spikes recorded from a model (against a NumPy integrate-and-fire), the raster,
the firing-rate distribution and the grouped energy figure, each with its number of panels."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from spikeonnx import plots
from spikeonnx.analysis import GraphEnergy
from spikeonnx.devices import DEVICES
from tests.conftest import finish_model, svg_axes, two_layer_model

DT = (0.01, 0.005)
UNITS = (40, 7)
PNG = b"\x89PNG\r\n\x1a\n"


def integrate_and_fire(rates: np.ndarray, dt: float, v0: np.ndarray) -> np.ndarray:
    """Spike counts per step (float32 arithmetic, as the op contract says): v += r*dt; n = floor(v); v -= n."""
    v = np.broadcast_to(v0, (rates.shape[0], rates.shape[2])).astype(np.float32)
    counts = np.empty_like(rates)
    for t in range(rates.shape[1]):
        v = v + rates[:, t] * np.float32(dt)
        n = np.floor(v)
        v = v - n
        counts[:, t] = n
    return counts


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plots")
    path, weights, voltages = two_layer_model(folder / "two.onnx")
    x = np.random.default_rng(1).uniform(0, 1, (5, 30, 6)).astype(np.float32)
    np.save(folder / "x.npy", x)
    return folder, path, x, weights, voltages


@pytest.mark.needs_ops
def test_record_spikes_equals_numpy_integrate_and_fire(model_and_data):
    _, path, x, (w1, w2), (v1, v2) = model_and_data
    recording = plots.record_spikes(path, x)
    assert [layer.name for layer in recording.layers] == ["hidden_spikes", "out_spikes"]
    assert [layer.node for layer in recording.layers] == ["spikes1", "spikes2"]
    assert [layer.dt for layer in recording.layers] == list(DT)  # the metadata's double, not the float attribute
    c1 = integrate_and_fire(x @ w1, DT[0], v1)
    c2 = integrate_and_fire((c1 / np.float32(DT[0])) @ w2, DT[1], v2)
    np.testing.assert_array_equal(recording.layers[0].spikes, c1)
    np.testing.assert_array_equal(recording.layers[1].spikes, c2)
    assert c1.max() >= 2 and (c1.sum(axis=(0, 1)) == 0).sum() == 5  # saturated and silent neurons exist
    np.testing.assert_allclose(recording.layers[0].rates, c1.astype(np.float64).sum(axis=(0, 1)) / (5 * 30 * DT[0]),
                               rtol=1e-12)


@pytest.mark.needs_ops
def test_figures_and_their_panels(model_and_data, tmp_path):
    _, path, x, _, _ = model_and_data
    recording = plots.record_spikes(path, x)
    raster = plots.plot_spikes(recording, tmp_path / "raster.svg", sample=2, max_neurons=10)
    rates = plots.plot_firing_rates(recording, tmp_path / "rates.svg")
    assert svg_axes(raster) == 2 and svg_axes(rates) == 2  # one panel per spiking layer
    text = raster.read_text()
    assert "time [s]" in text and "10 of 40 neurons" in text
    assert "firing rate [Hz]" in rates.read_text() and "silent (0 Hz): 5" in rates.read_text()
    png = plots.plot_spikes(recording, tmp_path / "raster")  # no suffix: PNG
    assert png.name == "raster.png" and png.read_bytes()[:8] == PNG

    names = [d.name for d in DEVICES.values()]
    report = GraphEnergy(path, x).to_dict(names, 30, 0.01)
    energy = plots.plot_energy(report, tmp_path / "energy.svg", names)
    assert svg_axes(energy) == 2  # per layer, and totals per device
    assert "spiking hardware" in energy.read_text() and "standard hardware" in energy.read_text()
    json.dumps(report)  # the report stays plain data


@pytest.mark.needs_ops
def test_bad_arguments(model_and_data, tmp_path):
    _, path, x, _, _ = model_and_data
    recording = plots.record_spikes(path, x)
    with pytest.raises(ValueError, match="sample must be an index in 0..4"):
        plots.plot_spikes(recording, tmp_path / "r.png", sample=5)
    with pytest.raises(ValueError, match="max_neurons"):
        plots.plot_spikes(recording, tmp_path / "r.png", max_neurons=0)
    with pytest.raises(TypeError, match="SpikeRecording"):
        plots.plot_firing_rates({"layers": []}, tmp_path / "r.png")
    with pytest.raises(ValueError, match="unknown image format"):
        plots.plot_firing_rates(recording, tmp_path / "r.bogus")
    assert not list(tmp_path.iterdir())  # nothing half-written
    plain = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", 3])])
    onnx.save(finish_model(plain, domains=()), tmp_path / "relu.onnx")
    with pytest.raises(ValueError, match="no SpikingActivation"):
        plots.record_spikes(tmp_path / "relu.onnx", np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ValueError, match="example data"):
        plots.record_spikes(path, x[..., :4])
