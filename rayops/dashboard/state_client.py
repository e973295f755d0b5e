"""The state API's client: Ray's ``ray.util.state`` calls over the API server's HTTP routes.

Address and token are found as ``JobSubmissionClient`` finds them (``client.py``). Plain
HTTP with the standard library. A refused request (unknown filter key, bad predicate, a
limit too large) raises ``RayStateApiException`` with the server's message; a refused token
raises ``AuthenticationError``. Rows come back as ``StateRecord``s: dicts whose keys also
read as attributes (``task.state`` and ``task["state"]``).
"""

from __future__ import annotations

import builtins
import json
import urllib.error
import urllib.request
import warnings
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from rayops.dashboard.client import resolve_address, token_refused, with_token
from rayops.dashboard.state_query import DEFAULT_LIMIT, DEFAULT_TIMEOUT_S, PREDICATES, ListOptions
from rayops.rpc import tls

__all__ = ["RayStateApiException", "StateApiClient", "StateRecord", "check_filters"]

Filter = tuple[str, str, Any]


class RayStateApiException(Exception):
    """The state API could not answer (Ray's ``ray.util.state.exception``)."""


class StateRecord(dict):  # type: ignore[type-arg]
    """One row: a dict whose keys also read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def check_filters(filters: Sequence[Any] | None) -> tuple[Filter, ...]:
    """``[("key", "=", value), ...]`` checked for shape and predicate (keys: the server)."""
    out = []
    for f in filters or ():
        if not isinstance(f, (tuple, list)) or len(f) != 3:
            raise ValueError(f"a filter must be a (key, predicate, value) tuple, got {f!r}")
        key, pred, value = f
        if pred not in PREDICATES:
            raise ValueError(
                f"unsupported filter predicate {pred!r} in {tuple(f)!r}; use one of: "
                + ", ".join(PREDICATES)
            )
        out.append((str(key), pred, value))
    return tuple(out)


class StateApiClient:
    def __init__(self, address: str | None = None, headers: dict[str, str] | None = None) -> None:
        # The token first: TLS is found where it is, and decides the address's scheme.
        self._headers, self._token_source = with_token(headers)
        self.address = resolve_address(address)

    def _get(self, path: str, params: list[tuple[str, str]], timeout: float) -> Any:
        with self.open(path, params, timeout + 5) as resp:
            return json.loads(resp.read())

    def open(self, path: str, params: list[tuple[str, str]], timeout: float | None) -> Any:
        """The server's response to ``GET path?params`` (the caller reads and closes it, so
        a log can stream); a refusal raises naming the path and the server's message."""
        url = self.address + path + ("?" + urlencode(params) if params else "")
        req = urllib.request.Request(url, headers=self._headers)
        try:
            material = tls.current()  # resolve_address adopted the session's TLS setting
            context = material.client_context() if material is not None else None
            return urllib.request.urlopen(req, timeout=timeout, context=context)
        except urllib.error.HTTPError as err:
            data = err.read()
            if err.code in (401, 403):
                raise token_refused(self.address, self._token_source) from err
            try:
                body = json.loads(data)
                msg = body.get("msg") or body.get("message") or data.decode(errors="replace")
            except (ValueError, AttributeError):
                msg = data.decode(errors="replace")
            raise RayStateApiException(f"{path} failed ({err.code}): {msg}") from err
        except urllib.error.URLError as err:
            raise ConnectionError(
                f"Failed to connect to the API server at {self.address}: {err.reason}"
            ) from err

    def list(
        self,
        resource: str,
        *,
        filters: Sequence[Any] | None = None,
        limit: int = DEFAULT_LIMIT,
        timeout: int = DEFAULT_TIMEOUT_S,
        detail: bool = False,
        exclude_driver: bool = True,
        raise_on_missing_output: bool = True,
    ) -> list[StateRecord]:
        options = ListOptions(limit, timeout, detail, check_filters(filters), exclude_driver)
        body = self._get(f"/api/v0/{resource}", options.to_query(), timeout)
        data = body["data"]["result"]
        _surface(data, raise_on_missing_output)
        return [StateRecord(r) for r in data["result"]]

    def summary(
        self,
        resource: str,
        *,
        timeout: int = DEFAULT_TIMEOUT_S,
        raise_on_missing_output: bool = True,
    ) -> dict[str, Any]:
        body = self._get(f"/api/v0/{resource}/summarize", [("timeout", str(timeout))], timeout)
        data = body["data"]["result"]
        _surface(data, raise_on_missing_output)
        summaries: dict[str, Any] = data["result"]["node_id_to_summary"]
        return summaries

    def timeline(self, job_id: str | None = None) -> builtins.list[dict[str, Any]]:
        params = [("job_id", job_id)] if job_id else []
        events: builtins.list[dict[str, Any]] = self._get(
            "/api/v0/tasks/timeline", params, DEFAULT_TIMEOUT_S
        )
        return events


def _surface(data: dict[str, Any], raise_on_missing_output: bool) -> None:
    partial = data.get("partial_failure_warning")
    if partial:
        if raise_on_missing_output:
            raise RayStateApiException(
                f"{partial} (pass raise_on_missing_output=False to get the rest)"
            )
        warnings.warn(partial, stacklevel=3)
    for w in data.get("warnings") or ():
        warnings.warn(w, stacklevel=3)
