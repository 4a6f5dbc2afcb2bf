"""Every Python code block of README.md runs, in order, as one script."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_two_commands():
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 2, blocks
    assert all(len(b.strip().splitlines()) == 1 for b in blocks)
    ci = (README.parent / ".ci" / "run").read_text()
    assert blocks[1].strip() in ci, "the README's test command must be what .ci/run runs"


def test_readme_python_blocks_run(tmp_path):
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3
    script = tmp_path / "tour.py"
    script.write_text("\n".join(blocks))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # the hidden Dense on the model's input is an event op too (export's default)
    assert "['EventGemm', 'SpikingActivation', 'Lowpass']" in result.stdout
    assert "loihi, J/inference:" in result.stdout
    assert (tmp_path / "tour.onnx").is_file()
