"""A dedicated tmpfs with transparent huge pages under the store directory (opt-in, root only).

Why: /dev/shm hands out 4 KiB pages, and the kernel's per-page work caps a write into it near
1.5 GB/s for new pages and 3.5-4.4 GB/s for recycled ones on this kind of machine, and a reader
touching every page of a 100 MB mapping spends ~16 ms in page faults. A tmpfs mounted with
huge=within_size backs every whole 2 MiB stretch of a file with one huge page: writing the same
100 MB measured 6.5-7.2 GB/s (new or recycled pages) and touching all of it 1.2 ms. Small files
and file tails still get 4 KiB pages, so small objects waste nothing.

Mounting needs CAP_SYS_ADMIN. This module only mounts on an empty directory that is not a mount
point already, and only unmounts what it recognises as its own (tmpfs with huge=within_size on
that exact path), so it never covers or removes a filesystem it did not make.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_MS_NOSUID = 2
_MS_NODEV = 4
_MNT_DETACH = 2
_HUGE_OPTION = "huge=within_size"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount_huge_tmpfs(path: str, size: int) -> str | None:
    """Mount a huge-page tmpfs of `size` bytes on the empty directory `path`.

    Returns None when `path` is (now, or already was) such a mount, else the reason it is not
    (permission, kernel support, directory in use), for the caller to log.
    """
    if is_huge_tmpfs(path):
        return None
    if os.path.ismount(path):
        return f"{path} is already a mount point of another kind"
    if os.listdir(path):
        return f"{path} is not empty"
    options = f"size={size},{_HUGE_OPTION},mode=0700".encode()
    if _libc.mount(b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, options) != 0:
        return os.strerror(ctypes.get_errno())
    return None


def is_huge_tmpfs(path: str) -> bool:
    """True if `path` itself is a tmpfs mount point with huge=within_size (one of ours)."""
    target = os.path.realpath(path)
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if (
                len(fields) >= 4
                and fields[2] == "tmpfs"
                and _unescape(fields[1]) == target
                and _HUGE_OPTION in fields[3].split(",")
            ):
                return True
    return False


def unmount(path: str) -> None:
    """Detach our tmpfs from `path`; its pages go once the last mapping of them is gone."""
    if is_huge_tmpfs(path) and _libc.umount2(path.encode(), _MNT_DETACH) != 0:
        raise OSError(ctypes.get_errno(), f"unmounting the store tmpfs at {path} failed")


def _unescape(field: str) -> str:
    """Mount points in /proc/self/mounts escape space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def remove_store_dir(path: str) -> None:
    """Remove a store directory and everything in it, detaching our huge-page tmpfs first (a
    mount point cannot be removed, so a store whose raylet died would otherwise leave it)."""
    import shutil

    try:
        unmount(path)
    except OSError:
        pass  # rmtree below still empties it; reclaim.py retries the unmount later
    shutil.rmtree(path, ignore_errors=True)
