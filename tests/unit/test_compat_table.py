"""docs/compatibility.md is fresh and its notes agree with the code (scripts/compat_table.py).

When this fails: a name was added to or removed from rayops, or a note changed, without
rerunning `python scripts/compat_table.py`; or a note says "not yet" for a name rayops now has
(or "supported"/"differs" for one it lacks). Fix docs/compat/notes.yaml, rerun the script.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_script() -> ModuleType:
    path = ROOT / "scripts" / "compat_table.py"
    if str(path.parent) not in sys.path:  # as when it runs: it imports its siblings
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("compat_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


ct = _load_script()


def test_compatibility_page_is_fresh() -> None:
    page, _ = ct.build()
    on_disk = (ROOT / "docs" / "compatibility.md").read_text()
    assert page == on_disk, "docs/compatibility.md is stale: run `python scripts/compat_table.py`"


def test_notes_agree_with_the_code() -> None:
    _, problems = ct.build()
    assert not problems, "docs/compat/notes.yaml disagrees with rayops:\n" + "\n".join(problems)


def test_ray_is_never_imported() -> None:
    ct.build()
    assert "ray" not in sys.modules, "the compatibility table must not import Ray"


def test_names_file_is_sorted_unique_and_names_its_version() -> None:
    version, names = ct.load_names()
    assert version == "2.60.0"
    listed = [n.name for n in names]
    assert listed == sorted(set(listed))
    assert all(n.name == "ray" or n.name.startswith("ray.") for n in names)
    assert {"ray.init", "ray.exceptions.RayTaskError", "ray.util.queue.Queue"} <= set(listed)


# --------------------------------------------------------- the decisions, on a made-up tree
def _name(name: str, kind: str = "function", bases: tuple[str, ...] = ()) -> Any:
    return ct.RayName(name, kind, "public", bases)


def _note(key: str, status: str, detail: str = "", issue: int | None = None) -> Any:
    return ct.Note(key, status, detail, issue)


class _Tree:
    """A fake rayops: the objects it has, by Ray's dotted name."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects

    def __call__(self, name: str) -> Any:
        return self.objects.get(name, ct._MISSING)


def _classify(names: list[Any], notes: list[Any], objects: dict[str, Any]) -> tuple[dict, list]:
    rows, problems = ct.classify(names, {n.key: n for n in notes}, _Tree(objects))
    return {r.name: r for r in rows}, problems


def test_present_without_a_note_is_supported_and_missing_needs_one() -> None:
    rows, problems = _classify([_name("ray.get"), _name("ray.timeline")], [], {"ray.get": object()})
    assert rows["ray.get"].status == "supported"
    assert problems == [
        "ray.timeline: rayops lacks it and notes.yaml has no note: add `not yet` (with its issue) "
        "or `out of scope` (with why)"
    ]


def test_a_name_rayops_has_cannot_be_marked_not_yet_nor_a_missing_one_supported() -> None:
    names = [_name("ray.get"), _name("ray.put")]
    notes = [_note("ray.get", "not yet", issue=9), _note("ray.put", "differs", "slower")]
    _, problems = _classify(names, notes, {"ray.get": object()})
    assert len(problems) == 2
    assert problems[0].startswith("ray.get: rayops has it, but notes.yaml (ray.get) says 'not yet'")
    assert problems[1].startswith("ray.put: notes.yaml (ray.put) says 'differs' but rayops lacks")


def test_patterns_members_of_missing_classes_and_unused_notes() -> None:
    names = [
        _name("ray.util.state.list_actors"),
        _name("ray.JobID", "class"),
        _name("ray.JobID.hex"),
        _name("ray.kill"),
    ]
    notes = [
        _note("ray.util.state.*", "not yet", issue=12),
        _note("ray.JobID", "not yet", "ids are strings"),
        _note("ray.gone", "not yet", issue=9),
    ]
    rows, problems = _classify(names, notes, {"ray.kill": object()})
    assert rows["ray.util.state.list_actors"].issue == 12
    member = rows["ray.JobID.hex"]
    assert (member.status, member.detail, member.collapsed) == ("not yet", "ids are strings", True)
    assert problems == ["notes.yaml: ray.gone matches no name rayops has or lacks on its own"]
    page = ct.render("2.60.0", list(rows.values()), {12: "state API"})
    assert "| `JobID` (and its 1 members) | not yet | ids are strings |" in page
    assert "JobID.hex" not in page


