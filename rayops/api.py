"""The Ray Core API functions: init, shutdown, get, put, wait, cancel, introspection.

Owns the process's connection to a cluster: ``init()`` either starts an embedded
one-machine cluster (its daemons exit with this process) or joins a running one.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from rayops import exceptions as rex
from rayops.core_worker import state
from rayops.core_worker.core_worker import CoreWorker
from rayops.core_worker.object_ref import GeneratorWaitable, ObjectRef, ObjectRefGenerator
from rayops.core_worker.recovery import LineageSettings
from rayops.core_worker.task_events import TaskEventSettings
from rayops.envs import spec as runtime_env_spec
from rayops.node import node_args
from rayops.node import session as sess
from rayops.options import check_init_options
from rayops.protocol.bundle_resources import is_bundle_resource
from rayops.rpc import tls
from rayops.rpc.framed_settings import FramedSettings

logger = logging.getLogger(__name__)

_started: Any = None  # StartedNode of the embedded cluster, if we started one


class RayContext(dict[str, Any]):
    """What ``init()`` returns (Ray's RayContext): address info, usable as a dict."""

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__(info)
        self.address_info = info
        # Ray's form: "HOST:PORT" of the head's API server, None without one.
        self.dashboard_url: str | None = info.get("webui_url") or None

    def __enter__(self) -> RayContext:
        return self

    def __exit__(self, *exc: Any) -> None:
        shutdown()

    def disconnect(self) -> None:
        shutdown()


def is_initialized() -> bool:
    return state.current() is not None


def _system_config_env(kwargs: dict[str, Any]) -> dict[str, str]:
    """Ray's init(_system_config=...) (popped from kwargs): the spilling keys rayops honours,
    as RAY_<key> variables for the raylet; any other key raises naming it."""
    if "_system_config" not in kwargs:
        return {}
    from rayops.raylet.spilling import system_config_env

    return system_config_env(kwargs.pop("_system_config") or {}, "init(_system_config=...)")


def init(
    address: str | None = None,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    labels: dict[str, str] | None = None,
    namespace: str | None = None,
    ignore_reinit_error: bool = False,
    log_to_driver: bool = True,
    include_dashboard: bool | None = None,
    dashboard_host: str = "127.0.0.1",
    dashboard_port: int | None = None,
    runtime_env: dict[str, Any] | None = None,
    logging_level: int | str = logging.INFO,
    _temp_dir: str | None = None,
    _node_ip_address: str | None = None,
    _metrics_export_port: int | None = None,
    job_config: Any = None,
    **kwargs: Any,
) -> RayContext:
    """Start an embedded cluster (no address) or join one ("auto", "HOST:PORT")."""
    global _started
    system_config_env = _system_config_env(kwargs)
    if job_config is not None:
        namespace, runtime_env = _from_job_config(job_config, namespace, runtime_env)
    # Every keyword does what Ray's does or raises here, before anything starts (options.py).
    level = check_init_options(
        include_dashboard=include_dashboard,
        runtime_env=runtime_env,
        logging_level=logging_level,
        kwargs=kwargs,
        strings={
            "address": address,
            "namespace": namespace,
            "_temp_dir": _temp_dir,
            "_node_ip_address": _node_ip_address,
            "dashboard_host": dashboard_host,
        },
    )
    if dashboard_port is not None and not (
        isinstance(dashboard_port, int)
        and not isinstance(dashboard_port, bool)
        and 0 <= dashboard_port < 65536
    ):
        raise ValueError(
            f"init(dashboard_port=...) must be a port in 0..65535, got {dashboard_port!r}"
        )
    if runtime_env is None and job_config is None:
        runtime_env = _submitted_job_env()
    job_env = runtime_env_spec.validate(runtime_env, where="init(runtime_env=...)")
    cw = state.current()
    if cw is not None:
        if ignore_reinit_error:
            return _context(cw)
        raise RuntimeError(
            "Maybe you called rayops.init twice by accident? This error can be suppressed "
            "by passing ignore_reinit_error=True, or by calling rayops.shutdown() first."
        )
    if _metrics_export_port is not None and not (
        isinstance(_metrics_export_port, int) and 0 <= _metrics_export_port < 65536
    ):
        raise ValueError(
            f"init(_metrics_export_port=...) must be a port in 0..65535, got "
            f"{_metrics_export_port!r}"
        )
    # Checked before anything starts: one message naming the argument, and no daemon runs.
    num_cpus = node_args.check_quantity("init(num_cpus=...)", num_cpus)
    num_gpus = node_args.check_quantity("init(num_gpus=...)", num_gpus)
    node_resources = node_args.check_resources("init(resources=...)", resources)
    object_store_memory = node_args.check_object_store_memory(
        "init(object_store_memory=...)", object_store_memory
    )
    node_labels = node_args.check_labels("init(labels=...)", labels)
    # Checked before any daemon starts; a driver logs refusals off the user's terminal.
    framed_settings = FramedSettings.from_env().for_driver()
    task_event_settings = TaskEventSettings.from_env()
    lineage_settings = LineageSettings.from_env()
    if address is None:
        address = os.environ.get("RAYOPS_ADDRESS") or None
    temp_dir = _temp_dir or os.environ.get("RAYOPS_TEMP_DIR") or sess.DEFAULT_TEMP_DIR
    if address in (None, "local"):
        from rayops.node.processes import NodeOptions, start_node
        from rayops.node.reclaim import reclaim_dead_sessions

        reclaim_dead_sessions(temp_dir)
        tls.adopt_session(None)  # a new local cluster: TLS as this process's environment says
        node = start_node(
            NodeOptions(
                node_ip=_node_ip_address or "127.0.0.1",
                head=True,
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                resources=node_resources,
                object_store_memory=object_store_memory,
                temp_dir=temp_dir,
                labels=node_labels,
                metrics_export_port=_metrics_export_port or 0,
                include_dashboard=include_dashboard is not False,
                dashboard_host=dashboard_host,
                dashboard_port=dashboard_port,
                # Off init()'s critical path: the URL is known before the server listens.
                wait_dashboard=False,
                system_config_env=system_config_env,
            )
        )
        _started = node
        rec = node.record
        raylet = (rec.node_ip, rec.raylet_port)
        token = node.token
        node_ip = rec.node_ip
    else:
        if system_config_env:
            raise ValueError(
                "When connecting to an existing cluster, _system_config must not be provided: "
                "it is set when the node starts (RAY_<key> variables of rayops start)."
            )
        if _metrics_export_port is not None:
            raise ValueError(
                "When connecting to an existing cluster, _metrics_export_port must not be "
                "provided: it is set when the node starts (rayops start --metrics-export-port)."
            )
        if (
            num_cpus is not None
            or num_gpus is not None
            or resources
            or object_store_memory
            or labels is not None
        ):
            raise ValueError(
                "When connecting to an existing cluster, num_cpus, num_gpus, resources, "
                "object_store_memory and labels must not be provided: they are set when the "
                "node starts (rayops start --num-cpus ...)."
            )
        if include_dashboard or dashboard_port is not None:
            raise ValueError(
                "When connecting to an existing cluster, include_dashboard and dashboard_port "
                "must not be provided: the head's API server is set when the head starts "
                "(rayops start --head --dashboard-port ...)."
            )
        raylet, token, node_ip = _find_cluster(address, temp_dir, _node_ip_address)
    # Ray's logging_level sets its library logger's level in the driver.
    logging.getLogger("rayops").setLevel(level)
    if not namespace:
        import uuid

        # Ray's anonymous namespace; registered with the job so its workers see it too.
        namespace = str(uuid.uuid4())
    cw = CoreWorker(
        mode="driver",
        raylet_address=raylet,
        token=token.encode(),
        node_ip=node_ip,
        namespace=namespace,
        log_to_driver=log_to_driver,
        entrypoint=" ".join(sys.argv),
        framed_settings=framed_settings,
        task_event_settings=task_event_settings,
        lineage_settings=lineage_settings,
    )
    try:
        cw.start()
    except BaseException:
        _stop_started()
        raise
    state.set_core_worker(cw)
    atexit.register(shutdown)
    if job_env:
        _set_job_env(cw, job_env)
    if os.environ.get("RAYOPS_JOB_SUBMISSION_ID"):
        _record_submission(cw, os.environ["RAYOPS_JOB_SUBMISSION_ID"])
    return _context(cw)


def _record_submission(cw: CoreWorker, submission_id: str) -> None:
    """Say which submitted job this driver is the entrypoint of (its supervisor sets
    ``RAYOPS_JOB_SUBMISSION_ID``), so the Jobs list shows it once, as that submission, and
    not also as a driver started by hand (see rayops/dashboard/driver_jobs.py)."""
    from rayops.ids import job_id_hex
    from rayops.protocol.job_messages import DRIVER_SUBMISSION_PREFIX, JOB_NAMESPACE

    key = (DRIVER_SUBMISSION_PREFIX + job_id_hex(cw.job_id)).encode()
    try:
        cw.gcs().kv_put(key, submission_id.encode(), namespace=JOB_NAMESPACE)
    except Exception as err:  # the job still runs; only its listing is affected
        logging.getLogger(__name__).warning(
            "could not record submission %s of job %s: %s", submission_id, cw.job_id, err
        )


def _set_job_env(cw: CoreWorker, job_env: dict[str, Any]) -> None:
    """The job's runtime_env: packages uploaded now (a bad one fails init), and with
    ``eager_install`` (the default) the local node sets it up before the first task asks."""
    try:
        wire = cw.runtime_envs.set_job_env(job_env)
    except BaseException:
        shutdown()
        raise
    eager = (job_env.get("config") or {}).get("eager_install", True)
    if wire and eager and runtime_env_spec.package_uris(cw.runtime_envs.own):
        from rayops.protocol import raylet_messages as rm

        cw.loop.call_soon_threadsafe(cw.raylet.notify, rm.PrepareRuntimeEnv(wire))


def _submitted_job_env() -> dict[str, Any] | None:
    """The runtime_env of the submitted job this driver is the entrypoint of (its supervisor
    sets ``RAYOPS_JOB_RUNTIME_ENV``), used as the job's runtime_env as in Ray."""
    import json

    raw = os.environ.get("RAYOPS_JOB_RUNTIME_ENV")
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"RAYOPS_JOB_RUNTIME_ENV is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"RAYOPS_JOB_RUNTIME_ENV must be a JSON object, got {raw!r}")
    return value


def _from_job_config(
    job_config: Any, namespace: str | None, runtime_env: dict[str, Any] | None
) -> tuple[str | None, dict[str, Any] | None]:
    """(namespace, runtime_env) of ``init`` given a JobConfig: init's own arguments win, as in
    Ray; a setting rayops cannot honour raises, naming it."""
    from rayops.job_config import JobConfig

    if not isinstance(job_config, JobConfig):
        raise TypeError(
            "init(job_config=...) expects a rayops.job_config.JobConfig, got "
            f"{type(job_config).__name__}"
        )
    refused = job_config.not_honoured()
    if refused:
        raise NotImplementedError("init(job_config=...): not supported yet: " + "; ".join(refused))
    if namespace is None:
        namespace = job_config.ray_namespace
    if job_config.runtime_env:
        runtime_env = _job_and_init_env(job_config.runtime_env, runtime_env)
    return namespace, runtime_env


def _job_and_init_env(job: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any]:
    """JobConfig's runtime_env and init's together, as Ray 2.60 merges them: fields and
    env_vars keys are combined, and one set in both raises, naming it."""
    if not given:
        return dict(job)
    if not isinstance(given, dict):
        raise TypeError(f"init(runtime_env=...) must be a dict, got {given!r}")
    job_vars, given_vars = dict(job.get("env_vars") or {}), dict(given.get("env_vars") or {})
    both = sorted((set(job) & set(given)) - {"env_vars"})
    both += [f"env_vars[{k!r}]" for k in sorted(set(job_vars) & set(given_vars))]
    if both:
        raise ValueError(
            f"init(runtime_env=...) and init(job_config=...)'s runtime_env both set "
            f"{', '.join(both)}; set each in one place."
        )
    merged = {**job, **given}
    if job_vars or given_vars:
        merged["env_vars"] = {**job_vars, **given_vars}
    return merged


def _dashboard_url(cw: CoreWorker) -> str:
    """The head's API server as recorded by the node this driver started or joined."""
    if _started is not None:
        return str(_started.record.dashboard_url)
    try:
        rec = sess.NodeRecord.load(cw.session_dir)
    except (OSError, ValueError, TypeError):
        return ""
    return rec.dashboard_url if rec.gcs_address == cw.gcs_address else ""


def _context(cw: CoreWorker) -> RayContext:
    return RayContext(
        {
            "webui_url": _dashboard_url(cw),
            "node_ip_address": cw.node_ip,
            "address": cw.gcs_address,
            "gcs_address": cw.gcs_address,
            "session_dir": cw.session_dir,
            "node_id": cw.node_id,
            "raylet_port": cw.raylet_address[1],
        }
    )


def _find_cluster(
    address: str, temp_dir: str, node_ip_address: str | None = None
) -> tuple[tuple[str, int], str, str]:
    """Locate this machine's raylet and the cluster token for ``address``; with
    ``node_ip_address`` (init's ``_node_ip_address``), the node of that IP address."""
    if address == "auto":
        session_dir = sess.latest_session(temp_dir)
        if session_dir is None:
            raise ConnectionError(
                f"init('auto') found no running cluster under {temp_dir}: start one with "
                "`rayops start --head`, or pass its address (init('HOST:PORT'))."
            )
        rec = sess.NodeRecord.load(session_dir)
        if node_ip_address is not None and rec.node_ip != node_ip_address:
            raise ConnectionError(
                f"init('auto', _node_ip_address={node_ip_address!r}): the running node on "
                f"this machine has IP address {rec.node_ip}, not {node_ip_address}."
            )
        from rayops.node.processes import pid_belongs_to

        if not pid_belongs_to(rec.pids.get("raylet", -1), rec.session_dir):
            raise ConnectionError(
                f"init('auto'): the cluster recorded in {session_dir} is not running "
                "(its raylet exited). Start one with `rayops start --head`."
            )
        token = _read_token(os.path.join(session_dir, sess.TOKEN_FILE))
        tls.adopt_session(session_dir)  # TLS found where the token is (rpc/tls.py)
        return (rec.node_ip, rec.raylet_port), token, rec.node_ip
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"init(address=...) expects 'auto' or 'HOST:PORT', got {address!r}")
    from rayops.gcs import probe
    from rayops.gcs.client import GcsClient

    session_dir = sess.latest_session(temp_dir)
    token_file = os.environ.get("RAYOPS_TOKEN_FILE") or (
        os.path.join(session_dir, sess.TOKEN_FILE) if session_dir else ""
    )
    tls.adopt_beside_token(token_file)  # TLS found where the token is (rpc/tls.py)
    # Reachability first, then the token: each failure names what is wrong.
    probe.check_reachable(address)
    if not token_file:
        raise rex.AuthenticationError(
            f"the GCS at {address} is reachable, but no cluster token was found: set "
            "RAYOPS_TOKEN_FILE to a copy (mode 0600) of the head's "
            "<temp-dir>/session_latest/cluster_token."
        )
    token = _read_token(token_file)
    gcs = GcsClient(address, token)
    try:
        nodes = [n for n in gcs.get_all_nodes() if n.state == "ALIVE"]
    except rex.AuthenticationError as err:
        raise probe.refused_token(address, token_file) from err
    finally:
        gcs.close()
    local_ips = _local_ips() if node_ip_address is None else {node_ip_address}
    # The head first: on a machine running several nodes, drivers join through it.
    for n in sorted(nodes, key=lambda n: not n.is_head_node):
        if n.node_ip in local_ips:
            return (n.node_ip, n.raylet_port), token, n.node_ip
    raise ConnectionError(
        f"the cluster at {address} has no node on this machine (nodes: "
        f"{', '.join(n.node_ip for n in nodes) or 'none'}). Start one here with "
        f"`rayops start --address {address}` first."
    )


