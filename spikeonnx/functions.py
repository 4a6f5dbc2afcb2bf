"""Model-local ONNX functions: every ``spikeonnx`` op written in standard ONNX ops.

A model whose ``spikeonnx`` nodes carry a :class:`onnx.FunctionProto` definition in
``ModelProto.functions`` runs anywhere ONNX runs: stock onnxruntime without our op
library, :class:`onnx.reference.ReferenceEvaluator` without ``new_ops``, and other
runtimes. When the library *is* registered, onnxruntime runs its kernel instead of
the body. :func:`attach_functions` adds the definitions to a model.

The bodies perform the op contract's arithmetic (``docs/op-contract.md``) in the
same sequence of IEEE operations as :mod:`spikeonnx.reference` and the C++ kernels,
so spikes, filters and states agree bit for bit:

* the time loop is one ``Scan`` over a ``(T, B, U)`` view of the sequence (``U`` all
  unit axes flattened, so one body serves every rank; batch-major data is transposed
  to time-major and back, chosen by an ``If`` on the ``time_major`` attribute);
* each step is the kernels' sequence of single ``Mul``, ``Add``, ``Sub``, ``Floor`` and
  ``Div`` nodes on ``(B, U)`` slices (onnxruntime fuses none of them into an FMA;
  per-unit coefficients are computed once, before the loop);
* ``exp(-r)`` is evaluated in float64 and rounded once, as the kernels do;
* the seeded initial voltage is TensorFlow's stateless Philox uniform computed in
  ``uint64`` integer ops (``Mul``, ``BitShift``, ``BitwiseXor``/``BitwiseAnd`` from
  opset 18; below 18 the XOR is taken bit by bit with shifts), and each 32-bit word
  ``w`` becomes exactly ``(w & 0x7FFFFF) * 2**-23`` (TensorFlow's ``1.m - 1``).

One model holds one function per op type (the ONNX reference evaluator identifies a
function by domain and name only, ignoring IR 10 overloads), so a single body serves
every node of that type: ``dt``, ``time_major`` and ``seed`` are function attributes
(referenced with ``ref_attr_name``), the element type follows the input
(``CastLike``), and nodes of one type are given the same number of inputs and outputs
(missing optional inputs as ``""``, missing outputs as unused names). The bodies
import the model's default-domain opset (the checker and onnxruntime require that);
they need opset 15 or later.

This module imports only onnx, NumPy and the contract; it never needs TensorFlow.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from .contract import DOMAIN, EVENT_OP_TYPES, MAX_IR_VERSION, OP_TYPES, OPSET_VERSION

__all__ = ["attach_functions", "make_function", "MIN_OPSET", "BITWISE_OPSET", "SIGNATURES"]

#: Lowest default-domain opset the bodies can be written in (``CastLike``).
MIN_OPSET = 15
#: From this opset on the Philox XORs and masks are ``BitwiseXor`` / ``BitwiseAnd``.
BITWISE_OPSET = 18
#: Lowest IR version with the function features we use (attribute defaults).
_MIN_IR = 9

#: Formal inputs and outputs of each op, in the contract's order.
SIGNATURES: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "SpikingActivation": (("rates", "initial_voltage"), ("spikes", "final_voltage")),
    "Lowpass": (("x", "tau", "initial_level"), ("y", "final_level")),
    "Alpha": (("x", "tau", "initial_level", "initial_state"), ("y", "final_state")),
}
# Attributes of each op and their defaults (None: required, no default).
_ATTRIBUTES = {
    "SpikingActivation": {"dt": None, "time_major": 0, "seed": 0},
    "Lowpass": {"dt": None, "time_major": 0},
    "Alpha": {"dt": None, "time_major": 0},
}

# Same constants as spikeonnx.philox / the C++ kernels (Philox4x32-10, TensorFlow's seed scramble).
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_PHILOX_ROUNDS = 10
_TF_SEED_KEY = (0x3EC8F720, 0x02461E29)
_TAU_MIN = 1e-8  # spikeonnx.reference.TAU_MIN (the reference module is above us in the import order)
_INT64_MAX = np.iinfo(np.int64).max


# ---------------------------------------------------------------------------
# A tiny graph builder
# ---------------------------------------------------------------------------


class _Body:
    """Collects the nodes of a function body or subgraph; every value gets a fresh name."""

    def __init__(self, names: "itertools.count[int]", opset: int) -> None:
        self.nodes: List[onnx.NodeProto] = []
        self._names = names
        self.opset = opset

    def fresh(self, hint: str) -> str:
        return f"{hint}_{next(self._names)}"

    def op(self, op_type: str, *inputs: str, outputs: int = 1, hint: str = "", **attrs) -> "str | List[str]":
        names = [self.fresh(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def reshape(self, x: str, shape: str, hint: str = "reshape") -> str:
        # allowzero: our shapes are explicit, and a 0 must mean an empty axis (B or T = 0).
        return self.op("Reshape", x, shape, hint=hint, allowzero=1)

    def const(self, value, dtype, hint: str = "c") -> str:
        name = self.fresh(hint)
        tensor = numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
        self.nodes.append(helper.make_node("Constant", [], [name], value=tensor))
        return name

    def attr_const(self, attr: str, kind: str) -> str:
        """A Constant whose value is the function attribute ``attr`` (``value_float`` / ``value_int``)."""
        name = self.fresh(attr)
        ref = AttributeProto()
        ref.name = f"value_{kind}"
        ref.ref_attr_name = attr
        ref.type = AttributeProto.FLOAT if kind == "float" else AttributeProto.INT
        node = helper.make_node("Constant", [], [name])
        node.attribute.append(ref)
        self.nodes.append(node)
        return name

    def sub(self) -> "_Body":
        return _Body(self._names, self.opset)

    def graph(self, outputs: Sequence[str], inputs: Sequence[str] = (), name: str = "body") -> onnx.GraphProto:
        # Element types of subgraph values follow the caller's (float32 or float64), so the
        # value infos carry names only; onnx and onnxruntime infer the types.
        return helper.make_graph(
            self.nodes, self.fresh(name),
            [onnx.ValueInfoProto(name=n) for n in inputs],
            [onnx.ValueInfoProto(name=n) for n in outputs],
        )

    def if_(self, cond: str, then: "_Body", then_out: Sequence[str], orelse: "_Body", else_out: Sequence[str]):
        return self.op(
            "If", cond, outputs=len(then_out), hint="if",
            then_branch=then.graph(then_out, name="then"), else_branch=orelse.graph(else_out, name="else"),
        )


# ---------------------------------------------------------------------------
# Pieces shared by the three bodies
# ---------------------------------------------------------------------------


@dataclass
class _Layout:
    """The sequence ``x`` viewed as ``(T, B, U)``, and the shapes to come back."""

    x3: str  # (T, B, U)
    shape: str  # shape of x
    time_major: str  # bool scalar
    steps: str  # T, int64 scalar
    state_shape: str  # (B, *S)
    units: str  # [U]
    batch: str  # [B]
    unit_shape: str  # S


def _layout(b: _Body, x: str) -> _Layout:
    i64 = np.int64
    tm = b.op("Cast", b.attr_const("time_major", "int"), to=TensorProto.BOOL, hint="time_major")
    shape = b.op("Shape", x, hint="shape")
    # Every shape tensor below has a length that shape inference can see (Gather of one
    # dimension, Unsqueeze, Concat), so the Scan body's values get known ranks:
    # onnxruntime's Scan insists on them.
    axis0 = b.const([0], i64)
    d0 = b.op("Unsqueeze", b.op("Gather", shape, b.const(0, i64)), axis0, hint="d0")
    d1 = b.op("Unsqueeze", b.op("Gather", shape, b.const(1, i64)), axis0, hint="d1")
    unit_shape = b.op("Slice", shape, b.const([2], i64), b.const([_INT64_MAX], i64), hint="unit_shape")
    # Product of the unit axes (1 for none): written out, because a -1 in Reshape is
    # ambiguous for empty tensors (T = 0 or B = 0).
    units = b.op("ReduceProd", unit_shape, keepdims=1, hint="units")
    flat = b.reshape(x, b.op("Concat", d0, d1, units, axis=0), hint="x_flat")
    then, orelse = b.sub(), b.sub()
    same = then.op("Identity", flat)
    swapped = orelse.op("Transpose", flat, perm=[1, 0, 2])
    x3 = b.if_(tm, then, [same], orelse, [swapped])
    steps = b.op("Squeeze", b.op("Where", tm, d0, d1), axis0, hint="steps")
    batch = b.op("Where", tm, d1, d0, hint="batch")
    state_shape = b.op("Concat", batch, unit_shape, axis=0, hint="state_shape")
    return _Layout(x3, shape, tm, steps, state_shape, units, batch, unit_shape)


def _unlayout(b: _Body, lay: _Layout, y3: str, hint: str) -> str:
    """(T, B, U) -> the layout and shape of x."""
    then, orelse = b.sub(), b.sub()
    same = then.op("Identity", y3)
    swapped = orelse.op("Transpose", y3, perm=[1, 0, 2])
    return b.reshape(b.if_(lay.time_major, then, [same], orelse, [swapped]), lay.shape, hint=hint)


def _state(b: _Body, lay: _Layout) -> str:
    """Shape (B, U) of a flattened state."""
    return b.op("Concat", lay.batch, lay.units, axis=0, hint="state2")


def _scan(b: _Body, lay: _Layout, states: Sequence[str], scans: Sequence[str], step, n_out: int):
    """Run ``step`` over time; an empty sequence skips the Scan (it refuses zero steps).

    ``step(body, states, slices) -> (new_states, outputs)``. Returns the final states
    and the ``(T, B, U)`` scan outputs.
    """
    body = b.sub()
    state_in = [body.fresh("s_in") for _ in states]
    slice_in = [body.fresh("x_t") for _ in scans]
    new_states, outs = step(body, state_in, slice_in)
    # Scan outputs must be distinct from the state outputs.
    outs = [body.op("Identity", o, hint="out") if o in new_states else o for o in outs]
    scan_body = body.graph(list(new_states) + list(outs), list(state_in) + list(slice_in), name="step")
    loop = b.sub()
    results = loop.op("Scan", *states, *scans, outputs=len(states) + n_out, hint="scan",
                      body=scan_body, num_scan_inputs=len(scans))
    results = [results] if isinstance(results, str) else results
    empty = b.sub()
    empty_results = [empty.op("Identity", s) for s in states] + [empty.op("Identity", scans[0]) for _ in range(n_out)]
    is_empty = b.op("Equal", lay.steps, b.const(0, np.int64), hint="no_steps")
    out = b.if_(is_empty, empty, empty_results, loop, results)
    out = [out] if isinstance(out, str) else out
    return out[: len(states)], out[len(states):]


def _like(b: _Body, value: str, x: str, dtype=np.float64, hint: str = "k") -> str:
    """A float constant in x's element type (rounded once from float64, like NumPy's dtype.type(v))."""
    return b.op("CastLike", b.const(value, dtype, hint), x, hint=hint)


def _unit_param(b: _Body, lay: _Layout, x: str, tau: str) -> str:
    """tau (broadcastable to (1, *S)) -> (1, U) in x's element type."""
    one = b.const([1], np.int64)
    full = b.op("Expand", b.op("CastLike", tau, x), b.op("Concat", one, lay.unit_shape, axis=0))
    return b.reshape(full, b.op("Concat", one, lay.units, axis=0), hint="tau_u")


