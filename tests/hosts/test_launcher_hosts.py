"""`rayops up/down/exec/submit/...` against three real SSH hosts in network namespaces.

Real sshd, real Ansible, real installs (a virtualenv per host from the launcher's wheelhouse,
no package index on the hosts), real faults (a crashed host, a changed host key, a wrong key,
a failing setup command). The tests share one set of hosts and run in file order; each test
that needs a running cluster first runs `up` (a no-op when it is already up).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rayops.testing.hosts import wait_until

pytestmark = pytest.mark.slow

TARGETS = {"first_up_s": 180.0, "noop_up_s": 15.0, "exec_true_s": 1.5, "down_s": 10.0}


def test_bad_specs_fail_before_any_ssh_connection(launcher: Any) -> None:
    before = {n: launcher.net.connections_logged(n) for n in launcher.net.hosts}
    cases = {
        "unknown.yaml": (
            {"setup_comands": ["true"]},
            ": setup_comands: unknown key 'setup_comands'; did you mean 'setup_commands'?",
        ),
        "wrongtype.yaml": (
            {"auth": {"ssh_port": "twenty-two"}},
            ": auth.ssh_port: expected an integer (an SSH port number (1-65535)), "
            "found 'twenty-two' (a string)",
        ),
        "nohead.yaml": (
            {"provider": None},
            ": provider.head_ip: required key missing: expected the head's IP address or host name",
        ),
    }
    for name, (overrides, message) in cases.items():
        data = launcher.spec_data(**{k: v for k, v in overrides.items() if v is not None})
        if "provider" in overrides:
            del data["provider"]["head_ip"]
        path = launcher.write_spec(name, data)
        res = launcher.up(path)
        assert res.rc == 1, res.text
        assert f"{path}:" in res.err and message in res.err, res.err
        assert "Traceback" not in res.text
    after = {n: launcher.net.connections_logged(n) for n in launcher.net.hosts}
    assert after == before, "a bad spec must not open any SSH connection"


def test_first_up_brings_three_fresh_hosts_up(launcher: Any) -> None:
    for name in launcher.net.hosts:
        assert not launcher.rayops_processes(name)
    ansible_home = Path.home() / ".ansible"
    had_ansible_home = ansible_home.exists()
    res = launcher.up()
    launcher.figures["first_up_s"] = round(res.seconds, 1)
    assert res.rc == 0, res.text
    assert "Summary: 3 of 3 host(s) up" in res.out
    for ip in launcher.ips.values():
        assert f"{ip}  " in res.out
    assert res.seconds < TARGETS["first_up_s"]
    # Hosts installed from the wheelhouse into their own virtualenv; token files are 0600.
    for name in launcher.net.hosts:
        check = launcher.net.ssh(
            name,
            "cd ~/rayops/hosttest && venv/bin/python -c 'import rayops; print(rayops.__file__)' "
            "&& stat -c %a cluster_token && cat ~/app/data.txt",
        )
        lines = check.stdout.split()
        assert check.returncode == 0, check.stderr
        assert lines[0].startswith(str(launcher.net.hosts[name].home)), lines
        assert lines[1:] == ["600", "mounted"]
    status = launcher.cluster_status()
    assert [h["provisioned"] for h in status["hosts"]] == ["up", "up", "up"]
    alive = sorted(n["node_ip"] for n in status["nodes"] if n["state"] == "ALIVE")
    assert alive == sorted(launcher.ips.values())
    # The cluster record lives on the head only; this machine keeps the wheelhouse cache and
    # the cluster's CA (TLS is on by default for a multi-host cluster).
    records = {n: (h.home / "rayops/hosttest/cluster.json").exists()
               for n, h in launcher.net.hosts.items()}  # fmt: skip
    assert records == {"h1": True, "h2": False, "h3": False}
    cache = launcher.base / "cache" / "rayops"
    assert sorted(p.name for p in cache.iterdir()) == ["runs", "tls", "wheelhouse"]
    assert not any((cache / "runs").iterdir())
    assert ansible_home.exists() == had_ansible_home, "ansible wrote to ~/.ansible"


def test_second_up_changes_nothing(launcher: Any) -> None:
    launcher.ensure_up()
    pids = {n: launcher.raylet_pid(n) for n in launcher.net.hosts}
    before = {n: launcher.net.connections_logged(n) for n in launcher.net.hosts}
    res = launcher.up()
    launcher.figures["noop_up_s"] = round(res.seconds, 1)
    # One SSH connection per host for the whole command (facts, record check, ...).
    after = {n: launcher.net.connections_logged(n) for n in launcher.net.hosts}
    assert {n: after[n] - before[n] for n in after} == {n: 1 for n in after}
    assert res.rc == 0, res.text
    assert "Nothing to do: every reachable host is up to date." in res.out
    assert res.out.count("unchanged  up to date") == 3
    assert "ansible" not in res.text.lower()
    assert res.seconds < TARGETS["noop_up_s"]
    assert {n: launcher.raylet_pid(n) for n in launcher.net.hosts} == pids


def test_exec_runs_with_the_cluster_in_its_environment(launcher: Any) -> None:
    launcher.ensure_up()
    spec = str(launcher.spec())
    times = []
    for _ in range(3):
        res = launcher.run("exec", spec, "true")
        assert res.rc == 0, res.text
        times.append(res.seconds)
    launcher.figures["exec_true_s"] = round(min(times), 2)
    assert sorted(times)[1] < TARGETS["exec_true_s"], times
    assert launcher.run("exec", spec, "exit 7").rc == 7
    res = launcher.run("exec", spec, 'hostname; echo "$RAYOPS_ADDRESS"', "--node", "all")
    assert res.rc == 0, res.text
    for name, ip in launcher.ips.items():
        assert f"[{ip}] {name}" in res.out
        assert f"[{ip}] {launcher.ips['h1']}:6379" in res.out
    res = launcher.run("exec", spec, "rayops status --json", "--node", launcher.ips["h3"])
    assert res.rc == 0 and res.out.count('"ALIVE"') >= 3, res.text
    # TEST-HOSTS.md P4: a background process still holding the output does not hang exec.
    res = launcher.run("exec", spec, "cd /tmp && sleep 10 &")
    assert res.rc == 0 and res.seconds < 5, res.text


def test_submit_runs_a_driver_on_the_head(launcher: Any, tmp_path: Path) -> None:
    launcher.ensure_up()
    script = tmp_path / "driver.py"
    script.write_text(
        "import socket, sys, time\n"
        "import rayops as ray\n"
        "ray.init()\n"
        "alive = [n for n in ray.nodes() if n['Alive']]\n"
        "print('NODES', len(alive))\n"
        "@ray.remote(scheduling_strategy='SPREAD')\n"
        "def where():\n"
        "    time.sleep(0.2)\n"
        "    return socket.gethostname()\n"
        "print('HOSTS', ','.join(sorted(set(ray.get([where.remote() for _ in range(30)])))))\n"
        "print('ARGS', sys.argv[1:])\n"
        "sys.exit(int(sys.argv[1]))\n"
    )
    spec = str(launcher.spec())
    res = launcher.run("submit", spec, str(script), "--", "5", "x y")
    assert res.rc == 5, res.text
    assert "NODES 3" in res.out
    assert "ARGS ['5', 'x y']" in res.out
    hosts = res.out.split("HOSTS ", 1)[1].split()[0].split(",")
    assert hosts == ["h1", "h2", "h3"]  # SPREAD tasks landed on every host
    # It went through the head's Jobs API: the job is there, FAILED with the script's code.
    sid = res.err.split("rayops submit: job ", 1)[1].split()[0]
    with _dashboard(launcher) as env:
        status = _job_cli(launcher, env, "status", sid)
        assert status.returncode == 0, status.stderr
        assert f"Status for job '{sid}': FAILED" in status.stdout
        assert "exit code 5" in status.stdout
        jobs = _job_cli(launcher, env, "list")
        assert f"'submission_id': '{sid}'" in jobs.stdout
    # A script that succeeds: exit 0; timed against what submit did before (upload + exec).
    ok = tmp_path / "ok.py"
    ok.write_text("import rayops as ray\nray.init()\nprint('OK', ray.get(ray.put(7)))\n")
    res = launcher.run("submit", spec, str(ok))
    assert res.rc == 0 and "OK 7" in res.out, res.text
    t0 = time.monotonic()
    assert launcher.run("rsync-up", spec, str(ok), "ok.py").rc == 0
    old = launcher.run("exec", spec, "python -u ok.py")
    assert old.rc == 0 and "OK 7" in old.out, old.text
    launcher.figures["submit_s"] = round(res.seconds, 2)
    launcher.figures["upload_and_exec_s"] = round(time.monotonic() - t0, 2)


@contextlib.contextmanager
def _dashboard(launcher: Any) -> Iterator[dict[str, str]]:
    """`rayops dashboard CONFIG --port 0` running; yields the environment it says to use."""
    proc = subprocess.Popen(
        [sys.executable, "-m", launcher.module, "dashboard", str(launcher.spec()), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=launcher.env,
        cwd=launcher.base,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        env = dict(launcher.env)
        for line in proc.stdout:
            if line.strip().startswith("export "):
                for pair in line.split()[1:]:
                    name, _, value = pair.partition("=")
                    env[name] = value
                break
        assert "RAYOPS_API_SERVER_ADDRESS" in env, proc.stderr.read() if proc.stderr else ""
        yield env
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def _job_cli(launcher: Any, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rayops.cli.main", "job", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_submit_no_wait_then_ctrl_c_stops_the_job(launcher: Any, tmp_path: Path) -> None:
    launcher.ensure_up()
    spec = str(launcher.spec())
    script = tmp_path / "slow.py"
    script.write_text("import time\nprint('STARTED', flush=True)\ntime.sleep(600)\n")
    res = launcher.run("submit", spec, "--no-wait", str(script))
    assert res.rc == 0 and res.out == "", res.text
    detached = res.err.split("rayops submit: job ", 1)[1].split()[0]
    res = launcher.run("submit", spec, "--tmux", str(script))
    assert res.rc == 1 and "--tmux" in res.err and "not supported" in res.err, res.text
    # Ctrl-C while following: the job is stopped, as ray submit's session ends the script.
    proc = subprocess.Popen(
        [sys.executable, "-m", launcher.module, "submit", spec, str(script)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=launcher.env,
        cwd=launcher.base,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "STARTED"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    sid = err.split("rayops submit: job ", 1)[1].split()[0]
    assert f"stopping job {sid}" in err
    with _dashboard(launcher) as env:
        assert f"'{sid}': STOPPED" in _job_cli(launcher, env, "status", sid).stdout
        running = _job_cli(launcher, env, "status", detached)
        assert f"'{detached}': RUNNING" in running.stdout, running.stdout + running.stderr
        assert _job_cli(launcher, env, "stop", detached).returncode == 0


def test_rsync_and_addresses(launcher: Any, tmp_path: Path) -> None:
    launcher.ensure_up()
    spec = str(launcher.spec())
    res = launcher.run("get-head-ip", spec)
    assert res.rc == 0 and res.out.split() == [launcher.ips["h1"]]
    res = launcher.run("get-worker-ips", spec)
    assert res.out.split() == [launcher.ips["h2"], launcher.ips["h3"]]
    src = tmp_path / "up.txt"
    src.write_text("payload\n")
    assert launcher.run("rsync-up", spec, str(src), "~/synced.txt").rc == 0
    check = launcher.net.ssh("h1", "cat ~/synced.txt")
    assert check.stdout == "payload\n"
    assert not (launcher.net.hosts["h2"].home / "synced.txt").exists()
    back = tmp_path / "down.txt"
    assert launcher.run("rsync-down", spec, "~/synced.txt", str(back)).rc == 0
    assert back.read_text() == "payload\n"
    # A directory: its contents (trailing slash), modes kept, unchanged files skipped.
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "run.sh").write_text("echo hi\n")
    (tree / "sub" / "run.sh").chmod(0o750)
    (tree / "a.txt").write_text("a\n")
    res = launcher.run("rsync-up", spec, f"{tree}/", "~/tree", "-A")
    assert res.rc == 0 and res.out.count("2 file(s) sent") == 3, res.text
    check = launcher.net.ssh("h3", "stat -c %a ~/tree/sub/run.sh && cat ~/tree/a.txt")
    assert check.stdout.split() == ["750", "a"], check.stdout
    (tree / "a.txt").write_text("changed\n")
    res = launcher.run("rsync-up", spec, f"{tree}/", "~/tree")
    assert res.rc == 0 and "1 file(s) sent (8 bytes), 1 unchanged" in res.out, res.text
    down = tmp_path / "back"
    assert launcher.run("rsync-down", spec, "~/tree", str(down)).rc == 0
    assert (down / "tree" / "a.txt").read_text() == "changed\n"
    assert (down / "tree" / "sub" / "run.sh").stat().st_mode & 0o777 == 0o750


def test_changed_setup_command_reruns_only_setup(launcher: Any) -> None:
    launcher.ensure_up()
    pids = {n: launcher.raylet_pid(n) for n in launcher.net.hosts}
    spec = launcher.spec(setup_commands=["echo changed setup on $(hostname)"])
    asked = launcher.run("up", str(spec))  # no -y, and stdin is not a terminal
    assert asked.rc == 1 and "pass -y to proceed" in asked.err, asked.text
    res = launcher.up(spec)
    assert res.rc == 0, res.text
    plan = [ln for ln in res.out.split("Summary:")[0].splitlines() if ln.startswith("  10.")]
    assert len(plan) == 3 and all(ln.endswith("setup (setup commands changed)") for ln in plan)
    assert res.out.split("Summary:")[1].count("changed    setup\n") == 3
    assert {n: launcher.raylet_pid(n) for n in launcher.net.hosts} == pids
    launcher.ensure_up()  # back to the default spec: setup runs once more, nothing else


def test_attach_opens_a_shell_on_the_head(launcher: Any) -> None:
    import os
    import pty
    import select
    import sys
    import time

    launcher.ensure_up()
    pid, fd = pty.fork()
    if pid == 0:  # the child: `rayops attach` on a terminal
        os.chdir(launcher.base)
        os.execvpe(sys.executable, [sys.executable, "-m", launcher.module, "attach",
                                    str(launcher.spec())], launcher.env)  # fmt: skip
    os.write(fd, b'echo "ATTACHED-$(hostname)-$RAYOPS_ADDRESS"; exit 0\n')
    seen = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    status = _reap(pid, deadline=time.monotonic() + 10)
    os.close(fd)
    assert f"ATTACHED-h1-{launcher.ips['h1']}:6379".encode() in seen, seen
    assert os.waitstatus_to_exitcode(status) == 0


def _reap(pid: int, deadline: float) -> int:
    """The child's wait status; killed (and the test failed) if it outlives the deadline."""
    import os
    import signal
    import time

    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("`rayops attach` did not exit after the remote shell did")


