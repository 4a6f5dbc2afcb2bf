"""Callbacks for training KerasSpiking models."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import keras
import numpy as np
import tensorflow as tf

__all__ = ["DtScheduler"]


class DtScheduler(keras.callbacks.Callback):
    """Update a shared ``dt`` variable during training according to a schedule.

    Pass the same ``tf.Variable`` as ``dt`` to every layer that should follow the
    schedule and to this callback. At the start of every training batch the
    variable is set to ``scheduler(step)``, where ``step`` is the model's global
    training step (the optimizer's iteration count, so it keeps counting across
    several ``fit`` calls).

    Parameters
    ----------
    dt : tf.Variable or keras.Variable
        The variable passed as ``dt`` to the layers.
    scheduler : keras.optimizers.schedules.LearningRateSchedule or callable
        Maps the integer training step to the new ``dt`` value; any Keras
        learning-rate schedule works.
    verbose : bool
        If True, print ``dt`` at the start of each epoch, as
        ``DtScheduler epoch=0 dt=1.0000`` (before that epoch's first update).

    Notes
    -----
    The variable keeps its last value after ``fit`` returns, so later ``predict``
    calls use the last scheduled ``dt``.
    """

    def __init__(
        self,
        dt: Union[tf.Variable, "keras.Variable"],
        scheduler: Callable[[Any], Any],
        verbose: bool = False,
    ):
        super().__init__()
        if not isinstance(dt, (tf.Variable, keras.Variable)):
            raise TypeError(
                "DtScheduler requires `dt` to be stored as a `tf.Variable`. "
                f"Got {type(dt).__name__}; pass the same tf.Variable (or keras.Variable) "
                "as `dt` to the layers and to DtScheduler"
            )
        if not callable(scheduler):
            raise TypeError(
                f"`scheduler` must be callable (e.g. a LearningRateSchedule), "
                f"got {type(scheduler).__name__}"
            )
        self.dt = dt
        self.scheduler = scheduler
        self.verbose = bool(verbose)

    def _step(self) -> int:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise RuntimeError("DtScheduler needs a compiled model with an optimizer")
        return int(np.asarray(optimizer.iterations.numpy()))

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        """Print the current ``dt`` if verbose."""
        if self.verbose:
            value = float(np.asarray(self.dt.numpy()))
            # four decimals, as KerasSpiking prints
            print(f"DtScheduler epoch={epoch} dt={value:.4f}")

    def on_train_batch_begin(self, batch: int, logs: Optional[dict] = None) -> None:
        """Set ``dt`` from the schedule at the current global training step."""
        value = self.scheduler(self._step())
        value = float(np.asarray(value))
        if not value > 0:
            raise ValueError(f"DtScheduler: schedule produced non-positive dt={value}")
        self.dt.assign(value)
