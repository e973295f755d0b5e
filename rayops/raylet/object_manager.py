"""Moving objects between nodes: pull a copy from the node that has it, serve ours.

A reader whose object lives in another node's store asks its own raylet to make it
local. The raylet pulls the object's file from the owning node's raylet in chunks,
with a bounded number of chunk requests in flight, and writes it into its own store
under the same id; concurrent requests for one object share one transfer. The
serving raylet remembers who pulled a copy, so deleting the primary deletes every
copy.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import pickle
import time
from collections.abc import Awaitable, Callable

from rayops.objectstore import StoreClient, StoreManager
from rayops.protocol import node_messages as nm
from rayops.raylet.spilling import SpillService
from rayops.rpc import framed

logger = logging.getLogger(__name__)

CHUNK_BYTES = 8 * 2**20
MAX_CHUNKS_IN_FLIGHT = 4


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
        ok = await self._pull_inner(object_id, node_id)
        logger.info(
            "pulled %s from node %s in %.3f s (ok=%s)",
            object_id.hex()[:12],
            node_id[:12],
            time.perf_counter() - t0,
            ok,
        )
        return ok

    async def _pull_inner(self, object_id: bytes, node_id: str) -> bool:
        address = self._address_of(node_id)
        if address is None:
            return False
        try:
            conn = await self._connect(address)
            size = (await conn.request(nm.ObjectSize(object_id, self._node_id))).size
        except (TimeoutError, OSError, framed.ConnectionLost) as err:
            logger.info("cannot pull %s from node %s: %r", object_id.hex(), node_id[:12], err)
            return False
        if size is None:
            return False
        if self._spiller is not None:
            where = await self._spiller.reserve(object_id, size)
        else:
            where = self._store.reserve(object_id, size)
        writer = self._client.raw_writer(object_id, size, where)
        ok = False
        try:
            sem = asyncio.Semaphore(MAX_CHUNKS_IN_FLIGHT)

            async def fetch(offset: int) -> None:
                async with sem:
                    chunk = await conn.request(
                        nm.ReadChunk(object_id, offset, min(CHUNK_BYTES, size - offset))
                    )
                    data = chunk.data
                    if data is None:
                        raise FileNotFoundError(object_id.hex())
                    writer.write_at(offset, data)

            await asyncio.gather(*(fetch(off) for off in range(0, size, CHUNK_BYTES)))
            writer.commit()
            ok = True
        except (TimeoutError, OSError, framed.ConnectionLost) as err:
            logger.info("pull of %s from node %s failed: %r", object_id.hex(), node_id[:12], err)
        finally:
            if not ok:
                writer.abort()
                self._store.delete([object_id])
        if ok:
            self._store.seal(object_id)
        return ok

    # ------------------------------------------------------------------ serving
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
            for node_id in self.copies.pop(oid, {}):
                out.setdefault(node_id, []).append(oid)
        return out


__all__ = ["ObjectManager"]
