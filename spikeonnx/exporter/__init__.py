"""Export of Keras models with KerasSpiking layers to ONNX (through tf2onnx).

``export(model, path)`` converts standard layers with tf2onnx and every spiking
layer into one node of the ``spikeonnx`` domain; ``register_export_handler``
teaches the exporter about layers of your own. Both are also available as
``spikeonnx.export`` and ``spikeonnx.register_export_handler``. Importing this
package is light: TensorFlow is imported when a model is exported.
"""

from __future__ import annotations

from .core import ExportContext, export
from .handlers import ExportError, register_export_handler, registered_handlers
from . import metadata

__all__ = ["export", "register_export_handler", "registered_handlers", "ExportError", "ExportContext", "metadata"]
