"""Writing files so that an interrupted write never replaces a good file.

Every file spikeonnx writes (``.onnx``, ``.npz``, ``.npy``, ``.png``, ``.json``,
``.csv``) goes through :func:`atomic_write`: the data goes to a temporary file in the
target's folder, is flushed and fsynced, and only then renamed over the target
(``os.replace`` is atomic on POSIX within one file system). A SIGINT or SIGKILL
mid-write leaves the old file as it was, plus at most a stray ``.*.tmp`` file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Union

__all__ = ["atomic_write", "check_output_path", "same_file"]

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` when the ``with`` block succeeds.

    Parameters
    ----------
    path : str or os.PathLike
        The target file. Its folder must exist.
    mode : str
        ``"wb"`` (default) or ``"w"`` (text, UTF-8).

    Yields
    ------
    file object
        Write to it; it is closed, fsynced and renamed over ``path`` on success,
        and removed if the block raises.

    Raises
    ------
    FileNotFoundError
        If the target's folder does not exist (before anything is written).

    Examples
    --------
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_write(target, "w") as f:
    ...     _ = f.write("hello")
    >>> open(target).read()
    'hello'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    target = Path(os.fspath(path))
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {target}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same existing file (also through links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(output: PathLike, *inputs: PathLike) -> Path:
    """Check that ``output`` can be written and is none of ``inputs``.

    Raises
    ------
    ValueError
        If ``output`` is one of the input files (also via links), or is a folder.
    FileNotFoundError
        If the folder of ``output`` does not exist.
    """
    out = Path(os.fspath(output))
    for src in inputs:
        if same_file(out, src) or out.resolve() == Path(os.fspath(src)).resolve():
            raise ValueError(f"output {out} is the input file {src}; choose another output path")
    if out.is_dir():
        raise ValueError(f"output {out} is a folder; give a file name")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {out}: folder {folder} does not exist")
    return out
