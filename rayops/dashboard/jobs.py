"""Submitted jobs on the server side: checking a submission, its record, its supervisor.

Records live in the GCS internal KV (``protocol.job_messages``), never only in this
process, so a restarted server lists, streams and stops the jobs of the one before it. Each
job gets one supervisor process (``python -m rayops.dashboard.supervisor``), a child of this
server in its own session: it runs the entrypoint and owns the record from then on. Stopping
writes a stop key the supervisor polls and also signals the supervisor (SIGTERM) when it is
this server's child, so a stop takes effect at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import signal
import string
import sys
import time
from dataclasses import dataclass
from typing import Any

from rayops.envs import packaging
from rayops.envs import spec as env_spec
from rayops.protocol.job_messages import JOB_KEY_PREFIX, JOB_NAMESPACE, JobRecord

__all__ = ["BadRequest", "JobManager", "ServerConfig", "new_submission_id", "parse_submit"]

logger = logging.getLogger(__name__)

STOP_KEY_PREFIX = "_rayops_job_stop_"
# Ray's submission ids: "raysubmit_" and 16 characters without look-alikes.
_ID_CHARS = sorted(set(string.ascii_letters + string.digits) - set("IloO0"))
_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
SUBMIT_FIELDS = {
    "entrypoint",
    "submission_id",
    "job_id",
    "runtime_env",
    "metadata",
    "entrypoint_num_cpus",
    "entrypoint_num_gpus",
    "entrypoint_memory",
    "entrypoint_resources",
}


class BadRequest(ValueError):
    """A request the server refuses with 400; the message names the field."""


@dataclass(frozen=True)
class ServerConfig:
    gcs_address: str
    token_file: str
    session_dir: str
    session_name: str
    node_ip: str
    temp_dir: str

    @property
    def logs_dir(self) -> str:
        return os.path.join(self.session_dir, "logs")


def new_submission_id() -> str:
    rand = random.SystemRandom()
    return "raysubmit_" + "".join(rand.choice(_ID_CHARS) for _ in range(16))


def _number(body: dict[str, Any], name: str, *, integer: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"'{name}' must be {kind} >= 0, got {value!r}")
    return value


def parse_submit(body: Any) -> dict[str, Any]:
    """The fields of a ``POST /api/jobs/`` body, checked; raises BadRequest naming a field."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - SUBMIT_FIELDS)
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(SUBMIT_FIELDS))}"
        )
    entrypoint = body.get("entrypoint")
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        raise BadRequest(f"'entrypoint' must be a non-empty string, got {entrypoint!r}")
    sid = body.get("submission_id") or body.get("job_id")
    if body.get("submission_id") and body.get("job_id") and body["job_id"] != sid:
        raise BadRequest("'submission_id' and the deprecated 'job_id' differ; give one")
    if sid is not None and (not isinstance(sid, str) or not _ID_RE.match(sid)):
        raise BadRequest(f"'submission_id' must be 1-128 letters, digits or _.:-, got {sid!r}")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise BadRequest(f"'metadata' must be an object of strings, got {metadata!r}")
    resources = body.get("entrypoint_resources")
    if resources is not None:
        if not isinstance(resources, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
            for k, v in resources.items()
        ):
            raise BadRequest(
                f"'entrypoint_resources' must be an object of numbers >= 0, got {resources!r}"
            )
        reserved = sorted(set(resources) & {"CPU", "GPU", "memory"})
        if reserved:
            raise BadRequest(
                f"'entrypoint_resources' must not contain {', '.join(reserved)}; use "
                "entrypoint_num_cpus, entrypoint_num_gpus or entrypoint_memory"
            )
    runtime_env = body.get("runtime_env") or {}
    try:
        runtime_env = env_spec.validate(runtime_env, where="runtime_env")
    except (TypeError, ValueError, NotImplementedError) as err:
        raise BadRequest(str(err)) from err
    # The entrypoint itself gets env_vars and working_dir (and its init() the whole env);
    # a venv or py_modules the entrypoint process would not see are refused, not dropped.
    unapplied = sorted(k for k in ("pip", "uv", "py_modules") if runtime_env.get(k))
    if unapplied:
        raise BadRequest(
            f"'runtime_env.{unapplied[0]}' is not applied to a job's entrypoint yet (rayops "
            "issue 12): give it to the driver's rayops.init(runtime_env=...) or to its tasks"
        )
    for key in ("working_dir",):
        value = runtime_env.get(key)
        if value and not env_spec.is_package_uri(value):
            raise BadRequest(
                f"'runtime_env.{key}' must be a {env_spec.PKG_URI_PREFIX}... URI uploaded with "
                f"PUT /api/packages/gcs/<name>, got the server-side path {value!r}"
            )
    for value in runtime_env.get("py_modules") or []:
        if not env_spec.is_package_uri(value):
            raise BadRequest(
                "'runtime_env.py_modules' entries must be uploaded "
                f"{env_spec.PKG_URI_PREFIX}... URIs, got {value!r}"
            )
    return {
        "submission_id": sid,
        "entrypoint": entrypoint,
        "runtime_env": runtime_env,
        "metadata": dict(metadata),
        "entrypoint_num_cpus": _number(body, "entrypoint_num_cpus"),
        "entrypoint_num_gpus": _number(body, "entrypoint_num_gpus"),
        "entrypoint_memory": _number(body, "entrypoint_memory", integer=True),
        "entrypoint_resources": dict(resources) if resources else None,
    }


