"""Starting and stopping one node's daemons (GCS on the head, raylet everywhere).

Used by ``rayops.init()`` (an embedded one-machine cluster whose daemons exit when
the driver does) and by ``rayops start`` (detached daemons that outlive the CLI).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from rayops import ids
from rayops.node import session as sess
from rayops.raylet.resources import check_gpu_count, visible_device_ids
from rayops.rpc.tls import TlsFiles

STARTUP_TIMEOUT_S = 30.0
DEFAULT_DASHBOARD_PORT = 8265  # Ray's
DASHBOARD_PORT_RETRIES = 50  # Ray tries this many ports after the default one


def pick_dashboard_port(host: str, port: int | None) -> int:
    """The API server's port, as Ray picks it: a port given explicitly must be free (else
    ValueError naming it); the default 8265 moves on to the next free one of the 50 after it."""
    if port is not None:
        if port == 0:
            return free_port(host)
        if not _can_bind(host, port):
            raise ValueError(
                f"the dashboard port {host}:{port} is already in use; pick another with "
                "`rayops start --dashboard-port ...` or `init(dashboard_port=...)`"
            )
        return port
    for candidate in range(
        DEFAULT_DASHBOARD_PORT, DEFAULT_DASHBOARD_PORT + DASHBOARD_PORT_RETRIES + 1
    ):
        if _can_bind(host, candidate):
            return candidate
    raise ValueError(
        f"ports {DEFAULT_DASHBOARD_PORT}..{DEFAULT_DASHBOARD_PORT + DASHBOARD_PORT_RETRIES} on "
        f"{host} are all in use; pick a dashboard port with --dashboard-port"
    )


def _can_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


class NodeStartError(RuntimeError):
    """A daemon failed to start; the message carries the tail of its log."""


@dataclass
class NodeOptions:
    node_ip: str = "127.0.0.1"
    head: bool = True
    gcs_address: str | None = None  # for non-head nodes
    gcs_port: int = 0  # head: 0 picks a free port
    num_cpus: float | None = None
    num_gpus: float | None = None
    resources: dict[str, float] = field(default_factory=dict)
    object_store_memory: int | None = None
    temp_dir: str = sess.DEFAULT_TEMP_DIR
    labels: dict[str, str] = field(default_factory=dict)
    token: str | None = None  # joining nodes: the cluster token
    detached: bool = False  # outlive the calling process (``rayops start``)
    metrics_export_port: int = 0  # the node agent's /metrics port; 0: the raylet picks one
    include_dashboard: bool = True  # the head's API server (rayops.dashboard)
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int | None = None  # None: Ray's 8265, or the next free of 50 after it
    wait_dashboard: bool = True  # wait until it listens (``rayops start``); init() does not
    gcs_storage: str | None = None  # head: the GCS's store (None: the session directory's)
    # head: credentials of a Redis store (handed to the GCS in its environment, not argv)
    redis_password: str | None = None
    redis_username: str | None = None
    # TLS on every port (rpc/tls.py); None: as the environment says (off when it says nothing)
    tls: TlsFiles | None = None
    autoscaling_config: str | None = None  # head: run the autoscaler with this cluster spec
    # init(_system_config=...) as RAY_<key> variables for the raylet (spilling settings).
    system_config_env: dict[str, str] = field(default_factory=dict)


@dataclass
class StartedNode:
    record: sess.NodeRecord
    token: str
    procs: dict[str, subprocess.Popen[bytes]]
    watch_fd: int | None  # write end we keep open; closing it stops the daemons


def _gcs_env(opts: NodeOptions, child_env: dict[str, str] | None) -> dict[str, str] | None:
    """The GCS's environment: the daemons' plus the Redis credentials, if any (kept out of
    the command line, which every local user can read)."""
    extra = {
        name: value
        for name, value in (
            ("RAYOPS_REDIS_PASSWORD", opts.redis_password),
            ("RAYOPS_REDIS_USERNAME", opts.redis_username),
        )
        if value is not None
    }
    if not extra:
        return child_env
    return {**(child_env if child_env is not None else os.environ), **extra}


def default_object_store_memory() -> int:
    """30% of RAM, capped by the free space of /dev/shm."""
    import psutil

    want = int(psutil.virtual_memory().total * 0.3)
    try:
        st = os.statvfs(sess.SHM_ROOT)
        want = min(want, int(st.f_bavail * st.f_frsize * 0.95))
    except OSError:
        pass
    return want


def node_resources(
    opts: NodeOptions, object_store_memory: int, accelerator_type: str | None = None
) -> dict[str, float]:
    """The node's resource totals; ``accelerator_type`` (from NVML) is advertised with GPUs."""
    import psutil

    res: dict[str, float] = {
        "CPU": float(opts.num_cpus if opts.num_cpus is not None else (os.cpu_count() or 1)),
    }
    gpus = opts.num_gpus if opts.num_gpus is not None else _detect_gpus()
    if gpus:
        res["GPU"] = float(gpus)
        if accelerator_type:
            # Ray's form: the type as a resource of 1 that accelerator_type= asks a sliver of.
            res[f"accelerator_type:{accelerator_type}"] = 1.0
    res["memory"] = float(int(psutil.virtual_memory().available * 0.7))
    res["object_store_memory"] = float(object_store_memory)
    res[f"node:{opts.node_ip}"] = 1.0
    if opts.head:
        res["node:__internal_head__"] = 1.0
    for k, v in opts.resources.items():
        res[k] = float(v)
    return res


