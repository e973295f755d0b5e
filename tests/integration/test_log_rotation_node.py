"""Logs on a real node started with tiny rotation limits: chatty tasks, a crash loop,
output written around Python. Files stay under the size limit with at most N backups,
the node's logs/ stays under its total cap, the newest output is readable on disk and
still reaches the driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rayops.node.log_rotation import is_backup_name

PY = sys.executable
MAX_BYTES = 4096
BACKUPS = 2
# Above what live processes hold (GCS, raylet, agent, zygote, a worker: ~10 files of at
# most 4 KiB each), well below what the script writes (~25 dead workers x 3 x 4 KiB).
MAX_TOTAL = 96 * 1024

_SCRIPT = textwrap.dedent(
    """
    import glob, json, os, sys, time
    import rayops
    from rayops.exceptions import WorkerCrashedError

    class Tee:
        # records what the driver prints, so the script can wait for it
        def __init__(self, inner):
            self.inner, self.seen = inner, ""
        def write(self, s):
            self.seen += s
            return self.inner.write(s)
        def flush(self):
            self.inner.flush()

    sys.stdout = tee = Tee(sys.stdout)
    ctx = rayops.init(num_cpus=1, _temp_dir=sys.argv[1])
    logs = os.path.join(ctx["session_dir"], "logs")

    @rayops.remote(max_retries=0)
    def crash(i):
        for k in range(300):
            print(f"crash {i} line {k:04d} " + "x" * 50)
        sys.stdout.flush()
        os.write(2, f"LAST WORDS of crash {i}\\n".encode())
        os._exit(3)

    @rayops.remote
    def chatty():
        for k in range(3000):
            print(f"chatty line {k:05d} " + "y" * 40)
        print("LAST LINE of chatty")
        return os.getpid()

    @rayops.remote(max_retries=0)
    def c_level():
        # as a C extension would: straight to fd 1, around sys.stdout; then the worker
        # exits so that chatty() gets a worker of its own
        for k in range(40):
            os.write(1, f"CLEVEL {k:03d} ".encode() + b"z" * 1000 + b"\\n")
            time.sleep(0.05)
        os._exit(0)

    for i in range(25):
        try:
            rayops.get(crash.remote(i))
        except WorkerCrashedError:
            pass
    try:
        rayops.get(c_level.remote())
    except WorkerCrashedError:
        pass
    chatty_pid = rayops.get(chatty.remote())
    deadline = time.monotonic() + 30
    while "LAST LINE of chatty" not in tee.seen and time.monotonic() < deadline:
        time.sleep(0.05)

    def disk_use():
        total = 0
        for p in glob.glob(os.path.join(logs, "*")):
            st = os.stat(p)
            total += max(st.st_size, st.st_blocks * 512)
        return total

    deadline = time.monotonic() + 30
    while disk_use() > int(sys.argv[2]) and time.monotonic() < deadline:
        time.sleep(0.1)
    result = {"logs": logs, "disk_use": disk_use(), "chatty_pid": chatty_pid}
    print("RESULT " + json.dumps(result))
    rayops.shutdown()
    """
)


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


@pytest.mark.parametrize("zygote", ["1", "0"], ids=["forked-workers", "spawned-workers"])
def test_logs_rotate_and_stay_under_the_node_cap(tmp_path: Path, zygote: str) -> None:
    env = {
        **os.environ,
        "RAYOPS_WORKER_ZYGOTE": zygote,
        "RAYOPS_ROTATION_MAX_BYTES": str(MAX_BYTES),
        "RAYOPS_ROTATION_BACKUP_COUNT": str(BACKUPS),
        "RAYOPS_LOGS_MAX_TOTAL_BYTES": str(MAX_TOTAL),
    }
    out = subprocess.run(
        [PY, "-c", _SCRIPT, str(tmp_path), str(MAX_TOTAL)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result_line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert result_line, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(result_line[len("RESULT ") :])
    logs = Path(result["logs"])

    # The node's logs/ got under the cap while the node ran (and it was over it: the
    # crash loop alone wrote far more), deleting the oldest files first.
    assert result["disk_use"] <= MAX_TOTAL, result
    files = {p.name: p for p in logs.iterdir()}
    worker_logs = [n for n in files if n.startswith("worker-") and not is_backup_name(n)]
    assert len(worker_logs) < 25, sorted(files)

    # No more than N backups of any log; rotated files never exceed the limit.
    for name in files:
        if is_backup_name(name):
            n = int(name.rsplit(".", 1)[1])
            assert 1 <= n <= BACKUPS, name
    python_written = [n for n, p in files.items() if "CLEVEL" not in _read(p)]
    for name in python_written:
        assert files[name].stat().st_size <= MAX_BYTES, (name, files[name].stat().st_size)

    # The latest output is on disk, in the current file (not a backup) ...
    chatty_current = [n for n in worker_logs if "LAST LINE of chatty" in _read(files[n])]
    assert chatty_current, sorted(files)
    assert any(is_backup_name(n) and n.startswith(chatty_current[0]) for n in files)
    # ... the newest crash's last words survived the crash and the cap (oldest go first) ...
    assert any("LAST WORDS of crash 24" in _read(files[n]) for n in worker_logs)
    assert not any("LAST WORDS of crash 0\n" in _read(p) for p in files.values())
    # ... and prints still reach the driver.
    relayed = [ln for ln in out.stdout.splitlines() if "LAST LINE of chatty" in ln]
    assert relayed and relayed[0].startswith("(chatty pid="), out.stdout[-2000:]

    # Output written to fd 1 around Python rotates too, at the watchdog's next check
    # (which may come after the last write: then the newest lines are in ``.1``).
    clevel = [n for n in files if "CLEVEL" in _read(files[n])]
    assert any(is_backup_name(n) for n in clevel), clevel
    listing = str({n: p.stat().st_size for n, p in sorted(files.items())})
    newest = [n for n in clevel if not is_backup_name(n) or n.endswith(".1")]
    assert "CLEVEL 039" in "".join(_read(files[n]) for n in newest), listing


def test_invalid_setting_is_refused_before_anything_starts(tmp_path: Path) -> None:
    env = {**os.environ, "RAYOPS_ROTATION_BACKUP_COUNT": "five"}
    out = subprocess.run(
        [PY, "-m", "rayops.cli.main", "start", "--head", "--temp-dir", str(tmp_path / "t")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 1
    assert "RAYOPS_ROTATION_BACKUP_COUNT='five' is not valid" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "t").exists()