def _state_in(b: _Body, lay: _Layout, x: str, value: str, state2: str) -> str:
    """A state (broadcastable to (B, *S)) -> (B, U) in x's element type."""
    full = b.op("Expand", b.op("CastLike", value, x), lay.state_shape)
    return b.reshape(full, state2, hint="state_u")


def _coefficients(b: _Body, x: str, tau_u: str) -> Tuple[str, str]:
    """``(a, r)`` with ``r = dt / max(tau, 1e-8)`` and ``a = exp(-r)`` (exp in float64, rounded once)."""
    dt = b.op("CastLike", b.attr_const("dt", "float"), x, hint="dt")
    r = b.op("Div", dt, b.op("Max", tau_u, _like(b, _TAU_MIN, x, hint="tau_min")), hint="r")
    wide = b.op("Cast", r, to=TensorProto.DOUBLE)
    a = b.op("CastLike", b.op("Exp", b.op("Neg", wide)), x, hint="a")
    return a, r


# ---------------------------------------------------------------------------
# Philox in integer ops
# ---------------------------------------------------------------------------


class _Bits:
    """uint64 helpers; values are 32-bit words held in uint64."""

    def __init__(self, b: _Body) -> None:
        self.b = b
        self.bitwise = b.opset >= BITWISE_OPSET
        self._consts: Dict[Tuple, str] = {}

    def u64(self, value) -> str:
        key = (np.asarray(value).tobytes(), np.shape(value))
        if key not in self._consts:
            self._consts[key] = self.b.const(value, np.uint64, "u")
        return self._consts[key]

    def shr(self, x: str, n) -> str:
        return self.b.op("BitShift", x, self.u64(n), direction="RIGHT")

    def shl(self, x: str, n) -> str:
        return self.b.op("BitShift", x, self.u64(n), direction="LEFT")

    def low(self, x: str, bits: int) -> str:
        """The low ``bits`` bits of x."""
        if self.bitwise:
            return self.b.op("BitwiseAnd", x, self.u64((1 << bits) - 1))
        return self.shr(self.shl(x, 64 - bits), 64 - bits)

    def xor3(self, x: str, y: str, z: str) -> str:
        if self.bitwise:
            return self.b.op("BitwiseXor", self.b.op("BitwiseXor", x, y), z)
        # Without bitwise ops (opset < 18): per bit k, (x_k + y_k + z_k) mod 2, reassembled.
        k = np.arange(32, dtype=np.uint64)
        axis = self.b.const([-1], np.int64)
        total = None
        for v in (x, y, z):
            bit = self.shr(self.shl(self.b.op("Unsqueeze", v, axis), 63 - k), 63)
            total = bit if total is None else self.b.op("Add", total, bit)
        parity = self.shl(self.shr(self.shl(total, 63), 63), k)
        summed = self.b.op("ReduceSum", self.b.op("Cast", parity, to=TensorProto.INT64), axis, keepdims=0)
        return self.b.op("Cast", summed, to=TensorProto.UINT64)

    def philox(self, counter: Sequence[str], key: Sequence[str]) -> List[str]:
        """Philox4x32-10 on uint64-held words (see spikeonnx.philox.philox4x32)."""
        c0, c1, c2, c3 = counter
        k0, k1 = key
        for round_index in range(_PHILOX_ROUNDS):
            p0 = self.b.op("Mul", c0, self.u64(_PHILOX_M[0]))
            p1 = self.b.op("Mul", c2, self.u64(_PHILOX_M[1]))
            hi0, lo0 = self.shr(p0, 32), self.low(p0, 32)
            hi1, lo1 = self.shr(p1, 32), self.low(p1, 32)
            c0, c1, c2, c3 = self.xor3(hi1, c1, k0), lo1, self.xor3(hi0, c3, k1), lo0
            if round_index < _PHILOX_ROUNDS - 1:
                k0 = self.low(self.b.op("Add", k0, self.u64(_PHILOX_W[0])), 32)
                k1 = self.low(self.b.op("Add", k1, self.u64(_PHILOX_W[1])), 32)
        return [c0, c1, c2, c3]


