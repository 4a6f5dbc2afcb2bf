"""The analyzer as explicit passes over a networkx graph of an ONNX model.

Each pass is a function that reads what the earlier passes stored and stores its
own results on the graph (the networkx habit: graph-level facts in ``G.graph``,
per-node facts as node attributes). In pipeline order:

1. :func:`load` reads the model (without the data of its big weights, see
   :mod:`.source`) and builds a :class:`networkx.MultiDiGraph`: one node per ONNX
   node (label -> ``proto``, ``op_type``, ``domain``, ``index``), one edge per tensor
   between two nodes (keyed by the tensor name); ``G.graph`` gets the ``model``, its
   ``source``, ``label``, ``metadata``, ``inputs``/``outputs``, ``state_inputs``,
   ``parameter_inputs``, ``batch_axes``/``time_axes``, ``time_fallback``,
   ``initializers``, ``constant_nodes``, ``producer``, ``consumers`` and a
   topological ``order``.
2. :func:`infer_shapes` computes the shapes of one sample of one timestep (dynamic
   batch/time axes of the graph inputs get size 1): ONNX shape inference on a light
   copy of the model, constant shape arithmetic folded, then the file's
   ``value_info``, onnxruntime's symbolic shape inference and a run on example data
   for what is still open. ``G.graph["tensors"]`` (name -> :class:`~.stats.TensorInfo`),
   ``G.graph["shape_sources"]`` and node attributes ``inputs``/``outputs``.
3. :func:`propagate_axes` carries the graph inputs' batch and time axes through
   every op (the rule of its spec, :mod:`.axes`): ``G.graph["marks"]`` (tensor ->
   ``(batch, time)`` marks), and the :data:`~.stats.BATCH`/:data:`~.stats.TIME`
   marks written into the shapes where they are axes of their own.
4. :func:`count_nodes` counts each node with its op's spec (:mod:`.stats`): node
   attributes ``stats``, ``role`` (effective: ``"weighted"`` if it counted
   connections, ``"activation"`` if neurons, else the spec's role) and ``absorbed``
   (a rate function of a SpikingActivation); ``G.graph["unknown_ops"]``.
5. :func:`group_layers` groups nodes into layers, by the Keras layer names in the
   metadata when present, otherwise structurally: node attribute ``layer`` and
   ``G.graph["layers"]`` (a list of :class:`Layer`, inputs first, then in
   topological order).
6. :func:`spikeonnx.analysis.rates.compute_rates` runs the model on example data:
   ``G.graph["rates"]`` (layer name -> mean input magnitude).

A new pass is one more function of this kind.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

import networkx as nx
import numpy as np
import onnx
from onnx import numpy_helper

from .. import contract
from ..energy import sum_stats
from .axes import AxisMark, broadcast_axes
from .source import ExternalDataError, ModelSource, read_model
from .stats import (
    BATCH,
    TIME,
    OpNode,
    ShapeResolutionError,
    TensorInfo,
    format_shape,
    get_op_stats,
    normalize_domain,
    op_key,
    op_spec,
)

__all__ = [
    "ModelLike",
    "AxisSpec",
    "Layer",
    "load",
    "infer_shapes",
    "count_nodes",
    "group_layers",
    "constant",
    "is_constant",
    "op_node",
]

ModelLike = Union[onnx.ModelProto, str, os.PathLike, bytes]
AxisSpec = Union[None, int, Mapping[str, Optional[int]]]

# Float initializers with more elements than this are handed to shape inference as
# typed graph inputs, without their data (inference only needs their shapes).
_INLINE_FLOAT_LIMIT = 64
_INLINE_OTHER_LIMIT = 1 << 16
_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


@dataclass
class Layer:
    """One layer: a group of ONNX nodes counted together.

    Attributes
    ----------
    name : str
        Layer name (the Keras layer name from the metadata, or the main node's name).
    kind : str
        What the layer is: the op type of its main node, or ``"Input"``.
    nodes : list of str
        Labels of the ONNX nodes in the layer, in topological order.
    connections, neurons : int
        Per sample and timestep.
    spiking : bool
        Whether every counted op can run as-is on a spiking device.
    inputs : list of str
        Float tensors entering the layer from outside (their mean magnitude is the
        layer's input rate).
    output : str or None
        The tensor shown as the layer's output.
    output_shape : tuple or None
        Inferred shape of ``output``.
    params : int
        Number of weights (float constants of rank >= 1) the layer's nodes read.
    """

    name: str
    kind: str
    nodes: List[str] = field(default_factory=list)
    connections: int = 0
    neurons: int = 0
    spiking: bool = True
    inputs: List[str] = field(default_factory=list)
    output: Optional[str] = None
    output_shape: Optional[Tuple[Any, ...]] = None
    params: int = 0

    @property
    def stats(self) -> Dict[str, Any]:
        """``{"connections", "neurons", "spiking"}`` as ``ModelEnergy`` reports them."""
        return {"connections": self.connections, "neurons": self.neurons, "spiking": self.spiking}

    @property
    def output_shape_str(self) -> str:
        """The output shape formatted like Keras (``None`` for batch/time)."""
        return format_shape(self.output_shape)


# ----------------------------------------------------------------------------------
# 1. load
# ----------------------------------------------------------------------------------
def _read(model: ModelLike) -> Tuple[onnx.ModelProto, str, ModelSource]:
    """The model without the data of its big weights, its label and where the
    weights are (:func:`.source.read_model`)."""
    if isinstance(model, onnx.ModelProto):
        label = f"<model {model.graph.name or 'unnamed'}>"
    elif isinstance(model, (bytes, bytearray)):
        label = "<model bytes>"
    elif isinstance(model, (str, os.PathLike)):
        label = os.fspath(model)
        if os.path.isdir(label):
            raise IsADirectoryError(f"{label} is a directory, not an ONNX model file")
    else:
        raise TypeError(f"model must be an onnx.ModelProto, a path or bytes, got {type(model).__name__}")
    try:
        proto, source = read_model(model)
    except ExternalDataError:
        raise
    except ValueError as err:
        raise ValueError(f"{label}: not a valid ONNX model, the file may be truncated or corrupt ({err})") from None
    # a truncated protobuf can still parse; an empty graph is the usual symptom
    if len(proto.graph.node) == 0 and len(proto.graph.output) == 0:
        raise ValueError(f"{label}: not a valid ONNX model (no graph; truncated or empty file?)")
    return proto, label, source


def _dims(type_proto: onnx.TypeProto) -> Optional[Tuple[Any, ...]]:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    out: List[Any] = []
    for d in type_proto.tensor_type.shape.dim:
        kind = d.WhichOneof("value")
        if kind == "dim_value":
            out.append(d.dim_value)
        elif kind == "dim_param" and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def _elem_type(type_proto: onnx.TypeProto) -> int:
    return type_proto.tensor_type.elem_type if type_proto.HasField("tensor_type") else 0


def value_info(value: onnx.ValueInfoProto) -> TensorInfo:
    """The :class:`TensorInfo` a ``ValueInfoProto`` declares."""
    return TensorInfo(value.name, _dims(value.type), _elem_type(value.type))


def load(model: ModelLike, *, batch_axis: AxisSpec = 0, time_axis: AxisSpec = None) -> nx.MultiDiGraph:
    """Pass 1: read the model and build its networkx graph (see the module docstring).

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        The model (a proto is copied, never modified).
    batch_axis, time_axis : int, dict or None
        Batch/time axis of the graph inputs (one int for all, or input name -> axis;
        None for none). Axes in the exporter's metadata take precedence.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, TypeError, ValueError
        For a missing path, a folder, a wrong type, an invalid or truncated model,
        malformed metadata, undefined or twice-defined tensors, or a cycle.
    """
    proto, label, source = _read(model)
    metadata = contract.read_metadata(proto, label)
    onnx_graph = proto.graph
    initializers = {t.name: t for t in onnx_graph.initializer}
    inputs = [v.name for v in onnx_graph.input if v.name not in initializers]
    G = nx.MultiDiGraph(
        model=proto, source=source, label=label, metadata=metadata, initializers=initializers, inputs=inputs,
        outputs=[v.name for v in onnx_graph.output],
        # state inputs of an exported model: optional in example data, not layers
        state_inputs=[n for n in inputs if n in metadata.state_io or n in metadata.initial_state],
    )
    _add_nodes(G)
    _add_edges(G)
    declared = {v.name: v for v in onnx_graph.input if v.name not in initializers}
    G.graph["batch_axes"] = _axes(G, declared, batch_axis, metadata.batch_axes, contract.KEY_BATCH_AXES, "batch_axis")
    G.graph["time_axes"] = _axes(G, declared, time_axis, metadata.time_axes, contract.KEY_TIME_AXES, "time_axis")
    G.graph["time_fallback"] = not any(v is not None for v in G.graph["time_axes"].values())
    # graph inputs without a batch axis next to inputs with one are weights fed
    # from outside: parameters, not input activity
    has_batch = any(v is not None for v in G.graph["batch_axes"].values())
    G.graph["parameter_inputs"] = {
        n for n, axis in G.graph["batch_axes"].items()
        if has_batch and axis is None and n not in G.graph["state_inputs"]
    }
    G.graph["constant_cache"] = {}
    return G


def _add_nodes(G: nx.MultiDiGraph) -> None:
    # ONNX node names may be empty or repeated; labels are unique.
    seen: Set[str] = set()
    for i, node in enumerate(G.graph["model"].graph.node):
        base = node.name or f"{node.op_type}_{i}"
        label, k = base, 1
        while label in seen:
            label = f"{base}_{k}"
            k += 1
        seen.add(label)
        G.add_node(label, proto=node, op_type=node.op_type, domain=normalize_domain(node.domain), index=i)


def _add_edges(G: nx.MultiDiGraph) -> None:
    label_of = G.graph["label"]
    initializers, inputs = G.graph["initializers"], set(G.graph["inputs"])
    producer: Dict[str, str] = {}
    constant_nodes: Dict[str, onnx.NodeProto] = {}
    for label, data in G.nodes(data=True):
        for out in data["proto"].output:
            if not out:
                continue
            if out in producer or out in initializers or out in inputs:
                raise ValueError(f"{label_of}: tensor {out!r} is defined more than once")
            producer[out] = label
            if data["op_type"] == "Constant" and data["domain"] == "":
                constant_nodes[out] = data["proto"]
    consumers: Dict[str, List[str]] = {}
    known = set(producer) | set(initializers) | inputs
    in_order = True  # the file's order is topological in any valid model; check it on the way
    for label, data in list(G.nodes(data=True)):
        for name in data["proto"].input:
            if not name:
                continue
            if name not in known:
                raise ValueError(
                    f"{label_of}: node {label!r} ({data['op_type']}) reads tensor {name!r}, which no node, "
                    "initializer or graph input defines (truncated or inconsistent model?)"
                )
            consumers.setdefault(name, []).append(label)
            src = producer.get(name)
            if src is not None:
                G.add_edge(src, label, key=name)
                in_order = in_order and G.nodes[src]["index"] < data["index"]
    for name in G.graph["outputs"]:
        if name not in known:
            raise ValueError(f"{label_of}: graph output {name!r} is not produced by any node")
    G.graph.update(producer=producer, consumers=consumers, constant_nodes=constant_nodes)
    if in_order:
        G.graph["order"] = list(G.nodes)
        return
    if not nx.is_directed_acyclic_graph(G):
        cycle = nx.find_cycle(G)
        path = " -> ".join([e[0] for e in cycle] + [cycle[0][0]])
        raise ValueError(f"{label_of}: the graph has a cycle: {path}")
    # a topological order, as close to the file's order as possible
    G.graph["order"] = list(nx.lexicographical_topological_sort(G, key=lambda n: G.nodes[n]["index"]))


def _axes(
    G: nx.MultiDiGraph, declared: Mapping[str, onnx.ValueInfoProto], spec: AxisSpec,
    from_metadata: Mapping[str, Optional[int]], key: str, what: str,
) -> Dict[str, Optional[int]]:
    """Graph input -> axis (normalized to >= 0): ``spec``, overridden by the metadata."""
    if isinstance(spec, Mapping):
        for name in spec:
            if name not in declared:
                raise ValueError(f"{what}: {name!r} is not a graph input of {G.graph['label']}")
        result = {name: spec.get(name) for name in G.graph["inputs"]}
    elif spec is None or isinstance(spec, (int, np.integer)):
        # One axis for every input: a rank-0 input (an If condition, a scalar) has no
        # batch or time axis, rather than an axis out of range.
        result = {
            name: (None if spec is None or _dims(declared[name].type) == () else int(spec))
            for name in G.graph["inputs"]
        }
    else:
        raise TypeError(f"{what} must be an int, a dict or None, got {type(spec).__name__}")

    def check(values: Dict[str, Optional[int]], source: str) -> Dict[str, Optional[int]]:
        for name, axis in values.items():
            shape = _dims(declared[name].type) if axis is not None else None
            if shape is None:
                continue  # no axis, or unknown rank: nothing to mark
            rank = len(shape)
            if not -rank <= axis < rank:
                raise ValueError(f"{source}={axis} is out of range for graph input {name!r} of rank {rank}")
            values[name] = axis % rank
        return values

    result = check(result, what)
    override = {name: axis for name, axis in from_metadata.items() if name in declared}
    result.update(check(override, f"metadata {key!r}: axis"))
    return result


# ----------------------------------------------------------------------------------
# 2. shapes
# ----------------------------------------------------------------------------------
class _TensorTable(Mapping):
    """Tensor name -> :class:`TensorInfo`, read from the inferred graph on first use
    (most weights are never looked at, and reading protobuf shapes is not free)."""

    def __init__(self, graph: onnx.GraphProto, initializers: Mapping[str, onnx.TensorProto]) -> None:
        self._values: Dict[str, Any] = {}
        for values in (graph.input, graph.output, graph.value_info):
            for value in values:
                # a later entry replaces an earlier one only if it knows more
                if value.name not in self._values or value.type.tensor_type.HasField("shape"):
                    self._values[value.name] = value
        self._values.update(initializers)
        self._cache: Dict[str, TensorInfo] = {}

    def override(self, infos: Mapping[str, TensorInfo]) -> None:
        """Replace what inference said of some tensors (by shapes from elsewhere)."""
        for name, info in infos.items():
            self._values.setdefault(name, None)
            self._cache[name] = info

    def __getitem__(self, name: str) -> TensorInfo:
        info = self._cache.get(name)
        if info is None:
            value = self._values[name]
            if isinstance(value, onnx.TensorProto):
                info = TensorInfo(name, tuple(value.dims), value.data_type)
            else:
                info = value_info(value)
            self._cache[name] = info
        return info

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _uninferable(G: nx.MultiDiGraph, tensor: str) -> bool:
    """Whether ``tensor`` comes from an op ONNX has no schema for."""
    label = G.graph["producer"].get(tensor)
    return label is not None and not onnx.defs.has(G.nodes[label]["op_type"], G.nodes[label]["proto"].domain)


def input_axes(G: nx.MultiDiGraph) -> Dict[str, Tuple[Optional[int], Optional[int]]]:
    """Graph input -> its ``(batch, time)`` axes: as declared, and with no time axis
    declared anywhere, an unknown size right after the batch axis is time (the Keras
    convention, :func:`spikeonnx.energy.counted_axes`)."""
    declared = {v.name: v for v in G.graph["model"].graph.input}
    out: Dict[str, Tuple[Optional[int], Optional[int]]] = {}
    for name in G.graph["inputs"]:
        batch, time = G.graph["batch_axes"].get(name), G.graph["time_axes"].get(name)
        shape = _dims(declared[name].type) if name in declared else None
        if time is None and G.graph["time_fallback"] and shape is not None:
            after = 0 if batch is None else batch + 1
            if after < len(shape) and not isinstance(shape[after], int):
                time = after
        out[name] = (batch, time)
    return out


def _light_model(G: nx.MultiDiGraph, concrete: bool) -> Tuple[onnx.ModelProto, Dict[str, int]]:
    """A copy of the model fit for shape inference: no big weights; with ``concrete``,
    the batch and time axes of the graph inputs that have no static size get size 1.

    Counts are per sample and timestep, so one sample of one timestep is all the
    shapes need; with it every reshape around the batch resolves statically. Returns
    the model and the symbolic dimension names replaced (name -> size).
    """
    src = G.graph["model"]
    light = onnx.ModelProto()
    light.ir_version = src.ir_version
    light.opset_import.extend(src.opset_import)
    g = light.graph
    g.name = src.graph.name
    g.node.extend(G.nodes[label]["proto"] for label in G.graph["order"])
    for init in src.graph.initializer:
        numel = int(np.prod(init.dims)) if len(init.dims) else 1
        limit = _INLINE_FLOAT_LIMIT if init.data_type in _FLOAT_TYPES else _INLINE_OTHER_LIMIT
        if numel <= limit and not init.external_data:
            g.initializer.append(init)
        else:
            g.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    axes = input_axes(G)
    symbols: Dict[str, int] = {}
    if concrete:
        for value in src.graph.input:
            if value.name in axes and value.type.HasField("tensor_type"):
                dims = value.type.tensor_type.shape.dim
                for axis in axes[value.name]:
                    if axis is not None and axis < len(dims) and not dims[axis].HasField("dim_value"):
                        if dims[axis].dim_param:
                            symbols[dims[axis].dim_param] = 1
    for value in src.graph.input:
        if value.name in G.graph["initializers"]:
            continue
        vi = g.input.add()
        vi.CopyFrom(value)
        if not concrete or not vi.type.HasField("tensor_type"):
            continue
        dims = vi.type.tensor_type.shape.dim
        for axis, d in enumerate(dims):
            if (d.HasField("dim_param") and d.dim_param in symbols) or (
                axis in axes.get(value.name, ()) and not d.HasField("dim_value")
            ):
                d.Clear()
                d.dim_value = 1
    for value in src.graph.output:
        vo = g.output.add()
        if _uninferable(G, value.name):
            vo.CopyFrom(value)  # the declared type is all we will know
            continue
        # declared output shapes may carry the batch size we replaced
        vo.name = value.name
        if value.type.HasField("tensor_type"):
            vo.type.tensor_type.elem_type = value.type.tensor_type.elem_type
    # keep declared types of tensors no schema can infer (unknown custom ops)
    for v in src.graph.value_info:
        if _uninferable(G, v.name):
            g.value_info.append(_substituted(v, symbols))
    return light, symbols


def _substituted(value: onnx.ValueInfoProto, symbols: Mapping[str, int]) -> onnx.ValueInfoProto:
    """``value`` with the symbolic sizes of ``symbols`` replaced by their sizes, and
    size expressions (``"2*batch"``, as the dynamo exporter writes) evaluated."""
    out = onnx.ValueInfoProto()
    out.CopyFrom(value)
    if not out.type.HasField("tensor_type"):
        return out
    for d in out.type.tensor_type.shape.dim:
        if d.HasField("dim_param"):
            size = _evaluate(d.dim_param, symbols)
            if size is not None:
                d.Clear()
                d.dim_value = size
    return out


def _evaluate(expression: str, symbols: Mapping[str, int]) -> Optional[int]:
    """The value of a size expression over ``symbols`` (+, -, *, //, integers), or None."""
    import ast

    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        return None

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in symbols:
            return symbols[node.id]
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv)):
            a, b = value(node.left), value(node.right)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            return a // b
        raise ValueError(expression)

    try:
        result = value(tree)
    except (ValueError, ZeroDivisionError):
        return None
    return result if result > 0 else None


_SHAPE_TYPES = (onnx.TensorProto.INT64, onnx.TensorProto.BOOL, onnx.TensorProto.STRING)


def _table(G: nx.MultiDiGraph, inferred: onnx.ModelProto) -> "_TensorTable":
    """The tensor table of an inferred light model (whose initializers include the
    values constant folding computed)."""
    initializers = {t.name: t for t in inferred.graph.initializer}
    initializers.update(G.graph["initializers"])
    return _TensorTable(inferred.graph, initializers)


def _unresolved(G: nx.MultiDiGraph, tensors: Mapping[str, TensorInfo]) -> List[str]:
    """Node outputs holding data (not shape arithmetic) whose shape is not fully static."""
    out = []
    for label in G.graph["order"]:
        for name in G.nodes[label]["proto"].output:
            if not name:
                continue
            info = tensors[name] if name in tensors else None
            if info is not None and info.elem_type in _SHAPE_TYPES:
                continue
            if info is None or info.shape is None or not all(isinstance(d, int) for d in info.shape):
                out.append(name)
    return out


def _onnx_inference(G: nx.MultiDiGraph, light: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(light, check_type=False, strict_mode=False, data_prop=True)


def _ort_inference(light: onnx.ModelProto) -> Optional[onnx.ModelProto]:
    """onnxruntime's symbolic shape inference (it evaluates shape arithmetic that
    ONNX's data propagation leaves open), or None if it fails.

    Its steps are driven here rather than through ``SymbolicShapeInference.infer_shapes``,
    which writes ``sym_shape_infer_temp.onnx`` into the working directory whenever it
    cannot resolve every shape; a partial result is still useful to this pass.
    """
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        engine = SymbolicShapeInference(2**31 - 1, True, False, 0)  # int_max, auto_merge, guess_rank, verbose
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            engine._preprocess(light)
            while engine.run_:
                engine._infer_impl()
            engine._update_output_from_vi()
        return engine.out_mp_
    except Exception:  # it raises many types on models it does not support
        return None


def infer_shapes(G: nx.MultiDiGraph, *, feeds: Optional[Mapping[str, np.ndarray]] = None) -> None:
    """Pass 2: ``G.graph["tensors"]`` and the node attributes ``inputs``/``outputs``.

    Shapes come from ONNX shape inference on a light copy of the model whose batch
    and time axes have size 1 when they are dynamic (see :func:`_light_model`). Data
    tensors it leaves open are then taken, in turn, from the shapes the file declares
    (``value_info``), from onnxruntime's symbolic shape inference and, with example
    data (``feeds``), from a run of the model on one sample of it.
    ``G.graph["shape_sources"]`` says which of these were needed.

    Raises
    ------
    ValueError
        If ONNX shape inference fails.
    """
    from .. import schemas

    schemas.register_schemas()
    light, symbols = _light_model(G, concrete=True)
    try:
        inferred = _onnx_inference(G, light)
    except Exception:  # onnx raises several unrelated types here
        light, symbols = _light_model(G, concrete=False)
        try:
            inferred = _onnx_inference(G, light)
        except Exception as err:
            inferred = _ort_inference(light)
            if inferred is None:
                raise ValueError(f"{G.graph['label']}: ONNX shape inference failed: {err}") from None
    G.graph["concrete_sizes"] = symbols
    sources = ["onnx"]
    tensors = _table(G, inferred)
    missing = _unresolved(G, tensors)
    rounds = 0
    while missing and rounds < _FOLD_ROUNDS:
        # shape arithmetic ONNX does not propagate (Mod, Div, ...) on constants and
        # static shapes: evaluate it and infer again
        folded = _fold(light, inferred)
        if folded is None:
            break
        try:
            inferred = _onnx_inference(G, folded)
        except Exception:  # the folded model is no better: keep what we have
            break
        light, rounds = folded, rounds + 1
        tensors = _table(G, inferred)
        missing = _unresolved(G, tensors)
    if rounds:
        sources.append("folding")
    if missing:
        declared = {v.name: v for v in G.graph["model"].graph.value_info}
        usable = [_substituted(declared[n], symbols) for n in missing if n in declared]
        usable = [v for v in usable if all(d.HasField("dim_value") for d in v.type.tensor_type.shape.dim)]
        if usable:
            light.graph.value_info.extend(usable)
            try:
                inferred = _onnx_inference(G, light)
                tensors = _table(G, inferred)
                missing = _unresolved(G, tensors)
                sources.append("value_info")
            except Exception:  # declared shapes inference disagrees with: ignore them
                del light.graph.value_info[len(light.graph.value_info) - len(usable):]
    if missing:
        ort_inferred = _ort_inference(light)
        if ort_inferred is not None:
            table = _table(G, ort_inferred)
            found = {n: table[n] for n in missing if n in table and n not in _unresolved_names(table, [n])}
            if found:
                tensors.override(found)
                missing = [n for n in missing if n not in found]
                sources.append("onnxruntime")
    if missing and feeds is not None:
        found = _runtime_shapes(G, missing, feeds, tensors)
        if found:
            tensors.override(found)
            sources.append("run")
    G.graph["tensors"] = tensors
    G.graph["shape_sources"] = sources

    def info(name: str) -> Optional[TensorInfo]:
        return (tensors[name] if name in tensors else TensorInfo(name, None)) if name else None

    for _, data in G.nodes(data=True):
        data["inputs"] = [info(n) for n in data["proto"].input]
        data["outputs"] = [info(n) for n in data["proto"].output]


_FOLD_ROUNDS = 64
_FOLD_LIMIT = 1 << 16  # elements of a tensor computed while folding
_NO_FOLD = {"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial", "Bernoulli",
            "If", "Loop", "Scan"}


def _fold(light: onnx.ModelProto, inferred: onnx.ModelProto) -> Optional[onnx.ModelProto]:
    """``light`` with the nodes computable from constants and static shapes replaced
    by their values (initializers), or None if there is none to fold."""
    from onnx.reference import ReferenceEvaluator

    values: Dict[str, np.ndarray] = {}
    for init in light.graph.initializer:
        if not init.external_data and (int(np.prod(init.dims)) if init.dims else 1) <= _FOLD_LIMIT:
            values[init.name] = numpy_helper.to_array(init)
    shapes = {v.name: _dims(v.type) for v in (*inferred.graph.input, *inferred.graph.value_info,
                                               *inferred.graph.output)}
    kept: List[onnx.NodeProto] = []
    new: Dict[str, np.ndarray] = {}
    for node in light.graph.node:
        result = None
        if normalize_domain(node.domain) == "" and node.op_type not in _NO_FOLD:
            if node.op_type == "Shape":
                shape = shapes.get(node.input[0])
                if shape is not None and all(isinstance(d, int) for d in shape):
                    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                    rank = len(shape)
                    start, end = attrs.get("start", 0), attrs.get("end", rank)
                    result = [np.array(shape[slice(start, end)], dtype=np.int64)]
            elif all(not n or n in values for n in node.input):
                result = _evaluate_node(ReferenceEvaluator, light, node, values)
        if result is None or any(r.size > _FOLD_LIMIT for r in result):
            kept.append(node)
            continue
        for name, value in zip(node.output, result):
            if name:
                values[name] = new[name] = value
    if not new:
        return None
    folded = onnx.ModelProto()
    folded.CopyFrom(light)
    del folded.graph.node[:]
    folded.graph.node.extend(kept)
    folded.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), n) for n, v in new.items())
    return folded


