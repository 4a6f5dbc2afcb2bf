"""The op registry: everything the analyzer knows about an ONNX op, in one spec.

Each op type ``(domain, op_type)`` has one :class:`OpSpec`: its *role* (what it is
to the layer grouping) and the *stat function* counting its connections and neuron
updates per sample and timestep. Roles:

- ``"weighted"``: synapses (MatMul, Gemm, Conv); a layer forms around it.
- ``"activation"``: neurons (Relu, ..., SpikingActivation).
- ``"free"``: no synapses or neurons (shape ops, element-wise arithmetic, Clip
  unless it is a ReLU6); it joins a neighbouring layer and never warns. Flags
  refine it: ``pass_through`` (moves data unchanged: a weighted op's layer
  extends across it, and counting looks through it for a reshape-merged batch
  axis), ``bias`` (adds a constant: joins the weighted op it follows),
  ``bookkeeping`` (shape arithmetic: never names a layer).
- ``"other"``: anything else with a stat function (e.g. the synaptic filters); it
  is a layer of its own.

The *effective* role of one node (``OpNode``'s counts decide: a node that counted
connections is weighted, one that counted neurons is an activation) is what the
grouping pass reads. Ops without a spec count nothing and the analyzer warns once
per op type, as ``ModelEnergy`` does for unknown Keras layers. Users add or replace
specs with :func:`register_op`; the registry is a :class:`spikeonnx.registry.Registry`.

Every statistic is per sample and per timestep: the batch and time axes are left
out (see :meth:`OpNode.units`). Where they are is not guessed: the
``propagate_axes`` pass carries the graph inputs' axes through every op with the
op's axis rule (``OpSpec.axes``, :mod:`.axes`), and marks them :data:`BATCH` and
:data:`TIME` in the shapes where they are axes of their own. The counting
convention of every built-in op is documented in ``docs/op-counting.md``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
from onnx import helper

from ..contract import DOMAIN, EVENT_OPS
from ..energy import check_stats
from ..registry import Registry
from . import axes as _axes
from .axes import AxisMark, AxisRule

__all__ = [
    "BATCH",
    "TIME",
    "ROLES",
    "TensorInfo",
    "OpNode",
    "OpSpec",
    "ShapeResolutionError",
    "register_op",
    "op_spec",
    "get_op_stats",
    "OPS",
    "ACTIVATION_OPS",
    "FREE_OPS",
]

#: Symbolic dimension that marks the batch axis of a tensor.
BATCH = "spikeonnx_batch"
#: Symbolic dimension that marks the time axis of a tensor.
TIME = "spikeonnx_time"

#: The roles of an op (see the module docstring).
ROLES = ("weighted", "activation", "free", "other")

Dim = Union[int, str, None]
Shape = Tuple[Dim, ...]
StatFunction = Callable[["OpNode"], Any]

_DEFAULT_DOMAINS = ("", "ai.onnx")


class ShapeResolutionError(ValueError):
    """A dimension that a statistic depends on is not known from the graph alone."""


@dataclass(frozen=True)
class TensorInfo:
    """Name, inferred shape and element type of one tensor of the graph.

    Parameters
    ----------
    name : str
        The tensor name.
    shape : tuple or None
        One entry per axis: an ``int`` for a known size, a ``str`` for a symbolic
        size, ``None`` for an unknown size. ``None`` for the whole shape if not even
        the rank is known.
    elem_type : int
        ONNX ``TensorProto`` data type, 0 if unknown.
    """

    name: str
    shape: Optional[Shape]
    elem_type: int = 0

    @property
    def dtype(self) -> Optional[np.dtype]:
        """The NumPy dtype of the tensor, or None if unknown."""
        return _np_dtype(self.elem_type)

    @property
    def is_float(self) -> bool:
        """True if the element type is a floating-point type."""
        dtype = self.dtype
        return dtype is not None and dtype.kind == "f"


@functools.lru_cache(maxsize=None)
def _np_dtype(elem_type: int) -> Optional[np.dtype]:
    if not elem_type:
        return None
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        return None


def normalize_domain(domain: str) -> str:
    """``""`` for the default ONNX domain (also spelled ``"ai.onnx"``)."""
    return "" if domain in _DEFAULT_DOMAINS else domain


def op_key(domain: str, op_type: str) -> str:
    """``"op_type"`` for default-domain ops, else ``"domain.op_type"``."""
    domain = normalize_domain(domain)
    return f"{domain}.{op_type}" if domain else op_type


def format_shape(shape: Optional[Shape]) -> str:
    """Format a shape like Keras does, with ``None`` for batch, time and unknown sizes."""
    if shape is None:
        return "?"
    parts = []
    for d in shape:
        if isinstance(d, int):
            parts.append(str(d))
        elif d in (BATCH, TIME) or d is None:
            parts.append("None")
        else:
            parts.append(str(d))
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


class OpNode:
    """What a stat function sees of one ONNX node.

    Parameters
    ----------
    proto : onnx.NodeProto
        The node.
    label : str
        Unique name of the node (its ONNX name, or one made up if it has none).
    inputs, outputs : list of TensorInfo or None
        Inferred information on each input and output (None for an omitted
        optional input).
    constants : callable
        ``constants(name)`` returns the value of a constant tensor (initializer or
        ``Constant`` output) as a NumPy array, or None if the tensor is not constant.
    is_constant : callable, optional
        ``is_constant(name)``: whether a tensor is constant, without reading its value.
    marks : callable, optional
        ``marks(name)`` returns the ``(batch, time)`` :class:`~.axes.AxisMark` pair of
        a tensor (either may be None), as :func:`~.passes.propagate_axes` found them.
        Without it (or for a tensor it does not know) only axes whose size is the
        :data:`BATCH`/:data:`TIME` mark are left out of counts.
    """

    def __init__(
        self,
        proto: onnx.NodeProto,
        label: str,
        inputs: List[Optional[TensorInfo]],
        outputs: List[Optional[TensorInfo]],
        constants: Callable[[str], Optional[np.ndarray]],
        *,
        is_constant: Optional[Callable[[str], bool]] = None,
        marks: Optional[Callable[[str], Tuple[Optional[AxisMark], Optional[AxisMark]]]] = None,
    ) -> None:
        self.proto = proto
        self.name = label
        self.op_type = proto.op_type
        self.domain = normalize_domain(proto.domain)
        self.inputs = inputs
        self.outputs = outputs
        self._constants = constants
        self._is_constant = is_constant
        self._marks = marks
        self._attrs: Optional[Dict[str, Any]] = None

    # --- attributes and constants -------------------------------------------------
    def attribute(self, name: str, default: Any = None) -> Any:
        """Value of attribute ``name`` (lists for repeated fields), or ``default``."""
        if self._attrs is None:
            self._attrs = {a.name: helper.get_attribute_value(a) for a in self.proto.attribute}
        value = self._attrs.get(name, default)
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        return value

    def constant(self, index: int) -> Optional[np.ndarray]:
        """Value of input ``index`` if it is a constant tensor, else None."""
        if index >= len(self.proto.input) or not self.proto.input[index]:
            return None
        return self._constants(self.proto.input[index])

    def is_constant(self, index: int) -> bool:
        """Whether input ``index`` is a constant tensor (its value is not read)."""
        if index >= len(self.proto.input) or not self.proto.input[index]:
            return False
        if self._is_constant is not None:
            return self._is_constant(self.proto.input[index])
        return self.constant(index) is not None

    def has_input(self, index: int) -> bool:
        """Whether optional input ``index`` is given."""
        return index < len(self.proto.input) and bool(self.proto.input[index])

    # --- shapes -------------------------------------------------------------------
    def _info(self, kind: str, index: int) -> TensorInfo:
        infos = self.inputs if kind == "input" else self.outputs
        if index >= len(infos) or infos[index] is None:
            raise ValueError(f"node {self.name!r} ({self.op_type}) has no {kind} {index}")
        return infos[index]

    def input_shape(self, index: int) -> Shape:
        """Inferred shape of input ``index``; raises if even the rank is unknown."""
        return self._require_rank(self._info("input", index))

    def output_shape(self, index: int = 0) -> Shape:
        """Inferred shape of output ``index``; raises if even the rank is unknown."""
        return self._require_rank(self._info("output", index))

    def _require_rank(self, info: TensorInfo) -> Shape:
        if info.shape is None:
            raise ShapeResolutionError(
                f"cannot compute stats for node {self.name!r} ({self.op_type}): the shape of "
                f"tensor {info.name!r} could not be inferred (add value_info for it, or export "
                "the model with static shapes)"
            )
        return info.shape

    def marks(self, tensor: str) -> Tuple[Optional[AxisMark], Optional[AxisMark]]:
        """The ``(batch, time)`` marks of ``tensor`` (see :mod:`.axes`)."""
        if not tensor or self._marks is None:
            return None, None
        return self._marks(tensor)

    def unit_axes(self, shape: Sequence[Dim], tensor: str = "") -> List[int]:
        """Axes of ``shape`` that count: every axis but the batch and time axes.

        The batch and time axes are the ones marked :data:`BATCH`/:data:`TIME`, and
        those that :func:`~.passes.propagate_axes` found to be the batch or time axis
        of ``tensor``. A batch merged with other axes by a reshape has no axis of its
        own: :meth:`units` divides it out instead.
        """
        skip = {axis for axis, d in enumerate(shape) if d in (BATCH, TIME)}
        for mark in self.marks(tensor):
            if mark is not None and mark.is_own_axis(shape):
                skip.add(mark.axis)
        return [axis for axis in range(len(shape)) if axis not in skip]

    def units(self, shape: Sequence[Dim], tensor: str = "") -> int:
        """Number of elements of one sample at one timestep of ``tensor`` (of ``shape``).

        The element count without the batch and time axes; a batch or time factor
        merged into another axis (e.g. ``(batch*heads, L, D)``) is divided out.

        Raises
        ------
        ShapeResolutionError
            If a counted axis has a symbolic or unknown size.
        """
        shape = list(shape)
        skip = set()
        divisor = 1
        for mark, symbol in zip(self.marks(tensor), (BATCH, TIME)):
            if mark is None:
                continue
            if mark.axis is not None and mark.axis < len(shape) and (
                shape[mark.axis] == symbol or mark.is_own_axis(shape)
            ):
                skip.add(mark.axis)
            elif isinstance(mark.size, int):
                divisor *= mark.size
            else:
                raise ShapeResolutionError(
                    f"cannot compute stats for node {self.name!r} ({self.op_type}): the "
                    f"{'batch' if symbol == BATCH else 'time'} axis of tensor {tensor!r} with shape "
                    f"{_raw(shape)} was merged with other axes and has a symbolic size; give it a "
                    "static size"
                )
        total = 1
        for axis, d in enumerate(shape):
            if axis in skip or d in (BATCH, TIME):
                continue
            if not isinstance(d, int):
                what = f"tensor {tensor!r}" if tensor else "a tensor"
                raise ShapeResolutionError(
                    f"cannot compute stats for node {self.name!r} ({self.op_type}): axis {axis} "
                    f"of {what} with shape {format_shape(shape) if d is None else _raw(shape)} "
                    f"has {'an unknown' if d is None else 'the symbolic'} size"
                    f"{'' if d is None else ' ' + repr(d)}, which shape inference cannot resolve "
                    "without the data; give the model a static shape there, pass example data, "
                    "or declare the axis as batch/time axis"
                )
            total *= d
        if total % divisor:
            raise ShapeResolutionError(
                f"cannot compute stats for node {self.name!r} ({self.op_type}): tensor {tensor!r} "
                f"with shape {_raw(shape)} should hold batch/time factors of {divisor} elements but "
                "does not divide by it; declare the batch and time axes of the graph inputs "
                "(batch_axis=, time_axis=)"
            )
        return total // divisor

    def output_units(self, index: int = 0) -> int:
        """:meth:`units` of output ``index``."""
        return self.units(self.output_shape(index), self._info("output", index).name)

    def input_units(self, index: int = 0) -> int:
        """:meth:`units` of input ``index``."""
        return self.units(self.input_shape(index), self._info("input", index).name)


def _raw(shape: Sequence[Dim]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


# ----------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpSpec:
    """Everything the analyzer knows about one op type.

    Parameters
    ----------
    role : str
        One of :data:`ROLES`.
    stats : callable or None
        ``stats(node: OpNode) -> dict`` with any of "connections", "neurons",
        "spiking" (defaults 0, 0, True); None (or an empty dict) counts nothing.
        It may return ``NotImplemented`` for a node it cannot count: that node
        is treated as an op without spec (counted as nothing, with a warning).
    pass_through : bool
        The op moves data unchanged (reshape-like).
    bias : bool
        The op adds or subtracts a second operand (a bias when that is constant).
    bookkeeping : bool
        The op is shape arithmetic; it never gives a layer its type.
    affine : bool
        The op scales and shifts its input by constants per channel (inference
        BatchNormalization): it folds into the weighted op before it and joins that
        op's layer.
    axes : callable or None
        The rule moving batch/time marks from the inputs to the outputs (see
        :mod:`.axes`); None for :func:`~.axes.broadcast_axes`, right for element-wise
        and layout-keeping ops.
    """

    role: str = "other"
    stats: Optional[StatFunction] = None
    pass_through: bool = False
    bias: bool = False
    bookkeeping: bool = False
    affine: bool = False
    axes: Optional[AxisRule] = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"op role must be one of {ROLES}, got {self.role!r}")
        if self.stats is not None and not callable(self.stats):
            raise TypeError(f"stat function must be callable, got {self.stats!r}")
        if self.axes is not None and not callable(self.axes):
            raise TypeError(f"axis rule must be callable, got {self.axes!r}")

    @property
    def axis_rule(self) -> AxisRule:
        """The rule moving batch/time marks (the broadcast rule by default)."""
        return self.axes if self.axes is not None else _axes.broadcast_axes


#: The op registry: ``(domain, op_type) -> OpSpec`` (domain ``""`` for standard ops).
OPS: "Registry[OpSpec]" = Registry(
    "op spec",
    describe=lambda key: repr(op_key(*key)),
    overwrite_message=lambda key: f"op '{op_key(*key)}' already registered; overwriting",
)


def register_op(
    domain: str,
    op_type: str,
    *,
    role: str = "other",
    pass_through: bool = False,
    bias: bool = False,
    bookkeeping: bool = False,
    affine: bool = False,
    axes: Optional[AxisRule] = None,
    replace: bool = False,
) -> Callable[[StatFunction], StatFunction]:
    """Decorator registering a stat function (and the role) of the op ``domain.op_type``.

    The decorated function receives an :class:`OpNode` and returns a dict with any
    of the keys ``"connections"`` (synaptic connections per sample and timestep,
    default 0), ``"neurons"`` (neuron updates per sample and timestep, default 0) and
    ``"spiking"`` (whether the op can run as-is on a spiking device, default True).
    Use :meth:`OpNode.units` to leave the batch and time axes out of counts.

    Parameters
    ----------
    domain : str
        ONNX domain (``""`` or ``"ai.onnx"`` for the standard ops).
    op_type : str
        ONNX op type.
    role, pass_through, bias, bookkeeping, affine
        The op's traits, see :class:`OpSpec` (default: a layer of its own).
    axes : callable, optional
        How the op moves the batch and time axes (see :mod:`.axes`); the default
        suits element-wise and layout-keeping ops.
    replace : bool
        Replace an existing spec silently (otherwise a warning says so).

    Returns
    -------
    callable
        The decorator; it returns the function unchanged.
    """
    if not isinstance(domain, str) or not isinstance(op_type, str) or not op_type:
        raise ValueError(f"register_op needs a domain string and an op type, got {domain!r}, {op_type!r}")
    key = (normalize_domain(domain), op_type)

    def decorator(fn: StatFunction) -> StatFunction:
        if not callable(fn):
            raise TypeError(f"register_op({domain!r}, {op_type!r}) must decorate a function")
        spec = OpSpec(role, fn, pass_through=pass_through, bias=bias, bookkeeping=bookkeeping, affine=affine,
                      axes=axes)
        OPS.register(key, spec, replace=replace)
        return fn

    return decorator


def op_spec(domain: str, op_type: str) -> Optional[OpSpec]:
    """The spec of ``domain.op_type``, or None."""
    return OPS.get((normalize_domain(domain), op_type))


def get_op_stats(node: OpNode) -> Optional[Dict[str, Any]]:
    """Statistics of one node, or None if nothing knows how to count it.

    Returns
    -------
    dict or None
        ``{"connections": int, "neurons": int, "spiking": bool}``; None for an op
        without spec, or whose stat function returned ``NotImplemented``.

    Raises
    ------
    ValueError
        If the stat function returns something else than a dict of valid stats.
    """
    spec = op_spec(node.domain, node.op_type)
    if spec is None:
        return None
    raw = spec.stats(node) if spec.stats is not None else None
    if raw is NotImplemented:
        return None
    return check_stats({} if raw is None else raw, f"stat function for {node.op_type!r}", complete=True)


def _builtin(domain: str, *op_types: str, role: str, **traits: Any) -> Callable[[StatFunction], StatFunction]:
    """Register the built-in spec of ``op_types`` (at import, nothing to replace)."""

    def decorator(fn: Optional[StatFunction]) -> Optional[StatFunction]:
        for op_type in op_types:
            OPS.register((normalize_domain(domain), op_type), OpSpec(role, fn, **traits))
        return fn

    return decorator


# ----------------------------------------------------------------------------------
# built-in specs (the counting convention of each op: docs/op-counting.md)
# ----------------------------------------------------------------------------------

#: Default-domain ops that move data without synapses or neurons (free, pass-through).
PASS_THROUGH_OPS = ("Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast",
                    "CastLike")
#: Default-domain ops doing shape arithmetic (free; never the type of a layer).
BOOKKEEPING_OPS = ("Shape", "Cast", "Slice", "Concat", "Gather", "Unsqueeze", "Squeeze", "Identity", "Constant")
#: Default-domain ops adding a second operand (free; a bias when that is constant).
BIAS_OPS = ("Add", "Sub")
#: Default-domain ops that do no synaptic or neuron work; they count nothing silently.
FREE_OPS = frozenset(
    """
    Reshape Transpose Flatten Squeeze Unsqueeze Identity Shape Size Gather GatherElements
    GatherND Concat Cast CastLike Dropout Constant ConstantOfShape Slice Split Expand Tile
    Pad Range Add Sub Mul Div Neg Abs Sqrt Reciprocal Pow Max Min Sum Mean Floor Ceil Round
    Sign Equal Less LessOrEqual Greater GreaterOrEqual Not And Or Xor Where ReduceMean
    ReduceSum GlobalAveragePool SpaceToDepth DepthToSpace NonZero ArgMax ArgMin TopK
    OptionalHasElement OptionalGetElement SequenceConstruct Trilu EyeLike IsNaN IsInf
    GlobalMaxPool GlobalLpPool ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum
    ReduceLogSumExp ReduceSumSquare Exp Log Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh
    Atanh CumSum ScatterND ScatterElements OneHot Compress Unique BitShift BitwiseAnd
    BitwiseOr BitwiseXor BitwiseNot Hardmax Shrink SplitToSequence SequenceAt
    ConcatFromSequence SequenceLength SequenceEmpty SequenceInsert Det QuantizeLinear
    DequantizeLinear DynamicQuantizeLinear
    """.split()
)
#: Default-domain element-wise nonlinearities counted as (non-spiking) neurons.
ACTIVATION_OPS = frozenset(
    """
    Relu LeakyRelu Sigmoid Tanh Elu Selu Celu Softplus Softsign HardSigmoid HardSwish Gelu
    Mish ThresholdedRelu PRelu Softmax LogSoftmax Erf
    """.split()
)
#: Default-domain ops that pool or resample (a layer of their own, no synapses, no neurons).
POOL_OPS = ("MaxPool", "AveragePool", "LpPool", "MaxRoiPool", "MaxUnpool", "Resize", "Upsample")
#: Default-domain normalizations with statistics of their own (a layer, nothing counted).
NORMALIZATION_OPS = ("LayerNormalization", "GroupNormalization", "InstanceNormalization", "LRN",
                     "MeanVarianceNormalization", "LpNormalization", "RMSNormalization")

_RESHAPE_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")
_REDUCE_OPS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
               "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin")
_NO_AXES_OPS = ("Shape", "Size", "NonZero", "Range", "ConstantOfShape", "EyeLike", "OptionalHasElement",
                "SequenceLength", "Unique")


def _free_axis_rule(op_type: str) -> Optional[AxisRule]:
    if op_type in _RESHAPE_OPS:
        return _axes.reshape_axes
    if op_type == "Transpose":
        return _axes.transpose_axes
    if op_type == "Gather":
        return _axes.gather_axes
    if op_type in _REDUCE_OPS:
        return _axes.reduce_axes
    if op_type in _NO_AXES_OPS:
        return _axes.no_axes
    return None


def _gather_stats(node: OpNode) -> Any:
    """Shape bookkeeping, except a lookup in a float weight table (an embedding),
    which nothing counts yet: reported as unknown."""
    data = node.inputs[0] if node.inputs else None
    if data is not None and data.is_float and node.is_constant(0):
        return NotImplemented
    return {}


for _op in sorted(FREE_OPS):
    _builtin(
        "", _op, role="free",
        pass_through=_op in PASS_THROUGH_OPS, bias=_op in BIAS_OPS, bookkeeping=_op in BOOKKEEPING_OPS,
        axes=_free_axis_rule(_op),
    )(_gather_stats if _op == "Gather" else None)
del _op


def _known(node: OpNode, value: Dim, what: str) -> int:
    if not isinstance(value, int):
        size = "an unknown size" if value is None else f"the symbolic size {value!r}"
        raise ShapeResolutionError(
            f"cannot compute stats for node {node.name!r} ({node.op_type}): {what} has {size}, "
            "which shape inference cannot resolve without the data; give the model a static "
            "shape there, or pass example data"
        )
    return value


def _matmul_connections(node: OpNode, a_index: int, b_index: int) -> Dict[str, Any]:
    """Every output element of a matrix product sums over K products."""
    a = node.input_shape(a_index)
    b = node.input_shape(b_index)
    k = a[-1] if a else None
    if not isinstance(k, int) and b:
        k = b[-2] if len(b) >= 2 else b[0]
    k = _known(node, k, "the contracted dimension")
    return {"connections": node.output_units(0) * k}


@_builtin(DOMAIN, EVENT_OPS["MatMul"], role="weighted", axes=_axes.matmul_axes)  # spikeonnx.events: event-driven
@_builtin("", "MatMul", "MatMulInteger", role="weighted", axes=_axes.matmul_axes)
def _matmul_stats(node: OpNode) -> Dict[str, Any]:
    """Connections of a matrix product: every output element sums over K inputs."""
    return _matmul_connections(node, 0, 1)


@_builtin("", "QLinearMatMul", role="weighted", axes=functools.partial(_axes.matmul_axes, a=0, b=3))
def _qlinear_matmul_stats(node: OpNode) -> Dict[str, Any]:
    """Quantized matrix product (A is input 0, B input 3): as MatMul."""
    return _matmul_connections(node, 0, 3)


@_builtin("com.microsoft", "FusedMatMul", role="weighted")
def _fused_matmul_stats(node: OpNode) -> Dict[str, Any]:
    """onnxruntime's ``alpha * op(A) @ op(B)``: as MatMul, K after the transposes."""
    a = node.input_shape(0)
    k = a[-2] if node.attribute("transA", 0) and len(a) >= 2 else (a[-1] if a else None)
    return {"connections": node.output_units(0) * _known(node, k, "the contracted dimension")}


