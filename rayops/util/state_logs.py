"""Ray's ``ray.util.state.list_logs`` and ``get_log``: logs of any node, through the head's
API server (``/api/v0/logs``), which asks the node's agent.

The address and token are found as the Jobs SDK finds them (``address`` given as
``http://HOST:PORT``, else ``RAYOPS_API_SERVER_ADDRESS``, else the local head's record; the
token from ``RAYOPS_TOKEN_FILE`` or the local session). Plain HTTP with the standard library;
``get_log`` yields text as it arrives (with ``follow``, until the caller stops iterating).
A refused request raises ``RayStateApiException`` with the server's message, as Ray's does.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import Any

from rayops.dashboard.state_client import RayStateApiException, StateApiClient

__all__ = ["RayStateApiException", "get_log", "list_logs"]

DEFAULT_LOG_LIMIT = 1000
DEFAULT_RPC_TIMEOUT = 30
_READ = 64 * 1024


def _open(address: str | None, path: str, params: dict[str, Any], timeout: float | None) -> Any:
    query = [(k, v) for k, v in params.items() if v is not None]
    return StateApiClient(address).open(path, query, timeout)


def list_logs(
    address: str | None = None,
    node_id: str | None = None,
    node_ip: str | None = None,
    glob_filter: str | None = None,
    timeout: int = DEFAULT_RPC_TIMEOUT,
) -> dict[str, list[str]]:
    """``{category: [file names]}`` of one node's logs (``node_id`` or ``node_ip``; neither:
    the head node, where Ray requires one)."""
    params = {"node_id": node_id, "node_ip": node_ip, "glob": glob_filter or "*"}
    params["timeout"] = str(timeout)
    with _open(address, "/api/v0/logs", params, timeout) as resp:
        data = json.loads(resp.read())
    result: dict[str, list[str]] = data["data"]["result"]
    return result


def get_log(
    address: str | None = None,
    node_id: str | None = None,
    node_ip: str | None = None,
    filename: str | None = None,
    actor_id: str | None = None,
    task_id: str | None = None,
    pid: int | None = None,
    follow: bool = False,
    tail: int = DEFAULT_LOG_LIMIT,
    timeout: int = DEFAULT_RPC_TIMEOUT,
    suffix: str = "out",
    encoding: str | None = "utf-8",
    errors: str | None = "strict",
    submission_id: str | None = None,
    attempt_number: int = 0,
    _interval: float | None = None,
) -> Iterator[Any]:
    """The log's last ``tail`` lines (-1: all), then with ``follow`` what is appended; text
    chunks (bytes with ``encoding=None``) as they arrive."""
    params = {
        "node_id": node_id,
        "node_ip": node_ip,
        "filename": filename,
        "actor_id": actor_id,
        "task_id": task_id,
        "pid": None if pid is None else str(pid),
        "submission_id": submission_id,
        "lines": str(tail),
        "interval": None if _interval is None else str(_interval),
        "suffix": suffix,
        "timeout": str(timeout),
        "attempt_number": str(attempt_number),
        "format": "text",
    }
    media = "stream" if follow else "file"
    resp = _open(address, f"/api/v0/logs/{media}", params, None if follow else timeout)
    decoder = None
    if encoding is not None:
        decoder = codecs.getincrementaldecoder(encoding)(errors=errors or "strict")
    with resp:
        while True:
            chunk = resp.read1(_READ)
            if not chunk:
                break
            yield chunk if decoder is None else decoder.decode(chunk)
        if decoder is not None:
            rest = decoder.decode(b"", final=True)
            if rest:
                yield rest