def _evaluate_node(evaluator: Any, light: onnx.ModelProto, node: onnx.NodeProto,
                   values: Mapping[str, np.ndarray]) -> Optional[List[np.ndarray]]:
    """The outputs of one node on constant inputs (onnx's reference runtime), or None."""
    feeds = {n: values[n] for n in node.input if n}
    inputs = [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for n, v in feeds.items()]
    outputs = [onnx.helper.make_empty_tensor_value_info(o) for o in node.output if o]
    try:
        graph = onnx.helper.make_graph([node], "fold", inputs, outputs)
        model = onnx.helper.make_model(graph, opset_imports=light.opset_import)
        model.ir_version = light.ir_version
        result = evaluator(model).run(None, feeds)
    except Exception:  # an op the reference runtime does not have, or bad inputs: leave it
        return None
    out = iter(result)
    return [np.asarray(next(out)) if o else np.zeros(0) for o in node.output]


def _unresolved_names(tensors: Mapping[str, TensorInfo], names: Sequence[str]) -> List[str]:
    return [n for n in names if tensors[n].shape is None or not all(isinstance(d, int) for d in tensors[n].shape)]


def _runtime_shapes(G: nx.MultiDiGraph, names: Sequence[str], feeds: Mapping[str, np.ndarray],
                    tensors: Mapping[str, TensorInfo]) -> Dict[str, TensorInfo]:
    """Shapes of ``names`` seen when the model runs on one sample (and timestep) of
    the example data, as the light model's shapes are for one."""
    from .source import make_session

    axes = input_axes(G)
    sliced = {}
    for name, arr in feeds.items():
        arr = np.asarray(arr)
        for axis in axes.get(name, ()):
            if axis is not None and axis < arr.ndim and _declared_size(G, name, axis) is None:
                arr = np.take(arr, [0], axis=axis)
        sliced[name] = arr
    types = {n: _elem_type_of(G, n, tensors) for n in names}
    try:
        session, probes = make_session(G.graph["model"], G.graph["source"], [(n, types[n]) for n in names])
        values = session.run([probes[n] for n in names], sliced)
    except Exception as err:  # onnxruntime raises its own types
        raise ValueError(f"{G.graph['label']}: running the model on the example data to find its shapes "
                         f"failed: {err}") from None
    return {n: TensorInfo(n, tuple(int(d) for d in v.shape), types[n]) for n, v in zip(names, values)}


