"""Cluster token files and the token check (rayops.rpc.auth): real files, no processes."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rayops.rpc.auth import (
    AUTHORIZATION_METADATA_KEY,
    TokenAuthServerInterceptor,
    TokenFileError,
    authorization_value,
    generate_token,
    read_token_file,
    token_metadata,
    write_token_file,
)
from rayops.rpc.grpc_channel import format_address


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Run with umask 000, so only the code under test can keep a file private."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_token_is_random_urlsafe_text() -> None:
    tokens = {generate_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        assert len(token) == 43  # 32 bytes, base64 without padding
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_written_token_file_is_0600_and_reads_back(tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "cluster_token"
    token = generate_token()
    write_token_file(path, token)
    assert _mode(path) == 0o600
    assert read_token_file(path) == token


def test_write_refuses_an_existing_file_unless_told(tmp_path: Path, permissive_umask: None) -> None:
    path = tmp_path / "cluster_token"
    write_token_file(path, "first-token")
    with pytest.raises(FileExistsError):
        write_token_file(path, "second-token")
    assert read_token_file(path) == "first-token"

    write_token_file(path, "second-token", overwrite=True)
    assert read_token_file(path) == "second-token"
    assert _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster_token"]


def test_write_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    link = tmp_path / "cluster_token"
    link.symlink_to(victim)
    with pytest.raises(OSError):
        write_token_file(link, "token")
    assert victim.read_text() == "untouched"


def test_read_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(TokenFileError, match=str(path)) as info:
        read_token_file(path)
    assert "does not exist" in str(info.value)


def test_read_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "cluster_token"
    path.write_text("token\n")
    path.chmod(0o644)
    with pytest.raises(TokenFileError, match="0644") as info:
        read_token_file(path)
    assert f"chmod 600 {path}" in str(info.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "empty"), (b"  \n", "empty"), (b"t\xc3\xa9", "non-ASCII"), (b"two words", "spaces")],
)
def test_read_refuses_bad_content(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "cluster_token"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(TokenFileError, match=expected):
        read_token_file(path)


def test_token_metadata_is_a_bearer_authorization_entry() -> None:
    assert token_metadata("abc") == (("authorization", "Bearer abc"),)
    assert AUTHORIZATION_METADATA_KEY == "authorization"
    assert authorization_value("abc") == "Bearer abc"


def test_interceptor_accepts_only_the_exact_token() -> None:
    check = TokenAuthServerInterceptor("s3cret").is_authorized
    assert check((("authorization", "Bearer s3cret"),))
    assert check((("x-request-id", "1"), ("authorization", "Bearer s3cret")))
    assert check((("authorization", b"Bearer s3cret"),))
    assert not check(None)
    assert not check(())
    assert not check((("authorization", "Bearer s3cre"),))
    assert not check((("authorization", "Bearer s3cretX"),))
    assert not check((("authorization", "s3cret"),))
    assert not check((("authorization", "Bearer sécret"),))
    assert not check((("x-authorization", "Bearer s3cret"),))


class _FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rejections_are_logged_at_most_every_ten_seconds(caplog: pytest.LogCaptureFixture) -> None:
    clock = _FakeClock()
    interceptor = TokenAuthServerInterceptor("s3cret", clock=clock)
    with caplog.at_level(logging.WARNING, logger="rayops.rpc.auth"):
        interceptor._log_rejection("/svc/A")
        clock.now += 1
        interceptor._log_rejection("/svc/B")
        interceptor._log_rejection("/svc/C")
        clock.now += 10
        interceptor._log_rejection("/svc/D")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "refused 1 call(s) without a valid cluster token (latest: /svc/A)",
        "refused 3 call(s) without a valid cluster token (latest: /svc/D)",
    ]


def test_format_address_brackets_ipv6() -> None:
    assert format_address("127.0.0.1", 6379) == "127.0.0.1:6379"
    assert format_address("::1", 6379) == "[::1]:6379"
    assert format_address("[::1]", 6379) == "[::1]:6379"
