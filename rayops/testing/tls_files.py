"""Certificates for tests and benchmarks: a cluster CA and a certificate for 127.0.0.1,
made with the launcher's own generator (``launcher/tls_certs.py``), and an environment
that turns TLS on for a local cluster and the processes it starts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rayops.rpc import tls

__all__ = ["loopback_certs", "tls_environment"]


def loopback_certs(directory: str | os.PathLike[str], host: str = "127.0.0.1") -> tls.TlsFiles:
    """Write a new CA and a certificate for ``host`` under ``directory``; their paths."""
    from rayops.launcher.tls_certs import CA_CERT, host_files, make_certs

    root = Path(directory)
    for rel, data in make_certs({host: [host]}, cluster_name="test").items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o600)
    cert, key = host_files(host)
    return tls.TlsFiles(str(root / cert), str(root / key), str(root / CA_CERT))


@contextmanager
def tls_environment(files: tls.TlsFiles | None) -> Iterator[None]:
    """This process's environment says TLS with ``files`` (None: says off) for the block,
    under rayops' and Ray's names, so ``init()`` and everything it starts use it."""
    names = (*tls.ENV_USE, *tls.ENV_CERT, *tls.ENV_KEY, *tls.ENV_CA)
    saved = {n: os.environ.get(n) for n in names}
    for n in names:
        os.environ.pop(n, None)
    os.environ[tls.ENV_USE[0]] = "0"
    if files is not None:
        os.environ.update(files.to_env())
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v
        tls.adopt_session(None)
