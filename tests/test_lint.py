"""LINT: ``ruff check`` over the whole repository, with the rules of ``pyproject.toml``.

Marked ``lint`` (``pytest -m lint`` runs only this). Needs ruff (the ``test`` extra);
skipped when it is not installed, except in CI (``$CI`` set), where that is an error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff():
    found = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("ruff is not installed (it is in the test extra)")
        pytest.skip("ruff is not installed")
    return found


@pytest.mark.lint
def test_ruff_check_is_clean():
    result = subprocess.run(
        [_ruff(), "check", "--no-cache", "--output-format", "concise", str(ROOT)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}{result.stderr}"
