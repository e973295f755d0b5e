"""The SSH-pool provider: free hosts provisioned in the background, failures reported with
their cause, a failing host rested with backoff while another free host is used."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from rayops.providers.local import LocalNodeProvider
from rayops.testing.waiting import wait_for


def wait(check: Callable[[], object], what: str) -> None:
    wait_for(what, check, timeout=10)


class ScriptedProvisioner:
    """A PoolProvisioner whose hosts fail with a given cause (the real one runs Ansible)."""

    def __init__(self, failing: Mapping[str, str]) -> None:
        self.failing = dict(failing)
        self.provisioned: list[str] = []
        self.stopped: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def provision(self, addresses: Sequence[str], node_type: str) -> Mapping[str, str | None]:
        self.gate.wait(10)
        self.provisioned += addresses
        return {a: self.failing.get(a) for a in addresses}

    def stop(self, address: str) -> str | None:
        self.stopped.append(address)
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_failed_host_is_reported_rested_and_another_used_then_retried() -> None:
    clock = Clock()
    prov = ScriptedProvisioner({"10.0.0.3": "unreachable: connection refused (port 22)"})
    p = LocalNodeProvider(
        "10.0.0.1",
        ["10.0.0.2", "10.0.0.3", "10.0.0.4"],
        "head",
        "pool",
        clock=clock,
        static=1,
        provisioner=prov,
        retry_backoff_s=10.0,
    )
    try:
        assert set(p.non_terminated()) == {"10.0.0.1", "10.0.0.2"}  # head + static worker
        prov.gate.clear()
        p.launch("pool", 1, "r1")
        assert "10.0.0.3" not in p.non_terminated()  # listed once its node runs
        prov.gate.set()
        errors: list = []
        wait(lambda: errors.extend(p.poll_errors()) or errors, "the failure reported")
        (err,) = errors
        assert (err.kind, err.request_id, err.count, err.node_type) == ("launch", "r1", 1, "pool")
        assert "10.0.0.3: unreachable: connection refused" in err.cause
        assert "retried in 10 s" in err.cause
        assert err.retry_now  # 10.0.0.4 is free: the autoscaler need not wait its backoff
        p.launch("pool", 1, "r2")  # the resting host is skipped: the next free one is used
        wait(
            lambda: (
                p.non_terminated().get("10.0.0.4", None) is not None
                and p.non_terminated()["10.0.0.4"].running
            ),
            "10.0.0.4 provisioned",
        )
        assert p.poll_errors() == []
        p.launch("pool", 1, "r3")  # nothing free: the cause names the resting host
        (short,) = p.poll_errors()
        assert "no free host" in short.cause and "10.0.0.3 in 10 s" in short.cause
        assert not short.retry_now
        clock.now += 10.0  # its backoff is over: it is tried again (and fails again: 20 s)
        prov.failing.clear()
        p.launch("pool", 1, "r4")
        wait(
            lambda: (
                p.non_terminated().get("10.0.0.3") is not None
                and p.non_terminated()["10.0.0.3"].running
            ),
            "10.0.0.3 retried",
        )
        assert prov.provisioned == ["10.0.0.3", "10.0.0.4", "10.0.0.3"]
        p.terminate(["10.0.0.4", "10.0.0.1"], "t1")  # the head is never terminated
        wait(lambda: prov.stopped == ["10.0.0.4"], "10.0.0.4 stopped")
        assert set(p.non_terminated()) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    finally:
        p.close()


def test_launch_is_idempotent_while_provisioning() -> None:
    prov = ScriptedProvisioner({})
    prov.gate.clear()
    p = LocalNodeProvider("h", ["a", "b"], "head", "pool", static=0, provisioner=prov)
    try:
        p.launch("pool", 1, "r1")
        p.launch("pool", 1, "r1")
        p.launch("pool", 1, "r2")  # "a" is taken while it is provisioned: "b" is used
        prov.gate.set()
        wait(lambda: {"a", "b"} <= set(p.non_terminated()), "a and b provisioned")
        wait(lambda: p.non_terminated()["a"].running, "a provisioned")
        assert sorted(prov.provisioned) == ["a", "b"]
        assert p.non_terminated()["a"].request_id == "r1"
    finally:
        p.close()
