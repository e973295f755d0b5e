"""launcher/tls_certs.py: the cluster CA and a certificate per host (hosts in, files out)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from rayops.launcher import tls_certs
from rayops.launcher.tls_certs import (
    CA_CERT,
    CA_KEY,
    CLIENT_NAME,
    ensure_certs,
    host_files,
    make_certs,
    tls_enabled,
)


@pytest.mark.parametrize(
    ("setting", "hosts", "on"),
    [(None, 1, False), (None, 2, True), (None, 5, True), (False, 3, False), (True, 1, True)],
)
def test_tls_default_is_on_for_multi_host_clusters(
    setting: bool | None, hosts: int, on: bool
) -> None:
    assert tls_enabled(setting, hosts) is on


def _sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(i) for i in ext.get_values_for_type(x509.IPAddress)}
    return ips | set(ext.get_values_for_type(x509.DNSName))


def test_make_certs_hosts_in_files_out() -> None:
    now = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)
    files = make_certs(
        {"10.0.0.1": ["10.0.0.1"], "node-b.lan": ["node-b.lan", "10.0.0.2"]}, now=now
    )
    expected = {CA_CERT, CA_KEY}
    for host in ("10.0.0.1", "node-b.lan", CLIENT_NAME):
        expected |= set(host_files(host))
    assert set(files) == expected
    ca = x509.load_pem_x509_certificate(files[CA_CERT])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for host, names in (
        ("10.0.0.1", {"10.0.0.1"}),
        ("node-b.lan", {"node-b.lan", "10.0.0.2"}),
    ):
        cert = x509.load_pem_x509_certificate(files[host_files(host)[0]])
        cert.verify_directly_issued_by(ca)  # raises unless the CA signed it
        assert _sans(cert) == names | {"127.0.0.1", "localhost"}
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usage)
        assert cert.not_valid_before_utc < now < cert.not_valid_after_utc
        assert b"PRIVATE KEY" in files[host_files(host)[1]]
    client = x509.load_pem_x509_certificate(files[host_files(CLIENT_NAME)[0]])
    client.verify_directly_issued_by(ca)
    with pytest.raises(x509.ExtensionNotFound):
        client.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert ipaddress.ip_address("10.0.0.1")  # names that parse as IPs are IP SANs


def test_make_certs_reuses_a_given_ca() -> None:
    first = make_certs({"a": ["a"]})
    again = make_certs({"b": ["b"]}, ca=(first[CA_CERT], first[CA_KEY]))
    assert CA_KEY not in again and again[CA_CERT] == first[CA_CERT]
    ca = x509.load_pem_x509_certificate(first[CA_CERT])
    x509.load_pem_x509_certificate(again[host_files("b")[0]]).verify_directly_issued_by(ca)


def test_ensure_certs_keeps_the_ca_and_adds_only_what_changed(tmp_path: Path) -> None:
    d = ensure_certs(tmp_path / "tls", {"10.0.0.1": ["10.0.0.1"]}, "c")
    ca_before = (d / CA_CERT).read_bytes()
    cert_a = (d / host_files("10.0.0.1")[0]).read_bytes()
    client = (d / host_files(CLIENT_NAME)[0]).read_bytes()
    assert stat.S_IMODE((d / CA_KEY).stat().st_mode) == 0o600
    assert stat.S_IMODE((d / host_files("10.0.0.1")[1]).stat().st_mode) == 0o600
    ensure_certs(d, {"10.0.0.1": ["10.0.0.1"], "10.0.0.2": ["10.0.0.2"]}, "c")
    assert (d / CA_CERT).read_bytes() == ca_before
    assert (d / host_files("10.0.0.1")[0]).read_bytes() == cert_a  # unchanged host: kept
    assert (d / host_files(CLIENT_NAME)[0]).read_bytes() == client
    ca = x509.load_pem_x509_certificate(ca_before)
    new = x509.load_pem_x509_certificate((d / host_files("10.0.0.2")[0]).read_bytes())
    new.verify_directly_issued_by(ca)
    # A host reached by another name gets a new certificate naming it.
    ensure_certs(d, {"10.0.0.1": ["10.0.0.1", "head.lan"]}, "c")
    renewed = x509.load_pem_x509_certificate((d / host_files("10.0.0.1")[0]).read_bytes())
    assert "head.lan" in _sans(renewed)


def test_the_heads_copy_serves_known_hosts_and_cannot_sign(tmp_path: Path) -> None:
    """Autoscaling: the head gets certificates for every worker_ips host, never the CA key;
    it hands them out, and a host it has none for is a clear error (no second CA)."""
    from rayops.launcher.errors import LauncherError

    hosts = {"10.0.0.1": ["10.0.0.1"], "10.0.0.7": ["10.0.0.7"]}
    src = ensure_certs(tmp_path / "launcher", hosts, "c")
    copy = tls_certs.head_copy(src, hosts)
    assert CA_KEY not in copy and CA_CERT in copy
    head = tmp_path / "head"
    for rel, data in copy.items():
        (head / rel).parent.mkdir(parents=True, exist_ok=True)
        (head / rel).write_bytes(data)
    assert ensure_certs(head, {"10.0.0.7": ["10.0.0.7"]}, "c") == head
    assert not (head / CA_KEY).exists()
    assert (head / host_files("10.0.0.7")[0]).read_bytes() == copy[host_files("10.0.0.7")[0]]
    with pytest.raises(LauncherError, match=r"10\.0\.0\.9.*CA key stays"):
        ensure_certs(head, {"10.0.0.9": ["10.0.0.9"]}, "c")
    with pytest.raises(LauncherError, match=r"10\.0\.0\.7"):  # known host, other names
        ensure_certs(head, {"10.0.0.7": ["10.0.0.7", "pool7.lan"]}, "c")
    assert not (head / CA_KEY).exists()


# ------------------------------------------------------- the spec, the script, the playbook
RUNTIME = Path(__file__).resolve().parents[2] / "rayops" / "_assets" / "runtime"
_BASE = {
    "cluster_name": "c",
    "provider": {"type": "local", "head_ip": "10.0.0.1", "worker_ips": []},
    "auth": {"ssh_user": "u"},
}


def _facts(address: str) -> Any:
    from rayops.launcher.facts import HostFacts

    return HostFacts(
        address=address, python="/usr/bin/python3", python_version="3.11.2", home="/home/u",
        user="u",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("workers", "setting", "on"),
    [([], None, False), (["10.0.0.2"], None, True), (["10.0.0.2"], False, False),
     ([], True, True)],
)  # fmt: skip
def test_node_config_says_tls(workers: list[str], setting: bool | None, on: bool) -> None:
    from rayops.launcher.desired import node_config
    from rayops.launcher.spec import ClusterSpec

    data: dict[str, Any] = {**_BASE, "provider": {**_BASE["provider"], "worker_ips": workers}}
    if setting is not None:
        data["rayops"] = {"tls": setting}
    config = node_config(ClusterSpec.model_validate(data), "head", _facts("10.0.0.1"), "plain")
    assert config["tls"] is on


def test_spec_refuses_a_tls_value_that_is_not_a_boolean() -> None:
    from rayops.launcher.spec import ClusterSpec

    with pytest.raises(ValueError, match="tls"):
        ClusterSpec.model_validate({**_BASE, "rayops": {"tls": "sometimes"}})


@pytest.mark.parametrize("on", [True, False])
def test_control_script_passes_the_tls_files(tmp_path: Path, on: bool) -> None:
    jinja2 = pytest.importorskip("jinja2")
    import shlex

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["quote"] = lambda v: shlex.quote(str(v))
    env.filters["to_json"] = lambda v: json.dumps(v)
    config = {
        "cluster_name": "c", "role": "worker", "node_ip": "10.0.0.2",
        "head_address": "10.0.0.1:6379", "gcs_port": 6379, "metrics_export_port": 8080,
        "install_dir": str(tmp_path / "i"), "temp_dir": str(tmp_path / "i/s"), "num_cpus": None,
        "num_gpus": None, "resources": {}, "labels": {}, "object_store_memory": None,
        "process_manager": "plain", "runtime_env_index_url": None, "runtime_env_find_links": [],
        "runtime_env_cache_mb": None, "tls": on,
    }  # fmt: skip
    text = env.from_string((RUNTIME / "rayops-node.sh.j2").read_text()).render(
        rayops_node_config=config
    )
    script = tmp_path / "rayops-node"
    script.write_text(text)
    subprocess.run(["sh", "-n", str(script)], check=True)
    flags = '--tls --tls-cert "$INSTALL_DIR/tls/node.pem" --tls-key "$INSTALL_DIR/tls/node.key"'
    assert (flags in text) is on
    assert "unset RAYOPS_USE_TLS" in text  # a caller's TLS settings never leak into daemons


def test_ensure_for_makes_certificates_naming_each_host_and_its_node_ip(tmp_path: Path) -> None:
    from rayops.launcher.desired import HostTarget
    from rayops.launcher.plan import HostPlan, Plan
    from rayops.launcher.spec import ClusterSpec

    spec = ClusterSpec.model_validate(
        {**_BASE, "provider": {**_BASE["provider"], "worker_ips": ["w1.lan"]}}
    )

    def target(address: str, node_ip: str, tls: bool) -> HostTarget:
        return HostTarget(
            address=address, role="worker", keys={}, node_config={"node_ip": node_ip, "tls": tls},
            install_dir="/i", temp_dir="/i/s",
        )  # fmt: skip

    plan = Plan("c", "h", "10.0.0.1", (HostPlan("10.0.0.1", "head"), HostPlan("w1.lan", "worker")))
    off = {
        "10.0.0.1": target("10.0.0.1", "10.0.0.1", False),
        "w1.lan": target("w1.lan", "10.0.0.9", False),
    }
    d = tls_certs.ensure_for(spec, plan, off, tmp_path)
    assert d == tmp_path / "tls" / "c" and not d.exists()  # TLS off: nothing made
    on = {a: target(a, t.node_config["node_ip"], True) for a, t in off.items()}
    d = tls_certs.ensure_for(spec, plan, on, tmp_path)
    cert = x509.load_pem_x509_certificate((d / host_files("w1.lan")[0]).read_bytes())
    assert _sans(cert) == {"w1.lan", "10.0.0.9", "127.0.0.1", "localhost"}


def test_client_files_for_the_operators_machine(tmp_path: Path) -> None:
    from rayops.launcher.errors import LauncherError
    from rayops.launcher.spec import ClusterSpec

    one_host = ClusterSpec.model_validate(_BASE)
    assert tls_certs.client_files(one_host, tmp_path) is None  # TLS off: plain HTTP
    two = ClusterSpec.model_validate(
        {**_BASE, "provider": {**_BASE["provider"], "worker_ips": ["10.0.0.2"]}}
    )
    with pytest.raises(LauncherError, match="no client certificate"):
        tls_certs.client_files(two, tmp_path)
    ensure_certs(tls_certs.cluster_dir(tmp_path, "c"), {"10.0.0.1": ["10.0.0.1"]}, "c")
    files = tls_certs.client_files(two, tmp_path)
    assert files is not None
    files.load()  # a loadable pair and the cluster CA
    assert files.cert.endswith("hosts/client/node.pem")
