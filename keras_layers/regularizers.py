"""Regularizers for spiking layers.

The penalties here pull activities (typically firing rates) towards a target value or
into a target range, instead of towards zero like the stock Keras regularizers.
``Percentile`` penalises a percentile of the activities rather than every element,
which makes the penalty robust to a few outlier neurons.

All classes are registered for Keras serialisation under the package name
``"keras_spiking"`` so that models using them as ``activity_regularizer`` can be saved
to ``.keras`` files and loaded again.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import keras
import tensorflow as tf

__all__ = ["RangedRegularizer", "L1L2", "L1", "L2", "Percentile", "HAS_TFP"]

#: Whether percentiles below 100 are available. Kept for KerasSpiking
#: compatibility, where it says whether tensorflow-probability is installed;
#: ``keras_layers`` computes percentiles itself (see `percentile`), so it is True.
#: Setting it to False makes ``Percentile(percentile < 100)`` refuse, as
#: KerasSpiking does without tensorflow-probability.
HAS_TFP = True

Target = Union[float, Tuple[float, float], Sequence[float]]
Axis = Union[int, Sequence[int], None]

_PACKAGE = "keras_spiking"


def _parse_target(target: Any) -> Tuple[float, float]:
    """Turn a scalar target or a ``(min, max)`` pair into a ``(min, max)`` pair."""
    if isinstance(target, (list, tuple)):
        if len(target) != 2:
            raise ValueError(
                "Target ranges should be specified as a tuple with two elements "
                f"`(min, max)` (got {len(target)} elements). The target was {target!r}; "
                "give one number for a single target value"
            )
        low, high = target
    else:
        low = high = target
    bounds = []
    for label, value in (("min", low), ("max", high)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"target {label} must be a real number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ValueError(f"target {label} must be finite, got {value!r}")
        bounds.append(float(value))
    if bounds[0] > bounds[1]:
        raise ValueError(
            f"`minimum` cannot exceed `maximum`. The target range (min, max) = "
            f"({bounds[0]}, {bounds[1]}) has its minimum above its maximum"
        )
    return bounds[0], bounds[1]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RangedRegularizer(keras.regularizers.Regularizer):
    """Penalise values that fall outside a target range.

    Values inside ``[min, max]`` cost nothing; a value outside costs what the wrapped
    ``regularizer`` charges for its distance (>= 0) to the nearest end of the range.
    With a scalar target the range collapses to one point and the regularizer gets
    the signed difference ``x - target``. (For L1/L2 the sign makes no difference;
    a custom regularizer sees exactly what KerasSpiking gives it.)

    Parameters
    ----------
    target : float or tuple of float
        The value the regularised outputs are driven towards, or a ``(min, max)``
        range; outputs inside the range are not penalised.
    regularizer : keras.regularizers.Regularizer, optional
        The penalty applied to the distance from the target (range). Defaults to
        ``keras.regularizers.L1L2(l2=0.01)``.

    Raises
    ------
    ValueError
        If ``target`` is a sequence without exactly two elements, is not finite, or
        its minimum exceeds its maximum.
    TypeError
        If ``regularizer`` is not callable.
    """

    def __init__(
        self,
        target: Target = 0,
        regularizer: Optional[keras.regularizers.Regularizer] = None,
    ) -> None:
        super().__init__()
        if regularizer is None:
            regularizer = keras.regularizers.L1L2(l2=0.01)
        if not callable(regularizer):
            raise TypeError(f"regularizer must be a callable Keras regularizer, got {regularizer!r}")
        self.regularizer = regularizer
        self.minimum, self.maximum = _parse_target(target)
        # Keep the user's form (scalar or pair) so get_config round-trips it.
        self.target = tuple(target) if isinstance(target, (list, tuple)) else target

    def _distance(self, x: tf.Tensor) -> tf.Tensor:
        """``x - target`` for a single target, else the distance outside the range.

        The distance to a range is ``max(min - x, 0) + max(x - max, 0)``: never
        negative, zero inside the range.
        """
        x = tf.convert_to_tensor(x)
        if self.minimum == self.maximum:
            return x - tf.constant(self.minimum, dtype=x.dtype)
        below = tf.nn.relu(tf.constant(self.minimum, dtype=x.dtype) - x)
        above = tf.nn.relu(x - tf.constant(self.maximum, dtype=x.dtype))
        return below + above

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Compute the penalty of ``x``.

        Parameters
        ----------
        x : tf.Tensor
            The values to regularise.

        Returns
        -------
        tf.Tensor
            Scalar penalty.
        """
        return self.regularizer(self._distance(x))

    def get_config(self) -> Dict[str, Any]:
        """Return the constructor arguments as a serialisable dict."""
        return {
            "target": self.target,
            "regularizer": keras.saving.serialize_keras_object(self.regularizer),
        }

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "RangedRegularizer":
        """Create an instance from the output of :meth:`get_config`."""
        config = dict(config)
        if isinstance(config.get("regularizer"), dict):
            config["regularizer"] = keras.saving.deserialize_keras_object(config["regularizer"])
        return cls(**config)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class L1L2(RangedRegularizer):
    """``keras.regularizers.L1L2`` with a non-zero target value or range.

    The penalty is ``l1 * sum(|d|) + l2 * sum(d**2)`` where ``d`` is the distance of
    each value from the target (zero inside a target range).

    Parameters
    ----------
    l1 : float
        Weight of the L1 penalty.
    l2 : float
        Weight of the L2 penalty.
    target : float or tuple of float
        The value the regularised outputs are driven towards, or a ``(min, max)``
        range; outputs inside the range are not penalised.
    **kwargs
        Accepted for signature compatibility only; any entry raises ``TypeError``.
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0, target: Target = 0, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {sorted(kwargs)}")
        super().__init__(target=target, regularizer=keras.regularizers.L1L2(l1=l1, l2=l2))
        if l1 == 0 and l2 == 0:
            warnings.warn(
                "Regularization weight is zero, it will have no effect. "
                f"{type(self).__name__} got l1 = l2 = 0; set l1 and/or l2",
                stacklevel=2,
            )

    @property
    def l1(self) -> float:
        """Weight of the L1 penalty."""
        return self.regularizer.l1

    @property
    def l2(self) -> float:
        """Weight of the L2 penalty."""
        return self.regularizer.l2

    def get_config(self) -> Dict[str, Any]:
        """Return the constructor arguments as a serialisable dict."""
        return {"l1": self.l1, "l2": self.l2, "target": self.target}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "L1L2":
        """Create an instance from the output of :meth:`get_config`."""
        return cls(**config)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class L1(L1L2):
    """``keras.regularizers.L1`` with a non-zero target value or range.

    Parameters
    ----------
    l1 : float
        Weight of the L1 penalty.
    target : float or tuple of float
        The value the regularised outputs are driven towards, or a ``(min, max)``
        range; outputs inside the range are not penalised.
    **kwargs
        Passed to `L1L2` (e.g. ``l2``).
    """

    def __init__(self, l1: float = 0.01, target: Target = 0, **kwargs: Any) -> None:
        super().__init__(l1=l1, target=target, **kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class L2(L1L2):
    """``keras.regularizers.L2`` with a non-zero target value or range.

    Parameters
    ----------
    l2 : float
        Weight of the L2 penalty.
    target : float or tuple of float
        The value the regularised outputs are driven towards, or a ``(min, max)``
        range; outputs inside the range are not penalised.
    **kwargs
        Passed to `L1L2` (e.g. ``l1``).
    """

    def __init__(self, l2: float = 0.01, target: Target = 0, **kwargs: Any) -> None:
        super().__init__(l2=l2, target=target, **kwargs)


def percentile(x: tf.Tensor, q: float, axis: Axis = None) -> tf.Tensor:
    """Differentiable percentile of a tensor, equal to ``numpy.percentile(x, q, axis)``.

    Uses NumPy's default ``"linear"`` method: the values along ``axis`` are sorted, the
    fractional position ``q / 100 * (n - 1)`` is located, and the two neighbouring
    sorted values are linearly interpolated. Gradients flow to those two elements.

    Parameters
    ----------
    x : tf.Tensor
        Input values (floating point).
    q : float
        Percentile in ``[0, 100]``.
    axis : int or tuple of int or None
        Axis or axes reduced over; None reduces over all axes.

    Returns
    -------
    tf.Tensor
        ``x`` with the ``axis`` dimensions removed.

    Raises
    ------
    ValueError
        If ``q`` is outside ``[0, 100]``, an axis is out of range or repeated, the rank
        of ``x`` is unknown, or ``x`` is not floating point.
    """
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise ValueError(f"percentile needs a floating-point tensor, got dtype {x.dtype.name}")
    q = float(q)
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    rank = x.shape.rank
    if rank is None:
        raise ValueError("percentile needs a tensor of known rank")
    axes = _normalize_axes(axis, rank, x.shape)
    if not axes:
        return x
    if q == 100.0:
        # Same value as the sort path; max is cheaper and has the usual gradient.
        return tf.reduce_max(x, axis=axes)
    if q == 0.0:
        return tf.reduce_min(x, axis=axes)

    # Move the reduced axes last and merge them into one, so a single sort suffices.
    kept = [i for i in range(rank) if i not in axes]
    moved = tf.transpose(x, kept + list(axes)) if kept + list(axes) != list(range(rank)) else x
    shape = tf.shape(moved)
    kept_shape = shape[: len(kept)]
    flat = tf.reshape(moved, tf.concat([kept_shape, [-1]], axis=0))
    ordered = tf.sort(flat, axis=-1)

    # Fractional index computed in float64 like NumPy does, then split into the
    # lower index and the interpolation weight.
    n = tf.shape(flat)[-1]
    position = tf.cast(n - 1, tf.float64) * (q / 100.0)
    lower = tf.floor(position)
    weight64 = position - lower
    # Both weights are rounded from float64 separately, exactly like NumPy's lerp.
    weight = tf.cast(weight64, x.dtype)
    weight_rest = tf.cast(1.0 - weight64, x.dtype)
    lower_i = tf.cast(lower, tf.int32)
    upper_i = tf.minimum(lower_i + 1, n - 1)
    below = tf.gather(ordered, lower_i, axis=-1)
    above = tf.gather(ordered, upper_i, axis=-1)
    diff = above - below
    return tf.where(weight64 >= 0.5, above - diff * weight_rest, below + diff * weight)


def _normalize_axes(axis: Axis, rank: int, shape: Any) -> Tuple[int, ...]:
    """Validate ``axis`` against ``rank`` and return sorted non-negative axes."""
    if axis is None:
        return tuple(range(rank))
    raw = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    axes = []
    for a in raw:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise ValueError(f"axis entries must be integers, got {a!r}")
        if not -rank <= a < rank:
            raise ValueError(f"axis {a} is out of range for a tensor of shape {tuple(shape)} (rank {rank})")
        axes.append(int(a) % rank)
    if len(set(axes)) != len(axes):
        raise ValueError(f"repeated axis in {axis!r}")
    return tuple(sorted(axes))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Percentile(L1L2):
    """Penalise a percentile of a tensor, taken over some axes.

    The requested ``percentile`` of the values along ``axis`` is computed (matching
    ``numpy.percentile`` with linear interpolation), and the L1/L2 penalty is applied
    to those percentiles with respect to ``target``. Penalising e.g. the maximum
    activity over the batch, rather than every activity, keeps the penalty from being
    dominated by inactive inputs and makes it less sensitive to outliers (for
    percentiles below 100).

    Any percentile in ``[0, 100]`` works and no extra package is needed.

    Parameters
    ----------
    percentile : float
        Percentile to take over ``axis``. The default 100 is the maximum.
    axis : int or tuple of int or None
        Axis or axes to take the percentile over (None: all axes).
    target : float or tuple of float
        The value the percentiles are driven towards, or a ``(min, max)`` range;
        percentiles inside the range are not penalised.
    l1 : float
        Weight of the L1 penalty applied to the percentiles.
    l2 : float
        Weight of the L2 penalty applied to the percentiles.

    Raises
    ------
    ValueError
        If ``percentile`` is outside ``[0, 100]`` or ``axis`` is not an integer, a
        sequence of integers, or None.

    Examples
    --------
    Keep the maximum firing rate of each neuron (over the batch) within 5-10 Hz:

    >>> import numpy as np
    >>> import keras_layers
    >>> reg = Percentile(target=(5, 10), l2=0.01)
    >>> layer = keras_layers.SpikingActivation("relu", dt=1, activity_regularizer=reg)

    Rates of shape (batch 2, time 1, 3 neurons): the neurons peak at 4, 30 and 8 Hz,
    1 Hz below and 20 Hz above the range and inside it, so the penalty is
    ``0.01 * (1**2 + 20**2)``:

    >>> rates = np.array([[[2.0, 20.0, 7.0]], [[4.0, 30.0, 8.0]]], np.float32)
    >>> round(float(reg(rates)), 4)
    4.01
    """

    def __init__(
        self,
        percentile: float = 100,
        axis: Axis = 0,
        target: Target = 0,
        l1: float = 0,
        l2: float = 0,
    ) -> None:
        super().__init__(target=target, l1=l1, l2=l2)
        if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real):
            raise ValueError(
                f"`percentile` must be in the range [0, 100]. Got {percentile!r}, not a number"
            )
        self.percentile = float(percentile)
        if not 0.0 <= self.percentile <= 100.0:
            raise ValueError(
                f"`percentile` must be in the range [0, 100]. Got percentile={percentile!r} "
                "(100 takes the maximum, 50 the median)"
            )
        if self.percentile != 100 and not HAS_TFP:
            raise ValueError(
                "`percentile` < 100 requires tensorflow-probability to be installed. "
                "keras_layers needs no tensorflow-probability for it: this refusal only "
                "happens because keras_layers.regularizers.HAS_TFP was set to False"
            )
        if axis is not None and not isinstance(axis, numbers.Integral):
            if not isinstance(axis, (list, tuple)) or not all(
                isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axis
            ):
                raise ValueError(f"axis must be an int, a tuple of ints or None, got {axis!r}")
            axis = tuple(int(a) for a in axis)
        elif isinstance(axis, bool):
            raise ValueError(f"axis must be an int, a tuple of ints or None, got {axis!r}")
        self.axis = axis

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Compute the penalty of the percentiles of ``x``.

        Parameters
        ----------
        x : tf.Tensor
            The values to regularise.

        Returns
        -------
        tf.Tensor
            Scalar penalty.
        """
        return super().__call__(percentile(x, self.percentile, self.axis))

    def get_config(self) -> Dict[str, Any]:
        """Return the constructor arguments as a serialisable dict."""
        config = super().get_config()
        config.update(percentile=self.percentile, axis=self.axis)
        return config
