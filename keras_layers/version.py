"""Version of ``keras_layers``, laid out like KerasSpiking's ``version`` module.

``version_info`` is the release as a tuple of ints, ``dev`` the development
release number (None for a release) and ``version`` the PEP 440 string built
from the two.
"""

from typing import Optional, Tuple

__all__ = ["version_info", "dev", "version"]

version_info: Tuple[int, int, int] = (0, 1, 0)
dev: Optional[int] = None

version: str = ".".join(str(part) for part in version_info) + (
    "" if dev is None else f".dev{dev}"
)
