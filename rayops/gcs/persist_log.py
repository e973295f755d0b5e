"""The GCS's persistence log: its tables' changes in an embedded SQLite database (WAL mode).

What it stores is a *record* per change: (table, key, value), the value being the entity's
whole state after the change (a node, a job, an actor, a placement group, a KV value, a
counter) or None when the entity went away. Records are appended to `log` in commit order;
`replay` reads the compacted `snapshot` and then the tail of `log` on top of it (last write
per (table, key) wins, None deletes), which is the state the GCS held at its last commit.
`compact` folds the tail into the snapshot in one transaction, so the file holds one row per
live entity plus the records since the last compaction, never the whole history.

Crash safety is SQLite's: every `append` is one transaction; in WAL mode a commit is a set of
frames ending in a commit frame with checksums, and after a crash SQLite ignores frames past
the last complete commit, so a torn last write loses that transaction and nothing before it.
`synchronous=NORMAL` (no fsync per commit) survives a killed process (the pages are in the
kernel's cache); a power cut may lose the last commits, as Ray's Redis without AOF fsync.

Blocking I/O: call it from one thread (the writer in `rayops.gcs.persistence`), never from the
event loop. This module knows nothing of the GCS's tables; the bytes are the caller's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["PersistLog", "Record", "RecordStore", "StoreError"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS snapshot ("
    " tbl TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY (tbl, key))",
    "CREATE TABLE IF NOT EXISTS log ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, key BLOB NOT NULL, value BLOB)",
)


class StoreError(RuntimeError):
    """The persistence file cannot be opened or read: names the file and what went wrong."""


@dataclass(frozen=True, slots=True)
class Record:
    """One change: `table`'s entity `key` now holds `value` (None: it is gone)."""

    table: str
    key: bytes
    value: bytes | None


class RecordStore(Protocol):
    """What the GCS's persistence needs of a store: this SQLite log, or Redis
    (`rayops.gcs.redis_store`). `path` names it in logs and errors; `tail_rows` counts the
    records since the last compaction."""

    path: str
    tail_rows: int

    def append(self, records: Iterable[Record]) -> int: ...
    def replay(self) -> dict[str, dict[bytes, bytes]]: ...
    def compact(self) -> None: ...
    def snapshot_rows(self) -> int: ...
    def close(self) -> None: ...


class PersistLog:
    """One SQLite file: `append` records, `replay` them, `compact` the tail."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for stmt in _SCHEMA:
                self._db.execute(stmt)
        except sqlite3.Error as err:
            raise StoreError(f"cannot open the GCS store {path}: {err}") from err
        self.tail_rows = self._count_tail()

    def _count_tail(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM log").fetchone()
        return int(row[0])

    def append(self, records: Iterable[Record]) -> int:
        """Append `records` in one transaction (all or none survive a crash); how many."""
        rows = [(r.table, r.key, r.value) for r in records]
        if not rows:
            return 0
        cur = self._db.cursor()
        cur.execute("BEGIN")
        try:
            cur.executemany("INSERT INTO log (tbl, key, value) VALUES (?, ?, ?)", rows)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        self.tail_rows += len(rows)
        return len(rows)

    def replay(self) -> dict[str, dict[bytes, bytes]]:
        """The state as of the last commit: table -> key -> value."""
        state: dict[str, dict[bytes, bytes]] = {}
        try:
            for tbl, key, value in self._db.execute("SELECT tbl, key, value FROM snapshot"):
                state.setdefault(tbl, {})[bytes(key)] = bytes(value)
            for tbl, key, value in self._db.execute("SELECT tbl, key, value FROM log ORDER BY seq"):
                if value is None:
                    state.get(tbl, {}).pop(bytes(key), None)
                else:
                    state.setdefault(tbl, {})[bytes(key)] = bytes(value)
        except sqlite3.Error as err:
            raise StoreError(f"cannot read the GCS store {self.path}: {err}") from err
        return state

    def compact(self) -> None:
        """Fold the tail into the snapshot (one transaction), then shrink the WAL file."""
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            last = cur.execute("SELECT MAX(seq) FROM log").fetchone()[0]
            if last is None:
                cur.execute("ROLLBACK")
                return
            # Last write per (tbl, key) wins: the row with the highest seq.
            cur.execute(
                "DELETE FROM snapshot WHERE (tbl, key) IN (SELECT tbl, key FROM log"
                " WHERE seq IN (SELECT MAX(seq) FROM log GROUP BY tbl, key) AND value IS NULL)"
            )
            cur.execute(
                "INSERT OR REPLACE INTO snapshot (tbl, key, value) SELECT tbl, key, value"
                " FROM log WHERE seq IN (SELECT MAX(seq) FROM log GROUP BY tbl, key)"
                " AND value IS NOT NULL"
            )
            cur.execute("DELETE FROM log WHERE seq <= ?", (last,))
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        self.tail_rows = self._count_tail()
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def snapshot_rows(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM snapshot").fetchone()[0])

    def close(self) -> None:
        self._db.close()
