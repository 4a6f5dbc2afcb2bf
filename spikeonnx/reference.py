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

__all__ = [
    "spiking_activation",
    "lowpass",
    "alpha",
    "tf_stateless_uniform",
    "philox4x32",
    "SpikingActivation",
    "Lowpass",
    "Alpha",
    "REFERENCE_OPS",
    "DOMAIN",
    "TAU_MIN",
]

#: ONNX domain of the ops implemented here.
DOMAIN = "spikeonnx"
#: Lower clamp applied to time constants before dividing by them.
TAU_MIN = 1e-8

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# ---------------------------------------------------------------------------
# Philox4x32-10 and TensorFlow's stateless uniform generator
# ---------------------------------------------------------------------------

# Philox4x32 round multipliers and Weyl key increments (Salmon et al., SC'11).
_PHILOX_M0 = np.uint64(0xD2511F53)
_PHILOX_M1 = np.uint64(0xCD9E8D57)
_PHILOX_W0 = 0x9E3779B9
_PHILOX_W1 = 0xBB67AE85
_PHILOX_ROUNDS = 10
# Fixed key TensorFlow uses to scramble a user seed into a (key, counter) pair.
_TF_SEED_SCRAMBLE_KEY = (0x3EC8F720, 0x02461E29)
_MASK32 = 0xFFFFFFFF


def philox4x32(counter: Sequence[np.ndarray], key: Tuple[int, int]) -> list:
    """Apply the Philox4x32-10 block function to a batch of 128-bit counters.

    Parameters
    ----------
    counter : sequence of 4 uint32 arrays
        The four 32-bit words of each counter, least significant word first; all
        four arrays have the same shape.
    key : tuple of 2 int
        The 64-bit key as two 32-bit words, low word first.

    Returns
    -------
    list of 4 numpy.ndarray
        The four uint32 output words for every counter.
    """
    c0, c1, c2, c3 = (np.asarray(w, dtype=np.uint32) for w in counter)
    k0, k1 = int(key[0]) & _MASK32, int(key[1]) & _MASK32
    for round_index in range(_PHILOX_ROUNDS):
        # 32x32 -> 64-bit products, split into high and low halves.
        p0 = _PHILOX_M0 * c0.astype(np.uint64)
        p1 = _PHILOX_M1 * c2.astype(np.uint64)
        hi0, lo0 = (p0 >> np.uint64(32)).astype(np.uint32), p0.astype(np.uint32)
        hi1, lo1 = (p1 >> np.uint64(32)).astype(np.uint32), p1.astype(np.uint32)
        c0, c1, c2, c3 = (
            hi1 ^ c1 ^ np.uint32(k0),
            lo1,
            hi0 ^ c3 ^ np.uint32(k1),
            lo0,
        )
        if round_index < _PHILOX_ROUNDS - 1:  # the key is bumped between rounds only
            k0 = (k0 + _PHILOX_W0) & _MASK32
            k1 = (k1 + _PHILOX_W1) & _MASK32
    return [c0, c1, c2, c3]