def _key(sid: str) -> bytes:
    return (JOB_KEY_PREFIX + sid).encode()


class JobManager:
    """Jobs' records in the GCS KV and the supervisors this server started."""

    def __init__(self, gcs: Any, config: ServerConfig) -> None:
        self._gcs = gcs
        self.config = config
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # --------------------------------------------------------------------- records
    async def get(self, sid: str) -> JobRecord | None:
        raw = await self._gcs.kv_get(_key(sid), namespace=JOB_NAMESPACE)
        return None if raw is None else JobRecord.from_json(raw)

    async def list(self) -> list[JobRecord]:
        keys = await self._gcs.kv_keys(JOB_KEY_PREFIX.encode(), namespace=JOB_NAMESPACE)
        if not keys:
            return []
        got = await self._gcs.kv_multi_get(keys, namespace=JOB_NAMESPACE)
        jobs = [JobRecord.from_json(v) for v in got.values()]
        return sorted(jobs, key=lambda j: (j.start_time or 0, j.submission_id))

    async def _put(self, record: JobRecord, *, overwrite: bool = True) -> bool:
        new: bool = await self._gcs.kv_put(
            _key(record.submission_id),
            record.to_json(),
            namespace=JOB_NAMESPACE,
            overwrite=overwrite,
        )
        return new

    # ---------------------------------------------------------------------- submit
    async def submit(self, fields: dict[str, Any]) -> str:
        sid = fields["submission_id"] or new_submission_id()
        for uri in _package_uris(fields["runtime_env"]):
            exists = await self._gcs.kv_exists(
                packaging.meta_key(uri), namespace=packaging.PACKAGE_NAMESPACE
            )
            if not exists:
                raise BadRequest(
                    f"'runtime_env' package {uri} is not on the server; upload it first "
                    f"(PUT /api/packages/gcs/{uri[len('gcs://') :]})"
                )
        record = JobRecord(
            submission_id=sid,
            entrypoint=fields["entrypoint"],
            status="PENDING",
            message="Job has not started yet. It may be waiting for resources.",
            start_time=int(time.time() * 1000),
            metadata=fields["metadata"],
            runtime_env=fields["runtime_env"],
            entrypoint_num_cpus=fields["entrypoint_num_cpus"],
            entrypoint_num_gpus=fields["entrypoint_num_gpus"],
            entrypoint_memory=fields["entrypoint_memory"],
            entrypoint_resources=fields["entrypoint_resources"],
            log_path=os.path.join(self.config.logs_dir, f"job-driver-{sid}.log"),
        )
        if not await self._put(record, overwrite=False):
            raise BadRequest(f"Job with submission_id {sid} already exists. Use a new id.")
        await self._gcs.kv_del(STOP_KEY_PREFIX.encode() + sid.encode(), namespace=JOB_NAMESPACE)
        try:
            await self._start_supervisor(sid)
        except OSError as err:
            await self._put(
                record.with_(
                    status="FAILED",
                    message=f"the job supervisor could not start: {err}",
                    error_type="JOB_SUPERVISOR_ACTOR_START_FAILURE",
                    end_time=int(time.time() * 1000),
                )
            )
        return sid

    async def _start_supervisor(self, sid: str) -> None:
        c = self.config
        cmd = [
            sys.executable,
            "-m",
            "rayops.dashboard.supervisor",
            "--submission-id",
            sid,
            "--gcs-address",
            c.gcs_address,
            "--token-file",
            c.token_file,
            "--session-dir",
            c.session_dir,
            "--node-ip",
            c.node_ip,
            "--temp-dir",
            c.temp_dir,
        ]
        out_path = os.path.join(c.logs_dir, f"job-supervisor-{sid}.out")
        with open(out_path, "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[sid] = proc
        task = asyncio.ensure_future(self._reap(sid, proc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        logger.info("job %s: supervisor pid %d", sid, proc.pid)

    async def _reap(self, sid: str, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        self._children.pop(sid, None)
        record = await self.get(sid)
        if record is not None and not record.terminal:
            # The supervisor died without writing an end (killed, crashed): its entrypoint
            # must not outlive it unsupervised, and the record says what happened.
            if record.driver_pid:
                try:
                    os.killpg(record.driver_pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            await self._put(
                record.with_(
                    status="FAILED",
                    message=f"the job supervisor exited unexpectedly (exit code {code}); see "
                    f"{self.config.logs_dir}/job-supervisor-{sid}.out",
                    error_type="JOB_SUPERVISOR_ACTOR_DIED",
                    end_time=int(time.time() * 1000),
                )
            )

    # ------------------------------------------------------------------ stop/delete
    async def stop(self, sid: str) -> bool | None:
        """None: no such job; False: it had already ended; True: stop requested."""
        record = await self.get(sid)
        if record is None:
            return None
        if record.terminal:
            return False
        await self._gcs.kv_put(
            STOP_KEY_PREFIX.encode() + sid.encode(), b"1", namespace=JOB_NAMESPACE
        )
        proc = self._children.get(sid)
        # Signalled only once it runs the entrypoint (its SIGTERM handler is set by then);
        # before that it polls the stop key between its steps.
        if record.status == "RUNNING" and proc is not None and proc.returncode is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        return True

    async def delete(self, sid: str) -> bool | None:
        record = await self.get(sid)
        if record is None:
            return None
        if not record.terminal:
            raise BadRequest(
                f"Attempted to delete job with submission_id {sid}, but it is in the non-terminal "
                f"state {record.status}; stop it first (POST /api/jobs/{sid}/stop)"
            )
        await self._gcs.kv_del(_key(sid), namespace=JOB_NAMESPACE)
        await self._gcs.kv_del(STOP_KEY_PREFIX.encode() + sid.encode(), namespace=JOB_NAMESPACE)
        for path in (
            record.log_path,
            os.path.join(self.config.logs_dir, f"job-supervisor-{sid}.out"),
        ):
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        return True

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def _package_uris(runtime_env: dict[str, Any]) -> list[str]:
    uris = list(runtime_env.get("py_modules") or [])
    if runtime_env.get("working_dir"):
        uris.append(runtime_env["working_dir"])
    return uris


def read_log(path: str, offset: int = 0, limit: int | None = None) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read() if limit is None else f.read(limit)
    except FileNotFoundError:
        return b""
