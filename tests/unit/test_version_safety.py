"""Version safety: the GCS refuses a node whose major.minor differs from its own."""

from __future__ import annotations

import pytest

from rayops.gcs.errors import FailedPrecondition
from rayops.gcs.node_table import check_version_compatible


def test_patch_differences_are_allowed() -> None:
    check_version_compatible("1.4.0", "1.4.7", "ab" * 28)


@pytest.mark.parametrize("node", ["1.5.0", "2.4.0", "0.4.1"])
def test_major_minor_mismatch_is_refused_naming_both(node: str) -> None:
    with pytest.raises(FailedPrecondition) as info:
        check_version_compatible("1.4.0", node, "ab" * 28)
    assert "1.4.0" in str(info.value) and node in str(info.value)
