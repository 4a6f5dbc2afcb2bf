"""Keras model -> ONNX: re-trace the model layer by layer, convert with tf2onnx.

How it works:

1. The Keras model's functional graph is walked in topological order inside a
   ``tf.function``; every layer is traced by its export handler (see
   :mod:`spikeonnx.exporter.handlers`), each in a name scope of its own so that
   the ONNX nodes can be attributed to Keras layers afterwards.
2. Spiking layers are traced as *marker* ops: a ``tf.numpy_function`` whose
   token (an attribute TensorFlow assigns and we read back while tracing)
   identifies the layer. The marker's inputs are exactly the inputs of the
   ``spikeonnx`` node (tau and initial level as constants, so they become
   initializers) and it carries the right static output shapes.
3. tf2onnx converts the traced function; a custom op handler rewrites each
   marker into one ``spikeonnx`` node with the layer's attributes.
4. The ONNX graph is post-processed: inputs and outputs renamed, symbolic
   batch/time dimensions named, IR version lowered for onnxruntime, metadata
   added, and the result checked with :func:`onnx.checker.check_model`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx

from .handlers import ExportError, find_handler
from . import metadata as md

__all__ = ["export", "ExportContext", "ExportError", "MAX_IR_VERSION"]

#: onnxruntime 1.31 reads IR versions up to 13; 10 is what onnx 1.16-1.17 wrote.
MAX_IR_VERSION = 10
_OP_DOMAIN = "spikeonnx"
_OP_VERSION = 1
# Name-scope prefix of every traced layer; ONNX node names inherit it.
_SCOPE_PREFIX = "sxl"
_SCOPE_RE = re.compile(rf"(?:^|/){_SCOPE_PREFIX}(\d+)(?:_\d+)?/")
# TensorFlow op types a numpy_function can become.
_MARKER_OP_TYPES = ("PyFunc", "PyFuncStateless", "EagerPyFunc")

log = logging.getLogger(__name__)


class _DynamicTimeUnsupported(Exception):
    """The traced model fails with a time length other than the declared one."""


@dataclass
class _MarkerSpec:
    """What a marker op becomes: one node of the ``spikeonnx`` domain."""

    op_type: str
    node_name: str
    layer_name: str
    attrs: Dict[str, Any]
    num_inputs: int
    num_outputs: int
    output_shapes: List[Tuple[Optional[int], ...]] = field(default_factory=list)


@dataclass
class _StateSlot:
    """A state input/output pair of one spiking layer (``state_io`` or stateful)."""

    layer: Any
    kind: str  # "SpikingActivation" | "Lowpass" | "Alpha"
    shape: Tuple[Optional[int], ...]  # (None, *S) or (None, 2, *S)
    initial: Dict[str, Any]
    tensor_in: Any = None
    tensor_out: Any = None

    @property
    def input_name(self) -> str:
        return f"{self.layer.name}/state_in"

    @property
    def output_name(self) -> str:
        return f"{self.layer.name}/state_out"


@dataclass
class ExportContext:
    """State of one export, handed to every export handler.

    Handlers use :meth:`call_layer` to trace a layer through its own handler (or
    as-is), :meth:`call_default` to call a layer in inference mode,
    :meth:`spiking_op` to emit a ``spikeonnx`` node, and :meth:`state_input` /
    :meth:`set_state_output` for streaming state.

    Attributes
    ----------
    state_io : bool
        Whether every spiking layer gets state inputs/outputs.
    default_seed : int
        Seed recorded for spiking layers without one of their own.
    """

    state_io: bool = False
    default_seed: int = 0
    markers: Dict[str, _MarkerSpec] = field(default_factory=dict)
    states: Dict[int, _StateSlot] = field(default_factory=dict)  # id(layer) -> slot
    dts: Dict[str, float] = field(default_factory=dict)
    seeds: Dict[str, int] = field(default_factory=dict)
    scopes: Dict[int, Any] = field(default_factory=dict)  # scope index -> Keras layer
    node_names: set = field(default_factory=set)
    # layers being traced, outermost first: a spiking layer inside a nested model is
    # attributed to the nested model, the layer of the exported model it belongs to
    active: List[Any] = field(default_factory=list)

    # -- tracing layers ------------------------------------------------------

    def call_layer(self, layer: Any, *args: Any, **kwargs: Any) -> Any:
        """Trace ``layer`` on ``args`` through its export handler, in a scope of its own."""
        import tensorflow as tf

        index = len(self.scopes)
        self.scopes[index] = layer
        self.active.append(layer)
        try:
            with tf.name_scope(f"{_SCOPE_PREFIX}{index}"):
                return self.call_unscoped(layer, *args, **kwargs)
        finally:
            self.active.pop()

    def call_unscoped(self, layer: Any, *args: Any, **kwargs: Any) -> Any:
        """Trace ``layer`` through its export handler without opening a scope."""
        handler = find_handler(layer)
        if handler is None:
            return self.call_default(layer, *args, **kwargs)
        return handler(layer, self, *args, **kwargs)

    def call_default(self, layer: Any, *args: Any, **kwargs: Any) -> Any:
        """Call ``layer`` (or a Keras operation) as it is, in inference mode."""
        import keras

        if isinstance(layer, keras.layers.Layer):
            kwargs["training"] = False
        return layer(*args, **kwargs)

    # -- spiking nodes ---------------------------------------------------------

    def unique_node_name(self, name: str) -> str:
        """Return ``name``, suffixed if needed so that node names stay unique."""
        candidate, n = name, 1
        while candidate in self.node_names:
            n += 1
            candidate = f"{name}_{n}"
        self.node_names.add(candidate)
        return candidate

    def spiking_op(
        self,
        op_type: str,
        layer: Any,
        inputs: Sequence[Any],
        attrs: Dict[str, Any],
        output_shapes: Sequence[Sequence[Optional[int]]],
    ) -> List[Any]:
        """Emit a marker that becomes one ``spikeonnx`` node named after ``layer``.

        Parameters
        ----------
        op_type : str
            ``"SpikingActivation"``, ``"Lowpass"`` or ``"Alpha"``.
        layer : keras.layers.Layer
            The layer the node comes from (its name names the node).
        inputs : sequence of tf.Tensor
            The node inputs, in the order of the op contract (float32).
        attrs : dict
            Node attributes (``dt``, ``time_major``, ``seed``...).
        output_shapes : sequence of shapes
            Static shape of each output (``None`` for unknown dimensions); their
            number is the number of node outputs.

        Returns
        -------
        list of tf.Tensor
            One tensor per output, with the given static shapes.
        """
        import tensorflow as tf

        shapes = [tuple(s) for s in output_shapes]
        batch_axis = 1 if attrs.get("time_major") else 0

        def stand_in(*arrays: np.ndarray) -> List[np.ndarray]:
            # Only runs if the traced function is executed (shape probing); the
            # numbers are irrelevant there, the shapes must be right: output 0 is
            # shaped like the main input, the others are batch-first states whose
            # other dimensions are static.
            x = arrays[0]
            out = [np.zeros(x.shape, np.float32)]
            for shape in shapes[1:]:
                dims = [x.shape[batch_axis]] + [1 if d is None else int(d) for d in shape[1:]]
                out.append(np.zeros(dims, np.float32))
            return out

        tensors = [tf.convert_to_tensor(t, dtype=tf.float32) for t in inputs]
        outputs = tf.numpy_function(
            stand_in, tensors, [tf.float32] * len(shapes), stateful=False, name=f"spikeonnx_{op_type}"
        )
        for tensor, shape in zip(outputs, shapes):
            tensor.set_shape(shape)
        token = outputs[0].op.get_attr("token")
        token = token.decode() if isinstance(token, bytes) else str(token)
        node_name = self.unique_node_name(layer.name)
        self.markers[token] = _MarkerSpec(
            op_type=op_type,
            node_name=node_name,
            layer_name=_layer_name(self.active[0]) if self.active else layer.name,
            attrs=dict(attrs),
            num_inputs=len(tensors),
            num_outputs=len(shapes),
            output_shapes=shapes,
        )
        if "dt" in attrs:
            self.dts[node_name] = float(attrs["dt"])
        if "seed" in attrs and len(tensors) == 1:
            self.seeds[node_name] = int(attrs["seed"])
        return list(outputs)

    # -- state ----------------------------------------------------------------

    def state_input(self, layer: Any) -> Any:
        """Return the graph input carrying ``layer``'s state, or ``None`` if it has none."""
        slot = self.states.get(id(layer))
        return None if slot is None else slot.tensor_in

    def set_state_output(self, layer: Any, tensor: Any) -> None:
        """Declare ``tensor`` as ``layer``'s final state (graph output ``{name}/state_out``)."""
        slot = self.states.get(id(layer))
        if slot is None:
            raise ExportError(f"layer {layer.name!r} has no state input, so it cannot have a state output")
        if slot.tensor_out is not None:
            raise ExportError(
                f"layer {layer.name!r} is called more than once in the model; exporting its "
                "state (state_io=True or stateful=True) needs a single call"
            )
        slot.tensor_out = tensor