def _seeded_uniform(b: _Body, count: str) -> str:
    """``tf.random.stateless_uniform((count,), seed=(seed, seed))`` as float32, seed from the attribute."""
    bits = _Bits(b)
    seed = b.op("Cast", b.attr_const("seed", "int"), to=TensorProto.UINT64, hint="seed")  # two's complement
    seed = b.op("Unsqueeze", seed, b.const([0], np.int64))  # (1,)
    lo, hi = bits.low(seed, 32), bits.shr(seed, 32)
    m0, m1, m2, m3 = bits.philox([lo, hi, lo, hi], [bits.u64(_TF_SEED_KEY[0]), bits.u64(_TF_SEED_KEY[1])])
    # Group g of four outputs uses the starting counter (0, 0, m2, m3) plus g.
    groups = b.op("Div", b.op("Add", count, b.const(3, np.int64)), b.const(4, np.int64), hint="groups")
    index = b.op("Cast", b.op("Range", b.const(0, np.int64), groups, b.const(1, np.int64)), to=TensorProto.UINT64)
    like = b.op("Shape", index)
    counter = [bits.low(index, 32), bits.shr(index, 32), b.op("Expand", m2, like), b.op("Expand", m3, like)]
    words = bits.philox(counter, [m0, m1])
    axis = b.const([1], np.int64)
    stacked = b.op("Concat", *[b.op("Unsqueeze", w, axis) for w in words], axis=1)  # (G, 4)
    flat = b.reshape(stacked, b.op("Unsqueeze", b.op("Mul", groups, b.const(4, np.int64)), b.const([0], np.int64)))
    zero = b.const([0], np.int64)
    words = b.op("Slice", flat, zero, b.op("Unsqueeze", count, zero))
    # 1.m - 1 with m the low 23 bits is exactly m * 2**-23: both the Cast and the Mul are exact.
    mantissa = b.op("Cast", bits.low(words, 23), to=TensorProto.FLOAT)
    return b.op("Mul", mantissa, b.const(2.0**-23, np.float32), hint="uniform")


