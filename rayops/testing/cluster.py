"""A multi-node rayops cluster on one machine, for tests and benchmarks.

Every node is real: its own raylet process (the head also runs the GCS), its own
temp dir (session, logs, spill), its own shared-memory store and resources, all on
127.0.0.1 with separate ports. Daemons are tied to the creating process (they exit
if it dies) and ``shutdown()`` stops them.

    cluster = Cluster(base_dir)
    cluster.add_node(num_cpus=1, resources={"special": 1})
    cluster.connect()          # rayops.init() against this cluster
    ...
    cluster.shutdown()
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from rayops.node.processes import NodeOptions, StartedNode, start_node, wait_procs
from rayops.node.session import TOKEN_FILE
from rayops.rpc import tls as rpc_tls
from rayops.rpc.tls import TlsFiles


@dataclass
class ClusterNode:
    started: StartedNode
    temp_dir: str

    @property
    def node_id(self) -> str:
        return self.started.record.node_id

    @property
    def raylet_pid(self) -> int:
        return self.started.procs["raylet"].pid


class Cluster:
    def __init__(
        self,
        base_dir: str,
        *,
        head_cpus: float = 1,
        head_resources: dict[str, float] | None = None,
        object_store_memory: int = 256 * 2**20,
        node_ip: str = "127.0.0.1",
        tls: TlsFiles | None = None,
        token: str | None = None,
        gcs_storage: str | None = None,
        redis_password: str | None = None,
    ) -> None:
        self._base = base_dir
        # The head's: a chosen cluster token, and where its GCS persists (None: as the
        # environment says, else the session directory's SQLite file).
        self._gcs_storage, self._redis_password = gcs_storage, redis_password
        self._head_token = token
        self._tls = tls  # every node's TLS files (rpc/tls.py); None: off
        if tls is not None:  # this process's own GCS calls (wait_for_nodes ...) too
            rpc_tls.configure(tls)
        self._ip = node_ip
        self._store_mem = object_store_memory
        self.nodes: list[ClusterNode] = []
        head = self._start(head_cpus, head_resources or {}, head=True)
        self.head = head
        self.address = head.started.record.gcs_address
        self.token = head.started.token
        self.token_file = os.path.join(head.started.record.session_dir, TOKEN_FILE)

    def _start(
        self, cpus: float, resources: dict[str, float], *, head: bool, **kw: Any
    ) -> ClusterNode:
        temp_dir = os.path.join(self._base, f"node{len(self.nodes)}")
        started = start_node(
            NodeOptions(
                node_ip=self._ip,
                head=head,
                gcs_address=None if head else self.address,
                num_cpus=cpus,
                num_gpus=kw.get("num_gpus", 0),
                resources=resources,
                object_store_memory=kw.get("object_store_memory") or self._store_mem,
                temp_dir=temp_dir,
                labels=kw.get("labels") or {},
                token=self._head_token if head else self.token,
                # Any free port (tests run side by side); a JobSubmissionClient waits for it.
                dashboard_port=0,
                wait_dashboard=False,
                tls=self._tls,
                gcs_storage=self._gcs_storage if head else None,
                redis_password=self._redis_password if head else None,
            )
        )
        node = ClusterNode(started, temp_dir)
        self.nodes.append(node)
        return node

    def add_node(
        self,
        num_cpus: float = 1,
        resources: dict[str, float] | None = None,
        *,
        num_gpus: float = 0,
        object_store_memory: int | None = None,
        labels: dict[str, str] | None = None,
    ) -> ClusterNode:
        return self._start(
            num_cpus,
            resources or {},
            head=False,
            num_gpus=num_gpus,
            object_store_memory=object_store_memory,
            labels=labels,
        )

    def connect(self, **init_kwargs: Any) -> Any:
        """``rayops.init()`` a driver in this process against the cluster (head node)."""
        import rayops

        # The token is found in the head's temp dir (session_latest/cluster_token).
        return rayops.init(self.address, _temp_dir=self.head.temp_dir, **init_kwargs)

    def gcs_pid(self, timeout: float = 10.0) -> int:
        """The GCS process's pid (``procs["gcs"]`` is its supervisor, node/supervisor.py)."""
        from rayops.node.supervisor import supervised_pid

        return supervised_pid(self.head.started.procs["gcs"].pid, timeout)

    def kill_raylet(self, node: ClusterNode, sig: int = signal.SIGKILL) -> None:
        """Kill a node's raylet (its workers follow it)."""
        os.kill(node.raylet_pid, sig)

    def remove_node(self, node: ClusterNode) -> None:
        """Stop a node gracefully: it leaves the cluster at once."""
        p = node.started.procs["raylet"]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        wait_procs(node.started.procs, timeout=10)

    def wait_for_nodes(self, alive: int, timeout: float = 30.0) -> None:
        from rayops.gcs.client import GcsClient

        deadline = time.monotonic() + timeout
        with GcsClient(self.address, self.token, timeout=5) as gcs:
            while True:
                n = len(gcs.get_all_nodes(alive_only=True))
                if n == alive:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{n} nodes alive after {timeout} s, expected {alive}")
                time.sleep(0.05)

    def shutdown(self) -> None:
        from rayops.objectstore._tmpfs import remove_store_dir

        for node in reversed(self.nodes):
            for name in ("raylet", "gcs", "dashboard"):
                p = node.started.procs.get(name)
                if p is not None and p.poll() is None:
                    p.send_signal(signal.SIGTERM)
        for node in reversed(self.nodes):
            wait_procs(node.started.procs, timeout=10)
            if node.started.watch_fd is not None:
                try:
                    os.close(node.started.watch_fd)
                except OSError:
                    pass
            remove_store_dir(node.started.record.shm_dir)
        self.nodes.clear()
