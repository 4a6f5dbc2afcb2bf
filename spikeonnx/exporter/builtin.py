"""Built-in export handlers: spiking layers, spiking cells in ``keras.layers.RNN``, nested models.

Importing this module registers the handlers (it is imported lazily by
:mod:`spikeonnx.exporter.handlers` on first use).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from .handlers import ExportError, _register_builtin
from .timedistributed import time_distributed_handler

__all__ = ["spiking_kind", "state_shape", "initial_state_description", "spiking_handler"]

SPIKING = "SpikingActivation"
LOWPASS = "Lowpass"
ALPHA = "Alpha"


def _spiking_classes() -> Dict[str, Tuple[type, ...]]:
    """kind -> (layer class, cell class) from ``keras_layers`` (empty if not importable)."""
    try:
        from keras_layers import layers as kl
    except ImportError:  # keras_layers missing: models can only hold standard layers
        return {}
    table = {}
    for kind in (SPIKING, LOWPASS, ALPHA):
        classes = tuple(c for c in (getattr(kl, kind, None), getattr(kl, kind + "Cell", None)) if c)
        if classes:
            table[kind] = classes
    return table


_CLASSES = _spiking_classes()


def _kind_of_cell(cell: Any) -> Optional[str]:
    # Alpha before Lowpass: an Alpha cell class may derive from the Lowpass one.
    for kind in (ALPHA, LOWPASS, SPIKING):
        classes = _CLASSES.get(kind, ())
        if len(classes) > 1 and isinstance(cell, classes[1]):
            return kind
    return None


def spiking_kind(layer: Any) -> Optional[str]:
    """``"SpikingActivation"``, ``"Lowpass"``, ``"Alpha"`` or ``None`` for other layers.

    Recognises the ``keras_layers`` layers and ``keras.layers.RNN`` wrapping one
    of their cells.
    """
    cell = getattr(layer, "cell", None)
    if cell is not None and (
        isinstance(layer, keras.layers.RNN) or any(isinstance(layer, c[0]) for c in _CLASSES.values())
    ):
        kind = _kind_of_cell(cell)
        if kind is not None:
            return kind
    for kind in (ALPHA, LOWPASS, SPIKING):
        classes = _CLASSES.get(kind, ())
        if classes and isinstance(layer, classes[0]):
            return kind
    return None


def _cell(layer: Any) -> Any:
    cell = getattr(layer, "cell", None)
    if cell is None:
        raise ExportError(
            f"spiking layer {layer.name!r} is not built (it has no cell yet); build the model before exporting"
        )
    return cell


def _unit_shape(layer: Any) -> Tuple[int, ...]:
    size = getattr(_cell(layer), "size", None)
    if size is None:
        raise ExportError(f"spiking layer {layer.name!r}: its cell has no 'size'; is it built?")
    size = tuple(int(d) for d in (size if isinstance(size, (tuple, list)) else (size,)))
    return size


def state_shape(layer: Any, kind: str) -> Tuple[Optional[int], ...]:
    """Shape of ``layer``'s state input: (B, *S), or (B, 2, *S) for Alpha."""
    size = _unit_shape(layer)
    return (None, 2, *size) if kind == ALPHA else (None, *size)


def _value(x: Any) -> np.ndarray:
    """Current value of a variable/tensor as float32 NumPy (read eagerly, even while tracing)."""
    with tf.init_scope():  # variables are frozen into constants at their current value
        return np.asarray(tf.convert_to_tensor(keras.ops.convert_to_tensor(x)).numpy(), dtype=np.float32)


def _dt(layer: Any) -> float:
    cell = _cell(layer)
    dt = getattr(cell, "dt", None)
    if dt is None:
        dt = getattr(layer, "dt", None)
    if dt is None:
        raise ExportError(f"spiking layer {layer.name!r} has no dt")
    # A tf.Variable is exported at its current value; the float32 value is what the
    # layer computes with, written with the shortest decimal that rounds back to it.
    value = float(str(_value(dt).reshape(())))
    if not np.isfinite(value) or value <= 0:
        raise ExportError(f"spiking layer {layer.name!r} has dt={value}; it must be finite and > 0")
    return value


def _seed(layer: Any, default_seed: int) -> int:
    seed = getattr(_cell(layer), "seed", None)
    return int(default_seed if seed is None else seed)


