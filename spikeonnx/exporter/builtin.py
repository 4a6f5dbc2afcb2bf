"""Built-in export handlers: spiking layers, spiking cells in ``keras.layers.RNN``, nested
models and ``TimeDistributed``.

:func:`register_builtins` puts them into a handler table; the exporter's table
(:data:`spikeonnx.exporter.handlers.HANDLERS`) calls it once, before its first use.
"""

from __future__ import annotations

from typing import Any, Dict, List

import keras
import numpy as np
import tensorflow as tf

from ..registry import Registry
from .errors import ExportError
from .kinds import (
    ALPHA,
    CLASSES,
    SPIKING,
    cell_of,
    layer_dt,
    layer_dtype,
    layer_seed,
    spiking_kind,
    unit_shape,
    value_of,
)
from .timedistributed import time_distributed_handler
from .walk import functional_of, trace_model

__all__ = ["spiking_handler", "model_handler", "register_builtins"]


def _first(x: Any) -> Any:
    flat = tf.nest.flatten(x)
    if len(flat) != 1:
        raise ExportError(f"expected a single tensor, got {len(flat)}")
    return flat[0]


def spiking_handler(
    layer: Any,
    ctx: Any,
    inputs: Any,
    *args: Any,
    initial_state: Any = None,
    training: Any = None,
    mask: Any = None,
    **kwargs: Any,
) -> Any:
    """Export handler of SpikingActivation / Lowpass / Alpha layers and spiking ``RNN`` cells.

    Emits one ``spikeonnx`` node: the base activation of a SpikingActivation is
    traced as ordinary TensorFlow ops before it; tau and the initial level of the
    filters become initializers. The initial state comes, in this order, from the
    layer's state input (``state_io``/stateful), from an ``initial_state``
    argument in the model graph, or from the layer itself (seeded voltage draw,
    ``initial_level``; an Alpha node then starts at rest, ``s1 = s2 = level``).
    An Alpha state from the state input (B, 2, *S) is the op's own cascade state
    ``(s1, s2)`` and goes straight to the node's ``initial_state`` input, with no
    ops around the node; an Alpha state the Keras model passes (``initial_state``
    argument, ``return_state`` output) is in the Keras layout ``(v, y)`` and is
    converted (``s1 = y + tau v``, ``s2 = y``). ``return_sequences=False`` takes the
    last step with a Gather; ``return_state`` also returns the node's final state.

    Parameters
    ----------
    layer : keras.layers.Layer
        The spiking layer (or ``keras.layers.RNN`` around a spiking cell).
    ctx : spikeonnx.exporter.ExportContext
        The export in progress.
    inputs : tf.Tensor
        (B, T, *S) or, for time-major layers, (T, B, *S).
    initial_state : tf.Tensor or list of tf.Tensor, optional
        As passed to the Keras layer.

    Returns
    -------
    tf.Tensor or list of tf.Tensor
        What the Keras layer returns.

    Raises
    ------
    ExportError
        For masks, ``go_backwards``, unknown call arguments or a bad input rank.
    """
    kind = spiking_kind(layer)
    if kind is None:  # an RNN around some other cell
        return ctx.call_default(layer, inputs, *args, initial_state=initial_state, mask=mask, **kwargs)
    extra = {k: v for k, v in kwargs.items() if v is not None}
    if args or extra:
        raise ExportError(
            f"spiking layer {layer.name!r}: call arguments {list(args) or sorted(extra)} cannot be exported"
        )
    if mask is not None:
        raise ExportError(f"spiking layer {layer.name!r}: masked inputs cannot be exported")
    if getattr(layer, "go_backwards", False):
        raise ExportError(f"spiking layer {layer.name!r}: go_backwards=True cannot be exported")
    cell = cell_of(layer)
    # float64 layers export as float64 nodes (the ops take both); anything else as float32
    dtype = layer_dtype(layer)
    x = tf.cast(_first(inputs), dtype)
    if x.shape.rank is None or x.shape.rank < 2:
        raise ExportError(f"spiking layer {layer.name!r}: input must be (batch, time, ...), got shape {x.shape}")
    time_major = bool(getattr(layer, "time_major", False))
    batch_axis = 1 if time_major else 0
    batch = x.shape[batch_axis]
    units = tuple(x.shape[2:])
    state_dims = (batch, 2, *units) if kind == ALPHA else (batch, *units)
    dt = layer_dt(layer)
    attrs: Dict[str, Any] = {"dt": dt, "time_major": int(time_major)}

    state_in = ctx.state_input(layer)
    keras_state_in = state_in is None and initial_state is not None
    if keras_state_in:
        state_in = _keras_state_to_tensor(initial_state, kind, dtype)
    wants_state = ctx.state_input(layer) is not None or bool(getattr(layer, "return_state", False))

    if kind == SPIKING:
        with tf.name_scope("activation"):
            rates = tf.cast(cell.activation(x), dtype)
        node_inputs = [rates]
        if state_in is not None:
            node_inputs.append(state_in)
        else:
            attrs["seed"] = layer_seed(layer, ctx.default_seed)
        _check_float64_draw(layer, dtype, given=keras_state_in)
    else:
        unit_param = (1, *unit_shape(layer))
        tau = value_of(cell.tau, dtype).reshape(unit_param)
        level = value_of(cell.initial_level, dtype).reshape(unit_param)
        if state_in is None:
            # Both ops start at the level: Lowpass at y = level, Alpha at rest (s1 = s2 = level).
            node_inputs = [x, tf.constant(tau), tf.constant(level)]
        elif kind == ALPHA:
            # The full (s1, s2) state goes to the op's initial_state input, which overrides the level.
            if keras_state_in:
                state_in = _alpha_keras_to_cascade(state_in, tau)
            node_inputs = [x, tf.constant(tau), tf.constant(level), state_in]
        else:
            node_inputs = [x, tf.constant(tau), state_in]

    shapes = [tuple(x.shape)] + ([state_dims] if wants_state else [])
    outputs = ctx.spiking_op(kind, layer, node_inputs, attrs, shapes)
    y = outputs[0]
    final = outputs[1] if wants_state else None
    if ctx.state_input(layer) is not None:
        ctx.set_state_output(layer, final)
    if not getattr(layer, "return_sequences", True):
        # A Gather of the last index (rather than a strided slice): plain in ONNX and
        # robust to custom-op shape inference that reports unknown dimensions.
        time_axis = 0 if time_major else 1
        y = tf.gather(y, tf.shape(y)[time_axis] - 1, axis=time_axis)
    if getattr(layer, "return_state", False):
        if kind == ALPHA:
            final = _alpha_cascade_to_keras(final, tau)
        return [y, *_tensor_to_keras_state(final, kind, layer)]
    return y


