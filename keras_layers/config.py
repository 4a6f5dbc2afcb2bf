"""Configuration options shared by all KerasSpiking layers."""

from __future__ import annotations

import numbers

__all__ = ["DefaultManager", "default"]


class DefaultManager:
    """Holds the default parameter values used by KerasSpiking layers.

    A layer constructed with ``dt=None`` reads ``default.dt`` at construction time,
    so changing the default affects only layers created afterwards.

    Parameters
    ----------
    dt : float
        Length of time (in seconds) represented by one time step. Defaults to
        0.001 s.

    Notes
    -----
    Use the module-level instance ``keras_layers.default`` rather than creating new
    managers; layers only consult that instance.
    """

    def __init__(self, dt: float = 0.001):
        self.dt = dt

    @property
    def dt(self) -> float:
        """Default simulation timestep in seconds."""
        return self._dt

    @dt.setter
    def dt(self, value: float) -> None:
        # validate here so that a bad default fails where it is set, not later
        # inside some unrelated layer constructor
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"default dt must be a real number, got {value!r}")
        if not value > 0:
            raise ValueError(f"default dt must be > 0, got {value!r}")
        self._dt = float(value)

    def __repr__(self) -> str:
        return f"DefaultManager(dt={self._dt!r})"


default = DefaultManager()