def _tf_key_counter(seed: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """Derive TensorFlow's Philox key and counter from the seed pair ``(seed, seed)``.

    Returns the key ``(k0, k1)`` and the two high counter words ``(c2, c3)``; the
    low 64 bits of the counter start at zero.
    """
    bits = int(seed) & 0xFFFFFFFFFFFFFFFF  # int64 seed reinterpreted as uint64
    lo, hi = bits & _MASK32, bits >> 32
    # The counter made of both seed halves is encrypted once under a fixed key.
    words = [np.array([w], dtype=np.uint32) for w in (lo, hi, lo, hi)]
    mix = [int(w[0]) for w in philox4x32(words, _TF_SEED_SCRAMBLE_KEY)]
    return (mix[0], mix[1]), (mix[2], mix[3])


def tf_stateless_uniform(shape: Sequence[int], seed: int) -> np.ndarray:
    """Reproduce ``tf.random.stateless_uniform(shape, seed=(seed, seed), dtype=tf.float32)``.

    The result is bit-identical to TensorFlow's (CPU, default algorithm), computed
    without TensorFlow: the seed pair is scrambled into a Philox key and counter,
    the counter is incremented once per group of four output elements, and each
    32-bit word becomes a float in [0, 1) from its 23 low bits.

    Parameters
    ----------
    shape : sequence of int
        Output shape; elements are filled in flat row-major order.
    seed : int
        Both halves of the seed pair; must fit in a signed 64-bit integer.

    Returns
    -------
    numpy.ndarray
        float32 array of the given shape, values in [0, 1).

    Raises
    ------
    ValueError
        If the shape has a negative dimension or the seed is not a 64-bit integer.
    """
    try:
        shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"tf_stateless_uniform: shape must be a sequence of ints, got {shape!r}") from None
    if any(d < 0 for d in shape):
        raise ValueError(f"tf_stateless_uniform: shape must have non-negative dimensions, got {shape}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"tf_stateless_uniform: seed must be an integer, got {seed!r}")
    if not -(2**63) <= int(seed) < 2**63:
        raise ValueError(f"tf_stateless_uniform: seed must fit in int64, got {seed}")
    count = math.prod(shape)
    (k0, k1), (c2, c3) = _tf_key_counter(int(seed))
    groups = (count + 3) // 4
    index = np.arange(groups, dtype=np.uint64)  # low 64 counter bits = group index
    counter = [
        index.astype(np.uint32),
        (index >> np.uint64(32)).astype(np.uint32),
        np.full(groups, c2, dtype=np.uint32),
        np.full(groups, c3, dtype=np.uint32),
    ]
    words = np.stack(philox4x32(counter, (k0, k1)), axis=1).reshape(-1)[:count]
    # Mantissa trick: 1.m in [1, 2) from the 23 low bits, then subtract 1.
    as_float = ((words & np.uint32(0x7FFFFF)) | np.uint32(0x3F800000)).view(np.float32)
    return (as_float - np.float32(1.0)).reshape(shape)


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


def _check_tau(op: str, tau: Any, unit_shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    tau = _check_broadcast(op, "tau", tau, (1, *unit_shape), dtype)
    if np.isnan(tau).any():
        raise ValueError(f"{op}: input 'tau' contains NaN")
    return tau


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
    op = "SpikingActivation"
    rates = _check_main(op, "rates", rates)
    dtype = rates.dtype
    dt_value = _check_dt(op, dt)
    steps = _as_batch_first(rates, time_major)  # (T, B, *S)
    state_shape = steps.shape[1:]
    if initial_voltage is None:
        voltage = tf_stateless_uniform(state_shape, seed).astype(dtype)
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
    (B, *S) (read-only), and ``a``, ``r`` the per-unit coefficients of `_smoothing`.
    """
    x = _check_main(op, "x", x)
    dtype = x.dtype
    dt_value = _check_dt(op, dt)
    steps = _as_batch_first(x, time_major)
    state_shape = steps.shape[1:]
    tau = _check_tau(op, tau, state_shape[1:], dtype)
    level = _check_broadcast(op, "initial_level", initial_level, state_shape, dtype)
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
    steps, level, a, _ = _filter_setup("Lowpass", x, tau, initial_level, dt, time_major)
    dtype = steps.dtype
    level = level.copy()
    one_minus_a = dtype.type(1) - a
    y = np.empty(steps.shape, dtype=dtype)
    for t in range(steps.shape[0]):
        level = one_minus_a * steps[t] + a * level
        y[t] = level
    return np.ascontiguousarray(np.moveaxis(y, 0, _time_axis(time_major))), level


def _check_alpha_state(
    initial_state: Any, state_shape: Tuple[int, ...], dtype: np.dtype
) -> Tuple[np.ndarray, np.ndarray]:
    """Validate an Alpha ``initial_state`` and return ``(s1, s2)``, each (B, *S).

    Accepted shapes are (B, 2, *S) and (1, 2, *S) (one state shared by the batch).
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
    steps, level, a, r = _filter_setup("Alpha", x, tau, initial_level, dt, time_major)
    dtype = steps.dtype
    if initial_state is None:
        s1, s2 = level.copy(), level.copy()
    else:
        s1, s2 = _check_alpha_state(initial_state, steps.shape[1:], dtype)
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


class _SpikeOnnxOp(OpRun):
    """Common plumbing: trim results to the outputs the node actually declares."""

    op_domain = DOMAIN

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
        results = spiking_activation(
            rates,
            self._dt(dt),
            initial_voltage=initial_voltage if _present(initial_voltage) else None,
            seed=int(seed),
            time_major=time_major,
        )
        return self._select_outputs(results)


class Lowpass(_SpikeOnnxOp):
    """``spikeonnx::Lowpass`` for :class:`onnx.reference.ReferenceEvaluator`."""

    def _run(self, x, tau=None, initial_level=None, dt=None, time_major=0):  # type: ignore[override]
        if tau is None or initial_level is None:
            raise ValueError(
                f"Lowpass node {self.onnx_node.name!r}: inputs 'tau' and 'initial_level' are required"
            )
        return self._select_outputs(lowpass(x, tau, initial_level, self._dt(dt), time_major=time_major))


class Alpha(_SpikeOnnxOp):
    """``spikeonnx::Alpha`` for :class:`onnx.reference.ReferenceEvaluator`."""

    def _run(  # type: ignore[override]
        self, x, tau=None, initial_level=None, initial_state=None, dt=None, time_major=0
    ):
        if tau is None or initial_level is None:
            raise ValueError(
                f"Alpha node {self.onnx_node.name!r}: inputs 'tau' and 'initial_level' are required"
            )
        results = alpha(
            x,
            tau,
            initial_level,
            self._dt(dt),
            time_major=time_major,
            initial_state=initial_state if _present(initial_state) else None,
        )
        return self._select_outputs(results)


#: Pass as ``ReferenceEvaluator(model, new_ops=REFERENCE_OPS)``.
REFERENCE_OPS = [SpikingActivation, Lowpass, Alpha]
