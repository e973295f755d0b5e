"""How long clients of the GCS ride out its absence (a restart) before they give up.

Raylets, agents, workers and drivers wait this long for a GCS that went away to answer again
(`RAYOPS_GCS_RECONNECT_TIMEOUT_S`, or Ray's `RAY_gcs_rpc_server_reconnect_timeout_s`;
default 60 s, Ray's default): a call that needs the GCS waits and then goes on, and only past
the window does it fail with `GcsUnreachableError`; a raylet cut off from the GCS for longer
exits (`rayops.raylet`). Read where a client is made (the process's edge), never at import.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DEFAULT_RECONNECT_TIMEOUT_S", "ENV_NAMES", "reconnect_timeout_s", "retry_delay_s"]

DEFAULT_RECONNECT_TIMEOUT_S = 60.0
ENV_NAMES = ("RAYOPS_GCS_RECONNECT_TIMEOUT_S", "RAY_gcs_rpc_server_reconnect_timeout_s")
_RETRY_MIN_S = 0.05
_RETRY_MAX_S = 0.5


def reconnect_timeout_s(env: Mapping[str, str]) -> float:
    """The window from the environment (the first of `ENV_NAMES` set wins); ValueError
    naming the variable for anything but a positive number of seconds."""
    for name in ENV_NAMES:
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value > 0 or value != value or value == float("inf"):
            raise ValueError(f"{name} must be a positive number of seconds, found {raw!r}")
        return value
    return DEFAULT_RECONNECT_TIMEOUT_S


def retry_delay_s(attempt: int) -> float:
    """The pause before retrying a call the GCS could not take (attempt 0, 1, ...)."""
    return min(_RETRY_MAX_S, _RETRY_MIN_S * 2**attempt)
