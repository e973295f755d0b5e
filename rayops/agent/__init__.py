"""The node agent: ``python -m rayops.agent``, one per node, a child of the raylet.

It owns what Ray's dashboard agent owns: today Prometheus metrics and service discovery,
later runtime environments and log serving. It must stay light, since every node runs one:
no gRPC unless it is the head's agent (which reads the GCS), no per-task work, metrics
computed at scrape time from snapshots refreshed in the background.

Modules: ``node_agent`` (the process's parts wired together), ``server`` (HTTP: /metrics,
/-/healthy, /api/prometheus/sd, and the token check), ``node_metrics`` (psutil facts and the
raylet's snapshot as metric families), ``cluster_metrics`` (the GCS's counts, head only),
``families`` (the registry collector that merges them), ``discovery`` (the Prometheus
target list and its file), ``reports`` (core workers' metric reports).
"""
