"""Unauthenticated peers against a real node: idle sockets to the raylet are closed at
the handshake deadline and their memory goes back; peers that say the wrong thing to the
raylet, a worker or the driver cost one log line per address, and the user's terminal
(the driver's stderr) shows nothing of it."""

from __future__ import annotations

import glob
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from rayops.testing.waiting import wait_for

PY = sys.executable
DEADLINE_S = 1.0
IDLE_SOCKETS = 300

_DRIVER = textwrap.dedent(
    """
    import json, sys
    import rayops
    from rayops.core_worker import state

    ctx = rayops.init(num_cpus=1, _temp_dir=sys.argv[1])

    @rayops.remote
    class Probe:
        def address(self):
            from rayops.core_worker import state
            return list(state.current().address)

    probe = Probe.remote()
    info = {
        "raylet": ["127.0.0.1", ctx.address_info["raylet_port"]],
        "driver": list(state.current().address),
        "worker": rayops.get(probe.address.remote()),
        "session_dir": ctx["session_dir"],
    }
    print(json.dumps(info), flush=True)
    sys.stdin.readline()  # the test is done poking at us
    assert rayops.get(probe.address.remote())  # everything still works
    rayops.shutdown()
    print("DONE", flush=True)
    """
)


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(64) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _steady_rss(proc: psutil.Process, timeout: float = 15.0) -> int:
    """The process's RSS once it stopped moving (two readings 0.3 s apart within 1 MiB): a
    baseline taken while the raylet still starts workers would be a moving target."""
    deadline = time.monotonic() + timeout
    last = proc.memory_info().rss
    while True:
        time.sleep(0.3)
        now = proc.memory_info().rss
        if abs(now - last) < 2**20:
            return now
        if time.monotonic() > deadline:
            pytest.fail(f"the raylet's RSS never settled within {timeout} s ({last} -> {now})")
        last = now


def _raylet(driver_pid: int) -> psutil.Process:
    for p in psutil.Process(driver_pid).children(recursive=True):
        if "rayops.raylet" in " ".join(p.cmdline()):
            return p
    raise AssertionError("no raylet among the driver's descendants")


def test_unauthenticated_peers_are_closed_and_stay_off_the_terminal(temp_dir: str) -> None:
    env = {**os.environ, "RAYOPS_FRAMED_HANDSHAKE_TIMEOUT_S": str(DEADLINE_S)}
    proc = subprocess.Popen(
        [PY, "-c", _DRIVER, temp_dir],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line, proc.communicate(timeout=30)[1]
        info = json.loads(line)
        raylet = _raylet(proc.pid)
        rss_before = _steady_rss(raylet)

        # Idle sockets: the raylet holds only a handshake-sized buffer for each, and
        # closes them all once the deadline passes.
        t0 = time.monotonic()
        idle = [socket.create_connection(tuple(info["raylet"])) for _ in range(IDLE_SOCKETS)]
        for s in idle:
            s.setblocking(False)
        rss_peak = [raylet.memory_info().rss]

        def all_closed() -> bool:
            rss_peak.append(raylet.memory_info().rss)
            return all(_closed_by_peer(s) for s in idle)

        wait_for("the raylet to close every idle socket", all_closed, DEADLINE_S + 10)
        elapsed = time.monotonic() - t0
        for s in idle:
            s.close()
        assert elapsed >= DEADLINE_S * 0.9, elapsed
        # 256 KiB each before the fix (75 MB here); a handshake's worth now.
        grown = max(rss_peak) - rss_before
        assert grown < 20 * 2**20, f"{IDLE_SOCKETS} idle sockets cost the raylet {grown} bytes"

        # Garbage, a wrong token and silence to every framed server the job has.
        for name in ("raylet", "worker", "driver"):
            for opening in (
                struct.pack("<I", 7) + b"garbage",
                struct.pack("<I", 14) + b"RAYOPS/1 wrong",
                struct.pack("<I", 2**31),
                b"",
            ):
                with socket.create_connection(tuple(info[name])) as s:
                    if opening:
                        s.sendall(opening)
                    s.settimeout(DEADLINE_S + 10)
                    try:
                        while s.recv(64):
                            pass
                    except ConnectionResetError:
                        pass

        out, err = proc.communicate("done\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "DONE" in out, err
    # The user's terminal: nothing about any of it.
    assert "never retrieved" not in err, err
    assert "Traceback" not in err, err
    assert "refus" not in err, err

    logs = {}
    for path in glob.glob(os.path.join(info["session_dir"], "logs", "*")):
        if os.path.isfile(path):
            with open(path, errors="replace") as f:
                logs[os.path.basename(path)] = f.read()
    every = "\n".join(logs.values())
    assert "never retrieved" not in every
    # One refusal line per server (all peers were 127.0.0.1), at WARNING, within the minute.
    raylet_log = logs["raylet.log"]
    refusals = [ln for ln in raylet_log.splitlines() if "refused" in ln]
    assert len(refusals) == 1, refusals
    assert "WARNING" in refusals[0] and "no valid handshake within 1 s" in refusals[0]
    worker_refusals = [
        ln
        for name, text in logs.items()
        if name.startswith("worker-")
        for ln in text.splitlines()
        if "refused" in ln
    ]
    assert len(worker_refusals) == 1, worker_refusals
