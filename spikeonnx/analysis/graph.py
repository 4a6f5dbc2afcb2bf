"""The graph pass: load an ONNX model, infer shapes, build a networkx graph, group layers.

Steps, in :class:`AnalysisGraph`:

1. load the model (path, bytes or ``ModelProto``) with clear errors for missing,
   truncated or inconsistent files;
2. build a :class:`networkx.MultiDiGraph` whose nodes are the ONNX nodes and whose
   edges carry the tensor between them (name, shape, dtype); reject cycles;
3. run ONNX shape inference, with the ``spikeonnx`` schemas registered, on a light
   copy of the graph: large weights are replaced by typed graph inputs (inference
   needs their shapes, not their values) and the batch/time axes of the graph
   inputs are renamed to the :data:`~.stats.BATCH` / :data:`~.stats.TIME` symbols so
   that they can be recognised downstream;
4. compute each node's statistics (:mod:`.stats`) and group the nodes into layers:
   by the Keras layer names the exporter writes into the metadata when present,
   otherwise structurally (a MatMul/Gemm/Conv with its bias ``Add``, its
   activation and the reshapes/transposes around it form one layer).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import networkx as nx
import numpy as np
import onnx
from onnx import numpy_helper

from .stats import (
    BATCH, TIME, OpNode, ShapeResolutionError, TensorInfo, format_shape, get_op_stats, is_free_op,
)

__all__ = [
    "ModelLike",
    "AxisSpec",
    "Layer",
    "AnalysisGraph",
    "load_model",
    "METADATA_LAYERS",
    "METADATA_BATCH_AXES",
    "METADATA_TIME_AXES",
    "METADATA_INITIAL_STATE",
    "METADATA_STATE_IO",
]

ModelLike = Union[onnx.ModelProto, str, os.PathLike, bytes]
AxisSpec = Union[None, int, Mapping[str, Optional[int]]]

#: metadata_props key: JSON object, ONNX node name -> Keras layer name.
METADATA_LAYERS = "spikeonnx.layers"
#: metadata_props key: JSON object, graph input/output name -> batch axis.
METADATA_BATCH_AXES = "spikeonnx.batch_axes"
#: metadata_props key: JSON object, graph input/output name -> time axis.
METADATA_TIME_AXES = "spikeonnx.time_axes"
#: metadata_props key: JSON object, state input name -> how the state starts.
METADATA_INITIAL_STATE = "spikeonnx.initial_state"
#: metadata_props key: JSON object, state input name -> state output name.
METADATA_STATE_IO = "spikeonnx.state_io"

# Float initializers with more elements than this are handed to shape inference as
# typed graph inputs, without their data (inference only needs their shapes).
_INLINE_FLOAT_LIMIT = 64
_INLINE_OTHER_LIMIT = 1 << 16
# Ops that only move data around; they may join the layer of their neighbours.
_PASS_THROUGH = frozenset(
    "Reshape Transpose Flatten Squeeze Unsqueeze Identity Dropout Cast CastLike".split()
)
_BIAS_OPS = frozenset(("Add", "Sub"))


def load_model(model: ModelLike) -> Tuple[onnx.ModelProto, str]:
    """Load a model and return it with a label naming it in error messages.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        The model, a path to a ``.onnx`` file, or its serialized bytes.

    Returns
    -------
    (onnx.ModelProto, str)
        The model and its label (the file path, or ``"<model>"``).

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        If the file or bytes are not a valid ONNX model (e.g. a truncated file).
    TypeError
        If ``model`` is of an unsupported type.
    """
    if isinstance(model, onnx.ModelProto):
        return model, f"<model {model.graph.name or 'unnamed'}>"
    if isinstance(model, (bytes, bytearray)):
        label = "<model bytes>"
        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as err:  # protobuf raises its own DecodeError
            raise ValueError(f"{label}: not a valid ONNX model ({type(err).__name__}: {err})") from None
        return _check_loaded(proto, label), label
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        label = str(path)
        if not path.exists():
            raise FileNotFoundError(f"ONNX model file not found: {label}")
        if path.is_dir():
            raise IsADirectoryError(f"{label} is a directory, not an ONNX model file")
        try:
            proto = onnx.load(str(path))
        except Exception as err:
            raise ValueError(
                f"{label}: not a valid ONNX model, the file may be truncated or corrupt "
                f"({type(err).__name__}: {str(err).strip() or 'parse error'})"
            ) from None
        return _check_loaded(proto, label), label
    raise TypeError(
        f"model must be an onnx.ModelProto, a path or bytes, got {type(model).__name__}"
    )


def _check_loaded(proto: onnx.ModelProto, label: str) -> onnx.ModelProto:
    # a truncated protobuf can still parse; an empty graph is the usual symptom
    if not proto.HasField("graph") or (len(proto.graph.node) == 0 and len(proto.graph.output) == 0):
        raise ValueError(f"{label}: not a valid ONNX model (no graph; truncated or empty file?)")
    return proto


def _dims(type_proto: onnx.TypeProto) -> Optional[Tuple[Any, ...]]:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    out = []
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


class _TensorTable(Mapping):
    """Tensor name -> :class:`TensorInfo`, read from the inferred graph on first use
    (most weights are never looked at, and reading protobuf shapes is not free)."""

    def __init__(self, graph: onnx.GraphProto, initializers: Mapping[str, onnx.TensorProto]) -> None:
        self._values: Dict[str, Any] = {}
        for field_ in (graph.input, graph.output, graph.value_info):
            for value in field_:
                # a later entry replaces an earlier one only if it knows more
                if value.name not in self._values or value.type.tensor_type.HasField("shape"):
                    self._values[value.name] = value
        self._values.update(initializers)
        self._cache: Dict[str, TensorInfo] = {}

    def __getitem__(self, name: str) -> TensorInfo:
        info = self._cache.get(name)
        if info is None:
            value = self._values[name]
            if isinstance(value, onnx.TensorProto):
                info = TensorInfo(name, tuple(value.dims), value.data_type)
            else:
                info = TensorInfo(name, _dims(value.type), _elem_type(value.type))
            self._cache[name] = info
        return info

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


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


def _parse_metadata(model: onnx.ModelProto, label: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key in (METADATA_LAYERS, METADATA_BATCH_AXES, METADATA_TIME_AXES,
                        METADATA_INITIAL_STATE, METADATA_STATE_IO):
            try:
                value = json.loads(prop.value)
            except json.JSONDecodeError as err:
                raise ValueError(f"{label}: metadata {prop.key!r} is not valid JSON ({err})") from None
            if not isinstance(value, dict):
                raise ValueError(f"{label}: metadata {prop.key!r} must be a JSON object")
            out[prop.key] = value
    return out


class AnalysisGraph:
    """An ONNX model prepared for analysis: shapes, networkx graph, layers and stats.

    Parameters
    ----------
    model : onnx.ModelProto, path or bytes
        The model.
    batch_axis : int, dict or None
        Batch axis of the graph inputs (one int for all, or input name -> axis; None
        for no batch axis). Axes in the exporter's metadata take precedence.
    time_axis : int, dict or None
        Time axis of the graph inputs, as ``batch_axis``. When no time axis is known
        (neither given nor in the metadata), an unknown size right after the batch
        axis is taken as time, as Keras' ``ModelEnergy`` does.

    Raises
    ------
    FileNotFoundError, ValueError
        For a missing or invalid file, an inconsistent graph (undefined tensors,
        cycles), or failed shape inference.
    """

    def __init__(self, model: ModelLike, *, batch_axis: AxisSpec = 0, time_axis: AxisSpec = None) -> None:
        self.model, self.label = load_model(model)
        graph = self.model.graph
        self.metadata = _parse_metadata(self.model, self.label)

        self._initializers: Dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        self._constant_nodes: Dict[str, onnx.NodeProto] = {}
        self._constant_cache: Dict[str, Optional[np.ndarray]] = {}
        self.input_names = [v.name for v in graph.input if v.name not in self._initializers]
        self.output_names = [v.name for v in graph.output]
        #: state inputs of an exported model: optional in example data, not layers
        self.state_inputs = [
            n for n in self.input_names
            if n in self.metadata.get(METADATA_STATE_IO, {}) or n in self.metadata.get(METADATA_INITIAL_STATE, {})
        ]

        self._label_nodes()
        self._build_graph()
        self.batch_axes = self._axes(batch_axis, METADATA_BATCH_AXES, "batch_axis")
        self.time_axes = self._axes(time_axis, METADATA_TIME_AXES, "time_axis")
        self.time_fallback = not any(v is not None for v in self.time_axes.values())
        # graph inputs without a batch axis next to inputs with one are weights fed
        # from outside: parameters, not input activity
        has_batch = any(v is not None for v in self.batch_axes.values())
        self._parameter_inputs = {
            n for n, axis in self.batch_axes.items() if has_batch and axis is None and n not in self.state_inputs
        }
        self.tensors = self._infer_shapes()
        self._annotate_edges()
        self.node_stats, self.unknown_ops = self._compute_node_stats()
        self.layers = self._group_layers()

    # ------------------------------------------------------------------------------
    # nodes and the networkx graph
    # ------------------------------------------------------------------------------
    def _label_nodes(self) -> None:
        # ONNX node names may be empty or repeated; labels are unique.
        self.labels: List[str] = []
        seen: Set[str] = set()
        for i, node in enumerate(self.model.graph.node):
            base = node.name or f"{node.op_type}_{i}"
            label = base
            k = 1
            while label in seen:
                label = f"{base}_{k}"
                k += 1
            seen.add(label)
            self.labels.append(label)
        self.nodes: Dict[str, onnx.NodeProto] = dict(zip(self.labels, self.model.graph.node))
        self._index = {label: i for i, label in enumerate(self.labels)}

    def _build_graph(self) -> None:
        graph = self.model.graph
        self.producer: Dict[str, str] = {}
        for label, node in self.nodes.items():
            for out in node.output:
                if not out:
                    continue
                if out in self.producer or out in self._initializers or out in self.input_names:
                    raise ValueError(f"{self.label}: tensor {out!r} is defined more than once")
                self.producer[out] = label
                if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                    self._constant_nodes[out] = node
        self.consumers: Dict[str, List[str]] = {}
        g = nx.MultiDiGraph()
        g.add_nodes_from(
            (label, {"op_type": node.op_type, "domain": node.domain}) for label, node in self.nodes.items()
        )
        known = set(self.producer) | set(self._initializers) | set(self.input_names)
        edges = []
        # the file's order is topological in any valid ONNX model; check it on the way
        in_order = True
        for label, node in self.nodes.items():
            position = self._index[label]
            for name in node.input:
                if not name:
                    continue
                if name not in known:
                    raise ValueError(
                        f"{self.label}: node {label!r} ({node.op_type}) reads tensor {name!r}, "
                        "which no node, initializer or graph input defines (truncated or "
                        "inconsistent model?)"
                    )
                self.consumers.setdefault(name, []).append(label)
                src = self.producer.get(name)
                if src is not None:
                    edges.append((src, label, name, {"tensor": name}))
                    if self._index[src] >= position:
                        in_order = False
        g.add_edges_from(edges)
        for name in self.output_names:
            if name not in known:
                raise ValueError(f"{self.label}: graph output {name!r} is not produced by any node")
        self.graph = g
        if in_order:
            self.order: List[str] = list(self.labels)
            return
        if not nx.is_directed_acyclic_graph(g):
            cycle = nx.find_cycle(g)
            path = " -> ".join([e[0] for e in cycle] + [cycle[0][0]])
            raise ValueError(f"{self.label}: the graph has a cycle: {path}")
        # a topological order, as close to the file's order as possible
        self.order = list(nx.lexicographical_topological_sort(g, key=lambda n: self._index[n]))

    def _axes(self, spec: AxisSpec, meta_key: str, what: str) -> Dict[str, Optional[int]]:
        if not hasattr(self, "_input_values"):
            names = set(self.input_names)
            self._input_values = {v.name: v for v in self.model.graph.input if v.name in names}
            self._input_shapes: Dict[str, Any] = {}

        def shape_of(name: str) -> Optional[Tuple[Any, ...]]:
            # read lazily: only inputs that get an axis need their shape
            if name not in self._input_shapes:
                self._input_shapes[name] = _dims(self._input_values[name].type)
            return self._input_shapes[name]

        ranks = self._input_values  # membership only
        result: Dict[str, Optional[int]] = {}
        if isinstance(spec, Mapping):
            for name in spec:
                if name not in ranks:
                    raise ValueError(f"{what}: {name!r} is not a graph input of {self.label}")
            result = {name: spec.get(name) for name in self.input_names}
        elif spec is None or isinstance(spec, (int, np.integer)):
            result = {name: (None if spec is None else int(spec)) for name in self.input_names}
        else:
            raise TypeError(f"{what} must be an int, a dict or None, got {type(spec).__name__}")

        def check(values: Dict[str, Optional[int]], source: str) -> Dict[str, Optional[int]]:
            for name, axis in values.items():
                if axis is None:
                    continue
                shape = shape_of(name)
                if shape is None:
                    continue  # unknown rank: nothing to mark
                rank = len(shape)
                if not -rank <= axis < rank:
                    raise ValueError(
                        f"{source}={axis} is out of range for graph input {name!r} of rank {rank}"
                    )
                values[name] = axis % rank
            return values

        result = check(result, what)
        meta = self.metadata.get(meta_key, {})
        override = {
            name: (None if axis is None else int(axis)) for name, axis in meta.items() if name in ranks
        }
        result.update(check(override, f"metadata {meta_key!r}: axis"))
        return result

    # ------------------------------------------------------------------------------
    # shape inference
    # ------------------------------------------------------------------------------
    def _light_model(self) -> onnx.ModelProto:
        """A copy of the model fit for shape inference: no big weights, marked axes."""
        src = self.model
        light = onnx.ModelProto()
        light.ir_version = src.ir_version
        light.opset_import.extend(src.opset_import)
        g = light.graph
        g.name = src.graph.name
        g.node.extend(self.nodes[label] for label in self.order)
        for init in src.graph.initializer:
            numel = int(np.prod(init.dims)) if len(init.dims) else 1
            is_float = init.data_type in (
                onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                onnx.TensorProto.BFLOAT16,
            )
            if numel <= (_INLINE_FLOAT_LIMIT if is_float else _INLINE_OTHER_LIMIT) and not init.external_data:
                g.initializer.append(init)
            else:
                g.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        for value in src.graph.input:
            if value.name in self._initializers:
                continue
            vi = g.input.add()
            vi.CopyFrom(value)
            dims = vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else []
            b = self.batch_axes.get(value.name)
            t = self.time_axes.get(value.name)
            if t is not None and t < len(dims):
                dims[t].Clear()
                dims[t].dim_param = TIME
            if b is not None and b < len(dims) and b != t:
                d = dims[b]
                # a batch of 1 is harmless in counts and keeps baked-in reshapes resolvable
                if not (d.HasField("dim_value") and d.dim_value == 1):
                    d.Clear()
                    d.dim_param = BATCH
        def uninferable(name: str) -> bool:
            label = self.producer.get(name)
            return label is not None and not onnx.defs.has(self.nodes[label].op_type, self.nodes[label].domain)

        for value in src.graph.output:
            vo = g.output.add()
            if uninferable(value.name):
                vo.CopyFrom(value)  # the declared type is all we will know
                continue
            # declared output shapes may carry the concrete batch size we replaced
            vo.name = value.name
            if value.type.HasField("tensor_type"):
                vo.type.tensor_type.elem_type = value.type.tensor_type.elem_type
        # keep declared types of tensors no schema can infer (unknown custom ops)
        for value in src.graph.value_info:
            if uninferable(value.name):
                g.value_info.append(value)
        return light

    def _infer_shapes(self) -> Dict[str, TensorInfo]:
        try:
            from .. import schemas

            schemas.register_schemas()
        except ImportError:  # pragma: no cover - the contract module ships with the package
            pass
        light = self._light_model()
        try:
            inferred = onnx.shape_inference.infer_shapes(light, check_type=False, strict_mode=False, data_prop=True)
        except Exception as err:
            raise ValueError(f"{self.label}: ONNX shape inference failed: {err}") from None
        return _TensorTable(inferred.graph, self._initializers)

    def _annotate_edges(self) -> None:
        for src, dst, key, data in self.graph.edges(keys=True, data=True):
            info = self.tensors.get(key)
            data["shape"] = info.shape if info else None
            data["dtype"] = info.dtype if info else None

    # ------------------------------------------------------------------------------
    # constants and per-node stats
    # ------------------------------------------------------------------------------
    def constant(self, name: str) -> Optional[np.ndarray]:
        """Value of a constant tensor (initializer or ``Constant`` output), else None."""
        if name in self._constant_cache:
            return self._constant_cache[name]
        value: Optional[np.ndarray] = None
        if name in self._initializers:
            value = numpy_helper.to_array(self._initializers[name])
        elif name in self._constant_nodes:
            node = self._constant_nodes[name]
            for attr in node.attribute:
                if attr.name == "value":
                    value = numpy_helper.to_array(attr.t)
                elif attr.name in ("value_float", "value_int"):
                    value = np.asarray(onnx.helper.get_attribute_value(attr))
                elif attr.name in ("value_floats", "value_ints"):
                    value = np.asarray(onnx.helper.get_attribute_value(attr))
        self._constant_cache[name] = value
        return value

    def is_constant(self, name: str) -> bool:
        """True for initializers and ``Constant`` outputs."""
        return name in self._initializers or name in self._constant_nodes

    def op_node(self, label: str) -> OpNode:
        """The :class:`~.stats.OpNode` view of one node, for stat functions."""
        node = self.nodes[label]
        ins = [self.tensors.get(n, TensorInfo(n, None)) if n else None for n in node.input]
        outs = [self.tensors.get(n, TensorInfo(n, None)) if n else None for n in node.output]
        return OpNode(node, label, ins, outs, self.constant, self.time_fallback, self._unmerge)

    def _unmerge(self, name: str) -> Optional[TensorInfo]:
        """Walk back from ``name`` through reshape-like ops to the last tensor whose
        batch axis is still its own (see :meth:`OpNode.unmerged_units`)."""
        for _ in range(64):  # bounded: pass-through chains are short
            label = self.producer.get(name)
            if label is None:
                return None
            node = self.nodes[label]
            if node.op_type not in _PASS_THROUGH or node.domain not in ("", "ai.onnx") or not node.input:
                return None
            name = node.input[0]
            info = self.tensors.get(name)
            if info is None or info.shape is None:
                return None
            if not OpNode.is_merged(info.shape):
                return info
        return None

    def _compute_node_stats(self) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, List[str]]]:
        stats: Dict[str, Dict[str, Any]] = {}
        unknown: Dict[str, List[str]] = {}
        for label in self.order:
            node = self.nodes[label]
            if node.op_type == "Gather" and node.domain in ("", "ai.onnx") and self._is_embedding(node):
                result = None
            else:
                try:
                    result = get_op_stats(self.op_node(label))
                except ShapeResolutionError as err:
                    raise ShapeResolutionError(f"{self.label}: {err}{self._shape_hint(node)}") from None
            if result is None and self._only_bookkeeping(node):
                result = {"connections": 0, "neurons": 0, "spiking": True}
            if result is None:
                key = f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
                unknown.setdefault(key, []).append(label)
                result = {"connections": 0, "neurons": 0, "spiking": True}
            stats[label] = result
        self._absorb_rate_functions(stats)
        return stats, unknown

    def _shape_hint(self, node: onnx.NodeProto) -> str:
        # name the op that left a tensor without a shape, when ONNX has no schema for it
        for name in node.input:
            info = self.tensors.get(name)
            label = self.producer.get(name)
            if label is None or (info is not None and info.shape is not None):
                continue
            src = self.nodes[label]
            if not onnx.defs.has(src.op_type, src.domain):
                return (
                    f" (tensor {name!r} comes from node {label!r} of op type "
                    f"'{src.domain + '.' if src.domain else ''}{src.op_type}', whose output shapes "
                    "ONNX cannot infer; declare them in value_info)"
                )
        return ""

    def _only_bookkeeping(self, node: onnx.NodeProto) -> bool:
        # ops on integer/bool tensors only (shape arithmetic) do no neural work
        infos = [self.tensors.get(n) for n in list(node.input) + list(node.output) if n]
        return bool(infos) and all(i is not None and i.elem_type and not i.is_float for i in infos)

    def _is_embedding(self, node: onnx.NodeProto) -> bool:
        # Gather from a float weight table is an embedding lookup, not shape bookkeeping
        data = self.tensors.get(node.input[0]) if node.input else None
        return bool(node.input and self.is_constant(node.input[0]) and data is not None and data.is_float)

    def _absorb_rate_functions(self, stats: Dict[str, Dict[str, Any]]) -> None:
        """A base activation feeding only a SpikingActivation is that neuron's rate
        function, not a neuron of its own (as in the Keras ``SpikingActivation``)."""
        for label in self.order:
            node = self.nodes[label]
            if node.op_type != "SpikingActivation" or node.domain != "spikeonnx" or not node.input:
                continue
            src = self.producer.get(node.input[0])
            if src is None or self.consumers.get(node.input[0], []) != [label]:
                continue
            if stats[src]["neurons"] and not stats[src]["connections"]:
                stats[src] = {"connections": 0, "neurons": 0, "spiking": True, "absorbed": True}

    def warn_unknown(self) -> None:
        """Warn once per op type that has no stat function (they count nothing)."""
        for key, labels in self.unknown_ops.items():
            shown = ", ".join(repr(x) for x in labels[:3]) + (" ..." if len(labels) > 3 else "")
            warnings.warn(
                f"Cannot compute stats for op type '{key}' ({len(labels)} node(s): {shown}); "
                "counting nothing for it. Use spikeonnx.register_op to register it.",
                stacklevel=3,
            )

    # ------------------------------------------------------------------------------
    # layer grouping
    # ------------------------------------------------------------------------------
    def _kind(self, label: str) -> str:
        node = self.nodes[label]
        s = self.node_stats[label]
        if s.get("absorbed"):
            return "activation"
        if s["connections"]:
            return "anchor"
        if s["neurons"]:
            return "activation"
        if is_free_op(node.domain, node.op_type) or node.op_type == "Clip" and node.domain in ("", "ai.onnx"):
            return "free"
        return "other"

    def _single_consumer(self, tensor: str) -> Optional[str]:
        users = self.consumers.get(tensor, [])
        if len(users) != 1 or tensor in self.output_names:
            return None
        return users[0]

    def _is_bias(self, label: str, through: str) -> bool:
        node = self.nodes[label]
        if node.op_type not in _BIAS_OPS or node.domain not in ("", "ai.onnx"):
            return False
        others = [n for n in node.input if n and n != through]
        return len(others) == 1 and self.is_constant(others[0])

    def _feeds_only_spiking(self, label: str) -> bool:
        outs = [o for o in self.nodes[label].output if o]
        if len(outs) != 1:
            return False
        user = self._single_consumer(outs[0])
        return user is not None and self.nodes[user].op_type == "SpikingActivation"

    def _structural_groups(self) -> Dict[str, str]:
        """Node label -> group key, from the graph structure alone."""
        group: Dict[str, str] = {}
        kinds = {label: self._kind(label) for label in self.order}
        for label in self.order:
            if kinds[label] != "anchor" or label in group:
                continue
            group[label] = label
            cur = label
            took_activation = False
            while True:
                outs = [o for o in self.nodes[cur].output if o]
                if len(outs) != 1:
                    break
                nxt = self._single_consumer(outs[0])
                if nxt is None or nxt in group:
                    break
                node = self.nodes[nxt]
                if took_activation:
                    break
                if kinds[nxt] == "free" and (node.op_type in _PASS_THROUGH or self._is_bias(nxt, outs[0])):
                    group[nxt] = label
                elif kinds[nxt] == "activation" and not self._feeds_only_spiking(nxt) and node.op_type != "SpikingActivation":
                    group[nxt] = label
                    took_activation = True
                else:
                    break
                cur = nxt
        for label in self.order:
            if label in group:
                continue
            if kinds[label] == "activation" and self.nodes[label].op_type == "SpikingActivation":
                group[label] = label
                src = self.producer.get(self.nodes[label].input[0]) if self.nodes[label].input else None
                if src is not None and src not in group and kinds[src] == "activation" and self._feeds_only_spiking(src):
                    group[src] = label
        for label in self.order:
            if label not in group and kinds[label] in ("anchor", "activation", "other"):
                group[label] = label
        self._attach_free(group, kinds)
        return group

    def _attach_free(self, group: Dict[str, str], kinds: Dict[str, str]) -> None:
        """Free nodes join the layer they feed (else the one feeding them)."""
        for label in reversed(self.order):
            if label in group:
                continue
            for succ in sorted(self.graph.successors(label), key=self._index.__getitem__):
                if succ in group:
                    group[label] = group[succ]
                    break
        for label in self.order:
            if label in group:
                continue
            for pred in sorted(self.graph.predecessors(label), key=self._index.__getitem__):
                if pred in group:
                    group[label] = group[pred]
                    break
            else:
                group[label] = label

    def _metadata_groups(self, mapping: Mapping[str, Any]) -> Dict[str, str]:
        group: Dict[str, str] = {}
        kinds = {label: self._kind(label) for label in self.order}
        by_name = {self.nodes[label].name: label for label in self.order if self.nodes[label].name}
        for node_name, layer_name in mapping.items():
            label = by_name.get(node_name)
            if label is not None and layer_name is not None:
                group[label] = f"layer:{layer_name}"
        for label in self.order:
            if label not in group and kinds[label] != "free":
                group[label] = label
        self._attach_free(group, kinds)
        return group

    def _group_layers(self) -> List[Layer]:
        mapping = self.metadata.get(METADATA_LAYERS)
        group = self._metadata_groups(mapping) if mapping else self._structural_groups()
        members: Dict[str, List[str]] = {}
        for label in self.order:
            members.setdefault(group[label], []).append(label)
        layers: List[Layer] = []
        used_names: Set[str] = set()
        for name in self.input_names:
            # state inputs and inputs without a batch axis (e.g. weights fed as
            # inputs) are not layers
            if name in self.state_inputs or self.batch_axes.get(name) is None:
                continue
            info = self.tensors.get(name)
            layers.append(Layer(name=name, kind="Input", inputs=[name], output=name,
                                output_shape=info.shape if info else None))
            used_names.add(name)
        for key, labels in members.items():
            layers.append(self._make_layer(key, labels, used_names))
        return layers

    def _main_node(self, labels: Sequence[str]) -> str:
        for kind in ("anchor", "activation", "other"):
            for label in labels:
                if self._kind(label) == kind and not self.node_stats[label].get("absorbed"):
                    return label
        # a group of free ops only (e.g. Flatten, Rescaling): typed after its first node
        # that is not shape bookkeeping
        plumbing = {"Shape", "Cast", "Slice", "Concat", "Gather", "Unsqueeze", "Squeeze", "Identity", "Constant"}
        return next((label for label in labels if self.nodes[label].op_type not in plumbing), labels[0])

    def _make_layer(self, key: str, labels: List[str], used: Set[str]) -> Layer:
        main = self._main_node(labels)
        name = key[len("layer:"):] if key.startswith("layer:") else main
        base, k = name, 1
        while name in used:
            name = f"{base}_{k}"
            k += 1
        used.add(name)
        members = set(labels)
        layer = Layer(name=name, kind=self.nodes[main].op_type, nodes=list(labels))
        counted = self._counted_activations(labels)
        for label in labels:
            s = self.node_stats[label]
            layer.connections += s["connections"]
            if label in counted:
                layer.neurons += s["neurons"]
                layer.spiking &= s["spiking"]
            elif s["connections"]:
                layer.spiking &= s["spiking"]
        seen_params: Set[str] = set()
        for label in labels:
            for name_in in self.nodes[label].input:
                if not name_in:
                    continue
                src = self.producer.get(name_in)
                if self.is_constant(name_in) or name_in in self._parameter_inputs:
                    if name_in not in seen_params:
                        seen_params.add(name_in)
                        info = self.tensors.get(name_in)
                        if info is not None and info.is_float and info.shape and all(isinstance(d, int) for d in info.shape):
                            layer.params += int(np.prod(info.shape))
                    continue
                if src is not None and src in members:
                    continue
                info = self.tensors.get(name_in)
                # a state fed from outside is not input activity (Keras passes it as
                # initial_state, not as a layer input)
                if name_in in self.state_inputs:
                    continue
                if name_in not in layer.inputs and info is not None and info.is_float:
                    layer.inputs.append(name_in)
        # the shown output: last tensor leaving the layer
        for label in reversed(labels):
            outs = [o for o in self.nodes[label].output if o]
            leaving = [o for o in outs if o in self.output_names or any(c not in members for c in self.consumers.get(o, []))]
            if leaving:
                layer.output = leaving[0]
                break
        if layer.output is None:
            outs = [o for o in self.nodes[labels[-1]].output if o]
            layer.output = outs[0] if outs else None
        info = self.tensors.get(layer.output) if layer.output else None
        layer.output_shape = info.shape if info else None
        return layer

    def _counted_activations(self, labels: List[str]) -> Set[str]:
        """Activation nodes counted as neurons: those not feeding another activation of
        the same layer (a chain such as softplus -> tanh is one neuron per element)."""
        acts = [lb for lb in labels if self.node_stats[lb]["neurons"]]
        if len(acts) <= 1:
            return set(acts)
        sub = self.graph.subgraph(labels)
        act_set = set(acts)
        return {a for a in acts if not (nx.descendants(sub, a) & act_set)}

    # ------------------------------------------------------------------------------
    def layer(self, name: str) -> Layer:
        """The layer called ``name``; raises ValueError naming the known layers."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(
            f"no layer named {name!r}; layers: {', '.join(layer.name for layer in self.layers)}"
        )
