"""``get_runtime_context()``: ids and resources of the current driver or task."""

from __future__ import annotations

import json
from typing import Any

from rayops import ids
from rayops.core_worker import state
from rayops.envs.spec import RuntimeEnv
from rayops.protocol.bundle_resources import InPlacementGroup, plain_shape


class RuntimeContext:
    def __init__(self) -> None:
        self._cw = state.require()

    def get_job_id(self) -> str:
        return ids.job_id_hex(self._cw.task_context().job_id or self._cw.job_id)

    @property
    def job_id(self) -> str:
        return self.get_job_id()

    def get_node_id(self) -> str:
        return self._cw.node_id

    @property
    def node_id(self) -> str:
        return self.get_node_id()

    def get_worker_id(self) -> str:
        return self._cw.worker_id.hex()

    def get_task_id(self) -> str | None:
        tid = self._cw.task_context().task_id
        return tid.hex() if tid is not None and self._cw.mode == "worker" else None

    def is_canceled(self) -> bool:
        """Whether ``cancel()`` was called on the running task or actor call, so a sync or
        threaded actor's method can stop early. Raises RuntimeError in a driver and in an
        async actor (there the coroutine gets asyncio.CancelledError instead), as Ray."""
        cw = self._cw
        if cw.mode != "worker" or cw.executor is None:
            raise RuntimeError(
                "is_canceled() is only available inside a task or an actor call, not in the driver."
            )
        actor = self._actor()
        if actor is not None and actor.is_async:
            raise RuntimeError(
                "is_canceled() is not supported in an async actor: cancel() raises "
                "asyncio.CancelledError inside the call's coroutine instead."
            )
        return bool(cw.executor.is_cancelled(cw.task_context().task_id))

    def get_task_name(self) -> str | None:
        name = self._cw.task_context().task_name
        return name or None

    def _actor(self) -> Any:
        ex = self._cw.executor
        return None if ex is None else ex.actor

    def get_actor_id(self) -> str | None:
        actor = self._actor()
        return None if actor is None else actor.actor_id.hex()

    @property
    def actor_id(self) -> str | None:
        return self.get_actor_id()

    def get_actor_name(self) -> str | None:
        actor = self._actor()
        return None if actor is None else (actor.name or None)

    @property
    def namespace(self) -> str:
        from rayops.core_worker import actor_caller

        return actor_caller.job_namespace(self._cw)

    @property
    def current_actor(self) -> Any:
        """A handle to the actor this code runs in (Ray's ``current_actor``); raises
        RuntimeError outside an actor."""
        from rayops.actor import ActorHandle
        from rayops.core_worker import actor_caller

        actor = self._actor()
        if actor is None:
            raise RuntimeError("current_actor is only available inside an actor (not a task).")
        return ActorHandle._from_parts(actor_caller.handle_by_id(self._cw, actor.actor_id))

    def get_assigned_resources(self) -> dict[str, float]:
        """The resources the running task holds, in plain names (a task in a placement group
        holds its bundle's resources: ``CPU``, not the group's resource names), as Ray."""
        ctx = self._cw.task_context()
        return plain_shape(ctx.resources) if self._cw.mode == "worker" else {}

    @property
    def current_placement_group_id(self) -> str | None:
        return self.get_placement_group_id()

    def should_capture_child_tasks_in_placement_group(self) -> bool:
        """Whether tasks started here without a strategy of their own run in its group."""
        where = self._cw.task_context().placement if self._cw.mode == "worker" else None
        return isinstance(where, InPlacementGroup) and where.capture_child_tasks

    def get_placement_group_id(self) -> str | None:
        """The hex id of the placement group the current task or actor runs in, if any."""
        where = self._cw.task_context().placement if self._cw.mode == "worker" else None
        return where.pg_id.hex() if isinstance(where, InPlacementGroup) else None

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """The task's accelerator ids as strings: the node's physical GPU ids (its own
        ``CUDA_VISIBLE_DEVICES``), or indexes when the node did not set one."""
        ctx = self._cw.task_context()
        return {"GPU": [str(i) for i, _ in ctx.instances.get("GPU", [])]}

    def get_node_labels(self) -> dict[str, str]:
        """The labels of the node this runs on, Ray's defaults (``ray.io/node-id``) included."""
        node_id = self.get_node_id()
        for node in self._cw.cluster_info():
            if node["NodeID"] == node_id:
                return dict(node["Labels"])
        raise RuntimeError(f"this node ({node_id}) is not in the cluster's node table")

    @property
    def gcs_address(self) -> str:
        return self._cw.gcs_address

    @property
    def was_current_actor_reconstructed(self) -> bool:
        actor = self._actor()
        return actor is not None and actor.num_restarts > 0

    @property
    def worker(self) -> Any:
        return self._cw

    @property
    def runtime_env(self) -> RuntimeEnv:
        """The runtime_env this driver's job or this worker runs in (packages as their
        ``gcs://`` URIs), as Ray's."""
        return RuntimeEnv(_validate=False, **self._cw.runtime_envs.current())

    def get_runtime_env_string(self) -> str:
        """The same, as a JSON string (Ray's)."""
        return json.dumps(self._cw.runtime_envs.current(), sort_keys=True)

    def get(self) -> dict[str, Any]:
        return {
            "job_id": self.get_job_id(),
            "node_id": self.get_node_id(),
            "task_id": self.get_task_id(),
            "worker_id": self.get_worker_id(),
            "namespace": self.namespace,
        }


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext()