def _detect_gpus() -> int:
    visible = visible_device_ids(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if visible is not None:
        return len(visible)
    try:
        return len([d for d in os.listdir("/proc/driver/nvidia/gpus")])
    except OSError:
        return 0


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def start_node(opts: NodeOptions) -> StartedNode:
    """Start the daemons of one node and wait until the raylet serves."""
    from rayops.core_worker.task_events import TaskEventSettings
    from rayops.envs.install_settings import InstallSettings
    from rayops.gcs.package_refs import PackageStoreSettings
    from rayops.node.log_rotation import LogRotationConfig
    from rayops.objectstore.store_settings import StoreSettings
    from rayops.raylet.memory_monitor import MemoryConfig
    from rayops.raylet.spilling import SpillSettings
    from rayops.rpc.auth import generate_token, write_token_file
    from rayops.rpc.framed_settings import FramedSettings

    # Fail here, naming the variable, rather than in every daemon it would reach.
    LogRotationConfig.from_env()
    FramedSettings.from_env()
    InstallSettings.from_env()
    PackageStoreSettings.from_env()
    TaskEventSettings.from_env()
    MemoryConfig.from_env()
    from rayops.gcs.persistence import resolve_storage
    from rayops.gcs.reconnect import reconnect_timeout_s

    reconnect_timeout_s(os.environ)
    resolve_storage(opts.gcs_storage, None, os.environ)  # a bad store or Redis address: here
    SpillSettings.from_env({**os.environ, **opts.system_config_env})
    StoreSettings.from_env()
    # The node's own device list: GPU i of the raylet is device gpu_ids[i] (as in Ray).
    gpu_ids = visible_device_ids(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if opts.num_gpus is not None:
        check_gpu_count(opts.num_gpus, gpu_ids)

    session_dir = sess.new_session_dir(opts.temp_dir)
    node_id = ids.random_id(28).hex()
    token = opts.token or generate_token()
    token_file = os.path.join(session_dir, sess.TOKEN_FILE)
    write_token_file(token_file, token)
    # TLS: the daemons get the files through their environment, clients through tls.json.
    tls_files = opts.tls or TlsFiles.from_env()
    child_env: dict[str, str] | None = None
    if tls_files is not None:
        tls_files.load()  # checked here: one message naming the file, and no daemon runs
        child_env = {**os.environ, **tls_files.to_env()}
        tls_files.save(session_dir)
    store_mem = opts.object_store_memory or default_object_store_memory()
    shm_dir = sess.shm_dir_for(session_dir, node_id)
    logs = os.path.join(session_dir, "logs")

    watch_r, watch_w = (None, None) if opts.detached else os.pipe()
    dashboard_url = ""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ready: dict[str, int] = {}
    try:
        if opts.head:
            gcs_port = opts.gcs_port or free_port(opts.node_ip)
            gcs_address = f"{opts.node_ip}:{gcs_port}"
            r, w = os.pipe()
            ready["gcs"] = r
            # Under its supervisor (node/supervisor.py): a GCS that dies is started again on
            # the same port, and reads its tables back from the session directory's store.
            cmd = [
                sys.executable,
                "-m",
                "rayops.node.supervisor",
                "--",
                sys.executable,
                "-m",
                "rayops.gcs",
                "--session-dir",
                session_dir,
                "--host",
                opts.node_ip,
                "--port",
                str(gcs_port),
                "--token-file",
                token_file,
                "--log-file",
                os.path.join(logs, "gcs.log"),
                "--ready-fd",
                str(w),
            ]
            if opts.gcs_storage is not None:
                cmd += ["--gcs-storage", opts.gcs_storage]
            procs["gcs"] = _spawn(
                cmd,
                [w],
                watch_r,
                os.path.join(logs, "gcs.out"),
                opts.detached,
                _gcs_env(opts, child_env),
            )
            os.close(w)
            if opts.include_dashboard:
                dashboard_port = pick_dashboard_port(opts.dashboard_host, opts.dashboard_port)
                dashboard_url = f"{opts.dashboard_host}:{dashboard_port}"
                procs["dashboard"] = _spawn_dashboard(
                    opts,
                    dashboard_port,
                    gcs_address,
                    token_file,
                    session_dir,
                    watch_r,
                    ready,
                    child_env,
                )
        else:
            if not opts.gcs_address:
                raise ValueError("a non-head node needs the GCS address (--address HEAD:PORT)")
            gcs_address = opts.gcs_address
        r, w = os.pipe()
        ready["raylet"] = r
        from rayops.node.accelerators import detect_accelerator_type

        # NVML only on a node with GPUs: a CPU node has no accelerator type anyway.
        has_gpus = opts.num_gpus if opts.num_gpus is not None else _detect_gpus()
        accel = detect_accelerator_type() if has_gpus else None
        resources = node_resources(opts, store_mem, accel)
        cmd = [
            sys.executable,
            "-m",
            "rayops.raylet",
            "--node-id",
            node_id,
            "--node-ip",
            opts.node_ip,
            "--gcs-address",
            gcs_address,
            "--token-file",
            token_file,
            "--session-dir",
            session_dir,
            "--shm-dir",
            shm_dir,
            "--spill-dir",
            os.path.join(session_dir, "spill"),
            "--resources",
            json.dumps(resources),
            "--object-store-memory",
            str(store_mem),
            "--labels",
            json.dumps(opts.labels),
            "--log-file",
            os.path.join(logs, "raylet.log"),
            "--ready-fd",
            str(w),
        ]
        if opts.head:
            cmd.append("--head")
        if opts.system_config_env:
            cmd += ["--system-config-env", json.dumps(opts.system_config_env)]
        if gpu_ids is not None:
            cmd += ["--gpu-ids", ",".join(gpu_ids)]
        if opts.metrics_export_port:
            cmd += ["--metrics-export-port", str(opts.metrics_export_port)]
        procs["raylet"] = _spawn(
            cmd, [w], watch_r, os.path.join(logs, "raylet.out"), opts.detached, child_env
        )
        os.close(w)
        if opts.head and opts.autoscaling_config:
            procs["autoscaler"] = _spawn_autoscaler(
                opts.autoscaling_config,
                gcs_address,
                token_file,
                logs,
                watch_r,
                opts.detached,
                child_env,
            )
        answers = _wait_ready(ready, procs, logs)
    except BaseException:
        for p in procs.values():
            _kill(p.pid, signal.SIGKILL)
        for p in procs.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        _remove_tree(shm_dir)
        if watch_w is not None:
            os.close(watch_w)
        raise
    finally:
        if watch_r is not None:
            os.close(watch_r)
        for fd in ready.values():
            try:
                os.close(fd)
            except OSError:
                pass
    record = sess.NodeRecord(
        session_dir=session_dir,
        temp_dir=opts.temp_dir,
        node_id=node_id,
        node_ip=opts.node_ip,
        gcs_address=gcs_address,
        raylet_port=int(answers["raylet"]),
        shm_dir=shm_dir,
        is_head=opts.head,
        dashboard_url=dashboard_url,
        pids={name: p.pid for name, p in procs.items()},
        started_by_pid=os.getpid(),
        detached=opts.detached,
    )
    record.save()
    sess.link_latest(opts.temp_dir, session_dir)
    return StartedNode(record, token, procs, watch_w)


def _spawn_dashboard(
    opts: NodeOptions,
    port: int,
    gcs_address: str,
    token_file: str,
    session_dir: str,
    watch_r: int | None,
    ready: dict[str, int],
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    logs = os.path.join(session_dir, "logs")
    cmd = [
        sys.executable,
        "-m",
        "rayops.dashboard",
        "--host",
        opts.dashboard_host,
        "--port",
        str(port),
        "--gcs-address",
        gcs_address,
        "--token-file",
        token_file,
        "--session-dir",
        session_dir,
        "--node-ip",
        opts.node_ip,
        "--temp-dir",
        opts.temp_dir,
        "--log-file",
        os.path.join(logs, "dashboard.log"),
    ]
    fds: list[int] = []
    if opts.wait_dashboard:
        r, w = os.pipe()
        ready["dashboard"] = r
        cmd += ["--ready-fd", str(w)]
        fds.append(w)
    try:
        return _spawn(cmd, fds, watch_r, os.path.join(logs, "dashboard.out"), opts.detached, env)
    finally:
        for fd in fds:
            os.close(fd)


def _spawn_autoscaler(
    config: str,
    gcs_address: str,
    token_file: str,
    logs: str,
    watch_r: int | None,
    detached: bool,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """The autoscaler daemon (``rayops.autoscaler``), logging to ``monitor.log`` as Ray's
    monitor does; it retries the GCS until it answers, so nothing waits for it here."""
    cmd = [
        sys.executable, "-m", "rayops.autoscaler", "--gcs-address", gcs_address,
        "--token-file", token_file, "--config", config,
        "--log-file", os.path.join(logs, "monitor.log"),
    ]  # fmt: skip
    return _spawn(cmd, [], watch_r, os.path.join(logs, "monitor.out"), detached, env)


def _spawn(
    cmd: list[str],
    fds: list[int],
    watch_r: int | None,
    out_path: str,
    detached: bool,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    pass_fds = list(fds)
    if watch_r is not None:
        cmd = [*cmd, "--watch-fd", str(watch_r)]
        pass_fds.append(watch_r)
    with open(out_path, "ab") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
            start_new_session=detached,
            close_fds=True,
            env=env,
        )


def _wait_ready(
    ready: dict[str, int], procs: dict[str, subprocess.Popen[bytes]], logs: str
) -> dict[str, str]:
    answers: dict[str, str] = {}
    bufs: dict[str, bytes] = {name: b"" for name in ready}
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    fd_names = {fd: name for name, fd in ready.items()}
    while len(answers) < len(ready):
        left = deadline - time.monotonic()
        if left <= 0:
            missing = sorted(set(ready) - set(answers))
            raise NodeStartError(
                f"{', '.join(missing)} did not start within {STARTUP_TIMEOUT_S:.0f} s; "
                + _log_tails(missing, logs)
            )
        waiting = [fd for fd, name in fd_names.items() if name not in answers]
        readable, _, _ = select.select(waiting, [], [], min(left, 0.5))
        for fd in readable:
            name = fd_names[fd]
            chunk = os.read(fd, 256)
            if not chunk:
                if bufs[name].strip():
                    answers[name] = bufs[name].decode().strip()
                    continue
                code = procs[name].poll()
                raise NodeStartError(
                    f"the {name} process exited during start-up"
                    + (f" (exit code {code})" if code is not None else "")
                    + "; "
                    + _log_tails([name], logs)
                )
            bufs[name] += chunk
            if b"\n" in bufs[name]:
                answers[name] = bufs[name].split(b"\n", 1)[0].decode().strip()
    return answers


def _log_tails(names: list[str], logs: str) -> str:
    parts = []
    for name in names:
        for suffix in (".log", ".out"):
            path = os.path.join(logs, name + suffix)
            try:
                with open(path, errors="replace") as f:
                    tail = f.read()[-2000:].strip()
            except OSError:
                continue
            if tail:
                parts.append(f"last lines of {path}:\n{tail}")
    return "\n".join(parts) or f"no log output (see {logs})"


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def pid_belongs_to(pid: int, session_dir: str) -> bool:
    """Is ``pid`` still one of this session's daemons (and not a recycled pid)?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return "rayops" in cmdline and (
        session_dir in cmdline or os.path.basename(session_dir) in cmdline
    )


def stop_node(record: sess.NodeRecord, timeout: float = 10.0) -> list[int]:
    """SIGTERM the node's daemons, raylet first, SIGKILL what is left after ``timeout``.

    The raylet is given the first part of ``timeout`` to exit before the GCS is signalled,
    so it can still unregister from a live GCS (signalled together, the raylet spent its
    2 s unregister timeout talking to a GCS that was going away). Only pids whose command
    line names this session are signalled, so a recycled pid of an unrelated process is
    never hit. Returns the pids that were running.
    """
    order = [n for n in ("raylet", "gcs") if n in record.pids] + [
        n for n in record.pids if n not in ("raylet", "gcs")
    ]
    alive = [record.pids[n] for n in order if pid_belongs_to(record.pids[n], record.session_dir)]
    deadline = time.monotonic() + timeout
    raylet = record.pids.get("raylet")
    scaler = record.pids.get("autoscaler")  # first: it must not launch while the head goes
    if scaler in alive:
        _kill(scaler, signal.SIGTERM)
        _wait_gone([scaler], time.monotonic() + timeout / 4)
    if raylet in alive:
        _kill(raylet, signal.SIGTERM)
        _wait_gone([raylet], time.monotonic() + timeout / 2)
    for pid in alive:
        if pid != raylet:
            _kill(pid, signal.SIGTERM)
    _wait_gone(alive, deadline)
    for pid in alive:
        if _running(pid):
            _kill(pid, signal.SIGKILL)
    _remove_tree(record.shm_dir)
    return alive


def _wait_gone(pids: list[int], deadline: float) -> None:
    while time.monotonic() < deadline and any(_running(p) for p in pids):
        time.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            return False
        return True
    except OSError:
        return False


def _remove_tree(path: str) -> None:
    """Remove a node's store directory (unmounting its huge-page tmpfs, if any)."""
    from rayops.objectstore._tmpfs import remove_store_dir

    remove_store_dir(path)


def wait_procs(procs: dict[str, Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for p in procs.values():
        left = max(0.0, deadline - time.monotonic())
        try:
            p.wait(timeout=left)
        except subprocess.TimeoutExpired:
            _kill(p.pid, signal.SIGKILL)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
