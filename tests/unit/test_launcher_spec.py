"""The cluster spec: cluster.yaml.example loads, and bad YAML fails with a precise message."""

from __future__ import annotations

import os
import textwrap
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from rayops.launcher.errors import ClusterSpecError
from rayops.launcher.spec import ClusterSpec, load_spec
from rayops.launcher.spec_messages import _strip

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "cluster.yaml.example"
# The provider types other than local, one example each (a file has one provider section).
PROVIDER_EXAMPLES = [REPO / "cluster-aws.yaml.example", REPO / "cluster-external.yaml.example"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with the key and known_hosts files the specs point at."""
    h = tmp_path / "home"
    (h / ".ssh").mkdir(parents=True)
    key = h / ".ssh" / "id_ed25519"
    key.write_text("not really a key\n")
    key.chmod(0o600)
    (h / ".ssh" / "known_hosts").write_text("")
    monkeypatch.setenv("HOME", str(h))
    return h


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cluster.yaml"
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


MINIMAL = """
cluster_name: t
provider:
  type: local
  head_ip: 10.0.0.1
  worker_ips: [10.0.0.2]
auth:
  ssh_user: root
  ssh_private_key: ~/.ssh/id_ed25519
"""


def errors_of(path: Path) -> str:
    with pytest.raises(ClusterSpecError) as info:
        load_spec(path)
    return str(info.value)


def test_example_loads_through_the_real_parser(home: Path) -> None:
    spec, notes = load_spec(EXAMPLE)
    assert spec.provider.head_ip == "192.0.2.10"
    assert spec.head_address == "192.0.2.10:6379"
    assert spec.install_dir == "~/rayops/default"
    assert spec.resources_for("worker") == {"CPU": 4.0, "accel": 1.0}
    assert spec.local_path("./examples") == REPO / "examples"
    assert any("upscaling_speed" in n for n in notes) is False  # 1.0 is the default: no note


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        out.add(prefix + name)
        inner = _strip(field.annotation)
        args = typing.get_args(inner)
        if typing.get_origin(inner) is dict and len(args) == 2:
            inner = _strip(args[1])
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                out |= {prefix + name + ".*"} | _keys(inner, prefix + name + ".*.")
            continue
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            out |= _keys(inner, prefix + name + ".")
    return out


def _yaml_keys(data: object, prefix: str = "", wild: set[str] | None = None) -> set[str]:
    out: set[str] = set()
    if isinstance(data, dict):
        for k, v in data.items():
            key = prefix + ("*" if wild and prefix.rstrip(".") in wild else str(k))
            out.add(key)
            out |= _yaml_keys(v, key + ".", wild)
    return out


def test_example_documents_every_key() -> None:
    want = _keys(ClusterSpec)
    have: set[str] = set()
    for example in [EXAMPLE, *PROVIDER_EXAMPLES]:
        data = yaml.safe_load(example.read_text())
        have |= _yaml_keys(data, "", {"available_node_types"})
    missing = sorted(want - have)
    assert not missing, f"cluster.yaml.example does not show: {missing}"


def test_unknown_key_names_file_line_path_and_closest_key(tmp_path: Path, home: Path) -> None:
    p = write(tmp_path, MINIMAL + "setup_comands: [echo hi]\n")
    msg = errors_of(p)
    assert (
        f"{p}:9: setup_comands: unknown key 'setup_comands'; did you mean 'setup_commands'?" in msg
    )


def test_unknown_nested_key(tmp_path: Path, home: Path) -> None:
    p = write(tmp_path, MINIMAL.replace("  worker_ips:", "  worker_ip:"))
    msg = errors_of(p)
    assert f"{p}:5: provider.worker_ip: unknown key 'worker_ip'; did you mean 'worker_ips'?" in msg
    assert (
        "valid keys here: availability_zone, cache_stopped_nodes, config, endpoint_url, "
        "external_head_ip, head_ip, module, region, type, worker_ips" in msg
    )


def test_wrong_type_says_expected_and_found(tmp_path: Path, home: Path) -> None:
    p = write(tmp_path, MINIMAL + "  ssh_port: twenty-two\n")
    msg = errors_of(p)
    assert (
        f"{p}:9: auth.ssh_port: expected an integer (an SSH port number (1-65535)), "
        "found 'twenty-two' (a string)" in msg
    )


def test_wrong_type_for_a_list(tmp_path: Path, home: Path) -> None:
    p = write(tmp_path, MINIMAL.replace("[10.0.0.2]", "10.0.0.2"))
    msg = errors_of(p)
    assert f"{p}:5: provider.worker_ips: expected a list" in msg
    assert "found '10.0.0.2' (a string)" in msg


def test_missing_head_ip(tmp_path: Path, home: Path) -> None:
    p = write(tmp_path, MINIMAL.replace("  head_ip: 10.0.0.1\n", ""))
    msg = errors_of(p)
    assert (
        f"{p}:2: provider.head_ip: required key missing: expected the head's IP address "
        "or host name" in msg
    )


def test_all_problems_are_reported_at_once(tmp_path: Path, home: Path) -> None:
    text = MINIMAL.replace("  head_ip: 10.0.0.1\n", "") + "  ssh_port: 0\nbogus: 1\n"
    msg = errors_of(write(tmp_path, text))
    assert "(3 problems)" in msg
    assert "provider.head_ip" in msg and "auth.ssh_port: expected a value >= 1" in msg
    assert "bogus: unknown key" in msg


def test_bad_address(tmp_path: Path, home: Path) -> None:
    msg = errors_of(write(tmp_path, MINIMAL.replace("10.0.0.2", "not a host!")))
    assert "provider.worker_ips" in msg and "expected an IP address or a host name" in msg


def test_literal_choices(tmp_path: Path, home: Path) -> None:
    msg = errors_of(write(tmp_path, MINIMAL + "  host_key_policy: yolo\n"))
    assert "auth.host_key_policy: expected one of 'strict' or 'accept-new', found 'yolo'" in msg


def test_duplicate_key_is_an_error(tmp_path: Path, home: Path) -> None:
    msg = errors_of(write(tmp_path, MINIMAL + "cluster_name: again\n"))
    assert ":9: cluster_name: duplicate key (first given on line 1)" in msg


def test_yaml_syntax_error_has_the_line(tmp_path: Path, home: Path) -> None:
    msg = errors_of(write(tmp_path, MINIMAL + "setup_commands: [unclosed\n"))
    assert "not valid YAML" in msg and f"{tmp_path}/cluster.yaml:" in msg


def test_empty_and_non_mapping_files(tmp_path: Path, home: Path) -> None:
    assert "found an empty file" in errors_of(write(tmp_path, "\n"))
    assert "found a list" in errors_of(write(tmp_path, "- a\n- b\n"))


def test_head_node_type_must_exist(tmp_path: Path, home: Path) -> None:
    text = MINIMAL + textwrap.dedent(
        """
        available_node_types:
          head.default: {resources: {CPU: 1}}
          worker.default: {resources: {CPU: 1}}
        head_node_type: head.defualt
        """
    )
    msg = errors_of(write(tmp_path, text))
    assert "head_node_type: expected one of the available_node_types" in msg
    assert "did you mean 'head.default'?" in msg


def test_worker_listed_as_head_and_twice(tmp_path: Path, home: Path) -> None:
    workers = "[10.0.0.1, 10.0.0.3, 10.0.0.3]"
    msg = errors_of(write(tmp_path, MINIMAL.replace("[10.0.0.2]", workers)))
    assert "provider.worker_ips[0]: 10.0.0.1 is the head_ip" in msg
    assert "provider.worker_ips[2]: 10.0.0.3 is listed twice (also at worker_ips[1])" in msg


def test_key_file_missing_or_too_open(tmp_path: Path, home: Path) -> None:
    msg = errors_of(write(tmp_path, MINIMAL.replace("id_ed25519", "nope")))
    assert "auth.ssh_private_key: expected a private key file, found nothing at" in msg
    (home / ".ssh" / "id_ed25519").chmod(0o644)
    msg = errors_of(write(tmp_path, MINIMAL))
    assert "mode 0644" in msg and "chmod 600" in msg


def test_strict_policy_needs_known_hosts(tmp_path: Path, home: Path) -> None:
    (home / ".ssh" / "known_hosts").unlink()
    msg = errors_of(write(tmp_path, MINIMAL))
    assert "auth.known_hosts_file: host_key_policy is 'strict'" in msg
    spec, _ = load_spec(write(tmp_path, MINIMAL + "  host_key_policy: accept-new\n"))
    assert spec.auth.host_key_policy == "accept-new"


def test_file_mount_source_must_exist(tmp_path: Path, home: Path) -> None:
    msg = errors_of(write(tmp_path, MINIMAL + "file_mounts: {~/x: ./missing}\n"))
    assert "file_mounts.~/x: expected a local file or directory" in msg


def test_defaults_and_derived_values(tmp_path: Path, home: Path) -> None:
    spec, notes = load_spec(write(tmp_path, MINIMAL + "head_start_ray_commands: [ray start]\n"))
    assert spec.install_dir == "~/rayops/t" and spec.temp_dir == "~/rayops/t/sessions"
    assert spec.gcs_port == 6379 and spec.auth.host_key_policy == "strict"
    assert spec.local_path("data") == tmp_path / "data"
    assert len(notes) == 1 and "head_start_ray_commands is accepted but not used" in notes[0]


def test_config_hash_changes_with_the_spec(tmp_path: Path, home: Path) -> None:
    a, _ = load_spec(write(tmp_path, MINIMAL))
    b, _ = load_spec(write(tmp_path, MINIMAL + "setup_commands: [echo]\n"))
    assert a.config_hash() != b.config_hash()


def test_error_is_picklable(tmp_path: Path, home: Path) -> None:
    import pickle

    with pytest.raises(ClusterSpecError) as info:
        load_spec(write(tmp_path, MINIMAL + "bogus: 1\n"))
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    msg = errors_of(tmp_path / "nope.yaml")
    assert "cannot read the file" in msg
    assert os.fspath(tmp_path / "nope.yaml") in msg


def test_metrics_export_port_defaults_to_8080(tmp_path: Path, home: Path) -> None:
    spec, _ = load_spec(write(tmp_path, MINIMAL))
    assert spec.metrics_export_port == 8080
    spec, _ = load_spec(write(tmp_path, MINIMAL + "rayops:\n  ports: {metrics_export: 9101}\n"))
    assert spec.metrics_export_port == 9101 and spec.gcs_port == 6379


def test_metrics_export_port_out_of_range(tmp_path: Path, home: Path) -> None:
    p = write(tmp_path, MINIMAL + "rayops:\n  ports:\n    metrics_export: 70000\n")
    msg = errors_of(p)
    assert f"{p}:11: rayops.ports.metrics_export: expected a value <= 65535" in msg
    assert "found 70000" in msg
    p = write(tmp_path, MINIMAL + "rayops:\n  ports:\n    metrics_export: 0\n")
    assert f"{p}:11: rayops.ports.metrics_export: expected a value >= 1" in errors_of(p)


def test_metrics_export_port_must_differ_from_the_gcs_port(tmp_path: Path, home: Path) -> None:
    p = write(tmp_path, MINIMAL + "rayops:\n  ports:\n    gcs: 7000\n    metrics_export: 7000\n")
    msg = errors_of(p)
    assert (
        f"{p}:12: rayops.ports.metrics_export: expected a port other than rayops.ports.gcs "
        "(7000)" in msg
    )
    assert "found 7000" in msg
    # The default metrics port collides with a GCS moved onto it: named at the ports line.
    p = write(tmp_path, MINIMAL + "rayops:\n  ports:\n    gcs: 8080\n")
    assert f"{p}:10: rayops.ports.metrics_export: expected a port other than" in errors_of(p)


def test_metrics_export_port_must_differ_from_the_ssh_port(tmp_path: Path, home: Path) -> None:
    p = write(tmp_path, MINIMAL + "rayops:\n  ports: {metrics_export: 22}\n")
    msg = errors_of(p)
    assert f"{p}:10: rayops.ports.metrics_export: expected a port other than auth.ssh_port" in msg


def test_node_labels_follow_the_label_rules(tmp_path: Path, home: Path) -> None:
    """Labels a raylet would refuse at start are refused when the spec is read, with the line."""
    text = MINIMAL + textwrap.dedent(
        """
        available_node_types:
          head.default: {resources: {CPU: 1}}
          worker.default:
            resources: {CPU: 1}
            labels: {"ray.io/zone": "a", "bad key": "x"}
        head_node_type: head.default
        """
    )
    msg = errors_of(write(tmp_path, text))
    assert "available_node_types.worker.default.labels" in msg, msg
    assert "reserved" in msg or "'bad key'" in msg, msg


def test_valid_node_labels_load(tmp_path: Path, home: Path) -> None:
    text = MINIMAL + textwrap.dedent(
        """
        available_node_types:
          head.default: {resources: {CPU: 1}}
          worker.default:
            resources: {CPU: 1}
            labels: {region: us-east, example.com/tier: gold}
        head_node_type: head.default
        """
    )
    spec, _ = load_spec(write(tmp_path, text))
    assert spec.labels_for("worker") == {"region": "us-east", "example.com/tier": "gold"}


def test_runtime_env_index_keys_default_to_the_wheelhouse_and_are_checked(home: Path) -> None:
    from rayops.launcher.desired import node_config
    from rayops.launcher.facts import HostFacts

    base = {
        "cluster_name": "c",
        "provider": {"type": "local", "head_ip": "10.0.0.1", "worker_ips": []},
        "auth": {"ssh_user": "u"},
    }
    facts = HostFacts(
        address="10.0.0.1",
        python="/usr/bin/python3",
        python_version="3.11.2",
        home="/home/u",
        user="u",
    )
    config = node_config(ClusterSpec.model_validate(base), "head", facts, "plain")
    assert config["runtime_env_find_links"] == ["/home/u/rayops/c/wheelhouse"]  # no index
    assert config["runtime_env_index_url"] is None and config["runtime_env_cache_mb"] is None
    given = {"runtime_env_index_url": "https://idx.internal/simple", "runtime_env_cache_mb": 64}
    spec = ClusterSpec.model_validate({**base, "rayops": given})
    config = node_config(spec, "head", facts, "plain")
    assert config["runtime_env_find_links"] == [] and config["runtime_env_cache_mb"] == 64
    assert config["runtime_env_index_url"] == "https://idx.internal/simple"
    with pytest.raises(ValueError, match="expected an http://, https:// or file:// URL"):
        ClusterSpec.model_validate({**base, "rayops": {"runtime_env_index_url": "idx"}})
    with pytest.raises(ValueError, match="without spaces or commas"):
        ClusterSpec.model_validate({**base, "rayops": {"runtime_env_find_links": ["a b"]}})
