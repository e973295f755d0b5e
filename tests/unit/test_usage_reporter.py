"""The raylet's usage reports: only on change, at most one per window, retried on failure."""

from __future__ import annotations

import asyncio

from rayops.raylet.usage_reporter import UsageReport, UsageReporter


def _report(free: float) -> UsageReport:
    return UsageReport({"CPU": 1.0}, {"CPU": free}, 0, 100, 0, ())


class Node:
    """What the reporter reads (the node's usage) and where it sends (the GCS)."""

    def __init__(self) -> None:
        self.free = 1.0
        self.sent: list[UsageReport] = []
        self.fail = 0

    def read(self) -> UsageReport:
        return _report(self.free)

    async def send(self, report: UsageReport) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("GCS unreachable")
        self.sent.append(report)


async def _settle(reporter: UsageReporter, node: Node, want: int) -> None:
    for _ in range(200):
        if len(node.sent) >= want:
            return
        await asyncio.sleep(0.005)


def test_changes_within_a_window_make_one_report_and_nothing_while_idle() -> None:
    async def main() -> None:
        node = Node()
        reporter = UsageReporter(node.read, node.send, coalesce_s=0.2, retry_s=0.01)
        stop = asyncio.Event()
        task = asyncio.ensure_future(reporter.run(stop))
        reporter.mark()
        await _settle(reporter, node, 1)
        for free in (0.0, 1.0, 0.0):  # a lease granted, returned, granted: inside the window
            node.free = free
            reporter.mark()
        await _settle(reporter, node, 2)
        assert node.sent == [_report(1.0), _report(0.0)]
        # Marked but unchanged since the last report: nothing is sent.
        reporter.mark()
        await asyncio.sleep(0.3)
        assert len(node.sent) == 2
        assert reporter.sent == 2
        stop.set()
        reporter.mark()
        await asyncio.wait_for(task, 2)

    asyncio.run(main())


def test_a_failed_report_is_sent_again() -> None:
    async def main() -> None:
        node = Node()
        node.fail = 2
        reporter = UsageReporter(node.read, node.send, coalesce_s=0.01, retry_s=0.01)
        stop = asyncio.Event()
        task = asyncio.ensure_future(reporter.run(stop))
        reporter.mark()
        await _settle(reporter, node, 1)
        assert node.sent == [_report(1.0)]
        stop.set()
        reporter.mark()
        await asyncio.wait_for(task, 2)

    asyncio.run(main())
