"""Write docs/compatibility.md: every public name of Ray Core and where rayops stands on it.

Usage: `python scripts/compat_table.py` rewrites the page; `--check` only compares (exit 1 if the
page is stale or the notes disagree with the code). tests/unit/test_compat_table.py runs the same
checks.

Inputs, both committed under docs/compat/:
- `ray_2_60_names.txt`: Ray Core's public names, collected once from an installed Ray by
  scripts/collect_ray_names.py. Nothing here imports Ray; Ray is never a dependency.
- `notes.yaml`, kept by hand: for a name that rayops has, whether it **differs** from Ray (and
  how); for a name it lacks, that it is **not yet** there (and which issue brings it) or **out
  of scope** (and why). A note's key is a dotted Ray name, or `prefix.*` for every name under a
  prefix (the longest match wins, an exact name over any pattern).

What this script decides by itself: whether rayops has a name (`ray.util.queue.Queue` is looked
up as `rayops.util.queue.Queue`, importing rayops's modules and reading attributes), whether
an exception rayops has subclasses the same Ray exceptions and built-in errors as Ray's does,
whether a class member is a method where Ray's is an attribute or property (or the reverse), and
whether a function takes Ray's public parameters by the same names.
Those found differences make a name **differs** whatever the notes say.
A name rayops has with no note is **supported**. A member of a class or module rayops lacks
takes the class's or module's note. The notes must agree with the code: a name rayops has
cannot be "not yet" or "out of scope", a name it lacks needs a note saying when or why, and
every note must match a name.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from signatures import parameter_names  # scripts/ is on the path when run

ROOT = Path(__file__).resolve().parent.parent
NAMES_FILE = ROOT / "docs" / "compat" / "ray_2_60_names.txt"
NOTES_FILE = ROOT / "docs" / "compat" / "notes.yaml"
PAGE = ROOT / "docs" / "compatibility.md"

SUPPORTED = "supported"
DIFFERS = "differs"
NOT_YET = "not yet"
OUT_OF_SCOPE = "out of scope"
STATUSES = (SUPPORTED, DIFFERS, NOT_YET, OUT_OF_SCOPE)
_NOTE_KEYS = {"status", "detail", "issue"}



@dataclass(frozen=True)
class RayName:
    """One line of the names file."""

    name: str
    kind: str  # module, class, exception, function, value
    annotation: str  # public, developer, deprecated, - (in __all__ only)
    bases: tuple[str, ...]  # exceptions: base classes, nearest first, without the three roots
    params: tuple[str, ...] | None = None  # functions: parameter names (*args, **kw marked)


@dataclass(frozen=True)
class Note:
    """A hand-kept note on one name or on every name under a prefix (`key` ends with `.*`)."""

    key: str
    status: str
    detail: str
    issue: int | None


@dataclass(frozen=True)
class Row:
    """Where rayops stands on one Ray name."""

    name: str
    kind: str
    present: bool
    status: str
    detail: str
    issue: int | None
    collapsed: bool  # a member of a class or module rayops lacks: counted in that one's row


class CompatError(Exception):
    """The names file or the notes are malformed, or the notes disagree with the code."""


# ------------------------------------------------------------------------------------ inputs
def load_names(path: Path = NAMES_FILE) -> tuple[str, list[RayName]]:
    """The Ray version named in the header and the names, in file order."""
    version = ""
    names: list[RayName] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("#"):
            if not version and "Ray Core " in line:
                version = line.split("Ray Core ", 1)[1].split(",", 1)[0].split()[0]
            continue
        fields = line.split()
        if len(fields) not in (3, 4):
            raise CompatError(
                f"{path}:{number}: expected `name kind annotation [bases=...|params=...]`: {line!r}"
            )
        bases: tuple[str, ...] = ()
        params: tuple[str, ...] | None = None
        if len(fields) == 4:
            key, sep, value = fields[3].partition("=")
            if not sep or key not in ("bases", "params"):
                raise CompatError(f"{path}:{number}: expected bases=... or params=...: {line!r}")
            listed = tuple(v for v in value.split(",") if v)
            if key == "bases":
                bases = listed
            else:
                params = listed
        names.append(RayName(fields[0], fields[1], fields[2], bases, params))
    if not version:
        raise CompatError(f"{path}: no `# Public names of Ray Core <version>` header")
    return version, names


def load_notes(path: Path = NOTES_FILE) -> tuple[dict[int, str], dict[str, Note]]:
    """The issue titles and the notes by key, checked for shape."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or set(data) - {"issues", "names"}:
        raise CompatError(f"{path}: expected top-level keys `issues` and `names`")
    issues = data.get("issues") or {}
    if not all(isinstance(k, int) and isinstance(v, str) for k, v in issues.items()):
        raise CompatError(f"{path}: issues: expected `<number>: <title>` entries")
    notes: dict[str, Note] = {}
    for key, body in (data.get("names") or {}).items():
        where = f"{path}: names.{key}"
        if not isinstance(body, dict) or set(body) - _NOTE_KEYS:
            raise CompatError(f"{where}: expected a mapping with keys {sorted(_NOTE_KEYS)}")
        status = body.get("status")
        if status not in STATUSES:
            raise CompatError(f"{where}.status: expected one of {STATUSES}, found {status!r}")
        detail = body.get("detail") or ""
        issue = body.get("issue")
        if issue is not None and issue not in issues:
            raise CompatError(f"{where}.issue: {issue!r} is not listed under `issues`")
        if status in (DIFFERS, OUT_OF_SCOPE) and not detail:
            raise CompatError(f"{where}.detail: a {status!r} note says how or why")
        if status == NOT_YET and issue is None and not detail:
            raise CompatError(
                f"{where}: a 'not yet' note names its issue or says why there is none"
            )
        notes[key] = Note(key, status, detail, issue)
    return issues, notes


