"""Pure ONNX post-processing of an exported model (no TensorFlow here).

tf2onnx's output is finished by a sequence of passes, each a function that changes
the :class:`onnx.ModelProto` in place (or reads it) and knows nothing of Keras:
:func:`export` calls them in order, and the tests run them on hand-built graphs.

- :func:`raise_on_unsupported`: fail if TensorFlow ops were left in the graph;
- :func:`name_spiking_nodes`: give ``spikeonnx`` nodes their final names and
  declare the static shapes of their tensors;
- :func:`rename_io`: final graph input/output names;
- :func:`name_dynamic_dims`: static output shapes, ``batch``/``time`` dimension names;
- :func:`fix_opsets_and_ir`: drop an unused ``spikeonnx`` opset, lower the IR version;
- :func:`fuse_sequence_dense`: a ``Dense`` on a sequence as one ``Gemm`` (bias, and a
  following ``Relu``, before the reshape back to the sequence);
- :func:`attribute_nodes`: ONNX node -> Keras layer, for the metadata;
- :func:`check_model`: the full ONNX checker with our schemas registered.

Layers are attributed through name scopes: every traced layer gets the scope
``{SCOPE_PREFIX}{i}``, and ONNX node names inherit it (:func:`scope_index`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import onnx

from ..contract import DOMAIN, MAX_IR_VERSION
from ..schemas import register_schemas
from .errors import ExportError

__all__ = [
    "SCOPE_PREFIX",
    "SpikingNode",
    "scope_index",
    "layer_name",
    "all_nodes",
    "raise_on_unsupported",
    "name_spiking_nodes",
    "rename_io",
    "name_dynamic_dims",
    "fix_opsets_and_ir",
    "fuse_sequence_dense",
    "attribute_nodes",
    "check_model",
]

#: Name-scope prefix of every traced layer; ONNX node names inherit it.
SCOPE_PREFIX = "sxl"
_SCOPE_RE = re.compile(rf"(?:^|/){SCOPE_PREFIX}(\d+)(?:_\d+)?/")
# Default-domain opset against which "is this a standard op" is asked.
_CHECK_OPSET = 21
# Domains whose nodes onnxruntime runs besides the default one.
_KNOWN_DOMAINS = (DOMAIN, "ai.onnx.ml", "com.microsoft")

Shape = Tuple[Optional[int], ...]


@dataclass
class SpikingNode:
    """What one spiking layer call becomes: one node of the ``spikeonnx`` domain."""

    op_type: str
    node_name: str
    layer_name: str  # the layer of the exported model the node is attributed to
    attrs: Dict[str, Any]
    output_shapes: List[Shape] = field(default_factory=list)
    elem_type: int = onnx.TensorProto.FLOAT  # of the main input and every output (float or double)


def scope_index(node_name: str) -> Optional[int]:
    """Index of the outermost layer scope in an ONNX node name, or ``None``.

    >>> scope_index("sxl3/dense/MatMul"), scope_index("sxl3_1/sxl4/Relu"), scope_index("Identity")
    (3, 3, None)
    """
    match = _SCOPE_RE.search(node_name + "/")
    return None if match is None else int(match.group(1))


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph`` and of its subgraphs (``If``/``Loop`` bodies), depth first."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from all_nodes(sub)


def layer_name(layer: Any) -> str:
    """The name of a layer in messages and metadata (its class name if it has none)."""
    return str(getattr(layer, "name", None) or type(layer).__name__)


def raise_on_unsupported(model: onnx.ModelProto, layers: Mapping[int, Any]) -> None:
    """Fail with a clear message if tf2onnx left TensorFlow ops in the graph.

    Parameters
    ----------
    model : onnx.ModelProto
        tf2onnx's output.
    layers : mapping
        Scope index -> the layer traced in that scope (named in the message with
        its class, so the user knows which class needs an export handler).

    Raises
    ------
    ExportError
        If a node is neither a standard ONNX op nor of a domain onnxruntime knows.
    """
    bad: Dict[int, Tuple[Any, List[str]]] = {}
    for node in all_nodes(model.graph):
        if node.domain in ("", "ai.onnx"):
            try:
                onnx.defs.get_schema(node.op_type, _CHECK_OPSET, "")
                continue
            except onnx.defs.SchemaError:
                pass
        elif node.domain in _KNOWN_DOMAINS:
            continue
        index = scope_index(node.name)
        layer = None if index is None else layers.get(index)
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
            f"layer {layer_name(layer)!r} of class {cls} uses TensorFlow ops tf2onnx cannot "
            f"convert ({', '.join(sorted(set(ops)))}); register an export handler for it with "
            f"spikeonnx.register_export_handler({cls}, handler)"
        )
    raise ExportError("cannot export: " + "; ".join(parts))


def name_spiking_nodes(model: onnx.ModelProto, nodes: Mapping[str, SpikingNode]) -> None:
    """Rename ``spikeonnx`` nodes (tf2onnx name -> :class:`SpikingNode`) and declare their shapes."""
    for node in model.graph.node:
        spec = nodes.get(node.name) if node.domain == DOMAIN else None
        if spec is not None:
            node.name = spec.node_name
            _declare_node_shapes(model.graph, node, spec)


def _declare_node_shapes(graph: onnx.GraphProto, node: onnx.NodeProto, spec: SpikingNode) -> None:
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
    tensors += [
        (name, shape, i > 0) for i, (name, shape) in enumerate(zip(node.output, spec.output_shapes, strict=False))
    ]
    for name, shape, state_like in tensors:
        if not name or name in graph_inputs:
            continue
        info = infos.get(name)
        if info is None:
            info = graph.value_info.add()
            info.name = name
            infos[name] = info
        tensor_type = info.type.tensor_type
        tensor_type.elem_type = spec.elem_type
        tensor_type.ClearField("shape")
        for axis, d in enumerate(shape):
            dim = tensor_type.shape.dim.add()
            if d is not None:
                dim.dim_value = int(d)
            elif axis == (0 if state_like else batch_axis):
                dim.dim_param = "batch"
            else:
                dim.dim_param = f"{node.name}_{'state' if state_like else 'seq'}_dim{axis}"


def rename_io(model: onnx.ModelProto, input_names: Sequence[str], output_names: Sequence[str]) -> None:
    """Give the graph inputs/outputs their final names (tf2onnx keeps TF tensor names).

    Raises
    ------
    ExportError
        If the counts differ from the graph's, or a new name is already used by
        another tensor.
    """
    graph = model.graph
    if len(graph.input) != len(input_names) or len(graph.output) != len(output_names):
        raise ExportError(
            f"internal: tf2onnx produced {len(graph.input)} inputs / {len(graph.output)} outputs, "
            f"expected {len(input_names)} / {len(output_names)}"
        )
    mapping = {}
    for value, new in zip(list(graph.input) + list(graph.output), [*input_names, *output_names], strict=True):
        if value.name != new:
            mapping[value.name] = new
    if not mapping:
        return
    taken = {n for node in all_nodes(graph) for n in list(node.input) + list(node.output)}
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


def name_dynamic_dims(
    model: onnx.ModelProto,
    axes: Mapping[str, Tuple[Optional[int], Optional[int]]],
    output_shapes: Sequence[Shape],
) -> None:
    """Give graph outputs their static shapes; name batch/time dimensions ``batch`` and ``time``.

    Parameters
    ----------
    axes : mapping
        Graph input/output name -> (batch axis, time axis), either ``None``.
    output_shapes : sequence of shapes
        Static shape of each graph output (``None`` for a dynamic dimension), as traced.
    """
    for value, shape in zip(model.graph.output, output_shapes, strict=False):
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


def fix_opsets_and_ir(model: onnx.ModelProto) -> None:
    """Drop the ``spikeonnx`` opset import if no node uses it; lower the IR version to the contract's."""
    uses_ours = any(n.domain == DOMAIN for n in all_nodes(model.graph))
    keep = [o for o in model.opset_import if uses_ours or o.domain != DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)


