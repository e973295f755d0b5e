"""A real GCS server on loopback for tests of its gRPC services (no raylets, no workers)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from rayops.gcs.client import AsyncGcsClient
from rayops.gcs.server import GcsServer, GcsState
from rayops.rpc.auth import generate_token
from rayops.version import __version__

__all__ = ["run_against_gcs"]


def run_against_gcs(
    test: Callable[[GcsServer, AsyncGcsClient, str], Awaitable[None]], timeout: float = 30.0
) -> None:
    """Start a GCS on 127.0.0.1 (a new token, an ephemeral port), run ``test(server, client,
    token)`` on a fresh event loop with a client of it, then close both; at most ``timeout``
    seconds."""

    async def main() -> None:
        token = generate_token()
        server = GcsServer(GcsState(rayops_version=__version__), token)
        port = await server.start("127.0.0.1", 0)
        client = AsyncGcsClient(f"127.0.0.1:{port}", token, timeout=10)
        try:
            await asyncio.wait_for(test(server, client, token), timeout)
        finally:
            await client.close()
            await server.stop(None)

    asyncio.run(main())
