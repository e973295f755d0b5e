"""How a node's object store backs its shared memory, as the operator sets it.

Owns the default, the validation and the parsing from the environment (once, at a process's
edge: ``start_node`` checks it before anything starts, the raylet reads it), of:

    RAYOPS_OBJECT_STORE_HUGE_PAGES   off    put the store's directory on a tmpfs with
                                            transparent huge pages (see _tmpfs.py)

``auto`` mounts it when the raylet may (CAP_SYS_ADMIN) and otherwise uses plain /dev/shm with
one log line; ``on`` makes a raylet that cannot mount it fail to start, naming why; ``off``
never mounts. Off unless the operator asks: the mount exists only in the raylet's mount
namespace, so every process of the node (drivers, `rayops exec`, job drivers) must share it;
a driver started in another mount namespace (``ip netns exec``, a container, a systemd unit
with private mounts) would see an empty store directory. Must not do I/O beyond reading the
environment mapping it is given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_HUGE_PAGES = "RAYOPS_OBJECT_STORE_HUGE_PAGES"
HUGE_PAGES_MODES = ("auto", "on", "off")
_ALIASES = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"}


class StoreSettingsError(ValueError):
    """An object store setting is not a valid value; names the variable or field."""


@dataclass(frozen=True)
class StoreSettings:
    """Per-node object store options; see the module docstring."""

    huge_pages: str = "off"

    def __post_init__(self) -> None:
        if self.huge_pages not in HUGE_PAGES_MODES:
            raise StoreSettingsError(
                f"StoreSettings.huge_pages must be one of {', '.join(HUGE_PAGES_MODES)}, "
                f"got {self.huge_pages!r}"
            )

    @property
    def try_huge_pages(self) -> bool:
        """True if the store should try to mount its huge-page tmpfs."""
        return self.huge_pages != "off"

    @property
    def require_huge_pages(self) -> bool:
        """True if a store without its huge-page tmpfs must not start."""
        return self.huge_pages == "on"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StoreSettings:
        """The settings named by the environment (os.environ by default)."""
        env = os.environ if environ is None else environ
        raw = env.get(ENV_HUGE_PAGES)
        if raw is None or raw.strip() == "":
            return cls()
        value = raw.strip().lower()
        value = _ALIASES.get(value, value)
        if value not in HUGE_PAGES_MODES:
            raise StoreSettingsError(
                f"{ENV_HUGE_PAGES} must be one of auto, on, off (or 1/0, true/false), got {raw!r}"
            )
        return cls(huge_pages=value)