def _topological(nodes: List[onnx.NodeProto], graph: onnx.GraphProto) -> List[onnx.NodeProto]:
    """``nodes`` in an order where every input is produced first, else as given (stable)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    produced = {name for node in nodes for name in node.output}
    ordered: List[onnx.NodeProto] = []
    waiting = list(nodes)
    while waiting:
        progress = []
        for node in waiting:
            # inputs nobody in the graph produces (outer-scope names) do not hold a node back
            if all(name in ready or name not in produced for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                progress.append(node)
        if len(progress) == len(waiting):  # a cycle: leave the rest as it was
            return ordered + progress
        waiting = progress
    return ordered


def fuse_sequence_dense(model: onnx.ModelProto) -> int:
    """Turn tf2onnx's ``Dense`` on a sequence into one ``Gemm`` with its bias.

    tf2onnx exports ``Dense`` on ``(B, T, K)`` as ``Reshape`` to ``(B*T, K)``,
    ``MatMul``, ``Reshape`` back to ``(B, T, N)`` and ``Add`` of the bias, often followed
    by the ``Relu`` of a ``SpikingActivation("relu")``. Each of those is a pass over the
    whole ``(B, T, N)`` tensor. This pass rewrites

    ``Reshape(x, (-1, K)) -> MatMul(W) -> Reshape(s) -> Add(b) [-> Relu]``

    into ``Reshape(x, (-1, K)) -> Gemm(W, b) [-> Relu] -> Reshape(s)``, which
    onnxruntime runs as one fused ``Gemm`` (+ ``Relu``): the same value up to the
    order of float additions (a ``Gemm`` may add the bias to partial sums of the
    product). Only exact matches are rewritten: float constant ``W (K, N)`` and
    ``b (N,)``, a constant 2-element first reshape, and every intermediate tensor used
    once and not a graph output. Node names are kept (the
    ``Gemm`` takes the ``MatMul``'s), so layer attribution is unchanged.

    Returns
    -------
    int
        The number of rewritten ``Dense`` layers.
    """
    graph = model.graph
    rewritten = 0
    while True:
        match = _sequence_dense(graph)
        if match is None:
            return rewritten
        i_matmul, i_back, i_add, i_relu = match
        matmul, back, add = graph.node[i_matmul], graph.node[i_back], graph.node[i_add]
        relu = graph.node[i_relu] if i_relu is not None else None
        gemm = onnx.helper.make_node("Gemm", [matmul.input[0], matmul.input[1], add.input[1]], [matmul.output[0]],
                                     name=matmul.name)
        # Reshape back last: Gemm -> [Relu ->] Reshape, writing the tensor the chain ended in.
        end = (relu or add).output[0]
        old_back = back.output[0]
        if relu is not None:
            relu.input[0] = matmul.output[0]
            relu.output[0] = add.output[0]
            back.input[0] = add.output[0]
        else:
            back.input[0] = matmul.output[0]
        back.output[0] = end
        # A tensor that changed shape (the Relu's is now (B*T, N)) loses its declared shape.
        stale = {add.output[0], old_back}
        kept = [v for v in graph.value_info if v.name not in stale]
        del graph.value_info[:]
        graph.value_info.extend(kept)
        nodes = [gemm if i == i_matmul else node for i, node in enumerate(graph.node) if i != i_add]
        ordered = _topological(nodes, graph)
        del graph.node[:]
        graph.node.extend(ordered)
        rewritten += 1


def _sequence_dense(graph: onnx.GraphProto) -> Optional[Tuple[int, int, int, Optional[int]]]:
    """Indices of the first ``(MatMul, Reshape back, Add, Relu or None)`` :func:`fuse_sequence_dense` rewrites."""
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    nodes = list(graph.node)
    producer: Dict[str, int] = {}
    uses: Dict[str, List[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.output:
            producer[name] = i
        for name in node.input:
            uses.setdefault(name, []).append(i)

    def only_use(name: str) -> Optional[int]:
        users = uses.get(name, [])
        return users[0] if len(users) == 1 and name not in outputs else None

    def standard(i: Optional[int], op: str) -> bool:
        return i is not None and nodes[i].op_type == op and nodes[i].domain in ("", "ai.onnx")

    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)
    for m, matmul in enumerate(nodes):
        if not standard(m, "MatMul") or len(matmul.input) != 2:
            continue
        first = producer.get(matmul.input[0])
        weight = inits.get(matmul.input[1])
        if not standard(first, "Reshape") or weight is None or len(weight.dims) != 2 or weight.data_type not in floats:
            continue
        first_shape = inits.get(nodes[first].input[1]) if len(nodes[first].input) > 1 else None
        if first_shape is None or list(first_shape.dims) != [2]:
            continue
        back = only_use(matmul.output[0])
        if not standard(back, "Reshape") or nodes[back].input[0] != matmul.output[0]:
            continue
        add = only_use(nodes[back].output[0])
        if not standard(add, "Add") or nodes[add].input[0] != nodes[back].output[0]:
            continue
        bias = inits.get(nodes[add].input[1])
        if bias is None or list(bias.dims) != [weight.dims[1]] or bias.data_type != weight.data_type:
            continue
        relu = only_use(nodes[add].output[0])
        return m, back, add, relu if standard(relu, "Relu") else None
    return None


def attribute_nodes(
    model: onnx.ModelProto, spiking: Mapping[str, str], scopes: Mapping[int, Any]
) -> Dict[str, str]:
    """ONNX node name -> Keras layer name, for every top-level node we can attribute.

    Parameters
    ----------
    spiking : mapping
        ``spikeonnx`` node name -> layer name (a spiking node inside a nested
        model belongs to the nested model, the layer the exported model lists).
    scopes : mapping
        Scope index -> the layer traced in it; other nodes belong to the layer of
        their outermost scope.
    """
    layers = {}
    for node in model.graph.node:
        if not node.name:
            continue
        if node.name in spiking and node.domain == DOMAIN:
            layers[node.name] = spiking[node.name]
            continue
        index = scope_index(node.name)
        if index is not None and scopes.get(index) is not None:
            layers[node.name] = layer_name(scopes[index])
    return layers


def check_model(model: onnx.ModelProto) -> None:
    """Run the full ONNX checker with the ``spikeonnx`` schemas registered.

    Raises
    ------
    ExportError
        If the model does not pass.
    """
    register_schemas()
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ExportError(f"the exported model does not pass the ONNX checker: {err}") from err
