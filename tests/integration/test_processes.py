"""Process lifecycle: init/shutdown, a SIGKILLed driver, the CLI, worker output."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import psutil

from rayops.node.processes import free_port

PY = sys.executable


def _descendants_and_session(pid: int) -> list[int]:
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pids: list[int]) -> list[int]:
    out = []
    for p in pids:
        try:
            if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_sigkilled_driver_leaves_nothing_behind(tmp_path: object) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time, rayops
        rayops.init(num_cpus=2, _temp_dir={str(tmp_path)!r})
        @rayops.remote
        def f(): return 1
        assert rayops.get(f.remote()) == 1
        print("READY", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "READY"
    # GCS, raylet and at least two workers; the second may still be starting: wait for it.
    deadline = time.monotonic() + 15
    children = _descendants_and_session(proc.pid)
    while len(children) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
        children = _descendants_and_session(proc.pid)
    assert len(children) >= 4, f"only {len(children)} processes under the driver"
    shm = [d for d in os.listdir("/dev/shm") if d.startswith("rayops-session")]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(children), f"processes survived the driver: {_alive(children)}"
    # the raylet removed its shared memory on the way out
    left = [d for d in os.listdir("/dev/shm") if d.startswith("rayops-session") and d in shm]
    sess = os.path.realpath(os.path.join(str(tmp_path), "session_latest"))
    assert not [d for d in left if os.path.basename(sess) in d]


def test_token_file_mode_and_session_layout(tmp_path: object) -> None:
    script = textwrap.dedent(
        f"""
        import rayops
        ctx = rayops.init(num_cpus=1, _temp_dir={str(tmp_path)!r})
        print(ctx["session_dir"])
        rayops.shutdown()
        """
    )
    out = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    session_dir = out.stdout.strip().splitlines()[-1]
    token = os.path.join(session_dir, "cluster_token")
    assert stat.S_IMODE(os.stat(token).st_mode) == 0o600
    assert os.path.realpath(os.path.join(str(tmp_path), "session_latest")) == session_dir
    logs = os.listdir(os.path.join(session_dir, "logs"))
    assert "raylet.log" in logs and "gcs.log" in logs
    assert any(name.startswith("worker-") for name in logs)


def test_worker_output_reaches_driver(tmp_path: object) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time, rayops

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
        rayops.init(num_cpus=1, _temp_dir={str(tmp_path)!r})
        @rayops.remote
        def talker():
            print("hello from the task")
            return 1
        rayops.get(talker.remote())
        deadline = time.monotonic() + 20
        while "hello from the task" not in tee.seen and time.monotonic() < deadline:
            time.sleep(0.05)
        rayops.shutdown()
        """
    )
    out = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if "hello from the task" in ln]
    assert lines, out.stdout + out.stderr
    assert lines[0].startswith("(talker pid=") and "ip=127.0.0.1)" in lines[0]


def test_log_to_driver_false(tmp_path: object) -> None:
    script = textwrap.dedent(
        f"""
        import rayops
        rayops.init(num_cpus=1, _temp_dir={str(tmp_path)!r}, log_to_driver=False)
        @rayops.remote
        def talker():
            print("should not appear")
        rayops.get(talker.remote())
        import time; time.sleep(0.5)
        rayops.shutdown()
        """
    )
    out = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "should not appear" not in out.stdout


def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "rayops.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_cli_start_status_stop_and_join(tmp_path: object) -> None:
    tmp = str(tmp_path)
    port = str(free_port("127.0.0.1"))
    r = _cli(
        "start",
        "--head",
        "--port",
        port,
        "--num-cpus",
        "3",
        "--resources",
        '{"accel": 2}',
        "--temp-dir",
        tmp,
        "--node-ip-address",
        "127.0.0.1",
    )
    assert r.returncode == 0, r.stderr
    try:
        t0 = time.monotonic()
        st = _cli("status", "--temp-dir", tmp)
        assert st.returncode == 0, st.stderr
        assert "Active: 1" in st.stdout and "0/3 CPU" in st.stdout and "0/2 accel" in st.stdout
        assert time.monotonic() - t0 < 5
        # a driver joins with init("auto") (through the env var too) and sees the resources
        script = textwrap.dedent(
            """
            import rayops
            rayops.init("auto", _temp_dir=TEMP_DIR)
            @rayops.remote(resources={"accel": 1})
            def f(): return rayops.get_runtime_context().get_node_id()
            print(rayops.get(f.remote()) == rayops.get_runtime_context().get_node_id())
            print(rayops.cluster_resources()["accel"])
            """
        ).replace("TEMP_DIR", repr(tmp))
        out = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["True", "2.0"]
        # ... and by address, given through RAYOPS_ADDRESS with the token file
        script2 = textwrap.dedent(
            """
            import rayops
            ctx = rayops.init()
            @rayops.remote
            def f(): return 42
            print(rayops.get(f.remote()), ctx["gcs_address"])
            """
        )
        env = {
            **os.environ,
            "RAYOPS_ADDRESS": f"127.0.0.1:{port}",
            "RAYOPS_TOKEN_FILE": os.path.join(tmp, "session_latest", "cluster_token"),
        }
        out = subprocess.run(
            [PY, "-c", script2], capture_output=True, text=True, timeout=60, env=env
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["42", f"127.0.0.1:{port}"]
        # a second start from the same temp dir is refused with a clear message
        again = _cli("start", "--head", "--temp-dir", tmp, "--node-ip-address", "127.0.0.1")
        assert again.returncode == 1 and "already running" in again.stderr
        assert "Traceback" not in again.stderr
    finally:
        stop = _cli("stop", "--temp-dir", tmp)
    assert stop.returncode == 0, stop.stderr
    assert "stopped" in stop.stdout
    st = _cli("status", "--temp-dir", tmp)
    assert st.returncode == 1 and "no running rayops cluster" in st.stderr


def test_cli_stop_leaves_other_clusters_alone(tmp_path: object) -> None:
    a, b = os.path.join(str(tmp_path), "a"), os.path.join(str(tmp_path), "b")
    for d in (a, b):
        r = _cli(
            "start",
            "--head",
            "--port",
            str(free_port("127.0.0.1")),
            "--num-cpus",
            "1",
            "--temp-dir",
            d,
            "--node-ip-address",
            "127.0.0.1",
        )
        assert r.returncode == 0, r.stderr
    try:
        assert _cli("stop", "--temp-dir", a).returncode == 0
        st = _cli("status", "--temp-dir", b)
        assert st.returncode == 0 and "Active: 1" in st.stdout, st.stdout + st.stderr
    finally:
        _cli("stop", "--temp-dir", a)
        _cli("stop", "--temp-dir", b)


def test_cli_bad_arguments(tmp_path: object) -> None:
    r = _cli("start", "--head", "--resources", "{not json", "--temp-dir", str(tmp_path))
    assert r.returncode != 0 and "--resources" in r.stderr and "Traceback" not in r.stderr
    r = _cli("start", "--temp-dir", str(tmp_path))
    assert r.returncode == 1 and "--head" in r.stderr
