"""Find import cycles between the modules of a package, from the source, without importing it.

Usage: `python scripts/check_import_cycles.py [PACKAGE_DIR]` (default: rayops/). Prints each
cycle (a strongly connected component of the module import graph, with the imports that close
it, file and line) and exits 1 if there is one, 0 if there is none.

What counts as an import (decided for issue 9's "no module in rayops/ imports in a cycle"):
- every `import x` / `from x import y` of a module of the package, at module level **and inside
  functions**: a function-level import is still a dependency of one module on the other, and
  moving an import into a function is the usual way a cycle is hidden, not removed;
- **not** an import under `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): it never runs, it
  only names types for the checker;
- `from pkg import name` is an import of `pkg.name` when that is a module, else of `pkg`;
- importing `a.b.c` is an import of `a.b.c` only, not of the packages `a` and `a.b` whose
  `__init__` Python runs on the way (the same rule as import-linter's graph, grimp); a package's
  `__init__` is the module named like the package.

import-linter has no contract for "no cycle between any two modules" (its `acyclic_siblings`
contract compares sibling packages with their descendants squashed together, a coarser and
different check), so this stays a small stdlib script; the layer contracts of DESIGN.md §2 are
import-linter contracts in pyproject.toml.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Import:
    """One import of a module of the package by another."""

    importer: str
    imported: str
    path: str
    line: int
    in_function: bool

    def describe(self) -> str:
        where = "function-level" if self.in_function else "module-level"
        return f"{self.importer} -> {self.imported}  ({self.path}:{self.line}, {where})"


@dataclass(frozen=True)
class Cycle:
    """A set of modules that import each other, directly or through one another."""

    modules: tuple[str, ...]
    imports: tuple[Import, ...]

    def describe(self) -> str:
        lines = [" <-> ".join(self.modules)]
        lines += [f"    {imp.describe()}" for imp in self.imports]
        return "\n".join(lines)


def module_name(package_dir: Path, path: Path) -> str:
    """The dotted name of the module in `path` inside `package_dir` (a package named like it)."""
    relative = path.relative_to(package_dir.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _walk(node: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node under `node` with whether it sits inside a function, skipping the bodies of
    `if TYPE_CHECKING:` (their `else:` branches do run)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                yield stmt, in_function
                yield from _walk(stmt, in_function)
            continue
        nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
        yield child, in_function
        yield from _walk(child, nested)


def _resolve_relative(importer: str, is_package: bool, level: int, module: str | None) -> str:
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def imports_of(package_dir: Path, path: Path, modules: set[str]) -> list[Import]:
    """The imports of modules in `modules` made by the file `path`."""
    importer = module_name(package_dir, path)
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    where = path.relative_to(package_dir.parent).as_posix()
    found: list[Import] = []

    def add(target: str, node: ast.stmt, in_function: bool) -> None:
        # `import a.b.c` or a name that is not a module: the longest module prefix.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != importer:
            found.append(Import(importer, target, where, node.lineno, in_function))

    for node, in_function in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, in_function)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                source = _resolve_relative(importer, is_package, node.level, node.module)
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                add(submodule if submodule in modules else source, node, in_function)
    return found


def import_graph(package_dir: Path) -> list[Import]:
    """Every import between modules of the package at `package_dir`, sorted."""
    files = sorted(package_dir.rglob("*.py"))
    modules = {module_name(package_dir, f) for f in files}
    edges: set[Import] = set()
    for path in files:
        edges.update(imports_of(package_dir, path, modules))
    return sorted(edges)


def _components(nodes: Iterable[str], successors: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iterative (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(successors.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(successors.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(sorted(component))
    return out


def find_cycles(package_dir: Path) -> list[Cycle]:
    """The import cycles of the package at `package_dir`: each group of modules that reach each
    other through imports, with the imports among them."""
    edges = import_graph(package_dir)
    successors: dict[str, set[str]] = {}
    for edge in edges:
        successors.setdefault(edge.importer, set()).add(edge.imported)
    nodes = sorted({e.importer for e in edges} | {e.imported for e in edges})
    cycles = []
    for component in _components(nodes, successors):
        if len(component) < 2:
            continue
        members = set(component)
        inside = tuple(e for e in edges if e.importer in members and e.imported in members)
        cycles.append(Cycle(tuple(component), inside))
    return sorted(cycles, key=lambda c: c.modules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent.parent / "rayops"
    parser.add_argument("package_dir", nargs="?", type=Path, default=default)
    args = parser.parse_args(argv)
    package_dir: Path = args.package_dir.resolve()
    if not (package_dir / "__init__.py").is_file():
        parser.error(f"package_dir: {package_dir} is not a package (no __init__.py)")
    cycles = find_cycles(package_dir)
    if not cycles:
        print(f"no import cycles in {package_dir.name}/")
        return 0
    print(f"{len(cycles)} import cycle(s) in {package_dir.name}/:", file=sys.stderr)
    for cycle in cycles:
        print(cycle.describe(), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
