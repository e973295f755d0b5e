"""The wire protocol of rayops' gRPC services: one .proto per service, and generated stubs.

`common.proto` holds messages shared by several services; `gcs_node.proto`,
`gcs_job.proto` and `gcs_kv.proto` are the GCS's node table, job table and internal KV.

The `*_pb2.py`, `*_pb2.pyi` and `*_pb2_grpc.py` files are generated: never edit them by hand.
Change the .proto (additively: new fields and messages, never renumbered ones), then run
`python scripts/gen_protos.py`; `tests/unit/test_protos_fresh.py` fails while they are stale.

This package imports nothing of rayops, and importing it imports no stub: import the module you
need (`from rayops.protocol import gcs_node_pb2`).
"""
