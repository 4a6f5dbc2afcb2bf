"""The exception every export failure raises."""

from __future__ import annotations

__all__ = ["ExportError"]


class ExportError(ValueError):
    """A model (or one of its layers) cannot be exported to ONNX."""