# ---------------------------------------------------------------------------
# Walking the Keras model
# ---------------------------------------------------------------------------


def _functional_of(model: Any) -> Any:
    """Return the Functional graph behind ``model`` (itself, or a Sequential's), or None."""
    import keras
    from keras.src.models.functional import Functional

    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        return functional
    if isinstance(model, Functional):
        return model
    return None


def trace_model(model: Any, ctx: ExportContext, inputs: List[Any]) -> Any:
    """Trace ``model`` on ``inputs`` layer by layer; returns its outputs (same structure).

    Functional models (and built Sequential models) are walked node by node so
    that every layer goes through its export handler; nested models are walked
    recursively by the handler of :class:`keras.Model`.
    """
    import keras

    functional = _functional_of(model)
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
    from .builtin import spiking_kind

    for layer in _all_layers(model):
        if spiking_kind(layer) is not None:
            raise ExportError(
                f"cannot export subclassed model {type(model).__name__!r}: it contains spiking layer "
                f"{layer.name!r} and only Functional and Sequential models can be walked layer by layer; "
                "rebuild it as a Functional model"
            )
    return ctx.call_default(model, inputs[0] if len(inputs) == 1 else inputs)


def _all_layers(model: Any) -> List[Any]:
    """Every layer of ``model``, recursively (nested models and wrappers included)."""
    from .builtin import spiking_kind

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


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def _input_specs(model: Any, dynamic_time: bool) -> List[Any]:
    """TensorSpecs of the model inputs with dynamic batch (and time) axes."""
    import tensorflow as tf

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


