"""spikeonnx: spiking neural networks from Keras to ONNX and onnxruntime.

The pipeline, one module per step:

- ``keras_layers`` (separate import package): the KerasSpiking API on Keras 3.
- :mod:`spikeonnx.exporter`: Keras model -> ONNX through tf2onnx, spiking layers as
  nodes of the ``spikeonnx`` domain.
- :mod:`spikeonnx.schemas` / :mod:`spikeonnx.reference`: the op contract (ONNX
  schemas and the NumPy reference implementation of each op).
- :mod:`spikeonnx.ops`: the compiled onnxruntime custom-op library.
- :mod:`spikeonnx.runtime`: inference sessions with the library registered.
- :mod:`spikeonnx.analysis`: energy analysis of any ONNX graph (networkx).
- :mod:`spikeonnx.contract`: what a model file is (domain, IR version, metadata),
  declared once for all of the above.

Importing this package never imports TensorFlow; names and submodules are loaded
lazily (``spikeonnx.ops.library_path()`` works after a plain ``import spikeonnx``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from .devices import register_device  # noqa: E402  (light, no heavy deps)

# name -> module that defines it; imported on first access.
_LAZY = {
    "InferenceSession": "spikeonnx.runtime",
    "StreamingSession": "spikeonnx.runtime",
    "export": "spikeonnx.exporter",
    "optimize": "spikeonnx.events",
    "register_export_handler": "spikeonnx.exporter",
    "GraphEnergy": "spikeonnx.analysis",
    "register_op": "spikeonnx.analysis",
}

# Submodules reachable as attributes without importing them first.
_SUBMODULES = frozenset(
    {
        "analysis",
        "cli",
        "contract",
        "demo",
        "devices",
        "distributed",  # imports Ray (the optional extra) on first access
        "energy",
        "events",
        "examples",
        "exporter",
        "fileio",
        "functions",
        "ops",
        "philox",
        "plots",
        "reference",
        "registry",
        "runtime",
        "schemas",
        "shards",
    }
)

__all__ = ["__version__", "register_device", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        # import_module also sets the attribute on this package.
        return importlib.import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spikeonnx' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
