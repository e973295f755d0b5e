"""The control plane (GCS): the cluster's node table, job table and internal KV store.

Layout: `types` (the records, plain dataclasses), `node_table` / `job_table` / `kv_store`
(state and decisions, no I/O), `errors` (refusals, mapped to gRPC codes), `codec` (records to
protocol messages and back), `server` (the grpc.aio services), `__main__` (the process),
`client` (`GcsClient`, `AsyncGcsClient`), and `probe` (is an address a reachable GCS that takes
our token?).

Importing this package imports nothing else: grpc and the stubs load only with `server` or
`client`, so `import rayops` stays fast.
"""