# ---------------------------------------------------------------------------
# The three bodies
# ---------------------------------------------------------------------------


def _spiking_body(b: _Body, present: Sequence[bool]) -> List[str]:
    rates, voltage = SIGNATURES["SpikingActivation"][0]
    lay = _layout(b, rates)
    state2 = _state(b, lay)
    if present[1]:
        v0 = _state_in(b, lay, rates, voltage, state2)
    else:
        count = b.op("ReduceProd", state2, keepdims=0, hint="count")
        v0 = b.op("CastLike", b.reshape(_seeded_uniform(b, count), state2), rates, hint="v0")
    dt = b.op("CastLike", b.attr_const("dt", "float"), rates, hint="dt")

    def step(s: _Body, states, slices):
        v = s.op("Add", states[0], s.op("Mul", slices[0], dt), hint="v")  # r * dt rounded on its own
        n = s.op("Floor", v, hint="n")
        spikes = s.op("Div", n, dt, hint="spikes")  # a true division, as the contract says
        return [s.op("Sub", v, n, hint="v_next")], [spikes]

    (v_final,), (spikes3,) = _scan(b, lay, [v0], [lay.x3], step, 1)
    spikes = _unlayout(b, lay, spikes3, "spikes")
    final = b.reshape(v_final, lay.state_shape, hint="final_voltage")
    return [spikes, final]


