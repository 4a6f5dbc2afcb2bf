"""TensorFlow's stateless uniform generator (Philox4x32-10), reproduced in NumPy.

The seeded initial voltage of ``SpikingActivation`` is
``tf.random.stateless_uniform(shape, seed=(seed, seed))``; this module computes it
bit for bit without TensorFlow. It is a leaf: the contract, the reference ops and
the ONNX function bodies all draw from it.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np

__all__ = ["philox4x32", "tf_stateless_uniform", "SEED_MIN", "SEED_MAX"]

#: Seeds are signed 64-bit integers (TensorFlow's seed pair holds int64 values).
SEED_MIN = -(2**63)
SEED_MAX = 2**63 - 1

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
    if not SEED_MIN <= int(seed) <= SEED_MAX:
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
