"""Monitoring assets shipped in the wheel: Prometheus configuration and alert rules,
and the Grafana dashboards, plus the pure functions that fill them in.

The top-level ``monitoring/`` folder of the source tree holds the same files for
operators; a test keeps the two identical. This package does no I/O beyond reading
its own packaged files: writing configs and starting Prometheus belong to the CLI
(``rayops metrics``) and the test harness (``rayops.testing.prometheus``).
"""

from __future__ import annotations

from rayops.monitoring.prometheus_config import (
    ALERTS_FILE,
    JOB_NAME,
    PrometheusSetup,
    asset_text,
    head_agent_address,
    render_prometheus_config,
)

__all__ = [
    "ALERTS_FILE",
    "JOB_NAME",
    "PrometheusSetup",
    "asset_text",
    "head_agent_address",
    "render_prometheus_config",
]
