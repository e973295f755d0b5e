"""``python -m rayops.dashboard.supervisor``: one submitted job's supervisor (Ray's JobSupervisor).

A child process of the API server, in its own session. It owns the job's record in the GCS
KV from PENDING on:

1. with ``entrypoint_num_cpus/num_gpus/memory/resources``, it joins the cluster as a driver
   and holds them with an actor pinned to the head node (the entrypoint runs on the head), so
   the job waits PENDING until they are free, as Ray's supervisor actor does; a request the head
   can never fit fails the job at once, naming the field. With none, nothing is reserved.
2. it unpacks the ``working_dir`` package (the entrypoint's cwd), then starts the entrypoint
   with ``/bin/sh -c`` as the leader of a new process group, stdout and stderr to
   ``logs/job-driver-<id>.log``, with the cluster's address and token file in its
   environment (``rayops.init()`` inside joins this cluster), the runtime_env's ``env_vars``,
   and the whole runtime_env in ``RAYOPS_JOB_RUNTIME_ENV`` (the driver's ``init`` takes it as
   its job's runtime_env, as Ray's drivers take the job config);
3. RUNNING until the entrypoint exits: SUCCEEDED with exit code 0, else FAILED with the code
   and the log's tail. A stop (SIGTERM from the server, or the stop key in the KV, polled) sends
   SIGTERM to the process group, then SIGKILL after ``RAYOPS_JOB_STOP_WAIT_TIME_S`` (Ray's
   ``RAY_JOB_STOP_WAIT_TIME_S``, default 3 s) if any process of the group is left: STOPPED.
   If the GCS stops answering for `GCS_GONE_S` (the cluster was stopped), the job is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from rayops.envs import packaging
from rayops.envs.node_cache import PackageCache, SetupFailed
from rayops.protocol.job_messages import JOB_KEY_PREFIX, JOB_NAMESPACE, JobRecord

logger = logging.getLogger("rayops.dashboard.supervisor")

STOP_KEY_PREFIX = "_rayops_job_stop_"
DEFAULT_STOP_WAIT_S = 3.0
POLL_S = 0.1
KV_POLL_S = 1.0
GCS_GONE_S = 10.0
LOG_TAIL_CHARS = 20_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def stop_wait_s(environ: dict[str, str]) -> float:
    raw = environ.get("RAYOPS_JOB_STOP_WAIT_TIME_S")
    if raw is None:
        return DEFAULT_STOP_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"RAYOPS_JOB_STOP_WAIT_TIME_S must be a number >= 0, got {raw!r}")
    return value


class Supervisor:
    def __init__(self, args: argparse.Namespace, gcs: Any) -> None:
        self.args = args
        self.gcs = gcs
        self.sid: str = args.submission_id
        self.key = (JOB_KEY_PREFIX + self.sid).encode()
        self.stop_key = (STOP_KEY_PREFIX + self.sid).encode()
        self.stopping = False
        self.record: JobRecord | None = None
        self.wait_s = stop_wait_s(dict(os.environ))

    # ---------------------------------------------------------------- record I/O
    def load(self) -> JobRecord:
        raw = self.gcs.kv_get(self.key, namespace=JOB_NAMESPACE)
        if raw is None:
            raise SystemExit(f"job {self.sid}: no record in the GCS")
        self.record = JobRecord.from_json(raw)
        return self.record

    def save(self, **changes: Any) -> None:
        assert self.record is not None
        self.record = self.record.with_(**changes)
        self.gcs.kv_put(self.key, self.record.to_json(), namespace=JOB_NAMESPACE)

    def stop_asked(self) -> bool:
        if self.stopping:
            return True
        try:
            self.stopping = self.gcs.kv_exists(self.stop_key, namespace=JOB_NAMESPACE)
        except Exception as err:  # the GCS is asked again on the next poll
            logger.info("job %s: reading the stop key: %r", self.sid, err)
        return self.stopping

    def finish(self, status: str, message: str, **changes: Any) -> None:
        self.save(status=status, message=message, end_time=_now_ms(), **changes)
        logger.info("job %s: %s (%s)", self.sid, status, message)

    # ---------------------------------------------------------------------- steps
    def reserve(self, rec: JobRecord) -> list[str] | None:
        """Hold the entrypoint's resources on the head; the GPU ids given, or None if stopped."""
        import rayops
        from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # init() finds this cluster's token and local node through these, as a driver would.
        os.environ["RAYOPS_TOKEN_FILE"] = self.args.token_file
        os.environ["RAYOPS_TEMP_DIR"] = self.args.temp_dir

        rayops.init(address=self.args.gcs_address, log_to_driver=False, namespace="_rayops_jobs")
        node_id = rayops.get_runtime_context().get_node_id()
        totals: dict[str, float] = {}
        for n in rayops.nodes():
            if n.get("NodeID") == node_id:
                totals = dict(n.get("Resources") or {})
        want = {
            "entrypoint_num_cpus": ("CPU", rec.entrypoint_num_cpus),
            "entrypoint_num_gpus": ("GPU", rec.entrypoint_num_gpus),
            "entrypoint_memory": ("memory", rec.entrypoint_memory),
        }
        wanted = [(f, r, v) for f, (r, v) in want.items() if v]
        wanted += [
            (f"entrypoint_resources[{k!r}]", k, v)
            for k, v in (rec.entrypoint_resources or {}).items()
            if v
        ]
        for fieldname, res, value in wanted:
            if totals.get(res, 0.0) < value:
                raise SetupFailed(
                    f"{fieldname}={value:g} can never be met: the head node, where rayops runs "
                    f"entrypoints, has {totals.get(res, 0.0):g} {res} in total"
                )

        @rayops.remote
        class _EntrypointReservation:
            def gpu_ids(self) -> list[Any]:
                return list(rayops.get_gpu_ids())

        holder = _EntrypointReservation.options(  # type: ignore[attr-defined]
            num_cpus=rec.entrypoint_num_cpus or 0,
            num_gpus=rec.entrypoint_num_gpus or 0,
            memory=rec.entrypoint_memory or None,
            resources=rec.entrypoint_resources or None,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote()
        ref = holder.gpu_ids.remote()
        while True:
            ready, _ = rayops.wait([ref], timeout=0.2)
            if ready:
                return [str(g) for g in rayops.get(ref)]
            if self.stop_asked():
                return None

    def prepare_working_dir(self, rec: JobRecord) -> str | None:
        uri = rec.runtime_env.get("working_dir")
        if not uri:
            return None
        from rayops.gcs.client import AsyncGcsClient
        from rayops.rpc.auth import read_token_file

        async def fetch_all() -> str:
            client = AsyncGcsClient(
                self.args.gcs_address, read_token_file(self.args.token_file), timeout=30.0
            )

            async def fetch(key: bytes) -> bytes | None:
                got: bytes | None = await client.kv_get(key, namespace=packaging.PACKAGE_NAMESPACE)
                return got

            root = os.path.join(self.args.session_dir, "runtime_resources", "jobs", "packages")
            try:
                return await PackageCache(root, fetch).ensure(uri)
            finally:
                await client.close()

        return asyncio.run(fetch_all())

    def entrypoint_env(self, rec: JobRecord, gpu_ids: list[str] | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "RAYOPS_ADDRESS": self.args.gcs_address,
                "RAYOPS_TOKEN_FILE": self.args.token_file,
                "RAYOPS_TEMP_DIR": self.args.temp_dir,
                "RAYOPS_JOB_SUBMISSION_ID": self.sid,
                "RAY_JOB_SUBMISSION_ID": self.sid,
                "PYTHONUNBUFFERED": "1",
                # `python` in the entrypoint is the cluster's interpreter, even when the head
                # was started from a virtualenv that was not activated.
                "PATH": os.pathsep.join(
                    [os.path.dirname(sys.executable), env.get("PATH", os.defpath)]
                ),
            }
        )
        env.update(rec.runtime_env.get("env_vars") or {})
        if rec.runtime_env:
            env["RAYOPS_JOB_RUNTIME_ENV"] = json.dumps(rec.runtime_env)
        if gpu_ids is not None and rec.entrypoint_num_gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
        return env

    def run(self) -> int:
        rec = self.load()
        if rec.terminal:
            return 0
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self.save(supervisor_pid=os.getpid())
        gpu_ids: list[str] | None = None
        try:
            if _wants_resources(rec):
                gpu_ids = self.reserve(rec)
                if gpu_ids is None:
                    self.finish("STOPPED", "Job was intentionally stopped.")
                    return 0
            cwd = self.prepare_working_dir(rec)
        except SetupFailed as err:
            self.finish("FAILED", str(err), error_type="JOB_SUPERVISOR_ACTOR_START_FAILURE")
            return 0
        except Exception as err:
            self.finish(
                "FAILED",
                f"the job's setup failed: {err!r}",
                error_type="RUNTIME_ENV_SETUP_FAILURE",
            )
            return 0
        if self.stop_asked():
            self.finish("STOPPED", "Job was intentionally stopped.")
            return 0
        os.makedirs(os.path.dirname(rec.log_path), exist_ok=True)
        with open(rec.log_path, "ab") as log:
            child = subprocess.Popen(
                ["/bin/sh", "-c", rec.entrypoint],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=self.entrypoint_env(rec, gpu_ids),
                start_new_session=True,
            )
        self.save(
            status="RUNNING",
            message="Job is currently running.",
            driver_pid=child.pid,
            driver_node_ip=self.args.node_ip,
        )
        return self.watch(child)

    def watch(self, child: subprocess.Popen[bytes]) -> int:
        next_kv = time.monotonic() + KV_POLL_S
        gcs_ok = time.monotonic()
        while True:
            try:
                code = child.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= next_kv:
                next_kv = time.monotonic() + KV_POLL_S
                try:
                    if self.gcs.kv_exists(self.stop_key, namespace=JOB_NAMESPACE):
                        self.stopping = True
                    gcs_ok = time.monotonic()
                except Exception as err:
                    logger.info("job %s: the GCS did not answer: %r", self.sid, err)
                    if time.monotonic() - gcs_ok > GCS_GONE_S:
                        logger.warning("job %s: the GCS is gone; killing the job", self.sid)
                        _kill_group(child.pid, signal.SIGKILL)
                        child.wait()
                        return 1
            if self.stopping:
                self.kill(child)
                self.finish("STOPPED", "Job was intentionally stopped.", driver_exit_code=None)
                return 0
        if self.stopping:
            self.kill(child)
            self.finish("STOPPED", "Job was intentionally stopped.", driver_exit_code=code)
        elif code == 0:
            self.finish("SUCCEEDED", "Job finished successfully.", driver_exit_code=0)
        else:
            assert self.record is not None
            tail = _log_tail(self.record.log_path)
            self.finish(
                "FAILED",
                f"Job entrypoint command failed with exit code {code}, last available logs "
                f"(truncated to {LOG_TAIL_CHARS:,} chars):\n{tail}",
                error_type="JOB_ENTRYPOINT_COMMAND_ERROR",
                driver_exit_code=code,
            )
        return 0

    def kill(self, child: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the entrypoint's process group, SIGKILL after the grace period."""
        pgid = child.pid
        _kill_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            child.poll()
            if not _group_alive(pgid):
                return
            time.sleep(POLL_S)
        logger.info("job %s: still running %g s after SIGTERM; SIGKILL", self.sid, self.wait_s)
        _kill_group(pgid, signal.SIGKILL)
        child.wait()
        deadline = time.monotonic() + 5.0
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stopping = True


def _wants_resources(rec: JobRecord) -> bool:
    return bool(
        rec.entrypoint_num_cpus
        or rec.entrypoint_num_gpus
        or rec.entrypoint_memory
        or any((rec.entrypoint_resources or {}).values())
    )


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies of the group count as gone; only our own child can be one here, and poll()
    # reaped it already, so anything left is a live grandchild.
    return True


def _log_tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_CHARS))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rayops.dashboard.supervisor")
    p.add_argument("--submission-id", required=True)
    p.add_argument("--gcs-address", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--session-dir", required=True)
    p.add_argument("--node-ip", required=True)
    p.add_argument("--temp-dir", required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s supervisor[{os.getpid()}] %(message)s",
    )
    from rayops.gcs.client import GcsClient
    from rayops.rpc.auth import read_token_file

    gcs = GcsClient(args.gcs_address, read_token_file(args.token_file), timeout=5.0)
    try:
        return Supervisor(args, gcs).run()
    finally:
        gcs.close()


if __name__ == "__main__":
    sys.exit(main())
