"""provider: {type: external, module: pkg.mod:Class}: the user's class is loaded, checked and
built through make_provider; every way it can be wrong names provider.module."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rayops.exceptions import RayOpsConfigError
from rayops.launcher.spec import ClusterSpec
from rayops.providers import make_provider
from rayops.providers.external import load_provider_class

PROVIDER_MODULE = '''
from rayops.providers.base import CloudInstance, NodeProvider, TAG_REQUEST


class RackProvider(NodeProvider):
    """A user's provider: a rack of numbered slots (what it does is the user's business)."""

    def __init__(self, provider_config, cluster_name, node_configs):
        self.provider_config = provider_config
        self.cluster_name = cluster_name
        self.node_configs = node_configs
        self.machines = {}

    def launch(self, node_type, count, request_id):
        if any(m.request_id == request_id for m in self.machines.values()):
            return
        for i in range(count):
            node_id = f"{self.provider_config['rack']}-{len(self.machines)}"
            self.machines[node_id] = CloudInstance(
                node_id, node_type, request_id, "", "", {TAG_REQUEST: request_id}, True
            )

    def terminate(self, node_ids, request_id):
        for node_id in node_ids:
            self.machines.pop(node_id, None)

    def non_terminated(self):
        return dict(self.machines)

    def poll_errors(self):
        return []

    def set_tags(self, node_id, tags):
        pass


class Half:
    def launch(self, node_type, count, request_id):
        pass


not_a_class = 3
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    pkg = tmp_path / "userpkg_c13"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "rack.py").write_text(textwrap.dedent(PROVIDER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "userpkg_c13.rack"


def spec_for(module: str) -> ClusterSpec:
    return ClusterSpec.model_validate(
        {
            "cluster_name": "mine",
            "provider": {"type": "external", "module": module, "config": {"rack": "b12"}},
            "auth": {"ssh_user": "u"},
            "available_node_types": {"w": {"node_config": {"slot": "large"}}},
            "head_node_type": "w",
        }
    )


def test_make_provider_builds_the_users_class(user_module: str) -> None:
    provider = make_provider(spec_for(f"{user_module}:RackProvider"))
    assert type(provider).__name__ == "RackProvider"
    assert provider.provider_config == {  # type: ignore[attr-defined]
        "type": "external",
        "module": f"{user_module}:RackProvider",
        "rack": "b12",
    }
    assert provider.node_configs == {"w": {"slot": "large"}}  # type: ignore[attr-defined]
    provider.launch("w", 2, "r1")
    provider.launch("w", 2, "r1")
    assert sorted(provider.non_terminated()) == ["b12-0", "b12-1"]


def test_rays_dotted_form_works_too(user_module: str) -> None:
    assert load_provider_class(f"{user_module}.RackProvider").__name__ == "RackProvider"


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        (":Missing", "has no attribute 'Missing'"),
        (":Half", "does not implement the NodeProvider interface: missing non_terminated"),
        (":not_a_class", "is a int, expected a NodeProvider class"),
    ],
)
def test_a_wrong_class_names_the_key(user_module: str, suffix: str, expected: str) -> None:
    with pytest.raises(RayOpsConfigError) as info:
        make_provider(spec_for(user_module + suffix))
    assert str(info.value).startswith("provider.module: ") and expected in str(info.value)


def test_a_module_that_fails_to_import_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_c13.py").write_text("raise RuntimeError('no rack here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RayOpsConfigError) as info:
        load_provider_class("broken_c13:Cls")
    assert "provider.module: cannot import module 'broken_c13'" in str(info.value)
    assert "RuntimeError: no rack here" in str(info.value)


def test_a_missing_module_names_the_key() -> None:
    with pytest.raises(RayOpsConfigError, match=r"provider\.module: cannot import module"):
        load_provider_class("no_such_pkg_c13.mod:Cls")
    with pytest.raises(RayOpsConfigError, match=r"provider\.module: expected .package\.module:"):
        load_provider_class("JustAName")
