"""The agent's ReportCollector: merging core-worker reports and the Prometheus text it serves.

Reports are fed as a core worker would send them; the output is read back through
prometheus_client's own exposition and parser, as a scrape would see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rayops.agent.reports import ReportCollector
from rayops.core_worker.task_metrics import (
    ST_ARGS,
    ST_FINISHED,
    ST_NODE,
    ST_SUBMITTED,
    UNCOUNTED,
    ExecutorTaskCounts,
    OwnerTaskCounts,
)
from rayops.protocol.metrics import (
    COUNTER,
    FAILED,
    FINISHED,
    GAUGE,
    HISTOGRAM,
    PENDING_NODE_ASSIGNMENT,
    RUNNING,
    RUNNING_IN_RAY_GET,
    SUBMITTED_TO_WORKER,
    MetricInfo,
    MetricSample,
    MetricsReport,
    TaskStateCount,
)
from rayops.protocol.node_messages import ReportMetrics
from rayops.rpc.framed_settings import FramedSettings

W1, W2 = b"\x01" * 16, b"\x02" * 16
STD = {"SessionName": "session_x", "NodeAddress": "10.0.0.1"}
REQS = MetricInfo("reqs", COUNTER, "Requests.", ("route",))
QLEN = MetricInfo("qlen", GAUGE, "Queue length.", ("q",))
LAT = MetricInfo("lat", HISTOGRAM, "Latency.", (), (0.1, 1.0))


def report(
    worker: bytes,
    seq: int,
    *,
    counts: tuple[TaskStateCount, ...] = (),
    metrics: tuple[MetricInfo, ...] = (),
    samples: tuple[MetricSample, ...] = (),
    full: bool = False,
) -> MetricsReport:
    return MetricsReport(worker, 100 + seq, 1, "worker", seq, full, counts, metrics, samples)


def scrape(collector: ReportCollector) -> tuple[str, dict[tuple[str, frozenset[Any]], float]]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    values = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            values[(s.name, frozenset(s.labels.items()))] = s.value
    return text, values


def key(name: str, **labels: str) -> tuple[str, frozenset[Any]]:
    return (name, frozenset({**labels, **STD}.items()))


def test_user_metrics_are_exported_with_ray_names_and_labels() -> None:
    c = ReportCollector("session_x", "10.0.0.1")
    c.h_report_metrics(
        None,
        report(
            W1,
            1,
            full=True,
            metrics=(REQS, QLEN, LAT),
            samples=(
                MetricSample("reqs", (("route", "/a"),), 3.0),
                MetricSample("qlen", (("q", "x"),), 7.0),
                MetricSample("lat", (), 0.65, 3, (1, 1, 1)),
            ),
        ),
    )
    text, v = scrape(c)
    assert "# TYPE ray_reqs_total counter" in text
    assert "# HELP ray_reqs_total Requests." in text
    assert v[key("ray_reqs_total", route="/a")] == 3.0
    assert v[key("ray_reqs", route="/a")] == 3.0  # Ray's gauge twin of a counter
    assert "# TYPE ray_qlen gauge" in text
    assert v[key("ray_qlen", q="x")] == 7.0
    assert "# TYPE ray_lat histogram" in text
    assert v[key("ray_lat_bucket", le="0.1")] == 1.0
    assert v[key("ray_lat_bucket", le="1.0")] == 2.0
    assert v[key("ray_lat_bucket", le="+Inf")] == 3.0
    assert v[key("ray_lat_count")] == 3.0
    assert v[key("ray_lat_sum")] == 0.65


def test_counter_as_gauge_can_be_turned_off() -> None:
    c = ReportCollector("session_x", "10.0.0.1", export_counter_as_gauge=False)
    c.h_report_metrics(
        None, report(W1, 1, metrics=(REQS,), samples=(MetricSample("reqs", (("route", "/"),), 1),))
    )
    _, v = scrape(c)
    assert key("ray_reqs_total", route="/") in v
    assert key("ray_reqs", route="/") not in v


def test_counters_and_histograms_sum_over_workers_and_survive_their_death() -> None:
    c = ReportCollector("session_x", "10.0.0.1")
    for w, n in ((W1, 2.0), (W2, 5.0)):
        c.h_report_metrics(
            None,
            report(
                w,
                1,
                metrics=(REQS, QLEN, LAT),
                samples=(
                    MetricSample("reqs", (("route", "/"),), n),
                    MetricSample("qlen", (("q", "x"),), n),
                    MetricSample("lat", (), n, 1, (0, 0, 1)),
                ),
            ),
        )
    _, v = scrape(c)
    assert v[key("ray_reqs_total", route="/")] == 7.0
    assert v[key("ray_qlen", q="x")] == 5.0  # the latest report wins for a gauge
    assert v[key("ray_lat_count")] == 2.0
    c.forget_worker(W2)
    _, v = scrape(c)
    assert v[key("ray_reqs_total", route="/")] == 7.0  # monotonic: W2's total is kept
    assert v[key("ray_lat_bucket", le="+Inf")] == 2.0
    assert v[key("ray_qlen", q="x")] == 2.0  # W2's gauge is gone; W1's remains
    c.forget_worker(W1)
    _, v = scrape(c)
    assert v[key("ray_reqs_total", route="/")] == 7.0
    assert key("ray_qlen", q="x") not in v
    c.forget_worker(W1)  # twice is harmless


def test_counter_never_goes_down_and_stale_reports_are_ignored() -> None:
    c = ReportCollector("session_x", "10.0.0.1")
    c.h_report_metrics(
        None, report(W1, 2, metrics=(REQS,), samples=(MetricSample("reqs", (("route", "/"),), 5),))
    )
    c.h_report_metrics(None, report(W1, 1, samples=(MetricSample("reqs", (("route", "/"),), 9),)))
    c.h_report_metrics(None, report(W1, 3, samples=(MetricSample("reqs", (("route", "/"),), 4),)))
    _, v = scrape(c)
    assert v[key("ray_reqs_total", route="/")] == 5.0


def test_samples_that_do_not_fit_their_definition_are_dropped() -> None:
    c = ReportCollector("session_x", "10.0.0.1")
    c.h_report_metrics(
        None,
        report(
            W1,
            1,
            metrics=(REQS, LAT, MetricInfo("reqs", GAUGE, "", ("route",))),
            samples=(
                MetricSample("reqs", (("other", "/"),), 1.0),  # wrong tag keys
                MetricSample("lat", (), 1.0, 1, (1,)),  # wrong bucket count
                MetricSample("unknown", (), 1.0),  # never defined
            ),
        ),
    )
    text, _ = scrape(c)
    assert "ray_reqs" not in text and "ray_lat" not in text and "unknown" not in text


@dataclass
class FakeRecord:
    """What OwnerTaskCounts needs of a core worker's TaskRecord."""

    @dataclass
    class Spec:
        name: str

    spec: Spec
    mstate: int = UNCOUNTED
    mname: str = ""
    is_retry: bool = False
    mrow: list[int] | None = None


