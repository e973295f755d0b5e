"""Placement decisions: which node runs a task or an actor, where a group's bundles go.

Pure functions of a request and a view of the nodes: no I/O, no clock, no asyncio, and no
import of the rest of rayops, so that the raylet (leases), the GCS (actors, placement groups)
and the autoscaler can all decide the same way, and the tests check decisions as tables.

- ``labels``: Ray's ``label_selector`` syntax, matching, a node's default labels;
- ``strategy``: node affinity as data, a strategy scoped by a label selector;
- ``policy``: ``NodeView``, ``Decision`` and ``choose_node`` (tasks and actors);
- ``bundles``: ``place_bundles`` and ``validate_bundles`` (placement groups).
"""

from __future__ import annotations
