"""The decisions behind a GCS restart, without processes: the supervisor's restart policy
(node/supervisor.py), the raylet's reconnect window (raylet/gcs_link.py) and its setting
(gcs/reconnect.py)."""

from __future__ import annotations

import pytest

from rayops.gcs.reconnect import DEFAULT_RECONNECT_TIMEOUT_S, reconnect_timeout_s, retry_delay_s
from rayops.node.supervisor import MAX_FAST_FAILURES, STABLE_AFTER_S, decide
from rayops.raylet.gcs_link import GcsLink


@pytest.mark.parametrize(
    ("code", "lived", "failures", "stopping", "restart", "delay", "carried"),
    [
        (-9, 100.0, 0, False, True, 0.0, 0),  # SIGKILL after a long life: at once
        (-9, 1.0, 0, False, True, 0.0, 1),  # first fast failure: at once
        (-9, 1.0, 1, False, True, 0.1, 2),  # then backoff doubling ...
        (1, 1.0, 3, False, True, 0.4, 4),  # (exit 1: could not listen yet)
        (-11, 1.0, 10, False, True, 5.0, 11),  # ... capped at 5 s
        (-9, STABLE_AFTER_S, 10, False, True, 0.0, 0),  # a stable run resets the count
        (-9, 1.0, MAX_FAST_FAILURES, False, False, 0.0, MAX_FAST_FAILURES + 1),  # gives up
        (0, 1.0, 0, False, False, 0.0, 0),  # graceful stop
        (2, 1.0, 0, False, False, 0.0, 0),  # bad arguments or configuration
        (-15, 1.0, 0, True, False, 0.0, 0),  # we were asked to stop
    ],
)
def test_restart_policy(
    code: int,
    lived: float,
    failures: int,
    stopping: bool,
    restart: bool,
    delay: float,
    carried: int,
) -> None:
    d = decide(code, lived, failures, stopping)
    assert (d.restart, d.delay_s, d.fast_failures) == (restart, pytest.approx(delay), carried)
    assert str(abs(code)) in d.reason


def test_gcs_link_expires_only_after_a_whole_window_down() -> None:
    link = GcsLink(10.0, now=0.0)
    assert not link.expired(5.0)
    assert link.connected(True, 5.0) is False  # the first connection is no reconnection
    assert not link.expired(100.0)
    link.connected(False, 100.0)
    assert not link.expired(109.9)
    assert link.down_for(109.0) == pytest.approx(9.0)
    assert link.connected(True, 109.9) is True  # back within the window
    assert link.reconnects == 1
    assert not link.expired(200.0)
    link.connected(False, 200.0)
    link.connected(False, 205.0)  # a second failed subscription keeps the first time
    assert link.expired(210.0)


def test_a_link_that_never_came_up_expires_too() -> None:
    link = GcsLink(3.0, now=0.0)
    assert link.expired(3.0)


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, DEFAULT_RECONNECT_TIMEOUT_S),
        ({"RAYOPS_GCS_RECONNECT_TIMEOUT_S": "5"}, 5.0),
        ({"RAY_gcs_rpc_server_reconnect_timeout_s": "7.5"}, 7.5),
        (
            {"RAYOPS_GCS_RECONNECT_TIMEOUT_S": "2", "RAY_gcs_rpc_server_reconnect_timeout_s": "9"},
            2.0,
        ),
    ],
)
def test_reconnect_window_setting(env: dict[str, str], want: float) -> None:
    assert reconnect_timeout_s(env) == want


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "nan", "inf"])
def test_a_bad_reconnect_window_is_named(raw: str) -> None:
    with pytest.raises(ValueError, match="RAYOPS_GCS_RECONNECT_TIMEOUT_S") as info:
        reconnect_timeout_s({"RAYOPS_GCS_RECONNECT_TIMEOUT_S": raw})
    assert repr(raw) in str(info.value)


def test_retry_delays_grow_to_half_a_second() -> None:
    assert [retry_delay_s(i) for i in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
