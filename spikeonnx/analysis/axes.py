"""Where the batch and time axes of a tensor are: marks and the per-op rules moving them.

Every statistic is per sample and per timestep, so the analyzer must know, for each
tensor, which part of it is the batch and which is time. It does not guess by
position: the graph inputs declare their axes (metadata, ``batch_axis``/``time_axis``)
and :func:`spikeonnx.analysis.passes.propagate_axes` carries them through the graph
op by op, with the rule each op's :class:`~.stats.OpSpec` names (``axes=``).

A mark (:class:`AxisMark`) says that a tensor carries the batch (or time) factor of
size ``size`` in axis ``axis``, after ``inner`` other elements of that axis in
row-major order: after ``(B, H, L, D) -> (B*H, L, D)`` the batch is in axis 0 with
inner 1; after ``(H, B, L) -> (H*B, L)`` in axis 0 with inner ``H``. ``axis`` is None
when the tensor carries the factor but no rule could follow where it went. Counting
(:meth:`~.stats.OpNode.units`) divides a tensor's element count by the factors it
carries, so a merged batch is left out as exactly as a batch axis of its own.

A rule is ``rule(node, marks) -> list`` with one mark (or None) per input of ``node``
and returns one mark (or None) per output; it is called once for the batch and once
for the time marks.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, List, Optional, Sequence, Tuple

__all__ = [
    "AxisMark",
    "AxisRule",
    "broadcast_axes",
    "reshape_axes",
    "transpose_axes",
    "gather_axes",
    "reduce_axes",
    "matmul_axes",
    "gemm_axes",
    "einsum_axes",
    "recurrent_axes",
    "no_axes",
    "first_input_axes",
    "move_in_reshape",
]


@dataclass(frozen=True)
class AxisMark:
    """The batch (or time) factor of one tensor.

    Parameters
    ----------
    axis : int or None
        The axis holding the factor; None if the tensor carries it somewhere no
        rule could follow.
    size : int or str
        The factor's size (the batch size, or the number of timesteps); a str for a
        symbolic size.
    inner : int
        Elements of ``axis`` in front of the factor (1 when it is the axis' outer
        factor, e.g. an axis of its own).
    """

    axis: Optional[int]
    size: Any
    inner: int = 1

    def is_own_axis(self, shape: Optional[Sequence[Any]]) -> bool:
        """Whether the factor is the whole of its axis in a tensor of ``shape``."""
        return (
            shape is not None and self.axis is not None and self.axis < len(shape)
            and self.inner == 1 and shape[self.axis] == self.size
        )


Marks = Sequence[Optional[AxisMark]]
AxisRule = Callable[[Any, Marks], List[Optional[AxisMark]]]


def _shape(infos: Sequence[Any], index: int) -> Optional[Tuple[Any, ...]]:
    if index >= len(infos) or infos[index] is None:
        return None
    return infos[index].shape


def _carried(mark: AxisMark) -> AxisMark:
    """The factor is in the tensor, somewhere."""
    return AxisMark(None, mark.size)


def _resized(mark: AxisMark, in_shape: Any, out_shape: Any, axis: int) -> AxisMark:
    """``mark`` moved to ``axis``, its size unchanged: an op that changes the size of
    that axis (a Conv on channels a size-1 factor was taken for) does not change
    the factor."""
    return replace(mark, axis=axis)


def first_input_axes(node: Any, marks: Marks) -> Tuple[int, Optional[AxisMark]]:
    """The first input carrying a mark and its mark (index -1 and None if none)."""
    for i, mark in enumerate(marks):
        if mark is not None:
            return i, mark
    return -1, None


def broadcast_axes(node: Any, marks: Marks) -> List[Optional[AxisMark]]:
    """Element-wise and shape-keeping ops (the default rule): the mark of the first
    input carrying one, at the same axis counted from the end (NumPy broadcasting)."""
    index, mark = first_input_axes(node, marks)
    out: List[Optional[AxisMark]] = []
    for k in range(len(node.outputs)):
        out_shape = _shape(node.outputs, k)
        in_shape = _shape(node.inputs, index) if index >= 0 else None
        if mark is None:
            out.append(None)
            continue
        if mark.axis is None or in_shape is None or out_shape is None:
            out.append(_carried(mark))
            continue
        axis = mark.axis + len(out_shape) - len(in_shape)
        if not 0 <= axis < len(out_shape) or not _aligned(in_shape, out_shape):
            out.append(_carried(mark))
            continue
        out.append(_resized(mark, in_shape, out_shape, axis))
    return out


def _aligned(in_shape: Sequence[Any], out_shape: Sequence[Any]) -> bool:
    """Whether ``in_shape`` broadcasts into ``out_shape`` axis by axis from the end
    (ops such as Pool, Conv or Resize change sizes but keep the layout)."""
    return len(in_shape) <= len(out_shape)


def no_axes(node: Any, marks: Marks) -> List[Optional[AxisMark]]:
    """Outputs carrying neither batch nor time (shapes, sizes, indices)."""
    return [None] * len(node.outputs)


def move_in_reshape(mark: AxisMark, in_shape: Sequence[Any], out_shape: Sequence[Any]) -> Optional[AxisMark]:
    """Where ``mark`` lands when a tensor of ``in_shape`` is reshaped to ``out_shape``.

    The factor occupies the elements ``[outer, outer * size)`` of the row-major
    multi-index, ``outer`` being the product of everything in front of it; it lands
    in the output axis whose span contains that range (an axis of its own when the
    spans coincide). Returns a mark with ``axis=None`` when the sizes are not all
    known or the factor is split over several axes.
    """
    if mark.axis is None or not all(isinstance(d, int) for d in (*in_shape, *out_shape)):
        return _carried(mark)
    if not isinstance(mark.size, int) or mark.axis >= len(in_shape):
        return _carried(mark)
    outer = math.prod(in_shape[: mark.axis]) * mark.inner
    end = outer * mark.size
    candidates = []
    prefix = 1
    for j, d in enumerate(out_shape):
        if prefix and end and outer % prefix == 0 and (prefix * d) % end == 0:
            candidates.append((j, outer // prefix))
        prefix *= d
    if not candidates:
        return _carried(mark)
    for j, inner in candidates:  # an axis of its own first (size-1 factors fit anywhere)
        if inner == 1 and out_shape[j] == mark.size:
            return AxisMark(j, mark.size)
    j, inner = candidates[0]
    return AxisMark(j, mark.size, inner)


def reshape_axes(node: Any, marks: Marks) -> List[Optional[AxisMark]]:
    """Reshape, Flatten, Squeeze, Unsqueeze: the data (input 0) keeps its row-major
    order, so the factor's range of elements finds its output axis."""
    mark = marks[0] if marks else None
    if mark is None:
        return [None] * len(node.outputs)
    in_shape, out_shape = _shape(node.inputs, 0), _shape(node.outputs, 0)
    if in_shape is None or out_shape is None:
        return [_carried(mark)] + [None] * (len(node.outputs) - 1)
    return [move_in_reshape(mark, in_shape, out_shape)] + [None] * (len(node.outputs) - 1)


