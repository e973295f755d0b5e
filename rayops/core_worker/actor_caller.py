"""The caller's half of actors, run on user threads: create an actor, look one up,
submit a method call, kill one. The IO-loop half is ``actor_submitter``."""

from __future__ import annotations

import pickle
import weakref
from typing import TYPE_CHECKING, Any

from rayops import exceptions as rex
from rayops import ids
from rayops.core_worker.object_ref import ObjectRef
from rayops.core_worker.task_spec import STREAMING

if TYPE_CHECKING:
    from rayops.actor import ActorHandle
    from rayops.core_worker.core_worker import CoreWorker


def _shapes(options: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """(placement, hold): Ray's default actor needs 1 CPU to be placed and holds none."""
    hold: dict[str, float] = {}
    if options.get("num_cpus") is not None and options["num_cpus"] > 0:
        hold["CPU"] = float(options["num_cpus"])
    if options.get("num_gpus"):
        hold["GPU"] = float(options["num_gpus"])
    if options.get("memory"):
        hold["memory"] = float(options["memory"])
    for k, v in (options.get("resources") or {}).items():
        if v:
            hold[k] = float(v)
    placement = dict(hold)
    if options.get("num_cpus") is None:
        placement["CPU"] = 1.0
    return placement, hold


def create_actor(
    cw: CoreWorker,
    *,
    class_bytes: bytes,
    class_name: str,
    methods: dict[str, dict[str, Any]],
    is_async: bool,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: dict[str, Any],
) -> ActorHandle:
    from rayops.actor import ActorHandle, handle_token_id
    from rayops.gcs import calls

    actor_id = ids.new_actor_id()
    entries, deps = cw._prepare_args(args, kwargs)
    placement, hold = _shapes(options)
    max_concurrency = options.get("max_concurrency") or (1000 if is_async else 1)
    namespace = options.get("namespace") or job_namespace(cw)
    meta = {
        "methods": methods,
        "max_task_retries": options.get("max_task_retries", 0),
        "max_pending_calls": options.get("max_pending_calls", -1),
        "is_async": is_async,
    }
    creation = pickle.dumps(
        {
            "class_bytes": class_bytes,
            "class_name": class_name,
            "name": options.get("name") or "",
            "args": tuple(entries),
            "kwarg_names": tuple(kwargs),
            "max_concurrency": max_concurrency,
            "is_async": is_async,
            "concurrency_groups": dict(options.get("concurrency_groups") or {}),
            "methods": methods,
            "job_id": cw.job_id,
            "owner": cw.address,
        },
        protocol=5,
    )
    token_id = handle_token_id(actor_id)
    # The token holds the constructor's arguments for as long as the actor may restart.
    cw.references.add_owned(token_id, cw.address, local=0, contains=deps)
    token = ObjectRef(token_id, cw.address, cw, counted=False)
    try:
        info, existed = cw.gcs().call(
            calls.register_actor(
                actor_id=actor_id,
                class_name=class_name,
                job_id=cw.job_id,
                name=options.get("name") or "",
                ray_namespace=namespace,
                get_if_exists=bool(options.get("get_if_exists")),
                is_detached=options.get("lifetime") == "detached",
                max_restarts=options.get("max_restarts", 0),
                placement_resources=placement,
                hold_resources=hold,
                creation_spec=creation,
                handle_meta=pickle.dumps(meta),
                owner_address=f"{cw.address[0]}:{cw.address[1]}",
                label_selector=dict(options.get("label_selector") or {}),
            )
        )
    except ValueError as err:
        token._cw = None
        cw.references.remove_local(token_id)
        raise ValueError(str(err).split(": ", 1)[-1]) from err
    if existed:
        token._cw = None
        cw.references.remove_local(token_id)
        return handle_from_info(cw, info)
    cw.loop.call_soon_threadsafe(_set_version, cw, actor_id, class_name, info.version)
    return ActorHandle(actor_id, class_name, meta, token)


def _set_version(cw: CoreWorker, actor_id: bytes, class_name: str, version: int) -> None:
    q = cw.actor_submitter.queue(actor_id, class_name)
    q.version = max(q.version, version)


def handle_from_info(cw: CoreWorker, info: Any) -> ActorHandle:
    """A handle to an actor found in the GCS (by name, or get_if_exists)."""
    from rayops.actor import ActorHandle, handle_token_id

    meta = pickle.loads(info.handle_meta)
    host, _, port = info.owner_address.rpartition(":")
    owner = (host, int(port))
    token_id = handle_token_id(info.actor_id)
    cw.references.on_deserialized(token_id, owner)
    token = ObjectRef(token_id, owner, cw, counted=True)
    if cw.mode == "driver":
        cw._register_new_borrows_async()
    return ActorHandle(info.actor_id, info.class_name, meta, token)


# Namespaces of jobs, looked up once per worker process and job (a worker serves one cluster).
_job_namespaces: weakref.WeakKeyDictionary[CoreWorker, dict[int, str]] = weakref.WeakKeyDictionary()


def job_namespace(cw: CoreWorker) -> str:
    """The namespace of the job this code runs for: the driver's own, or, in a worker, the
    one its job's driver registered with the GCS (Ray's namespace travels with the job)."""
    if cw.mode == "driver":
        return cw.namespace
    from rayops.gcs import calls

    job_id = cw.task_context().job_id or cw.job_id
    known = _job_namespaces.setdefault(cw, {})
    ns = known.get(job_id)
    if ns is None:
        jobs = cw.gcs().call(calls.get_all_jobs())
        for job in jobs:
            known[job.job_id] = job.namespace
        ns = known.get(job_id)
        if ns is None:
            raise RuntimeError(
                f"job {ids.job_id_hex(job_id)} is not known to the GCS: cannot tell its "
                "namespace; pass namespace=... explicitly."
            )
    return ns


def handle_by_id(cw: CoreWorker, actor_id: bytes) -> ActorHandle:
    """A handle to the actor with this id, as the GCS knows it."""
    from rayops.gcs import calls

    info = cw.gcs().call(calls.get_actor_info(actor_id, False, 0, 0))
    if info is None:
        raise ValueError(f"actor {actor_id.hex()} is not known to the GCS.")
    return handle_from_info(cw, info)


def get_actor(cw: CoreWorker, name: str, namespace: str | None) -> ActorHandle:
    from rayops.gcs import calls

    ns = job_namespace(cw) if namespace is None else namespace
    try:
        info = cw.gcs().call(calls.get_named_actor(name, ns))
    except ValueError as err:
        raise ValueError(
            f"Failed to look up actor with name {name!r} in namespace {ns!r}: no live actor "
            "has that name. Check the name and the namespace (init(namespace=...) or "
            "get_actor(name, namespace=...))."
        ) from err
    return handle_from_info(cw, info)


def list_named_actors(cw: CoreWorker, all_namespaces: bool) -> list[Any]:
    from rayops.gcs import calls

    names = cw.gcs().call(calls.list_named_actors(all_namespaces, job_namespace(cw)))
    if all_namespaces:
        return [{"name": name, "namespace": ns} for ns, name in names]
    return [name for _, name in names]


def kill(cw: CoreWorker, handle: ActorHandle, no_restart: bool) -> None:
    from rayops.gcs import calls

    cw.gcs().call(calls.kill_actor(handle._actor_id, no_restart))
    if no_restart:
        # Calls made after kill() returns fail here at once, whatever the worker is doing.
        err = rex.ActorDiedError(
            actor_id=handle._actor_id.hex(),
            error_msg=(
                f"The actor {handle._class_name} ({handle._actor_id.hex()}) was killed "
                "with rayops.kill()."
            ),
        )
        cw.loop.call_soon_threadsafe(
            cw.actor_submitter.mark_dead, handle._actor_id, handle._class_name, err
        )


def submit_call(
    cw: CoreWorker,
    handle: ActorHandle,
    method: str,
    meta: dict[str, Any],
    options: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    actor_id = handle._actor_id
    limit = handle._meta.get("max_pending_calls", -1)
    if limit and limit > 0 and cw.pending_actor_calls[actor_id] >= limit:
        raise rex.PendingCallsLimitExceeded(
            f"The actor {handle._class_name} already has {limit} pending calls from this "
            "caller (max_pending_calls); wait for some to finish before submitting more."
        )
    num_returns = options.get("num_returns", meta["num_returns"])
    if num_returns == "streaming":
        num_returns = STREAMING
    spec, deps = cw.build_spec(
        name=method,
        function_id=b"",
        args=args,
        kwargs=kwargs,
        num_returns=num_returns,
        resources={},
        actor_id=actor_id,
        concurrency_group=options.get("concurrency_group", meta.get("concurrency_group", "")),
    )
    token = handle._token
    if token is not None:
        # The call pins the handle token until it finishes, as Ray does: a handle dropped
        # right after ``.remote()`` (``get(A.remote().f.remote())``) must not end the actor
        # while the call is pending.
        deps = [*deps, token._id]
    retries = options.get("max_task_retries", meta.get("max_task_retries"))
    if retries is None:
        retries = handle._meta.get("max_task_retries", 0)
    retry_exceptions = options.get("retry_exceptions", meta.get("retry_exceptions")) or False
    result = cw.track_submission(
        spec,
        deps,
        retries,
        retry_exceptions,
        lambda s: cw.enqueue_actor_call(s, handle._class_name),
    )
    if num_returns == STREAMING:
        return result
    refs = result
    assert isinstance(refs, list)
    n = len(refs)
    if n == 1:
        return refs[0]
    if n == 0:
        return None
    return refs