def _collect_state_slots(model: Any, state_io: bool, default_seed: int) -> List[_StateSlot]:
    from .builtin import spiking_kind, state_shape, initial_state_description

    slots = []
    for layer in _all_layers(model):
        kind = spiking_kind(layer)
        if kind is None:
            continue
        if state_io or getattr(layer, "stateful", False):
            slots.append(
                _StateSlot(
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


def _check_model_ready(model: Any) -> None:
    import keras

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


def export(
    model: Any,
    path: Optional[Union[str, Path]] = None,
    *,
    state_io: bool = False,
    opset: int = 17,
    default_seed: int = 0,
    dynamic_time: bool = True,
    check: bool = True,
) -> onnx.ModelProto:
    """Export a Keras model (with KerasSpiking layers) to ONNX.

    Standard layers are converted by tf2onnx; every spiking layer (and every
    spiking cell inside a ``keras.layers.RNN``) becomes one node of the
    ``spikeonnx`` domain.

    Parameters
    ----------
    model : keras.Model
        A built Functional or Sequential model.
    path : str or pathlib.Path, optional
        Where to save the ``.onnx`` file; nothing is written when omitted.
    state_io : bool
        Give every spiking layer a state input ``{layer}/state_in`` and output
        ``{layer}/state_out`` (for streaming). Stateful layers always get them.
    opset : int
        Version of the default ONNX domain, 13 to 21.
    default_seed : int
        Seed of the initial-voltage draw of SpikingActivation layers created
        without a seed (Keras draws a fresh voltage on every call there; the
        exported model needs a fixed one, recorded in the node and metadata).
    dynamic_time : bool
        Export the time axis of 3+-dimensional inputs as dynamic. If tracing
        with a dynamic time axis fails (e.g. a Flatten over time), the model's
        declared length is used instead.
    check : bool
        Run :func:`onnx.checker.check_model` (full check) on the result.

    Returns
    -------
    onnx.ModelProto
        The exported model (IR version <= 10, opset ``opset``).

    Raises
    ------
    ExportError
        If the model or one of its layers cannot be exported; the message names
        the layer and how to register an export handler for it.
    TypeError
        If ``model`` is not a Keras model.
    ValueError
        On an unsupported ``opset``.
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or not 13 <= opset <= 21:
        raise ValueError(f"opset must be an int from 13 to 21, got {opset!r}")
    if isinstance(default_seed, bool) or not isinstance(default_seed, (int, np.integer)):
        raise ValueError(f"default_seed must be an int, got {default_seed!r}")
    _check_model_ready(model)
    import tensorflow as tf  # noqa: F401  (heavy; imported only now)

    last_error: Optional[BaseException] = None
    for dynamic in ([True, False] if dynamic_time else [False]):
        try:
            onnx_model = _export_once(model, state_io, opset, int(default_seed), dynamic)
            break
        except ExportError:
            raise
        except Exception as err:  # tracing with a dynamic time axis can fail legitimately
            if not dynamic:
                raise ExportError(f"tracing model {model.name!r} for export failed: {err}") from err
            last_error = err
            log.info("export with dynamic time axis failed (%s); retrying with static time", err)
    else:  # pragma: no cover - loop always breaks or raises
        raise ExportError(f"export failed: {last_error}")

    if check:
        check_exported(onnx_model)
    if path is not None:
        path = Path(path)
        if path.parent and not path.parent.exists():
            raise FileNotFoundError(f"cannot save ONNX model: directory {path.parent} does not exist")
        onnx.save(onnx_model, str(path))
    return onnx_model


def check_exported(model: onnx.ModelProto) -> None:
    """Run the full ONNX checker with the ``spikeonnx`` schemas registered."""
    from ..schemas import register_schemas

    register_schemas()
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"the exported model does not pass the ONNX checker: {err}") from err


def _export_once(model: Any, state_io: bool, opset: int, default_seed: int, dynamic_time: bool) -> onnx.ModelProto:
    import tensorflow as tf
    import tf2onnx
    from onnx import helper

    ctx = ExportContext(state_io=state_io, default_seed=default_seed)
    slots = _collect_state_slots(model, state_io, default_seed)
    for slot in slots:
        ctx.states[id(slot.layer)] = slot
    specs = _input_specs(model, dynamic_time)
    n_inputs = len(specs)
    for i, slot in enumerate(slots):
        specs.append(tf.TensorSpec(slot.shape, tf.float32, name=f"spikeonnx_state_{i}"))

    traced: Dict[str, Any] = {}

    def traced_model(*args: Any) -> List[Any]:
        # Markers accumulate (tokens are unique per process) in case TensorFlow
        # retraces; everything keyed by names restarts with the trace.
        ctx.scopes.clear()
        ctx.node_names.clear()
        ctx.dts.clear()
        ctx.seeds.clear()
        for slot, tensor in zip(slots, args[n_inputs:]):
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

    renames: Dict[str, str] = {}  # tf2onnx node name -> our node name

    def convert_marker(g: Any, node: Any, name: str, args: Any) -> Any:
        token = node.get_attr_value("token")
        token = token.decode() if isinstance(token, bytes) else token
        spec = ctx.markers.get(token)
        if spec is None:
            return None  # a numpy_function of the user's: reported below as unsupported
        for attr in list(node.attr):
            del node.attr[attr]
        node.type = spec.op_type
        node.domain = _OP_DOMAIN
        renames[node.name] = spec.node_name
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
        extra_opset=[helper.make_opsetid(_OP_DOMAIN, _OP_VERSION)],
    )
    _raise_on_unsupported(onnx_model, ctx)
    by_name = {spec.node_name: spec for spec in ctx.markers.values()}
    for node in onnx_model.graph.node:
        if node.domain == _OP_DOMAIN and node.name in renames:
            node.name = renames[node.name]
            _declare_node_shapes(onnx_model.graph, node, by_name[node.name])

    input_names = _model_input_names(model) + [s.input_name for s in slots]
    n_outputs = traced["n_outputs"]
    output_names = _model_output_names(model, n_outputs) + [s.output_name for s in slots]
    _rename_io(onnx_model, input_names, output_names)

    axes = _probe_axes(model, concrete, specs, n_inputs, len(slots), n_outputs, input_names, output_names)
    _name_dynamic_dims(onnx_model, axes, [tuple(t.shape) for t in concrete.structured_outputs])
    _fix_opsets_and_ir(onnx_model)
    onnx_model.graph.name = model.name
    md.attach(
        onnx_model,
        batch_axes={k: v[0] for k, v in axes.items()},
        time_axes={k: v[1] for k, v in axes.items()},
        dts=ctx.dts,
        layers=_attribute_nodes(onnx_model, ctx),
        initial_state={s.input_name: s.initial for s in slots},
        seeds=ctx.seeds,
        state_io={s.input_name: s.output_name for s in slots},
    )
    return onnx_model


def _quiet_tf2onnx() -> None:
    # tf2onnx logs every unsupported op at ERROR level; we report those ourselves.
    logging.getLogger("tf2onnx").setLevel(logging.CRITICAL)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("tf2onnx"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _declare_node_shapes(graph: onnx.GraphProto, node: onnx.NodeProto, spec: _MarkerSpec) -> None:
    """Write the traced static shapes of a spiking node's main input and outputs into ``value_info``.

    The batch dimension is named ``batch`` (as on the graph inputs); the other
    unknown dimensions get names of their own, shared by the main input and the
    sequence output (same shape), so downstream shape inference (onnxruntime's and
    the analyzer's) knows which dimensions are equal. (It was first written to
    work around the op library reporting unnamed unknown dimensions as -1, which
    the library no longer does.)
    """
    batch_axis = 1 if spec.attrs.get("time_major") else 0
    infos = {v.name: v for v in graph.value_info}
    graph_inputs = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    # (tensor name, shape, is a state) for the main input and every output
    tensors = [(node.input[0], spec.output_shapes[0], False)]
    tensors += [(name, shape, i > 0) for i, (name, shape) in enumerate(zip(node.output, spec.output_shapes))]
    for name, shape, state_like in tensors:
        if not name or name in graph_inputs:
            continue
        info = infos.get(name)
        if info is None:
            info = graph.value_info.add()
            info.name = name
            infos[name] = info
        tensor_type = info.type.tensor_type
        tensor_type.elem_type = onnx.TensorProto.FLOAT
        tensor_type.ClearField("shape")
        for axis, d in enumerate(shape):
            dim = tensor_type.shape.dim.add()
            if d is not None:
                dim.dim_value = int(d)
            elif axis == (0 if state_like else batch_axis):
                dim.dim_param = "batch"
            else:
                dim.dim_param = f"{node.name}_{'state' if state_like else 'seq'}_dim{axis}"


def _layer_of_node(node_name: str, ctx: ExportContext) -> Optional[Any]:
    """The layer of the exported model an ONNX node comes from (its outermost export scope).

    Nodes traced inside a nested model belong to the nested model, the layer the
    model itself lists (as in ``keras_layers.ModelEnergy``'s rows).
    """
    match = _SCOPE_RE.search(node_name + "/")
    if match is None:
        return None
    return ctx.scopes.get(int(match.group(1)))


def _layer_name(layer: Any) -> str:
    return str(getattr(layer, "name", None) or type(layer).__name__)


def _raise_on_unsupported(model: onnx.ModelProto, ctx: ExportContext) -> None:
    """Fail with a clear message if tf2onnx left TensorFlow ops in the graph."""
    bad: Dict[int, Tuple[Any, List[str]]] = {}
    for node in _all_nodes(model.graph):
        if node.domain in ("", "ai.onnx"):
            try:
                onnx.defs.get_schema(node.op_type, 21, "")
                continue
            except onnx.defs.SchemaError:
                pass
        elif node.domain in (_OP_DOMAIN, "ai.onnx.ml", "com.microsoft"):
            continue
        layer = _layer_of_node(node.name, ctx)
        bad.setdefault(id(layer), (layer, []))[1].append(node.op_type)
    if not bad:
        return
    parts = []
    for layer, ops in bad.values():
        if layer is None:
            parts.append(f"TensorFlow ops tf2onnx cannot convert: {sorted(set(ops))}")
            continue
        cls = type(layer).__name__
        parts.append(
            f"layer {_layer_name(layer)!r} of class {cls} uses TensorFlow ops tf2onnx cannot "
            f"convert ({', '.join(sorted(set(ops)))}); register an export handler for it with "
            f"spikeonnx.register_export_handler({cls}, handler)"
        )
    raise ExportError("cannot export: " + "; ".join(parts))


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _all_nodes(sub)


def _rename_io(model: onnx.ModelProto, input_names: List[str], output_names: List[str]) -> None:
    """Give the graph inputs/outputs their final names (tf2onnx keeps TF tensor names)."""
    graph = model.graph
    if len(graph.input) != len(input_names) or len(graph.output) != len(output_names):
        raise ExportError(
            f"internal: tf2onnx produced {len(graph.input)} inputs / {len(graph.output)} outputs, "
            f"expected {len(input_names)} / {len(output_names)}"
        )
    mapping = {}
    for value, new in zip(list(graph.input) + list(graph.output), input_names + output_names):
        if value.name != new:
            mapping[value.name] = new
    if not mapping:
        return
    taken = {n for node in _all_nodes(graph) for n in list(node.input) + list(node.output)}
    clash = (set(mapping.values()) & taken) - set(mapping)
    if clash:
        raise ExportError(f"internal: graph tensor names {sorted(clash)} clash with input/output names")

    def rename_graph(g: onnx.GraphProto) -> None:
        for node in g.node:
            node.input[:] = [mapping.get(n, n) for n in node.input]
            node.output[:] = [mapping.get(n, n) for n in node.output]
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    rename_graph(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for sub in attr.graphs:
                        rename_graph(sub)
        for value in list(g.input) + list(g.output) + list(g.value_info):
            value.name = mapping.get(value.name, value.name)

    rename_graph(graph)


def _probe_axes(
    model: Any,
    concrete: Any,
    specs: List[Any],
    n_inputs: int,
    n_states: int,
    n_outputs: int,
    input_names: List[str],
    output_names: List[str],
) -> Dict[str, Tuple[Optional[int], Optional[int]]]:
    """Find (batch axis, time axis) of every graph input and output.

    Inputs: axis 0 is the batch and axis 1 the time of sequences, swapped when
    the model's spiking layers are all time-major. Outputs: the traced function
    is run once with distinct sizes for the dynamic input axes, and each
    dynamic output axis is matched to the input axis of the same size.
    """
    import tensorflow as tf
    from .builtin import spiking_kind

    kinds = [l for l in _all_layers(model) if spiking_kind(l) is not None]
    time_major = bool(kinds) and all(getattr(l, "time_major", False) for l in kinds)
    # Two sizes unlikely to appear by accident; batch and time differ.
    batch_size, time_size = 2, 11
    role_size = {"batch": batch_size, "time": time_size}
    axes: Dict[str, Tuple[Optional[int], Optional[int]]] = {}
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
            # Flatten over time): export() retries with the declared time length.
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
                if d is None and actual[a] == role_size["batch"] and batch is None:
                    batch = a
                elif d is None and actual[a] == role_size["time"] and time is None:
                    time = a
        else:
            dyn = [a for a, d in enumerate(static) if d is None]
            batch = dyn[0] if dyn else None
        axes[name] = (batch, time)
    return axes


def _name_dynamic_dims(
    model: onnx.ModelProto,
    axes: Dict[str, Tuple[Optional[int], Optional[int]]],
    output_shapes: List[Tuple[Optional[int], ...]],
) -> None:
    """Give graph outputs their static shapes; name batch/time dimensions ``batch`` and ``time``."""
    for value, shape in zip(model.graph.output, output_shapes):
        tensor_type = value.type.tensor_type
        # The traced static shape is at least as precise as tf2onnx's (which may hold -1s).
        tensor_type.ClearField("shape")
        for axis, d in enumerate(shape):
            dim = tensor_type.shape.dim.add()
            if d is None:
                dim.dim_param = f"{value.name}_dim{axis}"
            else:
                dim.dim_value = int(d)
    for value in list(model.graph.input) + list(model.graph.output):
        batch, time = axes.get(value.name, (None, None))
        if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
            continue
        dims = value.type.tensor_type.shape.dim
        for axis, label in ((batch, "batch"), (time, "time")):
            if axis is not None and axis < len(dims) and not dims[axis].HasField("dim_value"):
                dims[axis].dim_param = label


def _fix_opsets_and_ir(model: onnx.ModelProto) -> None:
    uses_ours = any(n.domain == _OP_DOMAIN for n in _all_nodes(model.graph))
    keep = [o for o in model.opset_import if uses_ours or o.domain != _OP_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)


def _attribute_nodes(model: onnx.ModelProto, ctx: ExportContext) -> Dict[str, str]:
    """ONNX node name -> Keras layer name, for every node we can attribute."""
    layers = {}
    spiking = {spec.node_name: spec.layer_name for spec in ctx.markers.values()}
    for node in model.graph.node:
        if not node.name:
            continue
        if node.name in spiking and node.domain == _OP_DOMAIN:
            layers[node.name] = spiking[node.name]
            continue
        layer = _layer_of_node(node.name, ctx)
        if layer is not None:
            layers[node.name] = _layer_name(layer)
    return layers
