"""No module of rayops/ imports another in a cycle (scripts/check_import_cycles.py).

The checker reads the source (no import): module-level and function-level imports count, imports
under `if TYPE_CHECKING:` do not. There is no cycle left (the last one, rayops.actor <->
core_worker.actor_caller, went when actor_caller started handing back HandleParts instead of
building ActorHandle objects), and none may appear.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_import_cycles.py"

def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_import_cycles", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def _package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "pkg"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return pkg


def test_a_cycle_is_found_with_the_imports_that_close_it(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg import b\n",
            "sub/__init__.py": "",
            "sub/c.py": "def f():\n    from ..a import x\n",  # function-level, relative
            "b.py": "import pkg.sub.c\n",
            "d.py": "from pkg import a\n",  # imports into the cycle, is not part of it
        },
    )
    (cycle,) = _checker().find_cycles(pkg)
    assert cycle.modules == ("pkg.a", "pkg.b", "pkg.sub.c")
    described = {(i.importer, i.imported, i.line, i.in_function) for i in cycle.imports}
    assert described == {
        ("pkg.a", "pkg.b", 1, False),
        ("pkg.b", "pkg.sub.c", 1, False),
        ("pkg.sub.c", "pkg.a", 2, True),
    }


def test_type_checking_imports_do_not_count(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg.b import B\n",
            "b.py": """\
                from typing import TYPE_CHECKING
                import typing
                if TYPE_CHECKING:
                    from pkg.a import A
                if typing.TYPE_CHECKING:
                    import pkg.a
                else:
                    import os
                class B: ...
            """,
        },
    )
    assert _checker().find_cycles(pkg) == []


def test_the_script_exits_non_zero_and_names_each_cycle(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path, {"__init__.py": "", "a.py": "import pkg.b\n", "b.py": "import pkg.a\n"}
    )
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(pkg)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    assert "pkg.a <-> pkg.b" in out.stderr
    assert "pkg/a.py:1, module-level" in out.stderr
    (pkg / "b.py").write_text("")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(pkg)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr


def test_rayops_has_no_import_cycle() -> None:
    found = _checker().find_cycles(ROOT / "rayops")
    assert not found, "import cycles in rayops/:\n" + "\n".join(c.describe() for c in found)
