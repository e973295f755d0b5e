"""Ansible stdout callback for `rayops up`: one JSON object per line, per host and task.

The launcher reads these lines to print its own per-host progress and to report a failed
host with the exact command, exit code and last lines of output. Events:

    {"ev": "start",  "host": H, "task": NAME}
    {"ev": "result", "host": H, "task": NAME, "action": MODULE,
     "status": ok|changed|failed|unreachable,
     "seconds": S, "rc": RC, "cmd": CMD, "msg": MSG, "stdout": [...], "stderr": [...]}
    {"ev": "stats",  "hosts": {H: {"ok": N, "changed": N, "failures": N, "unreachable": N}}}

Task names start with the step ("install | ..."), which is how results map to steps.
"""

from __future__ import annotations

import json
import sys
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: rayops_progress
type: stdout
short_description: JSON lines of per-host task results, read by `rayops up`
description:
  - Prints one JSON object per task start and result, and the final per-host stats.
"""

TAIL = 40
_NOTE = "rayops-note: "  # a stdout line of an ok task shown to the operator


def _tail(value):
    if not value:
        return []
    if isinstance(value, list):
        value = "\n".join(str(v) for v in value)
    return str(value).replace("\r\n", "\n").strip().splitlines()[-TAIL:]


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "rayops_progress"

    def __init__(self):
        super().__init__()
        self._started = {}

    def _emit(self, **event):
        sys.stdout.write(json.dumps(event, default=str) + "\n")
        sys.stdout.flush()

    def v2_runner_on_start(self, host, task):
        self._started[(host.get_name(), task._uuid)] = time.monotonic()
        self._emit(ev="start", host=host.get_name(), task=task.get_name())

    def _result(self, result, status):
        host = result._host.get_name()
        task = result._task
        t0 = self._started.pop((host, task._uuid), None)
        event = {
            "ev": "result",
            "host": host,
            "task": task.get_name(),
            "action": task.action,
            "status": status,
            "seconds": round(time.monotonic() - t0, 2) if t0 is not None else None,
        }
        if status in ("ok", "changed"):
            # A task's own remarks for the operator (install-node.sh: timings, pip fallback).
            out = result._result.get("stdout") or ""
            notes = [
                ln[len(_NOTE) :].strip() for ln in str(out).splitlines() if ln.startswith(_NOTE)
            ]
            if notes:
                event["notes"] = notes[-5:]
        if status in ("failed", "unreachable"):
            r = result._result
            failed_items = [
                i for i in r.get("results") or [] if isinstance(i, dict) and i.get("failed")
            ]
            if failed_items:
                r = failed_items[0]
            cmd = r.get("cmd")
            if isinstance(cmd, list):
                cmd = " ".join(str(c) for c in cmd)
            event.update(
                rc=r.get("rc"),
                cmd=cmd,
                msg=str(r.get("msg") or ""),
                stdout=_tail(r.get("stdout") or r.get("module_stdout")),
                stderr=_tail(r.get("stderr") or r.get("module_stderr")),
            )
        self._emit(**event)

    def v2_runner_on_ok(self, result):
        self._result(result, "changed" if result.is_changed() else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._started.pop((result._host.get_name(), result._task._uuid), None)

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for h in sorted(stats.processed):
            s = stats.summarize(h)
            hosts[h] = {k: s.get(k, 0) for k in ("ok", "changed", "failures", "unreachable")}
        self._emit(ev="stats", hosts=hosts)
