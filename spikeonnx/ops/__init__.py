"""Locate the compiled onnxruntime custom-op library of the ``spikeonnx`` domain."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

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
    if not path.is_file():
        raise FileNotFoundError(
            f"spikeonnx op library not found at {path}; build and install the package "
            f"with 'pip install .' or set ${_ENV_OVERRIDE}"
        )
    return str(path)
