"""The TensorFlow side of the export: trace the Keras model, convert it with tf2onnx.

1. The Keras model's functional graph is walked in topological order inside a
   ``tf.function``; every layer is traced by its export handler, each in a name
   scope of its own so that the ONNX nodes can be attributed to Keras layers.
2. Spiking layers are traced as *marker* ops (:meth:`ExportContext.spiking_op`)
   whose inputs are exactly the inputs of the ``spikeonnx`` node and which carry
   the right static output shapes.
3. tf2onnx converts the traced function; a custom op handler rewrites each marker
   into one ``spikeonnx`` node with the layer's attributes.
4. The traced function is run once to find the batch and time axis of every
   graph output.

The result (:class:`Converted`) is raw tf2onnx output plus what the ONNX passes of
:mod:`spikeonnx.exporter.passes` need to finish it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import keras
import onnx
import tensorflow as tf
import tf2onnx
from onnx import helper

from ..contract import DOMAIN, OPSET_VERSION
from . import passes
from .context import ExportContext, StateSlot
from .errors import ExportError
from .kinds import initial_state_description, layer_dtype, spiking_kind, state_shape
from .passes import SpikingNode
from .walk import all_layers, trace_model

__all__ = ["Converted", "convert", "check_model_ready"]

# TensorFlow op types a numpy_function can become.
_MARKER_OP_TYPES = ("PyFunc", "PyFuncStateless", "EagerPyFunc")

log = logging.getLogger(__name__)

Axes = Dict[str, Tuple[Optional[int], Optional[int]]]


@dataclass
class Converted:
    """tf2onnx's model and what the passes need to finish it."""

    model: onnx.ModelProto
    ctx: ExportContext
    slots: List[StateSlot]
    spiking_nodes: Dict[str, SpikingNode]  # tf2onnx node name -> node
    input_names: List[str]
    output_names: List[str]
    axes: Axes  # graph input/output name -> (batch axis, time axis)
    output_shapes: List[Tuple[Optional[int], ...]]  # traced static shape of each output


class _DynamicTimeUnsupported(Exception):
    """The traced model fails with a time length other than the declared one."""


