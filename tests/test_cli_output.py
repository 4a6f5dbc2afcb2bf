"""What the command line prints when its output goes to a pipe (a log file, CI): no escape
sequences or carriage returns, no TensorFlow native log lines, tables no wider than $COLUMNS,
numbers never cut; ``inspect`` tells the truth about which runtimes run a file."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from spikeonnx import events, functions
from spikeonnx.analysis import GraphEnergy
from spikeonnx.cli import _logs
from spikeonnx.devices import DEVICES
from tests.conftest import svg_axes, two_layer_model

FOREIGN = re.compile(r"^[IWEF]\d{4} |oneDNN|absl::InitializeLog|cpu_feature_guard|rebuild TensorFlow", re.M)
DEVICE_NAMES = [d.name for d in DEVICES.values()]


def run_cli(*args, columns=80, timeout=300, cwd=None):
    """``python -m spikeonnx ARGS`` with stdout and stderr to pipes, as a user with default settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TERM")}
    env["COLUMNS"] = str(columns)
    result = subprocess.run([sys.executable, "-m", "spikeonnx", *map(str, args)], capture_output=True, text=True,
                            env=env, stdin=subprocess.DEVNULL, timeout=timeout, cwd=cwd)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def assert_clean(result):
    for stream in (result.stdout, result.stderr):
        assert "\x1b" not in stream and "\r" not in stream, stream[:2000]
        assert not FOREIGN.search(stream), FOREIGN.search(stream).group(0)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_output")
    path, _, _ = two_layer_model(folder / "two.onnx")
    x = np.random.default_rng(2).uniform(0, 1, (4, 30, 6)).astype(np.float32)
    np.save(folder / "x.npy", x)
    return folder, path, folder / "x.npy"


def tables(text):
    """The ``|``-separated tables of an energy summary: lists of rows of stripped cells, header first.

    Continuation lines of wrapped text cells (every cell but the first empty) are left out."""
    found, current = [], []
    for line in text.splitlines():
        if "|" in line and not set(line) <= set("-|"):
            row = [cell.strip() for cell in line.split("|")]
            if current and not any(row[1:]):
                continue
            current.append(row)
        elif "|" not in line and current:
            found.append(current)
            current = []
    return found + ([current] if current else [])


# -- energy table ------------------------------------------------------------------------


@pytest.mark.needs_ops
@pytest.mark.parametrize("columns", [80, 100, 250])
def test_energy_table_fits_columns_and_keeps_every_number(files, columns):
    folder, model, data = files
    args = ("energy", model, "--data", data, "--timesteps", 30, "--dt", 0.01)
    result = run_cli(*args, columns=columns)
    assert_clean(result)
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= columns
    report = json.loads(run_cli(*args, "--json").stdout)
    layers = {layer["name"]: layer for layer in report["layers"]}
    found = tables(result.stdout)
    assert (len(found) == 1) == (columns == 250)  # six devices need several tables at 80 and 100
    seen = set()
    for table in found:
        header = table[0]
        for row in table[1:]:
            name = row[0].split(" (")[0]
            for title, cell in zip(header, row, strict=True):
                device = re.fullmatch(r"J/inf \((.+)\)", title)
                if device:
                    seen.add(device.group(1))
                    expected = layers[name]["energy"][device.group(1)]["total"]
                    # every digit printed: 2 significant digits of the value
                    assert float(cell) == pytest.approx(expected, rel=0.05, abs=1e-300), (title, row)
    assert seen == set(DEVICE_NAMES)
    for device in DEVICE_NAMES:
        assert f"({device}): {report['total_energy'][device]:0.2e}" in result.stdout


@pytest.mark.needs_ops
def test_energy_csv_equals_json(files):
    folder, model, data = files
    args = ("energy", model, "--data", data, "--timesteps", 30, "--dt", 0.01)
    result = run_cli(*args, "--csv")
    assert_clean(result)
    report = json.loads(run_cli(*args, "--json").stdout)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["layer"] for r in rows] == [layer["name"] for layer in report["layers"]]
    for row, layer in zip(rows, report["layers"], strict=True):
        assert int(row["connections"]) == layer["connections"] and int(row["neurons"]) == layer["neurons"]
        assert (row["rate_hz"] == "") == (layer["rate"] is None)
        if layer["rate"] is not None:
            assert float(row["rate_hz"]) == layer["rate"]
        for device in DEVICE_NAMES:
            for part, key in (("synop", "synop"), ("neuron", "neuron"), ("energy", "total")):
                assert float(row[f"{part}_j_{device}"]) == layer["energy"][device][key]


@pytest.mark.needs_ops
def test_python_width(files):
    _, model, data = files
    energy = GraphEnergy(model, np.load(data))
    columns = ("name", "output_shape", "params", "connections", "neurons", "rate",
               *(f"energy {d}" for d in DEVICE_NAMES))
    narrow = energy.summary_string(columns, 30, 0.01, width=70)
    assert max(map(len, narrow.splitlines())) <= 70 and len(tables(narrow)) > 1
    assert energy.summary_string(columns, 30, 0.01, width=70) == energy.summary_string(columns, 30, 0.01, 70)
    wide = energy.summary_string(columns, 30, 0.01, width=400)
    assert len(tables(wide)) == 1
    # split or not, the same cells
    def device_cells(text):
        return {(row[0].split(" (")[0], title): cell for table in tables(text) for row in table[1:]
                for title, cell in zip(table[0], row, strict=True) if title.startswith("J/inf")}

    assert device_cells(narrow) == device_cells(wide) and len(device_cells(wide)) == 6 * len(energy.layers)


# -- plots and inspect -------------------------------------------------------------------


