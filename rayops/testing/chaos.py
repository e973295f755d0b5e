"""The chaos suite: workloads run while a controller injects faults on real processes.

``python -m rayops.testing.chaos`` builds a three-node cluster in network namespaces
(``rayops.testing.netns_cluster``: the head ``h1`` and two workers, each its own address),
runs each workload once without faults (the baseline) and once under a fault plan, and
prints a table: faults injected, results lost, task retries, extra time over the baseline.
It exits non-zero when a workload lost results that Ray's semantics allow to recover.

Faults (``FAULT_KINDS``), each on real processes or real links:

* ``kill_worker``: SIGKILL a worker process of a non-head node (a task retried elsewhere).
* ``kill_actor``: SIGKILL the process of one of the pipeline's actors (restarted, its
  calls retried: ``max_restarts=-1, max_task_retries=-1``).
* ``kill_raylet``: SIGKILL a non-head node's raylet (the node dies with its workers and
  objects; results are rebuilt from lineage) and start the node again a little later.
* ``kill_gcs``: SIGKILL the GCS (restarted by its supervisor; clients reconnect).
* ``link_down``: take a non-head node's link down for ``blip_s`` (shorter than the health
  check's window, so the node survives) and put it back.
* ``packet_loss``: drop ``loss_pct``% of a non-head node's incoming packets for ``blip_s``
  (nftables inside its namespace: this kernel has no ``netem``).

The plan is a pure function of (kinds, duration, period, seed): the same seed injects the
same faults at the same times, so a failure can be replayed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAULT_KINDS = (
    "kill_worker",
    "kill_actor",
    "kill_raylet",
    "kill_gcs",
    "link_down",
    "packet_loss",
)
WORKER_NODES = ("h2", "h3")


@dataclass(frozen=True)
class Fault:
    at_s: float  # seconds after the workload started
    kind: str
    node: str = ""
    duration_s: float = 0.0
    loss_pct: int = 0


@dataclass
class FaultRecord:
    fault: Fault
    injected: bool
    detail: str


def plan_faults(
    kinds: Sequence[str],
    duration_s: float,
    period_s: float,
    seed: int,
    *,
    first_s: float = 1.0,
    blip_s: float = 1.5,
    loss_pct: int = 20,
) -> tuple[Fault, ...]:
    """One fault every ``period_s`` from ``first_s`` until ``duration_s``, kinds in turn
    (shuffled by ``seed``), each on a non-head node chosen by ``seed``."""
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        raise ValueError(f"unknown fault kind(s) {unknown}; expected some of {FAULT_KINDS}")
    if not kinds:
        return ()
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    out: list[Fault] = []
    t = first_s
    i = 0
    while t < duration_s:
        kind = order[i % len(order)]
        node = "h1" if kind == "kill_gcs" else rng.choice(WORKER_NODES)
        timed = kind in ("link_down", "packet_loss")
        out.append(
            Fault(
                round(t, 3),
                kind,
                node,
                blip_s if timed else 0.0,
                loss_pct if kind == "packet_loss" else 0,
            )
        )
        t += period_s
        i += 1
    return tuple(out)


@contextlib.contextmanager
def packet_loss(net: Any, node: str, loss_pct: int) -> Iterator[None]:
    """Drop ``loss_pct``% of the packets coming into ``node``'s namespace (nftables inside
    that namespace; this kernel has no ``netem``) while the block runs; the table is
    removed afterwards."""
    ns = net.hosts[node].ns
    table = "rayops_chaos"
    rules = (
        f"add table inet {table}\n"
        f"add chain inet {table} input {{ type filter hook input priority 0 ; }}\n"
        f"add rule inet {table} input iifname eth0 numgen random mod 100 < {loss_pct} drop\n"
    )
    subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, text=True, check=True
    )
    try:
        yield
    finally:
        subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "delete", "table", "inet", table], check=False
        )


class ChaosTarget:
    """Fault injection on an ``NsCluster``: every action on a real process or link."""

    def __init__(self, cluster: Any, actor_file: str = "", restart_after_s: float = 2.0) -> None:
        self.cluster = cluster
        self.net = cluster.net
        self.actor_file = actor_file
        self.restart_after_s = restart_after_s
        self._timers: list[threading.Timer] = []

    # -- processes -------------------------------------------------------------------
    def _node_pids(self, node: str) -> dict[str, int]:
        from rayops.node.session import NodeRecord, latest_session

        session = latest_session(self.cluster.temp_dir(node))
        return {} if session is None else dict(NodeRecord.load(session).pids)

    def _workers(self, node: str) -> list[int]:
        """Worker processes of the node: children of its raylet's zygote or of the raylet."""
        import psutil

        raylet = self._node_pids(node).get("raylet")
        if raylet is None:
            return []
        try:
            tree = psutil.Process(raylet).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        out = []
        for p in tree:
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(p.cmdline())
                # Forked workers keep the zygote's command line; the zygote itself does not
                # run tasks (its children do); the agent is not a worker.
                if "rayops.agent" in cmd:
                    continue
                if p.ppid() != raylet or "zygote" not in cmd:
                    out.append(p.pid)
        return out

    def kill_worker(self, fault: Fault) -> str:
        pids = self._workers(fault.node)
        if not pids:
            return "no worker running"
        pid = random.Random(fault.at_s).choice(sorted(pids))
        _kill(pid)
        return f"SIGKILL worker pid {pid}"

    def kill_actor(self, fault: Fault) -> str:
        if not self.actor_file or not os.path.exists(self.actor_file):
            return "no actor known"
        with open(self.actor_file) as f:
            pids = [int(p) for p in json.load(f)]
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return "no actor process alive (restarted: pids not refreshed)"
        pid = random.Random(fault.at_s).choice(alive)
        _kill(pid)
        return f"SIGKILL actor pid {pid}"

    def kill_raylet(self, fault: Fault) -> str:
        pid = self._node_pids(fault.node).get("raylet")
        if pid is None or not _alive(pid):
            return "raylet not running"
        _kill(pid)
        timer = threading.Timer(self.restart_after_s, self._restart_node, (fault.node,))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)
        return f"SIGKILL raylet pid {pid}; node restarts in {self.restart_after_s:.1f}s"

    def _restart_node(self, node: str) -> None:
        self.cluster.restart_node(node)

    def kill_gcs(self, fault: Fault) -> str:
        from rayops.node.supervisor import supervised_pid

        supervisor = self._node_pids("h1").get("gcs")  # the node records the supervisor
        if supervisor is None or not _alive(supervisor):
            return "gcs not running"
        try:
            pid = supervised_pid(supervisor, 5.0)
        except (TimeoutError, OSError, ValueError) as err:
            return f"gcs not running ({err})"
        _kill(pid)
        return f"SIGKILL gcs pid {pid} (its supervisor restarts it)"

    # -- the network -----------------------------------------------------------------
    def link_down(self, fault: Fault) -> str:
        self.net.link(fault.node, False)
        try:
            time.sleep(fault.duration_s)
        finally:
            self.net.link(fault.node, True)
        return f"link down {fault.duration_s:.1f}s"

    def packet_loss(self, fault: Fault) -> str:
        with packet_loss(self.net, fault.node, fault.loss_pct):
            time.sleep(fault.duration_s)
        return f"{fault.loss_pct}% loss {fault.duration_s:.1f}s"

    def inject(self, fault: Fault) -> str:
        action = getattr(self, fault.kind)
        detail: str = action(fault)
        return detail

    def close(self) -> None:
        for t in self._timers:
            t.join(timeout=30)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Controller(threading.Thread):
    """Injects a plan's faults at their times (relative to ``start()``), recording each."""

    def __init__(self, target: ChaosTarget, plan: Sequence[Fault]) -> None:
        super().__init__(daemon=True, name="chaos-controller")
        self.target = target
        self.plan = list(plan)
        self.records: list[FaultRecord] = []
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        for fault in self.plan:
            if self.stop.wait(max(0.0, t0 + fault.at_s - time.monotonic())):
                return
            try:
                detail = self.target.inject(fault)
                injected = not detail.startswith(("no ", "raylet not", "gcs not"))
            except Exception as err:  # record and go on: the run reports it
                detail, injected = f"failed: {err!r}", False
            self.records.append(FaultRecord(fault, injected, detail))