def test_task_counts_from_owner_and_executor_become_ray_tasks() -> None:
    owner = OwnerTaskCounts()
    done, retried, queued = (FakeRecord(FakeRecord.Spec(n)) for n in ("f", "f", "g"))
    for r in (done, retried):
        owner.move(r, ST_ARGS)
        owner.move(r, ST_NODE)
        owner.move(r, ST_SUBMITTED)
    owner.move(done, ST_FINISHED)
    owner.retry(retried)  # the worker died: FAILED once, then again as a retry
    owner.move(retried, ST_SUBMITTED)
    owner.move(queued, ST_NODE)
    execu = ExecutorTaskCounts()
    execu.started(b"t1", ("f", True))
    execu.started(b"t2", ("g", False))
    assert ("g", RUNNING, 1) in [(r.name, r.state, r.count) for r in execu.rows()]
    execu.ended(b"t2")
    execu.blocked(("f", True), RUNNING_IN_RAY_GET, 1)
    counts = tuple(owner.rows() + execu.rows())

    c = ReportCollector("session_x", "10.0.0.1")
    c.h_report_metrics(None, report(W1, 1, counts=counts))
    text, v = scrape(c)
    assert "# TYPE ray_tasks gauge" in text

    def tasks(state: str, name: str, retry: str, source: str) -> float:
        return v[key("ray_tasks", State=state, Name=name, IsRetry=retry, Source=source)]

    assert tasks(FINISHED, "f", "0", "owner") == 1
    assert tasks(FAILED, "f", "0", "owner") == 1
    assert tasks(SUBMITTED_TO_WORKER, "f", "0", "owner") == 0
    assert tasks(SUBMITTED_TO_WORKER, "f", "1", "owner") == 1
    assert tasks(PENDING_NODE_ASSIGNMENT, "g", "0", "owner") == 1
    assert tasks(RUNNING, "f", "1", "executor") == 0  # it is blocked in get()
    assert tasks(RUNNING_IN_RAY_GET, "f", "1", "executor") == 1
    assert tasks(SUBMITTED_TO_WORKER, "f", "1", "executor") == -1
    assert tasks(RUNNING, "g", "0", "executor") == 0  # finished: the series stays, at 0
    # Summed over both sides, the running retry counts once, as RUNNING_IN_RAY_GET.
    by_state: dict[str, float] = {}
    for (name, labels), n in v.items():
        if name == "ray_tasks":
            state = dict(labels)["State"]
            by_state[state] = by_state.get(state, 0) + n
    assert by_state[SUBMITTED_TO_WORKER] == 0
    assert by_state[RUNNING_IN_RAY_GET] == 1

    # A worker that died takes its task counts with it.
    c.forget_worker(W1)
    _, v = scrape(c)
    assert not [k for k in v if k[0] == "ray_tasks"]


