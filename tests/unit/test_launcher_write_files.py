"""runtime/write-files.py: a node's small files written by one command (data on stdin)."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "rayops" / "_assets" / "runtime" / "write-files.py"


def run(spec: dict[str, object]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=False,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_dirs_and_files_with_modes_then_changes_nothing(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    spec = {
        "dirs": [{"path": str(tls), "mode": "0700"}],
        "files": [
            {"path": str(tls / "node.key"), "mode": "0600",
             "b64": base64.b64encode(b"secret\n").decode()},
            {"path": str(tmp_path / "config.key"), "mode": "0644", "text": "abc"},
        ],
    }  # fmt: skip
    first = run(spec)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["changed"] == [str(tls), str(tls / "node.key"),
                                                   str(tmp_path / "config.key")]  # fmt: skip
    assert mode(tls) == 0o700 and mode(tls / "node.key") == 0o600
    assert (tls / "node.key").read_bytes() == b"secret\n"
    assert (tmp_path / "config.key").read_text() == "abc\n"  # one trailing newline
    again = run(spec)
    assert again.returncode == 0 and json.loads(again.stdout)["changed"] == []
    os.chmod(tls / "node.key", 0o644)  # a wrong mode alone is a change
    fixed = run(spec)
    assert json.loads(fixed.stdout)["changed"] == [str(tls / "node.key")]
    assert mode(tls / "node.key") == 0o600
    assert not [p for p in tmp_path.rglob("*rayops-tmp*")]


def test_an_unwritable_path_fails_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run({"files": [{"path": str(blocker / "sub" / "f"), "mode": "0644", "text": "x"}]})
    assert res.returncode == 1
    assert "rayops write-files:" in res.stderr and str(blocker) in res.stderr, res.stderr