@dataclass
class WorkloadResult:
    name: str
    results: int
    lost: int
    retries: int
    seconds: float
    baseline_s: float
    faults: list[FaultRecord] = field(default_factory=list)

    @property
    def injected(self) -> int:
        return sum(1 for r in self.faults if r.injected)

    @property
    def extra_s(self) -> float:
        return self.seconds - self.baseline_s


def run_workload(
    cluster: Any,
    kind: str,
    args: Sequence[str],
    plan: Sequence[Fault],
    workdir: Path,
    timeout_s: float = 600,
) -> tuple[dict[str, Any], list[FaultRecord]]:
    """Run one workload driver in the head's namespace while ``plan`` is injected."""
    out = workdir / f"{kind}-{len(plan)}-{time.monotonic_ns()}.json"
    actor_file = str(workdir / f"actors-{time.monotonic_ns()}.json")
    argv = [
        "ip", "netns", "exec", cluster.net.hosts["h1"].ns,
        sys.executable, "-m", "rayops.testing.chaos_workloads", kind,
        "--temp-dir", cluster.temp_dir("h1"), "--out", str(out),
        "--actor-file", actor_file, *args,
    ]  # fmt: skip
    target = ChaosTarget(cluster, actor_file)
    controller = Controller(target, plan)
    log = open(workdir / f"{kind}-driver.log", "a")  # noqa: SIM115 (closed below)
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        controller.start()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        finally:
            controller.stop.set()
            controller.join(timeout=60)
            target.close()
    finally:
        log.close()
    if proc.returncode != 0 or not out.exists():
        tail = (workdir / f"{kind}-driver.log").read_text()[-2000:]
        raise RuntimeError(f"{kind} driver exited {proc.returncode}:\n{tail}")
    return json.loads(out.read_text()), controller.records


