"""``spikeonnx energy``: table, JSON, plot, and user errors (exit 2, one stderr line)."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spikeonnx import devices as dev
from spikeonnx.cli import main
from tests.conftest import finish_model

RNG = np.random.default_rng(5)


@pytest.fixture()
def model_files(tmp_path):
    w1 = RNG.standard_normal((12, 8)).astype(np.float32)
    b1 = RNG.standard_normal(8).astype(np.float32)
    w2 = RNG.standard_normal((8, 3)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="hidden"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="hidden_bias"),
        helper.make_node("Sigmoid", ["hb"], ["s"], name="hidden_sigmoid"),
        helper.make_node("MatMul", ["s", "W2"], ["y"], name="readout"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(a, n) for n, a in (("W1", w1), ("b1", b1), ("W2", w2))],
    )
    model = finish_model(graph, domains=())
    path = tmp_path / "mlp.onnx"
    onnx.save(model, path)
    x = RNG.standard_normal((6, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "bad.npy", x[:, :10])
    # independent NumPy rates: the input, then the sigmoid output
    s = 1 / (1 + np.exp(-(x.astype(np.float64) @ w1 + b1)))
    rates = {"hidden": np.abs(x.astype(np.float64)).mean(), "readout": np.abs(s).mean()}
    return tmp_path, path, rates


def test_table(model_files, capsys):
    tmp, path, _ = model_files
    assert main(["energy", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hidden (MatMul)" in out and "readout (MatMul)" in out
    # without data: every non-spiking device, none of the spiking ones
    total_cpu = 8.6e-9 * (12 * 8 + 8 + 8 * 3)
    assert f"Total energy per inference [Joules/inf] (cpu): {total_cpu:0.2e}" in out
    assert "(gpu)" in out and "(arm)" in out and "loihi" not in out


def test_json_and_plot(model_files, capsys):
    tmp, path, rates = model_files
    plot = tmp / "energy.png"
    code = main(["energy", str(path), "--data", str(tmp / "x.npy"), "--device", "cpu", "--device", "loihi",
                 "--timesteps", "5", "--dt", "0.002", "--json", "--plot", str(plot)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert list(layers) == ["x", "hidden", "readout"]
    assert layers["hidden"]["connections"] == 96 and layers["hidden"]["neurons"] == 8
    assert layers["readout"]["connections"] == 24 and layers["readout"]["neurons"] == 0
    loihi = dev.get_device("loihi")
    for name in ("hidden", "readout"):
        assert layers[name]["rate"] == pytest.approx(rates[name], rel=1e-6)
        want = loihi.energy_per_synop * layers[name]["connections"] * rates[name] * 0.002 * 5
        assert layers[name]["energy"]["loihi"]["synop"] == pytest.approx(want, rel=1e-6)
        assert layers[name]["energy"]["loihi"]["neuron"] == pytest.approx(
            loihi.energy_per_neuron * layers[name]["neurons"] * 5, rel=1e-15)
        assert layers[name]["energy"]["cpu"]["total"] == pytest.approx(
            8.6e-9 * (layers[name]["connections"] + layers[name]["neurons"]), rel=1e-15)
    assert report["total_energy"]["cpu"] == pytest.approx(8.6e-9 * (96 + 8 + 24), rel=1e-15)
    assert report["timesteps_per_inference"] == 5 and report["dt"] == 0.002
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_with_rates(model_files, capsys):
    tmp, path, rates = model_files
    assert main(["energy", str(path), "--data", str(tmp / "x.npy"), "--device", "spinnaker"]) == 0
    out = capsys.readouterr().out
    assert "Rate [Hz]" in out and f"{rates['readout']:.2g}" in out
    assert "(spinnaker)" in out and "(cpu)" not in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/missing.onnx"], "model file not found"),
        (["{model}", "--device", "warpdrive"], "unknown device 'warpdrive'"),
        (["{model}", "--data", "{tmp}/bad.npy"], "example data for input 'x' has shape (6, 10)"),
        (["{model}", "--data", "{tmp}/nodata.npy"], "data file not found"),
        (["{model}", "--device", "loihi"], "device 'loihi' is spiking: its estimate needs --data"),
        (["{trunc}"], "not a valid ONNX model"),
        (["{model}", "--time-axis", "4"], "time_axis=4 is out of range"),
    ],
)
def test_user_errors(model_files, capsys, args, message):
    tmp, path, _ = model_files
    trunc = tmp / "trunc.onnx"
    trunc.write_bytes(path.read_bytes()[:100])
    argv = ["energy"] + [a.format(tmp=tmp, model=path, trunc=trunc) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("spikeonnx energy: error: ")
    assert message in lines[0]


def test_bad_option_values(model_files, capsys):
    _, path, _ = model_files
    for argv in (["--timesteps", "0"], ["--dt", "-1"], ["--dt", "abc"]):
        with pytest.raises(SystemExit) as exc:
            main(["energy", str(path), *argv])
        assert exc.value.code == 2
    assert "expected" in capsys.readouterr().err


def test_console_entry_point(model_files):
    tmp, path, _ = model_files
    proc = subprocess.run([sys.executable, "-m", "spikeonnx", "energy", str(path), "--device", "warpdrive"],
                          capture_output=True, text=True, timeout=120, cwd=tmp)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown device 'warpdrive'" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "spikeonnx", "energy", str(path), "--json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["layers"][1]["connections"] == 96
