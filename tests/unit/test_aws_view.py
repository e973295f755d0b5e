"""merge_view: how the aws provider corrects EC2's eventually consistent listing, as a table."""

from __future__ import annotations

import pytest

from rayops.providers.aws import RecentLaunch, merge_view
from rayops.providers.base import CloudInstance

WINDOW = 60.0
NOW = 1000.0


def inst(node_id: str) -> CloudInstance:
    return CloudInstance(node_id, "cpu", "r1", "10.0.0.1", "", {}, True)


@pytest.mark.parametrize(
    ("listed_state", "launched_ago", "terminated_ago", "in_view", "why"),
    [
        ("running", None, None, True, "EC2 lists it live"),
        ("stopped", None, None, True, "stopped is not terminated"),
        ("pending", 5.0, None, True, "launched and listed"),
        ("shutting-down", None, None, False, "EC2 says it is going"),
        ("terminated", None, None, False, "EC2 says it is gone"),
        ("running", None, 10.0, False, "we terminated it; EC2 lags"),
        ("running", None, 100.0, True, "past the window EC2 is believed"),
        (None, 5.0, None, True, "we launched it; EC2 does not list it yet"),
        (None, 100.0, None, False, "past the window: never listed, so gone"),
        ("terminated", 5.0, None, False, "launched, then terminated by someone else"),
        (None, 5.0, 1.0, False, "launched and terminated by us before EC2 listed it"),
    ],
)
def test_merge_view(
    listed_state: str | None,
    launched_ago: float | None,
    terminated_ago: float | None,
    in_view: bool,
    why: str,
) -> None:
    listed = {} if listed_state is None else {"i-1": (inst("i-1"), listed_state)}
    launched = (
        {} if launched_ago is None else {"i-1": RecentLaunch(inst("i-1"), NOW - launched_ago)}
    )
    terminated = {} if terminated_ago is None else {"i-1": NOW - terminated_ago}
    view = merge_view(listed, launched, terminated, NOW, WINDOW)
    assert ("i-1" in view) is in_view, why