# ------------------------------------------------------------------------------ the code side
_MISSING = object()


def rayops_object(name: str) -> Any:
    """The object rayops has under Ray's dotted `name` (`ray.` read as `rayops.`), or _MISSING."""
    parts = ["rayops", *name.split(".")[1:]]
    obj: Any = _MISSING
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
                continue
            raise  # a module that exists failed to import: a real error, not a missing name
        break
    for attr in parts[cut:]:
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            return _MISSING
    return obj


def _as_ray_name(cls: type) -> str:
    qualified = f"{cls.__module__}.{cls.__qualname__}"
    if qualified.startswith("rayops."):
        return "ray." + qualified[len("rayops.") :]
    return qualified


def base_difference(ray_bases: Iterable[str], obj: Any, known: set[str]) -> str:
    """How rayops's exception class `obj` inherits differently from Ray's (empty if it does not).

    Compared: the Ray exceptions in `known` and the standard library's classes among the bases;
    rayops's own intermediate classes that Ray does not have are ignored.
    """
    if not isinstance(obj, type):
        return "is not a class"
    roots = {object, BaseException, Exception}
    ours = [_as_ray_name(k) for k in obj.__mro__[1:] if k not in roots]
    ours = [n for n in ours if n in known or not n.startswith("ray.")]
    theirs = list(ray_bases)
    missing = [n for n in theirs if n not in ours]
    extra = [n for n in ours if n not in theirs]
    parts = []
    if missing:
        parts.append("does not subclass " + ", ".join(f"`{_short(n)}`" for n in missing))
    if extra:
        parts.append("also subclasses " + ", ".join(f"`{_short(n)}`" for n in extra))
    return "; ".join(parts)


def signature_difference(ray_params: tuple[str, ...] | None, obj: Any) -> str:
    """Which of Ray's public (no leading underscore) named parameters rayops's function `obj`
    does not take, and which public ones it takes that Ray's does not; empty if none.

    `*args`/`**kwargs` are not compared by name; a rayops `**kwargs` is mentioned, since it may
    take a keyword it does not name.
    """
    if ray_params is None or not callable(obj):
        return ""
    ours = parameter_names(obj)
    if ours is None:
        return ""

    def named(params: tuple[str, ...]) -> list[str]:
        return [p for p in params if not p.startswith(("*", "_"))]

    theirs, mine = named(ray_params), named(ours)
    missing = [p for p in theirs if p not in mine]
    extra = [p for p in mine if p not in theirs]
    parts = []
    if missing:
        varkw = any(p.startswith("**") for p in ours)
        verb = "does not name" if varkw else "does not take"
        parts.append(f"{verb} " + ", ".join(f"`{p}`" for p in missing))
    if extra:
        parts.append("takes " + ", ".join(f"`{p}`" for p in extra) + " that Ray's does not")
    return "; ".join(parts)


