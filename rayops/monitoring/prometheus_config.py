"""Fill in the packaged Prometheus configuration for one cluster.

The templates are the operator-facing files (``assets/prometheus.yml`` for HTTP
service discovery through the head's agent, ``assets/prometheus-file-sd.yml`` for
the head's file_sd JSON). Rendering parses the template and sets the few fields
that depend on the cluster (discovery URL or file, token file, rule files,
intervals) by structure, not by text substitution, so a comment or a reordered key
in the template cannot break it. Reads packaged files only; writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

JOB_NAME = "ray"  # the job label the agents' discovery sets, as Ray's does
ALERTS_FILE = "alerts.yml"
HTTP_SD_TEMPLATE = "prometheus.yml"
FILE_SD_TEMPLATE = "prometheus-file-sd.yml"
SD_PATH = "/api/prometheus/sd"


def asset_text(name: str) -> str:
    """The text of a packaged monitoring asset (``alerts.yml``, ``prometheus.yml``...)."""
    return (resources.files("rayops.monitoring") / "assets" / name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class PrometheusSetup:
    """Where one Prometheus finds a cluster's agents and how it talks to them.

    Exactly one of ``head_agent`` (``ip:metrics_export_port`` of the head's agent:
    HTTP service discovery) and ``sd_file`` (the head's file_sd JSON) is set.
    """

    token_file: str
    head_agent: str | None = None
    sd_file: str | None = None
    rule_files: tuple[str, ...] = ()
    scrape_interval_s: float = 10.0
    evaluation_interval_s: float = 10.0
    sd_refresh_s: float = 10.0
    listen_address: str = "localhost:9090"
    external_labels: dict[str, str] = field(default_factory=dict)
    # A TLS cluster (rayops/rpc/tls.py): (CA, client certificate, client key) PEM paths;
    # Prometheus then scrapes and discovers over https, presenting that certificate.
    tls_files: tuple[str, str, str] | None = None

    def __post_init__(self) -> None:
        if (self.head_agent is None) == (self.sd_file is None):
            raise ValueError("PrometheusSetup needs exactly one of head_agent or sd_file")
        if self.scrape_interval_s <= 0 or self.evaluation_interval_s <= 0:
            raise ValueError("scrape and evaluation intervals must be > 0 seconds")


def _duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _job(config: dict[str, Any], name: str) -> dict[str, Any]:
    for job in config.get("scrape_configs") or []:
        if job.get("job_name") == name:
            return dict(job)
    raise ValueError(f"the packaged Prometheus template has no scrape job {name!r}")


def render_prometheus_config(setup: PrometheusSetup) -> str:
    """The YAML text of a Prometheus config for ``setup``."""
    template = HTTP_SD_TEMPLATE if setup.head_agent is not None else FILE_SD_TEMPLATE
    config: dict[str, Any] = yaml.safe_load(asset_text(template))
    interval = _duration(setup.scrape_interval_s)
    timeout = max(min(1.0, setup.scrape_interval_s), setup.scrape_interval_s / 2)
    config["global"] = {
        "scrape_interval": interval,
        # A scrape may take at most half the interval, but never less than a second.
        "scrape_timeout": _duration(timeout),
        "evaluation_interval": _duration(setup.evaluation_interval_s),
    }
    if setup.external_labels:
        config["global"]["external_labels"] = dict(setup.external_labels)
    config["rule_files"] = list(setup.rule_files)
    auth = {"type": "Bearer", "credentials_file": setup.token_file}
    job = _job(config, JOB_NAME)
    job["authorization"] = dict(auth)
    scheme = "http"
    tls: dict[str, str] = {}
    if setup.tls_files is not None:
        ca, cert, key = setup.tls_files
        scheme = "https"
        tls = {"ca_file": ca, "cert_file": cert, "key_file": key}
        job["scheme"] = scheme
        job["tls_config"] = dict(tls)
    refresh = _duration(setup.sd_refresh_s)
    if setup.head_agent is not None:
        sd: dict[str, Any] = {
            "url": f"{scheme}://{setup.head_agent}{SD_PATH}",
            "refresh_interval": refresh,
            "authorization": dict(auth),
        }
        if tls:
            sd["tls_config"] = dict(tls)
        job["http_sd_configs"] = [sd]
    else:
        job["file_sd_configs"] = [{"files": [setup.sd_file], "refresh_interval": refresh}]
    self_job = _job(config, "prometheus")
    self_job["static_configs"] = [{"targets": [setup.listen_address]}]
    config["scrape_configs"] = [job, self_job]
    header = (
        f"# Written by rayops from its packaged template ({template}); see monitoring/README.md.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False)


def head_agent_address(nodes: Iterable[Any]) -> str:
    """``ip:metrics_export_port`` of the alive head node's agent, from the GCS node table.

    Raises ``LookupError`` naming what is missing: no alive head, or a head whose agent
    registered no metrics port.
    """
    heads = [n for n in nodes if n.is_head_node and n.state == "ALIVE"]
    if not heads:
        raise LookupError("the GCS lists no alive head node")
    head = heads[0]
    if not head.metrics_export_port:
        raise LookupError(
            f"the head node {head.node_ip} registered no metrics port (is its agent running?)"
        )
    return f"{head.node_ip}:{head.metrics_export_port}"