def _declared_size(G: nx.MultiDiGraph, name: str, axis: int) -> Optional[int]:
    for value in G.graph["model"].graph.input:
        if value.name == name:
            shape = _dims(value.type)
            return shape[axis] if shape is not None and isinstance(shape[axis], int) else None
    return None


def _elem_type_of(G: nx.MultiDiGraph, name: str, tensors: Mapping[str, TensorInfo]) -> int:
    if name in tensors and tensors[name].elem_type:
        return tensors[name].elem_type
    for values in (G.graph["model"].graph.value_info, G.graph["model"].graph.output):
        for value in values:
            if value.name == name and _elem_type(value.type):
                return _elem_type(value.type)
    label = G.graph["producer"].get(name)
    if label is not None:  # the type of the op's first typed input: most ops keep it
        for n in G.nodes[label]["proto"].input:
            if n and n in tensors and tensors[n].elem_type:
                return tensors[n].elem_type
    return 0  # unknown: the probe output is declared without a type


# ----------------------------------------------------------------------------------
# 3. batch and time axes
# ----------------------------------------------------------------------------------
_NO_MARKS: Tuple[Optional[AxisMark], Optional[AxisMark]] = (None, None)


def _input_mark(shape: Optional[Tuple[Any, ...]], axis: Optional[int]) -> Optional[AxisMark]:
    if axis is None or shape is None or axis >= len(shape):
        return None
    return AxisMark(axis, shape[axis])


