"""Reclaiming what dead sessions left behind: shared-memory directories and spilled objects.

A node's object store lives in ``/dev/shm/rayops-<session>-<node>/`` and
``<session_dir>/spill/``. A clean shutdown removes both; a SIGKILL of the whole process group
(``timeout -k``, an OOM group kill, a container stop) leaves them, holding memory, forever.
Before a new node starts (``init()``, ``rayops start``) the starter calls
:func:`reclaim_dead_sessions`, which removes those of dead sessions.

The decision is :func:`plan_reclaim`, a pure function of what the shell found; the shell
(:func:`reclaim_dead_sessions`) only gathers facts and removes what the plan names. A
directory is removed only when all of these hold:

* its session directory is under the starter's ``temp_dir`` (a directory whose session lives
  elsewhere may be another install's or another user's: we cannot tell whose it is, so it is
  never touched);
* both the shared-memory directory and the session directory belong to this user (uid);
* no process of the session is alive. "Alive" is pid-reuse safe: a daemon pid recorded in
  ``node.json`` counts only while ``/proc/<pid>/cmdline`` names the session; the process that
  started an embedded cluster counts only if it started before ``node.json`` was written; and
  any process whose command line names the session counts (workers forked by the zygote, and
  a node killed during start-up, before ``node.json`` existed). Sessions are never restarted,
  so a session seen dead stays dead: there is no race with the removal.

This module must not decide anything about live clusters beyond "leave them alone", and never
raises to its caller: a directory it cannot remove is logged and left.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rayops.node import session as sess

__all__ = [
    "Reclaimed",
    "Removal",
    "SessionFacts",
    "ShmDirFacts",
    "plan_reclaim",
    "reclaim_dead_sessions",
]

logger = logging.getLogger(__name__)

# The starter's clock tick and the kernel's boot time (whole seconds) make a process's start
# time uncertain by about a second; a starter within that margin of node.json counts as alive.
_START_TIME_MARGIN_S = 1.5


@dataclass(frozen=True)
class ShmDirFacts:
    """A ``rayops-session_*`` directory found in the shared-memory root."""

    path: str
    session_name: str  # basename of the session directory it belongs to
    uid: int


@dataclass(frozen=True)
class SessionFacts:
    """A session directory under the starter's temp dir that may hold something to reclaim."""

    name: str  # session_<date>_<pid>
    session_dir: str
    uid: int
    record: sess.NodeRecord | None  # None: no readable node.json (killed during start-up)
    spill_dir: str
    spill_has_files: bool


@dataclass(frozen=True)
class Removal:
    """One directory the plan removes: a dead session's shared memory or spilled objects."""

    path: str
    kind: Literal["shm", "spill"]
    session_name: str


@dataclass(frozen=True)
class Reclaimed:
    """What the shell removed: ``nbytes`` of allocated space (tmpfs pages or disk blocks)."""

    path: str
    kind: Literal["shm", "spill"]
    session_name: str
    nbytes: int


def plan_reclaim(
    shm_dirs: Sequence[ShmDirFacts],
    sessions: Mapping[str, SessionFacts],
    live_pids: Mapping[str, Collection[int]],
    uid: int,
) -> list[Removal]:
    """The directories to remove: those of this user's sessions under the temp dir with no
    live process.

    ``sessions`` maps a session name to its facts (sessions under the starter's temp dir);
    ``live_pids`` maps a session name to the pids that are alive and belong to it (see the
    module docstring for what "belong" means); ``uid`` is this user's.
    """
    removals: list[Removal] = []

    def dead_and_ours(name: str) -> SessionFacts | None:
        facts = sessions.get(name)
        if facts is None or facts.uid != uid or live_pids.get(name):
            return None
        return facts

    for shm in shm_dirs:
        facts = dead_and_ours(shm.session_name)
        if facts is None or shm.uid != uid:
            continue
        if facts.record is not None and facts.record.shm_dir != shm.path:
            continue  # not the directory its record names: not provably this session's
        removals.append(Removal(shm.path, "shm", shm.session_name))
    for name in sorted(sessions):
        facts = dead_and_ours(name)
        if facts is not None and facts.spill_has_files:
            removals.append(Removal(facts.spill_dir, "spill", name))
    return removals


# ---------------------------------------------------------------------------------- the shell


def reclaim_dead_sessions(temp_dir: str, shm_root: str = sess.SHM_ROOT) -> list[Reclaimed]:
    """Remove the shared-memory and spill directories of dead sessions under ``temp_dir``.

    Logs what it removed (with the size) and returns it; never raises.
    """
    try:
        return _reclaim(temp_dir, shm_root)
    except OSError as err:  # an unreadable temp dir or /proc must not stop a node starting
        logger.warning("could not look for dead sessions under %s: %s", temp_dir, err)
        return []


