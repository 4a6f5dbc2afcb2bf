"""NumPy reference implementation of the ``spikeonnx`` ops: the single source of truth.

Every formula of the op contract (see ``docs/op-contract.md``) is written here once,
in plain NumPy, in the exact order of float operations the contract prescribes. The
C++ kernels, the Keras layers and the exporter are all tested against these
functions.

Two layers of API:

- plain functions :func:`spiking_activation`, :func:`lowpass`, :func:`alpha` and
  :func:`tf_stateless_uniform`, usable without ONNX;
- :class:`onnx.reference.op_run.OpRun` subclasses :class:`SpikingActivation`,
  :class:`Lowpass` and :class:`Alpha`, collected in :data:`REFERENCE_OPS`, so that
  ``onnx.reference.ReferenceEvaluator(model, new_ops=REFERENCE_OPS)`` runs any
  model that uses our ops in pure Python.

Computation happens in the dtype of the main input: float32 inputs are computed in
float32 (with a rounding after every single operation, since NumPy ufuncs never fuse
a multiply and an add), float64 inputs in float64.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np
from onnx.reference.op_run import OpRun

from .contract import DOMAIN
from .philox import philox4x32, tf_stateless_uniform

__all__ = [
    "spiking_activation",
    "lowpass",
    "alpha",
    "event_matmul",
    "event_gemm",
    "event_conv",
    "tf_stateless_uniform",
    "philox4x32",
    "SpikingActivation",
    "Lowpass",
    "Alpha",
    "REFERENCE_OPS",
    "check_node_attributes",
    "check_model_attributes",
    "DOMAIN",
    "TAU_MIN",
]

#: Lower clamp applied to time constants before dividing by them.
TAU_MIN = 1e-8

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# ---------------------------------------------------------------------------
# Input validation helpers
# ---------------------------------------------------------------------------


def _check_dt(op: str, dt: Any) -> float:
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise ValueError(f"{op}: attribute 'dt' must be a number, got {dt!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{op}: attribute 'dt' must be finite and > 0, got {value!r}")
    return value


def _check_main(op: str, name: str, x: Any) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{op}: input '{name}' must be float32 or float64, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(
            f"{op}: input '{name}' must have at least 2 dimensions (batch and time), got shape {x.shape}"
        )
    return x


def _time_axis(time_major: Any) -> int:
    if int(time_major) not in (0, 1):
        raise ValueError(f"attribute 'time_major' must be 0 or 1, got {time_major!r}")
    return 0 if int(time_major) else 1


def _as_batch_first(x: np.ndarray, time_major: Any) -> np.ndarray:
    """View ``x`` as (T, B, *S) so that the time loop indexes the first axis."""
    return np.moveaxis(x, _time_axis(time_major), 0)


def _check_broadcast(op: str, name: str, value: Any, target: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype.kind not in "fiu":
        raise ValueError(f"{op}: input '{name}' must be numeric, got dtype {value.dtype}")
    if value.ndim > len(target):
        raise ValueError(
            f"{op}: input '{name}' has shape {value.shape}, which has more dimensions than {target}"
        )
    try:
        out = np.broadcast_to(value.astype(dtype, copy=False), target)
    except ValueError:
        raise ValueError(
            f"{op}: input '{name}' has shape {value.shape}, which does not broadcast to {target}"
        ) from None
    return out


def _allocating(op: str, output: str, shape: Tuple[int, ...], input_shape: Tuple[int, ...], name: str, make: Any) -> Any:
    """``make()``, with running out of memory reported naming the op, output and input."""
    try:
        return make()
    except MemoryError:
        raise MemoryError(
            f"{op}: output '{output}' of shape {shape} (from input '{name}' of shape {input_shape}) "
            "cannot be allocated"
        ) from None


def _check_tau(op: str, tau: Any, unit_shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    checked = _check_broadcast(op, "tau", tau, (1, *unit_shape), dtype)
    # On the given values, not the broadcast view: that may be far larger.
    if np.isnan(np.asarray(tau).astype(dtype, copy=False)).any():
        raise ValueError(f"{op}: input 'tau' contains NaN")
    return checked


# ---------------------------------------------------------------------------
# The three ops as plain functions
# ---------------------------------------------------------------------------


def spiking_activation(
    rates: np.ndarray,
    dt: float,
    initial_voltage: Optional[np.ndarray] = None,
    seed: int = 0,
    time_major: bool = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """Turn firing rates into spikes with an integrate-and-fire voltage per unit.

    For every element and timestep: ``v = v + (r * dt)`` (the product rounded
    first), ``n = floor(v)``, ``v = v - n``, ``spike = n / dt``.

    Parameters
    ----------
    rates : numpy.ndarray
        Firing rates, shape (B, T, *S) (or (T, B, *S) if ``time_major``),
        float32 or float64.
    dt : float
        Timestep length, finite and > 0.
    initial_voltage : numpy.ndarray, optional
        Voltage at the start, shape (B, *S). When omitted it is drawn with
        :func:`tf_stateless_uniform` (shape (B, *S), float32, cast to the dtype
        of ``rates``).
    seed : int
        Seed of the initial voltage draw; ignored if ``initial_voltage`` is given.
    time_major : bool
        Whether ``rates`` and the spikes are laid out (T, B, *S).

    Returns
    -------
    spikes : numpy.ndarray
        Same shape and dtype as ``rates``; each value is a multiple of ``1/dt``.
    final_voltage : numpy.ndarray
        Voltage after the last step, shape (B, *S).

    Raises
    ------
    ValueError
        On a non-float or low-rank ``rates``, a bad ``dt``, a wrongly shaped
        ``initial_voltage`` or an invalid ``time_major``.
    """
    return _spiking_activation(rates, dt, initial_voltage, seed, time_major, want_final=True)


def _spiking_activation(
    rates: Any, dt: Any, initial_voltage: Any, seed: Any, time_major: Any, *, want_final: bool
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """:func:`spiking_activation`; without ``want_final`` an empty input draws nothing.

    The final voltage is then ``None`` when there is no step to compute: empty work is
    free, as in the C++ kernel (with T = 0 the final voltage is the initial one, so it is
    drawn only when asked for).
    """
    op = "SpikingActivation"
    rates = _check_main(op, "rates", rates)
    dtype = rates.dtype
    dt_value = _check_dt(op, dt)
    steps = _as_batch_first(rates, time_major)  # (T, B, *S)
    state_shape = steps.shape[1:]
    if initial_voltage is None:
        if steps.size == 0 and not want_final:
            return np.ascontiguousarray(rates.copy()), None
        voltage = _allocating(op, "final_voltage", state_shape, rates.shape, "rates",
                              lambda: tf_stateless_uniform(state_shape, seed).astype(dtype))
    else:
        initial_voltage = np.asarray(initial_voltage)
        if initial_voltage.dtype.kind not in "fiu":
            raise ValueError(f"{op}: input 'initial_voltage' must be numeric, got dtype {initial_voltage.dtype}")
        if initial_voltage.shape != state_shape:
            raise ValueError(
                f"{op}: input 'initial_voltage' must have shape (B, *S) = {state_shape}, "
                f"got {initial_voltage.shape}"
            )
        voltage = initial_voltage.astype(dtype, copy=True)
    dt_cast = dtype.type(dt_value)
    spikes = np.empty(steps.shape, dtype=dtype)
    for t in range(steps.shape[0]):
        voltage = voltage + steps[t] * dt_cast  # two separately rounded ops
        n_spikes = np.floor(voltage)
        voltage = voltage - n_spikes
        spikes[t] = n_spikes / dt_cast
    return np.ascontiguousarray(np.moveaxis(spikes, 0, _time_axis(time_major))), voltage


def _smoothing(tau: np.ndarray, dt: float, dtype: np.dtype) -> Tuple[np.ndarray, np.ndarray]:
    """Return ``(a, r)`` with ``r = dt / max(tau, TAU_MIN)`` and ``a = exp(-r)``."""
    ratio = dtype.type(dt) / np.maximum(tau, dtype.type(TAU_MIN))
    # exp in float64, rounded once: float32 exp implementations differ by an ulp or two
    # between libraries and CPUs, and Alpha's 1 - a - r*a amplifies that difference.
    return np.exp(-ratio.astype(np.float64)).astype(dtype), ratio


def _filter_setup(
    op: str, x: Any, tau: Any, initial_level: Any, dt: Any, time_major: Any
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checks shared by the filter ops; returns ``(steps, level, a, r)``.

    ``steps`` is the input as (T, B, *S), ``level`` the initial level broadcast to
    (B, *S) (read-only), and ``a``, ``r`` the per-unit coefficients of `_smoothing`, or
    ``None`` for an empty input (no step to compute, so no per-unit arrays either).
    """
    x = _check_main(op, "x", x)
    dtype = x.dtype
    dt_value = _check_dt(op, dt)
    steps = _as_batch_first(x, time_major)
    state_shape = steps.shape[1:]
    tau = _check_tau(op, tau, state_shape[1:], dtype)
    level = _check_broadcast(op, "initial_level", initial_level, state_shape, dtype)
    if steps.size == 0:
        return steps, level, None, None
    a, r = _smoothing(tau, dt_value, dtype)
    return steps, level, a, r