def propagate_axes(G: nx.MultiDiGraph) -> None:
    """Pass 3: where the batch and time of every tensor are (:mod:`.axes`).

    Starting from the graph inputs' axes (:func:`input_axes`), each node's op moves
    the marks of its inputs to its outputs with the rule of its spec
    (:attr:`~.stats.OpSpec.axes`). Stores ``G.graph["marks"]`` (tensor -> ``(batch,
    time)`` :class:`~.axes.AxisMark` pair, either None when the tensor carries no
    such factor) and writes the :data:`~.stats.BATCH`/:data:`~.stats.TIME` marks
    into the shapes of ``G.graph["tensors"]`` and the node attributes where the
    factor is an axis of its own (shown as ``None``, as Keras shows them).
    """
    tensors = G.graph["tensors"]
    marks: Dict[str, Tuple[Optional[AxisMark], Optional[AxisMark]]] = {}
    for name, (batch, time) in input_axes(G).items():
        shape = tensors[name].shape if name in tensors else None
        marks[name] = (_input_mark(shape, batch), _input_mark(shape, time))
    for label in G.graph["order"]:
        data = G.nodes[label]
        spec = op_spec(data["domain"], data["op_type"])
        rule = spec.axis_rule if spec is not None else broadcast_axes
        given = [marks.get(n, _NO_MARKS) if n else _NO_MARKS for n in data["proto"].input]
        if not any(b is not None or t is not None for b, t in given):
            continue
        node = op_node(G, label)
        per_output = []
        for kind in (0, 1):
            try:
                moved = list(rule(node, [m[kind] for m in given]))
            except (ValueError, TypeError, IndexError, KeyError) as err:
                raise ValueError(f"{G.graph['label']}: the axis rule of node {label!r} ({data['op_type']}) "
                                 f"failed: {err}") from None
            moved += [None] * (len(data["proto"].output) - len(moved))
            per_output.append(moved)
        for name, batch, time in zip(data["proto"].output, *per_output):
            if name:
                marks[name] = (batch, time)
    G.graph["marks"] = marks
    marked: Dict[str, TensorInfo] = {}
    for name, pair in marks.items():
        info = tensors[name] if name in tensors else None
        if info is None or info.shape is None:
            continue
        shape = list(info.shape)
        for mark, symbol in zip(reversed(pair), (TIME, BATCH)):  # batch wins a shared axis
            if mark is not None and mark.is_own_axis(info.shape):
                shape[mark.axis] = symbol
        if tuple(shape) != info.shape:
            marked[name] = TensorInfo(name, tuple(shape), info.elem_type)
    tensors.override(marked)
    for _, data in G.nodes(data=True):
        for key in ("inputs", "outputs"):
            data[key] = [marked.get(i.name, i) if i is not None else None for i in data[key]]


