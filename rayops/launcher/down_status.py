"""``rayops down`` (stop every daemon, workers first) and ``rayops status CONFIG``.

``down`` stops the daemons through each host's ``rayops-node stop`` (which waits until no
process of the install is left) or, on a host that was never fully configured, through
``rayops stop``; under systemd it stops the unit first so nothing restarts the daemons. It
then marks the hosts ``stopped`` in the head's record. ``status`` joins three sources: the
head's record (provisioning), each host's facts (daemons), and the GCS (runtime).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rayops.launcher.cluster import Cluster
from rayops.launcher.record import read_record, shell_path, write_record
from rayops.launcher.spec import ClusterSpec
from rayops.launcher.ssh import SSH_ERROR_EXIT, CommandResult, SshError
from rayops.launcher.up import cluster_record, read_facts, runtime_nodes
from rayops.monitoring.prometheus_config import SD_PATH


def stop_command(cluster: Cluster) -> str:
    spec = cluster.spec
    d = shell_path(spec.install_dir)
    unit = f"rayops-{spec.cluster_name}"
    return (
        f"(command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet {unit} 2>/dev/null "
        f"&& systemctl stop {unit}) || true; "
        f"if [ -x {d}/bin/rayops-node ]; then {d}/bin/rayops-node stop; "
        f"elif [ -x {d}/venv/bin/rayops ]; then {d}/venv/bin/rayops stop --temp-dir "
        f"{shell_path(spec.temp_dir)}; else echo 'rayops is not installed here'; fi"
    )


def stop_autoscaler_command(cluster: Cluster) -> str:
    """SIGTERM the head's autoscaler (if it runs) before the workers stop."""
    d, t = shell_path(cluster.spec.install_dir), shell_path(cluster.spec.temp_dir)
    return (
        f'f={t}/session_latest/node.json; [ -f "$f" ] && [ -x {d}/venv/bin/python ] && '
        f"{d}/venv/bin/python -c 'import json,os,signal,sys; "
        f'p=json.load(open(sys.argv[1]))["pids"].get("autoscaler"); '
        f'p and os.kill(p, signal.SIGTERM)\' "$f" 2>/dev/null; true'
    )


def run_down(
    cluster: Cluster, yes: bool, workers_only: bool, confirm: Callable[[str], bool]
) -> int:
    # Every worker_ips host, pool hosts the autoscaler started included.
    targets = cluster.workers if workers_only else [cluster.head, *cluster.workers]
    what = "the workers" if workers_only else "every host"
    if not yes and not confirm(
        f"Stop rayops on {what} of cluster {cluster.spec.cluster_name!r} ({len(targets)} host(s))?"
    ):
        cluster.out("Nothing changed.")
        return 1
    cmd = stop_command(cluster)
    # Every handshake at once; then workers first: a worker whose head vanished first would
    # only log reconnect errors.
    unreachable = {a: f for a, f in cluster.pool.connect_many(targets).items() if f is not None}
    results = {a: CommandResult(a, SSH_ERROR_EXIT, "", "", 0.0, f) for a, f in unreachable.items()}
    workers = [a for a in cluster.workers if a not in unreachable]
    if cluster.head not in unreachable:  # no launch may replace the workers stopped next
        cluster.pool.run(cluster.head, stop_autoscaler_command(cluster), timeout=30)
    results.update(cluster.pool.run_many(workers, cmd, timeout=60))
    if not workers_only and cluster.head not in unreachable:
        results.update(cluster.pool.run_many([cluster.head], cmd, timeout=60))
    failed = 0
    width = max(len(a) for a in targets)
    for address in targets:
        res = results[address]
        if res.failure is not None:
            cluster.out(f"  {address:<{width}}  FAILED: {res.failure.one_line()}")
            failed += 1
        elif res.exit_code != 0:
            cluster.out(f"  {address:<{width}}  FAILED: stop exited with code {res.exit_code}: "
                        + " | ".join(res.tail(5)))  # fmt: skip
            failed += 1
        else:
            cluster.out(f"  {address:<{width}}  {_stop_summary(res.stdout)}")
    _mark_stopped(cluster, [a for a in targets if results[a].ok])
    return 1 if failed else 0


def _stop_summary(output: str) -> str:
    """``rayops stop`` and ``rayops-node stop`` output -> "stopped 3 process(es)"."""
    import re

    stopped = sum(int(n) for n in re.findall(r"stopped (\d+) process", output))
    stopped += len(re.findall(r"killed leftover process", output))
    if "not installed here" in output:
        return "rayops is not installed"
    return f"stopped {stopped} process(es)" if stopped else "nothing was running"


def _mark_stopped(cluster: Cluster, stopped: list[str]) -> None:
    try:
        record = read_record(cluster.pool, cluster.head, cluster.spec.install_dir) or {}
    except SshError:
        return
    hosts = record.get("hosts") or {}
    changed = False
    for address in stopped:
        if address in hosts and hosts[address].get("state") != "stopped":
            hosts[address]["state"] = "stopped"
            changed = True
    if changed:
        failure = write_record(cluster.pool, cluster.head, cluster.spec.install_dir, record)
        if failure is not None:
            cluster.out(f"warning: could not update the cluster record: {failure.one_line()}")


