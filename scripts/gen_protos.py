"""Regenerate the Python stubs of rayops/protocol/*.proto, or check that they are fresh.

    python scripts/gen_protos.py          # rewrite rayops/protocol/*_pb2*.py[i]
    python scripts/gen_protos.py --check  # exit 1 if the committed stubs differ

Stubs are made with grpc_tools.protoc (the protoc bundled with grpcio-tools) from the
repository root, so each .proto registers in protobuf's global descriptor pool under its full
path ("rayops/protocol/common.proto") and cannot clash with another package's "common.proto".
The generated absolute imports (`from rayops.protocol import common_pb2`) are then rewritten to
package-relative ones (`from . import common_pb2`). The output depends only on the .proto files
and the grpcio-tools version: the same inputs give byte-identical files.

Generated code carries version guards: `*_pb2.py` refuses to import on a protobuf runtime older
than the protoc that made it, and `*_pb2_grpc.py` on a grpcio older than the grpcio-tools that
made it. `--check` therefore also names the generator versions when it finds a difference.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_PACKAGE = "rayops/protocol"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

# `from rayops.protocol import common_pb2 as rayops_dot_protocol_dot_common__pb2`
_ABSOLUTE_IMPORT = re.compile(r"^from rayops\.protocol import (\w+_pb2) as ", re.MULTILINE)
_GRPC_VERSION_LINE = re.compile(r"^GRPC_GENERATED_VERSION = '([^']+)'", re.MULTILINE)
_PROTOBUF_VERSION_LINE = re.compile(r"^# Protobuf Python Version: (\S+)", re.MULTILINE)


def proto_files(root: Path) -> list[Path]:
    """The .proto files of the protocol package, as paths relative to the repository root."""
    return sorted(p.relative_to(root) for p in (root / PROTO_PACKAGE).glob("*.proto"))


def _protoc_include_dir() -> str:
    """grpcio-tools' copy of the well-known types (google/protobuf/*.proto)."""
    import grpc_tools

    return str(Path(grpc_tools.__file__).parent / "_proto")


def _run_protoc(root: Path, out_dir: Path) -> None:
    from grpc_tools import protoc

    protos = [str(p) for p in proto_files(root)]
    if not protos:
        raise SystemExit(f"no .proto files found under {root / PROTO_PACKAGE}")
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{_protoc_include_dir()}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(root / p) for p in protos),
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code} (arguments: {' '.join(args)})")


# Generated code follows protoc's style, not ours: keep linters off it whatever paths they get.
_LINT_OFF = "# ruff: noqa\n"


def _postprocess(text: str) -> str:
    return _LINT_OFF + _ABSOLUTE_IMPORT.sub(r"from . import \1 as ", text)


def _has_service(grpc_stub_text: str) -> bool:
    # protoc writes a *_pb2_grpc.py for every .proto; one without a service holds no class.
    return re.search(r"^class ", grpc_stub_text, re.MULTILINE) is not None


def generate(root: Path) -> dict[str, str]:
    """Generate every stub in a temporary directory; return {file name: content}."""
    with tempfile.TemporaryDirectory(prefix="rayops-protos-") as tmp:
        out_dir = Path(tmp)
        _run_protoc(root, out_dir)
        generated: dict[str, str] = {}
        for path in sorted((out_dir / PROTO_PACKAGE).iterdir()):
            text = path.read_text(encoding="utf-8")
            if path.name.endswith("_pb2_grpc.py") and not _has_service(text):
                continue
            generated[path.name] = _postprocess(text)
    return generated


def committed(root: Path) -> dict[str, str]:
    """The generated stubs currently in the package directory."""
    package_dir = root / PROTO_PACKAGE
    return {
        p.name: p.read_text(encoding="utf-8")
        for p in sorted(package_dir.iterdir())
        if p.name.endswith(GENERATED_SUFFIXES)
    }


def _versions(files: dict[str, str]) -> str:
    protobuf = {m for t in files.values() for m in _PROTOBUF_VERSION_LINE.findall(t)}
    grpc = {m for t in files.values() for m in _GRPC_VERSION_LINE.findall(t)}
    return f"protobuf gencode {sorted(protobuf)}, grpcio-tools {sorted(grpc)}"


def differences(fresh: dict[str, str], current: dict[str, str]) -> list[str]:
    """Human-readable differences between fresh and current stubs (empty when equal)."""
    problems: list[str] = []
    for name in sorted(fresh.keys() - current.keys()):
        problems.append(f"missing: {PROTO_PACKAGE}/{name}")
    for name in sorted(current.keys() - fresh.keys()):
        problems.append(f"stale, no longer generated: {PROTO_PACKAGE}/{name}")
    for name in sorted(fresh.keys() & current.keys()):
        if fresh[name] != current[name]:
            diff = difflib.unified_diff(
                current[name].splitlines(),
                fresh[name].splitlines(),
                f"committed/{name}",
                f"fresh/{name}",
                lineterm="",
                n=1,
            )
            shown = list(diff)[:20]
            problems.append(f"differs: {PROTO_PACKAGE}/{name}\n" + "\n".join(shown))
    return problems


def write(root: Path, fresh: dict[str, str]) -> None:
    package_dir = root / PROTO_PACKAGE
    for name in committed(root).keys() - fresh.keys():
        (package_dir / name).unlink()
    for name, text in fresh.items():
        target = package_dir / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            tmp = target.with_suffix(target.suffix + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if the committed stubs differ from freshly generated ones",
    )
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()

    fresh = generate(root)
    if not args.check:
        write(root, fresh)
        print(f"generated {len(fresh)} files in {PROTO_PACKAGE}/ ({_versions(fresh)})")
        return 0

    current = committed(root)
    problems = differences(fresh, current)
    if not problems:
        print(f"{len(current)} generated files in {PROTO_PACKAGE}/ are fresh")
        return 0
    print(f"generated protocol stubs are stale ({len(problems)} problems):", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    print(
        f"committed: {_versions(current)}; this environment: {_versions(fresh)}.\n"
        "Run `python scripts/gen_protos.py` and commit the result (if only the versions differ, "
        "install the grpcio-tools version the project pins instead).",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