def check_model_ready(model: Any) -> None:
    """Reject what is not a built Keras model with defined inputs."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"export() needs a keras.Model, got {type(model).__name__}")
    if not model.built:
        raise ExportError(f"model {model.name!r} is not built; call it on data or build it before exporting")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ExportError(
            f"model {model.name!r} has no defined inputs; export needs a Functional model or a "
            "Sequential model that starts with keras.Input(...)"
        )


def convert(model: Any, *, state_io: bool, opset: int, default_seed: int, dynamic_time: bool) -> Converted:
    """Trace and convert ``model``; with ``dynamic_time``, fall back to its declared time length.

    Raises
    ------
    ExportError
        If a layer cannot be exported, or tracing fails.
    """
    check_model_ready(model)
    last_error: Optional[BaseException] = None
    for dynamic in [True, False] if dynamic_time else [False]:
        try:
            return _convert_once(model, state_io, opset, default_seed, dynamic)
        except ExportError:
            raise
        except Exception as err:  # tracing with a dynamic time axis can fail legitimately
            if not dynamic:
                raise ExportError(f"tracing model {model.name!r} for export failed: {err}") from err
            last_error = err
            log.info("export with dynamic time axis failed (%s); retrying with static time", err)
    raise ExportError(f"export failed: {last_error}")  # pragma: no cover - the loop returns or raises


def _input_specs(model: Any, dynamic_time: bool) -> List[Any]:
    """TensorSpecs of the model inputs with dynamic batch (and time) axes."""
    specs = []
    for i, tensor in enumerate(model.inputs):
        shape = list(tensor.shape)
        if len(shape) >= 1:
            shape[0] = None
        if dynamic_time and len(shape) >= 3:
            shape[1] = None
        dtype = tf.as_dtype(getattr(tensor, "dtype", "float32") or "float32")
        specs.append(tf.TensorSpec(shape, dtype, name=f"spikeonnx_input_{i}"))
    return specs


def _producer_name(tensor: Any, fallback: str) -> str:
    """Name of the Keras layer (InputLayer for inputs) that produced a symbolic tensor."""
    history = getattr(tensor, "_keras_history", None)
    operation = getattr(history, "operation", None) if history is not None else None
    name = getattr(operation, "name", None)
    return str(name) if name else fallback


def _model_input_names(model: Any) -> List[str]:
    return _dedupe([_producer_name(t, f"input_{i}") for i, t in enumerate(model.inputs)])


def _model_output_names(model: Any, count: int) -> List[str]:
    outputs = list(getattr(model, "outputs", None) or [])
    if len(outputs) != count:
        return [f"output_{i}" for i in range(count)]
    return _dedupe([_producer_name(t, f"output_{i}") for i, t in enumerate(outputs)])


def _dedupe(names: List[str]) -> List[str]:
    out, seen = [], set()
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def _collect_state_slots(model: Any, state_io: bool, default_seed: int) -> List[StateSlot]:
    slots = []
    for layer in all_layers(model):
        kind = spiking_kind(layer)
        if kind is None:
            continue
        if state_io or getattr(layer, "stateful", False):
            slots.append(
                StateSlot(
                    layer=layer,
                    kind=kind,
                    shape=state_shape(layer, kind),
                    initial=initial_state_description(layer, kind, default_seed),
                )
            )
    names = [s.input_name for s in slots]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ExportError(f"spiking layers need unique names for their state inputs; duplicated: {duplicates}")
    return slots


def _convert_once(model: Any, state_io: bool, opset: int, default_seed: int, dynamic_time: bool) -> Converted:
    ctx = ExportContext(state_io=state_io, default_seed=default_seed)
    slots = _collect_state_slots(model, state_io, default_seed)
    for slot in slots:
        ctx.states[id(slot.layer)] = slot
    specs = _input_specs(model, dynamic_time)
    n_inputs = len(specs)
    for i, slot in enumerate(slots):
        specs.append(tf.TensorSpec(slot.shape, tf.as_dtype(layer_dtype(slot.layer)), name=f"spikeonnx_state_{i}"))

    traced: Dict[str, Any] = {}

    def traced_model(*args: Any) -> List[Any]:
        # Markers accumulate (tokens are unique per process) in case TensorFlow
        # retraces; everything keyed by names restarts with the trace.
        ctx.scopes.clear()
        ctx.node_names.clear()
        ctx.dts.clear()
        ctx.seeds.clear()
        for slot, tensor in zip(slots, args[n_inputs:], strict=True):
            slot.tensor_in, slot.tensor_out = tensor, None
        outputs = trace_model(model, ctx, list(args[:n_inputs]))
        flat = tf.nest.flatten(outputs)
        traced["n_outputs"] = len(flat)
        for slot in slots:
            if slot.tensor_out is None:
                raise ExportError(
                    f"layer {slot.layer.name!r} has a state input but its handler produced no state output"
                )
            flat.append(slot.tensor_out)
        # Identity so that an output that is also an input (or repeated) is a tensor of its own.
        return [tf.identity(t) for t in flat]

    function = tf.function(traced_model, input_signature=specs, autograph=False)
    concrete = function.get_concrete_function()

    spiking_nodes: Dict[str, SpikingNode] = {}  # tf2onnx node name -> our node

    def convert_marker(g: Any, node: Any, name: str, args: Any) -> Any:
        token = node.get_attr_value("token")
        token = token.decode() if isinstance(token, bytes) else token
        spec = ctx.markers.get(token)
        if spec is None:
            return None  # a numpy_function of the user's: reported below as unsupported
        for attr in list(node.attr):
            del node.attr[attr]
        node.type = spec.op_type
        node.domain = DOMAIN
        spiking_nodes[node.name] = spec
        for key, value in spec.attrs.items():
            node.set_attr(key, value)
        return node

    handlers = {op: (convert_marker, []) for op in _MARKER_OP_TYPES}
    _quiet_tf2onnx()
    onnx_model, _ = tf2onnx.convert.from_function(
        function,
        input_signature=specs,
        opset=opset,
        custom_op_handlers=handlers,
        extra_opset=[helper.make_opsetid(DOMAIN, OPSET_VERSION)],
    )
    # First of the checks, before probing: a layer tf2onnx cannot convert is the clearest error.
    passes.raise_on_unsupported(onnx_model, ctx.scopes)

    input_names = _model_input_names(model) + [s.input_name for s in slots]
    n_outputs = traced["n_outputs"]
    output_names = _model_output_names(model, n_outputs) + [s.output_name for s in slots]
    axes = _probe_axes(model, concrete, specs, n_inputs, n_outputs, input_names, output_names)
    return Converted(
        model=onnx_model,
        ctx=ctx,
        slots=slots,
        spiking_nodes=spiking_nodes,
        input_names=input_names,
        output_names=output_names,
        axes=axes,
        output_shapes=[tuple(t.shape) for t in concrete.structured_outputs],
    )


def _quiet_tf2onnx() -> None:
    # tf2onnx logs every unsupported op at ERROR level; we report those ourselves.
    logging.getLogger("tf2onnx").setLevel(logging.CRITICAL)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("tf2onnx"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _probe_axes(
    model: Any,
    concrete: Any,
    specs: List[Any],
    n_inputs: int,
    n_outputs: int,
    input_names: List[str],
    output_names: List[str],
) -> Axes:
    """Find (batch axis, time axis) of every graph input and output.

    Inputs: axis 0 is the batch and axis 1 the time of sequences, swapped when
    the model's spiking layers are all time-major. Outputs: the traced function
    is run once with distinct sizes for the dynamic input axes, and each
    dynamic output axis is matched to the input axis of the same size.
    """
    kinds = [layer for layer in all_layers(model) if spiking_kind(layer) is not None]
    time_major = bool(kinds) and all(getattr(layer, "time_major", False) for layer in kinds)
    # Two sizes unlikely to appear by accident; batch and time differ.
    batch_size, time_size = 2, 11
    axes: Axes = {}
    feeds = []
    for i, spec in enumerate(specs):
        shape = list(spec.shape)
        if i < n_inputs:
            rank = len(shape)
            if rank >= 3:
                b, t = (1, 0) if time_major else (0, 1)
            else:
                b, t = 0, None
            t = t if (t is not None and shape[t] is None) else None
            axes[input_names[i]] = (b, t)
            dims = []
            for a, d in enumerate(shape):
                if a == b:
                    dims.append(batch_size)
                elif a == t:
                    dims.append(time_size)
                else:
                    dims.append(d if d is not None else 1)
        else:
            axes[input_names[i]] = (0, None)
            dims = [batch_size] + [d if d is not None else 1 for d in shape[1:]]
        feeds.append(tf.zeros(dims, spec.dtype))
    try:
        results = concrete(*feeds)
    except Exception as err:  # noqa: BLE001
        if any(t is not None for _, t in axes.values()):
            # The model does not run with another number of timesteps (e.g. a
            # Flatten over time): convert() retries with the declared time length.
            raise _DynamicTimeUnsupported(str(err)) from err
        log.info("axis probe failed (%s); guessing output axes from ranks", err)
        results = None
    static_outputs = concrete.structured_outputs
    for j, name in enumerate(output_names):
        static = list(static_outputs[j].shape)
        if j >= n_outputs:  # states: always batch-first
            axes[name] = (0, None)
            continue
        batch = time = None
        if results is not None:
            actual = list(results[j].shape)
            for a, d in enumerate(static):
                if d is None and actual[a] == batch_size and batch is None:
                    batch = a
                elif d is None and actual[a] == time_size and time is None:
                    time = a
        else:
            dyn = [a for a, d in enumerate(static) if d is None]
            batch = dyn[0] if dyn else None
        axes[name] = (batch, time)
    return axes
