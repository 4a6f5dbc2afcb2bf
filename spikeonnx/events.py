"""Event-driven inference: weighted layers fed by spikes compute only where a spike arrived.

After a ``SpikingActivation`` most inputs of the next ``MatMul``/``Gemm``/``Conv`` are
zero. :func:`optimize` rewrites every such node (its data input coming from a
``SpikingActivation`` directly or through ``Reshape``/``Transpose``/``Flatten``/
``Squeeze``/``Unsqueeze``/``Identity``, its weight a constant) into the ``spikeonnx``
op of the same value:

============  ==============  ===============================================
standard op   event op        conditions
============  ==============  ===============================================
``MatMul``    ``EventMatMul``  weight 2-D
``Gemm``      ``EventGemm``    ``transA = 0``; ``C`` absent or constant
``Conv``      ``EventConv``    1-D or 2-D (input rank 3 or 4)
============  ==============  ===============================================

In a spiking model (one with a ``SpikingActivation``), a weighted node whose data input
is a model input (through the same ops) is rewritten too: a spiking model's input is
events, or a frame held over time steps, whose rows (images) repeat; the kernels compute
each run of equal rows (images) once. Those nodes receive no spikes, so
:func:`event_inputs` leaves them out.

The op library's kernels skip zero inputs (each nonzero adds its weight row or kernel
slice to the output) and take a dense path for dense inputs (the library's own GEMM or
direct convolution, or onnxruntime's kernel where that is faster), deciding per call from
the counted density. Each event op also gets a model-local function whose body is
the original standard op with the same attributes, so the file still runs anywhere ONNX
runs (stock onnxruntime, ``onnx.reference``, other runtimes), with the same value.
:func:`fuse_relu` makes, for execution only, an event op and the ``Relu`` after it one
node of the library, and :func:`fuse_spiking` an ``EventConv`` and the
``SpikingActivation`` it feeds (:class:`spikeonnx.runtime.InferenceSession` does both).

The results equal the dense graph's up to float summation order (the event kernels add
the same products in another order); a zero input times an infinite weight contributes
0 in the kernel where the dense product gives NaN.

This module imports only onnx and the contract; it never needs TensorFlow.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Set

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .contract import (
    DOMAIN,
    EVENT_OP_TYPES,
    EVENT_OPS,
    FUSED_RELU_OPS,
    FUSED_SPIKING_OP,
    MAX_IR_VERSION,
    OPSET_VERSION,
    ModelLike,
    load_model,
)

__all__ = [
    "optimize",
    "rewrite_events",
    "fuse_relu",
    "fuse_spiking",
    "fuse",
    "EVENT_OP_TYPES",
    "STANDARD_OP",
    "make_event_function",
    "event_nodes",
    "event_inputs",
    "synaptic_events",
]

#: Event op -> the standard op it computes.
STANDARD_OP: Dict[str, str] = {event: standard for standard, event in EVENT_OPS.items()}
_EVENT_OP = EVENT_OPS

# Formal inputs and attributes of each event op (those of the standard op; the attributes
# are passed on to the body by reference).
_SIGNATURES = {
    "EventMatMul": (("x", "W"), ()),
    "EventGemm": (("A", "B", "C"), ("alpha", "beta", "transA", "transB")),
    "EventConv": (("X", "W", "B"), ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")),
}
_REQUIRED_INPUTS = 2

# Ops that only move or relabel elements: a zero stays a zero, so spikes stay spikes.
_PLUMBING = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
_DEFAULT_DOMAINS = ("", "ai.onnx")
_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)
# Model-local functions need IR 8.
_MIN_IR = 8


def make_event_function(op_type: str, opset: int) -> onnx.FunctionProto:
    """The model-local function of an event op: its standard op, attributes by reference.

    Parameters
    ----------
    op_type : str
        One of :data:`EVENT_OP_TYPES`.
    opset : int
        Default-domain opset the body imports (the model's).

    Returns
    -------
    onnx.FunctionProto
    """
    if op_type not in _SIGNATURES:
        raise ValueError(f"unknown event op {op_type!r}; known: {', '.join(EVENT_OP_TYPES)}")
    inputs, attributes = _SIGNATURES[op_type]
    body = helper.make_node(STANDARD_OP[op_type], list(inputs), ["y"], name=f"{op_type}_body")
    for name in attributes:
        # An attribute the calling node does not set is left out here too: the standard
        # op's default applies, exactly as on the original node.
        ref = onnx.AttributeProto()
        ref.name = name
        ref.ref_attr_name = name
        ref.type = _ATTRIBUTE_TYPES[name]
        body.attribute.append(ref)
    return helper.make_function(
        DOMAIN,
        op_type,
        list(inputs),
        ["y"],
        [body],
        opset_imports=[helper.make_opsetid("", opset)],
        attributes=list(attributes),
        doc_string=f"{op_type}: event-driven {STANDARD_OP[op_type]} (same value); the body is the standard op.",
    )


_ATTRIBUTE_TYPES = {
    "alpha": onnx.AttributeProto.FLOAT,
    "beta": onnx.AttributeProto.FLOAT,
    "transA": onnx.AttributeProto.INT,
    "transB": onnx.AttributeProto.INT,
    "auto_pad": onnx.AttributeProto.STRING,
    "dilations": onnx.AttributeProto.INTS,
    "group": onnx.AttributeProto.INT,
    "kernel_shape": onnx.AttributeProto.INTS,
    "pads": onnx.AttributeProto.INTS,
    "strides": onnx.AttributeProto.INTS,
}


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in _DEFAULT_DOMAINS:
            return int(entry.version)
    raise ValueError("the model imports no default-domain opset")


def _constants(graph: onnx.GraphProto) -> Dict[str, onnx.TensorProto]:
    """Initializers and ``Constant`` node values of the graph, by name (shape and type)."""
    found = {t.name: t for t in graph.initializer}
    inputs = {i.name for i in graph.input}
    for name in list(found):
        if name in inputs:  # an initializer that is also an input can be overridden
            del found[name]
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    found[node.output[0]] = attr.t
    return found


def _attribute(node: onnx.NodeProto, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _eligible(node: onnx.NodeProto, spikes: Set[str], constants: Dict[str, onnx.TensorProto]) -> bool:
    """Whether ``node`` is a weighted op on spikes that its event op computes."""
    if node.domain not in _DEFAULT_DOMAINS or node.op_type not in _EVENT_OP:
        return False
    if len(node.input) < _REQUIRED_INPUTS or node.input[0] not in spikes:
        return False
    weight = constants.get(node.input[1])
    if weight is None or weight.data_type not in _FLOAT_TYPES:
        return False
    if node.op_type == "MatMul":
        return len(weight.dims) == 2 and len(node.input) == 2
    if node.op_type == "Gemm":
        if len(weight.dims) != 2 or _attribute(node, "transA", 0) != 0:
            return False
        return len(node.input) < 3 or node.input[2] == "" or node.input[2] in constants
    # Conv: 1-D or 2-D only.
    return len(weight.dims) in (3, 4) and len(node.input) <= 3


def optimize(model: ModelLike, *, functions: bool = True) -> onnx.ModelProto:
    """Rewrite weighted nodes fed by spikes into event-driven ``spikeonnx`` ops.

    Parameters
    ----------
    model : onnx.ModelProto, str, os.PathLike or bytes
        The model (not changed: a rewritten copy is returned).
    functions : bool
        Give each event op a model-local function (its standard op), so the result
        runs without the op library too. Without them the model needs the library.

    Returns
    -------
    onnx.ModelProto
        The rewritten model; node names, inputs, outputs and attribute values are kept,
        ``op_type`` and ``domain`` change, and attributes left to their defaults are
        written out (``onnx.reference`` needs them set). A model with nothing to rewrite
        comes back unchanged (as a copy).

    Raises
    ------
    ValueError
        If the model cannot be read, or has no default-domain opset while a node is
        rewritten.
    """
    out, _ = load_model(model)  # a copy
    rewrite_events(out, functions=functions)
    return out


def rewrite_events(model: onnx.ModelProto, *, functions: bool = True) -> List[str]:
    """:func:`optimize` in place: rewrite ``model`` and return the names of the rewritten nodes."""
    graph = model.graph
    constants = _constants(graph)
    spikes = _reached(graph, set(), spiking_ops=True)
    # A spiking model's data inputs are events too, or frames held over time steps: rows
    # (images) equal to the one before, which the event kernels compute once.
    inputs = _reached(graph, _data_inputs(graph, constants), spiking_ops=False) if _is_spiking(graph) else set()
    rewritten: Dict[str, List[onnx.NodeProto]] = {}
    for node in graph.node:
        if _eligible(node, spikes, constants) or _eligible(node, inputs, constants):
            event = _EVENT_OP[node.op_type]
            _write_defaults(node, list(constants[node.input[1]].dims))
            node.op_type = event
            node.domain = DOMAIN
            rewritten.setdefault(event, []).append(node)
    if not rewritten:
        return []
    if not any(entry.domain == DOMAIN for entry in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, OPSET_VERSION))
    if functions:
        _attach(model, sorted(rewritten), rewritten)
    return [node.name for nodes in rewritten.values() for node in nodes]


def fuse_relu(model: ModelLike) -> onnx.ModelProto:
    """For execution only: each event node whose output reaches a ``Relu`` and nothing
    else (directly or through ``Reshape``/``Transpose``/``Flatten``/``Squeeze``/
    ``Unsqueeze``/``Identity``, each of a single consumer) becomes the op library's
    ``<op>Relu`` (:data:`spikeonnx.contract.FUSED_RELU_OPS`) and the ``Relu`` goes.

    ``Relu`` commutes with moving data, so the value is the same, bit for bit: the kernel
    sets negatives to 0 as onnxruntime's ``Relu`` does (NaN and -0 pass). A real export
    puts a ``Relu`` before every ``SpikingActivation("relu")``; fused, the output is
    written once instead of written, read and written again.

    The fused ops run only in the op library (no function bodies, no schemas): this is
    what :class:`spikeonnx.runtime.InferenceSession` hands to onnxruntime, never a file.

    Parameters
    ----------
    model : onnx.ModelProto, str, os.PathLike or bytes
        The model (not changed).

    Returns
    -------
    onnx.ModelProto
        A copy with the fusions made (node names kept; the ``Relu``'s output tensor
        name now comes from the last node before it).

    Raises
    ------
    FileNotFoundError
        If ``model`` is a path that does not exist.
    ValueError
        If the model cannot be read.
    """
    out, _ = load_model(model)  # a copy
    _fuse_relu(out.graph)
    return out


def _fuse_relu(graph: onnx.GraphProto) -> None:
    """fuse_relu on ``graph``, in place."""
    users = _users(graph)
    outputs = {o.name for o in graph.output}
    fused: List[onnx.NodeProto] = []
    renamed: Set[str] = set()
    for node in graph.node:
        if node.domain != DOMAIN or node.op_type not in FUSED_RELU_OPS:
            continue
        chain: List[onnx.NodeProto] = []
        tensor = node.output[0]
        relu = None
        while (user := _only_user(users, outputs, tensor)) is not None and user.domain in _DEFAULT_DOMAINS:
            if user.op_type == "Relu":
                relu = user
                break
            if user.op_type not in _PLUMBING or any(name == tensor for name in user.input[1:]):
                break
            chain.append(user)
            tensor = user.output[0]
        if relu is None:
            continue
        node.op_type = FUSED_RELU_OPS[node.op_type]
        last = chain[-1] if chain else node
        renamed.add(last.output[0])
        last.output[0] = relu.output[0]
        fused.append(relu)
    _drop(graph, fused, renamed)


def fuse_spiking(model: ModelLike) -> onnx.ModelProto:
    """For execution only: each ``EventConv`` or ``EventConvRelu`` whose output is the
    data input of one ``Reshape`` (``allowzero`` 0; its shape, constant or computed,
    becomes the fused node's fourth input), directly or through a ``Transpose`` to
    channels-last (``perm`` ``[0, 2, 3, 1]`` or ``[0, 2, 1]``, as tf2onnx exports Keras
    layers), and nothing else, whose output in turn is the rates of one
    ``SpikingActivation`` (batch-major, no ``initial_voltage``, no ``final_voltage``) and
    nothing else, becomes the op library's :data:`~spikeonnx.contract.FUSED_SPIKING_OP`,
    and the nodes in between go.

    The fused node convolves each image into a buffer that stays in cache and spikes it
    from there, a sequence's steps in order: the convolution's output, in a spiking CNN
    the largest tensor, is not written to memory and read back. The value is the
    nodes', bit for bit. Like :func:`fuse_relu`, this is what
    :class:`spikeonnx.runtime.InferenceSession` hands to onnxruntime, never a file;
    apply it after :func:`fuse_relu`, which turns ``EventConv`` and ``Relu`` into
    ``EventConvRelu``.

    Parameters
    ----------
    model : onnx.ModelProto, str, os.PathLike or bytes
        The model (not changed).

    Returns
    -------
    onnx.ModelProto
        A copy with the fusions made (the convolution's node name kept; its output is
        now the ``SpikingActivation``'s).

    Raises
    ------
    FileNotFoundError
        If ``model`` is a path that does not exist.
    ValueError
        If the model cannot be read.
    """
    out, _ = load_model(model)  # a copy
    _fuse_spiking(out.graph)
    return out


def fuse(model: ModelLike) -> onnx.ModelProto:
    """:func:`fuse_relu`, then :func:`fuse_spiking`, on one copy of ``model``, then the
    fused convolutions hand their spikes on channels-last (a fused convolution's spikes
    reshaped into the next one's input, or a ``Transpose`` from channels-last before one:
    see docs/op-contract.md): what :class:`spikeonnx.runtime.InferenceSession` hands to
    onnxruntime (same parameters and errors as those two)."""
    out, _ = load_model(model)  # a copy
    _fuse_relu(out.graph)
    _fuse_spiking(out.graph)
    _fuse_layout(out.graph)
    return out


def _fuse_spiking(graph: onnx.GraphProto) -> None:
    """fuse_spiking on ``graph``, in place."""
    users = _users(graph)
    outputs = {o.name for o in graph.output}
    conv = EVENT_OPS["Conv"]
    gone: List[onnx.NodeProto] = []
    renamed: Set[str] = set()
    for node in graph.node:
        if node.domain != DOMAIN or node.op_type not in (conv, FUSED_RELU_OPS[conv]):
            continue
        reshape = _only_user(users, outputs, node.output[0])
        transpose = None
        if reshape is not None and reshape.op_type == "Transpose" and reshape.domain in _DEFAULT_DOMAINS:
            # tf2onnx's way back to Keras' channels-last layout after a Conv
            perm = list(_attribute(reshape, "perm", []))
            if len(perm) in (3, 4) and perm == [0, *range(2, len(perm)), 1]:
                transpose, reshape = reshape, _only_user(users, outputs, reshape.output[0])
        if (reshape is None or reshape.op_type != "Reshape" or reshape.domain not in _DEFAULT_DOMAINS
                or len(reshape.input) != 2 or _attribute(reshape, "allowzero", 0) != 0):
            continue
        spiking = _only_user(users, outputs, reshape.output[0])
        if (spiking is None or spiking.domain != DOMAIN or spiking.op_type != "SpikingActivation"
                or any(spiking.input[1:]) or any(spiking.output[1:]) or _attribute(spiking, "time_major", 0) != 0):
            continue
        relu = int(node.op_type != conv)
        node.op_type = FUSED_SPIKING_OP
        node.input.extend([""] * (3 - len(node.input)) + [reshape.input[1]])  # X, W, B or none, shape
        node.attribute.extend([helper.make_attribute("relu", relu),
                               helper.make_attribute("channels_last", int(transpose is not None))]
                              + [a for a in spiking.attribute if a.name in ("dt", "seed")])
        between = [n for n in (transpose, reshape) if n is not None]
        renamed.update([node.output[0]] + [n.output[0] for n in between])
        node.output[0] = spiking.output[0]
        gone.extend(between + [spiking])
    _drop(graph, gone, renamed)


def _fuse_layout(graph: onnx.GraphProto) -> None:
    """Between two fused convolutions, spikes channels-last, in place: the fused node
    spikes from the rows it accumulates, (positions, channels), and the next one's gather
    lists a channels-last image's nonzeros in its bucket order without sorting them.

    - ``EventConvSpiking`` A (channels-first units) -> ``Reshape`` to ``(n, C, [H,] W)``
      -> ``EventConvSpiking`` B: A writes its spikes channels-last
      (``spikes_channels_last``, its units keeping their numbers, so their seeded
      voltages), the ``Reshape`` goes to ``(n, [H,] W, C)`` and B reads them so
      (``input_channels_last``). Both shapes must be constants, A's ``(B, T, C, [H,] W)``
      with C, H, W those of the ``Reshape`` (A checks at run time that they are its
      output's).
    - ``Transpose`` from channels-last (``perm`` ``[0, 3, 1, 2]`` or ``[0, 2, 1]``, tf2onnx's
      before a Keras convolution) -> ``EventConvSpiking`` B: the ``Transpose`` goes and B
      reads its input (``input_channels_last``).

    Each tensor in between must have no other reader and not be a graph output. The
    values are the same, bit for bit.
    """
    users = _users(graph)
    outputs = {o.name for o in graph.output}
    constants = _constants(graph)
    makers = {out: node for node in graph.node for out in node.output}
    gone: List[onnx.NodeProto] = []
    renamed: Set[str] = set()
    made: Set[str] = set()
    replaced: Set[str] = set()
    taken = ({t.name for t in graph.initializer} | {v.name for v in graph.input}
             | {out for node in graph.node for out in node.output})

    def flag(node: onnx.NodeProto, name: str) -> int:
        return int(_attribute(node, name, 0))

    def ints(name: str) -> Optional[List[int]]:
        tensor = constants.get(name)
        if tensor is None or tensor.data_type != onnx.TensorProto.INT64 or len(tensor.dims) != 1:
            return None
        return [int(v) for v in numpy_helper.to_array(tensor)]

    for b in graph.node:
        if b.domain != DOMAIN or b.op_type != FUSED_SPIKING_OP or flag(b, "input_channels_last"):
            continue
        before = makers.get(b.input[0])
        if before is None or before.domain not in _DEFAULT_DOMAINS or _only_user(users, outputs, b.input[0]) is not b:
            continue
        if before.op_type == "Transpose":
            perm = list(_attribute(before, "perm", []))
            if len(perm) in (3, 4) and perm == [0, len(perm) - 1, *range(1, len(perm) - 1)]:
                b.input[0] = before.input[0]
                b.attribute.append(helper.make_attribute("input_channels_last", 1))
                renamed.add(before.output[0])
                gone.append(before)
            continue
        a = makers.get(before.input[0]) if before.op_type == "Reshape" and len(before.input) == 2 else None
        if (a is None or a.domain != DOMAIN or a.op_type != FUSED_SPIKING_OP or flag(a, "channels_last")
                or flag(a, "spikes_channels_last") or _attribute(before, "allowzero", 0) != 0
                or _only_user(users, outputs, a.output[0]) is not before):
            continue
        view, flat = ints(a.input[3]), ints(before.input[1])
        if (view is None or flat is None or len(flat) not in (3, 4) or len(view) != len(flat) + 1
                or any(v <= 0 for v in view) or view[2:] != flat[1:] or flat[0] == 0):
            continue
        name = f"{before.input[1]}/channels_last"
        while name in taken and name not in made:  # a name the graph already uses
            name += "_"
        if name not in made:  # a shape two Reshapes share is permuted once
            graph.initializer.append(helper.make_tensor(name, onnx.TensorProto.INT64, [len(flat)],
                                                        [flat[0], *flat[2:], flat[1]]))
            made.add(name)
            taken.add(name)
        replaced.add(before.input[1])
        before.input[1] = name
        a.attribute.append(helper.make_attribute("spikes_channels_last", 1))
        b.attribute.append(helper.make_attribute("input_channels_last", 1))
        renamed.update([a.output[0], before.output[0]])  # their shapes change
    _drop(graph, gone, renamed)
    _drop_unread(graph, replaced)


def _drop_unread(graph: onnx.GraphProto, names: Set[str]) -> None:
    """Remove the initializers and ``Constant`` nodes of ``names`` that no node reads any
    more, in this graph or a subgraph (onnxruntime warns of each unused initializer). One
    that is a graph input or output stays."""
    read: Set[str] = set()

    def reads(g: onnx.GraphProto) -> None:
        for node in g.node:
            read.update(node.input)
            for attr in node.attribute:
                for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                    reads(sub)

    reads(graph)
    kept = {v.name for v in graph.input} | {v.name for v in graph.output} | read
    unread = names - kept
    for tensor in [t for t in graph.initializer if t.name in unread]:
        graph.initializer.remove(tensor)
    for node in [n for n in graph.node if n.op_type == "Constant" and n.domain in _DEFAULT_DOMAINS
                 and list(n.output) and n.output[0] in unread]:
        graph.node.remove(node)


def _users(graph: onnx.GraphProto) -> Dict[str, List[onnx.NodeProto]]:
    """Tensor name -> the nodes that take it as an input."""
    users: Dict[str, List[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _only_user(users: Dict[str, List[onnx.NodeProto]], outputs: Set[str], tensor: str) -> Optional[onnx.NodeProto]:
    """The one node that reads ``tensor``, as its data (first) input, if ``tensor`` is not
    a graph output and has no other reader; else None."""
    found = users.get(tensor, [])
    if tensor in outputs or len(found) != 1 or found[0].input[0] != tensor:
        return None
    return found[0]


def _drop(graph: onnx.GraphProto, nodes: List[onnx.NodeProto], renamed: Set[str]) -> None:
    """Remove fused-away ``nodes`` and the value infos of the tensors no node makes any more."""
    for node in nodes:
        graph.node.remove(node)
    kept = [v for v in graph.value_info if v.name not in renamed]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def _write_defaults(node: onnx.NodeProto, w_dims: List[int]) -> None:
    """Write out the attributes ``node`` (a standard ``MatMul``/``Gemm``/``Conv``) leaves
    to their defaults, with those defaults: the function body references every attribute,
    and ``onnx.reference`` needs each one set on the calling node. ``pads`` is left out
    where ``auto_pad`` computes the padding (the two do not go together)."""
    spatial = len(w_dims) - 2
    defaults = {
        "Gemm": {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0},
        "Conv": {"auto_pad": "NOTSET", "group": 1, "dilations": [1] * spatial, "strides": [1] * spatial,
                 "kernel_shape": w_dims[2:], "pads": [0] * (2 * spatial)},
    }.get(node.op_type, {})
    present = {a.name for a in node.attribute}
    auto_pad = _attribute(node, "auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) != "NOTSET":
        defaults.pop("pads", None)
    for name, value in defaults.items():
        if name not in present:
            node.attribute.append(helper.make_attribute(name, value))


def _attach(model: onnx.ModelProto, op_types: List[str], nodes: Dict[str, List[onnx.NodeProto]]) -> None:
    opset = _default_opset(model)
    existing = {(f.domain, f.name) for f in model.functions}
    for op_type in op_types:
        # Every node of the op passes all formal inputs ("" for an absent bias): some
        # runtimes call a function only with exactly its inputs.
        width = len(_SIGNATURES[op_type][0])
        for node in nodes[op_type]:
            while len(node.input) < width:
                node.input.append("")
        if (DOMAIN, op_type) not in existing:
            model.functions.append(make_event_function(op_type, opset))
    if model.ir_version < _MIN_IR:
        model.ir_version = min(_MIN_IR, MAX_IR_VERSION)


def event_nodes(model: onnx.ModelProto) -> List[onnx.NodeProto]:
    """The event-op nodes of ``model``'s main graph."""
    return [n for n in model.graph.node if n.domain == DOMAIN and n.op_type in STANDARD_OP]


def event_inputs(model: onnx.ModelProto) -> Dict[str, str]:
    """Event-node name -> the name of its data input (the tensor whose nonzeros it processes),
    for the event nodes fed by spikes, whose nonzero inputs are synaptic events: not those
    :func:`optimize` puts on a spiking model's data input (which compute repeated rows once).
    In a model without ``SpikingActivation`` the data inputs are taken as spikes.

    Unnamed event nodes are keyed ``"{op_type}:{index in graph.node}"``.
    """
    spikes = _spike_tensors(model.graph)
    found = {}
    for index, node in enumerate(model.graph.node):
        if node.domain == DOMAIN and node.op_type in STANDARD_OP and node.input[0] in spikes:
            found[node.name or f"{node.op_type}:{index}"] = node.input[0]
    return found


def _spike_tensors(graph: onnx.GraphProto) -> Set[str]:
    """``SpikingActivation`` outputs, and what plumbing makes of them; in a graph without
    ``SpikingActivation`` (event ops given spikes directly), its data inputs and what
    plumbing makes of them."""
    sources = set() if _is_spiking(graph) else _data_inputs(graph, _constants(graph))
    return _reached(graph, sources, spiking_ops=True)


def _is_spiking(graph: onnx.GraphProto) -> bool:
    return any(n.domain == DOMAIN and n.op_type == "SpikingActivation" for n in graph.node)


def _data_inputs(graph: onnx.GraphProto, constants: Dict[str, onnx.TensorProto]) -> Set[str]:
    return {i.name for i in graph.input if i.name not in constants}


def _reached(graph: onnx.GraphProto, sources: Set[str], *, spiking_ops: bool) -> Set[str]:
    """``sources`` (and ``SpikingActivation`` outputs if ``spiking_ops``), and what plumbing
    makes of them; graph.node is in topological order, so one pass finds them all."""
    found = set(sources)
    for node in graph.node:
        if spiking_ops and node.domain == DOMAIN and node.op_type == "SpikingActivation" and node.output:
            found.add(node.output[0])
        elif node.domain in _DEFAULT_DOMAINS and node.op_type in _PLUMBING and node.input and node.input[0] in found:
            found.add(node.output[0])
    return found


def synaptic_events(model: onnx.ModelProto, node_name: str, x: np.ndarray) -> int:
    """Synaptic events an event node processes for the data input ``x``.

    The number of (nonzero input, output it reaches) pairs, exactly the multiply-adds
    the event kernel does: ``nnz(x) * N`` for ``EventMatMul``/``EventGemm`` with ``N``
    outputs, and for ``EventConv`` each nonzero input element counts ``M / group``
    times the kernel taps that reach an output from its position (fewer at the
    borders; zero padding never counts).

    Parameters
    ----------
    model : onnx.ModelProto
        The model holding the node (its weight must be a constant).
    node_name : str
        A key of :func:`event_inputs`.
    x : numpy.ndarray
        The node's data input of one run.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If there is no such event node, its weight is not a constant, or ``x`` does
        not fit it.
    """
    nodes = {(n.name or f"{n.op_type}:{i}"): n for i, n in enumerate(model.graph.node)}
    node = nodes.get(node_name)
    if node is None or node.domain != DOMAIN or node.op_type not in STANDARD_OP:
        raise ValueError(f"no event node {node_name!r}; the model's are {sorted(event_inputs(model))}")
    weight = _constants(model.graph).get(node.input[1])
    if weight is None:
        raise ValueError(f"event node {node_name!r}: its weight {node.input[1]!r} is not a constant")
    w_shape = list(weight.dims)
    x = np.asarray(x)
    nonzero = x != 0
    if node.op_type == "EventMatMul":
        return int(np.count_nonzero(nonzero)) * int(w_shape[1])
    if node.op_type == "EventGemm":
        return int(np.count_nonzero(nonzero)) * int(w_shape[0] if _attribute(node, "transB", 0) else w_shape[1])
    spatial = x.ndim - 2
    if spatial not in (1, 2) or len(w_shape) != x.ndim:
        raise ValueError(f"event node {node_name!r}: input of shape {x.shape} does not fit the weight {w_shape}")
    group = int(_attribute(node, "group", 1))
    auto_pad = _attribute(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    pads = list(_attribute(node, "pads", [0] * 2 * spatial))
    strides = list(_attribute(node, "strides", [1] * spatial))
    dilations = list(_attribute(node, "dilations", [1] * spatial))
    # Per spatial axis: how many taps reach an output from each input index.
    reach = []
    for axis in range(spatial):
        size, kernel = x.shape[2 + axis], w_shape[2 + axis]
        stride, dilation = strides[axis], dilations[axis]
        span = dilation * (kernel - 1) + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out = -(-size // stride)
            total = max(0, (out - 1) * stride + span - size)
            begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        else:
            begin, end = (0, 0) if auto_pad == "VALID" else (pads[axis], pads[axis + spatial])
            out = (size + begin + end - span) // stride + 1
        t = np.arange(size)[:, None] + begin - np.arange(kernel)[None, :] * dilation
        reach.append(((t >= 0) & (t % stride == 0) & (t // stride < out)).sum(axis=1))
    taps = reach[0] if spatial == 1 else np.outer(reach[0], reach[1])
    per_position = nonzero.sum(axis=(0, 1))  # nonzeros at each input position
    return int((per_position * taps).sum()) * (int(w_shape[0]) // group)
