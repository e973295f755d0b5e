"""Checking a GCS address before a client relies on it: reachable first, then the token.

A driver joining a cluster (``init("HOST:PORT")``) and the CLI (``rayops status``,
``rayops start --address``) call these so that a wrong address and a wrong token each get
their own message: "could not reach a GCS at HOST:PORT: connection refused" is not "no cluster
token found", and "the GCS at HOST:PORT refused the cluster token from FILE" names the file
to fix. The reachability check is a plain TCP connect (no gRPC, nothing sent); the token
check is one CheckAlive call. Importing this module imports no gRPC (the client loads lazily).
"""

from __future__ import annotations

import errno
import socket
import time

from rayops.exceptions import AuthenticationError

__all__ = ["check_reachable", "check_token", "refused_token", "split_address"]

CONNECT_TIMEOUT_S = 3.0
# A GCS that is restarting refuses connections for a moment; ride that out, briefly.
REFUSED_RETRY_S = 1.0
TOKEN_CHECK_TIMEOUT_S = 5.0


def split_address(address: str, what: str = "address") -> tuple[str, int]:
    """``HOST:PORT`` as (host, port); ValueError naming ``what`` otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be HOST:PORT with a port in 1..65535, got {address!r}")
    return host.strip("[]"), int(port)


def check_reachable(
    address: str,
    *,
    timeout: float = CONNECT_TIMEOUT_S,
    retry_refused_for: float = REFUSED_RETRY_S,
) -> None:
    """Raise ConnectionError("could not reach a GCS at ADDRESS: REASON") unless something
    accepts TCP connections at ``address``."""
    host, port = split_address(address)
    deadline = time.monotonic() + retry_refused_for
    while True:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
            break
        except ConnectionRefusedError as err:
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            raise ConnectionError(_unreachable(address, "connection refused")) from err
        except socket.gaierror as err:
            raise ConnectionError(_unreachable(address, f"unknown host {host!r}")) from err
        except TimeoutError as err:
            raise ConnectionError(_unreachable(address, f"no answer within {timeout:g} s")) from err
        except OSError as err:
            reason = (err.strerror or errno.errorcode.get(err.errno or 0, str(err))).lower()
            raise ConnectionError(_unreachable(address, reason)) from err
    check_tls_matches(address, host, port, timeout)


def check_tls_matches(address: str, host: str, port: int, timeout: float) -> None:
    """Raise ConnectionError saying so when the GCS speaks TLS and this process does not,
    or the other way round (else the mismatch would look like a GCS that never answers)."""
    from rayops.rpc import tls

    ours = tls.current() is not None
    theirs = tls.peer_speaks_tls(host, port, timeout)
    if theirs is None or theirs == ours:
        return
    raise ConnectionError(tls.describe_mismatch(f"the GCS at {address}", ours))


def _unreachable(address: str, reason: str) -> str:
    return (
        f"could not reach a GCS at {address}: {reason} "
        "(is the head running there? `rayops status` on the head prints its address)"
    )


def check_token(
    address: str, token: str, source: str, *, timeout: float = TOKEN_CHECK_TIMEOUT_S
) -> None:
    """Raise AuthenticationError naming ``source`` (where the token came from) if the GCS at
    ``address`` refuses ``token``. Other failures propagate as the GCS client raises them."""
    from rayops.gcs.client import GcsClient

    client = GcsClient(address, token, timeout=timeout)
    try:
        client.check_alive()
    except AuthenticationError as err:
        raise refused_token(address, source) from err
    finally:
        client.close()


def refused_token(address: str, source: str) -> AuthenticationError:
    """The error for a GCS that refused the token read from ``source``."""
    return AuthenticationError(
        f"the GCS at {address} refused the cluster token from {source}: use the token of "
        "the cluster you mean to reach (the head's <temp-dir>/session_latest/cluster_token, "
        "or RAYOPS_TOKEN_FILE)"
    )