def test_restart_only_restarts_the_daemons(launcher: Any) -> None:
    launcher.ensure_up()
    pids = {n: launcher.raylet_pid(n) for n in launcher.net.hosts}
    res = launcher.up(None, "--restart-only")
    assert res.rc == 0, res.text
    assert res.out.count("start (restart (--restart-only))") == 3
    new = {n: launcher.raylet_pid(n) for n in launcher.net.hosts}
    assert all(new[n] and new[n] != pids[n] for n in pids), (pids, new)


def test_failing_setup_command_is_reported_and_retried(launcher: Any) -> None:
    launcher.ensure_up()
    failing = 'if [ "$(hostname)" = h2 ]; then echo boom-on-h2; exit 3; fi'
    spec = launcher.spec("failing.yaml", setup_commands=["echo ok", failing])
    res = launcher.up(spec)
    h2 = launcher.ips["h2"]
    assert res.rc == 1, res.text
    assert "Summary: 2 of 3 host(s) up" in res.out
    assert f"{h2}  worker  FAILED     setup command 2 of 2 exited with code 3" in res.out
    detail = res.out.split(f"{h2} (worker) failed in step setup:")[1]
    assert f"command: {failing}" in detail and "| boom-on-h2" in detail
    status = launcher.cluster_status()
    row = next(h for h in status["hosts"] if h["host"] == h2)
    assert row["provisioned"] == "failed" and "exited with code 3" in row["error"]
    # Fixed spec: only h2's setup is retried.
    res = launcher.up()
    assert res.rc == 0, res.text
    assert "retry; failed last time: setup command 2 of 2 exited with code 3" in res.out


