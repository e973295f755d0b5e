"""The caller's half of actors, run on user threads: create an actor, look one up,
submit a method call, kill one. The IO-thread half is ``actor_submitter``.

It hands back what a handle is made of (``HandleParts``), never ``rayops.actor``'s
``ActorHandle`` itself: the public classes call into this module, so this module must not
import them (no import cycle).
"""

from __future__ import annotations

import pickle
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple

from rayops import exceptions as rex
from rayops import ids
from rayops.core_worker.object_ref import ObjectRef
from rayops.core_worker.threads import user_thread
from rayops.protocol.bundle_resources import InPlacementGroup, demand_in_bundle
from rayops.protocol.task_messages import DYNAMIC, STREAMING

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker


class HandleParts(NamedTuple):
    """What an actor handle is made of: ``rayops.actor.ActorHandle`` is built from these."""

    actor_id: bytes
    class_name: str
    meta: dict[str, Any]  # "methods", "max_task_retries", "max_pending_calls", "is_async"
    token: ObjectRef | None  # the handle token: keeps the actor alive while a handle is


def handle_token_id(actor_id: bytes) -> bytes:
    """The id of an actor's handle token (an object its creator owns)."""
    return ids.object_id_for(actor_id, ids.ACTOR_HANDLE_INDEX)


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


@user_thread
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
    placement: InPlacementGroup | None = None,
) -> HandleParts:
    from rayops.gcs import calls
    from rayops.gcs.actor_placement import strategy_to_wire
    from rayops.gcs.client import GcsRefused

    actor_id = ids.new_actor_id()
    entries, deps = cw._prepare_args(args, kwargs)
    placement_shape, hold = _shapes(options)
    wire_strategy = strategy_to_wire(options.get("scheduling_strategy"))
    if placement is not None:  # in a placement group: its bundle's resources instead
        pg_hex = placement.pg_id.hex()
        placement_shape = demand_in_bundle(placement_shape, pg_hex, placement.bundle_index)
        hold = demand_in_bundle(hold, pg_hex, placement.bundle_index)
        wire_strategy = {}
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
            "placement": placement,
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
                placement_resources=placement_shape,
                hold_resources=hold,
                creation_spec=creation,
                handle_meta=pickle.dumps(meta),
                owner_address=f"{cw.address[0]}:{cw.address[1]}",
                label_selector=dict(options.get("label_selector") or {}),
                owner_node_id=cw.node_id,
                runtime_env=cw.runtime_envs.wire_for(options.get("runtime_env")),
                **wire_strategy,
            )
        )
    except ValueError as err:
        token._cw = None
        cw.references.remove_local(token_id)
        if isinstance(err, GcsRefused):  # e.g. the name is taken: the GCS's reason, as Ray says it
            raise ValueError(err.reason) from err
        raise
    if existed:
        token._cw = None
        cw.references.remove_local(token_id)
        return handle_from_info(cw, info)
    cw.loop.call_soon_threadsafe(cw.actor_submitter.registered, actor_id, info.version)
    return HandleParts(actor_id, class_name, meta, token)


@user_thread
def handle_from_info(cw: CoreWorker, info: Any) -> HandleParts:
    """A handle to an actor found in the GCS (by name, or get_if_exists)."""
    meta = pickle.loads(info.handle_meta)
    host, _, port = info.owner_address.rpartition(":")
    owner = (host, int(port))
    token_id = handle_token_id(info.actor_id)
    cw.references.on_deserialized(token_id, owner)
    token = ObjectRef(token_id, owner, cw, counted=True)
    if cw.mode == "driver":
        cw.references.register_new_borrows_async()
    return HandleParts(info.actor_id, info.class_name, meta, token)


# Namespaces of jobs, looked up once per worker process and job (a worker serves one cluster).
_job_namespaces: weakref.WeakKeyDictionary[CoreWorker, dict[int, str]] = weakref.WeakKeyDictionary()


@user_thread
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


@user_thread
def handle_by_id(cw: CoreWorker, actor_id: bytes) -> HandleParts:
    """A handle to the actor with this id, as the GCS knows it."""
    from rayops.gcs import calls

    info = cw.gcs().call(calls.get_actor_info(actor_id))
    if info is None:
        raise ValueError(f"actor {actor_id.hex()} is not known to the GCS.")
    return handle_from_info(cw, info)


@user_thread
def get_actor(cw: CoreWorker, name: str, namespace: str | None) -> HandleParts:
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


@user_thread
def list_named_actors(cw: CoreWorker, all_namespaces: bool) -> list[Any]:
    from rayops.gcs import calls

    names = cw.gcs().call(calls.list_named_actors(all_namespaces, job_namespace(cw)))
    if all_namespaces:
        return [{"name": name, "namespace": ns} for ns, name in names]
    return [name for _, name in names]


@user_thread
def kill(cw: CoreWorker, actor_id: bytes, class_name: str, no_restart: bool) -> None:
    from rayops.gcs import calls

    cw.gcs().call(calls.kill_actor(actor_id, no_restart))
    if no_restart:
        # Calls made after kill() returns fail here at once, whatever the worker is doing.
        err = rex.ActorDiedError(
            actor_id=actor_id.hex(),
            error_msg=f"The actor {class_name} ({actor_id.hex()}) was killed with rayops.kill().",
        )
        cw.loop.call_soon_threadsafe(cw.actor_submitter.mark_dead, actor_id, err)


@user_thread
def submit_call(
    cw: CoreWorker,
    handle: HandleParts,
    method: str,
    meta: dict[str, Any],
    options: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Submit ``handle``'s ``method`` (whose table entry is ``meta``) with ``options``;
    returns its ref(s), or its generator."""
    actor_id = handle.actor_id
    submitter = cw.actor_submitter
    limit = handle.meta.get("max_pending_calls", -1) or -1
    if not submitter.admit(actor_id, limit):
        raise rex.PendingCallsLimitExceeded(
            f"The actor {handle.class_name} already has {limit} pending calls from this "
            "caller (max_pending_calls); wait for some to finish before submitting more."
        )
    try:
        return _submit_admitted(cw, handle, method, meta, options, args, kwargs)
    except BaseException:
        submitter.call_finished(actor_id)  # never submitted
        raise


def _submit_admitted(
    cw: CoreWorker,
    handle: HandleParts,
    method: str,
    meta: dict[str, Any],
    options: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    actor_id = handle.actor_id
    num_returns = options.get("num_returns", meta["num_returns"])
    if num_returns == "streaming":
        num_returns = STREAMING
    elif num_returns == "dynamic":
        num_returns = DYNAMIC
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
    token = handle.token
    if token is not None:
        # The call pins the handle token until it finishes, as Ray does: a handle dropped
        # right after ``.remote()`` (``get(A.remote().f.remote())``) must not end the actor
        # while the call is pending.
        deps = [*deps, token._id]
    retries = options.get("max_task_retries", meta.get("max_task_retries"))
    if retries is None:
        retries = handle.meta.get("max_task_retries", 0)
    retry_exceptions = options.get("retry_exceptions", meta.get("retry_exceptions")) or False
    class_name = handle.class_name
    is_async = bool(handle.meta.get("is_async", False))
    result = cw.tasks.submit(spec, deps, retries, retry_exceptions, class_name, is_async)
    if num_returns == 1:  # the common case
        return result[0]  # type: ignore[index]
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