@pytest.mark.needs_ops
def test_plot_commands(files, tmp_path):
    _, model, data = files
    for kind, extra in (("spikes", ("--sample", 3, "--max-neurons", 20)), ("rates", ()),
                        ("energy", ("--timesteps", 30, "--dt", 0.01))):
        target = tmp_path / f"{kind}.svg"
        result = run_cli("plot", kind, model, data, "-o", target, *extra)
        assert_clean(result)
        assert result.stdout.strip() == f"wrote {target}" and not result.stderr
        assert svg_axes(target) == 2  # two spiking layers; energy: per layer and per device
    result = run_cli("plot", "spikes", model, data, cwd=tmp_path)  # default name, PNG
    assert (tmp_path / "spikes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _runs(model_path, library):
    options = ort.SessionOptions()
    if library:
        from spikeonnx.ops import library_path

        options.register_custom_ops_library(library_path())
    try:
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        session.run(None, {"x": np.ones((2, 3, 6), np.float32)})
    except Exception:
        return False
    return True


def _reference_runs(model_path):
    from onnx.reference import ReferenceEvaluator

    from spikeonnx.reference import REFERENCE_OPS

    try:
        ReferenceEvaluator(onnx.load(model_path), new_ops=REFERENCE_OPS).run(None, {"x": np.ones((2, 3, 6), np.float32)})
    except Exception:
        return False
    return True


@pytest.mark.needs_ops
def test_inspect_tells_which_runtimes_run_the_file(files, tmp_path):
    _, model, _ = files
    plain = onnx.load(model)
    portable = functions.attach_functions(onnx.load(model))
    eventful = events.optimize(plain, functions=False)
    variants = {"plain": plain, "portable": portable, "events": eventful,
                "events_portable": events.optimize(functions.attach_functions(onnx.load(model)))}
    for name, proto in variants.items():
        path = tmp_path / f"{name}.onnx"
        onnx.save(proto, path)
        result = run_cli("inspect", path)
        assert_clean(result)
        text = result.stdout
        assert "x: float (batch, time, 6)  [batch axis 0, time axis 1]" in text
        assert "spikes1: SpikingActivation (Keras layer hidden_spikes), dt 0.01 s" in text
        assert "spikes2: SpikingActivation (Keras layer out_spikes), dt 0.005 s" in text
        assert "state inputs/outputs: none" in text
        info = json.loads(run_cli("inspect", path, "--json").stdout)
        n_events = sum(n.op_type.startswith("Event") for n in proto.graph.node)
        assert len(info["event_nodes"]) == n_events and (n_events > 0) == name.startswith("events")
        assert f"event-driven nodes: {n_events}" in text
        assert bool(info["functions"]) == name.endswith("portable")
        # each verdict is what actually happens
        verdicts = {k: v["can_run"] for k, v in info["runtimes"].items()}
        assert verdicts["onnxruntime"] == _runs(path, library=False), name
        assert verdicts["spikeonnx.InferenceSession"] and _runs(path, library=True)
        assert verdicts["onnx.reference"] == _reference_runs(path), name


# -- TensorFlow's native logs ------------------------------------------------------------


def test_quiet_tensorflow_respects_the_user(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    before = list(sys.meta_path)
    _logs.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" and sys.meta_path == before


def test_native_log_lines_are_filtered_from_descriptor_2(capfd):
    with _logs._FilteredFd2():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1796165370.189761   26018 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"W0000 00:00:1796165370.189761   26018 devices.cc:76] a warning\n")
        os.write(2, b"E0000 00:00:1796165370.189761   26018 x.cc:1] an error stays\n")
        print("a Python warning stays", file=sys.stderr)
    err = capfd.readouterr().err
    # (pytest's capture may hold sys.stderr apart from descriptor 2: compare the lines, not their order)
    assert sorted(err.splitlines()) == ["E0000 00:00:1796165370.189761   26018 x.cc:1] an error stays",
                                        "a Python warning stays"]


def test_demo_and_export_logs_are_clean(tmp_path):
    """The demo through a pipe: one line per epoch, no bars, no escapes, no TensorFlow lines, no
    warning of ours, a table within $COLUMNS, every figure; then export and inspect its model."""
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", out, "--epochs", 2, "--timesteps", 6, columns=100, timeout=900)
    assert_clean(result)
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
    assert not [line for line in lines if line.startswith("note:") or "warning" in line.lower()], result.stdout
    assert not result.stderr.strip(), result.stderr
    table = [line for line in lines if "|" in line or line.startswith(("=", "* ", "  "))]
    assert len(table) > 20 and max(map(len, table)) <= 100
    for name in ("energy.png", "rates.png", "spikes.png", "firing_rates.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    exported = run_cli("export", out / "model.keras", "-o", tmp_path / "again.onnx")
    assert_clean(exported)
    assert not exported.stderr.strip(), exported.stderr
    inspected = run_cli("inspect", tmp_path / "again.onnx")
    assert "conv_spikes: SpikingActivation (Keras layer conv_spikes), dt 0.01 s, seed 0" in inspected.stdout


@pytest.mark.parametrize("command", ["inspect", "plot"])
def test_help(command, capsys):
    from spikeonnx.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: spikeonnx {command}" in capsys.readouterr().out


@pytest.mark.needs_ops
def test_user_errors_are_one_line(files, tmp_path, capsys):
    from spikeonnx.cli import main

    _, model, data = files
    for argv, fragment in (
        (["plot", "spikes", str(model)], "needs input data"),
        (["plot", "spikes", str(model), str(data), "--sample", "9", "-o", str(tmp_path / "s.png")], "sample"),
        (["plot", "rates", str(tmp_path / "none.onnx"), str(data)], "model file not found"),
        (["plot", "energy", str(model), "-o", str(model)], "is the input file"),
        (["inspect", str(data)], "not an ONNX model"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