@_builtin(DOMAIN, EVENT_OPS["Gemm"], role="weighted", axes=_axes.gemm_axes)  # spikeonnx.events: event-driven
@_builtin("", "Gemm", role="weighted", axes=_axes.gemm_axes)
def _gemm_stats(node: OpNode) -> Dict[str, Any]:
    """Connections of ``alpha*A'B' + beta*C``: output features times input features."""
    b = node.input_shape(1)
    a = node.input_shape(0)
    k = b[1] if node.attribute("transB", 0) else b[0]
    if not isinstance(k, int):
        k = a[0] if node.attribute("transA", 0) else a[1]
    k = _known(node, k, "the contracted dimension")
    return {"connections": node.output_units(0) * k}


def _conv_output_spatial(node: OpNode, x: Shape, kernel: Sequence[int]) -> List[int]:
    """Spatial output sizes of a Conv from its input sizes and attributes (ONNX rules)."""
    n = len(kernel)
    strides = node.attribute("strides") or [1] * n
    dilations = node.attribute("dilations") or [1] * n
    pads = node.attribute("pads") or [0] * (2 * n)
    auto_pad = node.attribute("auto_pad", "NOTSET") or "NOTSET"
    if len(strides) != n or len(dilations) != n or len(pads) != 2 * n:
        raise ValueError(
            f"node {node.name!r} (Conv): strides/dilations/pads do not match the {n} spatial axes"
        )
    out = []
    for i in range(n):
        size = _known(node, x[2 + i], f"spatial input axis {2 + i} of {node.proto.input[0]!r}")
        span = dilations[i] * (kernel[i] - 1) + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-size // strides[i])
        elif auto_pad == "VALID":
            o = (size - span) // strides[i] + 1
        elif auto_pad == "NOTSET":
            o = (size + pads[i] + pads[i + n] - span) // strides[i] + 1
        else:
            raise ValueError(f"node {node.name!r} (Conv): unknown auto_pad {auto_pad!r}")
        if o <= 0:
            raise ValueError(f"node {node.name!r} (Conv): empty output along spatial axis {i}")
        out.append(o)
    return out


