"""The ``spikeonnx`` command as a whole: ``--help`` everywhere, ``run`` and ``demo``."""

import os
import subprocess
import sys

import numpy as np
import pytest

from spikeonnx import reference
from spikeonnx.cli import main
from tests.conftest import cli_lowpass_model as lowpass_model

SUBCOMMANDS = ("demo", "export", "run", "energy", "devices")


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: spikeonnx {command}" in capsys.readouterr().out


def test_console_script_entry_point(tmp_path):
    # `python -m spikeonnx` goes through the same main() as the installed `spikeonnx` script
    result = subprocess.run([sys.executable, "-m", "spikeonnx", "--help"], capture_output=True, text=True,
                            cwd=tmp_path)  # outside the repo: the installed package
    assert result.returncode == 0
    for command in SUBCOMMANDS:
        assert command in result.stdout


def test_run_npy(tmp_path, capsys):
    model = lowpass_model(tmp_path / "m.onnx", state_io=False)
    x = np.random.default_rng(0).normal(size=(2, 7, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run_cli(capsys, "run", str(model), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npz"))
    assert code == 0, err
    assert "y: shape (2, 7, 3) float32" in out
    expected, _ = reference.lowpass(x, np.array([[0.05, 0.02, 0.1]], np.float32), np.zeros((1, 3), np.float32), 0.01)
    with np.load(tmp_path / "y.npz") as result:
        np.testing.assert_allclose(result["y"], expected, rtol=1e-6, atol=1e-7)


def test_run_stream_equals_one_call(tmp_path, capsys):
    model = lowpass_model(tmp_path / "m.onnx", state_io=True)
    x = np.random.default_rng(1).normal(size=(3, 20, 3)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    assert run_cli(capsys, "run", str(model), str(tmp_path / "x.npz"), "-o", str(tmp_path / "one.npz"),
                   "--stream", "20")[0] == 0
    assert run_cli(capsys, "run", str(model), str(tmp_path / "x.npz"), "-o", str(tmp_path / "chunks.npz"),
                   "--stream", "3")[0] == 0
    with np.load(tmp_path / "one.npz") as one, np.load(tmp_path / "chunks.npz") as chunks:
        np.testing.assert_array_equal(one["y"], chunks["y"])
        expected, _ = reference.lowpass(x, np.array([[0.05, 0.02, 0.1]], np.float32), np.zeros((3, 3), np.float32), 0.01)
        np.testing.assert_allclose(chunks["y"], expected, rtol=1e-6, atol=1e-7)


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("spikeonnx run: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_run_user_errors(tmp_path, capsys):
    model = lowpass_model(tmp_path / "m.onnx", state_io=False)
    np.save(tmp_path / "x.npy", np.zeros((2, 5, 3), np.float32))
    np.save(tmp_path / "bad.npy", np.zeros((2, 5, 4), np.float32))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")

    code, _, err = run_cli(capsys, "run", str(tmp_path / "missing.onnx"), str(tmp_path / "x.npy"))
    assert_one_line_error(code, err, "missing.onnx")
    code, _, err = run_cli(capsys, "run", str(model), str(tmp_path / "missing.npy"))
    assert_one_line_error(code, err, "missing.npy")
    code, _, err = run_cli(capsys, "run", str(model), str(tmp_path / "bad.npy"), "-o", str(tmp_path / "o.npz"))
    assert_one_line_error(code, err, "'x'", "3", "4")
    code, _, err = run_cli(capsys, "run", str(tmp_path / "junk.onnx"), str(tmp_path / "x.npy"))
    assert_one_line_error(code, err, "junk.onnx")
    code, _, err = run_cli(capsys, "run", str(model), str(tmp_path / "x.npy"), "--stream", "2")
    assert_one_line_error(code, err, "state")
    code, _, err = run_cli(capsys, "run", str(model), str(tmp_path / "x.npy"), "--stream", "0")
    assert_one_line_error(code, err, "--stream")
    assert not (tmp_path / "o.npz").exists()


def test_demo_end_to_end(tmp_path):
    """The main job, small: accuracies equal, energy table for all six devices, both PNGs."""
    out = tmp_path / "demo"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "spikeonnx", "demo", "--out", str(out), "--epochs", "3", "--timesteps", "8",
         "--no-progress"],
        capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    keras_acc = [line for line in lines if line.startswith("Keras accuracy:")]
    onnx_acc = [line for line in lines if line.startswith("onnxruntime accuracy:")]
    assert len(keras_acc) == len(onnx_acc) == 1
    assert keras_acc[0].split()[2] == onnx_acc[0].split()[2]
    assert "identical predictions on 100.00%" in result.stdout
    for device in ("cpu", "gpu", "arm", "loihi", "spinnaker", "spinnaker2"):
        assert f"Total energy per inference [Joules/inf] ({device}):" in result.stdout
    for name in ("model.keras", "model.onnx", "energy.png", "rates.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "energy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_user_errors(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "demo", "--out", str(tmp_path / "file"))
    assert code == 2 and err.strip().startswith("spikeonnx demo: error: --out") and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--epochs", "0"])
    assert exit_info.value.code == 2
