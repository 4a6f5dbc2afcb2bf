"""Finding the compiled op library."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import spikeonnx
from spikeonnx.ops import LIBRARY_NAME, library_path


@pytest.mark.needs_ops
def test_a_source_tree_that_shadows_the_installed_package_finds_the_installed_library(tmp_path):
    # A process started in a checkout's root imports spikeonnx from the source tree
    # (the working directory comes first on sys.path), which has no compiled library.
    source = tmp_path / "spikeonnx"
    shutil.copytree(Path(spikeonnx.__file__).parent, source,
                    ignore=shutil.ignore_patterns(LIBRARY_NAME, "__pycache__"))
    assert not (source / "ops" / LIBRARY_NAME).exists()
    code = "import spikeonnx, spikeonnx.ops as o; print(spikeonnx.__file__); print(o.library_path())"
    env_free = {k: v for k, v in os.environ.items() if k != "SPIKEONNX_OPS_LIBRARY"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env_free,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    imported_from, found = out.stdout.splitlines()
    if not _editable_install():  # an editable install's import hook wins over the working directory
        assert Path(imported_from).resolve() == (source / "__init__.py").resolve()
    assert Path(found).is_file() and Path(found).name == LIBRARY_NAME


def _editable_install() -> bool:
    direct_url = metadata.distribution("spikeonnx").read_text("direct_url.json") or "{}"
    return bool(json.loads(direct_url).get("dir_info", {}).get("editable"))


def test_override_that_does_not_exist_is_named(monkeypatch, tmp_path):
    missing = tmp_path / "nope.so"
    monkeypatch.setenv("SPIKEONNX_OPS_LIBRARY", str(missing))
    with pytest.raises(FileNotFoundError, match="nope.so"):
        library_path()