# ----------------------------------------------------------------------------------
# constants and the OpNode view
# ----------------------------------------------------------------------------------
def is_constant(G: nx.MultiDiGraph, name: str) -> bool:
    """True for initializers and ``Constant`` outputs."""
    return name in G.graph["initializers"] or name in G.graph["constant_nodes"]


def constant(G: nx.MultiDiGraph, name: str) -> Optional[np.ndarray]:
    """Value of a constant tensor (initializer or ``Constant`` output), else None."""
    cache = G.graph["constant_cache"]
    if name in cache:
        return cache[name]
    value: Optional[np.ndarray] = None
    source = G.graph["source"]
    if name in source.spans:
        value = source.array(name)
    elif name in G.graph["initializers"]:
        tensor = G.graph["initializers"][name]
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            value = numpy_helper.to_array(tensor, os.path.dirname(source.path or "."))
        else:
            value = numpy_helper.to_array(tensor)
    elif name in G.graph["constant_nodes"]:
        for attr in G.graph["constant_nodes"][name].attribute:
            if attr.name == "value":
                value = numpy_helper.to_array(attr.t)
            elif attr.name in ("value_float", "value_int", "value_floats", "value_ints"):
                value = np.asarray(onnx.helper.get_attribute_value(attr))
    cache[name] = value
    return value


