"""The agent's log file logic: names, categories, where a tail starts, following across
rotation and truncation (real files in a temp dir; no processes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rayops.agent.log_files import (
    Follower,
    LogFileError,
    categorize,
    check_name,
    list_names,
    open_log,
    tail_start,
)


@pytest.mark.parametrize(
    ("data", "lines", "expected"),
    [
        (b"", 5, b""),
        (b"a\nb\nc\n", 0, b""),
        (b"a\nb\nc\n", -1, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 1, b"c\n"),
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc\n", 3, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
        (b"a\nb\nc", 1, b"c"),  # a last line without its newline counts
        (b"a\nb\nc", 2, b"b\nc"),
        (b"\n\n\n", 2, b"\n\n"),
        (b"x" * 200_000 + b"\n" + b"y" * 70_000 + b"\n", 1, b"y" * 70_000 + b"\n"),
        ((b"z" * 99 + b"\n") * 5000, 1200, (b"z" * 99 + b"\n") * 1200),  # across blocks
    ],
)
def test_tail_start(data: bytes, lines: int, expected: bytes) -> None:
    start = tail_start(lambda off, n: data[off : off + n], len(data), lines)
    assert data[start:] == expected


def test_categorize_groups_rotated_backups_with_their_log() -> None:
    names = ["worker-ab12.log", "worker-ab12.log.1", "raylet.log", "raylet.out", "gcs.log",
             "agent.out", "dashboard.log", "job-driver-raysubmit_x.log",
             "job-supervisor-raysubmit_x.out", "zygote.log"]  # fmt: skip
    assert categorize(names) == {
        "worker_out": ["worker-ab12.log", "worker-ab12.log.1"],
        "raylet": ["raylet.log", "raylet.out"],
        "gcs_server": ["gcs.log"],
        "agent": ["agent.out"],
        "dashboard": ["dashboard.log"],
        "driver": ["job-driver-raysubmit_x.log"],
        "job_supervisor": ["job-supervisor-raysubmit_x.out"],
        "internal": ["zygote.log"],
    }


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "/etc/passwd", "", ".hidden", "a\0b"])
def test_names_other_than_plain_file_names_are_refused(name: str) -> None:
    with pytest.raises(LogFileError) as err:
        check_name(name)
    assert err.value.status == 400


def test_symlinks_and_directories_are_not_served(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "ok.log").write_text("fine\n")
    (logs / "link.log").symlink_to(tmp_path / "secret")
    (logs / "sub").mkdir()
    assert list_names(str(logs)) == ["ok.log"]
    assert list_names(str(logs), "*.out") == []
    os.close(open_log(str(logs), "ok.log"))
    for name, status in (("link.log", 403), ("sub", 403), ("gone.log", 404)):
        with pytest.raises(LogFileError) as err:
            os.close(open_log(str(logs), name))
        assert err.value.status == status, name


def test_follower_reads_appends_then_across_rotation_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    path.write_bytes(b"one\n")
    f = Follower(str(tmp_path), "w.log", 0)
    try:
        assert f.read() == b"one\n"
        assert f.read() == b""
        with path.open("ab") as out:
            out.write(b"two\n")
        assert f.read() == b"two\n"
        # Rotation: more written to the old file, then renamed, then a new file.
        with path.open("ab") as out:
            out.write(b"three\n")
        path.rename(tmp_path / "w.log.1")
        assert f.read() == b"three\n"
        assert f.read() == b""  # no new file yet
        path.write_bytes(b"four\n")
        assert f.read() == b"four\n"
        # Truncated in place: read again from the start.
        path.write_bytes(b"5\n")
        assert f.read() == b"5\n"
    finally:
        f.close()
