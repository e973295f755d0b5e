"""rpc/tls.py: the TLS settings from the environment and a session, and loading the files
(every error names the variable or the file)."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from rayops.launcher.tls_certs import CA_CERT, host_files, make_certs
from rayops.rpc import tls
from rayops.rpc.framed_settings import FramedSettings


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    for rel, data in make_certs({"10.0.0.1": ["10.0.0.1"]}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _files(root: Path) -> tls.TlsFiles:
    cert, key = host_files("10.0.0.1")
    return tls.TlsFiles(str(root / cert), str(root / key), str(root / CA_CERT))


def _env(f: tls.TlsFiles, **extra: str) -> dict[str, str]:
    return {**f.to_env(), **extra}


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"RAYOPS_USE_TLS": "0"}, False),
        ({"RAY_USE_TLS": "false"}, False),
        ({"RAYOPS_USE_TLS": "1"}, True),
        ({"RAY_USE_TLS": "yes"}, True),
        ({"RAYOPS_USE_TLS": "1", "RAY_USE_TLS": "1"}, True),
    ],
)
def test_use_tls_flag(env: dict[str, str], on: bool) -> None:
    paths = {
        "RAY_TLS_SERVER_CERT": "/c.pem",
        "RAY_TLS_SERVER_KEY": "/k.pem",
        "RAY_TLS_CA_CERT": "/ca.pem",
    }
    files = tls.TlsFiles.from_env({**env, **paths})
    assert (files is not None) == on
    if files is not None:  # Ray's names are read as rayops' own
        assert (files.cert, files.key, files.ca) == ("/c.pem", "/k.pem", "/ca.pem")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RAYOPS_USE_TLS": "maybe"}, "RAYOPS_USE_TLS='maybe' is not valid"),
        ({"RAYOPS_USE_TLS": "1", "RAY_USE_TLS": "0"}, "disagree"),
        ({"RAYOPS_USE_TLS": "1"}, "needs RAYOPS_TLS_SERVER_CERT, RAYOPS_TLS_SERVER_KEY"),
        (
            {
                "RAYOPS_USE_TLS": "1",
                "RAYOPS_TLS_SERVER_CERT": "/a",
                "RAY_TLS_SERVER_CERT": "/b",
                "RAYOPS_TLS_SERVER_KEY": "/k",
                "RAYOPS_TLS_CA_CERT": "/ca",
            },
            "RAYOPS_TLS_SERVER_CERT='/a' and RAY_TLS_SERVER_CERT='/b' disagree",
        ),
    ],
)
def test_bad_environment_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(tls.TlsConfigError, match=message):
        tls.TlsFiles.from_env(env)


def test_load_checks_every_file(pki: Path, tmp_path: Path) -> None:
    good = _files(pki)
    loaded = good.load()
    assert loaded.server_context().verify_mode == ssl.CERT_REQUIRED
    assert loaded.client_context().check_hostname
    missing = tls.TlsFiles(str(tmp_path / "nope.pem"), good.key, good.ca, origin="--tls-cert")
    with pytest.raises(tls.TlsConfigError, match=r"nope\.pem \(given by --tls-cert\) does not"):
        missing.load()
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    with pytest.raises(tls.TlsConfigError, match=r"CA certificate file .*junk\.pem.*PEM block"):
        tls.TlsFiles(good.cert, good.key, str(junk)).load()
    # A key that is not the certificate's: named, before anything listens.
    other = make_certs({"10.0.0.2": ["10.0.0.2"]})
    other_key = tmp_path / "other.key"
    other_key.write_bytes(other[host_files("10.0.0.2")[1]])
    with pytest.raises(tls.TlsConfigError, match=r"other\.key does not match the certificate"):
        tls.TlsFiles(good.cert, str(other_key), good.ca).load()


def test_session_file_round_trip_and_adoption(
    pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (*tls.ENV_USE, *tls.ENV_CERT, *tls.ENV_KEY, *tls.ENV_CA):
        monkeypatch.delenv(name, raising=False)
    good = _files(pki)
    good.save(str(tmp_path))
    assert tls.TlsFiles.from_session(str(tmp_path)) == good
    assert tls.TlsFiles.from_session(str(tmp_path / "none")) is None
    try:
        assert tls.adopt_session(str(tmp_path)) is not None and tls.url_scheme() == "https"
        # A process already set keeps its choice unless told to override it.
        assert tls.adopt_session(None, override=False) is not None
        assert tls.adopt_session(None) is None and tls.url_scheme() == "http"
        # The environment's explicit "off" wins over the session's file.
        monkeypatch.setenv("RAYOPS_USE_TLS", "0")
        assert tls.adopt_session(str(tmp_path)) is None
    finally:
        tls.configure(None)
    (tmp_path / tls.SESSION_FILE).write_text('{"cert": 1}')
    with pytest.raises(tls.TlsConfigError, match=r"tls\.json: expected an object"):
        tls.TlsFiles.from_session(str(tmp_path))


def test_to_env_gives_a_child_the_same_files(pki: Path) -> None:
    good = _files(pki)
    assert tls.TlsFiles.from_env(_env(good)) == good
    assert os.path.isabs(good.cert)


def test_clients_take_tls_from_beside_the_token_they_use(
    pki: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (*tls.ENV_USE, *tls.ENV_CERT, *tls.ENV_KEY, *tls.ENV_CA):
        monkeypatch.delenv(name, raising=False)
    _files(pki).save(str(tmp_path))
    try:
        assert tls.adopt_beside_token(str(tmp_path / "cluster_token")) is not None
        assert tls.adopt_beside_token(str(pki / "cluster_token")) is None  # no tls.json there
        assert tls.adopt_beside_token(None) is None
    finally:
        tls.configure(None)


def test_a_plaintext_framed_server_names_a_tls_client_and_the_token_length_is_no_hello() -> None:
    """A TLS hello on a plaintext port is refused as such; a handshake frame whose length
    byte happens to be a TLS record type (21, 22) is still a handshake."""
    import asyncio
    import socket

    from rayops.rpc import framed

    async def main() -> None:
        for token in (b"x" * (0x15 - len(framed.MAGIC)), b"y" * (0x16 - len(framed.MAGIC))):
            server = await framed.serve("127.0.0.1", 0, token, {}, tls_material=None)
            port = server.sockets[0].getsockname()[1]
            conn = await framed.connect(
                "127.0.0.1", port, token, {}, settings=_tcp(), tls_material=None
            )
            conn.close()
            loop = asyncio.get_running_loop()
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setblocking(False)
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            hello = ssl.MemoryBIO()
            obj = ctx.wrap_bio(ssl.MemoryBIO(), hello, server_hostname=None)
            with pytest.raises(ssl.SSLWantReadError):
                obj.do_handshake()
            await loop.sock_sendall(sock, hello.read())
            assert await asyncio.wait_for(loop.sock_recv(sock, 16), 5) == b"\x02\x00\x00\x00NO"
            sock.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def _tcp() -> FramedSettings:
    return FramedSettings(local_sockets=False)
