"""What the command line prints besides its results: TensorFlow's native logs and progress bars.

TensorFlow's C++ runtime writes info lines to file descriptor 2 (``I0000 ... devices.cc:76]
Number of eligible GPUs ...``). :func:`quiet_tensorflow` sets ``TF_CPP_MIN_LOG_LEVEL=2``
unless the user set it, which silences them, except the oneDNN notice each of two of
TensorFlow's libraries prints at import whatever that variable says (with absl's banner
"All log messages before absl::InitializeLog() ..."). Those are filtered out of what the
import of ``tensorflow`` writes to descriptor 2; everything else it writes is passed on.
Nothing changes what TensorFlow computes (``TF_ENABLE_ONEDNN_OPTS`` is left alone: it
would select other kernels).

Progress bars are live only on a terminal (:func:`is_terminal`); in a file or a CI log
each stage prints at most a line.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from typing import Any, Optional, TextIO

__all__ = ["quiet_tensorflow", "is_terminal", "NATIVE_LOG_LINE"]

_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
#: An info or warning line of TensorFlow's (absl's) C++ logging, or absl's pre-init banner.
NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.-]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR)"
)


def is_terminal(stream: Optional[TextIO]) -> bool:
    """Whether ``stream`` is an open interactive terminal (live progress bars go there)."""
    try:
        return stream is not None and not stream.closed and stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


class _FilteredFd2:
    """Send file descriptor 2 to a temporary file; on exit, replay it without native log lines."""

    def __enter__(self) -> "_FilteredFd2":
        sys.stderr.flush()
        self._buffer = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._buffer.fileno(), 2)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            sys.stderr.flush()
        finally:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        with self._buffer:
            self._buffer.seek(0)
            kept = [line for line in self._buffer if not NATIVE_LOG_LINE.match(line)]
        if kept:
            os.write(2, b"".join(kept))


class _QuietImport(importlib.abc.MetaPathFinder):
    """Import ``tensorflow`` (once, by whoever imports it first) through :class:`_FilteredFd2`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; the real finders below us locate the package
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def quiet_exec_module(module: Any) -> None:
            with _FilteredFd2():
                exec_module(module)

        loader.exec_module = quiet_exec_module
        return spec


def quiet_tensorflow() -> None:
    """Silence TensorFlow's native info logs for this process, unless the user asked for them.

    If ``TF_CPP_MIN_LOG_LEVEL`` is set, nothing is done: the user chose what to see.
    Otherwise it is set to 2 (warnings and info off, errors on) and, if TensorFlow is
    not imported yet, its import is made to drop the notices it prints regardless.
    Safe to call more than once.
    """
    if _LEVEL_VARIABLE in os.environ:
        return
    os.environ[_LEVEL_VARIABLE] = "2"
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())
