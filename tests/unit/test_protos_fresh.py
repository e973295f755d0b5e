"""The committed protocol stubs are what `scripts/gen_protos.py` makes from the .proto files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GEN_SCRIPT = REPO_ROOT / "scripts" / "gen_protos.py"


def test_generated_stubs_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(GEN_SCRIPT), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        "rayops/protocol stubs are stale; run `python scripts/gen_protos.py`:\n"
        + result.stdout
        + result.stderr
    )


def test_check_notices_a_stale_stub(tmp_path: Path) -> None:
    """--check fails when a committed stub differs (on a copy, never the real tree)."""
    copy = tmp_path / "rayops" / "protocol"
    copy.mkdir(parents=True)
    for path in (REPO_ROOT / "rayops" / "protocol").iterdir():
        if path.suffix in {".proto", ".py", ".pyi"}:
            (copy / path.name).write_bytes(path.read_bytes())
    stub = copy / "gcs_kv_pb2.py"
    stub.write_text(stub.read_text() + "# edited by hand\n")

    result = subprocess.run(
        [sys.executable, str(GEN_SCRIPT), "--check", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "differs: rayops/protocol/gcs_kv_pb2.py" in result.stderr


def test_stubs_import_as_package_modules() -> None:
    from rayops.protocol import common_pb2, gcs_node_pb2, gcs_node_pb2_grpc

    # Registered under the full path, so another package's "common.proto" cannot clash.
    assert common_pb2.DESCRIPTOR.name == "rayops/protocol/common.proto"
    assert gcs_node_pb2.RegisterNodeRequest.DESCRIPTOR.full_name == (
        "rayops.protocol.RegisterNodeRequest"
    )
    assert hasattr(gcs_node_pb2_grpc, "NodeInfoGcsServiceStub")
