"""pip runtime_env: the first task in a new env (cold) and the overhead of a warm one.

    .venv/bin/python bench/runtime_env_benchmark.py            # rayops
    /tmp/rayvenv/bin/python bench/runtime_env_benchmark.py --ray  # Ray 2.60, same wheelhouse

Both install a tiny pure-Python wheel written on the spot into a local wheelhouse, with no
index: rayops through RAYOPS_RUNTIME_ENV_FIND_LINKS, Ray through PIP_FIND_LINKS/PIP_NO_INDEX
(its pip inherits the environment). Each cold row uses a package name never built before, so
nothing is cached on the node. Prints its figures; never fails.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import statistics
import sys
import tempfile
import time
import uuid
import zipfile


def write_wheel(house: str, name: str, version: str) -> None:
    # The same as rayops.testing.wheels.write_wheel, repeated so this runs under Ray's venv.
    dist = name.replace("-", "_")
    files = {f"{dist}/__init__.py": f"__version__ = {version!r}\n"}
    info = f"{dist}-{version}.dist-info"
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    rows = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        rows.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*rows, f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(os.path.join(house, f"{dist}-{version}-py3-none-any.whl"), "w") as zf:
        for member, text in files.items():
            zf.writestr(member, text)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ray", action="store_true", help="run against Ray instead of rayops")
    p.add_argument("--cold", type=int, default=3, help="cold envs to build")
    p.add_argument("--warm", type=int, default=200, help="warm calls to time")
    p.add_argument("--field", default="pip", choices=["pip", "uv"])
    args = p.parse_args()
    house = tempfile.mkdtemp(prefix="renv-wheels-")
    names = [f"bench-pkg-{uuid.uuid4().hex[:8]}" for _ in range(args.cold)]
    for name in names:
        write_wheel(house, name, "1.0")
    if args.ray:
        import ray

        os.environ.update({"PIP_FIND_LINKS": house, "PIP_NO_INDEX": "1"})
        label = f"ray {ray.__version__}"
    else:
        import rayops as ray  # type: ignore[no-redef]

        os.environ["RAYOPS_RUNTIME_ENV_FIND_LINKS"] = house
        label = "rayops"
    ray.init(num_cpus=2)

    @ray.remote
    def version(mod: str) -> str:
        return str(__import__(mod).__version__)

    @ray.remote
    def noop() -> None:
        return None

    ray.get(noop.remote())  # the cluster is up and a plain worker is warm
    cold = []
    for name in names:
        env = {args.field: [name]}
        t0 = time.perf_counter()
        assert ray.get(version.options(runtime_env=env).remote(name.replace("-", "_"))) == "1.0"
        cold.append(time.perf_counter() - t0)
    warm_env = version.options(runtime_env={args.field: [names[0]]})
    mod = names[0].replace("-", "_")
    env_times, plain_times = [], []
    for _ in range(args.warm):
        t0 = time.perf_counter()
        ray.get(warm_env.remote(mod))
        env_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ray.get(noop.remote())
        plain_times.append(time.perf_counter() - t0)
    ray.shutdown()
    env_ms = statistics.median(env_times) * 1e3
    plain_ms = statistics.median(plain_times) * 1e3
    print(f"{label} runtime_env {args.field} (python {sys.version.split()[0]})")
    print(f"  cold: first task in a new env: {', '.join(f'{c:.2f}' for c in cold)} s")
    print(
        f"  warm: task in the env {env_ms:.2f} ms, without an env {plain_ms:.2f} ms "
        f"(median of {args.warm}); overhead {env_ms - plain_ms:+.2f} ms"
    )


if __name__ == "__main__":
    main()
