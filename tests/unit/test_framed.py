"""The framed transport: handshake, refusal without the token, request/reply, batching."""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import struct
import tempfile

import pytest

from rayops.rpc import framed

TOKEN = b"s3cret-token"


class _Boom:
    """Unpickling this creates a file: proof that a payload was (or was not) unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


def run(coro):  # type: ignore[no-untyped-def]
    loop = framed.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_request_reply_and_notify() -> None:
    async def main() -> None:
        got: list[int] = []

        def add(conn: framed.Connection, a: int, b: int) -> int:
            return a + b

        async def slow(conn: framed.Connection, x: int) -> int:
            await asyncio.sleep(0.01)
            return x * 2

        def note(conn: framed.Connection, x: int) -> None:
            got.append(x)

        def fail(conn: framed.Connection) -> None:
            raise KeyError("missing")

        handlers = {"add": add, "slow": slow, "note": note, "fail": fail}
        server = await framed.serve("127.0.0.1", 0, TOKEN, handlers)
        port = server.sockets[0].getsockname()[1]
        conn = await framed.connect("127.0.0.1", port, TOKEN, {})
        assert await conn.request("add", 2, 3) == 5
        assert await conn.request("slow", 21) == 42
        results = await asyncio.gather(*(conn.request("add", i, i) for i in range(500)))
        assert results == [2 * i for i in range(500)]
        conn.notify("note", 7)
        with pytest.raises(KeyError):
            await conn.request("fail")
        assert await conn.request("add", 0, 0) == 0  # ordering: the notify was handled before
        assert got == [7]
        conn.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_wrong_token_is_refused() -> None:
    async def main() -> None:
        server = await framed.serve("127.0.0.1", 0, TOKEN, {"add": lambda c, a, b: a + b})
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(framed.HandshakeRefused):
            await framed.connect("127.0.0.1", port, b"wrong", {})
        server.close()
        await server.wait_closed()

    run(main())


def test_payload_without_token_is_never_unpickled() -> None:
    """A crafted client skips the handshake and sends a pickled request: nothing runs."""
    with tempfile.TemporaryDirectory() as tmp:
        marker = os.path.join(tmp, "unpickled")
        calls: list[str] = []

        async def main() -> None:
            server = await framed.serve(
                "127.0.0.1", 0, TOKEN, {"add": lambda c, *a: calls.append("add")}
            )
            port = server.sockets[0].getsockname()[1]
            loop = asyncio.get_running_loop()

            def attack() -> bytes:
                payload = pickle.dumps([(framed.REQUEST, 1, "add", (_Boom(marker),))])
                frame = struct.pack("<I", len(payload)) + payload
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(frame)  # the pickled request where the token should be
                    data = b""
                    try:
                        s.sendall(frame)  # and again as an ordinary frame
                        while chunk := s.recv(100):
                            data += chunk
                    except ConnectionResetError:
                        pass  # the server hung up on us, as it should
                    return data

            answer = await loop.run_in_executor(None, attack)
            assert answer in (b"", struct.pack("<I", 2) + b"NO")
            server.close()
            await server.wait_closed()

        run(main())
        assert not os.path.exists(marker)
        assert calls == []
