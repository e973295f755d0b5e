"""The rules of the SFTP transfers without a host: where a source lands, rsync's patterns."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayops.launcher.transfer import Excludes, parse_merge_file, rsync_match, target_path


@pytest.mark.parametrize(
    ("src", "dst", "src_is_dir", "dst_is_dir", "lands"),
    [
        ("/l/app/", "/h/app", True, False, "/h/app"),  # contents into dst
        ("/l/app/", "/h/app/", True, True, "/h/app"),
        ("/l/app", "/h/x", True, True, "/h/x/app"),  # the directory itself into dst
        ("/l/app", "/h/x", True, False, "/h/x/app"),
        ("/l/f.txt", "/h/g.txt", False, False, "/h/g.txt"),
        ("/l/f.txt", "/h/dir", False, True, "/h/dir/f.txt"),
        ("/l/f.txt", "/h/new/", False, False, "/h/new/f.txt"),
    ],
)  # fmt: skip
def test_targets_follow_rsyncs_trailing_slash_rules(
    src: str, dst: str, src_is_dir: bool, dst_is_dir: bool, lands: str
) -> None:
    assert target_path(src, dst, src_is_dir, dst_is_dir) == lands


@pytest.mark.parametrize(
    ("pattern", "rel", "is_dir", "hit"),
    [
        ("*.pyc", "a/b/c.pyc", False, True),
        ("*.pyc", "a/b/c.py", False, False),
        ("**/.git", ".git", True, True),
        ("**/.git", "sub/deep/.git", True, True),
        (".git/", "sub/.git", True, True),
        (".git/", "sub/.git", False, False),  # a trailing slash: directories only
        ("/build", "build", True, True),
        ("/build", "sub/build", True, False),  # anchored at the transfer root
        ("data/*.csv", "x/data/a.csv", False, True),
        ("data/*.csv", "x/data/sub/a.csv", False, False),
        ("file?.txt", "file1.txt", False, True),
        ("[ab].txt", "c.txt", False, False),
        ("logs/**", "logs/a/b.log", False, True),
    ],
)  # fmt: skip
def test_rsync_patterns(pattern: str, rel: str, is_dir: bool, hit: bool) -> None:
    assert rsync_match(pattern, rel, is_dir) is hit


def test_merge_files_apply_below_their_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".gitignore").write_text("# comment\n\n*.tmp\n/only-here\n!keep.tmp\n")
    assert parse_merge_file("# c\n- a\nb/\n!c\n") == ["a", "b/"]
    ex = Excludes(("*.pyc",), (".gitignore",))
    root_rules = ex.scoped(str(tmp_path), "", [])
    assert root_rules == []
    sub_rules = ex.scoped(str(tmp_path / "sub"), "sub", root_rules)
    assert ex.excluded("sub/x.tmp", False, sub_rules)
    assert ex.excluded("sub/only-here", False, sub_rules)
    assert not ex.excluded("x.tmp", False, root_rules)  # above the merge file
    assert not ex.excluded("sub/deeper/only-here", False, sub_rules)
    assert ex.excluded("any/where.pyc", False, [])
