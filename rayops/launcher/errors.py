"""The launcher's error types: bad specs, and failures to reach or provision a host.

A spec error is raised before any SSH connection and names the file, the line, the key path,
what was expected and what was found. A host failure is data (``HostFailure``), not an
exception: one host failing never stops the others, so failures are collected and reported in
the summary table. Only a failure of the head stops a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a cluster spec, located by line and key path."""

    line: int
    key_path: str
    message: str

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        return f"{where}: {self.key_path or '(top level)'}: {self.message}"


class ClusterSpecError(ValueError):
    """A cluster YAML that cannot be used: every issue with its file, line and key path."""

    def __init__(self, file: str, issues: list[SpecIssue]) -> None:
        self.file = file
        self.issues = issues
        head = f"invalid cluster spec {file}"
        if len(issues) > 1:
            head += f" ({len(issues)} problems)"
        super().__init__(head + ":\n" + "\n".join("  " + i.render(file) for i in issues))

    def __reduce__(self) -> tuple[type, tuple[str, list[SpecIssue]]]:
        return (type(self), (self.file, self.issues))


class LauncherError(RuntimeError):
    """A launcher command cannot go on (the CLI prints the message and exits non-zero)."""


class HeadFailedError(LauncherError):
    """The head could not be reached or provisioned: the run stops, with the head's cause."""


@dataclass(frozen=True)
class HostFailure:
    """Why one host failed, precise enough to act on without reading any log.

    ``kind`` is one of: ``connection-refused``, ``timed-out``, ``unreachable``,
    ``auth-rejected``, ``host-key-changed``, ``host-key-unknown``, ``name-unknown``,
    ``ssh-error``, ``command-failed``, ``precondition`` (e.g. no python on the host),
    ``skipped`` (the head failed, so this host was not started).
    """

    kind: str
    message: str
    step: str = ""
    command: str = ""
    exit_code: int | None = None
    output_tail: list[str] = field(default_factory=list)

    def one_line(self) -> str:
        text = self.message
        if self.exit_code is not None and f"code {self.exit_code}" not in text:
            text += f" (exit code {self.exit_code})"
        return text

    def detail(self) -> str:
        """The full report: cause, command, exit code and the last lines of output."""
        lines = [self.one_line()]
        if self.command:
            lines.append(f"command: {self.command}")
        if self.output_tail:
            lines.append(f"last {len(self.output_tail)} lines of output:")
            lines.extend("  | " + ln for ln in self.output_tail)
        return "\n".join(lines)
