"""Walking a Keras model layer by layer, so that every layer goes through its export handler."""

from __future__ import annotations

from typing import Any, List

import keras
from keras.src.models.functional import Functional

from .errors import ExportError
from .kinds import spiking_kind

__all__ = ["functional_of", "trace_model", "all_layers"]


def functional_of(model: Any) -> Any:
    """Return the Functional graph behind ``model`` (itself, or a Sequential's), or None."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    if isinstance(model, Functional):
        return model
    return None


def trace_model(model: Any, ctx: Any, inputs: List[Any]) -> Any:
    """Trace ``model`` on ``inputs`` layer by layer; returns its outputs (same structure).

    Functional models (and built Sequential models) are walked node by node so
    that every layer goes through :meth:`ExportContext.call_layer`; nested models
    are walked recursively by the built-in handler of :class:`keras.Model`.
    """
    functional = functional_of(model)
    if functional is not None:
        return functional._run_through_graph(
            inputs, operation_fn=lambda op: (lambda *a, **k: ctx.call_layer(op, *a, **k))
        )
    if isinstance(model, keras.Sequential):
        # A Sequential built without an Input has no functional graph: chain its layers.
        (x,) = inputs
        for layer in model.layers:
            x = ctx.call_layer(layer, x)
        return x
    for layer in all_layers(model):
        if spiking_kind(layer) is not None:
            raise ExportError(
                f"cannot export subclassed model {type(model).__name__!r}: it contains spiking layer "
                f"{layer.name!r} and only Functional and Sequential models can be walked layer by layer; "
                "rebuild it as a Functional model"
            )
    return ctx.call_default(model, inputs[0] if len(inputs) == 1 else inputs)


def all_layers(model: Any) -> List[Any]:
    """Every layer of ``model``, recursively (nested models and wrappers included)."""
    found, seen = [], set()

    def visit(layer: Any) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        found.append(layer)
        if spiking_kind(layer) is not None:
            return  # its inner RNN is part of it, not a layer of its own
        for sub in getattr(layer, "layers", None) or []:
            visit(sub)
        inner = getattr(layer, "layer", None)  # TimeDistributed & other wrappers
        if inner is not None and hasattr(inner, "name"):
            visit(inner)

    for layer in getattr(model, "layers", []):
        visit(layer)
    return found
