"""The shipped monitoring files are valid: promtool accepts the Prometheus configs and
alert rules (and their unit tests pass), the dashboards are well-formed Grafana JSON
whose every query parses, and the copies packaged in the wheel match ``monitoring/``.
No cluster here: tests/monitoring/test_monitoring_live.py runs the queries for real.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from rayops.monitoring import PrometheusSetup, asset_text, dashboards, render_prometheus_config

ROOT = Path(__file__).resolve().parents[2]
MON = ROOT / "monitoring"
PROM = MON / "prometheus"
PACKAGED = ("prometheus.yml", "prometheus-file-sd.yml", "alerts.yml")

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="no promtool: run scripts/bootstrap-monitoring.sh"
)


def _promtool(*args: str, cwd: Path | str | None = None) -> str:
    assert promtool is not None
    r = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, f"promtool {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_copy_matches_monitoring_folder(name: str) -> None:
    assert asset_text(name) == (PROM / name).read_text(), (
        f"rayops/monitoring/assets/{name} differs from monitoring/prometheus/{name}: "
        "edit monitoring/prometheus/ and copy it"
    )


def test_dashboard_json_is_fresh() -> None:
    assert dashboards.main([str(MON / "grafana" / "dashboards"), "--check"]) == 0


def _cluster_files(tmp: Path) -> tuple[str, str]:
    token = tmp / "cluster_token"
    token.write_text("0" * 64)
    token.chmod(0o600)
    sd = tmp / "prom_metrics_service_discovery.json"
    sd.write_text(
        json.dumps([{"targets": ["127.0.0.1:1"], "labels": {"job": "ray", "SessionName": "s"}}])
    )
    return str(token), str(sd)


@needs_promtool
@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-file-sd.yml"])
def test_shipped_config_passes_promtool(tmp_path: Path, name: str) -> None:
    """The operator's file, with its placeholders and default paths filled in."""
    token, sd = _cluster_files(tmp_path)
    text = (PROM / name).read_text()
    text = (
        text.replace("HEAD_IP:METRICS_PORT", "127.0.0.1:8080")
        .replace("/tmp/rayops-sessions/session_latest/cluster_token", token)
        .replace("/tmp/rayops-sessions/prom_metrics_service_discovery.json", sd)
    )
    config_lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in config_lines if "HEAD_IP" in line or "/tmp/rayops-" in line]
    (tmp_path / name).write_text(text)
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    out = _promtool("check", "config", name, cwd=tmp_path)
    assert "SUCCESS" in out


@needs_promtool
@pytest.mark.parametrize("mode", ["http_sd", "file_sd", "http_sd_tls"])
def test_rendered_config_passes_promtool(tmp_path: Path, mode: str) -> None:
    from rayops.testing.tls_files import loopback_certs

    token, sd = _cluster_files(tmp_path)
    rules = tmp_path / "alerts.yml"
    rules.write_text(asset_text("alerts.yml"))
    certs = loopback_certs(tmp_path / "tls") if mode.endswith("_tls") else None
    setup = PrometheusSetup(
        token_file=token,
        head_agent="127.0.0.1:8080" if mode.startswith("http_sd") else None,
        sd_file=sd if mode == "file_sd" else None,
        rule_files=(str(rules),),
        scrape_interval_s=1,
        evaluation_interval_s=1,
        tls_files=None if certs is None else (certs.ca, certs.cert, certs.key),
    )
    text = render_prometheus_config(setup)
    config = yaml.safe_load(text)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "ray"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": token}
    assert job["honor_labels"] is True
    if mode == "http_sd":
        (sd_cfg,) = job["http_sd_configs"]
        assert sd_cfg["url"] == "http://127.0.0.1:8080/api/prometheus/sd"
        assert sd_cfg["authorization"]["credentials_file"] == token
        assert "file_sd_configs" not in job and "tls_config" not in job
    elif certs is not None:  # a TLS cluster: https both ways, presenting the client cert
        (sd_cfg,) = job["http_sd_configs"]
        assert sd_cfg["url"] == "https://127.0.0.1:8080/api/prometheus/sd"
        want = {"ca_file": certs.ca, "cert_file": certs.cert, "key_file": certs.key}
        assert sd_cfg["tls_config"] == want and job["tls_config"] == want
        assert job["scheme"] == "https"
    else:
        assert job["file_sd_configs"][0]["files"] == [sd]
        assert "http_sd_configs" not in job
    assert config["global"]["scrape_interval"] == "1s"
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    assert "SUCCESS" in _promtool("check", "config", str(path))


