"""Limits of the framed transport (``framed.py``): how long and how much a peer gets.

Owns: the settings' defaults, their validation and parsing them from the environment,
once, at a process's edge (a daemon's ``main``, ``worker_main``, ``init()``), from:

    RAYOPS_FRAMED_HANDSHAKE_TIMEOUT_S   5      seconds a new connection has to authenticate
    RAYOPS_FRAMED_MAX_FRAME_BYTES       256Mi  the largest frame sent or accepted
    RAYOPS_FRAMED_LOCAL_SOCKETS         1      peers on this host talk over a Unix socket
    RAYOPS_FRAMED_SYNC_LANE_SPIN_US     100    how long a sync lane's reader polls before it sleeps

Before the handshake a connection holds a buffer of a few hundred bytes (the magic
plus the token) and nothing else; a peer that says nothing, or the wrong thing, within
the timeout is closed. After it, a frame whose header claims more than the maximum
closes the connection before anything is allocated for it. Bulk data (object chunks
of 8 MiB) travels in many frames well under the maximum. Set the same values on every
node: a sender splits its batches at its own maximum, a receiver refuses above its own.

Must not do I/O beyond reading the environment mapping it is given.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

ENV_HANDSHAKE_TIMEOUT_S = "RAYOPS_FRAMED_HANDSHAKE_TIMEOUT_S"
ENV_MAX_FRAME_BYTES = "RAYOPS_FRAMED_MAX_FRAME_BYTES"
ENV_LOCAL_SOCKETS = "RAYOPS_FRAMED_LOCAL_SOCKETS"
ENV_SYNC_LANE_SPIN_US = "RAYOPS_FRAMED_SYNC_LANE_SPIN_US"

DEFAULT_HANDSHAKE_TIMEOUT_S = 5.0
DEFAULT_MAX_FRAME_BYTES = 256 * 2**20
# Object chunks are 8 MiB (raylet/object_manager.py); a frame must hold one with room
# to spare, so smaller maxima are refused rather than breaking transfers later.
MIN_MAX_FRAME_BYTES = 16 * 2**20
# The frame header is a 4-byte length.
MAX_MAX_FRAME_BYTES = 2**32 - 1
# How long either end of a sync lane polls before it sleeps: a get() waiting for a short
# actor call (core_worker/caller_lane.py), an actor's main thread after a call
# (core_worker/sync_lane.py); 0 turns it off.
DEFAULT_SYNC_LANE_SPIN_US = 100
MAX_SYNC_LANE_SPIN_US = 10_000
# How often one peer address may produce a refusal line in the log.
DEFAULT_REFUSAL_LOG_INTERVAL_S = 60.0


class FramedSettingsError(ValueError):
    """A framed-transport setting is not a valid value; names the variable or field."""


@dataclass(frozen=True)
class FramedSettings:
    """Per-process limits of the framed transport; see the module docstring.

    ``refusal_log_level``: the level of the (rate-limited) lines about refused peers:
    WARNING in daemons and workers, DEBUG in a driver, whose user's terminal must not
    show them.

    ``local_sockets``: a server also listens on a Unix socket named after its host and
    port, and a client tries that first: on one host a message costs a few microseconds
    of the kernel's time instead of ~30 over loopback TCP (see ``framed.py``).

    ``sync_lane_spin_us``: a user thread waiting in ``get`` for a short actor call on a
    sync lane polls the lane this long before it sleeps (``core_worker/caller_lane.py``),
    and so does the actor's main thread after a call (``core_worker/sync_lane.py``); 0
    turns it off.
    """

    handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    refusal_log_level: int = logging.WARNING
    refusal_log_interval_s: float = DEFAULT_REFUSAL_LOG_INTERVAL_S
    local_sockets: bool = True
    sync_lane_spin_us: int = DEFAULT_SYNC_LANE_SPIN_US

    def __post_init__(self) -> None:
        t = self.handshake_timeout_s
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (0 < t < math.inf):
            raise FramedSettingsError(
                f"FramedSettings.handshake_timeout_s must be a number of seconds > 0, got {t!r}"
            )
        m = self.max_frame_bytes
        if (
            isinstance(m, bool)
            or not isinstance(m, int)
            or not MIN_MAX_FRAME_BYTES <= m <= MAX_MAX_FRAME_BYTES
        ):
            raise FramedSettingsError(
                f"FramedSettings.max_frame_bytes must be an int from {MIN_MAX_FRAME_BYTES} "
                f"to {MAX_MAX_FRAME_BYTES}, got {m!r}"
            )
        i = self.refusal_log_interval_s
        if isinstance(i, bool) or not isinstance(i, (int, float)) or not (0 <= i < math.inf):
            raise FramedSettingsError(
                f"FramedSettings.refusal_log_interval_s must be a number of seconds >= 0, got {i!r}"
            )
        if not isinstance(self.refusal_log_level, int) or isinstance(self.refusal_log_level, bool):
            raise FramedSettingsError(
                f"FramedSettings.refusal_log_level must be a logging level (int), "
                f"got {self.refusal_log_level!r}"
            )
        spin = self.sync_lane_spin_us
        if (
            isinstance(spin, bool)
            or not isinstance(spin, int)
            or not 0 <= spin <= MAX_SYNC_LANE_SPIN_US
        ):
            raise FramedSettingsError(
                f"FramedSettings.sync_lane_spin_us must be an int from 0 to "
                f"{MAX_SYNC_LANE_SPIN_US}, got {spin!r}"
            )
        if not isinstance(self.local_sockets, bool):
            raise FramedSettingsError(
                f"FramedSettings.local_sockets must be True or False, got {self.local_sockets!r}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FramedSettings:
        """Read the ``RAYOPS_FRAMED_*`` variables (unset or empty: the default)."""
        env = os.environ if env is None else env
        return cls(
            handshake_timeout_s=_env_seconds(env),
            max_frame_bytes=_env_max_frame(env),
            local_sockets=_env_flag(env, ENV_LOCAL_SOCKETS, True),
            sync_lane_spin_us=_env_spin(env),
        )

    def for_driver(self) -> FramedSettings:
        """The same limits, with refusals logged at DEBUG (off the user's terminal)."""
        return replace(self, refusal_log_level=logging.DEBUG)

    def to_env(self) -> dict[str, str]:
        """The environment that makes a child process read these same limits."""
        return {
            ENV_HANDSHAKE_TIMEOUT_S: repr(float(self.handshake_timeout_s)),
            ENV_MAX_FRAME_BYTES: str(self.max_frame_bytes),
            ENV_LOCAL_SOCKETS: "1" if self.local_sockets else "0",
            ENV_SYNC_LANE_SPIN_US: str(self.sync_lane_spin_us),
        }


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise FramedSettingsError(
        f"{name}={raw!r} is not valid: expected 1 or 0 (also true/false, yes/no, on/off)"
    )


def _env_seconds(env: Mapping[str, str]) -> float:
    name, raw = ENV_HANDSHAKE_TIMEOUT_S, env.get(ENV_HANDSHAKE_TIMEOUT_S)
    if raw is None or raw.strip() == "":
        return DEFAULT_HANDSHAKE_TIMEOUT_S
    try:
        value = float(raw.strip())
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise FramedSettingsError(
            f"{name}={raw!r} is not valid: expected a number of seconds > 0, "
            f"e.g. {name}={DEFAULT_HANDSHAKE_TIMEOUT_S:g} (the default)"
        )
    return value


def _env_max_frame(env: Mapping[str, str]) -> int:
    return _env_int(
        env,
        ENV_MAX_FRAME_BYTES,
        DEFAULT_MAX_FRAME_BYTES,
        MIN_MAX_FRAME_BYTES,
        MAX_MAX_FRAME_BYTES,
        "bytes",
    )


def _env_spin(env: Mapping[str, str]) -> int:
    return _env_int(
        env,
        ENV_SYNC_LANE_SPIN_US,
        DEFAULT_SYNC_LANE_SPIN_US,
        0,
        MAX_SYNC_LANE_SPIN_US,
        "microseconds",
        "; 0: never poll, sleep at once",
    )


def _env_int(
    env: Mapping[str, str], name: str, default: int, low: int, high: int, unit: str, note: str = ""
) -> int:
    """``name``'s whole number from ``low`` to ``high`` (unset or empty: ``default``)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise FramedSettingsError(
            f"{name}={raw!r} is not valid: expected a whole number of {unit} from {low} to "
            f"{high}, e.g. {name}={default} (the default{note})"
        )
    return value
