"""Export of Keras models with KerasSpiking layers to ONNX (through tf2onnx).

``export(model, path)`` converts standard layers with tf2onnx and every spiking
layer into one node of the ``spikeonnx`` domain; ``register_export_handler``
teaches the exporter about layers of your own. Both are also available as
``spikeonnx.export`` and ``spikeonnx.register_export_handler``.

The modules, bottom up (each imports only those before it):

- :mod:`.errors`: :class:`ExportError`;
- :mod:`.handlers`: the handler table (a :class:`spikeonnx.registry.Registry`);
- :mod:`.passes`: pure ONNX post-processing passes (no TensorFlow);
- :mod:`.kinds`: what a spiking layer is (kind, state shape, dt, seed, initial state);
- :mod:`.walk`: walking a Keras model layer by layer;
- :mod:`.context`: :class:`ExportContext`, handed to every handler;
- :mod:`.timedistributed`, :mod:`.builtin`: the built-in handlers, registered by
  :func:`.builtin.register_builtins` when the table is first used;
- :mod:`.convert`: tracing and tf2onnx;
- :mod:`.core`: :func:`export`, the sequence of the above.

Importing this package is light: TensorFlow is imported when a model is exported
(or when :class:`ExportContext` is asked for).
"""

from __future__ import annotations

import importlib
from typing import Any

from .core import export
from .errors import ExportError
from .handlers import register_export_handler, registered_handlers

__all__ = ["export", "register_export_handler", "registered_handlers", "ExportError", "ExportContext"]


def __getattr__(name: str) -> Any:
    # ExportContext lives with TensorFlow; load it only when asked for.
    if name == "ExportContext":
        return importlib.import_module(f"{__name__}.context").ExportContext
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