def test_setup_needs_exactly_one_discovery() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        PrometheusSetup(token_file="t")
    with pytest.raises(ValueError, match="exactly one"):
        PrometheusSetup(token_file="t", head_agent="a:1", sd_file="f")


@needs_promtool
def test_alert_rules_check_and_unit_tests() -> None:
    assert "SUCCESS" in _promtool("check", "rules", "alerts.yml", cwd=PROM)
    assert "SUCCESS" in _promtool("test", "rules", "alerts_test.yml", cwd=PROM)


def test_alert_rules_cover_the_required_conditions() -> None:
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {
        "RayopsNodeDown",
        "RayopsObjectStoreAlmostFull",
        "RayopsObjectSpilling",
        "RayopsTasksInfeasible",
        "RayopsGCSUnreachable",
        "RayopsAgentScrapeFailing",
    } <= names
    tested = set(re.findall(r"alertname: (\w+)", (PROM / "alerts_test.yml").read_text()))
    assert names <= tested, f"alerts without a promtool unit test: {names - tested}"
    for r in rules:
        assert r["labels"]["severity"] in ("info", "warning", "critical"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]


def _dashboard_files() -> list[Path]:
    files = sorted((MON / "grafana" / "dashboards").glob("*.json"))
    assert len(files) >= 4
    return files


def test_dashboards_are_structurally_valid() -> None:
    uids = set()
    for path in _dashboard_files():
        d = json.loads(path.read_text())
        where = path.name
        assert d["uid"] not in uids, f"{where}: duplicate uid"
        uids.add(d["uid"])
        assert d["title"] and isinstance(d["schemaVersion"], int)
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for name in ("SessionName", "NodeAddress"):
            var = variables[name]
            assert var["type"] == "query" and var["datasource"]["uid"] == "${datasource}"
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{where}: duplicate panel ids"
        for p in d["panels"]:
            at = f"{where} panel {p['id']} {p['title']!r}"
            assert p["type"] in ("timeseries", "stat"), at
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, at
            pos = p["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, at
            assert p["targets"], f"{at}: no targets"
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), f"{at}: duplicate refIds"
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${datasource}", at
                assert t["expr"].strip(), at
                # Every query follows the session picker, like Ray's dashboards.
                assert 'SessionName=~"$SessionName"' in t["expr"], f"{at}: {t['expr']}"


@needs_promtool
def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """promtool has no expression checker; recording rules are parsed with full PromQL."""
    exprs = [
        dashboards.concrete_query(t["expr"])
        for path in _dashboard_files()
        for p in json.loads(path.read_text())["panels"]
        for t in p["targets"]
    ]
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    out = _promtool("check", "rules", str(path))
    assert f"SUCCESS: {len(exprs)} rules found" in out


def test_provisioning_files() -> None:
    ds = yaml.safe_load((MON / "grafana/provisioning/datasources/rayops.yml").read_text())
    assert ds["apiVersion"] == 1 and ds["datasources"][0]["type"] == "prometheus"
    prov = yaml.safe_load((MON / "grafana/provisioning/dashboards/rayops.yml").read_text())
    assert prov["apiVersion"] == 1
    assert prov["providers"][0]["type"] == "file" and prov["providers"][0]["options"]["path"]


def test_metric_names_are_documented() -> None:
    """Every ray_* name a dashboard or alert uses is listed in docs/metrics.md."""
    doc = ROOT / "docs" / "metrics.md"
    text = doc.read_text()
    used = set()
    sources = [asset_text("alerts.yml")] + [e for _, _, e in dashboards.queries()]
    for src in sources:
        used |= set(re.findall(r"\bray_[a-z_]+", src))
    # Histogram series are documented under the histogram's name.
    used = {re.sub(r"_(bucket|count|sum)$", "", n) for n in used}
    missing = sorted(n for n in used if n not in text)
    assert not missing, f"metric names used by monitoring/ but not in docs/metrics.md: {missing}"
    assert os.path.getsize(doc) > 0
