"""The agent's HTTP server (aiohttp): /metrics, /-/healthy and, on the head, /api/prometheus/sd.

Every endpoint but /-/healthy requires ``Authorization: Bearer <cluster token>`` (what
Prometheus sends with ``authorization: {credentials_file: ...}``). A request without it gets
401 and no data; refusals are counted (``ray_agent_refused_scrapes_total``) and logged at
WARNING at most once every 10 s with the count since the last line, so a scanner cannot fill
the log. Comparison is constant-time.

The handlers only read what the background loops cached; nothing here waits on the raylet
or the GCS.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from rayops.rpc import tls
from rayops.rpc.refusal_log import RequestRefusals

__all__ = ["AgentHttp", "TokenCheck"]

logger = logging.getLogger(__name__)

_LOG_EVERY_S = 10.0


class TokenCheck:
    """Checks ``Authorization: Bearer <token>``; counts and logs refusals."""

    def __init__(self, token: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._expected = f"Bearer {token}".encode()
        self._refusals = RequestRefusals(logger, _LOG_EVERY_S, clock)

    @property
    def refused(self) -> int:
        return self._refusals.count

    def allows(self, header: str | None, peer: str, path: str) -> bool:
        given = (header or "").encode("utf-8", "replace")
        if hmac.compare_digest(given, self._expected):
            return True
        self._refusals.refused(peer, path)
        return False


class AgentHttp:
    """The aiohttp application and its listening site."""

    def __init__(
        self,
        registry: CollectorRegistry,
        check: TokenCheck,
        sd_list: Callable[[], list[dict[str, Any]]] | None,
    ) -> None:
        self._registry = registry
        self._check = check
        self._sd_list = sd_list
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/-/healthy", self._healthy)
        if sd_list is not None:
            app.router.add_get("/api/prometheus/sd", self._sd)
        self.app = app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, host, port, reuse_address=True, ssl_context=tls.server_ssl_context()
        )
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def authorized(self, request: web.Request) -> bool:
        return self._check.allows(
            request.headers.get("Authorization"), str(request.remote), request.path
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return _unauthorized()
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthy(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _sd(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return _unauthorized()
        assert self._sd_list is not None
        return web.Response(text=json.dumps(self._sd_list()), content_type="application/json")


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="missing or wrong cluster token: send Authorization: Bearer <cluster token>\n",
        headers={"WWW-Authenticate": 'Bearer realm="rayops"'},
    )
