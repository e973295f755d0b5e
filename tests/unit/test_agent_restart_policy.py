"""The raylet's restart backoff for its node agent (rayops/raylet/agent_process.py)."""

from __future__ import annotations

import itertools

from rayops.raylet.agent_process import MAX_RESTART_DELAY_S, restart_delay


def test_backoff_doubles_from_half_a_second_up_to_a_cap() -> None:
    assert restart_delay(0) == 0.0
    delays = [restart_delay(n) for n in range(1, 10)]
    assert delays[0] == 0.5
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert delays[-1] == MAX_RESTART_DELAY_S
