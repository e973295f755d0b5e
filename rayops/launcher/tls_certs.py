"""The cluster CA and a certificate per host, made by ``rayops up`` for TLS (``rpc/tls.py``).

``make_certs`` is the decision without I/O: hosts (and their names) in, PEM files out (a
mapping of relative path to bytes), reusing a CA it is given. ``ensure_certs`` is the thin
shell: it keeps the CA in the launcher's cache directory (the CA key never leaves this
machine), writes what is missing, and returns where the files are; the playbooks copy each
host's three files to ``<install_dir>/tls/`` (``node.pem``, ``node.key`` mode 0600,
``ca.pem``) and ``rayops-node start`` passes them to ``rayops start --tls``.

Every certificate can serve and connect (TLS server and client use): the data plane is
peer to peer. A host's certificate names the address the launcher reaches it by, its node
IP, and 127.0.0.1/localhost (drivers and tunnels on the host itself). A ``client``
certificate is made for this machine (the operator's CLI through an SSH tunnel).

Keys are ECDSA P-256 (a handshake costs a fraction of RSA-2048's); the CA is valid 10
years, host certificates ~2 (825 days, the common ceiling of TLS clients).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rayops.launcher.desired import HostTarget
    from rayops.launcher.plan import Plan
    from rayops.launcher.spec import ClusterSpec
    from rayops.rpc.tls import TlsFiles

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CLIENT_NAME",
    "CertFiles",
    "client_files",
    "cluster_dir",
    "ensure_certs",
    "ensure_for",
    "head_copy",
    "host_files",
    "make_certs",
    "tls_enabled",
]

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CLIENT_NAME = "client"
_CA_DAYS = 3650
_HOST_DAYS = 825
_LOOPBACK = ("127.0.0.1", "localhost")

CertFiles = dict[str, bytes]  # relative path -> PEM bytes


def tls_enabled(setting: bool | None, host_count: int) -> bool:
    """The spec's ``rayops: {tls: ...}``; unset: on for a cluster of more than one host."""
    return setting if setting is not None else host_count > 1


def host_files(host: str) -> tuple[str, str]:
    """The relative paths of ``host``'s certificate and key in the launcher's TLS dir."""
    return f"hosts/{host}/node.pem", f"hosts/{host}/node.key"


