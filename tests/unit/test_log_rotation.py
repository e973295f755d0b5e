"""Log rotation: settings, one rotating file, fd-level output, the per-node cap."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rayops.node import log_rotation as lr
from rayops.node.log_rotation import (
    LogFileEntry,
    LogRotationConfig,
    LogRotationConfigError,
    RotatingFile,
)


def _sizes(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(d.iterdir())}


# ------------------------------------------------------------------------ settings


def test_defaults_are_rays() -> None:
    cfg = LogRotationConfig.from_env({})
    assert cfg.max_bytes == 512 * 2**20
    assert cfg.backup_count == 5
    assert cfg.max_total_bytes == lr.DEFAULT_MAX_TOTAL_BYTES


def test_env_values_are_read_and_round_trip() -> None:
    env = {
        "RAYOPS_ROTATION_MAX_BYTES": "1000",
        "RAYOPS_ROTATION_BACKUP_COUNT": " 2 ",
        "RAYOPS_LOGS_MAX_TOTAL_BYTES": "0",
    }
    cfg = LogRotationConfig.from_env(env)
    assert cfg == LogRotationConfig(max_bytes=1000, backup_count=2, max_total_bytes=0)
    assert LogRotationConfig.from_env(cfg.to_env()) == cfg


@pytest.mark.parametrize(
    "name",
    ["RAYOPS_ROTATION_MAX_BYTES", "RAYOPS_ROTATION_BACKUP_COUNT", "RAYOPS_LOGS_MAX_TOTAL_BYTES"],
)
@pytest.mark.parametrize("bad", ["-1", "1.5", "10MB", "lots"])
def test_invalid_values_name_the_variable(name: str, bad: str) -> None:
    with pytest.raises(LogRotationConfigError) as err:
        LogRotationConfig.from_env({name: bad})
    assert name in str(err.value) and repr(bad) in str(err.value)


def test_config_rejects_negative_in_code() -> None:
    with pytest.raises(LogRotationConfigError, match="backup_count"):
        LogRotationConfig(backup_count=-1)


# ------------------------------------------------------------------- one file


def test_rotates_before_passing_the_limit_and_keeps_n_backups(tmp_path: Path) -> None:
    path = str(tmp_path / "w.log")
    f = RotatingFile(path, LogRotationConfig(max_bytes=100, backup_count=2))
    for i in range(50):
        f.write(f"line {i:04d} ".encode() + b"x" * 20 + b"\n")  # 31 bytes
    f.close()
    sizes = _sizes(tmp_path)
    assert set(sizes) == {"w.log", "w.log.1", "w.log.2"}
    assert all(s <= 100 for s in sizes.values())
    # Whole lines per file (rotation happens before a write that would not fit), newest last.
    assert (tmp_path / "w.log").read_text().splitlines()[-1].startswith("line 0049")
    newest_backup = (tmp_path / "w.log.1").read_text().splitlines()
    assert (tmp_path / "w.log").read_text().startswith(
        f"line {int(newest_backup[-1][5:9]) + 1:04d}"
    )


def test_a_write_larger_than_the_limit_is_split(tmp_path: Path) -> None:
    path = str(tmp_path / "w.log")
    f = RotatingFile(path, LogRotationConfig(max_bytes=10, backup_count=5))
    f.write(b"abcdefghijklmnopqrstuvwxy")  # 25 bytes
    f.close()
    assert _sizes(tmp_path) == {"w.log": 5, "w.log.1": 10, "w.log.2": 10}
    text = b"".join((tmp_path / n).read_bytes() for n in ("w.log.2", "w.log.1", "w.log"))
    assert text == b"abcdefghijklmnopqrstuvwxy"


def test_zero_backups_keeps_only_the_current_file(tmp_path: Path) -> None:
    f = RotatingFile(str(tmp_path / "w.log"), LogRotationConfig(max_bytes=10, backup_count=0))
    for _ in range(5):
        f.write(b"123456789\n")
    f.close()
    assert _sizes(tmp_path) == {"w.log": 10}


def test_zero_max_bytes_never_rotates(tmp_path: Path) -> None:
    f = RotatingFile(str(tmp_path / "w.log"), LogRotationConfig(max_bytes=0, backup_count=2))
    for _ in range(100):
        f.write(b"123456789\n")
    f.check()
    f.close()
    assert _sizes(tmp_path) == {"w.log": 1000}


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "w.log").write_bytes(b"x" * 95)
    f = RotatingFile(str(tmp_path / "w.log"), LogRotationConfig(max_bytes=100, backup_count=1))
    f.write(b"0123456789")
    f.close()
    assert _sizes(tmp_path) == {"w.log": 10, "w.log.1": 95}


def test_bound_fd_follows_rotation_and_check_catches_direct_writes(tmp_path: Path) -> None:
    """Writes made straight to a bound fd (as C code writes to fd 1) rotate at the next check."""
    spare = os.open(os.devnull, os.O_WRONLY)
    try:
        cfg = LogRotationConfig(max_bytes=50, backup_count=3)
        f = RotatingFile(str(tmp_path / "w.log"), cfg, bind_fds=[spare])
        os.write(spare, b"a" * 60)
        f.check()  # over the limit: rotates, and `spare` now points at the new file
        os.write(spare, b"b" * 10)
        f.write(b"c" * 5)
        f.close()
        assert (tmp_path / "w.log.1").read_bytes() == b"a" * 60
        assert (tmp_path / "w.log").read_bytes() == b"b" * 10 + b"c" * 5
    finally:
        os.close(spare)


def test_logging_handler_rotates(tmp_path: Path) -> None:
    f = RotatingFile(str(tmp_path / "d.log"), LogRotationConfig(max_bytes=200, backup_count=2))
    log = logging.getLogger("test_log_rotation.handler")
    log.propagate = False
    handler = lr.RotatingLogHandler(f)
    log.addHandler(handler)
    try:
        for i in range(100):
            log.warning("record %d %s", i, "y" * 30)
    finally:
        log.removeHandler(handler)
        f.close()
    sizes = _sizes(tmp_path)
    assert set(sizes) == {"d.log", "d.log.1", "d.log.2"}
    assert all(s <= 200 for s in sizes.values())
    assert "record 99 " in (tmp_path / "d.log").read_text()


# --------------------------------------------------------- a real process's fds 1/2

_CHILD = textwrap.dedent(
    """
    import ctypes, logging, os, sys, time
    from rayops.node import log_rotation as lr
    cfg = lr.LogRotationConfig(max_bytes=int(sys.argv[2]), backup_count=2)
    logs = lr.setup_process_logging(None, cfg, name="child", stdio_path=sys.argv[1])
    out = logs.files[0]
    for i in range(200):
        out.write(b"python line %05d\\n" % i)
    libc = ctypes.CDLL(None)
    for i in range(3):
        msg = b"c level %d " % i + b"z" * 300 + b"\\n"
        libc.write(1, msg, len(msg))  # around Python entirely
        time.sleep(lr.CHECK_PERIOD_S * 1.5)
    logging.getLogger("x").warning("a log record")
    os.write(2, b"LAST WORDS before SIGKILL\\n")
    os.kill(os.getpid(), 9)
    """
)


def test_process_output_rotates_and_survives_sigkill(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(log), "400"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL
    sizes = _sizes(tmp_path)
    assert set(sizes) <= {"worker.log", "worker.log.1", "worker.log.2"}
    # C-level writes rotate at the watchdog's next check: each 311-byte line went to a
    # file that had already been rotated away from the python lines.
    assert "c level 2" in (log.read_text() + (tmp_path / "worker.log.1").read_text())
    assert "c level 1" in (tmp_path / "worker.log.1").read_text() + (
        tmp_path / "worker.log.2"
    ).read_text()
    text = log.read_text()
    assert "a log record" in text
    assert text.endswith("LAST WORDS before SIGKILL\n")


def test_forked_child_does_not_rotate_the_parents_file(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    f = RotatingFile(str(path), LogRotationConfig(max_bytes=10, backup_count=1))
    pid = os.fork()
    if pid == 0:
        try:
            f.write(b"x" * 30)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    f.close()
    assert _sizes(tmp_path) == {"w.log": 30}


# ----------------------------------------------------------------- the node cap


def _e(name: str, size: int, mtime: float) -> LogFileEntry:
    return LogFileEntry(name, size, mtime)


def test_cap_deletes_oldest_backups_and_exited_logs_first_never_live_files() -> None:
    entries = [
        _e("raylet.log", 400, 9),
        _e("raylet.log.1", 300, 2),
        _e("worker-aaa.log", 100, 1),  # exited worker
        _e("worker-bbb.log", 500, 0),  # live worker (protected), oldest of all
        _e("worker-bbb.log.1", 300, 3),
        _e("worker-bbb.log.2", 300, 1.5),
    ]
    protected = {"raylet.log", "worker-bbb.log"}
    assert lr.plan_cap_deletions(entries, 10_000, protected) == []
    assert lr.plan_cap_deletions(entries, 1500, protected) == ["worker-aaa.log", "worker-bbb.log.2"]
    assert lr.plan_cap_deletions(entries, 0, protected) == []  # 0: no cap
    # Even a tiny cap never touches the live files.
    assert set(lr.plan_cap_deletions(entries, 1, protected)) == {
        "raylet.log.1",
        "worker-aaa.log",
        "worker-bbb.log.1",
        "worker-bbb.log.2",
    }


def test_scan_counts_disk_use_and_delete_is_idempotent(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"x" * 10)
    (tmp_path / "sub").mkdir()
    entries = {e.name: e for e in lr.scan_log_dir(str(tmp_path))}
    assert set(entries) == {"a.log"}
    assert entries["a.log"].disk_bytes >= 10
    assert lr.delete_log_files(str(tmp_path), ["a.log", "missing.log"]) == 1
    assert lr.scan_log_dir(str(tmp_path / "nope")) == []


def test_is_backup_name() -> None:
    assert lr.is_backup_name("worker-abc.log.12")
    assert not lr.is_backup_name("worker-abc.log")
    assert not lr.is_backup_name("gcs.out")


def test_watchdog_thread_rotates_without_any_python_write(tmp_path: Path) -> None:
    spare = os.open(os.devnull, os.O_WRONLY)
    try:
        cfg = LogRotationConfig(max_bytes=20, backup_count=1)
        f = RotatingFile(str(tmp_path / "w.log"), cfg, bind_fds=[spare])
        logs = lr.ProcessLogs([f], period_s=0.05)
        os.write(spare, b"q" * 25)
        deadline = time.monotonic() + 5
        while not (tmp_path / "w.log.1").exists():
            assert time.monotonic() < deadline, "the watchdog did not rotate w.log"
            time.sleep(0.01)
        logs.stop()
        f.close()
    finally:
        os.close(spare)


def test_rotate_if_due_for_a_restarted_childs_output(tmp_path: Path) -> None:
    path = tmp_path / "agent.out"
    cfg = LogRotationConfig(max_bytes=10, backup_count=1)
    assert not lr.rotate_if_due(str(path), cfg)  # no file yet
    path.write_bytes(b"short\n")
    assert not lr.rotate_if_due(str(path), cfg)
    path.write_bytes(b"crash traceback\n")
    assert lr.rotate_if_due(str(path), cfg)
    assert _sizes(tmp_path) == {"agent.out.1": 16}


_DAEMON = textwrap.dedent(
    """
    import logging, sys
    from rayops.node import daemon, log_rotation as lr
    cfg = lr.LogRotationConfig(max_bytes=500, backup_count=1)
    logs = daemon.setup_logging(sys.argv[1], "d", cfg)
    for i in range(50):
        logging.getLogger("t").info("record %03d %s", i, "r" * 20)
        print("stray print %03d" % i + "p" * 20, flush=True)  # sys.stdout: fd 1, around us
    logs.files[0].check()  # what the watchdog does every CHECK_PERIOD_S
    print("final print", flush=True)
    """
)


def test_daemon_logging_rotates_its_log_and_adopted_out_file(tmp_path: Path) -> None:
    """A daemon whose fds 1/2 point at the sibling ``.out`` (as processes.py starts it)."""
    with open(tmp_path / "d.out", "ab") as out:
        subprocess.run(
            [sys.executable, "-c", _DAEMON, str(tmp_path / "d.log")],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=60,
            check=True,
        )
    sizes = _sizes(tmp_path)
    assert set(sizes) == {"d.log", "d.log.1", "d.out", "d.out.1"}, sizes
    assert sizes["d.log"] <= 500 and sizes["d.log.1"] <= 500
    assert "record 049" in (tmp_path / "d.log").read_text()
    assert (tmp_path / "d.out").read_text() == "final print\n"


def test_check_attached_to_an_event_loop_instead_of_a_thread(tmp_path: Path) -> None:
    import asyncio

    spare = os.open(os.devnull, os.O_WRONLY)
    loop = asyncio.new_event_loop()
    try:
        cfg = LogRotationConfig(max_bytes=20, backup_count=1)
        f = RotatingFile(str(tmp_path / "w.log"), cfg, bind_fds=[spare])
        logs = lr.ProcessLogs([f], period_s=0.02, thread=False)
        logs.attach(loop)
        os.write(spare, b"q" * 25)

        async def rotated() -> None:
            deadline = time.monotonic() + 5
            while not (tmp_path / "w.log.1").exists():
                assert time.monotonic() < deadline, "the loop timer did not rotate w.log"
                await asyncio.sleep(0.01)

        loop.run_until_complete(rotated())
        logs.stop()
        f.close()
    finally:
        loop.close()
        os.close(spare)