def run_suite(
    cluster: Any,
    workdir: Path,
    kinds: Sequence[str],
    *,
    tasks: int = 2000,
    object_kb: int = 0,
    items: int = 300,
    period_s: float = 1.5,
    seed: int = 1,
) -> list[WorkloadResult]:
    """Each workload: a baseline, then a run under faults. Returns one result per workload."""
    results = []
    workloads = [
        ("mapreduce", ["--tasks", str(tasks), "--object-kb", str(object_kb)]),
        ("pipeline", ["--items", str(items)]),
    ]
    for name, args in workloads:
        base, _ = run_workload(cluster, name, args, (), workdir)
        duration = max(3.0, float(base["seconds"]) * 1.5)
        usable = [k for k in kinds if name == "pipeline" or k != "kill_actor"]
        plan = plan_faults(usable, duration, period_s, seed)
        got, records = run_workload(cluster, name, args, plan, workdir)
        results.append(
            WorkloadResult(
                name,
                int(got["results"]),
                int(got["lost"]),
                int(got["retries"]),
                float(got["seconds"]),
                float(base["seconds"]),
                records,
            )
        )
        cluster.wait_nodes(3, timeout=60)  # every node back before the next workload
    return results


def render(results: Sequence[WorkloadResult]) -> str:
    lines = [
        f"{'workload':<10} {'faults':>6} {'results':>7} {'lost':>5} {'retries':>7} "
        f"{'baseline s':>10} {'chaos s':>8} {'extra s':>8}"
    ]
    for r in results:
        lines.append(
            f"{r.name:<10} {r.injected:>6} {r.results:>7} {r.lost:>5} {r.retries:>7} "
            f"{r.baseline_s:>10.2f} {r.seconds:>8.2f} {r.extra_s:>8.2f}"
        )
    lines.append("")
    for r in results:
        for rec in r.faults:
            f = rec.fault
            lines.append(f"  {r.name:<10} t={f.at_s:>5.1f}s {f.kind:<12} {f.node:<3} {rec.detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from rayops.testing.hosts import unavailable_reason
    from rayops.testing.netns_cluster import running_cluster

    p = argparse.ArgumentParser(
        prog="python -m rayops.testing.chaos",
        description="Run the chaos suite on a three-node namespace cluster (needs root).",
    )
    p.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma-separated kinds")
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--object-kb", type=int, default=0, help="map result size (0: inline)")
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--period-s", type=float, default=1.5)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    kinds = [k for k in args.faults.split(",") if k]
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        p.error(f"--faults: unknown kind(s) {unknown}; expected some of {', '.join(FAULT_KINDS)}")
    reason = unavailable_reason()
    if reason:
        print(f"cannot build namespace hosts here: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rayops-chaos-") as tmp:
        base = Path(tmp)
        with running_cluster(base) as cluster:
            results = run_suite(
                cluster,
                base,
                kinds,
                tasks=args.tasks,
                object_kb=args.object_kb,
                items=args.items,
                period_s=args.period_s,
                seed=args.seed,
            )
    print(render(results))
    return 1 if any(r.lost for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