def initial_state_description(layer: Any, kind: str, default_seed: int) -> Dict[str, Any]:
    """How ``layer``'s state starts, for the ``spikeonnx.initial_state`` metadata.

    ``{"kind": "uniform_seed", "seed": s}`` (TensorFlow's stateless uniform draw,
    shape (B, *S)), ``{"kind": "zeros"}`` or ``{"kind": "constant", "value": v}``
    where ``v`` (nested lists) has the state shape without the batch axis.
    """
    if kind == SPIKING:
        return {"kind": "uniform_seed", "seed": _seed(layer, default_seed)}
    level = _value(_cell(layer).initial_level).reshape(_unit_shape(layer))
    # keras_layers starts both alpha stages at the initial level (filter at rest).
    value = np.stack([level, level]) if kind == ALPHA else level
    if not value.any():
        return {"kind": "zeros"}
    return {"kind": "constant", "value": value.tolist()}


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
    An Alpha state (B, 2, *S) goes straight to the node's ``initial_state``
    input, with no ops around the node. ``return_sequences=False`` takes the
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
    cell = _cell(layer)
    x = tf.cast(_first(inputs), tf.float32)
    if x.shape.rank is None or x.shape.rank < 2:
        raise ExportError(f"spiking layer {layer.name!r}: input must be (batch, time, ...), got shape {x.shape}")
    time_major = bool(getattr(layer, "time_major", False))
    batch_axis = 1 if time_major else 0
    batch = x.shape[batch_axis]
    units = tuple(x.shape[2:])
    state_dims = (batch, 2, *units) if kind == ALPHA else (batch, *units)
    dt = _dt(layer)
    attrs: Dict[str, Any] = {"dt": dt, "time_major": int(time_major)}

    state_in = ctx.state_input(layer)
    if state_in is None and initial_state is not None:
        state_in = _keras_state_to_tensor(initial_state, kind)
    wants_state = ctx.state_input(layer) is not None or bool(getattr(layer, "return_state", False))

    if kind == SPIKING:
        with tf.name_scope("activation"):
            rates = tf.cast(cell.activation(x), tf.float32)
        node_inputs = [rates]
        if state_in is not None:
            node_inputs.append(state_in)
        else:
            attrs["seed"] = _seed(layer, ctx.default_seed)
    else:
        unit_param = (1, *_unit_shape(layer))
        tau = _value(cell.tau).reshape(unit_param)
        level = _value(cell.initial_level).reshape(unit_param)
        if state_in is None:
            # Both ops start at the level: Lowpass at y = level, Alpha at rest (s1 = s2 = level).
            node_inputs = [x, tf.constant(tau), tf.constant(level)]
        elif kind == ALPHA:
            # The full (s1, s2) state goes to the op's initial_state input, which overrides the level.
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
        return [y, *_tensor_to_keras_state(final, kind, layer)]
    return y


def _keras_state_to_tensor(initial_state: Any, kind: str) -> Any:
    """A Keras ``initial_state`` argument -> the (B, *S) / (B, 2, *S) state tensor."""
    flat = [tf.cast(t, tf.float32) for t in tf.nest.flatten(initial_state)]
    if kind == ALPHA and len(flat) == 2:
        return tf.stack(flat, axis=1)
    if len(flat) != 1:
        raise ExportError(f"{kind}: expected one initial state tensor, got {len(flat)}")
    return flat[0]


def _tensor_to_keras_state(state: Any, kind: str, layer: Any) -> List[Any]:
    """The (B, *S) / (B, 2, *S) final state -> the list of states the Keras layer returns."""
    n_states = len(tf.nest.flatten(getattr(_cell(layer), "state_size", [None])))
    if kind == ALPHA and n_states == 2:
        return [state[:, 0], state[:, 1]]
    return [state]


def model_handler(layer: Any, ctx: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
    """Nested Functional/Sequential models are walked layer by layer like the outer one."""
    from .core import _functional_of, trace_model

    if _functional_of(layer) is None or args or any(v is not None for k, v in kwargs.items() if k != "training"):
        return ctx.call_default(layer, inputs, *args, **kwargs)
    return trace_model(layer, ctx, tf.nest.flatten(inputs))


for _classes in _CLASSES.values():
    _register_builtin(_classes[0], spiking_handler)
_register_builtin(keras.layers.RNN, spiking_handler)
_register_builtin(keras.Model, model_handler)
_register_builtin(keras.layers.TimeDistributed, time_distributed_handler)
