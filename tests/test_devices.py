"""The shared device table and the ``spikeonnx devices`` command."""

import json

import pytest

from spikeonnx import devices as dev
from spikeonnx.cli import main


def test_published_figures():
    # The reference's figures (synop, neuron) in Joules, and which devices spike.
    expected = {
        "cpu": (8.6e-9, 8.6e-9, False),
        "gpu": (0.3e-9, 0.3e-9, False),
        "arm": (0.9e-9, 0.9e-9, False),
        "loihi": (27.1e-12, 81e-12, True),
        "spinnaker": (13.3e-9, 26e-9, True),
        "spinnaker2": (450e-12, 2.19e-9, True),
    }
    for name, (synop, neuron, spiking) in expected.items():
        d = dev.get_device(name)
        assert d.energy_per_synop == pytest.approx(synop, rel=1e-12)
        assert d.energy_per_neuron == pytest.approx(neuron, rel=1e-12)
        assert d.spiking is spiking
        assert d.source


def test_register_and_unknown(saved_registries):
    d = dev.register_device("test-dev", 1e-10, 2e-9, spiking=False)
    assert dev.get_device("test-dev") is d
    assert d.source == "user-registered"
    with pytest.raises(ValueError, match="unknown device 'nope'.*cpu"):
        dev.get_device("nope")
    with pytest.raises(ValueError, match="energy_per_synop"):
        dev.register_device("bad", -1.0, 1.0, spiking=True)
    with pytest.raises(ValueError, match="energy_per_neuron"):
        dev.register_device("bad", 1.0, float("nan"), spiking=True)


def test_cli_devices(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    for name in ("cpu", "gpu", "arm", "loihi", "spinnaker", "spinnaker2"):
        assert f"\n{name} " in out
    assert "Davies" in out
    assert main(["devices", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in table} >= {"cpu", "loihi", "spinnaker2"}


def test_cli_unknown_subcommand(capsys):
    with pytest.raises(SystemExit) as err:
        main(["no-such-command"])
    assert err.value.code == 2
