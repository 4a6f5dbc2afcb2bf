"""The table of export handlers: how one Keras layer is traced for ONNX export.

An export handler is a function ``handler(layer, ctx, *args, **kwargs)`` that
receives the layer, the :class:`~spikeonnx.exporter.context.ExportContext` of the
export in progress and the arguments the layer is called with in the model
graph (TensorFlow tensors), and returns what the layer would return, computed
with TensorFlow ops that tf2onnx can convert (or with
:meth:`ExportContext.spiking_op` markers that become ``spikeonnx`` nodes).

The table is a :class:`spikeonnx.registry.Registry`: handlers are looked up along
the layer's method resolution order, so a handler registered for a base class
serves all of its subclasses unless a subclass has its own; layers without a
handler are called as they are, in inference mode. Registering a class that
already has a handler (a built-in one included) warns and replaces it;
``replace=True`` replaces silently.

The built-in handlers (:mod:`spikeonnx.exporter.builtin`) are keyed by Keras
classes, so they are registered, once, just before the table is first used for
something that involves Keras: a registration, a lookup, or
:func:`registered_handlers` once Keras has been imported. Asking for the table
never imports TensorFlow by itself.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, Optional, Type

from ..registry import Registry

__all__ = ["HANDLERS", "register_export_handler", "find_handler", "registered_handlers", "Handler"]

Handler = Callable[..., Any]

#: Keras class -> export handler; user registrations and the built-ins share it.
HANDLERS: Registry[Handler] = Registry("export handler")
_builtins_loaded = False


def _load_builtins() -> None:
    """Register the built-in handlers (once), before any other registration or lookup."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    try:
        # Imported here, not at the top: the built-ins import TensorFlow and Keras.
        from . import builtin

        builtin.register_builtins(HANDLERS)
    except BaseException:
        _builtins_loaded = False
        raise


def register_export_handler(layer_class: Type, handler: Optional[Handler] = None, *, replace: bool = False):
    """Register how layers of ``layer_class`` (and its subclasses) are exported.

    Parameters
    ----------
    layer_class : type
        The Keras layer (or operation) class the handler serves.
    handler : callable, optional
        ``handler(layer, ctx, *args, **kwargs) -> outputs``. When omitted the
        function returns a decorator, so both ``register_export_handler(C, f)``
        and ``@register_export_handler(C)`` work.
    replace : bool
        Replace an existing handler for ``layer_class`` (a built-in one, too)
        silently. Without it, replacing one warns.

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
        _load_builtins()  # first, so that a user's handler replaces a built-in and not the reverse
        HANDLERS.register(layer_class, fn, replace=replace)
        return fn

    if handler is None:
        return decorator
    return decorator(handler)


def find_handler(layer: Any) -> Optional[Handler]:
    """Return the handler for ``layer`` (nearest class in its MRO), or ``None``."""
    _load_builtins()
    return HANDLERS.find(type(layer))


def registered_handlers() -> Dict[type, Handler]:
    """Return a copy of the class -> handler table.

    The built-in handlers are included once Keras has been imported (they are
    keyed by Keras classes); this function never imports TensorFlow itself.
    """
    if "keras" in sys.modules:
        _load_builtins()
    return HANDLERS.as_dict()