def _read_token(path: str) -> str:
    from rayops.rpc.auth import read_token_file

    return read_token_file(path)


def _local_ips() -> set[str]:
    import psutil

    ips = {"127.0.0.1"}
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family.name == "AF_INET":
                ips.add(a.address)
    return ips


def shutdown() -> None:
    """Disconnect; if ``init()`` started the cluster, stop it and remove its files."""
    cw = state.current()
    if cw is not None:
        from rayops.util.placement_group_handle import flush_removals

        flush_removals(cw)  # remove_placement_group is asynchronous: let them arrive
        state.set_core_worker(None)
        cw.shutdown()
    _stop_started()


def _stop_started() -> None:
    global _started
    node, _started = _started, None
    if node is None:
        return
    import signal

    from rayops.node.processes import _remove_tree, wait_procs

    # The API server needs nothing on its way out: signalled first, collected last.
    dashboard = node.procs.get("dashboard")
    if dashboard is not None and dashboard.poll() is None:
        try:
            dashboard.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    # Raylet first, and let it exit before the GCS goes: it unregisters from the GCS on
    # the way out, which would otherwise wait out its timeout on a GCS that is stopping.
    for name in ("raylet", "gcs"):
        p = node.procs.get(name)
        if p is not None and p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            wait_procs({name: p}, timeout=8 if name == "raylet" else 5)
    wait_procs(node.procs, timeout=5)
    if node.watch_fd is not None:
        try:
            os.close(node.watch_fd)
        except OSError:
            pass
    _remove_tree(node.record.shm_dir)


