"""The node-local shared-memory object store.

Owns where object bytes live on one node: one file per object in a shared-memory directory
(e.g. /dev/shm/rayops-<session>/), overflowing to a spill directory on disk. Two halves:

* StoreClient (client.py), in every driver and worker: writes object files directly and maps
  them back read-only, so a numpy array comes back without a copy.
* StoreManager (manager.py), one per node in the raylet: capacity accounting, LRU spilling,
  restoring and deletion. No network I/O; the raylet relays requests to it.

layout.py documents the file format. Freed objects' pages are reused for new ones
(_recycle.py), and StoreManager(huge_pages=True) puts the directory on a huge-page tmpfs
(_tmpfs.py; the raylet does so unless RAYOPS_OBJECT_STORE_HUGE_PAGES=off, store_settings.py),
where large recycled files are written by two threads (_mapped_write.py).

The store knows nothing of ownership, reference counts or other nodes; callers (core worker,
raylet) decide when an object is created, read or freed.
"""

from __future__ import annotations

from rayops.objectstore.client import StoreClient, StoredObject
from rayops.objectstore.layout import LayoutError
from rayops.objectstore.manager import (
    RESTORE_LOCAL,
    RESTORE_STAY,
    RESTORE_UNKNOWN,
    RESTORE_WAIT,
    RestoreJob,
    SpillJob,
    StoreManager,
    StoreStats,
)

__all__ = [
    "RESTORE_LOCAL",
    "RESTORE_STAY",
    "RESTORE_UNKNOWN",
    "RESTORE_WAIT",
    "LayoutError",
    "RestoreJob",
    "SpillJob",
    "StoreClient",
    "StoreManager",
    "StoreStats",
    "StoredObject",
]
