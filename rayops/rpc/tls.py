"""TLS on every port: the settings, the loaded key material, and this process's choice.

Owns: reading the TLS settings (flags of ``rayops start``, the environment, a session's
``tls.json``), loading and checking the three PEM files, and building from them the
contexts every transport uses: gRPC credentials (GCS server and channels), ``ssl``
contexts for the framed data plane and for the HTTP servers and clients.

Settings, as Ray's names with rayops' prefix (Ray's own names are accepted too; where both
are set they must agree)::

    RAYOPS_USE_TLS           RAY_USE_TLS           1 / 0
    RAYOPS_TLS_SERVER_CERT   RAY_TLS_SERVER_CERT   this process's certificate (PEM)
    RAYOPS_TLS_SERVER_KEY    RAY_TLS_SERVER_KEY    its private key (PEM)
    RAYOPS_TLS_CA_CERT       RAY_TLS_CA_CERT       the cluster CA (PEM): peers must chain to it

Verification is mutual: a server asks every client for a certificate signed by the cluster
CA, a client checks the server's certificate against the same CA and the address it dialled
(the certificate's subjectAltName must name that IP address or host name). The cluster
token is still checked inside the encrypted connection, as without TLS.

Local Unix sockets (framed peers on one host, see ``framed.py``) stay plaintext: they never
leave the kernel and only a process of the same user is answered.

Which settings a process uses: a daemon inherits them through the environment its parent
gives it (``TlsFiles.to_env``); a driver or CLI client that finds its cluster through a
session directory takes that session's ``tls.json`` (written by ``rayops start --tls``)
unless its environment says otherwise, as it takes the session's token. ``current()`` is the
answer every transport asks for.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SESSION_FILE",
    "Tls",
    "TlsConfigError",
    "TlsFiles",
    "adopt_beside_token",
    "adopt_session",
    "configure",
    "current",
    "peer_speaks_tls",
    "url_scheme",
]

SESSION_FILE = "tls.json"

ENV_USE = ("RAYOPS_USE_TLS", "RAY_USE_TLS")
ENV_CERT = ("RAYOPS_TLS_SERVER_CERT", "RAY_TLS_SERVER_CERT")
ENV_KEY = ("RAYOPS_TLS_SERVER_KEY", "RAY_TLS_SERVER_KEY")
ENV_CA = ("RAYOPS_TLS_CA_CERT", "RAY_TLS_CA_CERT")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class TlsConfigError(ValueError):
    """A TLS setting or file is missing or not valid; names the setting or the file."""


@dataclass(frozen=True)
class TlsFiles:
    """Where the three PEM files are; ``origin`` says where these paths were given."""

    cert: str
    key: str
    ca: str
    origin: str = field(default="", compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TlsFiles | None:
        """The files named by the environment when it turns TLS on; None when it is off."""
        env = os.environ if env is None else env
        on = _env_flag(env)
        paths = {n: _env_value(env, names) for n, names in (("cert", ENV_CERT), ("key", ENV_KEY))}
        paths["ca"] = _env_value(env, ENV_CA)
        if not on:
            return None
        wanted = zip(("cert", "key", "ca"), (ENV_CERT, ENV_KEY, ENV_CA), strict=True)
        missing = [names[0] for n, names in wanted if not paths[n]]
        if missing:
            raise TlsConfigError(
                f"{ENV_USE[0]}=1 needs {', '.join(missing)} (or Ray's RAY_* names): "
                "the paths of this node's certificate, its key and the cluster CA"
            )
        return cls(paths["cert"], paths["key"], paths["ca"], origin="the environment")

    def to_env(self) -> dict[str, str]:
        """The environment that gives a child process these same files."""
        return {ENV_USE[0]: "1", ENV_CERT[0]: self.cert, ENV_KEY[0]: self.key, ENV_CA[0]: self.ca}

    def save(self, session_dir: str) -> None:
        """Write ``tls.json`` in a session directory (paths only: no key material)."""
        path = os.path.join(session_dir, SESSION_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump({"cert": self.cert, "key": self.key, "ca": self.ca}, f, indent=2)
        os.replace(path + ".tmp", path)

    @classmethod
    def from_session(cls, session_dir: str) -> TlsFiles | None:
        path = os.path.join(session_dir, SESSION_FILE)
        try:
            with open(path) as f:
                data: Any = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise TlsConfigError(f"{path}: not a readable TLS settings file: {err}") from err
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), str) for k in ("cert", "key", "ca")
        ):
            raise TlsConfigError(f"{path}: expected an object with cert, key and ca paths")
        return cls(data["cert"], data["key"], data["ca"], origin=path)

    def load(self) -> Tls:
        """Read and check the files; TlsConfigError names the one that is wrong."""
        where = f" (given by {self.origin})" if self.origin else ""
        cert = _read_pem(self.cert, "certificate", "CERTIFICATE", where)
        key = _read_pem(self.key, "private key", "PRIVATE KEY", where)
        ca = _read_pem(self.ca, "CA certificate", "CERTIFICATE", where)
        tls = Tls(self, cert, key, ca)
        try:
            tls.server_context()
        except ssl.SSLError as err:
            raise TlsConfigError(
                f"the key {self.key} does not match the certificate {self.cert}{where}: "
                f"{err.reason or err}"
            ) from err
        try:
            tls.client_context()
        except ssl.SSLError as err:
            raise TlsConfigError(f"CA certificate {self.ca}{where}: {err.reason or err}") from err
        return tls


def _read_pem(path: str, what: str, marker: str, where: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as err:
        raise TlsConfigError(f"TLS {what} file {path}{where} does not exist") from err
    except OSError as err:
        raise TlsConfigError(f"TLS {what} file {path}{where} is not readable: {err}") from err
    if b"-----BEGIN " not in data or marker.encode() not in data:
        raise TlsConfigError(
            f"TLS {what} file {path}{where}: expected a PEM block '-----BEGIN ...{marker}-----', "
            "found none"
        )
    return data


class Tls:
    """The loaded material of one process and the contexts made from it (made once)."""

    def __init__(self, files: TlsFiles, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> None:
        self.files = files
        self.cert_pem = cert_pem
        self.key_pem = key_pem
        self.ca_pem = ca_pem
        self._server: ssl.SSLContext | None = None
        self._client: ssl.SSLContext | None = None

    def server_context(self) -> ssl.SSLContext:
        """For listening sockets: our certificate, and a client certificate is required."""
        if self._server is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self.files.cert, self.files.key)
            ctx.load_verify_locations(cadata=self.ca_pem.decode("ascii", "replace"))
            ctx.verify_mode = ssl.CERT_REQUIRED
            self._server = ctx
        return self._server

    def client_context(self) -> ssl.SSLContext:
        """For outgoing connections: the server must chain to the CA and match its address;
        we present our own certificate."""
        if self._client is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_verify_locations(cadata=self.ca_pem.decode("ascii", "replace"))
            ctx.load_cert_chain(self.files.cert, self.files.key)
            ctx.check_hostname = True
            ctx.verify_mode = ssl.CERT_REQUIRED
            self._client = ctx
        return self._client

    def grpc_server_credentials(self) -> Any:
        import grpc

        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)],
            root_certificates=self.ca_pem,
            require_client_auth=True,
        )

    def grpc_channel_credentials(self) -> Any:
        import grpc

        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=self.key_pem,
            certificate_chain=self.cert_pem,
        )


# ---------------------------------------------------------------- this process's choice
_lock = threading.Lock()
_resolved = False
_explicit = False  # set by configure/adopt_session: the environment no longer decides
_current: Tls | None = None


def current() -> Tls | None:
    """This process's TLS material; None when TLS is off. Read from the environment on
    first use unless ``configure`` or ``adopt_session`` said otherwise."""
    global _resolved, _current
    if _resolved:
        return _current
    with _lock:
        if not _resolved:
            files = TlsFiles.from_env()
            _current = files.load() if files is not None else None
            _resolved = True
    return _current


def configure(files: TlsFiles | None) -> Tls | None:
    """Set this process's TLS (None: off); returns the loaded material."""
    global _resolved, _current, _explicit
    loaded = files.load() if files is not None else None
    with _lock:
        _current, _resolved, _explicit = loaded, True, True
    return loaded


