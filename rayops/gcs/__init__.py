"""The control plane (GCS): the cluster's node table, job table and internal KV store.

Layout: `types` (the records, plain dataclasses), `node_table` / `job_table` / `kv_store`
(state and decisions, no I/O; the node table is a state machine whose commands and change
events are in `node_events`), `pubsub` (the event spine: channels, delta logs, subscriber
queues) and `pubsub_service` (its gRPC stream), `errors` (refusals, mapped to gRPC codes),
`codec` (records to protocol messages and back), `server` (the grpc.aio services),
`__main__` (the process), `client` (`GcsClient`, `AsyncGcsClient`), and `probe` (is an
address a reachable GCS that takes our token?).

Importing this package imports nothing else: grpc and the stubs load only with `server` or
`client`, so `import rayops` stays fast.
"""