def member_difference(ray_kind: str, owner: Any, attr: str) -> str:
    """How member `attr` of rayops's class `owner` differs in kind from Ray's (`function` for a
    method, `value` for a property or attribute); empty if it does not."""
    if not isinstance(owner, type):
        return ""
    try:
        static = inspect.getattr_static(owner, attr)
    except AttributeError:
        return ""
    if isinstance(static, classmethod | staticmethod):
        static = static.__func__
    ours = "value" if isinstance(static, property) or not callable(static) else "function"
    if ours == ray_kind:
        return ""
    if ray_kind == "function":
        return "an attribute here, a method in Ray (call it there, read it here)"
    return "a method here, an attribute or property in Ray (read it there, call it here)"


def _short(name: str) -> str:
    for prefix in ("builtins.", "ray.exceptions."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


# ------------------------------------------------------------------------------ the decision
def note_for(name: str, notes: Mapping[str, Note]) -> Note | None:
    """The note of `name`: its own, else the longest `prefix.*` pattern above it."""
    if name in notes:
        return notes[name]
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        note = notes.get(".".join(parts[:cut]) + ".*")
        if note is not None:
            return note
    return None


def classify(
    names: list[RayName],
    notes: Mapping[str, Note],
    lookup: Callable[[str], Any] = rayops_object,
) -> tuple[list[Row], list[str]]:
    """Rows for every name, and every disagreement between the notes and the code."""
    problems: list[str] = []
    known = {n.name for n in names}
    objects = {n.name: lookup(n.name) for n in names}
    by_name = {n.name: n for n in names}
    used: set[str] = set()
    rows: list[Row] = []
    for ray_name in names:
        name = ray_name.name
        present = objects[name] is not _MISSING
        note = note_for(name, notes)
        parent = name.rpartition(".")[0]
        collapsed = (
            parent in by_name
            and by_name[parent].kind in ("class", "module")
            and objects[parent] is _MISSING
        )
        if note is not None:
            used.add(note.key)
        elif collapsed:
            note = note_for(parent, notes)
        auto = ""
        if present and ray_name.kind == "exception":
            auto = base_difference(ray_name.bases, objects[name], known)
        elif present and parent in by_name and by_name[parent].kind == "class":
            auto = member_difference(ray_name.kind, objects[parent], name.rpartition(".")[2])
        if present and not auto and ray_name.kind == "function":
            auto = signature_difference(ray_name.params, objects[name])
        if present:
            if note is not None and note.status in (NOT_YET, OUT_OF_SCOPE):
                problems.append(
                    f"{name}: rayops has it, but notes.yaml ({note.key}) says {note.status!r}: "
                    "update the note"
                )
            status = note.status if note is not None else SUPPORTED
            detail = note.detail if note is not None else ""
            if auto:
                auto = auto[0].upper() + auto[1:]
                status = DIFFERS
                detail = f"{auto}. {detail}".strip() if detail else auto + "."
            rows.append(
                Row(name, ray_name.kind, True, status, detail, note.issue if note else None, False)
            )
            continue
        if note is None:
            problems.append(
                f"{name}: rayops lacks it and notes.yaml has no note: add `not yet` (with its "
                "issue) or `out of scope` (with why)"
            )
            rows.append(Row(name, ray_name.kind, False, NOT_YET, "", None, collapsed))
            continue
        if note.status in (SUPPORTED, DIFFERS):
            problems.append(
                f"{name}: notes.yaml ({note.key}) says {note.status!r} but rayops lacks "
                f"{'rayops' + name[3:]}"
            )
        rows.append(
            Row(name, ray_name.kind, False, note.status, note.detail, note.issue, collapsed)
        )
    for key in sorted(set(notes) - used):
        problems.append(f"notes.yaml: {key} matches no name rayops has or lacks on its own")
    return rows, problems


def load_sections(path: Path = NAMES_FILE) -> list[str]:
    """The page's sections: the modules the collector listed, in its order (the header line
    `# modules: ...`), so the two scripts cannot disagree on them."""
    for line in path.read_text().splitlines():
        if line.startswith("# modules:"):
            return line.split(":", 1)[1].split()
        if not line.startswith("#"):
            break
    raise CompatError(f"{path}: no `# modules:` header line; rerun scripts/collect_ray_names.py")


SECTIONS = load_sections()


# -------------------------------------------------------------------------------- the page
def section_of(name: str, kind: str) -> str:
    """The page section of a name: the longest section prefixing it. A function or class named
    like a module (`ray.util.placement_group`, the function) goes with its own module."""
    if name in SECTIONS and kind != "module":
        name = name.rpartition(".")[0]
    best = "ray"
    for section in SECTIONS:
        if (name == section or name.startswith(section + ".")) and len(section) > len(best):
            best = section
    return best


def _status_cell(row: Row) -> str:
    if row.status == NOT_YET:
        return f"not yet (issue {row.issue})" if row.issue is not None else "not yet"
    if row.status == DIFFERS and row.issue is not None:
        return f"differs (issue {row.issue})"
    return row.status


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render(version: str, rows: list[Row], issues: Mapping[int, str]) -> str:
    """The markdown page."""
    by_section: dict[str, list[Row]] = {s: [] for s in SECTIONS}
    for row in rows:
        by_section[section_of(row.name, row.kind)].append(row)
    totals = Counter(r.status for r in rows)
    out = [
        f"# Compatibility with Ray Core {version}",
        "",
        "<!-- Generated by scripts/compat_table.py from docs/compat/ray_2_60_names.txt and",
        "     docs/compat/notes.yaml; edit those and rerun it. "
        "tests/unit/test_compat_table.py fails when this page is stale. -->",
        "",
        f"Every public name of Ray Core {version} (`ray.*` and the modules below; Ray's libraries,",
        "`ray.internal` and `ray.experimental` are not Core) and whether `import rayops as ray`",
        "gives it: **supported** (there, and behaves as Ray's), **differs** (there, but not",
        "exactly as Ray's: how is said), **not yet** (missing; the issue that brings it), **out of",
        "scope** (missing on purpose: why). Whether a name is there is checked against the code",
        "each time this page is made, and so is each exception's place in the hierarchy.",
        "A class's members are listed under it; a missing class's or module's members are counted",
        "in its row.",
        "",
        "| | supported | differs | not yet | out of scope | total |",
        "|---|---:|---:|---:|---:|---:|",
        _count_row("**all**", rows),
    ]
    out += [_count_row(f"`{s}`", by_section[s]) for s in SECTIONS if by_section[s]]
    out += [
        "",
        f"Totals: {len(rows)} names; " + ", ".join(f"{totals[s]} {s}" for s in STATUSES) + ".",
        "",
    ]
    referenced = sorted({r.issue for r in rows if r.issue is not None})
    if referenced:
        out += ["Issues referred to:", ""]
        out += [f"- issue {n}: {issues[n]}" for n in referenced]
        out.append("")
    for section in SECTIONS:
        section_rows = by_section[section]
        if not section_rows:
            continue
        out += [f"## `{section}`", "", "| name | status | notes |", "|---|---|---|"]
        hidden = Counter(r.name.rpartition(".")[0] for r in rows if r.collapsed)
        for row in section_rows:
            if row.collapsed:
                continue
            label = row.name[len(section) + 1 :] if row.name.startswith(section + ".") else row.name
            label = f"`{label}`"
            if hidden[row.name]:
                label += f" (and its {hidden[row.name]} members)"
            out.append(f"| {label} | {_status_cell(row)} | {_cell(row.detail)} |")
        out.append("")
    return "\n".join(out)


def _count_row(label: str, rows: list[Row]) -> str:
    counts = Counter(r.status for r in rows)
    cells = " | ".join(str(counts[s]) for s in STATUSES)
    return f"| {label} | {cells} | {len(rows)} |"


def build() -> tuple[str, list[str]]:
    """The page as it should be now, and the disagreements between notes and code."""
    version, names = load_names()
    issues, notes = load_notes()
    rows, problems = classify(names, notes)
    return render(version, rows, issues), problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only compare with docs/compatibility.md"
    )
    args = parser.parse_args(argv)
    page, problems = build()
    for problem in problems:
        print(problem, file=sys.stderr)
    if args.check:
        stale = not PAGE.is_file() or PAGE.read_text() != page
        if stale:
            print(
                f"{PAGE.relative_to(ROOT)} is stale: run scripts/compat_table.py", file=sys.stderr
            )
        return 1 if stale or problems else 0
    PAGE.write_text(page)
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
