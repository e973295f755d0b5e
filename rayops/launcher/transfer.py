"""File transfers over SFTP, with rsync's quick check: push a local tree to a host, pull one back.

What ``rsync -a`` did for the launcher (file mounts, ``rsync-up``, ``rsync-down``, ``submit``'s
upload), done on the launcher's own SSH connection: a file whose size and modification time
(whole seconds) match on the other side is skipped; directories are created; modes and
modification times are preserved; symbolic links are copied as links; a file is written to a
temporary name and renamed over the old one, so a reader never sees half a file. Nothing on
the other side is deleted (the launcher never passed ``--delete``). Paths given here are
absolute: callers expand a remote ``~`` with the host's ``$HOME`` first.

Exclusions follow rsync's rules for the spec's ``rsync_exclude`` (``--exclude=PATTERN``) and
``rsync_filter`` (``--filter=':- FILE'``: patterns read from FILE in each directory, applying
below it). The path rules (``target_path``) and the patterns (``rsync_match``) are pure.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import paramiko


@dataclass
class SyncStats:
    sent: int = 0  # files written on the other side
    skipped: int = 0  # files already the same there
    dirs_made: int = 0
    bytes: int = 0

    def summary(self) -> str:
        return (
            f"{self.sent} file(s) sent ({self.bytes} bytes), {self.skipped} unchanged, "
            f"{self.dirs_made} dir(s) created"
        )


def target_path(src: str, dst: str, src_is_dir: bool, dst_is_dir: bool) -> str:
    """Where ``src`` lands, by rsync's rules: a directory named with a trailing slash sends its
    contents into ``dst``, without one it goes into ``dst/<name>``; a file goes to ``dst``, or
    into it when ``dst`` is a directory (or ends with a slash)."""
    name = posixpath.basename(src.rstrip("/"))
    if src_is_dir:
        return (dst.rstrip("/") or "/") if src.endswith("/") else posixpath.join(dst, name)
    if dst.endswith("/") or dst_is_dir:
        return posixpath.join(dst, name)
    return dst


@lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out += re.escape(c)
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


def rsync_match(pattern: str, rel: str, is_dir: bool) -> bool:
    """Whether an rsync exclude ``pattern`` matches ``rel`` (a path relative to the transfer
    root, or to the directory of the merge file the pattern came from)."""
    dir_only = pattern.endswith("/")
    pat = pattern.rstrip("/")
    if not pat or (dir_only and not is_dir):
        return False
    rx = _glob_regex(pat.lstrip("/"))
    if pat.startswith("/"):
        return rx.fullmatch(rel) is not None
    if "/" in pat or "**" in pat:
        tail = re.compile("(?:.*/)" + rx.pattern)
        return rx.fullmatch(rel) is not None or tail.fullmatch(rel) is not None
    return rx.fullmatch(posixpath.basename(rel)) is not None


def parse_merge_file(text: str) -> list[str]:
    """The exclude patterns of a per-directory merge file (``:- .gitignore``)."""
    pats = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "!")):
            continue
        pats.append(line[2:] if line.startswith("- ") else line)
    return pats


@dataclass(frozen=True)
class Excludes:
    """The exclusions of one push: global patterns plus merge-file names."""

    patterns: tuple[str, ...] = ()
    merge_files: tuple[str, ...] = ()

    def scoped(self, local_dir: str, base: str, inherited: Sequence[tuple[str, str]]
               ) -> list[tuple[str, str]]:  # fmt: skip
        """``inherited`` plus the patterns of merge files in ``local_dir`` (rel dir ``base``)."""
        rules = list(inherited)
        for name in self.merge_files:
            try:
                with open(os.path.join(local_dir, name), encoding="utf-8", errors="replace") as f:
                    rules += [(base, p) for p in parse_merge_file(f.read())]
            except OSError:
                continue
        return rules

    def excluded(self, rel: str, is_dir: bool, scoped: Sequence[tuple[str, str]]) -> bool:
        if any(rsync_match(p, rel, is_dir) for p in self.patterns):
            return True
        for base, p in scoped:
            sub = rel[len(base) + 1 :] if base else rel
            if (not base or rel.startswith(base + "/")) and rsync_match(p, sub, is_dir):
                return True
        return False


def _remote_stat(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes | None:
    try:
        return sftp.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ENOENT:
            return None
        raise


def remote_makedirs(sftp: paramiko.SFTPClient, path: str, stats: SyncStats | None = None) -> None:
    """``mkdir -p`` over SFTP."""
    attr = _remote_stat(sftp, path)
    if attr is not None:
        if not stat.S_ISDIR(attr.st_mode or 0):
            raise NotADirectoryError(f"{path} exists on the host and is not a directory")
        return
    parent = posixpath.dirname(path.rstrip("/"))
    if parent and parent != path:
        remote_makedirs(sftp, parent, stats)
    try:
        sftp.mkdir(path)
    except OSError:
        if _remote_stat(sftp, path) is None:
            raise
        return
    if stats is not None:
        stats.dirs_made += 1


def _same(local: os.stat_result, remote: Any) -> bool:
    return (
        remote is not None
        and stat.S_ISREG(remote.st_mode or 0)
        and remote.st_size == local.st_size
        and int(remote.st_mtime or -1) == int(local.st_mtime)
    )


def _tmp_name(path: str) -> str:
    d, name = posixpath.split(path)
    return posixpath.join(d, f".{name}.{os.getpid()}.rayops-tmp")


def _send_file(sftp: paramiko.SFTPClient, local: str, st: os.stat_result, remote: str) -> None:
    tmp = _tmp_name(remote)
    try:
        sftp.put(local, tmp, confirm=False)
        sftp.chmod(tmp, stat.S_IMODE(st.st_mode))
        sftp.utime(tmp, (int(st.st_atime), int(st.st_mtime)))
        sftp.posix_rename(tmp, remote)
    except BaseException:
        try:
            sftp.remove(tmp)
        except OSError:
            pass
        raise


def _send_link(sftp: paramiko.SFTPClient, local: str, remote: str, attr: Any) -> bool:
    target = os.readlink(local)
    if attr is not None and stat.S_ISLNK(attr.st_mode or 0) and sftp.readlink(remote) == target:
        return False
    if attr is not None:
        sftp.remove(remote)
    sftp.symlink(target, remote)
    return True


@dataclass
class _Push:
    sftp: paramiko.SFTPClient
    excludes: Excludes
    stats: SyncStats = field(default_factory=SyncStats)

    def entry(self, local: str, remote: str, st: os.stat_result, attr: Any) -> None:
        if stat.S_ISLNK(st.st_mode):
            if _send_link(self.sftp, local, remote, attr):
                self.stats.sent += 1
            else:
                self.stats.skipped += 1
        elif stat.S_ISREG(st.st_mode):
            if attr is not None and stat.S_ISDIR(attr.st_mode or 0):
                raise IsADirectoryError(f"{remote} is a directory on the host; {local} is a file")
            if _same(st, attr):
                self.stats.skipped += 1
                return
            _send_file(self.sftp, local, st, remote)
            self.stats.sent += 1
            self.stats.bytes += st.st_size

    def tree(self, local: str, remote: str, rel: str, rules: list[tuple[str, str]]) -> None:
        st = os.stat(local)
        attr = _remote_stat(self.sftp, remote)
        if attr is None:
            self.sftp.mkdir(remote)
            self.stats.dirs_made += 1
            there: dict[str, Any] = {}
        elif not stat.S_ISDIR(attr.st_mode or 0):
            raise NotADirectoryError(f"{remote} exists on the host and is not a directory")
        else:
            there = {a.filename: a for a in self.sftp.listdir_attr(remote)}
        rules = self.excludes.scoped(local, rel, rules)
        for entry in sorted(os.scandir(local), key=lambda e: e.name):
            sub = f"{rel}/{entry.name}" if rel else entry.name
            est = entry.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(est.st_mode)
            if self.excludes.excluded(sub, is_dir, rules):
                continue
            dst = posixpath.join(remote, entry.name)
            if is_dir:
                self.tree(entry.path, dst, sub, rules)
            else:
                self.entry(entry.path, dst, est, there.get(entry.name))
        self.sftp.chmod(remote, stat.S_IMODE(st.st_mode))
        self.sftp.utime(remote, (int(st.st_atime), int(st.st_mtime)))


def push(sftp: paramiko.SFTPClient, src: str, dst: str, excludes: Excludes | None = None
         ) -> SyncStats:  # fmt: skip
    """Send the local ``src`` (file or directory) to ``dst`` on the host, as ``rsync -a src
    dst`` would (see ``target_path``); ``dst``'s parents are created."""
    ex = excludes or Excludes()
    st = os.stat(src) if src.endswith("/") else os.lstat(src)
    is_dir = stat.S_ISDIR(st.st_mode)
    attr = _remote_stat(sftp, dst.rstrip("/") or "/")
    dst_is_dir = attr is not None and stat.S_ISDIR(attr.st_mode or 0)
    target = target_path(src, dst, is_dir, dst_is_dir)
    job = _Push(sftp, ex)
    remote_makedirs(sftp, posixpath.dirname(target.rstrip("/")) or "/", job.stats)
    if is_dir:
        job.tree(src, target, "", [])
    else:
        job.entry(src, target, st, _remote_stat(sftp, target))
    return job.stats