def adopt_session(session_dir: str | None, *, override: bool = True) -> Tls | None:
    """As a driver or CLI client reaching the cluster of ``session_dir``: the environment's
    TLS settings if it has any, else the session's ``tls.json``, else off. Without
    ``override``, a process whose TLS was already set (``init()``, ``configure``) keeps it:
    a client made inside a connected driver speaks as the driver does."""
    if not override and _explicit:
        return _current
    files = TlsFiles.from_env()
    if files is None and _env_flag(os.environ, explicit_only=True) is None and session_dir:
        files = TlsFiles.from_session(session_dir)
    return configure(files)


def adopt_beside_token(token_file: str | None, *, override: bool = True) -> Tls | None:
    """``adopt_session`` for the directory that holds the token file a client uses: a
    session directory, or a directory where the token was copied with its ``tls.json``
    (``rayops up`` keeps both in ``<install_dir>``)."""
    return adopt_session(os.path.dirname(token_file) if token_file else None, override=override)


def server_ssl_context() -> ssl.SSLContext | None:
    """The context an HTTP(S) server of this process listens with: HTTPS requiring a client
    certificate of the cluster CA when TLS is on, else None (plain HTTP)."""
    material = current()
    return None if material is None else material.server_context()


def url_scheme() -> str:
    """``https`` when this process speaks TLS, else ``http``."""
    return "https" if current() is not None else "http"


