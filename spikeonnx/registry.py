"""One small registry class behind every extension point.

Export handlers (Keras layer class -> handler), ``ModelEnergy``'s layer stats
(Keras layer class -> stat function), ``GraphEnergy``'s ops ((domain, op type) -> op
spec) and devices (name -> figures) are all :class:`Registry` instances, so they
share one policy:

- :meth:`Registry.register` adds an entry; registering a key that is already there
  **warns and replaces** (a user may override a built-in, and is told so);
  ``replace=True`` is the documented way to replace silently.
- :meth:`Registry.find` looks a class key up along the MRO (the nearest registered
  base class wins), so a handler for ``keras.layers.Layer`` serves every layer that
  has none of its own.
- :meth:`Registry.saved` is a context manager restoring the table on exit (tests
  and temporary registrations).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, Dict, Generic, Hashable, Iterator, Optional, Tuple, TypeVar

__all__ = ["Registry"]

V = TypeVar("V")


class Registry(Generic[V]):
    """A table of extension entries with one overwrite policy and MRO lookup.

    Parameters
    ----------
    what : str
        What an entry is, for messages (e.g. ``"export handler"``).
    describe : callable, optional
        ``describe(key) -> str`` names a key in messages (default: a class's
        ``__name__``, otherwise ``str(key)``).
    overwrite_message : callable, optional
        ``overwrite_message(key) -> str``, the warning given when a key is
        registered again without ``replace=True`` (default
        ``"{what} for {key} already registered; overwriting"``).

    Examples
    --------
    >>> r = Registry("stat function")
    >>> r.register(int, "for ints")
    >>> r.find(bool)  # bool is a subclass of int
    'for ints'
    >>> r.register(int, "new", replace=True)
    >>> r[int]
    'new'
    """

    def __init__(
        self,
        what: str,
        *,
        describe: Optional[Callable[[Hashable], str]] = None,
        overwrite_message: Optional[Callable[[Hashable], str]] = None,
    ) -> None:
        self.what = what
        self._describe = describe or _describe
        self._overwrite_message = overwrite_message
        self._entries: Dict[Hashable, V] = {}

    # -- registering ---------------------------------------------------------

    def register(self, key: Hashable, value: V, *, replace: bool = False) -> None:
        """Add ``value`` under ``key``; an existing entry is replaced with a warning
        unless ``replace=True``."""
        if key in self._entries and not replace:
            message = (
                self._overwrite_message(key)
                if self._overwrite_message is not None
                else f"{self.what} for {self._describe(key)} already registered; overwriting"
            )
            warnings.warn(message, stacklevel=3)
        self._entries[key] = value

    def unregister(self, key: Hashable) -> V:
        """Remove and return the entry of ``key`` (``KeyError`` if there is none)."""
        try:
            return self._entries.pop(key)
        except KeyError:
            raise KeyError(f"no {self.what} registered for {self._describe(key)}") from None

    # -- looking up ----------------------------------------------------------

    def get(self, key: Hashable, default: Optional[V] = None) -> Optional[V]:
        """The entry of exactly ``key``, or ``default``."""
        return self._entries.get(key, default)

    def find(self, cls: type) -> Optional[V]:
        """The entry of the nearest class in ``cls.__mro__`` that has one, or ``None``."""
        for base in cls.__mro__:
            if base in self._entries:
                return self._entries[base]
        return None

    def __getitem__(self, key: Hashable) -> V:
        try:
            return self._entries[key]
        except KeyError:
            raise KeyError(f"no {self.what} registered for {self._describe(key)}") from None

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[Hashable]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> Tuple[Tuple[Hashable, V], ...]:
        """A snapshot of the ``(key, entry)`` pairs, in registration order."""
        return tuple(self._entries.items())

    def as_dict(self) -> Dict[Hashable, V]:
        """A copy of the table."""
        return dict(self._entries)

    @contextlib.contextmanager
    def saved(self) -> Iterator["Registry[V]"]:
        """Restore the table as it is now when the ``with`` block ends."""
        before = dict(self._entries)
        try:
            yield self
        finally:
            self._entries.clear()
            self._entries.update(before)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {len(self._entries)} entries)"


def _describe(key: Any) -> str:
    if isinstance(key, type):
        return repr(key.__name__)
    return repr(key)
