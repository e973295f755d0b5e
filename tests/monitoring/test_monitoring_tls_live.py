"""A real Prometheus scraping a TLS cluster: with the config ``rayops metrics
launch-prometheus`` writes for one (https, the cluster CA, a client certificate), it finds
both nodes' agents through the head's HTTP service discovery and scrapes them; without the
client certificate nothing: a plain http Prometheus finds no agent."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rayops.gcs.client import GcsClient
from rayops.monitoring import PrometheusSetup, head_agent_address
from rayops.rpc import tls
from rayops.testing.cluster import Cluster
from rayops.testing.prometheus import PrometheusServer, prometheus_binary
from rayops.testing.tls_files import loopback_certs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        prometheus_binary() is None, reason="no prometheus: run scripts/bootstrap-monitoring.sh"
    ),
]


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, tls.TlsFiles]]:
    base = tmp_path_factory.mktemp("tls-monitoring")
    certs = loopback_certs(base / "certs")
    c = Cluster(os.path.join(base, "cluster"), head_cpus=1, tls=certs)
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes(2)
        yield c, certs
    finally:
        c.shutdown()
        tls.configure(None)


def _setup(c: Cluster, tls_files: tuple[str, str, str] | None) -> PrometheusSetup:
    with GcsClient(c.address, c.token, timeout=5) as gcs:
        head = head_agent_address(gcs.get_all_nodes(alive_only=True))
    return PrometheusSetup(
        token_file=c.token_file,
        head_agent=head,
        scrape_interval_s=1,
        evaluation_interval_s=1,
        sd_refresh_s=1,
        tls_files=tls_files,
    )


def test_prometheus_scrapes_a_tls_cluster_with_the_cluster_ca_and_a_client_cert(
    tls_cluster: tuple[Cluster, tls.TlsFiles], tmp_path: Path
) -> None:
    c, certs = tls_cluster
    setup = _setup(c, (certs.ca, certs.cert, certs.key))
    with PrometheusServer(str(tmp_path / "prometheus"), setup) as prom:
        up = prom.wait_for(
            'up{job="ray"}',
            lambda r: len(r) == 2 and all(float(x["value"][1]) == 1 for x in r),
            timeout=40,
            what="both agents up over https",
        )
        assert len(up) == 2
        cpu = prom.wait_for("ray_node_cpu_count", lambda r: len(r) == 2, timeout=30, what="cpu")
        assert all(float(r["value"][1]) >= 1 for r in cpu)
        targets = [t for t in prom.targets() if t["scrapePool"] == "ray"]
        assert all(t["scrapeUrl"].startswith("https://") for t in targets), targets


def test_a_plain_http_prometheus_discovers_nothing(
    tls_cluster: tuple[Cluster, tls.TlsFiles], tmp_path: Path
) -> None:
    c, _ = tls_cluster
    with PrometheusServer(str(tmp_path / "prometheus"), _setup(c, None)) as prom:
        # Several discovery rounds (1 s each) against a TLS server: none yields a target.
        time.sleep(4)
        assert not [t for t in prom.targets() if t["scrapePool"] == "ray"]