def _conv_connections(node: OpNode, x_index: int, w_index: int) -> Dict[str, Any]:
    x = node.input_shape(x_index)
    w = node.input_shape(w_index)
    group = int(node.attribute("group", 1))
    for axis, d in enumerate(w):
        _known(node, d, f"axis {axis} of the weight {node.proto.input[w_index]!r}")
    if len(w) < 3 or len(x) != len(w):
        raise ValueError(
            f"node {node.name!r} ({node.op_type}): input rank {len(x)} and weight rank {len(w)} do not match"
        )
    if isinstance(x[1], int) and x[1] != w[1] * group:
        raise ValueError(
            f"node {node.name!r} ({node.op_type}): {x[1]} input channels but weight expects "
            f"{w[1]} x group {group}"
        )
    kernel = node.attribute("kernel_shape") or list(w[2:])
    y = node.outputs[0].shape if node.outputs and node.outputs[0] is not None else None
    if y is None or len(y) != len(w) or not all(isinstance(d, int) for d in y[1:]):
        # shape inference left sizes open: compute them from the attributes
        y = (x[0], w[0], *_conv_output_spatial(node, x, kernel))
    return {"connections": node.units(y, node.proto.output[0]) * int(np.prod(w[1:]))}


@_builtin(DOMAIN, EVENT_OPS["Conv"], role="weighted")  # spikeonnx.events: the same op, event-driven
@_builtin("", "Conv", "ConvInteger", role="weighted")
def _conv_stats(node: OpNode) -> Dict[str, Any]:
    """Connections of a convolution: output elements x kernel volume x input channels/group.

    This is the multiply-accumulate count, padded taps included, as Keras'
    ``ModelEnergy`` counts ``Conv*D`` layers.
    """
    return _conv_connections(node, 0, 1)


