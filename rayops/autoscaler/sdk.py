"""``rayops.autoscaler.sdk``: Ray's ``ray.autoscaler.sdk.request_resources``.

``request_resources(num_cpus=, bundles=)`` asks the autoscaler to keep the cluster able to
hold these bundles at once (a floor on its size, not work to run), right away rather than
after demand shows up. Each call replaces the previous one (as in Ray); ``request_resources()``
or an empty list withdraws it. The request goes to the GCS KV; the monitor on the head reads
it every round.
"""

from __future__ import annotations

import time

from rayops.protocol.autoscaler_messages import (
    AUTOSCALER_NAMESPACE,
    REQUESTS_KEY,
    ResourceRequestRecord,
    check_bundles,
)

__all__ = ["request_resources"]


def request_resources(
    num_cpus: int | None = None, bundles: list[dict[str, float]] | None = None
) -> None:
    """Ask the cluster to scale to hold ``num_cpus`` CPUs (one bundle of {"CPU": 1} each) and
    ``bundles``, immediately. Raises ValueError/TypeError for a bad argument."""
    wanted: list[dict[str, float]] = []
    if num_cpus is not None:
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 0:
            raise TypeError(f"request_resources: num_cpus must be an int >= 0, got {num_cpus!r}")
        wanted += [{"CPU": 1.0}] * num_cpus
    if bundles is not None:
        wanted += [dict(b) for b in check_bundles(bundles, "request_resources: bundles")]
    from rayops.core_worker import state

    gcs = state.require().gcs()
    record = ResourceRequestRecord(tuple(wanted), time.time())
    gcs.kv_put(REQUESTS_KEY, record.to_json(), namespace=AUTOSCALER_NAMESPACE, overwrite=True)
