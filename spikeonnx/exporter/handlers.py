"""Registry of export handlers: how one Keras layer is traced for ONNX export.

An export handler is a function ``handler(layer, ctx, *args, **kwargs)`` that
receives the layer, the :class:`~spikeonnx.exporter.core.ExportContext` of the
export in progress and the arguments the layer is called with in the model
graph (TensorFlow tensors), and returns what the layer would return, computed
with TensorFlow ops that tf2onnx can convert (or with
:meth:`ExportContext.spiking_op` markers that become ``spikeonnx`` nodes).

Handlers are looked up along the layer's method resolution order, so a handler
registered for a base class serves all of its subclasses unless a subclass has
its own. Layers without a handler are called as they are, in inference mode.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Type

__all__ = ["register_export_handler", "find_handler", "registered_handlers", "ExportError"]


class ExportError(ValueError):
    """A model (or one of its layers) cannot be exported to ONNX."""


Handler = Callable[..., Any]

# class -> handler; user registrations and the built-ins share this table.
_HANDLERS: Dict[type, Handler] = {}
_BUILTINS_LOADED = False


def register_export_handler(layer_class: Type, handler: Optional[Handler] = None):
    """Register how layers of ``layer_class`` (and its subclasses) are exported.

    Parameters
    ----------
    layer_class : type
        The Keras layer (or operation) class the handler serves.
    handler : callable, optional
        ``handler(layer, ctx, *args, **kwargs) -> outputs``. When omitted the
        function returns a decorator, so both ``register_export_handler(C, f)``
        and ``@register_export_handler(C)`` work.

    Returns
    -------
    callable
        The handler (or the decorator).

    Raises
    ------
    TypeError
        If ``layer_class`` is not a class or ``handler`` is not callable.
    """
    if not isinstance(layer_class, type):
        raise TypeError(f"register_export_handler needs a layer class, got {layer_class!r}")

    def decorator(fn: Handler) -> Handler:
        if not callable(fn):
            raise TypeError(f"export handler for {layer_class.__name__} must be callable, got {fn!r}")
        _load_builtins()  # so a user registration is never overwritten by a later built-in load
        _HANDLERS[layer_class] = fn
        return fn

    if handler is None:
        return decorator
    return decorator(handler)


def find_handler(layer: Any) -> Optional[Handler]:
    """Return the handler for ``layer`` (nearest class in its MRO), or ``None``."""
    _load_builtins()
    for cls in type(layer).__mro__:
        fn = _HANDLERS.get(cls)
        if fn is not None:
            return fn
    return None


def registered_handlers() -> Dict[type, Handler]:
    """Return a copy of the class -> handler table (built-ins included)."""
    _load_builtins()
    return dict(_HANDLERS)


def _load_builtins() -> None:
    # Built-in handlers import Keras and keras_layers, so load them on first use only.
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    from . import builtin  # noqa: F401  (registers through _register_builtin)


def _register_builtin(layer_class: type, handler: Handler) -> None:
    # setdefault: a user handler registered earlier for the same class wins.
    _HANDLERS.setdefault(layer_class, handler)