def transpose_axes(node: Any, marks: Marks) -> List[Optional[AxisMark]]:
    """Transpose: the axis moves where ``perm`` puts it (default: reversed)."""
    mark = marks[0] if marks else None
    if mark is None or mark.axis is None:
        return [mark]
    in_shape = _shape(node.inputs, 0)
    if in_shape is None:
        return [_carried(mark)]
    perm = node.attribute("perm") or list(reversed(range(len(in_shape))))
    perm = [p % len(in_shape) for p in perm]
    if mark.axis not in perm:
        return [_carried(mark)]
    return [replace(mark, axis=perm.index(mark.axis))]


def gather_axes(node: Any, marks: Marks) -> List[Optional[AxisMark]]:
    """Gather: data axes in front of ``axis`` stay, ``axis`` becomes the indices'
    axes, later ones shift. Indexing along the batch itself (``x[0]``) leaves one
    sample: no batch; indices carrying the batch (token ids of an embedding) put it
    where their axes land."""
    data = _shape(node.inputs, 0)
    indices = _shape(node.inputs, 1)
    if data is None or indices is None:
        index, mark = first_input_axes(node, marks)
        return [None if mark is None else _carried(mark)]
    axis = int(node.attribute("axis", 0)) % max(len(data), 1)
    mark = marks[0] if marks else None
    if mark is not None:
        if mark.axis is None:
            return [mark]
        if mark.axis < axis:
            return [mark]
        if mark.axis > axis:
            return [replace(mark, axis=mark.axis + len(indices) - 1)]
    index_mark = marks[1] if len(marks) > 1 else None
    if index_mark is not None:
        if index_mark.axis is None:
            return [index_mark]
        return [replace(index_mark, axis=axis + index_mark.axis)]
    return [None]