def make_certs(
    hosts: Mapping[str, Iterable[str]],
    *,
    ca: tuple[bytes, bytes] | None = None,
    now: datetime.datetime | None = None,
    cluster_name: str = "rayops",
) -> CertFiles:
    """PEM files for ``hosts`` (host -> the names and addresses it is reached by) and a
    ``client`` certificate, signed by ``ca`` ((cert PEM, key PEM)) or by a new CA, which is
    then in the result as ``ca.pem`` and ``ca.key``. ``ca.pem`` is always in the result."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = now or datetime.datetime.now(datetime.UTC)
    out: CertFiles = {}
    if ca is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster_name} cluster CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        out[CA_KEY] = _key_pem(ca_key)
    else:
        ca_cert = x509.load_pem_x509_certificate(ca[0])
        loaded = serialization.load_pem_private_key(ca[1], password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError("the cluster CA key must be an EC key (as `rayops up` makes it)")
        ca_key = loaded
    out[CA_CERT] = ca_cert.public_bytes(serialization.Encoding.PEM)
    wanted = {host: list(names) for host, names in hosts.items()}
    wanted[CLIENT_NAME] = []
    for host, names in sorted(wanted.items()):
        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = []
        for n in _unique([*names, *(_LOOPBACK if host != CLIENT_NAME else ())]):
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_HOST_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        cert_path, key_path = host_files(host)
        out[cert_path] = cert.public_bytes(serialization.Encoding.PEM)
        out[key_path] = _key_pem(key)
    return out


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in items:
        if i:
            seen.setdefault(i, None)
    return list(seen)


def _key_pem(key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_certs(directory: Path, hosts: Mapping[str, Iterable[str]], cluster_name: str) -> Path:
    """Keep the cluster's CA in ``directory`` (made on first use) and a certificate for every
    host that has none, or whose names changed; return ``directory``."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_cert, ca_key = directory / CA_CERT, directory / CA_KEY
    ca = (ca_cert.read_bytes(), ca_key.read_bytes()) if ca_key.exists() else None
    stale: dict[str, list[str]] = {}
    for host, names in hosts.items():
        names = sorted(_unique(names))
        record = directory / "hosts" / host / "names"
        if not record.exists() or record.read_text().split() != names:
            stale[host] = names
    if ca is None and ca_cert.exists():
        # The head's copy (autoscaling: launcher/autoscaling.py): certificates without the
        # CA key, which never leaves the launcher machine. It cannot sign: a new host must
        # already have its certificate, made by `rayops up` for every provider.worker_ips.
        if stale:
            from rayops.launcher.errors import LauncherError

            raise LauncherError(
                f"no TLS certificate for {', '.join(sorted(stale))} (names "
                f"{'; '.join(' '.join(n) for _h, n in sorted(stale.items()))}) in {directory}, "
                "and the CA key stays on the machine that ran `rayops up`: list the host by "
                "the IP address it reports in provider.worker_ips and run `rayops up` again"
            )
        return directory
    if ca is not None and not stale and (directory / host_files(CLIENT_NAME)[0]).exists():
        return directory
    if ca is None:  # a new CA: every host's certificate is made again under it
        stale = {host: sorted(_unique(names)) for host, names in hosts.items()}
    files = make_certs(stale, ca=ca, cluster_name=cluster_name)
    if ca is not None:  # keep the existing client certificate
        for rel in host_files(CLIENT_NAME):
            if (directory / rel).exists():
                files.pop(rel, None)
    for rel, data in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(path, data, 0o600 if rel.endswith(".key") else 0o644)
    for host, names in stale.items():
        _write(directory / "hosts" / host / "names", (" ".join(names) + "\n").encode(), 0o644)
    return directory


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def client_files(spec: ClusterSpec, cache_dir: Path) -> TlsFiles | None:
    """This machine's TLS files for the cluster's API server (through an SSH forward, so
    the head's certificate is checked for 127.0.0.1); None when the cluster has TLS off."""
    from rayops.rpc.tls import TlsFiles

    if not tls_enabled(spec.rayops.tls, 1 + len(spec.provider.worker_ips)):
        return None
    directory = cluster_dir(cache_dir, spec.cluster_name)
    cert, key = host_files(CLIENT_NAME)
    if not (directory / cert).exists():
        from rayops.launcher.errors import LauncherError

        raise LauncherError(
            f"the cluster has TLS on but this machine has no client certificate in "
            f"{directory}: run `rayops up` for it from this machine first"
        )
    return TlsFiles(
        str(directory / cert), str(directory / key), str(directory / CA_CERT),
        origin=f"rayops up's {directory}",
    )  # fmt: skip


def head_copy(directory: Path, hosts: Iterable[str]) -> CertFiles:
    """What the head's autoscaler needs to give pool hosts their certificates: the CA
    certificate and each host's certificate, key and names record (never the CA key)."""
    out: CertFiles = {CA_CERT: (directory / CA_CERT).read_bytes()}
    for host in hosts:
        for rel in (*host_files(host), f"hosts/{host}/names"):
            out[rel] = (directory / rel).read_bytes()
    return out


def cluster_dir(cache_dir: Path, cluster_name: str) -> Path:
    """Where the launcher keeps a cluster's CA and certificates."""
    return cache_dir / "tls" / cluster_name


def ensure_for(
    spec: ClusterSpec, plan: Plan, targets: Mapping[str, HostTarget], cache_dir: Path
) -> Path:
    """The certificates of every host ``plan`` reaches, when the cluster has TLS on (made
    or kept in ``cluster_dir``); the directory either way (the playbooks copy from it only
    for nodes whose config says TLS)."""
    directory = cluster_dir(cache_dir, spec.cluster_name)
    hosts = {
        hp.address: [hp.address, str(targets[hp.address].node_config.get("node_ip") or "")]
        for hp in plan.hosts
        if hp.failure is None and hp.address in targets
    }
    if hosts and any(targets[a].node_config.get("tls") for a in hosts):
        ensure_certs(directory, hosts, spec.cluster_name)
    return directory
