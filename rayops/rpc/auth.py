"""The cluster token: making it, keeping it in a 0600 file, and checking it on every gRPC call.

One random token is made when the head starts. Every gRPC call carries it in the
`authorization` metadata entry as `Bearer <token>`; servers refuse calls without it with
UNAUTHENTICATED before the request bytes are deserialized or any handler runs, so nothing from
an unauthenticated peer is ever parsed or unpickled.

Client side, the token is attached by `rayops.rpc.grpc_channel` (explicit per-call metadata,
which measured cheaper than a client interceptor). This module owns no sockets and no channels.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

__all__ = [
    "AUTHORIZATION_METADATA_KEY",
    "TokenAuthServerInterceptor",
    "TokenFileError",
    "authorization_value",
    "generate_token",
    "read_token_file",
    "token_metadata",
    "write_token_file",
]

logger = logging.getLogger(__name__)

AUTHORIZATION_METADATA_KEY = "authorization"
_BEARER_PREFIX = "Bearer "
_TOKEN_BYTES = 32
# Printable ASCII without spaces: what gRPC allows in a text metadata value, minus ambiguity.
_TOKEN_ALPHABET = frozenset(chr(c) for c in range(0x21, 0x7F))
_REJECTION_LOG_INTERVAL_S = 10.0


class TokenFileError(ValueError):
    """A token file is missing, empty, malformed or readable by other users."""


def generate_token() -> str:
    """A new random cluster token: 32 bytes from `secrets`, URL-safe base64 (43 chars)."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def _check_token_text(token: str, source: str) -> str:
    if not token:
        raise TokenFileError(f"{source}: expected a cluster token, found an empty value")
    bad = sorted({c for c in token if c not in _TOKEN_ALPHABET})
    if bad:
        raise TokenFileError(
            f"{source}: a cluster token must be printable ASCII without spaces, "
            f"found {''.join(bad)!r}"
        )
    return token


def write_token_file(path: str | os.PathLike[str], token: str, *, overwrite: bool = False) -> None:
    """Write `token` to `path` with mode 0600, never readable by others even for an instant.

    The file is created with O_EXCL and mode 0600 in the same system call, so no other user can
    open it between creation and a later chmod. Without `overwrite` an existing file is an
    error (FileExistsError); with it, the token goes to a fresh 0600 file in the same directory
    that then atomically replaces `path`.
    """
    _check_token_text(token, f"token for {path}")
    target = Path(path)
    if not overwrite:
        _create_exclusive(target, token)
        return
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        _create_exclusive(tmp, token)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_exclusive(path: Path, token: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        # The umask can only remove bits from 0600; fchmod makes the mode exact either way.
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token stored in `path`.

    Raises TokenFileError naming the file when it is missing, empty, not a token, or readable or
    writable by group or others (like ssh with a private key, a leaked token is refused rather
    than used: fix it with `chmod 600 PATH`).
    """
    target = Path(path)
    try:
        fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as err:
        raise TokenFileError(
            f"cluster token file {target} does not exist: is this the right session "
            "directory, and has the head been started (`rayops start --head`)?"
        ) from err
    except PermissionError as err:
        raise TokenFileError(f"cluster token file {target} is not readable: {err}") from err
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise TokenFileError(f"cluster token file {target} is not a regular file")
        if mode & 0o077:
            raise TokenFileError(
                f"cluster token file {target} has mode {stat.S_IMODE(mode):04o}, expected 0600 "
                f"(no access for group or others): run `chmod 600 {target}`"
            )
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError as err:
        raise TokenFileError(
            f"cluster token file {target}: expected an ASCII token, found non-ASCII bytes"
        ) from err
    if not text:
        raise TokenFileError(f"cluster token file {target} is empty: expected one token")
    return _check_token_text(text, f"cluster token file {target}")


def authorization_value(token: str) -> str:
    """The metadata value that carries `token`."""
    return _BEARER_PREFIX + token


def token_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Per-call metadata carrying `token`, to pass as `metadata=` on a gRPC call."""
    return ((AUTHORIZATION_METADATA_KEY, authorization_value(token)),)


async def _reject_unauthenticated(request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
    # Never iterates the requests: the peer's bytes are not read past what gRPC buffered.
    await context.abort(
        grpc.StatusCode.UNAUTHENTICATED,
        "missing or wrong cluster token: pass the token from the head's session directory",
    )


# Stream-stream with no deserializer: gRPC hands raw bytes (here: none, since they are never
# read) and the behaviour never waits for a first request, so a streaming caller that sends
# nothing is refused as promptly as a unary one.
_REJECT_HANDLER = grpc.stream_stream_rpc_method_handler(_reject_unauthenticated)


class TokenAuthServerInterceptor(grpc.aio.ServerInterceptor):
    """Refuses, with UNAUTHENTICATED, every call that lacks `authorization: Bearer <token>`.

    The check runs before method lookup, so for a refused call no request message is
    deserialized and no handler runs; unknown methods are refused the same way, which keeps
    the list of methods private from unauthenticated peers. Comparison is constant-time.
    Refusals are logged at WARNING at most once every 10 s, with a count, so a scanner cannot
    flood the log.
    """

    def __init__(self, token: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        _check_token_text(token, "server token")
        self._expected = authorization_value(token).encode("ascii")
        self._clock = clock
        self._last_log = float("-inf")
        self._unlogged = 0

    def is_authorized(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        """Whether `metadata` carries the expected token."""
        for key, value in metadata or ():
            if key != AUTHORIZATION_METADATA_KEY:
                continue
            given = value if isinstance(value, bytes) else value.encode("utf-8", "replace")
            if hmac.compare_digest(given, self._expected):
                return True
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        metadata = handler_call_details.invocation_metadata  # type: ignore[attr-defined]
        if self.is_authorized(metadata):
            return await continuation(handler_call_details)
        self._log_rejection(handler_call_details.method)  # type: ignore[attr-defined]
        return _REJECT_HANDLER

    def _log_rejection(self, method: str) -> None:
        self._unlogged += 1
        now = self._clock()
        if now - self._last_log < _REJECTION_LOG_INTERVAL_S:
            return
        logger.warning(
            "refused %d call(s) without a valid cluster token (latest: %s)", self._unlogged, method
        )
        self._last_log = now
        self._unlogged = 0