def test_forget_connection_forgets_its_workers() -> None:
    @dataclass
    class Conn:
        context: dict[str, Any] = field(default_factory=dict)

    conn = Conn()
    c = ReportCollector("s", "n")
    c.h_report_metrics(conn, report(W1, 1))
    c.h_report_metrics(None, report(W2, 1))
    assert sorted(c.worker_ids()) == [W1, W2]
    c.forget_connection(conn)
    assert c.worker_ids() == [W2]


def test_reporter_sends_changes_and_a_full_report_on_each_new_connection() -> None:
    """The core worker's reporter against a real framed server holding a ReportCollector."""
    import asyncio
    from types import SimpleNamespace

    from rayops.core_worker.metrics_reporter import MetricsReporter
    from rayops.rpc import framed
    from rayops.util.metrics import Counter

    token = b"reporter-token"
    name = "ray_reporter_test_things_total"
    counter = Counter("reporter_test_things", "Things.")

    async def wait_value(col: ReportCollector, want: float) -> None:
        got = None
        for _ in range(300):
            got = next((n for (k, _), n in scrape(col)[1].items() if k == name), None)
            if got == want:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{name} is {got}, expected {want}")

    async def agent(col: ReportCollector, port: int = 0) -> framed.FramedServer:
        handlers = {ReportMetrics: lambda conn, m: col.h_report_metrics(conn, m.report)}
        return await framed.serve(
            "127.0.0.1", port, token, handlers, on_close=col.forget_connection
        )

    async def main() -> None:
        col = ReportCollector("s", "127.0.0.1")
        server = await agent(col)
        port = server.sockets[0].getsockname()[1]
        cw = SimpleNamespace(
            worker_id=W1, job_id=3, mode="worker", token=token, framed_settings=FramedSettings()
        )
        rep = MetricsReporter(cw, ("127.0.0.1", port))  # type: ignore[arg-type]
        counter.inc(2)
        assert await rep.report_once()
        await wait_value(col, 2.0)
        assert not await rep.report_once()  # nothing changed: nothing sent
        counter.inc()
        assert await rep.report_once()
        await wait_value(col, 3.0)

        # The agent restarts: the next report goes over a new connection and is complete, so
        # the new agent has the counter without it changing again.
        server.close()
        assert rep._conn is not None
        rep._conn.close()
        await asyncio.sleep(0.05)
        col2 = ReportCollector("s", "127.0.0.1")
        server = await agent(col2, port)
        assert await rep.report_once()
        await wait_value(col2, 3.0)
        rep.close()
        server.close()

    loop = framed.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