def describe_mismatch(peer: str, ours_on: bool) -> str:
    """The one-line explanation of a TLS/plaintext mismatch with ``peer``."""
    if ours_on:
        return (
            f"{peer} does not speak TLS, but this process has TLS on "
            f"({ENV_USE[0]}=1 or the session's {SESSION_FILE}): start the cluster with "
            "`rayops start --tls` or turn TLS off here"
        )
    return (
        f"{peer} requires TLS, but this process has TLS off: set {ENV_USE[0]}=1 with "
        f"{ENV_CERT[0]}, {ENV_KEY[0]} and {ENV_CA[0]} (a certificate from the cluster's CA), "
        "or connect through the session directory of a node of that cluster"
    )


def peer_speaks_tls(host: str, port: int, timeout: float = 3.0) -> bool | None:
    """Whether the server at host:port completes a TLS handshake (True), answers a TLS
    hello with something else or closes (False); None when it cannot be reached. Sends no
    certificate and no application bytes: nothing but a hello reaches the server."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None
    try:
        with ctx.wrap_socket(raw, server_hostname=None) as s:
            s.settimeout(timeout)
            return True
    except ssl.SSLError as err:
        # A TLS server that aborts the handshake still answers with a TLS alert.
        return "ALERT" in str(err.reason or "").upper()
    except OSError:
        return False
    finally:
        raw.close()


def _env_value(env: Mapping[str, str], names: tuple[str, str]) -> str:
    ours, rays = (env.get(n, "").strip() for n in names)
    if ours and rays and ours != rays:
        raise TlsConfigError(
            f"{names[0]}={ours!r} and {names[1]}={rays!r} disagree: set one of them"
        )
    return ours or rays


def _env_flag(env: Mapping[str, str], explicit_only: bool = False) -> Any:
    """RAYOPS_USE_TLS / RAY_USE_TLS as True/False; unset: False (None with explicit_only)."""
    values = {n: env.get(n, "").strip().lower() for n in ENV_USE}
    seen: dict[str, bool] = {}
    for name, raw in values.items():
        if not raw:
            continue
        if raw in _TRUE:
            seen[name] = True
        elif raw in _FALSE:
            seen[name] = False
        else:
            raise TlsConfigError(
                f"{name}={env.get(name)!r} is not valid: expected 1 or 0 "
                "(also true/false, yes/no, on/off)"
            )
    if len(set(seen.values())) > 1:
        raise TlsConfigError(f"{ENV_USE[0]} and {ENV_USE[1]} disagree: set one of them")
    if not seen:
        return None if explicit_only else False
    return next(iter(seen.values()))