def _lowpass_body(b: _Body, present: Sequence[bool]) -> List[str]:
    x, tau, level = SIGNATURES["Lowpass"][0]
    lay = _layout(b, x)
    state2 = _state(b, lay)
    a, _ = _coefficients(b, x, _unit_param(b, lay, x, tau))
    gain = b.op("Sub", _like(b, 1.0, x, hint="one"), a, hint="gain")
    if present[2]:
        level0 = _state_in(b, lay, x, level, state2)
    else:  # the kernel rests at 0 without initial_level
        level0 = b.op("Expand", _like(b, 0.0, x, hint="zero"), state2)

    def step(s: _Body, states, slices):
        new = s.op("Add", s.op("Mul", gain, slices[0]), s.op("Mul", a, states[0]), hint="level")  # (1-a) x + a y
        return [new], [new]

    (final,), (y3,) = _scan(b, lay, [level0], [lay.x3], step, 1)
    y = _unlayout(b, lay, y3, "y")
    return [y, b.reshape(final, lay.state_shape, hint="final_level")]


def _alpha_body(b: _Body, present: Sequence[bool]) -> List[str]:
    x, tau, level, state = SIGNATURES["Alpha"][0]
    lay = _layout(b, x)
    state2 = _state(b, lay)
    a, r = _coefficients(b, x, _unit_param(b, lay, x, tau))
    ra = b.op("Mul", r, a, hint="ra")
    one_a = b.op("Sub", _like(b, 1.0, x, hint="one"), a, hint="one_a")
    input2 = b.op("Sub", one_a, ra, hint="input2")  # 1 - a - r*a
    if present[3]:
        full = b.op("CastLike", state, x)
        stages = []
        for k in (0, 1):
            stage = b.op("Gather", full, b.const(k, np.int64), axis=1)  # (B or 1, *S)
            stages.append(_state_in(b, lay, x, stage, state2))
        s1, s2 = stages
    elif present[2]:
        s1 = s2 = _state_in(b, lay, x, level, state2)  # at rest at the level
    else:
        s1 = s2 = b.op("Expand", _like(b, 0.0, x, hint="zero"), state2)

    def step(s: _Body, states, slices):
        old1, old2 = states
        u = slices[0]
        new1 = s.op("Add", s.op("Mul", a, old1), s.op("Mul", one_a, u), hint="s1")
        new2 = s.op("Add", s.op("Add", s.op("Mul", ra, old1), s.op("Mul", a, old2)), s.op("Mul", input2, u), hint="s2")
        return [new1, new2], [new2]

    (f1, f2), (y3,) = _scan(b, lay, [s1, s2], [lay.x3], step, 1)
    y = _unlayout(b, lay, y3, "y")
    axis = b.const([1], np.int64)
    stacked = b.op("Concat", b.op("Unsqueeze", f1, axis), b.op("Unsqueeze", f2, axis), axis=1)  # (B, 2, U)
    shape = b.op("Concat", lay.batch, b.const([2], np.int64), lay.unit_shape, axis=0)
    return [y, b.reshape(stacked, shape, hint="final_state")]


