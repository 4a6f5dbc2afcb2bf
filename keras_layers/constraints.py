"""Constraints for weight tensors of KerasSpiking layers."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Union

import keras
from keras import ops

__all__ = ["Mean"]


@keras.saving.register_keras_serializable(package="keras_spiking")
class Mean(keras.constraints.Constraint):
    """Constrain a weight tensor to its mean value.

    After every optimizer update the weight is replaced by its mean, broadcast back
    to the weight's shape. Used as ``tau_constraint`` on a filter layer, it makes
    all units share one time constant.

    Parameters
    ----------
    axis : int or tuple of int or None
        Axes to average over. The default ``-1`` averages along the last axis, as
        in KerasSpiking; ``None`` averages over the whole tensor. A filter's
        ``tau`` is ``(1, *S)`` (Lowpass) or ``(n,)`` (Alpha), so with the default
        all units of a one-dimensional ``S`` share one time constant.
    non_neg : bool
        If True, also clip the resulting mean at zero.
    """

    def __init__(
        self, axis: Optional[Union[int, Sequence[int]]] = -1, non_neg: bool = False
    ):
        if axis is not None and not isinstance(axis, int):
            axis = tuple(int(a) for a in axis)
        self.axis = axis
        self.non_neg = bool(non_neg)

    def __call__(self, w: Any) -> Any:
        w = ops.convert_to_tensor(w)
        mean = ops.mean(w, axis=self.axis, keepdims=True)
        if self.non_neg:
            mean = ops.maximum(mean, 0)
        return ops.broadcast_to(mean, ops.shape(w))

    def get_config(self) -> Dict[str, Any]:
        """Return the constructor arguments (for serialization).

        ``non_neg`` appears only when True, so a default constraint's config is
        ``{"axis": -1}``, the same as KerasSpiking's.
        """
        axis = list(self.axis) if isinstance(self.axis, tuple) else self.axis
        cfg: Dict[str, Any] = {"axis": axis}
        if self.non_neg:
            cfg["non_neg"] = True
        return cfg