# keras_layers clips tau like this in its forward pass; the conversions use the same value.
_MIN_TAU = 1e-8


def _alpha_keras_to_cascade(state: Any, tau: Any) -> Any:
    """Keras Alpha state (B, 2, *S) ``(v, y)`` -> the op's cascade ``(s1, s2) = (y + tau v, y)``."""
    # a KerasSpiking-shaped (B, 2, prod(S)) state is accepted too, as by the Keras layer
    state = tf.reshape(state, [-1, 2, *tau.shape[1:]])
    tau = tf.constant(np.maximum(tau, tau.dtype.type(_MIN_TAU)))
    v, y = state[:, 0], state[:, 1]
    return tf.stack([y + tau * v, y], axis=1)


def _alpha_cascade_to_keras(state: Any, tau: Any) -> Any:
    """The op's cascade state ``(s1, s2)`` -> Keras' ``(v, y) = ((s1 - s2) / tau, s2)``."""
    tau = tf.constant(np.maximum(tau, tau.dtype.type(_MIN_TAU)))
    s1, s2 = state[:, 0], state[:, 1]
    return tf.stack([(s1 - s2) / tau, s2], axis=1)


def _check_float64_draw(layer: Any, dtype: np.dtype, *, given: bool) -> None:
    """Refuse a float64 SpikingActivation whose seeded voltage draw the op cannot reproduce.

    Keras draws the voltage of a float64 layer with ``stateless_uniform(..., dtype=float64)``
    (other numbers than the float32 draw); the op and the ``uniform_seed`` initial state
    draw float32 numbers. Without a seed Keras draws fresh numbers on every call anyway.
    """
    if dtype != np.float64 or given or getattr(cell_of(layer), "seed", None) is None:
        return
    raise ExportError(
        f"spiking layer {layer.name!r} is float64 with seed={cell_of(layer).seed}: Keras draws its initial "
        "voltage as float64 numbers, which the spikeonnx op (a float32 draw) does not reproduce; pass the "
        "initial voltage as the layer's initial_state, use seed=None, or use a float32 model"
    )


def _keras_state_to_tensor(initial_state: Any, kind: str, dtype: Any = np.float32) -> Any:
    """A Keras ``initial_state`` argument -> the (B, *S) / (B, 2, *S) state tensor."""
    flat = [tf.cast(t, dtype) for t in tf.nest.flatten(initial_state)]
    if kind == ALPHA and len(flat) == 2:
        return tf.stack(flat, axis=1)
    if len(flat) != 1:
        raise ExportError(f"{kind}: expected one initial state tensor, got {len(flat)}")
    return flat[0]


def _tensor_to_keras_state(state: Any, kind: str, layer: Any) -> List[Any]:
    """The (B, *S) / (B, 2, *S) final state -> the list of states the Keras layer returns."""
    n_states = len(tf.nest.flatten(getattr(cell_of(layer), "state_size", [None])))
    if kind == ALPHA and n_states == 2:
        return [state[:, 0], state[:, 1]]
    return [state]


def model_handler(layer: Any, ctx: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
    """Nested Functional/Sequential models are walked layer by layer like the outer one."""
    if functional_of(layer) is None or args or any(v is not None for k, v in kwargs.items() if k != "training"):
        return ctx.call_default(layer, inputs, *args, **kwargs)
    return trace_model(layer, ctx, tf.nest.flatten(inputs))


def register_builtins(registry: Registry) -> None:
    """Register the built-in handlers in ``registry``, under the registry's own policy."""
    for classes in CLASSES.values():
        registry.register(classes[0], spiking_handler)
    registry.register(keras.layers.RNN, spiking_handler)
    registry.register(keras.Model, model_handler)
    registry.register(keras.layers.TimeDistributed, time_distributed_handler)
