"""The object file format: offsets, alignment and the checks a reader relies on."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rayops.objectstore import layout


def _file(object_id: bytes, metadata: bytes, pickled: bytes, buffers: list[bytes]) -> bytes:
    plan = layout.plan(len(metadata), len(pickled), [len(b) for b in buffers])
    data = bytearray(plan.total)
    header = layout.pack_header(object_id, plan)
    data[: len(header)] = header
    data[plan.metadata_offset : plan.pickled_offset] = metadata
    data[plan.pickled_offset : plan.pickled_offset + plan.pickled_len] = pickled
    for (offset, length), buf in zip(plan.buffers, buffers, strict=True):
        data[offset : offset + length] = buf
    return bytes(data)


def test_buffers_start_on_64_byte_offsets_in_order() -> None:
    plan = layout.plan(3, 17, [1, 0, 100, 64])
    offsets = [offset for offset, _ in plan.buffers]
    assert all(offset % 64 == 0 for offset in offsets)
    assert offsets == sorted(offsets)
    assert offsets[0] >= plan.pickled_offset + plan.pickled_len
    last_offset, last_len = plan.buffers[-1]
    assert plan.total == last_offset + last_len


def test_without_buffers_file_ends_after_pickle_stream() -> None:
    plan = layout.plan(5, 10, [])
    assert plan.total == layout.HEADER_SIZE + 5 + 10


def test_parse_returns_the_planned_layout() -> None:
    oid = bytes(range(28))
    data = _file(oid, b"meta", b"pickle-bytes", [b"a" * 10, b"b" * 70])
    plan = layout.parse(data, oid)
    assert plan == layout.plan(4, 12, [10, 70])
    offset, length = plan.buffers[1]
    assert data[offset : offset + length] == b"b" * 70


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda d: b"NOTMAGIC" + d[8:], "magic"),
        (lambda d: d[:8] + (99).to_bytes(4, "little") + d[12:], "version"),
        (lambda d: d[:-1], "bytes"),
        (lambda d: d[:40], "shorter"),
    ],
)
def test_parse_rejects_malformed_files(corrupt: Callable[[bytes], bytes], message: str) -> None:
    data = _file(b"\x01" * 16, b"m", b"p", [b"x" * 100])
    with pytest.raises(layout.LayoutError, match=message):
        layout.parse(corrupt(data), b"\x01" * 16)


def test_parse_rejects_another_objects_file() -> None:
    data = _file(b"\x01" * 16, b"", b"p", [])
    with pytest.raises(layout.LayoutError, match="expected 0202"):
        layout.parse(data, b"\x02" * 16)


def test_object_ids_longer_than_32_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 32 bytes"):
        layout.pack_header(b"x" * 33, layout.plan(0, 0, []))
