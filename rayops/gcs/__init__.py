"""The control plane (GCS): the cluster's node table, job table and internal KV store.

Layout: `types` (the records, plain dataclasses), `node_table` / `job_table` / `kv_store` /
`pg_table` (state and decisions, no I/O; each publishes typed, versioned change events:
`node_events`, `job_events`, `kv_events`, `pg_events`), `pubsub` (the event spine: channels,
delta logs, subscriber queues) and `pubsub_service` (its gRPC stream), `follower` (a client
following a channel across broken streams), `errors` (refusals, mapped to gRPC codes),
`codec` (records to protocol messages and back), `server` (the grpc.aio services),
`__main__` (the process), `client` (`GcsClient`, `AsyncGcsClient`), and `probe` (is an
address a reachable GCS that takes our token?).

Importing this package imports nothing else: grpc and the stubs load only with `server` or
`client`, so `import rayops` stays fast.
"""
