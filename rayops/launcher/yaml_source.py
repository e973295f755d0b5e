"""Reading a YAML file while remembering where every key came from.

``load_yaml_with_lines`` returns the plain data (what ``yaml.safe_load`` gives) and a map from
key path (a tuple of mapping keys and list indexes) to the 1-based line it starts on, so that a
validation error found later can point at ``cluster.yaml:12``. Duplicate keys, which
``safe_load`` silently resolves to the last one, are reported as issues here.
"""

from __future__ import annotations

from typing import Any

import yaml

from rayops.launcher.errors import ClusterSpecError, SpecIssue

KeyPath = tuple[str | int, ...]


def format_path(path: KeyPath) -> str:
    """``("provider", "worker_ips", 1)`` -> ``provider.worker_ips[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load_yaml_with_lines(text: str, file: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse ``text``; raise ClusterSpecError with the line for syntax errors and duplicates."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = err.problem or str(err)
        raise ClusterSpecError(file, [SpecIssue(line, "", f"not valid YAML: {problem}")]) from err
    if node is None:
        raise ClusterSpecError(
            file, [SpecIssue(1, "", "expected a mapping of cluster settings, found an empty file")]
        )
    lines: dict[KeyPath, int] = {(): node.start_mark.line + 1}
    issues: list[SpecIssue] = []
    _walk(node, (), lines, issues)
    if issues:
        raise ClusterSpecError(file, issues)
    data = yaml.safe_load(text)
    return data, lines


def _walk(
    node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], issues: list[SpecIssue]
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                issues.append(
                    SpecIssue(
                        line,
                        format_path((*path, key)),
                        f"duplicate key (first given on line {seen[key]}); keep one of them",
                    )
                )
                continue
            seen[key] = line
            lines[(*path, key)] = line
            _walk(value_node, (*path, key), lines, issues)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), lines, issues)


def line_for(lines: dict[KeyPath, int], path: KeyPath) -> int:
    """The line of ``path``, or of its nearest ancestor that is in the file (missing keys)."""
    probe = tuple(path)
    while probe not in lines and probe:
        probe = probe[:-1]
    return lines.get(probe, 0)