def op_node(G: nx.MultiDiGraph, label: str) -> OpNode:
    """The :class:`~.stats.OpNode` view of one node (after :func:`infer_shapes`;
    batch/time marks after :func:`propagate_axes`)."""
    data = G.nodes[label]
    marks = G.graph.get("marks")
    return OpNode(
        data["proto"], label, data["inputs"], data["outputs"],
        constants=lambda name: constant(G, name),
        is_constant=lambda name: is_constant(G, name),
        marks=None if marks is None else lambda name: marks.get(name, _NO_MARKS),
    )


# ----------------------------------------------------------------------------------
# 3. per-node stats
# ----------------------------------------------------------------------------------
_NOTHING = {"connections": 0, "neurons": 0, "spiking": True}


def count_nodes(G: nx.MultiDiGraph) -> None:
    """Pass 4: node attributes ``stats``, ``role`` and ``absorbed``; ``G.graph["unknown_ops"]``
    (op key -> labels of the nodes nothing could count, which count nothing).

    Raises
    ------
    ShapeResolutionError
        If a count depends on a size the graph does not determine.
    ValueError
        If a stat function returns invalid stats.
    """
    if "marks" not in G.graph:
        raise ValueError("count_nodes needs the batch/time marks: run propagate_axes first")
    unknown: Dict[str, List[str]] = {}
    for label in G.graph["order"]:
        data = G.nodes[label]
        spec = op_spec(data["domain"], data["op_type"])
        try:
            stats = get_op_stats(op_node(G, label))
        except ShapeResolutionError as err:
            raise ShapeResolutionError(f"{G.graph['label']}: {err}{_shape_hint(G, label)}") from None
        if stats is None:
            if not _only_bookkeeping(data):
                unknown.setdefault(op_key(data["domain"], data["op_type"]), []).append(label)
            stats = dict(_NOTHING)
        data["stats"] = stats
        data["absorbed"] = False
        if stats["connections"]:
            data["role"] = "weighted"
        elif stats["neurons"]:
            data["role"] = "activation"
        else:
            data["role"] = "free" if spec is not None and spec.role == "free" else "other"
    G.graph["unknown_ops"] = unknown
    _absorb_rate_functions(G)