_BODIES = {"SpikingActivation": _spiking_body, "Lowpass": _lowpass_body, "Alpha": _alpha_body}


def make_function(
    op_type: str,
    *,
    opset: int,
    present: Optional[Sequence[bool]] = None,
    n_inputs: Optional[int] = None,
    n_outputs: int = 2,
) -> onnx.FunctionProto:
    """The model-local function of one ``spikeonnx`` op.

    Parameters
    ----------
    op_type : str
        ``"SpikingActivation"``, ``"Lowpass"`` or ``"Alpha"``.
    opset : int
        Default-domain opset of the model the function goes into (>= :data:`MIN_OPSET`);
        the body imports exactly this version.
    present : sequence of bool, optional
        For each formal input, whether the nodes supply it (default: all). A function
        serves nodes that agree on this.
    n_inputs, n_outputs : int
        How many inputs (default: all the op has) and outputs the function declares:
        as many as its nodes have (inputs past ``n_inputs`` are absent).

    Returns
    -------
    onnx.FunctionProto
        Domain ``spikeonnx``, name ``op_type``, the first ``n_inputs`` / ``n_outputs``
        formal inputs and outputs,
        attributes ``dt`` (required), ``time_major`` and (SpikingActivation) ``seed``.

    Raises
    ------
    ValueError
        On an unknown op, an opset below :data:`MIN_OPSET`, or a required input marked absent.
    """
    if op_type not in _BODIES:
        raise ValueError(f"unknown spikeonnx op {op_type!r}; expected one of {', '.join(OP_TYPES)}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(
            f"model-local functions need a default-domain opset >= {MIN_OPSET} (CastLike), got {opset!r}"
        )
    inputs, outputs = SIGNATURES[op_type]
    n_inputs = len(inputs) if n_inputs is None else n_inputs
    if not 1 <= n_inputs <= len(inputs) or not 1 <= n_outputs <= len(outputs):
        raise ValueError(f"{op_type} has 1 to {len(inputs)} inputs and 1 to {len(outputs)} outputs")
    present = [True] * n_inputs if present is None else [bool(p) for p in present]
    present = list(present[:n_inputs]) + [False] * (len(inputs) - n_inputs)
    if len(present) != len(inputs):
        raise ValueError(f"{op_type}: 'present' needs {len(inputs)} entries, got {len(present)}")
    required = 1 if op_type == "SpikingActivation" else 2
    if not all(present[:required]):
        raise ValueError(f"{op_type}: inputs {', '.join(inputs[:required])} are required")
    b = _Body(itertools.count(), opset)
    results = _BODIES[op_type](b, present)
    # Name the function's outputs as the contract does.
    for result, name in zip(results, outputs, strict=True):
        for node in b.nodes:
            node.output[:] = [name if o == result else o for o in node.output]
    attrs = []
    for attr, default in _ATTRIBUTES[op_type].items():
        if default is not None:
            attrs.append(helper.make_attribute(attr, default))
    function = helper.make_function(
        DOMAIN, op_type, list(inputs[:n_inputs]), list(outputs[:n_outputs]), b.nodes, [helper.make_opsetid("", opset)],
        attributes=[a for a, d in _ATTRIBUTES[op_type].items() if d is None],
        doc_string=f"spikeonnx.{op_type} in standard ONNX ops (docs/op-contract.md); "
        "runs where the spikeonnx op library is not loaded.",
    )
    function.attribute_proto.extend(attrs)
    return function