def reduce_axes(node: Any, marks: Marks) -> List[Optional[AxisMark]]:
    """Reductions (ReduceMean/Sum/Max/..., ArgMax/ArgMin): reducing over the
    factor's axis removes it; with ``keepdims=0`` the later axes shift."""
    mark = marks[0] if marks else None
    out: List[Optional[AxisMark]] = [None] * len(node.outputs)
    if mark is None:
        return out
    in_shape = _shape(node.inputs, 0)
    if mark.axis is None or in_shape is None:
        out[0] = _carried(mark)
        return out
    rank = len(in_shape)
    if node.op_type in ("ArgMax", "ArgMin"):
        axes = [int(node.attribute("axis", 0))]
    else:
        axes = node.attribute("axes")
        if axes is None and len(node.proto.input) > 1 and node.proto.input[1]:
            value = node.constant(1)
            if value is None:
                out[0] = _carried(mark)
                return out
            axes = [int(a) for a in value.reshape(-1)]
        if not axes:
            if node.attribute("noop_with_empty_axes", 0):
                out[0] = mark
                return out
            axes = list(range(rank))
    axes = sorted({int(a) % rank for a in axes})
    if mark.axis in axes:
        return out
    if node.attribute("keepdims", 1):
        out[0] = mark
    else:
        out[0] = replace(mark, axis=mark.axis - sum(a < mark.axis for a in axes))
    return out


def _matmul_mark(mark: Optional[AxisMark], rank: int, out_rank: int, operand: int, other_rank: int) -> Any:
    """Output position of an operand's mark in a matrix product, or False if the
    axis is contracted."""
    if mark is None:
        return None
    if mark.axis is None:
        return _carried(mark)
    if rank == 1:
        return False  # a vector operand is contracted entirely
    if operand == 0:
        if mark.axis == rank - 1:
            return False
        if mark.axis == rank - 2:
            return replace(mark, axis=out_rank - (2 if other_rank >= 2 else 1))
    else:
        if mark.axis == rank - 2:
            return False
        if mark.axis == rank - 1:
            return replace(mark, axis=out_rank - 1)
    return replace(mark, axis=mark.axis + out_rank - rank)


def matmul_axes(node: Any, marks: Marks, *, a: int = 0, b: int = 1) -> List[Optional[AxisMark]]:
    """MatMul (and its integer/quantized forms, operands ``a`` and ``b``): rows of
    A and columns of B keep their place, stacked axes broadcast, the contracted axis
    takes its factor with it (a product over the batch carries no batch)."""
    sa, sb, so = _shape(node.inputs, a), _shape(node.inputs, b), _shape(node.outputs, 0)
    ma = marks[a] if a < len(marks) else None
    mb = marks[b] if b < len(marks) else None
    if sa is None or sb is None or so is None:
        mark = ma or mb
        return [None if mark is None else _carried(mark)] + [None] * (len(node.outputs) - 1)
    for mark, rank, operand, other in ((ma, len(sa), 0, len(sb)), (mb, len(sb), 1, len(sa))):
        moved = _matmul_mark(mark, rank, len(so), operand, other)
        if moved:
            return [moved] + [None] * (len(node.outputs) - 1)
    return [None] * len(node.outputs)


