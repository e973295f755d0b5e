"""`rayops submit`: ray submit's options rayops does not have are refused by name, before any
spec is read or host reached (the real CLI in a subprocess)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "flag", [["--tmux"], ["--screen"], ["--stop"], ["--start"], ["--port-forward", "8265"],
             ["--cluster-name", "x"], ["--no-config-cache"]],
)  # fmt: skip
def test_ray_submit_options_rayops_lacks_are_refused_by_name(flag: list[str]) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "rayops.cli.main", "submit", "no-such.yaml", *flag, "x.py"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 1
    assert f"option {flag[0]} is not supported" in res.stderr
    assert "Traceback" not in res.stderr and "no-such.yaml" not in res.stderr
