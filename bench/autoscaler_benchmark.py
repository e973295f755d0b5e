"""The autoscaler's decision function: how long one decision takes on a big cluster.

    python bench/autoscaler_benchmark.py [--shapes 10000] [--nodes 1000] [--runs 20]
                                         [--distinct 40]

No processes: builds ``--nodes`` live nodes of three types (CPU, high-memory, GPU; most of
them partly used, a tenth idle past the timeout), ``--shapes`` pending task shapes drawn from
``--distinct`` kinds (CPU, CPU+memory, GPU, a few with a label selector, a few no type
has), 50 placement groups of each strategy and a ``request_resources`` floor, then times
``rayops.autoscaler.decide.decide`` over ``--runs`` runs. Prints one row per case:

* ``autoscaler_decide_10k_shapes_1k_nodes``: ms per decision (wall: median, min, max; and
  the median CPU time of this process, which a busy shared machine inflates less);
* ``autoscaler_decide_10k_shapes_1k_nodes_all_distinct``: the same with every shape
  different (the worst case for grouping);

(the names keep 10k/1k whatever the flags; the flags are printed beside the figure).

With ``--install N`` it also times what dominates a pool node's launch: installing the runtime
on a fresh host. It builds the node wheelhouse of this rayops (with the launcher's packages,
as for an autoscaling head; cached under a temporary directory), then runs the real
``runtime/install-node.sh`` N times per installer into a fresh install directory with the
host's ``python3``:

* ``pool_node_install_uv``: seconds per fresh install (uv from the wheelhouse, the default);
* ``pool_node_install_pip``: the same with ``RAYOPS_NODE_INSTALLER=pip`` (the fallback, and
  what every install did before).

Never fails on a figure.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from rayops.autoscaler.decide import decide
from rayops.autoscaler.types import (
    AutoscalerConfig,
    BundleDemand,
    Demand,
    NodeTypeConfig,
    NodeView,
    ResourceDemand,
    ResourceRequest,
)
from rayops.scheduling.labels import parse_label_selector

GIB = 2.0**30


def _config() -> AutoscalerConfig:
    types = {
        "head": NodeTypeConfig("head", {"CPU": 8, "memory": 32 * GIB}),
        "cpu": NodeTypeConfig("cpu", {"CPU": 16, "memory": 64 * GIB}, {"zone": "a"}),
        "himem": NodeTypeConfig("himem", {"CPU": 16, "memory": 256 * GIB}, {"zone": "b"}),
        "gpu": NodeTypeConfig(
            "gpu",
            {"CPU": 32, "memory": 128 * GIB, "GPU": 4, "accelerator_type:A100": 4},
            {"zone": "a"},
            max_workers=200,
        ),
    }
    return AutoscalerConfig(
        types, "head", max_workers=2000, upscaling_speed=1.0, idle_timeout_s=300
    )


def _nodes(config: AutoscalerConfig, n: int, rng: random.Random) -> list[NodeView]:
    head = config.node_types["head"]
    out = [NodeView("head", None, "head", head.resources, {"CPU": 0}, is_head=True)]
    names = ["cpu", "himem", "gpu"]
    for k in range(n - 1):
        t = config.node_types[names[k % 3]]
        if k % 10 == 0:
            avail, idle = dict(t.resources), 600.0
        else:
            avail = {r: a * rng.choice((0.0, 0.25, 0.5)) for r, a in t.resources.items()}
            idle = 0.0
        out.append(NodeView(f"n{k}", f"i{k}", t.name, t.resources, avail, idle, labels=t.labels))
    return out


def _kinds(distinct: int, rng: random.Random) -> list[ResourceDemand]:
    kinds = []
    zone_a = parse_label_selector({"zone": "a"})
    for k in range(distinct):
        r = k % 8
        if r < 4:
            kinds.append(ResourceDemand({"CPU": rng.choice((1, 2, 4))}))
        elif r < 6:
            kinds.append(ResourceDemand({"CPU": 2, "memory": rng.choice((8, 32, 96)) * GIB}))
        elif r == 6:
            kinds.append(ResourceDemand({"CPU": 4, "GPU": 1, "accelerator_type:A100": 0.001}))
        else:
            kinds.append(ResourceDemand({"CPU": 1}, label_selector=zone_a))
    kinds.append(ResourceDemand({"TPU": 1}))  # no type has it: reported infeasible
    return kinds


def _demand(shapes: int, distinct: int, all_distinct: bool, rng: random.Random) -> Demand:
    kinds = _kinds(distinct, rng)
    tasks = []
    for k in range(shapes):
        kind = kinds[k % len(kinds)]
        shape = dict(kind.shape)
        if all_distinct:  # a different amount for each, so no two group together
            shape["CPU"] = shape.get("CPU", 0) + (k + 1) * 1e-6
        tasks.append(ResourceDemand(shape, 1, kind.label_selector))
    groups = tuple(
        BundleDemand(({"CPU": 2},) * 3, strategy)
        for strategy in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
        for _ in range(50)
    )
    floor = (ResourceRequest(({"CPU": 1},) * 500),)
    return Demand(tuple(tasks), groups, floor)


def _time(name: str, demand: Demand, nodes: list[NodeView], runs: int, note: str) -> None:
    config = _config()
    samples, cpu = [], []
    decision = None
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        decision = decide(demand, nodes, {}, config, now=0.0)
        samples.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    assert decision is not None
    launches = sum(decision.launch.values())
    print(
        f"{name:<52} {statistics.median(samples):>8.2f}  ms/decision  "
        f"min {min(samples):.2f}  max {max(samples):.2f}  "
        f"cpu {statistics.median(cpu):.2f}  (n={runs}; {note}; "
        f"launch {launches}, terminate {len(decision.terminate)}, "
        f"infeasible {len(decision.infeasible)})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--distinct", type=int, default=40)
    parser.add_argument(
        "--install",
        type=int,
        default=0,
        metavar="N",
        help="also time N fresh node installs per installer (uv, pip)",
    )
    args = parser.parse_args()
    rng = random.Random(13)
    nodes = _nodes(_config(), args.nodes, rng)
    note = f"{args.shapes} shapes, {args.nodes} nodes"
    _time(
        "autoscaler_decide_10k_shapes_1k_nodes",
        _demand(args.shapes, args.distinct, False, rng),
        nodes,
        args.runs,
        f"{note}, {args.distinct} kinds",
    )
    _time(
        "autoscaler_decide_10k_shapes_1k_nodes_all_distinct",
        _demand(args.shapes, args.distinct, True, rng),
        nodes,
        max(3, args.runs // 5),
        f"{note}, all distinct",
    )
    if args.install > 0:
        _time_installs(args.install)


def _time_installs(runs: int) -> None:
    import os
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    from rayops.launcher.wheelhouse import (
        ARCHIVE,
        LAUNCHER_PACKAGES,
        build_wheelhouse,
        controller_tag,
        running_source,
    )

    python = shutil.which("python3") or "python3"
    script = Path(__file__).resolve().parents[1] / "rayops/_assets/runtime/install-node.sh"
    with tempfile.TemporaryDirectory(prefix="rayops-install-bench-") as tmp:
        source = running_source(LAUNCHER_PACKAGES)
        t0 = time.perf_counter()
        house = build_wheelhouse(source, source.digest(), controller_tag(), Path(tmp) / "cache")
        size = (house / ARCHIVE).stat().st_size / 1e6
        print(f"(wheelhouse built in {time.perf_counter() - t0:.1f} s, {size:.0f} MB)", flush=True)
        for installer in ("uv", "pip"):
            samples = []
            for k in range(runs):
                target = Path(tmp) / f"node-{installer}-{k}"
                target.mkdir()
                shutil.copy2(house / ARCHIVE, target / ARCHIVE)
                env = {**os.environ, "RAYOPS_NODE_INSTALLER": installer}
                start = time.perf_counter()
                argv = ["sh", str(script), str(target), python]
                proc = subprocess.run(
                    argv, env=env, capture_output=True, text=True, cwd=tmp, check=False
                )
                samples.append(time.perf_counter() - start)
                if proc.returncode != 0:
                    print(f"pool_node_install_{installer}: failed: {proc.stderr[-500:]}")
                    break
                shutil.rmtree(target, ignore_errors=True)
            load = os.getloadavg()[0]
            print(
                f"{'pool_node_install_' + installer:<52} {statistics.median(samples):>8.2f}  "
                f"s/install  min {min(samples):.2f}  max {max(samples):.2f}  "
                f"(n={len(samples)}; fresh venv, {python}, load {load:.1f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
