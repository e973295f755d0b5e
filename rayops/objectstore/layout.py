"""The on-file format of one stored object: header, buffer table, payload.

This module owns the byte layout every writer and reader of the store agrees on, and nothing
else: it does no I/O, it only computes offsets, packs the header and parses it back with bounds
checks. A file is::

    offset 0    header (72 bytes, little-endian)
                  magic          8s   b"RAYOPSOB"
                  version        u32  FORMAT_VERSION
                  num_buffers    u32
                  metadata_len   u64
                  pickled_len    u64
                  id_len         u32  length of the object id (<= 32)
                  reserved       u32  zero
                  object_id      32s  zero-padded; lets a reader check it mapped the right file
    offset 72   buffer table: num_buffers x (offset u64, length u64), offsets from file start
    then        metadata (metadata_len bytes), then the pickle stream (pickled_len bytes)
    then        each out-of-band buffer at the next multiple of 64 (zero padding in between)

The file ends right after the last buffer (or the pickle stream when there are no buffers).
Buffers start on 64-byte file offsets; mappings are page-aligned, so the memory a reader sees
is 64-byte aligned too, which is what numpy and SIMD loops want.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

MAGIC = b"RAYOPSOB"
FORMAT_VERSION = 1
BUFFER_ALIGNMENT = 64
MAX_OBJECT_ID_LEN = 32

_HEADER = struct.Struct("<8sIIQQII32s")
_TABLE_ENTRY = struct.Struct("<QQ")
HEADER_SIZE = _HEADER.size


class LayoutError(ValueError):
    """A store file does not hold a well-formed object (wrong magic, version, id or bounds)."""


class Layout(NamedTuple):
    """Where each part of an object goes in its file. (A NamedTuple: built on every write and
    read, it costs a fifth of a frozen dataclass.)"""

    metadata_offset: int
    metadata_len: int
    pickled_offset: int
    pickled_len: int
    buffers: tuple[tuple[int, int], ...]  # (offset, length) per out-of-band buffer
    total: int  # file size in bytes


def align_up(offset: int) -> int:
    """The first multiple of BUFFER_ALIGNMENT at or after `offset`."""
    return (offset + BUFFER_ALIGNMENT - 1) & ~(BUFFER_ALIGNMENT - 1)


def plan(metadata_len: int, pickled_len: int, buffer_lens: Sequence[int]) -> Layout:
    """Offsets and total size of an object with these part sizes."""
    metadata_offset = HEADER_SIZE + _TABLE_ENTRY.size * len(buffer_lens)
    pickled_offset = metadata_offset + metadata_len
    end = pickled_offset + pickled_len
    buffers = []
    for length in buffer_lens:
        start = align_up(end)
        buffers.append((start, length))
        end = start + length
    return Layout(metadata_offset, metadata_len, pickled_offset, pickled_len, tuple(buffers), end)


def pack_header(object_id: bytes, layout: Layout) -> bytes:
    """The header and buffer table of `layout` (everything before the metadata)."""
    if len(object_id) > MAX_OBJECT_ID_LEN:
        raise ValueError(
            f"object id must be at most {MAX_OBJECT_ID_LEN} bytes, got {len(object_id)} bytes "
            f"({object_id.hex()})"
        )
    header = _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        len(layout.buffers),
        layout.metadata_len,
        layout.pickled_len,
        len(object_id),
        0,
        object_id,
    )
    table = b"".join(_TABLE_ENTRY.pack(offset, length) for offset, length in layout.buffers)
    return header + table


def parse(data: bytes | memoryview, object_id: bytes | None = None) -> Layout:
    """Read back the layout of the object file whose bytes are `data` (e.g. an mmap).

    Checks magic, version, that `object_id` (when given) is the id recorded in the file, and
    that every part lies inside the file; raises LayoutError naming what is wrong otherwise.
    """
    size = len(data)
    if size < HEADER_SIZE:
        raise LayoutError(
            f"object file is {size} bytes, shorter than the {HEADER_SIZE}-byte header"
        )
    magic, version, nbuf, meta_len, pickled_len, id_len, _, stored_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise LayoutError(f"object file starts with {magic!r}, expected magic {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise LayoutError(f"object file has format version {version}, expected {FORMAT_VERSION}")
    if object_id is not None and stored_id[:id_len] != object_id:
        raise LayoutError(
            f"object file records id {stored_id[:id_len].hex()}, expected {object_id.hex()}"
        )
    metadata_offset = HEADER_SIZE + _TABLE_ENTRY.size * nbuf
    pickled_offset = metadata_offset + meta_len
    end = pickled_offset + pickled_len
    if end > size:
        raise LayoutError(f"object file is {size} bytes but its header describes {end}")
    buffers = tuple(
        _TABLE_ENTRY.unpack_from(data, HEADER_SIZE + _TABLE_ENTRY.size * i) for i in range(nbuf)
    )
    for offset, length in buffers:
        if offset % BUFFER_ALIGNMENT or offset < end or offset + length > size:
            raise LayoutError(
                f"object file of {size} bytes has a buffer at offset {offset} of {length} bytes; "
                f"expected {BUFFER_ALIGNMENT}-aligned, in order and inside the file"
            )
        end = offset + length
    return Layout(metadata_offset, meta_len, pickled_offset, pickled_len, buffers, end)