def lowpass(
    x: np.ndarray,
    tau: Any,
    initial_level: Any,
    dt: float,
    time_major: bool = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """First-order lowpass filter, ``y_t = (1 - a) x_t + a y_{t-1}``, ``a = exp(-dt / tau)``.

    Parameters
    ----------
    x : numpy.ndarray
        Input, shape (B, T, *S) (or (T, B, *S) if ``time_major``), float32 or float64.
    tau : array_like
        Time constant(s), broadcastable to (1, *S); clamped below at 1e-8.
    initial_level : array_like
        ``y_{-1}``, broadcastable to (B, *S).
    dt : float
        Timestep length, finite and > 0.
    time_major : bool
        Whether ``x`` and ``y`` are laid out (T, B, *S).

    Returns
    -------
    y : numpy.ndarray
        Filtered signal, same shape and dtype as ``x``.
    final_level : numpy.ndarray
        Filter state after the last step, shape (B, *S).

    Raises
    ------
    ValueError
        On bad shapes, dtypes, ``dt``, NaN ``tau`` or an invalid ``time_major``.
    """
    return _lowpass(x, tau, initial_level, dt, time_major, want_final=True)


def _lowpass(
    x: Any, tau: Any, initial_level: Any, dt: Any, time_major: Any, *, want_final: bool
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """:func:`lowpass`; the final level is ``None`` for an empty input unless ``want_final``."""
    steps, level, a, _ = _filter_setup("Lowpass", x, tau, initial_level, dt, time_major)
    dtype = steps.dtype
    if a is None:  # empty input: the final level is the initial one
        y = np.asarray(x).copy()
        if not want_final:
            return y, None
        return y, _allocating("Lowpass", "final_level", level.shape, y.shape, "x", level.copy)
    level = level.copy()
    one_minus_a = dtype.type(1) - a
    y = np.empty(steps.shape, dtype=dtype)
    for t in range(steps.shape[0]):
        level = one_minus_a * steps[t] + a * level
        y[t] = level
    return np.ascontiguousarray(np.moveaxis(y, 0, _time_axis(time_major))), level


def _check_alpha_state(
    initial_state: Any, state_shape: Tuple[int, ...], dtype: np.dtype, copy: bool = True
) -> Tuple[np.ndarray, np.ndarray]:
    """Validate an Alpha ``initial_state`` and return ``(s1, s2)``, each (B, *S).

    Accepted shapes are (B, 2, *S) and (1, 2, *S) (one state shared by the batch).
    Without ``copy`` the two stages are read-only broadcast views.
    """
    op = "Alpha"
    batch, units = state_shape[0], state_shape[1:]
    expected = (batch, 2, *units)
    state = np.asarray(initial_state)
    if state.dtype.kind not in "fiu":
        raise ValueError(f"{op}: input 'initial_state' must be numeric, got dtype {state.dtype}")
    # Only the batch axis may broadcast: a state is per unit and stage, never shared across them.
    if state.ndim != len(expected) or state.shape[1:] != expected[1:] or state.shape[0] not in (batch, 1):
        raise ValueError(
            f"{op}: input 'initial_state' must have shape (B, 2, *S) = {expected} "
            f"(or (1, 2, *S)), got {state.shape}"
        )
    state = np.broadcast_to(state.astype(dtype, copy=False), expected)
    if not copy:
        return state[:, 0], state[:, 1]
    return state[:, 0].copy(), state[:, 1].copy()


def alpha(
    x: np.ndarray,
    tau: Any,
    initial_level: Any,
    dt: float,
    time_major: bool = False,
    initial_state: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Second-order alpha filter (impulse response ``t/tau^2 exp(-t/tau)``), zero-order hold.

    With ``a = exp(-r)`` and ``r = dt / max(tau, 1e-8)``, each step computes
    ``s1' = a s1 + (1 - a) u`` and ``s2' = r a s1 + a s2 + (1 - a - r a) u`` (using the
    old ``s1``), and outputs ``y_t = s2'``. The state starts at rest at the initial
    level, ``(s1, s2) = (initial_level, initial_level)``, unless ``initial_state``
    gives both stages explicitly.

    Parameters
    ----------
    x : numpy.ndarray
        Input, shape (B, T, *S) (or (T, B, *S) if ``time_major``), float32 or float64.
    tau : array_like
        Time constant(s), broadcastable to (1, *S); clamped below at 1e-8.
    initial_level : array_like
        Level the filter rests at before the first step (both stages), broadcastable
        to (B, *S). Still validated, but unused, when ``initial_state`` is given.
    dt : float
        Timestep length, finite and > 0.
    time_major : bool
        Whether ``x`` and ``y`` are laid out (T, B, *S).
    initial_state : numpy.ndarray, optional
        Full starting state, shape (B, 2, *S) or (1, 2, *S):
        ``[:, 0]`` is s1, ``[:, 1]`` is s2. Takes precedence over ``initial_level``.

    Returns
    -------
    y : numpy.ndarray
        Filtered signal, same shape and dtype as ``x``.
    final_state : numpy.ndarray
        Shape (B, 2, *S): ``final_state[:, 0]`` is s1, ``final_state[:, 1]`` is s2.

    Raises
    ------
    ValueError
        On bad shapes, dtypes, ``dt``, NaN ``tau`` or an invalid ``time_major``.
    """
    return _alpha(x, tau, initial_level, dt, time_major, initial_state, want_final=True)


def _alpha(
    x: Any, tau: Any, initial_level: Any, dt: Any, time_major: Any, initial_state: Any, *, want_final: bool
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """:func:`alpha`; the final state is ``None`` for an empty input unless ``want_final``."""
    steps, level, a, r = _filter_setup("Alpha", x, tau, initial_level, dt, time_major)
    dtype = steps.dtype
    if initial_state is not None:
        checked_state = _check_alpha_state(initial_state, steps.shape[1:], dtype, copy=a is not None)
    if a is None:  # empty input: the final state is the start state
        y = np.asarray(x).copy()
        if not want_final:
            return y, None
        full = (steps.shape[1], 2, *steps.shape[2:])

        def start() -> np.ndarray:
            stages = checked_state if initial_state is not None else (level, level)
            return np.stack(stages, axis=1)

        return y, _allocating("Alpha", "final_state", full, y.shape, "x", start)
    if initial_state is None:
        s1, s2 = level.copy(), level.copy()
    else:
        s1, s2 = checked_state
    one = dtype.type(1)
    ra = r * a
    b1 = one - a
    b2 = one - a - ra
    y = np.empty(steps.shape, dtype=dtype)
    for t in range(steps.shape[0]):
        u = steps[t]
        s1, s2 = a * s1 + b1 * u, ra * s1 + a * s2 + b2 * u
        y[t] = s2
    final_state = np.stack([s1, s2], axis=1)
    return np.ascontiguousarray(np.moveaxis(y, 0, _time_axis(time_major))), final_state


# ---------------------------------------------------------------------------
# onnx.reference operators
# ---------------------------------------------------------------------------


def _present(value: Any) -> bool:
    return value is not None


def _attribute_types(op_type: str) -> Optional[dict]:
    """``{name: AttributeProto type}`` of a ``spikeonnx`` op from its schema, or None if unknown."""
    import onnx.defs

    from .schemas import register_schemas  # the schemas are the one list of attributes

    register_schemas()
    try:
        schema = onnx.defs.get_schema(op_type, 1, DOMAIN)
    except onnx.defs.SchemaError:
        return None
    return {name: int(attr.type.value) for name, attr in schema.attributes.items()}


def check_node_attributes(node: Any) -> None:
    """Refuse a ``spikeonnx`` node's unknown attributes and attributes of the wrong type.

    onnxruntime gives custom ops no way to list a node's attributes, so the kernels can
    refuse a wrongly typed attribute they read (``time_major=1.0``) but not one they do
    not know (a misspelt ``time_mayor``); this check covers both, from the op schemas.
    Nodes of other domains or unknown op types are left alone.

    Parameters
    ----------
    node : onnx.NodeProto
        The node to check.

    Raises
    ------
    ValueError
        Naming the op, the node and the attribute.
    """
    if node.domain != DOMAIN:
        return
    types = _attribute_types(node.op_type)
    if types is None:
        return
    from onnx import AttributeProto

    for att in node.attribute:
        if att.name not in types:
            raise ValueError(
                f"{node.op_type} node {node.name!r}: unknown attribute {att.name!r} "
                f"(the op has {', '.join(sorted(types))})"
            )
        if att.type != types[att.name]:
            want = AttributeProto.AttributeType.Name(types[att.name])
            got = AttributeProto.AttributeType.Name(att.type)
            raise ValueError(
                f"{node.op_type} node {node.name!r}: attribute {att.name!r} must be of type {want}, got {got}"
            )


def check_model_attributes(model: Any) -> None:
    """:func:`check_node_attributes` on every node of ``model``, subgraphs and functions included.

    Parameters
    ----------
    model : onnx.ModelProto
        The model to check.

    Raises
    ------
    ValueError
        For the first offending node, naming the op, the node and the attribute.
    """
    from onnx import AttributeProto

    def walk(nodes: Any) -> None:
        for node in nodes:
            check_node_attributes(node)
            for att in node.attribute:
                if att.type == AttributeProto.GRAPH:
                    walk(att.g.node)
                elif att.type == AttributeProto.GRAPHS:
                    for graph in att.graphs:
                        walk(graph.node)

    walk(model.graph.node)
    for function in model.functions:
        walk(function.node)


class _SpikeOnnxOp(OpRun):
    """Common plumbing: attribute checks, and results trimmed to the declared outputs."""

    op_domain = DOMAIN

    def _load_attributes(self) -> None:
        # Before OpRun stores them: a FLOAT time_major would otherwise be honoured, and an
        # unknown attribute would be set on the instance (even over a method's name).
        check_node_attributes(self.onnx_node)
        super()._load_attributes()

    def _wants_state(self) -> bool:
        outputs = list(self.onnx_node.output)
        return len(outputs) > 1 and bool(outputs[1])

    def _select_outputs(self, results: Tuple[np.ndarray, np.ndarray]) -> tuple:
        outputs = list(self.onnx_node.output)
        if not outputs or len(outputs) > len(results):
            raise ValueError(
                f"{self.onnx_node.op_type} node {self.onnx_node.name!r}: expected 1 or "
                f"{len(results)} outputs, got {len(outputs)}"
            )
        return tuple(results[: len(outputs)])

    def _dt(self, dt: Any) -> float:
        if dt is None:
            raise ValueError(
                f"{self.onnx_node.op_type} node {self.onnx_node.name!r}: required attribute 'dt' is missing"
            )
        return dt


class SpikingActivation(_SpikeOnnxOp):
    """``spikeonnx::SpikingActivation`` for :class:`onnx.reference.ReferenceEvaluator`."""

    def _run(self, rates, initial_voltage=None, dt=None, time_major=0, seed=0):  # type: ignore[override]
        results = _spiking_activation(
            rates,
            self._dt(dt),
            initial_voltage if _present(initial_voltage) else None,
            int(seed),
            time_major,
            want_final=self._wants_state(),
        )
        return self._select_outputs(results)


class Lowpass(_SpikeOnnxOp):
    """``spikeonnx::Lowpass`` for :class:`onnx.reference.ReferenceEvaluator`."""

    def _run(self, x, tau=None, initial_level=None, dt=None, time_major=0):  # type: ignore[override]
        if tau is None or initial_level is None:
            raise ValueError(
                f"Lowpass node {self.onnx_node.name!r}: inputs 'tau' and 'initial_level' are required"
            )
        results = _lowpass(x, tau, initial_level, self._dt(dt), time_major, want_final=self._wants_state())
        return self._select_outputs(results)


class Alpha(_SpikeOnnxOp):
    """``spikeonnx::Alpha`` for :class:`onnx.reference.ReferenceEvaluator`."""

    def _run(  # type: ignore[override]
        self, x, tau=None, initial_level=None, initial_state=None, dt=None, time_major=0
    ):
        if tau is None or initial_level is None:
            raise ValueError(
                f"Alpha node {self.onnx_node.name!r}: inputs 'tau' and 'initial_level' are required"
            )
        results = _alpha(
            x,
            tau,
            initial_level,
            self._dt(dt),
            time_major,
            initial_state if _present(initial_state) else None,
            want_final=self._wants_state(),
        )
        return self._select_outputs(results)


#: Pass as ``ReferenceEvaluator(model, new_ops=REFERENCE_OPS)``.
REFERENCE_OPS = [SpikingActivation, Lowpass, Alpha]


# ---------------------------------------------------------------------------
# Event-driven weighted ops (spikeonnx.events): their value is the standard op's
# ---------------------------------------------------------------------------


def event_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``EventMatMul``: ``x @ w`` for ``x (..., K)`` and ``w (K, N)``, in float64."""
    return np.asarray(x, dtype=np.float64) @ np.asarray(w, dtype=np.float64)


def event_gemm(
    a: np.ndarray,
    b: np.ndarray,
    c: Optional[np.ndarray] = None,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    trans_b: int = 0,
) -> np.ndarray:
    """``EventGemm``: ``alpha * a @ b' + beta * c`` (``b' = b.T`` if ``trans_b``), in float64."""
    b64 = np.asarray(b, dtype=np.float64)
    y = float(alpha) * (np.asarray(a, dtype=np.float64) @ (b64.T if trans_b else b64))
    if c is not None:
        y = y + float(beta) * np.asarray(c, dtype=np.float64)
    return y


def event_conv(
    x: np.ndarray,
    w: np.ndarray,
    b: Optional[np.ndarray] = None,
    *,
    strides: Optional[Sequence[int]] = None,
    pads: Optional[Sequence[int]] = None,
    dilations: Optional[Sequence[int]] = None,
    group: int = 1,
    auto_pad: str = "NOTSET",
) -> np.ndarray:
    """``EventConv``: ONNX ``Conv`` (N, C, *spatial), any number of spatial axes, in float64.

    A sum over kernel taps of strided slices of the padded input, each contracted with
    that tap's weights per group.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    spatial = x.ndim - 2
    kernel = w.shape[2:]
    strides = list(strides or [1] * spatial)
    dilations = list(dilations or [1] * spatial)
    begin, end = [0] * spatial, [0] * spatial
    for i in range(spatial):
        span = dilations[i] * (kernel[i] - 1) + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out = -(-x.shape[2 + i] // strides[i])
            total = max(0, (out - 1) * strides[i] + span - x.shape[2 + i])
            begin[i] = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            end[i] = total - begin[i]
        elif auto_pad == "NOTSET" and pads:
            begin[i], end[i] = pads[i], pads[i + spatial]
    xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(begin, end, strict=True)))
    out_shape = [
        (xp.shape[2 + i] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1 for i in range(spatial)
    ]
    m, cg = w.shape[0], w.shape[1]
    mg = m // group
    y = np.zeros((x.shape[0], m, *out_shape))
    for tap in np.ndindex(*kernel):
        window = tuple(
            slice(tap[i] * dilations[i], tap[i] * dilations[i] + strides[i] * (out_shape[i] - 1) + 1, strides[i])
            for i in range(spatial)
        )
        xs = xp[(slice(None), slice(None), *window)]
        for g in range(group):
            wg = w[(slice(g * mg, (g + 1) * mg), slice(None), *tap)]
            y[:, g * mg : (g + 1) * mg] += np.einsum("nc...,mc->nm...", xs[:, g * cg : (g + 1) * cg], wg)
    if b is not None:
        y += np.asarray(b, dtype=np.float64).reshape((1, m) + (1,) * spatial)
    return y
