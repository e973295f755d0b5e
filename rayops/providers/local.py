"""Ray's ``provider: {type: local}`` as a pool of SSH hosts.

The head and the first ``static`` entries of ``worker_ips`` (what ``min_workers`` needs;
``rayops up`` brings them up) are machines from the start. The remaining ``worker_ips`` are
the pool: ``launch`` takes free pool hosts and hands them to a ``PoolProvisioner`` in a
background thread (the launcher's facts -> plan -> apply, which installs rayops and starts the
node's raylet and agent: ``rayops.launcher.pool_provisioner``); the host is listed by
``non_terminated`` (``running``) once that succeeded, so a failed launch is a launch error of
its request, with the host's cause. ``terminate`` stops the node's daemons, in the
background too, and returns the host to the pool.

A host that fails to provision (unreachable, an Ansible task failing) is reported by
``poll_errors`` with its cause and rests for a backoff (``retry_backoff_s``, doubling per
consecutive failure of that host, capped at ``max_backoff_s``); launches use the other free
hosts first, and after the backoff the host is eligible again when none is left.

Without a provisioner (``provisioner=None``) launches succeed at once: the pool without I/O,
which tests and the launcher's own bookkeeping use.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

from rayops.providers.base import (
    TAG_CLUSTER,
    TAG_NODE_TYPE,
    TAG_REQUEST,
    TAG_ROLE,
    CloudInstance,
    NodeProvider,
    ProviderError,
)

if TYPE_CHECKING:
    from rayops.launcher.spec import ClusterSpec

__all__ = ["HostState", "LocalNodeProvider", "PoolProvisioner", "static_worker_count"]

log = logging.getLogger(__name__)


class PoolProvisioner(Protocol):
    """Turns pool hosts into rayops nodes and back. Called from the provider's background
    thread only, one call at a time."""

    def provision(self, addresses: Sequence[str], node_type: str) -> Mapping[str, str | None]:
        """Install and start a worker node on each address; per address the failure's cause
        (one line) or None on success."""

    def stop(self, address: str) -> str | None:
        """Stop the node's daemons; the failure's cause or None."""


def static_worker_count(spec: ClusterSpec) -> int:
    """How many ``worker_ips`` are static nodes (``rayops up`` starts them): all of them
    without autoscaling; else the worker type's ``min_workers`` (or the cluster's)."""
    if not autoscaling_enabled(spec):
        return len(spec.provider.worker_ips)
    wtype = spec.worker_node_type()
    floor = spec.available_node_types[wtype].min_workers if wtype else 0
    floor = max(floor, spec.min_workers or 0)
    return min(floor, len(spec.provider.worker_ips))


def autoscaling_enabled(spec: ClusterSpec) -> bool:
    """True when the spec lets the worker count move: a worker node type whose max_workers
    is above its min_workers, or a cluster max_workers above the static floor."""
    wtype = spec.worker_node_type()
    t = spec.available_node_types.get(wtype) if wtype else None
    low = max(t.min_workers if t else 0, spec.min_workers or 0)
    if t is not None and t.max_workers is not None and t.max_workers > low:
        return True
    return spec.max_workers is not None and spec.max_workers > low


@dataclass
class HostState:
    """A pool host's history: consecutive failures and when it may be tried again."""

    failures: int = 0
    retry_at: float = 0.0
    last_cause: str = ""


