"""The autoscaling decision as tables: demand, nodes and records in, launches and
terminations out (rayops.autoscaler.decide; no processes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from rayops.autoscaler.decide import decide
from rayops.autoscaler.instances import Instance
from rayops.autoscaler.types import (
    AutoscalerConfig,
    BundleDemand,
    Decision,
    Demand,
    NodeTypeConfig,
    NodeView,
    ResourceDemand,
    ResourceRequest,
)
from rayops.scheduling.labels import parse_label_selector

TYPES = {
    "head": NodeTypeConfig("head", {"CPU": 2}),
    "cpu": NodeTypeConfig("cpu", {"CPU": 4}, {"zone": "a"}, max_workers=10),
    "big": NodeTypeConfig("big", {"CPU": 8}, {"zone": "b"}, max_workers=10),
}
GPU_TYPES = {
    "head": NodeTypeConfig("head", {"CPU": 2}),
    "cpu": NodeTypeConfig("cpu", {"CPU": 4}),
    "v100": NodeTypeConfig("v100", {"CPU": 16, "GPU": 1, "accelerator_type:V100": 1}),
    "a100": NodeTypeConfig("a100", {"CPU": 16, "GPU": 1, "accelerator_type:A100": 1}),
}


def config(types: Mapping[str, NodeTypeConfig] = TYPES, **kw: float) -> AutoscalerConfig:
    args: dict = {"max_workers": 20, "idle_timeout_s": 300.0, **kw}
    return AutoscalerConfig(dict(types), "head", **args)


def head(free: float = 0.0) -> NodeView:
    return NodeView("head", None, "head", {"CPU": 2}, {"CPU": free}, is_head=True)


def worker(
    n: int, node_type: str = "cpu", free: float | None = None, idle: float = 0.0, **kw: object
) -> NodeView:
    total = dict(TYPES[node_type].resources)
    avail = total if free is None else {"CPU": free}
    labels = TYPES[node_type].labels
    return NodeView(f"n{n}", f"i{n}", node_type, total, avail, idle, labels=labels, **kw)  # type: ignore[arg-type]


def running(n: int, node_type: str = "cpu", state: str = "running", since: float = 0.0):
    return Instance(f"i{n}", node_type, state, f"r{n}", since, cloud_id=f"c{n}")  # type: ignore[arg-type]


def tasks(*pairs: tuple[dict, int], selector: dict | None = None) -> Demand:
    sel = parse_label_selector(selector)
    return Demand(tasks=tuple(ResourceDemand(s, c, sel) for s, c in pairs))


def group(strategy: str, *bundles: dict) -> Demand:
    return Demand(groups=(BundleDemand(tuple(bundles), strategy),))


@dataclass
class Case:
    name: str
    demand: Demand
    nodes: list[NodeView] = field(default_factory=lambda: [head()])
    instances: list[Instance] = field(default_factory=list)
    config: AutoscalerConfig = field(default_factory=config)
    launch: dict[str, int] = field(default_factory=dict)
    terminate: tuple[str, ...] = ()
    infeasible: tuple[tuple[dict, int], ...] = ()
    now: float = 1000.0


ONE_CPU = {"CPU": 1}

CASES = [
    Case("nothing pending launches nothing", Demand()),
    Case("a task the head has room for launches nothing", tasks((ONE_CPU, 2)), [head(2)]),
    Case(
        "ten 1-CPU tasks, full head: three 4-CPU nodes (the best-filled type)",
        tasks((ONE_CPU, 10)),
        launch={"cpu": 3},
    ),
    Case(
        "a 6-CPU task only the big type holds",
        tasks(({"CPU": 6}, 1)),
        launch={"big": 1},
    ),
    Case(
        "free capacity on a worker is used first",
        tasks((ONE_CPU, 6)),
        [head(), worker(1, free=4)],
        [running(1)],
        launch={"cpu": 1},
    ),
    Case(
        "a shape no type has is infeasible, not launched for",
        tasks(({"TPU": 1}, 3), (ONE_CPU, 1)),
        launch={"cpu": 1},
        infeasible=(({"TPU": 1.0}, 3),),
    ),
    Case(
        "a shape that fits a live node's totals (busy now) is pending, not infeasible",
        tasks(({"CPU": 2}, 1)),
        [head(0)],
        config=config({"head": TYPES["head"]}),
    ),
    Case(
        "STRICT_SPREAD of 3 with one fitting node launches 2",
        group("STRICT_SPREAD", ONE_CPU, ONE_CPU, ONE_CPU),
        [head(), worker(1)],
        [running(1)],
        launch={"cpu": 2},
    ),
    Case(
        "STRICT_SPREAD of 3 on a full cluster launches 3 (one node each)",
        group("STRICT_SPREAD", ONE_CPU, ONE_CPU, ONE_CPU),
        launch={"cpu": 3},
    ),
    Case(
        "PACK of 3x2 CPU is best effort: two well-filled 4-CPU nodes",
        group("PACK", {"CPU": 2}, {"CPU": 2}, {"CPU": 2}),
        launch={"cpu": 2},
    ),
    Case(
        "STRICT_PACK of 3x2 CPU needs one node with 6: the big type",
        group("STRICT_PACK", {"CPU": 2}, {"CPU": 2}, {"CPU": 2}),
        launch={"big": 1},
    ),
    Case(
        "STRICT_PACK whose sum fits no type is infeasible",
        group("STRICT_PACK", {"CPU": 4}, {"CPU": 4}, {"CPU": 4}),
        infeasible=(({"CPU": 12.0}, 1),),
    ),
    Case(
        "request_resources is a floor on totals, whatever is free",
        Demand(requests=(ResourceRequest(({"CPU": 1},) * 8),)),
        [head(0)],
        launch={"cpu": 2},
    ),
    Case(
        "request_resources already held by the nodes launches nothing",
        Demand(requests=(ResourceRequest(({"CPU": 1},) * 6),)),
        [head(0), worker(1, free=0)],
        [running(1)],
    ),
    Case(
        "per-type max_workers caps a type",
        tasks(({"CPU": 8}, 20)),
        config=config({**TYPES, "big": NodeTypeConfig("big", {"CPU": 8}, max_workers=3)}),
        launch={"big": 3},
    ),
    Case(
        "cluster max_workers caps the sum (running and pending count)",
        tasks((ONE_CPU, 100)),
        [head(), worker(1, free=0)],
        [running(1), running(2, state="launching")],
        config=config(max_workers=4),
        launch={"cpu": 2},
    ),
    Case(
        "upscaling_speed: at most 5 pending on a small cluster",
        tasks((ONE_CPU, 200)),
        config=config(upscaling_speed=1.0, max_workers=100),
        launch={"cpu": 5},
    ),
    Case(
        "upscaling_speed: at most speed x live nodes pending, less those pending",
        tasks(({"CPU": 4}, 200)),
        [head()] + [worker(k, free=0) for k in range(19)],
        [running(k) for k in range(19)] + [running(99, state="provisioning")],
        config=config(
            {**TYPES, "cpu": NodeTypeConfig("cpu", {"CPU": 4})},
            upscaling_speed=0.5,
            max_workers=100,
        ),
        launch={"cpu": 9},
    ),
    Case(
        "a pending record is capacity to come: no second launch for the same work",
        tasks(({"CPU": 4}, 1)),
        instances=[running(7, state="launching")],
    ),
    Case(
        "a terminating node's capacity does not count",
        tasks(({"CPU": 4}, 1)),
        [head(), worker(1)],
        [running(1, state="terminating")],
        launch={"cpu": 1},
    ),
    Case(
        "min_workers are launched with no demand",
        Demand(),
        config=config({**TYPES, "cpu": NodeTypeConfig("cpu", {"CPU": 4}, min_workers=2)}),
        launch={"cpu": 2},
    ),
    Case(
        "min_workers count running and pending nodes",
        Demand(),
        [head(), worker(1)],
        [running(1), running(2, state="requested")],
        config=config({**TYPES, "cpu": NodeTypeConfig("cpu", {"CPU": 4}, min_workers=3)}),
        launch={"cpu": 1},
    ),
    Case(
        "a label selector picks the type with matching labels",
        tasks((ONE_CPU, 1), selector={"zone": "b"}),
        launch={"big": 1},
    ),
    Case(
        "a label selector no type matches is infeasible",
        tasks((ONE_CPU, 2), selector={"zone": "z"}),
        infeasible=(({"CPU": 1.0}, 2),),
    ),
    Case(
        "free capacity on a node whose labels do not match is not used",
        tasks((ONE_CPU, 1), selector={"zone": "b"}),
        [head(), worker(1, free=4)],
        [running(1)],
        launch={"big": 1},
    ),
    Case(
        "an idle node past the timeout is terminated",
        Demand(),
        [head(), worker(1, idle=301), worker(2, idle=100)],
        [running(1), running(2)],
        terminate=("i1",),
    ),
    Case(
        "never the head, a node holding objects or bundles, or one not ours",
        Demand(),
        [
            head(2),
            worker(1, idle=999, holds_objects=True),
            worker(2, idle=999, holds_bundles=True),
            NodeView("n3", None, "cpu", {"CPU": 4}, {"CPU": 4}, 999),
        ],
        [running(1), running(2)],
    ),
    Case(
        "never below min_workers: the longest idle goes, one stays",
        Demand(),
        [head(), worker(1, idle=400), worker(2, idle=900)],
        [running(1), running(2)],
        config=config({**TYPES, "cpu": NodeTypeConfig("cpu", {"CPU": 4}, min_workers=1)}),
        terminate=("i2",),
    ),
    Case(
        "an idle node pending work fits on is kept",
        tasks((ONE_CPU, 1)),
        [head(), worker(1, idle=400)],
        [running(1)],
    ),
    Case(
        "an idle node the request_resources floor needs is kept",
        Demand(requests=(ResourceRequest(({"CPU": 4},)),)),
        [head(), worker(1, idle=400)],
        [running(1)],
    ),
    Case(
        "a type whose last record failed for good cools down; another type is used",
        tasks((ONE_CPU, 1)),
        instances=[Instance("f1", "cpu", "failed", "r", 990.0)],
        launch={"big": 1},
    ),
]


def _check(case: Case, got: Decision) -> None:
    assert dict(got.launch) == case.launch, case.name
    assert tuple(t.instance_id for t in got.terminate) == case.terminate, case.name
    assert tuple((dict(i.shape), i.count) for i in got.infeasible) == case.infeasible, case.name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decision_table(case: Case) -> None:
    instances = {i.instance_id: i for i in case.instances}
    got = decide(case.demand, case.nodes, instances, case.config, case.now)
    _check(case, got)


def test_gpu_types_are_kept_for_gpu_work_and_accelerator_type_picks_the_type() -> None:
    cfg = config(GPU_TYPES)
    cpu_only = decide(tasks((ONE_CPU, 4)), [head()], {}, cfg, 0.0)
    assert dict(cpu_only.launch) == {"cpu": 1}  # not a (bigger) GPU node
    a100 = tasks(({"GPU": 1, "accelerator_type:A100": 0.001}, 1))
    assert dict(decide(a100, [head()], {}, cfg, 0.0).launch) == {"a100": 1}
    any_gpu = decide(tasks(({"GPU": 1, "CPU": 1}, 2)), [head()], {}, cfg, 0.0)
    assert sum(any_gpu.launch.values()) == 2 and set(any_gpu.launch) <= {"a100", "v100"}


def test_infeasible_says_why_and_pending_shows_waiting_demand() -> None:
    got = decide(tasks(({"TPU": 2}, 1), (ONE_CPU, 10)), [head()], {}, config(), 0.0)
    (inf,) = got.infeasible
    assert "TPU" in inf.reason and "available_node_types" in inf.reason
    assert ({"CPU": 1.0}, 10) in got.pending
    sel = decide(tasks((ONE_CPU, 1), selector={"zone": "z"}), [head()], {}, config(), 0.0)
    assert "zone" in sel.infeasible[0].reason


def test_cooling_is_reported_until_it_ends() -> None:
    failed = {"f1": Instance("f1", "cpu", "failed", "r", 990.0)}
    cfg = config(retry_backoff_s=5.0, launch_retries=3)  # quiet for 5 * 2**3 = 40 s
    got = decide(tasks(({"CPU": 4}, 1)), [head()], failed, cfg, 1000.0)
    assert dict(got.cooling) == {"cpu": 1030.0}
    later = decide(tasks(({"CPU": 4}, 1)), [head()], failed, cfg, 1031.0)
    assert dict(later.launch) == {"cpu": 1} and not later.cooling


def test_the_same_inputs_give_the_same_decision() -> None:
    demand = Demand(
        tasks=(ResourceDemand(ONE_CPU, 30), ResourceDemand({"CPU": 3}, 4)),
        groups=(BundleDemand((ONE_CPU,) * 4, "STRICT_SPREAD"),),
    )
    nodes = [head(), worker(1, free=1), worker(2, free=3)]
    insts = {i.instance_id: i for i in (running(1), running(2))}
    first = decide(demand, nodes, insts, config(), 0.0)
    assert all(decide(demand, nodes, insts, config(), 0.0) == first for _ in range(3))
    assert sum(first.launch.values()) > 0


def test_grouping_many_identical_shapes_gives_the_grouped_answer() -> None:
    many = Demand(tasks=tuple(ResourceDemand(ONE_CPU, 1) for _ in range(40)))
    one = tasks((ONE_CPU, 40))
    cfg = config(max_workers=100, upscaling_speed=100.0)
    assert decide(many, [head()], {}, cfg, 0.0).launch == decide(one, [head()], {}, cfg, 0.0).launch
    assert dict(decide(one, [head()], {}, cfg, 0.0).launch) == {"cpu": 10}


def test_thousands_of_different_shapes_are_rounded_to_a_grid_and_pack_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rayops.autoscaler.decide as decide_module

    cfg = config(
        {**TYPES, "cpu": NodeTypeConfig("cpu", {"CPU": 4}), "big": TYPES["big"]},
        max_workers=1000,
        upscaling_speed=1000.0,
    )
    shapes = Demand(
        tasks=(
            *(ResourceDemand({"CPU": 0.5 + k * 1e-6}) for k in range(400)),
            ResourceDemand({"CPU": 3.99}),
            ResourceDemand({"TPU": 1}),
        )
    )
    rounded = decide(shapes, [head()], {}, cfg, 0.0)
    monkeypatch.setattr(decide_module, "COARSEN_ABOVE", 10**9)
    exact = decide(shapes, [head()], {}, cfg, 0.0)
    assert rounded.launch == exact.launch and sum(exact.launch.values()) > 0
    assert [i.shape for i in rounded.infeasible] == [{"TPU": 1.0}]


def test_random_clusters_never_break_the_limits() -> None:
    """Invariants over many generated inputs: caps hold, the head and min_workers stay,
    infeasible shapes really fit nothing, and nothing infeasible is launched for."""
    import random

    rng = random.Random(13)
    for _ in range(300):
        types = {
            "head": NodeTypeConfig("head", {"CPU": 2}),
            "cpu": NodeTypeConfig(
                "cpu", {"CPU": 4}, min_workers=rng.randint(0, 2), max_workers=rng.randint(2, 8)
            ),
            "gpu": NodeTypeConfig("gpu", {"CPU": 8, "GPU": 2}, max_workers=rng.randint(0, 3)),
        }
        cfg = AutoscalerConfig(
            types,
            "head",
            max_workers=rng.randint(0, 12),
            upscaling_speed=rng.choice((0.0, 0.5, 1.0, 4.0)),
            idle_timeout_s=60.0,
        )
        nodes, insts = [head(rng.choice((0.0, 2.0)))], {}
        for k in range(rng.randint(0, 10)):
            t = rng.choice(("cpu", "gpu"))
            total = dict(types[t].resources)
            free = {r: a * rng.choice((0.0, 0.5, 1.0)) for r, a in total.items()}
            nodes.append(NodeView(f"n{k}", f"i{k}", t, total, free, rng.choice((0.0, 100.0))))
            insts[f"i{k}"] = Instance(f"i{k}", t, "running", "r", 0.0)
        for k in range(rng.randint(0, 4)):
            t = rng.choice(("cpu", "gpu"))
            insts[f"p{k}"] = Instance(f"p{k}", t, "launching", "r", 0.0)
        shapes = [{"CPU": 1}, {"CPU": 3}, {"GPU": 1}, {"CPU": 8, "GPU": 2}, {"TPU": 1}, {"CPU": 9}]
        demand = Demand(
            tasks=tuple(
                ResourceDemand(rng.choice(shapes), rng.randint(1, 20))
                for _ in range(rng.randint(0, 5))
            ),
            groups=tuple(
                BundleDemand(
                    tuple(rng.choice(shapes[:3]) for _ in range(rng.randint(1, 4))),
                    rng.choice(("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")),
                )
                for _ in range(rng.randint(0, 2))
            ),
        )
        d = decide(demand, nodes, insts, cfg, 0.0)
        workers = {t: sum(1 for n in nodes[1:] if n.node_type == t) for t in types}
        pend = {
            t: sum(1 for i in insts.values() if i.state == "launching" and i.node_type == t)
            for t in types
        }
        total_new = sum(d.launch.values())
        assert "head" not in d.launch
        for t, n in d.launch.items():
            assert workers[t] + pend[t] + n <= (types[t].max_workers or 0)
        assert len(nodes) - 1 + sum(pend.values()) + total_new <= max(
            cfg.max_workers, len(nodes) - 1 + sum(pend.values())
        )
        if total_new:
            assert sum(pend.values()) + total_new <= max(5, int(cfg.upscaling_speed * len(nodes)))
        gone = {t.instance_id for t in d.terminate}
        assert not gone & {n.instance_id for n in nodes if n.idle_s < 60.0}
        for t in ("cpu", "gpu"):
            left = sum(1 for n in nodes[1:] if n.node_type == t and n.instance_id not in gone)
            assert left >= min(types[t].min_workers, workers[t])
        for inf in d.infeasible:
            assert not any(
                all(tt.resources.get(r, 0) >= a for r, a in inf.shape.items())
                for tt in types.values()
            )
