"""The head's HTTP API server (Ray's dashboard head): Jobs on Ray's REST paths.

``python -m rayops.dashboard`` runs it, started with the head by ``rayops.node.processes``.
It owns the HTTP surface only: every endpoint but the health check requires the cluster
token (``auth.py``); jobs are ``jobs.py`` (records in the GCS internal KV, one supervisor
process per job, ``supervisor.py``); the routes and their request checks are ``server.py``.
It talks to the cluster through the GCS client only and never imports the driver API.
"""