def _auto_init() -> CoreWorker:
    cw = state.current()
    if cw is None:
        init()
        cw = state.current()
        assert cw is not None
    return cw


# ------------------------------------------------------------------ objects
def put(value: Any, *, _owner: Any = None) -> ObjectRef:
    return _auto_init().objects.put(value)


def get(object_refs: Any, *, timeout: float | None = None) -> Any:
    cw = _auto_init()
    if isinstance(object_refs, ObjectRef):
        return cw.objects.get([object_refs], timeout)[0]
    if isinstance(object_refs, ObjectRefGenerator):
        raise TypeError(
            "get() does not take an ObjectRefGenerator: iterate it "
            "(for ref in gen) and get each ref."
        )
    if not isinstance(object_refs, (list, tuple)):
        raise ValueError(
            f"get() expects an ObjectRef or a list of ObjectRefs, got {type(object_refs).__name__}."
        )
    for i, r in enumerate(object_refs):
        if not isinstance(r, ObjectRef):
            raise ValueError(
                f"get() expects a list of ObjectRefs; element {i} is a {type(r).__name__}."
            )
    _check_timeout(timeout)
    return cw.objects.get(list(object_refs), timeout)


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"timeout must be None or a number >= 0, got {timeout!r}")


def wait(
    ray_waitables: Sequence[ObjectRef | ObjectRefGenerator],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[Any], list[Any]]:
    cw = _auto_init()
    if isinstance(ray_waitables, (ObjectRef, ObjectRefGenerator)):
        raise TypeError(
            "wait() expects a list of ObjectRefs and ObjectRefGenerators, not a single "
            f"{type(ray_waitables).__name__}."
        )
    refs: list[Any] = list(ray_waitables)
    # C-level passes only: wait() is called in loops over long lists.
    kinds = set(map(type, refs))
    if kinds - {ObjectRef}:
        if kinds - {ObjectRef, ObjectRefGenerator}:
            bad = next(
                i for i, r in enumerate(refs) if not isinstance(r, (ObjectRef, ObjectRefGenerator))
            )
            raise TypeError(
                "wait() expects a list of ObjectRefs and ObjectRefGenerators; "
                f"element {bad} is a {type(refs[bad]).__name__}."
            )
        return _wait_with_generators(refs, num_returns=num_returns, timeout=timeout)
    oids = [r._id for r in refs]
    if len(set(oids)) != len(oids):
        raise ValueError("wait() expects a list of unique ObjectRefs.")
    if not isinstance(num_returns, int) or (num_returns <= 0 and refs):
        raise ValueError(f"num_returns must be a positive int, got {num_returns!r}")
    if num_returns > len(refs):
        raise ValueError(
            f"num_returns ({num_returns}) cannot be greater than the number of refs ({len(refs)})."
        )
    _check_timeout(timeout)
    if not refs:
        return [], []
    return cw.objects.wait(refs, oids, num_returns, timeout)


