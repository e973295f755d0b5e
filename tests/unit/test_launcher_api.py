"""The launcher's public surface (``rayops.launcher``): what the CLI and the autoscaler call."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import rayops.launcher as launcher

EXPECTED = {
    "Cluster", "ClusterSpecError", "Events", "HostFailure", "LauncherError", "Terminal",
    "UpOptions", "attach", "cluster_status", "create_or_update_cluster", "get_head_node_ip",
    "get_worker_node_ips", "open_cluster", "rsync_down", "rsync_up", "run_on_cluster", "submit",
    "teardown_cluster",
}  # fmt: skip
VERBS = EXPECTED - {"Cluster", "ClusterSpecError", "Events", "HostFailure", "LauncherError",
                    "Terminal", "UpOptions", "open_cluster"}  # fmt: skip


def test_public_names_are_listed_and_resolve() -> None:
    assert set(launcher.__all__) == EXPECTED
    for name in launcher.__all__:
        assert getattr(launcher, name) is not None, name
    assert set(dir(launcher)) >= EXPECTED


def test_every_verb_takes_an_open_cluster_first() -> None:
    import rayops.launcher.up  # noqa: F401  (a submodule must not shadow a public name)

    for name in sorted(VERBS):
        assert callable(getattr(launcher, name)), name
        params = list(inspect.signature(getattr(launcher, name)).parameters)
        assert params[0] == "cluster", (name, params)


def test_the_library_never_prints() -> None:
    """Output goes through Events callbacks; the CLI renders (facts_probe.py runs on hosts)."""
    root = Path(launcher.__file__).parent
    offenders = []
    for path in sorted(root.glob("*.py")):
        if path.name == "facts_probe.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "print":
                offenders.append(f"{path.name}:{node.lineno} print")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("stdout", "stderr")
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            ):
                offenders.append(f"{path.name}:{node.lineno} sys.{node.attr}")
    assert offenders == []