def test_unreachable_worker_is_reported_and_added_back(launcher: Any) -> None:
    launcher.ensure_up()
    head_pid = launcher.raylet_pid("h1")
    h3 = launcher.ips["h3"]
    launcher.net.crash("h3")
    res = launcher.up()
    assert res.rc == 1, res.text
    assert f"{h3}  worker  FAILED     connection refused by {h3}:22" in res.out
    assert "Summary: 2 of 3 host(s) up" in res.out
    assert launcher.raylet_pid("h1") == head_pid
    launcher.net.boot("h3")
    res = launcher.up()
    assert res.rc == 0, res.text
    assert f"{h3}  worker  start (not running)" in res.out
    assert launcher.raylet_pid("h1") == head_pid
    alive = {n["node_ip"] for n in launcher.cluster_status()["nodes"] if n["state"] == "ALIVE"}
    assert h3 in alive


def test_changed_host_key_is_refused(launcher: Any) -> None:
    launcher.ensure_up()
    h2 = launcher.ips["h2"]
    launcher.net.crash("h2")
    launcher.net.new_host_key(launcher.net.hosts["h2"])
    launcher.net.boot("h2")
    res = launcher.up()
    assert res.rc == 1, res.text
    assert f"{h2}  worker  FAILED     host key of {h2} changed" in res.out
    launcher.net.write_known_hosts()  # the operator checked the new key and recorded it
    res = launcher.up()
    assert res.rc == 0, res.text