@_builtin("", "QLinearConv", role="weighted")
def _qlinear_conv_stats(node: OpNode) -> Dict[str, Any]:
    """Quantized convolution (x is input 0, the weight input 3): as Conv."""
    return _conv_connections(node, 0, 3)


@_builtin("com.microsoft", "FusedConv", role="weighted")
def _fused_conv_stats(node: OpNode) -> Dict[str, Any]:
    """onnxruntime's Conv with a fused activation: the Conv's connections, and one
    neuron per output element for a nonlinear activation."""
    stats = _conv_connections(node, 0, 1)
    if node.attribute("activation", ""):
        stats.update(neurons=node.output_units(0), spiking=False)
    return stats


@_builtin("", "ConvTranspose", role="weighted")
def _conv_transpose_stats(node: OpNode) -> Dict[str, Any]:
    """Connections of a transposed convolution: every input element feeds
    (output channels/group) x kernel volume outputs (the multiply-accumulate count of
    the scatter; pads and output_padding only crop the output)."""
    w = node.input_shape(1)
    for axis, d in enumerate(w):
        _known(node, d, f"axis {axis} of the weight {node.proto.input[1]!r}")
    return {"connections": node.input_units(0) * int(np.prod(w[1:]))}


@_builtin("", "Einsum", role="weighted", axes=_axes.einsum_axes)
def _einsum_stats(node: OpNode) -> Dict[str, Any]:
    """A contraction of two or more operands: one multiply-accumulate per point of
    the index space (the product of every index size); one operand only moves or
    sums data and counts nothing."""
    if len(node.proto.input) < 2:
        return {}
    shapes = [node.input_shape(i) for i in range(len(node.proto.input))]
    equation = str(node.attribute("equation", ""))
    parsed = _axes.einsum_labels(equation, [len(s) for s in shapes])
    if parsed is None:
        raise ValueError(f"node {node.name!r} (Einsum): equation {equation!r} does not fit inputs of ranks "
                         f"{[len(s) for s in shapes]}")
    labels, _ = parsed
    excluded = set()
    divisor = 1
    for kind in (0, 1):  # the batch, then the time factor, taken from the first operand carrying it
        for term, shape, name in zip(labels, shapes, node.proto.input):
            mark = node.marks(name)[kind]
            if mark is None:
                continue
            if mark.axis is not None and (shape[mark.axis] in (BATCH, TIME) or mark.is_own_axis(shape)):
                excluded.add(term[mark.axis])
            else:
                divisor *= _known(node, mark.size, f"the batch/time factor of {name!r}")
            break
    sizes: Dict[str, int] = {}
    for term, shape, name in zip(labels, shapes, node.proto.input):
        for axis, (label, d) in enumerate(zip(term, shape)):
            if label in excluded:
                continue
            d = _known(node, d, f"axis {axis} of {name!r}")
            sizes[label] = max(sizes.get(label, 1), d)  # a size 1 broadcasts
    total = int(np.prod(list(sizes.values()), dtype=np.int64)) if sizes else 1
    return {"connections": total // divisor}


_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
# element-wise nonlinearities per hidden unit and step: LSTM 3 sigmoid gates and 2
# tanh (cell input, output); GRU 2 sigmoid gates and a tanh; RNN one activation
_NONLINEAR = {"LSTM": 5, "GRU": 3, "RNN": 1}


@_builtin("", "LSTM", "GRU", "RNN", role="weighted", axes=_axes.recurrent_axes)
def _recurrent_stats(node: OpNode) -> Dict[str, Any]:
    """A recurrent layer: per sequence position, every gate of every direction
    connects the input (size I) and the previous hidden state (size H) to its H
    units: ``dirs x gates*H x (I + H)`` connections (read from the weight shapes W
    ``(dirs, gates*H, I)`` and R ``(dirs, gates*H, H)``), and ``dirs x H x
    nonlinearities`` neurons. A sequence axis declared as time is one step, any
    other counts each position."""
    w = node.input_shape(1)
    r = node.input_shape(2)
    if len(w) != 3 or len(r) != 3:
        raise ValueError(f"node {node.name!r} ({node.op_type}): weights W {w} and R {r} must have rank 3")
    dirs = _known(node, w[0], "the directions of W")
    gates_h = _known(node, w[1], "the gate size of W")
    size_in = _known(node, w[2], "the input size of W")
    hidden = _known(node, r[2], "the hidden size of R")
    if gates_h != _GATES[node.op_type] * hidden:
        raise ValueError(
            f"node {node.name!r} ({node.op_type}): W has {gates_h} rows, expected "
            f"{_GATES[node.op_type]} gates x hidden size {hidden}"
        )
    units = node.input_units(0)
    if units % size_in:
        raise ValueError(f"node {node.name!r} ({node.op_type}): input X does not end in the input size {size_in}")
    positions = units // size_in
    return {
        "connections": positions * dirs * gates_h * (size_in + hidden),
        "neurons": positions * dirs * hidden * _NONLINEAR[node.op_type],
        "spiking": False,
    }


@_builtin("com.microsoft", "Attention", role="weighted")
def _ms_attention_stats(node: OpNode) -> Dict[str, Any]:
    """onnxruntime's fused self-attention (Q, K, V projections and attention): per
    query position, the projection ``D_in x (D_q + D_k + D_v)`` plus ``L x (D_q +
    D_v)`` for Q·Kᵀ and the weighted sum of V over ``L`` key positions (past ones
    included); one neuron (softmax) per head and key position."""
    x = node.input_shape(0)
    w = node.input_shape(1)
    d_in = _known(node, x[-1], "the input hidden size")
    cols = _known(node, w[-1], "the projection width")
    sizes = node.attribute("qkv_hidden_sizes") or [cols // 3] * 3
    heads = int(node.attribute("num_heads", 1))
    positions = node.input_units(0) // d_in
    keys = _known(node, x[1], "the sequence length") if len(x) == 3 else positions
    if node.has_input(4):  # past: (2, batch, heads, past length, head size)
        keys += _known(node, node.input_shape(4)[3], "the past sequence length")
    return {
        "connections": positions * d_in * cols + positions * keys * (sizes[0] + sizes[2]),
        "neurons": positions * heads * keys,
        "spiking": False,
    }


@_builtin("com.microsoft", "MultiHeadAttention", role="weighted")
def _ms_multihead_attention_stats(node: OpNode) -> Dict[str, Any]:
    """onnxruntime's fused attention on projected Q, K, V: per query position ``L x
    (D_q + D_v)`` connections (Q·Kᵀ and the weighted sum of V over ``L`` key
    positions) and one neuron (softmax) per head and key position."""
    q = node.input_shape(0)
    heads = int(node.attribute("num_heads", 1))
    if len(q) == 5:  # packed QKV: (batch, S, heads, 3, head size)
        d_q = d_v = _known(node, q[2], "the heads") * _known(node, q[4], "the head size")
        positions = node.input_units(0) // (3 * d_q)
        keys = _known(node, q[1], "the sequence length")
    else:
        d_q = _known(node, q[-1], "the query hidden size")
        positions = node.input_units(0) // d_q
        d_v = d_q
        keys = positions
        if node.has_input(1):
            k = node.input_shape(1)
            if len(k) == 4:  # (batch, heads, L, head size)
                keys = _known(node, k[2], "the key length")
            else:  # (batch, L, D) or packed KV (batch, L, heads, 2, head size)
                keys = _known(node, k[1], "the key length")
                if len(k) == 5:
                    d_v = _known(node, k[2], "the heads") * _known(node, k[4], "the head size")
        if node.has_input(2):
            v = node.input_shape(2)
            d_v = _known(node, v[-1], "the value size") * (_known(node, v[1], "the heads") if len(v) == 4 else 1)
        if node.has_input(6):  # past key: (batch, heads, past length, head size)
            keys += _known(node, node.input_shape(6)[2], "the past sequence length")
    return {"connections": positions * keys * (d_q + d_v), "neurons": positions * heads * keys, "spiking": False}


@_builtin("", *sorted(ACTIVATION_OPS), role="activation")
@_builtin("com.microsoft", "Gelu", "FastGelu", "BiasGelu", "QuickGelu", role="activation")
def _activation_stats(node: OpNode) -> Dict[str, Any]:
    """A non-spiking nonlinearity: one neuron update per output element."""
    return {"neurons": node.output_units(0), "spiking": False}


@_builtin("", "Clip", role="free")
def _clip_stats(node: OpNode) -> Dict[str, Any]:
    """``Clip`` with a lower bound of 0 is a (capped) ReLU, e.g. ReLU6; other clips are free."""
    low = node.constant(1) if len(node.proto.input) > 1 else None
    if low is None and node.attribute("min") is not None:
        low = np.asarray(node.attribute("min"))
    if low is not None and low.size == 1 and float(low.reshape(())) == 0.0:
        return {"neurons": node.output_units(0), "spiking": False}
    return {}


def _nothing(node: OpNode) -> Dict[str, Any]:
    """Counts nothing: no synapses (no learned weights multiply the data) and no
    neurons (no element-wise nonlinearity)."""
    return {}


# pooling and resampling combine inputs with fixed weights (or a max): not synapses
_builtin("", *POOL_OPS, role="other")(_nothing)
# normalizations scale by statistics of the data: not synapses, not neurons
_builtin("", *NORMALIZATION_OPS, role="other")(_nothing)
_builtin("com.microsoft", "SkipLayerNormalization", "SkipSimplifiedLayerNormalization",
         "SimplifiedLayerNormalization", role="other")(_nothing)
# inference BatchNormalization is a constant per-channel affine map: it folds into
# the weighted op before it (and joins its layer), as exporters often fold it
_builtin("", "BatchNormalization", role="free", affine=True)(_nothing)
# integer arithmetic (e.g. on constants) is work of no neural kind, shown as a layer
_builtin("", "Mod", role="other")(_nothing)


def _subgraph_ops(graph: onnx.GraphProto) -> List[Tuple[str, str]]:
    ops = []
    for node in graph.node:
        ops.append((normalize_domain(node.domain), node.op_type))
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                ops.extend(_subgraph_ops(sub))
    return ops


@_builtin("", "If", "Loop", "Scan", role="other")
def _control_flow_stats(node: OpNode) -> Any:
    """Control flow: its subgraphs are not analysed. Branches of free and
    non-counting ops only (e.g. a rank check around a normalization) count nothing;
    a subgraph with synapses or neurons is reported as not counted."""
    for attr in node.proto.attribute:
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            for key in _subgraph_ops(sub):
                spec = OPS.get(key)
                if spec is None or spec.role in ("weighted", "activation"):
                    return NotImplemented
    return {}


@_builtin(DOMAIN, "SpikingActivation", role="activation")
def _spiking_activation_stats(node: OpNode) -> Dict[str, Any]:
    """Spiking neurons: the unit axes of the (batch, time, *units) input, per the op contract."""
    shape = node.input_shape(0)
    if len(shape) < 2:
        raise ValueError(
            f"node {node.name!r} (SpikingActivation): input must have batch and time axes, "
            f"got shape {_raw(shape)}"
        )
    total = 1
    for axis, d in enumerate(shape[2:], start=2):
        total *= _known(node, d, f"unit axis {axis} of {node.proto.input[0]!r}")
    return {"neurons": total, "spiking": True}


@_builtin(DOMAIN, "Lowpass", "Alpha", role="other")
def _filter_stats(node: OpNode) -> Dict[str, Any]:
    """Synaptic filters do no synaptic operations and update no neurons."""
    return {}