def _fetch_file(sftp: paramiko.SFTPClient, remote: str, attr: Any, local: str) -> None:
    tmp = os.path.join(os.path.dirname(local) or ".", f".{os.path.basename(local)}.rayops-tmp")
    try:
        sftp.get(remote, tmp)
        os.chmod(tmp, stat.S_IMODE(attr.st_mode or 0o644))
        os.utime(tmp, (int(attr.st_atime or attr.st_mtime), int(attr.st_mtime)))
        os.replace(tmp, local)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _pull_entry(sftp: paramiko.SFTPClient, remote: str, attr: Any, local: str, stats: SyncStats
                ) -> None:  # fmt: skip
    mode = attr.st_mode or 0
    try:
        lst: os.stat_result | None = os.lstat(local)
    except FileNotFoundError:
        lst = None
    if stat.S_ISLNK(mode):
        target = sftp.readlink(remote) or ""
        if lst is not None and stat.S_ISLNK(lst.st_mode) and os.readlink(local) == target:
            stats.skipped += 1
            return
        if lst is not None:
            os.unlink(local)
        os.symlink(target, local)
        stats.sent += 1
    elif stat.S_ISDIR(mode):
        if lst is None:
            os.mkdir(local)
            stats.dirs_made += 1
        for a in sorted(sftp.listdir_attr(remote), key=lambda a: a.filename):
            _pull_entry(sftp, posixpath.join(remote, a.filename), a,
                        os.path.join(local, a.filename), stats)  # fmt: skip
        os.chmod(local, stat.S_IMODE(mode))
        os.utime(local, (int(attr.st_atime or attr.st_mtime), int(attr.st_mtime)))
    elif stat.S_ISREG(mode):
        if lst is not None and stat.S_ISREG(lst.st_mode) and _same(lst, attr):
            stats.skipped += 1
            return
        _fetch_file(sftp, remote, attr, local)
        stats.sent += 1
        stats.bytes += attr.st_size or 0


