"""What a spiking layer is, for the exporter: its kind, cell, state shape and constants.

A leaf of the exporter: it knows the ``keras_layers`` classes (and ``keras.layers.RNN``
around one of their cells) and reads the values a ``spikeonnx`` node needs from a
layer: dt, seed, the shape of its state and how that state starts.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from ..philox import SEED_MAX, SEED_MIN
from .errors import ExportError

# Seeds TensorFlow takes: int64, or uint64 read as the int64 of the same bits.
_UINT64_END = 2 * (SEED_MAX + 1)

__all__ = [
    "SPIKING",
    "LOWPASS",
    "ALPHA",
    "spiking_kind",
    "cell_of",
    "unit_shape",
    "state_shape",
    "layer_dt",
    "layer_seed",
    "layer_dtype",
    "initial_state_description",
    "value_of",
]

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


#: kind -> (layer class, cell class)
CLASSES = _spiking_classes()


def _kind_of_cell(cell: Any) -> Optional[str]:
    # Alpha before Lowpass: an Alpha cell class may derive from the Lowpass one.
    for kind in (ALPHA, LOWPASS, SPIKING):
        classes = CLASSES.get(kind, ())
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
        isinstance(layer, keras.layers.RNN) or any(isinstance(layer, c[0]) for c in CLASSES.values())
    ):
        kind = _kind_of_cell(cell)
        if kind is not None:
            return kind
    for kind in (ALPHA, LOWPASS, SPIKING):
        classes = CLASSES.get(kind, ())
        if classes and isinstance(layer, classes[0]):
            return kind
    return None


def cell_of(layer: Any) -> Any:
    """The cell of a spiking layer (an unbuilt layer has none)."""
    cell = getattr(layer, "cell", None)
    if cell is None:
        raise ExportError(
            f"spiking layer {layer.name!r} is not built (it has no cell yet); build the model before exporting"
        )
    return cell


def unit_shape(layer: Any) -> Tuple[int, ...]:
    """The unit shape S of a spiking layer (its cell's ``size``)."""
    size = getattr(cell_of(layer), "size", None)
    if size is None:
        raise ExportError(f"spiking layer {layer.name!r}: its cell has no 'size'; is it built?")
    size = tuple(int(d) for d in (size if isinstance(size, (tuple, list)) else (size,)))
    return size


def state_shape(layer: Any, kind: str) -> Tuple[Optional[int], ...]:
    """Shape of ``layer``'s state input: (B, *S), or (B, 2, *S) for Alpha."""
    size = unit_shape(layer)
    return (None, 2, *size) if kind == ALPHA else (None, *size)


def value_of(x: Any, dtype: Any = np.float32) -> np.ndarray:
    """Current value of a variable/tensor as NumPy ``dtype`` (read eagerly, even while tracing)."""
    with tf.init_scope():  # variables are frozen into constants at their current value
        return np.asarray(tf.convert_to_tensor(keras.ops.convert_to_tensor(x)).numpy(), dtype=dtype)


def layer_dtype(layer: Any) -> np.dtype:
    """The float type a spiking layer computes in: float64 for a float64 layer, else float32.

    The ``spikeonnx`` ops run in float32 and float64; other compute types (float16,
    bfloat16 mixed precision) are exported as float32.
    """
    cell = getattr(layer, "cell", None)
    compute = getattr(cell, "compute_dtype", None) or getattr(layer, "compute_dtype", None)
    return np.dtype(np.float64) if str(compute) == "float64" else np.dtype(np.float32)


def layer_dt(layer: Any) -> float:
    """The dt of a spiking layer, as the float32 value the layer computes with."""
    cell = cell_of(layer)
    dt = getattr(cell, "dt", None)
    if dt is None:
        dt = getattr(layer, "dt", None)
    if dt is None:
        raise ExportError(f"spiking layer {layer.name!r} has no dt")
    # A tf.Variable is exported at its current value; the float32 value is what the
    # layer computes with, written with the shortest decimal that rounds back to it.
    value = float(str(value_of(dt).reshape(())))
    if not np.isfinite(value) or value <= 0:
        raise ExportError(f"spiking layer {layer.name!r} has dt={value}; it must be finite and > 0")
    if layer_dtype(layer) == np.float64:
        # The node's dt attribute is an ONNX float (32 bits); a float64 layer computes
        # with its dt in float64, so only a dt that float32 holds exactly gives its results.
        plain = isinstance(dt, (int, float, np.floating)) and not isinstance(dt, bool)
        exact = float(dt) if plain else float(value_of(dt, np.float64).reshape(()))
        if exact != float(np.float32(exact)):
            raise ExportError(
                f"spiking layer {layer.name!r} is float64 with dt={exact!r}, which a float32 (the type of the "
                f"spikeonnx op's dt attribute) does not hold exactly, so the exported model would not compute "
                f"what the layer does; use a dt that float32 holds (e.g. {float(np.float32(2.0 ** -10))}) "
                "or a float32 model"
            )
        value = exact
    return value


def layer_seed(layer: Any, default_seed: int) -> int:
    """The seed of a SpikingActivation layer's voltage draw (``default_seed`` if it has none).

    TensorFlow reads a seed from 2**63 to 2**64 - 1 as the int64 of the same 64 bits
    (two's complement), so the layer draws with ``seed - 2**64``; that is the seed
    exported. Seeds outside -2**63 .. 2**64 - 1 are refused.

    Raises
    ------
    ExportError
        If the seed is not an integer in that range; the message names the layer.
    """
    seed = getattr(cell_of(layer), "seed", None)
    source = "default_seed" if seed is None else "seed"
    value = default_seed if seed is None else seed
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ExportError(f"spiking layer {layer.name!r}: {source} must be an integer, got {value!r}")
    value = int(value)
    if not SEED_MIN <= value < _UINT64_END:
        raise ExportError(
            f"spiking layer {layer.name!r}: {source}={value} is outside -2**63 .. 2**64 - 1, the seeds TensorFlow "
            "accepts"
        )
    return value - _UINT64_END if value > SEED_MAX else value


def initial_state_description(layer: Any, kind: str, default_seed: int) -> Dict[str, Any]:
    """How ``layer``'s state starts, for the ``spikeonnx.initial_state`` metadata.

    ``{"kind": "uniform_seed", "seed": s}`` (TensorFlow's stateless uniform draw,
    shape (B, *S)), ``{"kind": "zeros"}`` or ``{"kind": "constant", "value": v}``
    where ``v`` (nested lists) has the state shape without the batch axis.
    """
    if kind == SPIKING:
        return {"kind": "uniform_seed", "seed": layer_seed(layer, default_seed)}
    level = value_of(cell_of(layer).initial_level, layer_dtype(layer)).reshape(unit_shape(layer))
    # keras_layers starts both alpha stages at the initial level (filter at rest).
    value = np.stack([level, level]) if kind == ALPHA else level
    if not value.any():
        return {"kind": "zeros"}
    return {"kind": "constant", "value": value.tolist()}
