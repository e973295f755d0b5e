"""``python -m rayops.autoscaler``: the autoscaler daemon on the head (Ray's ``monitor.py``).

Started by ``rayops start --head --autoscaling-config PATH`` beside the GCS, the API server
and the raylet (``rayops.node.processes``), logging to the session's ``logs/monitor.log``.
PATH is the cluster spec ``rayops up`` left on the head (``launcher.pool_provisioner``).
Exits on SIGTERM/SIGINT or when the --watch-fd pipe reads EOF. Exit status 2 for an unusable
token file or spec (the message names it).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from rayops.node.daemon import setup_logging

log = logging.getLogger("rayops.autoscaler")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rayops.autoscaler")
    p.add_argument("--gcs-address", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--config", required=True, help="the cluster spec (YAML) on the head")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    p.add_argument("--log-file")
    p.add_argument("--watch-fd", type=int)
    return p.parse_args(argv)


def _watch(fd: int, stop: threading.Event) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    stop.set()


class SpecReload:
    """Reads the spec again when ``rayops up`` rewrote it: new scaling rules (node types'
    resources and limits, max_workers, upscaling_speed, idle timeout) apply from the next
    round. The pool itself (provider, auth) is fixed for the daemon's life: a change there
    is logged with what to do."""

    def __init__(self, path: str, spec: Any) -> None:
        self.path = path
        self.spec = spec
        self.mtime = self._mtime()

    def _mtime(self) -> float:
        try:
            return os.stat(self.path).st_mtime
        except OSError:
            return 0.0

    def check(self, monitor: Any) -> None:
        from rayops.autoscaler.config import config_from_spec
        from rayops.autoscaler.instances import RetryPolicy
        from rayops.launcher.errors import ClusterSpecError
        from rayops.launcher.pool_provisioner import load_bundle

        mtime = self._mtime()
        if mtime == self.mtime:
            return
        self.mtime = mtime
        try:
            spec, _digest = load_bundle(self.path)
            config = config_from_spec(spec)
        except (ClusterSpecError, ValueError) as err:
            log.error("the rewritten spec is not usable; keeping the previous one: %s", err)
            return
        if config != monitor.config:
            log.info("scaling rules changed (%s); they apply from now on", self.path)
            monitor.config = config
            monitor.policy = RetryPolicy.from_config(config)
        for section in ("provider", "auth"):
            if getattr(spec, section) != getattr(self.spec, section):
                log.warning(
                    "%s changed in %s: the autoscaler keeps its pool until the head restarts "
                    "(rayops up --restart-only)",
                    section,
                    self.path,
                )
        self.spec = spec


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_file, "monitor")
    from rayops.autoscaler.config import config_from_spec
    from rayops.autoscaler.monitor import Monitor
    from rayops.gcs.client import GcsClient
    from rayops.launcher.errors import ClusterSpecError
    from rayops.launcher.pool_provisioner import LauncherProvisioner, load_bundle
    from rayops.providers import make_provider
    from rayops.rpc.auth import TokenFileError, read_token_file

    try:
        token = read_token_file(args.token_file)
        spec, digest = load_bundle(args.config)
    except (TokenFileError, ClusterSpecError) as err:
        log.error("%s", err)
        return 2
    config = config_from_spec(spec)
    options: dict[str, object] = {}
    provisioner = LauncherProvisioner(
        spec, digest, Path(args.config).with_name("cache"), lambda line: log.info("%s", line)
    )
    if spec.provider.type == "local":
        options["provisioner"] = provisioner  # the pool provisions while it launches
        options["retry_backoff_s"] = config.retry_backoff_s
    provider = make_provider(spec, **options)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if args.watch_fd is not None:
        threading.Thread(target=_watch, args=(args.watch_fd, stop), daemon=True).start()
    reload = SpecReload(args.config, spec)
    with GcsClient(args.gcs_address, token, timeout=10.0) as gcs:
        monitor = Monitor(
            gcs, provider, config, provider_name=spec.provider.type, provisioner=provisioner
        )
        monitor.run(stop, args.interval, before_round=lambda: reload.check(monitor))
    close = getattr(provider, "close", None)
    if callable(close):
        close()
    log.info("autoscaler stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