def _reclaim(temp_dir: str, shm_root: str) -> list[Reclaimed]:
    shm_dirs = _find_shm_dirs(shm_root)
    candidates = {d.session_name for d in shm_dirs} | _sessions_with_spill(temp_dir)
    sessions: dict[str, SessionFacts] = {}
    for name in candidates:
        facts = _session_facts(temp_dir, name)
        if facts is not None:
            sessions[name] = facts
    if not sessions:
        return []
    live = _live_pids(sessions.values())
    done: list[Reclaimed] = []
    for removal in plan_reclaim(shm_dirs, sessions, live, os.getuid()):
        nbytes = _allocated_bytes(removal.path)
        if _remove(removal):
            done.append(Reclaimed(removal.path, removal.kind, removal.session_name, nbytes))
    if done:
        total = sum(r.nbytes for r in done)
        logger.info(
            "reclaimed %.1f MB left by %d dead session(s) under %s: %s",
            total / 1e6,
            len({r.session_name for r in done}),
            temp_dir,
            ", ".join(f"{r.path} ({r.nbytes / 1e6:.1f} MB)" for r in done),
        )
    return done


def _find_shm_dirs(shm_root: str) -> list[ShmDirFacts]:
    found = []
    try:
        entries = list(os.scandir(shm_root))
    except FileNotFoundError:
        return []
    for entry in entries:
        session = sess.session_of_shm_dir(entry.name)
        if session is None or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            uid = entry.stat(follow_symlinks=False).st_uid
        except OSError:
            continue
        found.append(ShmDirFacts(entry.path, session, uid))
    return found


def _sessions_with_spill(temp_dir: str) -> set[str]:
    names = set()
    try:
        entries = list(os.scandir(temp_dir))
    except FileNotFoundError:
        return set()
    for entry in entries:
        is_session = entry.name.startswith("session_") and entry.name != "session_latest"
        if is_session and _has_files(os.path.join(entry.path, "spill")):
            names.add(entry.name)
    return names


def _has_files(path: str) -> bool:
    try:
        with os.scandir(path) as it:
            return any(True for _ in it)
    except OSError:
        return False


def _session_facts(temp_dir: str, name: str) -> SessionFacts | None:
    session_dir = os.path.join(temp_dir, name)
    try:
        st = os.lstat(session_dir)
    except OSError:
        return None
    record: sess.NodeRecord | None
    try:
        record = sess.NodeRecord.load(session_dir)
    except (OSError, ValueError, TypeError):
        record = None
    spill_dir = os.path.join(session_dir, "spill")
    return SessionFacts(name, session_dir, st.st_uid, record, spill_dir, _has_files(spill_dir))


def _live_pids(sessions: Iterable[SessionFacts]) -> dict[str, set[int]]:
    """Per session, the pids alive that belong to it (see the module docstring)."""
    from rayops.node.processes import pid_belongs_to

    live: dict[str, set[int]] = {}
    unresolved: list[SessionFacts] = []
    for facts in sessions:
        pids: set[int] = set()
        rec = facts.record
        if rec is not None:
            pids = {p for p in rec.pids.values() if pid_belongs_to(p, facts.session_dir)}
            if not pids and not rec.detached and _started_before_record(rec, facts):
                pids.add(rec.started_by_pid)
        live[facts.name] = pids
        if not pids:
            unresolved.append(facts)
    if unresolved:
        for pid, cmdline in _process_cmdlines():
            for facts in unresolved:
                if facts.name in cmdline:
                    live[facts.name].add(pid)
    return live


def _started_before_record(rec: sess.NodeRecord, facts: SessionFacts) -> bool:
    """Is the process that started an embedded cluster still the one with its pid?"""
    import psutil

    if rec.started_by_pid <= 0:
        return False
    try:
        written = os.stat(os.path.join(facts.session_dir, sess.NODE_FILE)).st_mtime
        started = psutil.Process(rec.started_by_pid).create_time()
    except (OSError, psutil.Error):
        return False
    return started <= written + _START_TIME_MARGIN_S


def _process_cmdlines() -> Iterable[tuple[int, str]]:
    with os.scandir("/proc") as entries:
        pids = [int(e.name) for e in entries if e.name.isdigit()]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        yield pid, raw.replace(b"\0", b" ").decode(errors="replace")


def _allocated_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _remove(removal: Removal) -> bool:
    if not os.path.lexists(removal.path):
        return False  # another starter got there first
    try:
        if removal.kind == "shm" and os.path.ismount(removal.path):
            # A huge-page tmpfs the dead store mounted (StoreManager(huge_pages=True)).
            from rayops.objectstore._tmpfs import unmount

            unmount(removal.path)
    except OSError as err:
        logger.warning(
            "could not unmount %s of dead %s: %s", removal.path, removal.session_name, err
        )
        return False
    shutil.rmtree(removal.path, ignore_errors=True)  # files may vanish under a concurrent starter
    if os.path.lexists(removal.path):
        logger.warning("could not remove all of %s of dead %s", removal.path, removal.session_name)
        return False
    return True