def pull(sftp: paramiko.SFTPClient, src: str, dst: str) -> SyncStats:
    """Fetch ``src`` (file or directory) from the host to the local ``dst``, as ``rsync -a
    host:src dst`` would."""
    attr = _remote_stat(sftp, src.rstrip("/") or "/")
    if attr is None:
        raise FileNotFoundError(f"{src} does not exist on the host")
    if stat.S_ISLNK(attr.st_mode or 0):
        attr = sftp.stat(src)
    is_dir = stat.S_ISDIR(attr.st_mode or 0)
    target = target_path(src, dst, is_dir, os.path.isdir(dst))
    stats = SyncStats()
    parent = os.path.dirname(target.rstrip("/"))
    if parent and not os.path.isdir(parent):
        os.makedirs(parent)
    _pull_entry(sftp, src.rstrip("/") or "/", attr, target.rstrip("/") or "/", stats)
    return stats


def write_remote_file(sftp: paramiko.SFTPClient, path: str, data: bytes, mode: int = 0o644
                      ) -> None:  # fmt: skip
    """Replace ``path`` on the host atomically (a temporary file, then a rename)."""
    remote_makedirs(sftp, posixpath.dirname(path))
    tmp = _tmp_name(path)
    with sftp.open(tmp, "wb") as f:
        f.write(data)
    sftp.chmod(tmp, mode)
    sftp.posix_rename(tmp, path)


def read_remote_file(sftp: paramiko.SFTPClient, path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        with sftp.open(path, "rb") as f:
            data: bytes = f.read()
            return data
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ENOENT:
            return None
        raise
