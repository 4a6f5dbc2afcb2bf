"""Locate the compiled onnxruntime custom-op library of the ``spikeonnx`` domain."""

from __future__ import annotations

import os
from importlib import metadata, resources
from pathlib import Path
from typing import Optional

from ..contract import DOMAIN, OPSET_VERSION

# DOMAIN and OPSET_VERSION are re-exported from spikeonnx.contract (their one home).
__all__ = ["library_path", "LIBRARY_NAME", "DOMAIN", "OPSET_VERSION"]

#: File name of the shared library that ``pip install .`` builds and installs here.
LIBRARY_NAME = "libspikeonnx_ops.so"
# Developers may point at a library built by hand (e.g. a sanitizer build).
_ENV_OVERRIDE = "SPIKEONNX_OPS_LIBRARY"


def library_path() -> str:
    """Return the path of the custom-op library, for ``register_custom_ops_library``.

    ``$SPIKEONNX_OPS_LIBRARY`` takes precedence when set; otherwise the library is
    looked up inside this installed package.

    Returns
    -------
    str
        Absolute path of the shared library.

    Raises
    ------
    FileNotFoundError
        If the library is not where it should be (e.g. the package was not built
        with ``pip install .``).
    """
    override = os.environ.get(_ENV_OVERRIDE)
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"${_ENV_OVERRIDE} points at {path}, which does not exist")
        return str(path.resolve())
    path = Path(str(resources.files(__name__).joinpath(LIBRARY_NAME)))
    if path.is_file():
        return str(path)
    # Imported from a source checkout that shadows the installed package (a script or a
    # worker process started in the repository's root): the installed distribution
    # still has the compiled library.
    installed = _installed_library()
    if installed is not None:
        return installed
    raise FileNotFoundError(
        f"spikeonnx op library not found at {path}; build and install the package "
        f"with 'pip install .' or set ${_ENV_OVERRIDE}"
    )


def _installed_library() -> Optional[str]:
    """The library file of the installed ``spikeonnx`` distribution, if there is one."""
    try:
        located = metadata.distribution("spikeonnx").locate_file(f"spikeonnx/ops/{LIBRARY_NAME}")
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(located))
    return str(path.resolve()) if path.is_file() else None