def _shape_hint(G: nx.MultiDiGraph, label: str) -> str:
    # name the op that left a tensor without a shape, when ONNX has no schema for it
    for info in G.nodes[label]["inputs"]:
        if info is None or info.shape is not None or not _uninferable(G, info.name):
            continue
        src = G.graph["producer"][info.name]
        data = G.nodes[src]
        return (
            f" (tensor {info.name!r} comes from node {src!r} of op type "
            f"'{op_key(data['domain'], data['op_type'])}', whose output shapes ONNX cannot infer; "
            "declare them in value_info)"
        )
    return ""


def _only_bookkeeping(data: Mapping[str, Any]) -> bool:
    # ops on integer/bool tensors only (shape arithmetic) do no neural work
    infos = [i for i in data["inputs"] + data["outputs"] if i is not None]
    return bool(infos) and all(i.elem_type and not i.is_float for i in infos)


def _absorb_rate_functions(G: nx.MultiDiGraph) -> None:
    """A base activation feeding only a SpikingActivation is that neuron's rate
    function, not a neuron of its own (as in the Keras ``SpikingActivation``)."""
    for label in G.graph["order"]:
        data = G.nodes[label]
        if data["op_type"] != "SpikingActivation" or data["domain"] != contract.DOMAIN or not data["proto"].input:
            continue
        tensor = data["proto"].input[0]
        src = G.graph["producer"].get(tensor)
        if src is None or G.graph["consumers"].get(tensor, []) != [label]:
            continue
        source = G.nodes[src]
        if source["stats"]["neurons"] and not source["stats"]["connections"]:
            source.update(stats=dict(_NOTHING), role="activation", absorbed=True)


# ----------------------------------------------------------------------------------
# 4. layers
# ----------------------------------------------------------------------------------
def group_layers(G: nx.MultiDiGraph) -> None:
    """Pass 5: node attribute ``layer`` and ``G.graph["layers"]`` (inputs first, then
    the layers in topological order, see :func:`_layer_order`)."""
    mapping = G.graph["metadata"].layers
    group = _metadata_groups(G, mapping) if mapping else _structural_groups(G)
    members: Dict[str, List[str]] = {}
    for label in G.graph["order"]:
        members.setdefault(group[label], []).append(label)
    members = {key: members[key] for key in _layer_order(G, group, members)}
    layers: List[Layer] = []
    used: Set[str] = set()
    tensors = G.graph["tensors"]
    for name in G.graph["inputs"]:
        # state inputs and inputs without a batch axis (e.g. weights fed as inputs) are not layers
        if name in G.graph["state_inputs"] or G.graph["batch_axes"].get(name) is None:
            continue
        shape = tensors[name].shape if name in tensors else None
        layers.append(Layer(name=name, kind="Input", inputs=[name], output=name, output_shape=shape))
        used.add(name)
    for key, labels in members.items():
        layer = _make_layer(G, key, labels, used)
        for label in labels:
            G.nodes[label]["layer"] = layer.name
        layers.append(layer)
    G.graph["layers"] = layers


def _layer_order(G: nx.MultiDiGraph, group: Mapping[str, str], members: Mapping[str, List[str]]) -> List[str]:
    """Group keys in topological order of the layers (a layer after every layer
    feeding it), ties broken by the position of each layer's main node: free nodes
    attached to a layer (constants, shape arithmetic) do not move it up."""
    position = {label: i for i, label in enumerate(G.graph["order"])}
    main = {key: position[_main_node(G, labels)] for key, labels in members.items()}
    quotient = nx.DiGraph()
    quotient.add_nodes_from(members)
    quotient.add_edges_from((group[u], group[v]) for u, v in G.edges() if group[u] != group[v])
    try:
        return list(nx.lexicographical_topological_sort(quotient, key=lambda key: main[key]))
    except nx.NetworkXUnfeasible:  # layers feeding each other (grouping by metadata can do that)
        return sorted(members, key=lambda key: main[key])


def _single_consumer(G: nx.MultiDiGraph, tensor: str) -> Optional[str]:
    users = G.graph["consumers"].get(tensor, [])
    if len(users) != 1 or tensor in G.graph["outputs"]:
        return None
    return users[0]


def _single_output(G: nx.MultiDiGraph, label: str) -> Optional[str]:
    outs = [o for o in G.nodes[label]["proto"].output if o]
    return outs[0] if len(outs) == 1 else None


def _is_spiking_activation(G: nx.MultiDiGraph, label: str) -> bool:
    return G.nodes[label]["op_type"] == "SpikingActivation" and G.nodes[label]["domain"] == contract.DOMAIN


def _feeds_only_spiking(G: nx.MultiDiGraph, label: str) -> bool:
    out = _single_output(G, label)
    user = _single_consumer(G, out) if out is not None else None
    return user is not None and _is_spiking_activation(G, user)


def _joins_weighted(G: nx.MultiDiGraph, label: str, through: str) -> bool:
    """A free node that extends the layer of the weighted op before it: a
    pass-through op, or a bias (the other operand constant)."""
    data = G.nodes[label]
    spec = op_spec(data["domain"], data["op_type"])
    if data["role"] != "free" or spec is None:
        return False
    if spec.pass_through:
        return True
    others = [n for n in data["proto"].input if n and n != through]
    if spec.affine:
        return all(is_constant(G, n) or n in G.graph["parameter_inputs"] for n in others)
    return spec.bias and len(others) == 1 and is_constant(G, others[0])


