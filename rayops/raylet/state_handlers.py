"""What a raylet tells the state API about its node: worker processes and store contents.

``ListWorkers``: the worker pool's registered and starting workers, and the drivers
connected to this raylet. ``ListStoreObjects``: every object the node's store holds, with
its size and where its bytes are (shared memory, disk). Read-only views; no decisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rayops.protocol import state_messages as sm

if TYPE_CHECKING:
    from rayops.raylet.raylet import Raylet

__all__ = ["list_store_objects", "list_workers"]


def list_workers(raylet: Raylet, conn: Any, msg: sm.ListWorkers) -> sm.WorkersReply:
    ip = raylet.config.node_ip
    out: list[sm.WorkerState] = []
    pool = raylet.pool
    if pool is not None:
        for h in pool.workers.values():
            port = h.address[1] if h.address else 0
            out.append(
                sm.WorkerState(
                    h.worker_id, "WORKER", h.pid, ip, port, True,
                    leased=h.lease_id is not None, log_path=h.log_path,
                )
            )  # fmt: skip
        for h in pool.starting.values():
            out.append(sm.WorkerState(h.worker_id, "WORKER", h.pid, ip, 0, True, 0, False,
                                      h.log_path))  # fmt: skip
    for dconn, job_id in raylet.drivers.items():
        ctx = dconn.context
        address = ctx.get("address", "")
        port = int(address.rsplit(":", 1)[1]) if address else 0
        out.append(
            sm.WorkerState(
                ctx.get("driver_worker_id", b""), "DRIVER", ctx.get("pid", 0), ip, port, True,
                job_id,
            )
        )  # fmt: skip
    return sm.WorkersReply(raylet.config.node_id, tuple(out))


def list_store_objects(raylet: Raylet, conn: Any, msg: sm.ListStoreObjects) -> sm.StoreObjectsReply:
    objects = [
        sm.StoreObject(oid, size, sealed, in_shm, on_disk)
        for oid, size, sealed, in_shm, on_disk in raylet.store.entries()
    ]
    return sm.StoreObjectsReply(raylet.config.node_id, tuple(objects))