def test_wrong_key_names_the_key_file(launcher: Any) -> None:
    launcher.ensure_up()
    spec = launcher.spec("wrongkey.yaml", auth={"ssh_private_key": str(launcher.net.wrong_key)})
    res = launcher.up(spec)
    assert res.rc == 1, res.text
    h1 = launcher.ips["h1"]
    assert (
        f"authentication rejected by {h1} for user root with key {launcher.net.wrong_key}"
        in res.out
    )
    assert f"The head {h1} failed: nothing will be changed." in res.out


def test_accept_new_adds_unknown_host_keys(launcher: Any, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    strict = launcher.spec("strict.yaml", auth={"known_hosts_file": str(known)})
    res = launcher.up(strict, "--dry")
    assert res.rc == 1 and "is not in" in res.out and "accept-new" in res.out, res.text
    relaxed = launcher.spec(
        "acceptnew.yaml", auth={"known_hosts_file": str(known), "host_key_policy": "accept-new"}
    )
    res = launcher.up(relaxed, "--dry")
    assert res.rc == 0, res.text
    assert len(known.read_text().splitlines()) == 3
    # accept-new never accepts a changed key: h2's line now holds h1's key.
    lines = known.read_text().splitlines()
    h1_key = next(ln for ln in lines if ln.startswith(launcher.ips["h1"] + " ")).split(" ", 1)[1]
    forged = [f"{launcher.ips['h2']} {h1_key}" if ln.startswith(launcher.ips["h2"] + " ") else ln
              for ln in lines]  # fmt: skip
    known.write_text("\n".join(forged) + "\n")
    res = launcher.up(relaxed, "--dry")
    h2 = launcher.ips["h2"]
    assert f"{h2}  worker  FAILED: host key of {h2} changed" in res.out, res.text
    assert known.read_text() == "\n".join(forged) + "\n"


def test_pip_runtime_env_installs_from_the_wheelhouse_with_no_index(
    launcher: Any, tmp_path: Path
) -> None:
    """Issue 11: hosts have no package index (no route out of their namespaces); a `pip`
    runtime_env resolves from the wheelhouse the spec names, on a worker host, and a package
    not there fails at get() naming what was tried."""
    from rayops.testing.wheels import write_wheel

    # The hosts share this machine's filesystem, so one directory is every host's wheelhouse
    # (as an NFS-mounted one would be).
    wheels = launcher.base / "renv-wheels"
    write_wheel(str(wheels), "rayops-hosttiny", "1.0")
    rayops_section = {**launcher.spec_data()["rayops"], "runtime_env_find_links": [str(wheels)]}
    spec = launcher.spec("renv.yaml", rayops=rayops_section)
    res = launcher.up(spec)
    assert res.rc == 0, res.text
    script = tmp_path / "renv_driver.py"
    script.write_text(
        "import socket\n"
        "import rayops as ray\n"
        "from rayops.exceptions import RuntimeEnvSetupError\n"
        "from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy\n"
        "ray.init()\n"
        "head = ray.get_runtime_context().get_node_id()\n"
        "worker = next(n['NodeID'] for n in ray.nodes() if n['Alive'] and n['NodeID'] != head)\n"
        "on_worker = NodeAffinitySchedulingStrategy(worker, soft=False)\n"
        "@ray.remote(scheduling_strategy=on_worker)\n"
        "def tiny():\n"
        "    import rayops_hosttiny\n"
        "    return rayops_hosttiny.__version__, socket.gethostname(), rayops_hosttiny.__file__\n"
        "env = {'pip': ['rayops-hosttiny==1.0']}\n"
        "print('TINY', *ray.get(tiny.options(runtime_env=env).remote(), timeout=180))\n"
        "missing = {'pip': ['rayops-hostmissing==1.0']}\n"
        "try:\n"
        "    ray.get(tiny.options(runtime_env=missing).remote(), timeout=180)\n"
        "except RuntimeEnvSetupError as err:\n"
        "    print('FAILED', str(err).replace(chr(10), ' | '))\n"
    )
    res = launcher.run("submit", str(spec), str(script), timeout=400)
    assert res.rc == 0, res.text
    version, host, path = res.out.split("TINY ", 1)[1].split()[:3]
    assert version == "1.0" and host in ("h2", "h3"), res.out
    # Installed into the env's virtualenv on that host, not found on the node's own path.
    assert f"/hosts/{host}/" in path and "/venvs/pip-" in path, path
    failed = res.out.split("FAILED ", 1)[1].splitlines()[0]
    assert "rayops-hostmissing" in failed, failed
    assert f"find-links {wheels}" in failed and "no index" in failed, failed


def test_a_partitioned_host_fails_in_bounded_time(launcher: Any) -> None:
    # Late in the file: a partition this long gets h3's node marked dead by the GCS.
    launcher.ensure_up()
    spec = str(launcher.spec())
    h3 = launcher.ips["h3"]
    launcher.net.link("h3", up=False)
    try:
        res = launcher.run("exec", spec, "hostname", "--node", "all", timeout=60)
    finally:
        launcher.net.link("h3", up=True)
    assert res.rc == 255, res.text
    assert f"[{h3}] connection to {h3}:22 timed out after 3 s" in res.out, res.text
    assert f"[{launcher.ips['h1']}] h1" in res.out and f"[{launcher.ips['h2']}] h2" in res.out
    assert res.seconds < 10, res.seconds
    # A connection that is already open notices the partition through its keepalives
    # (every 5 s; unanswered for 15 s -> closed) instead of waiting forever.
    proc = subprocess.Popen(
        [sys.executable, "-m", launcher.module, "exec", spec, "sleep 25", "--node", h3],
        env=launcher.env, cwd=launcher.base, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: any("sleep 25" in c for c in launcher.net.processes("h3")),
                   "sleep 25 running on h3")  # fmt: skip
        t0 = time.monotonic()
        launcher.net.link("h3", up=False)
        out, _ = proc.communicate(timeout=45)
        took = time.monotonic() - t0
    finally:
        launcher.net.link("h3", up=True)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 255 and f"lost the connection to {h3}:22" in out, out
    assert took < 24, took


def test_down_leaves_no_rayops_process_on_any_host(launcher: Any) -> None:
    launcher.ensure_up()
    spec = str(launcher.spec())
    res = launcher.run("down", spec, "-y", "--workers-only")
    assert res.rc == 0, res.text
    for name in ("h2", "h3"):
        wait_until(lambda n=name: not launcher.rayops_processes(n), f"rayops left on {name}")
    assert launcher.rayops_processes("h1")
    res = launcher.run("down", spec, "-y")
    launcher.figures["down_s"] = round(res.seconds, 1)
    assert res.rc == 0, res.text
    assert res.seconds < TARGETS["down_s"]
    for name in launcher.net.hosts:
        wait_until(lambda n=name: not launcher.rayops_processes(n), f"rayops left on {name}")
    status = launcher.cluster_status()
    assert [h["provisioned"] for h in status["hosts"]] == ["stopped"] * 3
    assert all(h["daemons"] == [] for h in status["hosts"])
    assert status["nodes"] == []
