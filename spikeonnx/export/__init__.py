"""Export of Keras models with KerasSpiking layers to ONNX (through tf2onnx).

``export(model, path)`` converts standard layers with tf2onnx and every spiking
layer into one node of the ``spikeonnx`` domain; ``register_export_handler``
teaches the exporter about layers of your own. Importing this package is light:
TensorFlow is imported when a model is exported.

``spikeonnx.export`` is both this package and the function: once the package is
imported, Python binds the *module* to the ``export`` attribute of ``spikeonnx``,
so the module is made callable (calling it calls :func:`export`) and
``from spikeonnx import export; export(model)`` works in any import order.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .core import ExportContext, export
from .handlers import ExportError, register_export_handler, registered_handlers
from . import metadata

__all__ = ["export", "register_export_handler", "registered_handlers", "ExportError", "ExportContext", "metadata"]


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`export`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