def test_exception_bases_and_member_kinds_are_checked_against_rays() -> None:
    ray_error = type("RayError", (Exception,), {"__module__": "rayops.exceptions"})
    timeout = type("GetTimeoutError", (ray_error,), {"__module__": "rayops.exceptions"})

    class Ref:
        @property
        def owner_address(self) -> str:
            return ""

        def hex(self) -> str:
            return ""

    names = [
        _name("ray.exceptions.RayError", "exception"),
        _name(
            "ray.exceptions.GetTimeoutError",
            "exception",
            ("ray.exceptions.RayError", "builtins.TimeoutError", "builtins.OSError"),
        ),
        _name("ray.ObjectRef", "class"),
        _name("ray.ObjectRef.owner_address", "function"),
        _name("ray.ObjectRef.hex", "function"),
    ]
    objects = {
        "ray.exceptions.RayError": ray_error,
        "ray.exceptions.GetTimeoutError": timeout,
        "ray.ObjectRef": Ref,
        "ray.ObjectRef.owner_address": Ref.owner_address,
        "ray.ObjectRef.hex": Ref.hex,
    }
    rows, problems = _classify(names, [], objects)
    assert not problems
    assert rows["ray.exceptions.RayError"].status == "supported"
    got = rows["ray.exceptions.GetTimeoutError"]
    assert got.status == "differs"
    assert got.detail == "Does not subclass `TimeoutError`, `OSError`."
    assert rows["ray.ObjectRef.owner_address"].status == "differs"
    assert rows["ray.ObjectRef.hex"].status == "supported"


def test_signatures_are_compared_by_public_parameter_name() -> None:
    def wait(object_refs: Any, num_returns: int = 1, _private: int = 0) -> None: ...

    def shutdown() -> None: ...

    def init(address: Any = None, **kwargs: Any) -> None: ...

    names = [
        ct.RayName(
            "ray.wait", "function", "public", (), ("ray_waitables", "num_returns", "timeout", "_x")
        ),
        ct.RayName("ray.shutdown", "function", "public", (), ("wait_for_processes",)),
        ct.RayName("ray.init", "function", "public", (), ("address", "labels", "**kwargs")),
        ct.RayName("ray.get", "function", "public", (), ("object_refs", "timeout")),
    ]
    objects = {"ray.wait": wait, "ray.shutdown": shutdown, "ray.init": init, "ray.get": wait}
    rows, _ = _classify(names, [], objects)
    assert rows["ray.wait"].detail == (
        "Does not take `ray_waitables`, `timeout`; takes `object_refs` that Ray's does not."
    )
    assert rows["ray.shutdown"].detail == "Does not take `wait_for_processes`."
    assert rows["ray.init"].detail == "Does not name `labels`."  # its **kwargs may take it
    assert (
        rows["ray.get"].detail
        == "Does not take `timeout`; takes `num_returns` that Ray's does not."
    )


def test_the_names_file_line_format(tmp_path: Path) -> None:
    path = tmp_path / "names.txt"
    path.write_text(
        "# Public names of Ray Core 9.9.9, collected\n"
        "ray.exceptions.RayError exception public bases=\n"
        "ray.exceptions.GetTimeoutError exception public "
        "bases=ray.exceptions.RayError,builtins.OSError\n"
        "ray.wait function public params=ray_waitables,**kwargs\n"
        "ray.ObjectRef class public\n"
    )
    version, names = ct.load_names(path)
    assert version == "9.9.9"
    assert [(n.bases, n.params) for n in names] == [
        ((), None),
        (("ray.exceptions.RayError", "builtins.OSError"), None),
        ((), ("ray_waitables", "**kwargs")),
        ((), None),
    ]
    path.write_text("# Public names of Ray Core 9.9.9\nray.wait function public sig=x\n")
    with pytest.raises(ct.CompatError, match=r"names\.txt:2: expected bases=\.\.\. or params="):
        ct.load_names(path)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("names:\n  ray.get: {status: maybe}\n", "names.ray.get.status"),
        ("names:\n  ray.get: {status: differs}\n", "names.ray.get.detail"),
        ("names:\n  ray.get: {status: not yet}\n", "names.ray.get: a 'not yet' note names"),
        ("names:\n  ray.get: {status: not yet, issue: 99}\n", "names.ray.get.issue"),
        ("names:\n  ray.get: {status: not yet, when: soon}\n", "expected a mapping with keys"),
        ("other: 1\n", "expected top-level keys"),
    ],
)
def test_malformed_notes_are_refused_naming_the_key(tmp_path: Path, body: str, error: str) -> None:
    path = tmp_path / "notes.yaml"
    path.write_text("issues:\n  9: conformance\n" + body)
    with pytest.raises(ct.CompatError, match=error.replace("(", r"\(").replace(".", r"\.")):
        ct.load_notes(path)