def _wait_with_generators(
    waitables: list[Any], *, num_returns: int, timeout: float | None
) -> tuple[list[Any], list[Any]]:
    """``wait()`` over ObjectRefs and ObjectRefGenerators (each ready once ``next()`` on it
    would not block: its next item is there, or it finished)."""
    cw = _auto_init()
    items: list[Any] = [r if type(r) is ObjectRef else r._waitable() for r in waitables]
    oids = [r._id if type(r) is ObjectRef else r.wait_id for r in items]
    if len(set(oids)) != len(oids):
        raise ValueError("wait() expects a list of unique ObjectRefs and ObjectRefGenerators.")
    if not isinstance(num_returns, int) or num_returns <= 0:
        raise ValueError(f"num_returns must be a positive int, got {num_returns!r}")
    if num_returns > len(items):
        raise ValueError(
            f"num_returns ({num_returns}) cannot be greater than the number of refs ({len(items)})."
        )
    _check_timeout(timeout)
    ready, not_ready = cw.objects.wait(items, oids, num_returns, timeout)
    return [_unwrap(r) for r in ready], [_unwrap(r) for r in not_ready]


def _unwrap(item: Any) -> Any:
    return item.generator if isinstance(item, GeneratorWaitable) else item


def cancel(
    ray_waitable: ObjectRef | ObjectRefGenerator, *, force: bool = False, recursive: bool = True
) -> None:
    """Cancel the task that makes ``ray_waitable`` (Ray's semantics): its ref resolves with
    TaskCancelledError at once wherever the task is; a running normal task gets
    KeyboardInterrupt (``force=True``: its worker exits); a running actor call sees
    ``get_runtime_context().is_canceled()`` (async actors: CancelledError in the coroutine);
    ``recursive`` also cancels the tasks it submitted. ``force=True`` on an actor call
    raises ValueError. A finished task is left as it is."""
    object_ref = ray_waitable
    if isinstance(object_ref, ObjectRefGenerator):
        object_ref = object_ref.completed()
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(
            f"cancel() expects an ObjectRef or ObjectRefGenerator, got {type(object_ref).__name__}."
        )
    if not isinstance(force, bool):
        raise TypeError(f"cancel(force=...) expects a bool, got {type(force).__name__}.")
    if not isinstance(recursive, bool):
        raise TypeError(f"cancel(recursive=...) expects a bool, got {type(recursive).__name__}.")
    state.require().tasks.cancel(object_ref, force, recursive)


# ------------------------------------------------------------ introspection
def nodes() -> list[dict[str, Any]]:
    return state.require().cluster_info()


def cluster_resources() -> dict[str, float]:
    """The live nodes' resources added up; a placement group's bundle resources are left out
    (its reservation shows as plain resources taken, as in Ray)."""
    total: dict[str, float] = {}
    for n in nodes():
        if n["Alive"]:
            for k, v in n["Resources"].items():
                if not is_bundle_resource(k):
                    total[k] = total.get(k, 0.0) + v
    return total


def available_resources() -> dict[str, float]:
    total: dict[str, float] = {}
    for n in nodes():
        if n["Alive"]:
            for k, v in n["AvailableResources"].items():
                if v > 0 and not is_bundle_resource(k):
                    total[k] = total.get(k, 0.0) + v
    return total


def get_gpu_ids() -> list[int] | list[str]:
    """The GPUs the current task or actor holds, as Ray returns them: the node's physical ids
    as strings when it set ``CUDA_VISIBLE_DEVICES`` (``['2']``), else indexes as ints."""
    ctx = state.require().task_context()
    return [idx for idx, _ in ctx.instances.get("GPU", [])]
