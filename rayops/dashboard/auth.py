"""The API server's token check: every request but the health check carries the cluster token.

Accepted, each compared in constant time: ``Authorization: Bearer <token>``, Ray's
``x-ray-authorization`` header (``Bearer <token>`` or the bare token, for proxies that keep
``Authorization`` for themselves), and the ``ray-authentication-token`` cookie (for a browser
page). A refused request is counted (``rayops_dashboard_refused_requests_total`` on the
server's ``/metrics``) and logged at WARNING at most once every `LOG_EVERY_S` with the count
since the last line, so a scanner cannot fill the log.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Mapping

from rayops.rpc.refusal_log import RequestRefusals

__all__ = ["AUTH_COOKIE", "RAY_AUTH_HEADER", "HttpTokenCheck"]

logger = logging.getLogger(__name__)

LOG_EVERY_S = 10.0
RAY_AUTH_HEADER = "x-ray-authorization"
AUTH_COOKIE = "ray-authentication-token"


class HttpTokenCheck:
    """Is a request's credential the cluster token? Counts and logs refusals."""

    def __init__(self, token: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._token = token.encode()
        self._refusals = RequestRefusals(logger, LOG_EVERY_S, clock)

    @property
    def token(self) -> str:
        """The cluster token (sent on to the nodes' agents, raylets and workers)."""
        return self._token.decode()

    @property
    def refused(self) -> int:
        return self._refusals.count

    def _matches(self, given: str | None, *, bearer: bool, bare: bool) -> bool:
        if not given:
            return False
        raw = given.strip()
        candidates = []
        if bearer and raw[:7].lower() == "bearer ":
            candidates.append(raw[7:].strip())
        if bare:
            candidates.append(raw)
        ok = False
        for c in candidates:
            ok |= hmac.compare_digest(c.encode("utf-8", "replace"), self._token)
        return ok

    @staticmethod
    def presented(headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
        """Did the request carry any credential? (Ray answers 401 without one, 403 for a
        wrong one.)"""
        return bool(
            headers.get("Authorization") or headers.get(RAY_AUTH_HEADER) or cookies.get(AUTH_COOKIE)
        )

    def allows(
        self, headers: Mapping[str, str], cookies: Mapping[str, str], peer: str, path: str
    ) -> bool:
        if (
            self._matches(headers.get("Authorization"), bearer=True, bare=False)
            or self._matches(headers.get(RAY_AUTH_HEADER), bearer=True, bare=True)
            or self._matches(cookies.get(AUTH_COOKIE), bearer=False, bare=True)
        ):
            return True
        self._refusals.refused(peer, path)
        return False