def run_status(cluster: Cluster, as_json: bool) -> int:
    facts = read_facts(cluster)
    record = cluster_record(cluster, facts) or {}
    rec_hosts = record.get("hosts") or {}
    head = facts[cluster.head]
    nodes: list[dict[str, Any]] = []
    runtime_error = ""
    if head.reachable and head.running:
        from rayops.launcher.desired import expand_home

        nodes, failure = runtime_nodes(cluster, expand_home(cluster.spec.install_dir, head.home))
        runtime_error = failure.one_line() if failure else ""
    by_ip = {str(n.get("node_ip")): n for n in nodes}
    scheme = _scheme(cluster.spec)
    rows: list[dict[str, Any]] = []
    for address, role in cluster.roles.items():
        f = facts[address]
        entry = rec_hosts.get(address) or {}
        node = by_ip.get(f.node_ip or address) or by_ip.get(address)
        rows.append(
            {
                "host": address,
                "role": role,
                "provisioned": entry.get("state") or "never",
                "error": entry.get("error"),
                "reachable": f.reachable,
                "unreachable_reason": f.failure.one_line() if f.failure else None,
                "daemons": sorted(f.daemons) if f.reachable else None,
                "rayops_version": f.rayops_version,
                "runtime": node.get("state") if node else None,
                "metrics_endpoint": metrics_endpoint(node, scheme),
            }
        )
    sd_url = discovery_url(cluster.spec, nodes)
    if as_json:
        cluster.out(json.dumps({"cluster": cluster.spec.cluster_name, "hosts": rows,
                                "nodes": nodes, "prometheus_sd_url": sd_url},
                               indent=2))  # fmt: skip
        return 0 if head.reachable else 1
    cluster.out(f"cluster {cluster.spec.cluster_name!r}  GCS {cluster.spec.head_address}  "
                f"record: {record.get('updated_at', 'none')}")  # fmt: skip
    width = max(len(r["host"]) for r in rows)
    cluster.out(f"  {'HOST':<{width}}  ROLE    PROVISIONED  DAEMONS          RUNTIME  METRICS")
    for r in rows:
        if not r["reachable"]:
            daemons = f"unreachable: {r['unreachable_reason']}"
        else:
            daemons = ",".join(r["daemons"]) or "none running"
        prov = r["provisioned"] + (f" ({r['error']})" if r["error"] else "")
        cluster.out(f"  {r['host']:<{width}}  {r['role']:<6}  {prov:<11}  {daemons:<15}  "
                    f"{r['runtime'] or '-':<7}  {r['metrics_endpoint'] or '-'}")  # fmt: skip
    alive = sum(1 for n in nodes if n.get("state") == "ALIVE")
    cluster.out(
        f"{alive} node(s) alive in the GCS" + (f" ({runtime_error})" if runtime_error else "")
    )
    cluster.out(f"Prometheus discovery: {sd_url} (http_sd_configs)")
    cluster.out(f"  /metrics and discovery need the cluster token: "
                f"{cluster.spec.install_dir}/cluster_token on the head")  # fmt: skip
    if scheme == "https":
        from rayops.launcher.tls_certs import CLIENT_NAME, cluster_dir, host_files

        d = cluster_dir(cluster.cache_dir, cluster.spec.cluster_name)
        cluster.out(f"  and, TLS being on, a certificate of the cluster CA ({d}/ca.pem): this "
                    f"machine's is {d}/{host_files(CLIENT_NAME)[0]}")  # fmt: skip
    return 0 if head.reachable else 1


def _url_host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _scheme(spec: ClusterSpec) -> str:
    """``https`` when the cluster runs TLS (launcher/tls_certs.py), else ``http``."""
    from rayops.launcher.tls_certs import tls_enabled

    return "https" if tls_enabled(spec.rayops.tls, 1 + len(spec.provider.worker_ips)) else "http"


def metrics_endpoint(node: dict[str, Any] | None, scheme: str = "http") -> str | None:
    """``SCHEME://IP:PORT/metrics`` of an alive node's agent, as the GCS registered it."""
    if not node or node.get("state") != "ALIVE" or not node.get("metrics_export_port"):
        return None
    return f"{scheme}://{_url_host(str(node['node_ip']))}:{node['metrics_export_port']}/metrics"


def discovery_url(spec: ClusterSpec, nodes: list[dict[str, Any]]) -> str:
    """The head agent's Prometheus HTTP service discovery URL.

    From the alive head node in the GCS when it registered a metrics port (what really
    serves), otherwise from the spec (``provider.head_ip``, ``rayops.ports.metrics_export``).
    """
    scheme = _scheme(spec)
    for n in nodes:
        if n.get("is_head") and n.get("state") == "ALIVE" and n.get("metrics_export_port"):
            ip, port = _url_host(str(n["node_ip"])), n["metrics_export_port"]
            return f"{scheme}://{ip}:{port}{SD_PATH}"
    return f"{scheme}://{_url_host(spec.provider.head_ip)}:{spec.metrics_export_port}{SD_PATH}"