class LocalNodeProvider(NodeProvider):
    #: A listed machine already runs its rayops node: launching provisioned it.
    provisions_nodes = True

    def __init__(
        self,
        head_ip: str,
        worker_ips: list[str],
        head_node_type: str | None = None,
        worker_node_type: str | None = None,
        external_head_ip: str | None = None,
        cluster_name: str = "",
        clock: Callable[[], float] = time.time,
        *,
        static: int | None = None,
        provisioner: PoolProvisioner | None = None,
        retry_backoff_s: float = 5.0,
        max_backoff_s: float = 300.0,
    ) -> None:
        self._clock = clock
        self._cluster = cluster_name
        self._worker_type = worker_node_type or "worker"
        self._provisioner = provisioner
        self._backoff = retry_backoff_s
        self._max_backoff = max_backoff_s
        self._lock = threading.Lock()
        self._nodes: dict[str, CloudInstance] = {}
        self._requests: set[str] = set()
        self._errors: list[ProviderError] = []
        self._hosts: dict[str, HostState] = {}
        self._stopping: set[str] = set()  # hosts whose daemons are being stopped
        self._provisioning: dict[str, CloudInstance] = {}  # taken, not listed until up
        n_static = len(worker_ips) if static is None else static
        self._pool = list(worker_ips[n_static:])
        head_type = head_node_type or "head"
        self._nodes[head_ip] = CloudInstance(
            head_ip,
            head_type,
            "",
            head_ip,
            external_head_ip or head_ip,
            self._tags("head", head_type, ""),
            True,
        )
        for ip in worker_ips[:n_static]:
            self._nodes[ip] = CloudInstance(
                ip, self._worker_type, "", ip, ip, self._tags("worker", self._worker_type, ""), True
            )
        self._work: queue.Queue[tuple[str, list[str], str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_spec(
        cls,
        spec: ClusterSpec,
        provisioner: PoolProvisioner | None = None,
        clock: Callable[[], float] = time.time,
        retry_backoff_s: float = 5.0,
    ) -> LocalNodeProvider:
        """The pool of a cluster spec's ``provider`` section."""
        return cls(
            spec.provider.head_ip,
            list(spec.provider.worker_ips),
            spec.head_node_type,
            spec.worker_node_type(),
            spec.provider.external_head_ip,
            cluster_name=spec.cluster_name,
            clock=clock,
            static=static_worker_count(spec),
            provisioner=provisioner,
            retry_backoff_s=retry_backoff_s,
        )

    def _tags(self, role: str, node_type: str, request_id: str) -> dict[str, str]:
        tags = {TAG_CLUSTER: self._cluster, TAG_ROLE: role, TAG_NODE_TYPE: node_type}
        if request_id:
            tags[TAG_REQUEST] = request_id
        return tags

    # ---- the interface ---------------------------------------------------------------
    def non_terminated(self) -> dict[str, CloudInstance]:
        with self._lock:
            return dict(self._nodes)

    def launch(self, node_type: str, count: int, request_id: str) -> None:
        if count < 0:
            raise ValueError(f"launch: count must be >= 0, got {count}")
        if node_type != self._worker_type:
            raise ValueError(
                f"launch: the local pool holds only node type {self._worker_type!r}, "
                f"got {node_type!r}"
            )
        with self._lock:
            if request_id in self._requests:
                return
            self._requests.add(request_id)
            now = self._clock()
            taken = [h for h in self._free_hosts(now)][:count]
            # With a provisioner a host is listed once its node runs (a launch "may return
            # before the machines exist"); until then it is only taken from the pool.
            listing = self._nodes if self._provisioner is None else self._provisioning
            for ip in taken:
                listing[ip] = CloudInstance(
                    ip,
                    node_type,
                    request_id,
                    ip,
                    ip,
                    self._tags("worker", node_type, request_id),
                    self._provisioner is None,
                )
            if len(taken) < count:
                self._errors.append(
                    ProviderError(
                        "launch",
                        request_id,
                        self._shortage(count - len(taken), count, now),
                        now,
                        node_type=node_type,
                        count=count - len(taken),
                    )
                )
        if taken and self._provisioner is not None:
            self._start_thread()
            self._work.put(("provision", taken, request_id))

    def terminate(self, node_ids: Sequence[str], request_id: str) -> None:
        stopping = []
        with self._lock:
            for node_id in node_ids:
                node = self._nodes.get(node_id)
                if node is None or node.role == "head":
                    continue
                del self._nodes[node_id]
                if node_id not in self._pool:
                    self._pool.append(node_id)  # a static worker joins the pool once stopped
                stopping.append(node_id)
        if stopping and self._provisioner is not None:
            self._start_thread()
            self._work.put(("stop", stopping, request_id))

    def poll_errors(self) -> list[ProviderError]:
        with self._lock:
            errors, self._errors = self._errors, []
        return errors

    def set_tags(self, node_id: str, tags: Mapping[str, str]) -> None:
        with self._lock:
            node = self._nodes.get(node_id)
            if node is not None:
                self._nodes[node_id] = replace(node, tags={**node.tags, **tags})

    # ---- pool bookkeeping --------------------------------------------------------------
    def hosts(self) -> dict[str, HostState]:
        """Each pool host that failed at least once, with its retry time (for status)."""
        with self._lock:
            return {a: replace(s) for a, s in self._hosts.items() if s.failures}

    def _free_hosts(self, now: float) -> list[str]:
        """Free pool hosts whose rest is over, hosts that never failed first: a host that
        failed is tried again only when no other free host is left."""
        busy = set(self._nodes) | set(self._provisioning) | self._stopping
        free = [
            h
            for h in self._pool
            if h not in busy and self._hosts.get(h, HostState()).retry_at <= now
        ]
        return sorted(free, key=lambda h: self._hosts.get(h, HostState()).failures)

    def _shortage(self, missing: int, count: int, now: float) -> str:
        resting = sorted(
            (s.retry_at, a) for a, s in self._hosts.items() if s.retry_at > now and a in self._pool
        )
        why = f"the local pool has no free host for {missing} of {count} node(s)"
        if resting:
            at, host = resting[0]
            why += (
                f"; {len(resting)} host(s) rest after failing (next: {host} in "
                f"{at - now:.0f} s: {self._hosts[host].last_cause})"
            )
        else:
            why += "; add hosts to provider.worker_ips"
        return why

    # ---- the background thread ---------------------------------------------------------
    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._run, name="rayops-pool-provisioner", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background thread after the work in hand (a running playbook finishes)."""
        if self._thread is not None:
            self._work.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            what, hosts, request_id = item
            try:
                if what == "provision":
                    self._provision(hosts, request_id)
                else:
                    self._stop(hosts, request_id)
            except Exception as err:  # a bug in a provisioner must not kill the pool
                log.exception("pool %s of %s failed", what, hosts)
                self._fail_all(what, hosts, request_id, f"{type(err).__name__}: {err}")

    def _provision(self, hosts: list[str], request_id: str) -> None:
        assert self._provisioner is not None
        log.info("provisioning %s (request %s)", ", ".join(hosts), request_id)
        results = self._provisioner.provision(hosts, self._worker_type)
        with self._lock:
            now = self._clock()
            for host in hosts:
                cause = results.get(host, "the provisioner returned no result")
                node = self._provisioning.pop(host, None)
                if cause is None:
                    self._hosts.pop(host, None)
                    if node is not None:
                        self._nodes[host] = replace(node, running=True)
                    continue
                self._rest(host, cause, now)
                self._errors.append(
                    ProviderError(
                        "launch",
                        request_id,
                        f"{host}: {cause} (this host is retried in "
                        f"{self._hosts[host].retry_at - now:.0f} s; other free hosts are used "
                        "meanwhile)",
                        now,
                        node_type=self._worker_type,
                        count=1,
                        # Another free host can take the retry at once: no need to wait.
                        retry_now=bool(self._free_hosts(now)),
                    )
                )

    def _rest(self, host: str, cause: str, now: float) -> None:
        st = self._hosts.setdefault(host, HostState())
        st.failures += 1
        st.last_cause = cause
        st.retry_at = now + min(self._max_backoff, self._backoff * 2 ** (st.failures - 1))

    def _stop(self, hosts: list[str], request_id: str) -> None:
        assert self._provisioner is not None
        with self._lock:
            self._stopping |= set(hosts)
        failed = []
        for host in hosts:
            cause = self._provisioner.stop(host)
            if cause is not None:
                failed.append(host)
                log.warning("stopping %s failed: %s", host, cause)
                with self._lock:
                    self._errors.append(
                        ProviderError(
                            "terminate",
                            request_id,
                            f"{host}: {cause}",
                            self._clock(),
                            node_type=self._worker_type,
                            node_ids=(host,),
                        )
                    )
                    self._rest(host, f"could not stop it: {cause}", self._clock())
            with self._lock:
                self._stopping.discard(host)

    def _fail_all(self, what: str, hosts: list[str], request_id: str, cause: str) -> None:
        with self._lock:
            now = self._clock()
            for host in hosts:
                if what == "provision":
                    self._provisioning.pop(host, None)
                    self._rest(host, cause, now)
                self._stopping.discard(host)
            kind: Literal["launch", "terminate"] = "launch" if what == "provision" else "terminate"
            self._errors.append(
                ProviderError(
                    kind,
                    request_id,
                    f"{', '.join(hosts)}: {cause}",
                    now,
                    node_type=self._worker_type,
                    count=len(hosts) if kind == "launch" else 0,
                    node_ids=tuple(hosts) if kind == "terminate" else (),
                )
            )
