"""Export of ``keras.layers.TimeDistributed``: fold time into batch, apply, unfold.

tf2onnx 1.17 mis-converts Keras 3's ``TimeDistributed`` (wrong output shapes for
Dense, graphs onnxruntime rejects for Conv2D), so the exporter never lets tf2onnx
see it: the (B, T, *F) input is reshaped to (B*T, *F) with dynamic sizes taken
from ``tf.shape``, the inner layer is traced through its own export handler, and
the result is reshaped back to (B, T, *F').
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from .errors import ExportError
from .kinds import spiking_kind

__all__ = ["time_distributed_handler"]


def _static_or_dynamic(tensor: Any, start: int) -> Any:
    """Shape of ``tensor`` from axis ``start`` on, as constants where static."""
    static = tensor.shape[start:]
    if all(d is not None for d in static):
        return tf.constant(list(static), tf.int32)
    return tf.shape(tensor)[start:]


def time_distributed_handler(
    layer: Any, ctx: Any, inputs: Any, *args: Any, training: Any = None, mask: Any = None, **kwargs: Any
) -> Any:
    """Trace ``TimeDistributed(inner)`` as reshape -> inner -> reshape."""
    inner = layer.layer
    if spiking_kind(inner) is not None or getattr(inner, "stateful", False):
        raise ExportError(
            f"TimeDistributed layer {layer.name!r} wraps {type(inner).__name__}, which keeps state over "
            "time; only per-timestep layers (Dense, Conv, pooling, Flatten, Dropout...) can be wrapped"
        )
    if args or kwargs:
        raise ExportError(f"TimeDistributed layer {layer.name!r}: unexpected call arguments {args or kwargs}")
    flat = tf.nest.flatten(inputs)
    if len(flat) != 1:
        raise ExportError(f"TimeDistributed layer {layer.name!r}: expected one input, got {len(flat)}")
    x = flat[0]
    if x.shape.rank is None or x.shape.rank < 3:
        raise ExportError(
            f"TimeDistributed layer {layer.name!r}: input must be (batch, time, ...), got shape {x.shape}"
        )
    outer = tf.shape(x)[:2]
    folded = tf.reshape(x, tf.concat([[-1], _static_or_dynamic(x, 2)], axis=0))
    folded.set_shape([None, *x.shape[2:]])
    y = ctx.call_unscoped(inner, folded)
    if isinstance(y, (list, tuple)):
        raise ExportError(f"TimeDistributed layer {layer.name!r}: inner layer returned several outputs")
    unfolded = tf.reshape(y, tf.concat([outer, _static_or_dynamic(y, 1)], axis=0))
    unfolded.set_shape([x.shape[0], x.shape[1], *y.shape[1:]])
    return unfolded