def _structural_groups(G: nx.MultiDiGraph) -> Dict[str, str]:
    """Node label -> group key, from the graph structure alone: a weighted op with
    what follows it alone (pass-through ops, bias, then one activation); a
    SpikingActivation with the rate function it absorbed; every other counting node
    alone; free nodes attached to their neighbours."""
    order = G.graph["order"]
    role = {label: G.nodes[label]["role"] for label in order}
    group: Dict[str, str] = {}
    for label in order:
        if role[label] != "weighted" or label in group:
            continue
        group[label] = cur = label
        while True:
            out = _single_output(G, cur)
            nxt = _single_consumer(G, out) if out is not None else None
            if nxt is None or nxt in group:
                break
            if _joins_weighted(G, nxt, out):
                group[nxt] = label
            elif role[nxt] == "activation" and not _feeds_only_spiking(G, nxt) and not _is_spiking_activation(G, nxt):
                group[nxt] = label
                break  # one activation ends the layer
            else:
                break
            cur = nxt
    for label in order:
        if label in group or role[label] != "activation" or not _is_spiking_activation(G, label):
            continue
        group[label] = label
        proto = G.nodes[label]["proto"]
        src = G.graph["producer"].get(proto.input[0]) if proto.input else None
        if src is not None and src not in group and role[src] == "activation" and _feeds_only_spiking(G, src):
            group[src] = label
    for label in order:
        if label not in group and role[label] != "free":
            group[label] = label
    _attach_free(G, group)
    return group


def _metadata_groups(G: nx.MultiDiGraph, mapping: Mapping[str, str]) -> Dict[str, str]:
    """Node label -> group key, from the exporter's node -> Keras layer names."""
    order = G.graph["order"]
    by_name = {G.nodes[label]["proto"].name: label for label in order if G.nodes[label]["proto"].name}
    group: Dict[str, str] = {}
    for node_name, layer_name in mapping.items():
        label = by_name.get(node_name)
        if label is not None:
            group[label] = f"layer:{layer_name}"
    for label in order:
        if label not in group and G.nodes[label]["role"] != "free":
            group[label] = label
    _attach_free(G, group)
    return group


def _attach_free(G: nx.MultiDiGraph, group: Dict[str, str]) -> None:
    """Free nodes join the layer they feed (else the one feeding them, else their own)."""
    order = G.graph["order"]

    def index(label: str) -> int:
        return G.nodes[label]["index"]

    for label in reversed(order):
        if label not in group:
            succ = next((s for s in sorted(G.successors(label), key=index) if s in group), None)
            if succ is not None:
                group[label] = group[succ]
    for label in order:
        if label not in group:
            pred = next((p for p in sorted(G.predecessors(label), key=index) if p in group), None)
            group[label] = group[pred] if pred is not None else label


def _main_node(G: nx.MultiDiGraph, labels: Sequence[str]) -> str:
    """The node that names and types a layer: its weighted op, else its activation,
    else another counting op; a group of free ops only (e.g. Flatten) is typed
    after its first node that is not shape bookkeeping."""
    for role in ("weighted", "activation", "other"):
        for label in labels:
            if G.nodes[label]["role"] == role and not G.nodes[label]["absorbed"]:
                return label
    for label in labels:
        spec = op_spec(G.nodes[label]["domain"], G.nodes[label]["op_type"])
        if spec is None or not spec.bookkeeping:
            return label
    return labels[0]


def _counted_activations(G: nx.MultiDiGraph, labels: List[str]) -> Set[str]:
    """Activation nodes counted as neurons: those not feeding another activation of
    the same layer (a chain such as softplus -> tanh is one neuron per element)."""
    acts = [label for label in labels if G.nodes[label]["stats"]["neurons"]]
    if len(acts) <= 1:
        return set(acts)
    sub = G.subgraph(labels)
    act_set = set(acts)
    return {a for a in acts if not (nx.descendants(sub, a) & act_set)}


def _make_layer(G: nx.MultiDiGraph, key: str, labels: List[str], used: Set[str]) -> Layer:
    main = _main_node(G, labels)
    name = key[len("layer:"):] if key.startswith("layer:") else main
    base, k = name, 1
    while name in used:
        name = f"{base}_{k}"
        k += 1
    used.add(name)
    counted = _counted_activations(G, labels)
    parts = []
    for label in labels:
        stats = G.nodes[label]["stats"]
        if label in counted:
            parts.append(stats)
        elif stats["connections"]:  # neurons feeding another activation are not counted
            parts.append({"connections": stats["connections"], "spiking": stats["spiking"]})
    total = sum_stats(parts)
    layer = Layer(name=name, kind=G.nodes[main]["op_type"], nodes=list(labels), **total)
    layer.params, layer.inputs = _params_and_inputs(G, labels)
    layer.output = _shown_output(G, labels)
    tensors = G.graph["tensors"]
    layer.output_shape = tensors[layer.output].shape if layer.output and layer.output in tensors else None
    return layer


def _params_and_inputs(G: nx.MultiDiGraph, labels: List[str]) -> Tuple[int, List[str]]:
    """Weights the layer reads (float constants of known shape, each once) and the
    float tensors entering it from outside (a fed state is not input activity:
    Keras passes it as initial_state, not as a layer input)."""
    members = set(labels)
    tensors = G.graph["tensors"]
    params, seen, inputs = 0, set(), []
    for label in labels:
        for name in G.nodes[label]["proto"].input:
            if not name:
                continue
            info = tensors[name] if name in tensors else None
            if is_constant(G, name) or name in G.graph["parameter_inputs"]:
                if name not in seen:
                    seen.add(name)
                    if info is not None and info.is_float and info.shape and all(isinstance(d, int) for d in info.shape):
                        params += int(np.prod(info.shape))
                continue
            if G.graph["producer"].get(name) in members or name in G.graph["state_inputs"]:
                continue
            if name not in inputs and info is not None and info.is_float:
                inputs.append(name)
    return params, inputs


def _shown_output(G: nx.MultiDiGraph, labels: List[str]) -> Optional[str]:
    """The last tensor leaving the layer (else the last node's first output)."""
    members = set(labels)
    for label in reversed(labels):
        for out in G.nodes[label]["proto"].output:
            if out and (out in G.graph["outputs"] or any(c not in members for c in G.graph["consumers"].get(out, []))):
                return out
    outs = [o for o in G.nodes[labels[-1]]["proto"].output if o]
    return outs[0] if outs else None
