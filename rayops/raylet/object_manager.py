"""Moving objects between nodes: pull a copy from a node that has it, serve ours.

A reader whose object lives in another node's store asks its own raylet to make it
local. The raylet asks the holder's raylet, over the authenticated framed connection, to
open a pull (``OpenPull``); the holder answers with one-time tickets for its data port, one
per stripe of the object (``transfer_plan``). Threads of a bounded pool then receive each
stripe over its own blocking connection straight into the object's file in this node's
store, and the complete file is renamed into place and sealed (``transfer_data``): the
event loop only sets the transfer up. Concurrent requests for one object share one pull.

Broadcast: a holder serves at most ``MAX_SERVES_PER_OBJECT`` pulls of one object at a
time; a later puller is sent to a node that already pulled a complete copy (which serves it
the same way), or waits for one, so one object read on many nodes spreads as a tree. A
pull whose source fails (the holder died, the copy went away) is retried once from the node
the reader named.

Every holder remembers who pulled a copy from it, so deleting the primary deletes every
copy, down the tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import pickle
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from rayops.objectstore import StoreClient, StoreManager
from rayops.objectstore.client import transfer_paths
from rayops.protocol import node_messages as nm
from rayops.protocol import transfer_messages as xm
from rayops.raylet import transfer_data as data
from rayops.raylet import transfer_plan as plan
from rayops.raylet.spilling import SpillService
from rayops.rpc import framed, tls

logger = logging.getLogger(__name__)

# Chunked reads over the framed plane (ReadChunk): kept for tools; pulls use the data port.
CHUNK_BYTES = 8 * 2**20
# Stripes per pull: measured on this 2-core machine (bench/transfer_benchmark.py
# --stripes): 1 stripe moves 100 MB at the loopback limit, 2 and 4 gain nothing (the two
# cores are busy with one sender and one receiver thread already); on a host with more
# cores and a fast link more stripes pay, hence RAYOPS_TRANSFER_STRIPES.
DEFAULT_STRIPES = 1
MIN_STRIPE_BYTES = 32 * 2**20
RECEIVE_THREADS = 8
MAX_SERVES_PER_OBJECT = 1  # pulls of one object a holder serves at once; later ones fan out
REDIRECT_WAIT_S = 30.0  # a puller waits at most this for a copy to be sent to, then is served
STRIPES_ENV = "RAYOPS_TRANSFER_STRIPES"


def stripes_setting(env: dict[str, str] | None = None) -> int:
    raw = (os.environ if env is None else env).get(STRIPES_ENV, "")
    if not raw:
        return DEFAULT_STRIPES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise ValueError(f"{STRIPES_ENV} must be an integer from 1 to 64, got {raw!r}")
    return value


class _PullRetry(Exception):
    """The chosen source failed; try the next one."""


class _Redirect(Exception):
    """The holder sent us to another node with a complete copy."""

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.node_id = node_id


class ObjectManager:
    def __init__(
        self,
        node_id: str,
        store: StoreManager,
        client: StoreClient,
        connect: Callable[[tuple[str, int]], Awaitable[framed.Connection]],
        address_of: Callable[[str], tuple[str, int] | None],
        spiller: SpillService | None = None,
    ) -> None:
        self._node_id = node_id
        self._store = store
        self._client = client
        self._connect = connect
        self._address_of = address_of
        self._spiller = spiller  # moves bytes to and from disk off the event loop
        self._pulls: dict[bytes, asyncio.Future[bool]] = {}
        # object id -> node ids (and their raylet addresses) holding copies pulled from us
        self.copies: dict[bytes, dict[str, tuple[str, int]]] = {}
        self._stripes = stripes_setting()
        self._server: data.DataServer | None = None
        self._receivers: ThreadPoolExecutor | None = None  # one thread per pull
        self._stripers = ThreadPoolExecutor(1)  # the second and later stripes (see start)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving: dict[bytes, plan.Serving] = {}
        self._stripes_left: dict[tuple[bytes, str], int] = {}
        self._changed: dict[bytes, asyncio.Event] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self, host: str) -> int:
        """Open the data port on `host`; return it."""
        self._loop = asyncio.get_running_loop()
        self._server = data.DataServer(host, self._stripe_finished, tls.current())
        self._receivers = ThreadPoolExecutor(RECEIVE_THREADS, thread_name_prefix="rayops-xfer-recv")
        return self._server.port

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._receivers is not None:
            self._receivers.shutdown(wait=False, cancel_futures=True)
            self._stripers.shutdown(wait=False, cancel_futures=True)
            self._receivers = None

    # ------------------------------------------------------------------ pulling
    async def make_local(self, object_id: bytes, node_id: str) -> bool:
        if self._spiller is not None:
            if await self._spiller.ensure_local(object_id):
                return True
        elif self._store.ensure_local(object_id):
            return True
        if not node_id or node_id == self._node_id:
            return False
        fut = self._pulls.get(object_id)
        if fut is None:
            fut = asyncio.ensure_future(self._pull(object_id, node_id))
            self._pulls[object_id] = fut
            fut.add_done_callback(lambda _f: self._pulls.pop(object_id, None))
        return await asyncio.shield(fut)

    async def _pull(self, object_id: bytes, node_id: str) -> bool:
        t0 = time.perf_counter()
        ok = False
        source, redirected = node_id, False
        for _attempt in range(3):
            try:
                ok = await self._pull_from(object_id, source, node_id, redirected)
                break
            except _Redirect as moved:
                source, redirected = moved.node_id, True
            except _PullRetry as err:
                logger.info("pull of %s: %s", object_id.hex()[:12], err)
                if source == node_id:
                    break
                source, redirected = node_id, True  # once more from the node the reader named
        logger.info(
            "pulled %s from node %s in %.3f s (ok=%s)",
            object_id.hex()[:12],
            source[:12],
            time.perf_counter() - t0,
            ok,
        )
        return ok

    async def _pull_from(
        self, object_id: bytes, node_id: str, primary: str, redirected: bool
    ) -> bool:
        """Pull from `node_id`: True when done, False when the reader's node (`primary`) does
        not have the object; raises _Redirect to pull from elsewhere, _PullRetry when this
        source failed."""
        address = self._address_of(node_id)
        if address is None:
            raise _PullRetry(f"node {node_id[:12]} is not alive")
        try:
            conn = await self._connect(address)
            offer = await conn.request(
                xm.OpenPull(object_id, self._node_id, self._stripes, redirected)
            )
        except (TimeoutError, OSError, framed.ConnectionLost, framed.RemoteError) as err:
            raise _PullRetry(f"cannot open a pull from node {node_id[:12]}: {err!r}") from None
        if offer.size is None:
            if node_id != primary:
                raise _PullRetry(f"node {node_id[:12]} no longer has it")
            return False
        if offer.redirect:
            raise _Redirect(offer.redirect)
        size = offer.size
        ranges = plan.stripes(size, len(offer.tickets) or 1, 1)
        if len(ranges) != len(offer.tickets):
            raise _PullRetry(f"node {node_id[:12]} offered {len(offer.tickets)} tickets")
        if self._spiller is not None:
            where = await self._spiller.reserve(object_id, size)
        else:
            where = self._store.reserve(object_id, size)
        loop = asyncio.get_running_loop()
        pool = self._receivers
        assert pool is not None, "ObjectManager.start() was not called"
        final, reserved = transfer_paths(self._client, object_id, where)
        material = tls.current()
        ok = False
        try:
            await loop.run_in_executor(
                pool,
                data.receive_object,
                final,
                reserved,
                size,
                address[0],
                offer.port,
                offer.tickets,
                ranges,
                object_id,
                material,
                self._stripers,
            )
            ok = True
        except OSError as err:
            logger.info("pull of %s from node %s failed: %r", object_id.hex(), node_id[:12], err)
        finally:
            if not ok:
                self._store.delete([object_id])
        with contextlib.suppress(Exception):
            conn.notify(xm.PullDone(object_id, self._node_id, ok))
        if not ok:
            raise _PullRetry(f"transfer from node {node_id[:12]} failed")
        self._store.seal(object_id)
        return True

    # ------------------------------------------------------------------ serving
    async def h_open_pull(self, conn: framed.Connection, msg: xm.OpenPull) -> xm.PullOffer:
        object_id = msg.object_id
        if self._spiller is not None:
            here = await self._spiller.ensure_local(object_id)
        else:
            here = self._store.ensure_local(object_id)
        path = self._client.path_of(object_id) if here else None
        if path is None or self._server is None:
            return xm.PullOffer(None, 0, [], "")
        serving = self._serving.setdefault(object_id, plan.Serving())
        deadline = time.monotonic() + REDIRECT_WAIT_S
        while True:
            reachable = {n for n in serving.complete if self._address_of(n) is not None}
            choice = plan.choose_source(
                serving, msg.puller, msg.redirected, MAX_SERVES_PER_OBJECT, reachable
            )
            if isinstance(choice, plan.Redirect):
                serving.handed[choice.node_id] = serving.handed.get(choice.node_id, 0) + 1
                return xm.PullOffer(0, 0, [], choice.node_id)
            left = deadline - time.monotonic()
            if isinstance(choice, plan.Serve) or left <= 0:
                break
            event = self._changed.setdefault(object_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), left)
        path = self._client.path_of(object_id)
        if path is None:
            return xm.PullOffer(None, 0, [], "")
        try:
            size = os.stat(path).st_size
            ranges = plan.stripes(size, max(1, min(msg.stripes, 64)), MIN_STRIPE_BYTES)
            tickets = self._server.offer(object_id, msg.puller, path, ranges)
        except FileNotFoundError:
            return xm.PullOffer(None, 0, [], "")
        if ranges:
            serving.active.add(msg.puller)
            self._stripes_left[(object_id, msg.puller)] = len(ranges)
        addr = conn.context.get("raylet_address")
        self.copies.setdefault(object_id, {})[msg.puller] = addr or ("", 0)
        return xm.PullOffer(size, self._server.port, tickets, "")

    def h_pull_done(self, conn: framed.Connection, msg: xm.PullDone) -> None:
        serving = self._serving.get(msg.object_id)
        if serving is None:
            return
        serving.active.discard(msg.puller)
        self._stripes_left.pop((msg.object_id, msg.puller), None)
        if msg.ok and msg.puller not in serving.complete:
            serving.complete.append(msg.puller)
        self._wake(msg.object_id)

    def _stripe_finished(self, grant: plan.Grant, ok: bool) -> None:
        """From a sending thread: one stripe was sent, failed or expired."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the raylet stops
                self._loop.call_soon_threadsafe(self._on_stripe_finished, grant)

    def _on_stripe_finished(self, grant: plan.Grant) -> None:
        key = (grant.object_id, grant.puller)
        left = self._stripes_left.get(key)
        if left is None:
            return
        if left > 1:
            self._stripes_left[key] = left - 1
            return
        del self._stripes_left[key]
        serving = self._serving.get(grant.object_id)
        if serving is not None:
            serving.active.discard(grant.puller)
            self._wake(grant.object_id)

    def _wake(self, object_id: bytes) -> None:
        event = self._changed.pop(object_id, None)
        if event is not None:
            event.set()

    def h_object_size(self, conn: framed.Connection, msg: nm.ObjectSize) -> nm.ObjectSizeReply:
        object_id = msg.object_id
        if not self._store.ensure_local(object_id):
            return nm.ObjectSizeReply(None)
        path = self._client.path_of(object_id)
        if path is None:
            return nm.ObjectSizeReply(None)
        if conn.peer is not None:
            addr = conn.context.get("raylet_address")
            self.copies.setdefault(object_id, {})[msg.puller] = addr or ("", 0)
        return nm.ObjectSizeReply(os.stat(path).st_size)

    def h_read_chunk(self, conn: framed.Connection, msg: nm.ReadChunk) -> nm.Chunk:
        path = self._client.path_of(msg.object_id)
        if path is None:
            return nm.Chunk(None)
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        # A view of the mapping, sent out of band: no copy in user space. The view keeps
        # the mapping alive until the transport has written it.
        view = memoryview(mapped)[msg.offset : msg.offset + msg.length]
        return nm.Chunk(pickle.PickleBuffer(view))

    def forget(self, object_ids: list[bytes]) -> dict[str, list[bytes]]:
        """Objects deleted here: which other nodes hold copies of which of them."""
        out: dict[str, list[bytes]] = {}
        for oid in object_ids:
            self._serving.pop(oid, None)
            self._wake(oid)
            for node_id in self.copies.pop(oid, {}):
                out.setdefault(node_id, []).append(oid)
        return out


__all__ = ["ObjectManager"]