# ---------------------------------------------------------------------------
# Attaching the functions to a model
# ---------------------------------------------------------------------------


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ValueError("the model imports no default-domain opset")


def _walk_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from _walk_nodes(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _walk_nodes(sub)


def _used_names(model: onnx.ModelProto) -> set:
    names = {t.name for t in model.graph.initializer} | {i.name for i in model.graph.input}
    for node in _walk_nodes(model.graph):
        names.update(node.input)
        names.update(node.output)
    return names


def attach_functions(model: onnx.ModelProto, *, skip_unsupported: bool = False) -> onnx.ModelProto:
    """Add the model-local function of every ``spikeonnx`` op the model uses (in place).

    One :class:`onnx.FunctionProto` per op type serves all its nodes (attributes are
    function attributes). Nodes of one type are given the same number of inputs (a
    missing optional input becomes ``""``) and outputs (a missing final state gets an
    unused name, ``{node output}__unused_state``), and attributes left at their default
    are written out: the ONNX reference evaluator calls a function only with exactly its
    inputs and ignores attribute defaults, onnxruntime only with all its outputs. None of
    this changes what the op library computes. Existing ``spikeonnx`` functions are replaced, so
    calling this twice changes nothing; the event ops' nodes and functions
    (:func:`spikeonnx.optimize`) are left as they are, so the two may run in either
    order. The IR version is raised to 9 if lower (never
    above :data:`spikeonnx.contract.MAX_IR_VERSION`).

    Parameters
    ----------
    model : onnx.ModelProto
        The model, changed in place.
    skip_unsupported : bool
        Instead of raising, warn and leave an op type without a function when its
        nodes differ in the optional inputs they supply (then the model needs the op
        library for that op type; nodes of the other types still get functions).

    Returns
    -------
    onnx.ModelProto
        ``model``, for chaining.

    Raises
    ------
    ValueError
        If the model uses ``spikeonnx`` ops with a default-domain opset below
        :data:`MIN_OPSET`, a node has more inputs or outputs than its op, or nodes of one
        op type differ in which optional inputs they supply (one body cannot serve both;
        the message names them).
    """
    nodes: Dict[str, List[onnx.NodeProto]] = {}
    for node in _walk_nodes(model.graph):
        if node.domain == DOMAIN and node.op_type not in EVENT_OP_TYPES:  # those have their own functions
            if node.op_type not in SIGNATURES:
                raise ValueError(f"node {node.name!r}: unknown spikeonnx op {node.op_type!r}")
            nodes.setdefault(node.op_type, []).append(node)
    kept = [f for f in model.functions if f.domain != DOMAIN or f.name in EVENT_OP_TYPES]
    del model.functions[:]
    model.functions.extend(kept)
    if not nodes:
        return model
    opset = _default_opset(model)
    if opset < MIN_OPSET:
        raise ValueError(
            f"model-local functions need a default-domain opset >= {MIN_OPSET}, the model imports {opset}; "
            "export with a newer opset or without functions"
        )
    used = _used_names(model)
    for op_type in OP_TYPES:
        if op_type not in nodes:
            continue
        inputs, outputs = SIGNATURES[op_type]
        patterns = {}
        for node in nodes[op_type]:
            if len(node.input) > len(inputs) or len(node.output) > len(outputs):
                raise ValueError(
                    f"{op_type} node {node.name!r} has {len(node.input)} inputs and {len(node.output)} outputs; "
                    f"the op has at most {len(inputs)} and {len(outputs)}"
                )
            present = tuple(i < len(node.input) and node.input[i] != "" for i in range(len(inputs)))
            patterns.setdefault(present, []).append(node.name)
        if len(patterns) > 1:
            described = "; ".join(
                f"{', '.join(repr(n) for n in names)} with {', '.join(i for i, p in zip(inputs, pat, strict=True) if p)}"
                for pat, names in patterns.items()
            )
            message = (
                f"{op_type} nodes differ in the optional inputs they supply ({described}); "
                "one model-local function cannot serve them all"
            )
            if not skip_unsupported:
                raise ValueError(message)
            warnings.warn(f"{message}: {op_type} gets no function and needs the spikeonnx op library", stacklevel=2)
            continue
        (present,) = patterns
        for node in nodes[op_type]:
            # The reference evaluator ignores a function's attribute defaults: spell them out.
            given = {a.name for a in node.attribute}
            for attr, default in _ATTRIBUTES[op_type].items():
                if default is not None and attr not in given:
                    node.attribute.append(helper.make_attribute(attr, default))
        # The function declares as many inputs and outputs as the widest node; narrower
        # nodes are padded (the reference evaluator needs exactly the function's inputs,
        # onnxruntime all of its outputs).
        n_inputs = max(len(node.input) for node in nodes[op_type])
        n_outputs = max(len(node.output) for node in nodes[op_type])
        for node in nodes[op_type]:
            while len(node.input) < n_inputs:
                node.input.append("")
            while len(node.output) < n_outputs:
                name = f"{node.output[0]}__unused_state"
                while name in used:
                    name += "_"
                used.add(name)
                node.output.append(name)
        model.functions.append(
            make_function(op_type, opset=opset, present=present, n_inputs=n_inputs, n_outputs=n_outputs)
        )
    model.ir_version = min(max(model.ir_version, _MIN_IR), MAX_IR_VERSION)
    if not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, OPSET_VERSION))
    return model