def gemm_axes(node: Any, marks: Marks) -> List[Optional[AxisMark]]:
    """Gemm: the rows of A (``transA``: its columns) are the output rows, the
    columns of B (``transB``: its rows) the output columns."""
    ma = marks[0] if marks else None
    mb = marks[1] if len(marks) > 1 else None
    if ma is not None:
        if ma.axis is None:
            return [ma]
        if ma.axis == (1 if node.attribute("transA", 0) else 0):
            return [replace(ma, axis=0)]
    if mb is not None:
        if mb.axis is None:
            return [mb]
        if mb.axis == (0 if node.attribute("transB", 0) else 1):
            return [replace(mb, axis=1)]
    return [None]


_EINSUM_TERM = re.compile(r"^[A-Za-z]*(\.\.\.)?[A-Za-z]*$")


def einsum_labels(equation: str, ranks: Sequence[int]) -> Optional[Tuple[List[List[str]], List[str]]]:
    """Axis labels of each operand and of the output of an Einsum equation
    (ellipsis axes get labels of their own, aligned from the end), or None if the
    equation does not parse."""
    equation = equation.replace(" ", "")
    if "->" in equation:
        lhs, rhs = equation.split("->", 1)
    else:
        lhs, rhs = equation, None
    terms = lhs.split(",")
    if len(terms) != len(ranks) or not all(_EINSUM_TERM.match(t) for t in terms):
        return None
    labels: List[List[str]] = []
    ellipsis = 0
    for term, rank in zip(terms, ranks):
        letters = term.replace("...", "")
        if "..." in term:
            n = rank - len(letters)
            if n < 0:
                return None
            ellipsis = max(ellipsis, n)
            head, tail = term.split("...")
            labels.append(list(head) + [f".{n - i}" for i in range(n)] + list(tail))
        elif len(term) != rank:
            return None
        else:
            labels.append(list(term))
    dots = [f".{ellipsis - i}" for i in range(ellipsis)]
    if rhs is None:
        counts = {}
        for term in labels:
            for label in term:
                counts[label] = counts.get(label, 0) + 1
        out = dots + sorted(k for k, v in counts.items() if v == 1 and not k.startswith("."))
    else:
        if not _EINSUM_TERM.match(rhs):
            return None
        head, _, tail = rhs.partition("...")
        out = list(head) + (dots if "..." in rhs else []) + list(tail)
    return labels, out


def einsum_axes(node: Any, marks: Marks) -> List[Optional[AxisMark]]:
    """Einsum: the factor follows its label into the output; a summed label takes it away."""
    index, mark = first_input_axes(node, marks)
    if mark is None:
        return [None]
    ranks = [len(i.shape) if i is not None and i.shape is not None else -1 for i in node.inputs]
    parsed = einsum_labels(str(node.attribute("equation", "")), ranks) if min(ranks) >= 0 else None
    if parsed is None or mark.axis is None:
        return [_carried(mark)]
    labels, out = parsed
    label = labels[index][mark.axis]
    if label not in out:
        return [None]
    return [replace(mark, axis=out.index(label))]


def recurrent_axes(node: Any, marks: Marks) -> List[Optional[AxisMark]]:
    """LSTM/GRU/RNN: X is ``(seq, batch, input)`` (``layout=1``: ``(batch, seq,
    input)``); Y is ``(seq, dirs, batch, hidden)`` (``(batch, seq, dirs, hidden)``),
    the final states ``(dirs, batch, hidden)`` (``(batch, dirs, hidden)``)."""
    mark = marks[0] if marks else None
    outputs: List[Optional[AxisMark]] = [None] * len(node.outputs)
    if mark is None:
        return outputs
    if mark.axis is None:
        return [_carried(mark) if i == 0 else None for i in range(len(node.outputs))]
    layout = int(node.attribute("layout", 0))
    seq_axis, batch_axis = (1, 0) if layout else (0, 1)
    if mark.axis == seq_axis:
        outputs[0] = replace(mark, axis=1 if layout else 0)
    elif mark.axis == batch_axis:
        outputs[0] = replace(mark, axis=0 if layout else 2)
        for k in range(1, len(outputs)):
            outputs[k] = replace(mark, axis=0 if layout else 1)
    return outputs
