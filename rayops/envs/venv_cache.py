"""A node's pip/uv runtime_envs: one virtualenv per distinct spec, built once, shared, evicted.

``VenvCache.ensure(field, options, timeout)`` returns the directory of a virtualenv holding
the ``pip`` or ``uv`` field's packages, building it the first time. The key is a content hash
of the normalized field, the node's index settings and the Python version, so equal specs
share one env whatever dict they came from. Concurrent callers for one key wait on the same
build (a shielded task).

*Layered on the node's install.* The env is a plain venv of the node's base interpreter with
a ``_rayops_base.pth`` in its site-packages that adds the node's own site-packages directories
(where rayops and its dependencies are installed) *after* the env's: rayops is never installed
per env, and a package the env installs takes precedence over the node's copy. Workers of the
env run the env's ``bin/python`` (not a fork of the zygote, whose imported modules would be
the node's versions).

*Never half-built.* The venv is built in ``root/.building-*`` and renamed into place only
after the install (and the optional check) succeeded, with a ``.rayops-ready`` marker; a
failure or a timeout kills the installer, deletes the temporary directory and raises
``SetupFailed`` with the installer's last lines and which index/links were tried.

*Installers.* uv (the ``uv`` PyPI package's binary) when present; pip (the node's, run with
``--python`` against the env) when it is not, or when ``pip_version`` asks for a given pip.
The installers run as subprocesses whose output a thread collects, awaited on the caller's
event loop; blocking file work goes to a thread too.

*Eviction.* ``entries(in_use)`` lists the built envs and the installers' download caches
(uv's and pip's, under ``root`` unless the node's environment sets ``UV_CACHE_DIR`` /
``PIP_CACHE_DIR``) with their sizes and last use; ``delete(path)`` removes one. What to
delete is ``eviction.plan_evictions``'s, over the node's packages too (``raylet/runtime_envs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import site
import subprocess
import sys
import tempfile
import time
from typing import Any

from rayops.envs.eviction import CacheEntry
from rayops.envs.install_settings import InstallSettings

logger = logging.getLogger(__name__)

READY_MARKER = ".rayops-ready"
BASE_PTH = "_rayops_base.pth"
TAIL_LINES = 25


class SetupFailed(Exception):
    """A runtime_env could not be set up on this node; ``str()`` says why."""


class SetupTimedOut(SetupFailed):
    """The setup ran past its ``setup_timeout_seconds``."""


def find_uv() -> str | None:
    """The uv binary of the ``uv`` package (a rayops dependency), else one on PATH."""
    try:
        import uv  # type: ignore[import-untyped]

        path: str = uv.find_uv_bin()
        return path
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def venv_python(path: str) -> str:
    return os.path.join(path, "bin", "python")


class VenvCache:
    def __init__(
        self,
        root: str,
        settings: InstallSettings,
        *,
        base_python: str = sys.executable,
        uv_bin: str | None = None,
        use_uv: bool = True,
    ) -> None:
        self.root = root
        self.settings = settings
        self._base_python = base_python
        self._uv = (uv_bin or find_uv()) if use_uv else None
        self._inflight: dict[str, asyncio.Task[str]] = {}
        self._last_used: dict[str, float] = {}
        self._sizes: dict[str, int] = {}
        self._installer_used = 0.0
        self.builds = 0  # envs built by this cache (a test reads it)

    def key(self, field: str, options: dict[str, Any]) -> str:
        body = {
            "field": field,
            "options": options,
            "index": self.settings.installer_args(),
            "python": list(sys.version_info[:2]),
        }
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return f"{field}-{hashlib.blake2b(raw, digest_size=12).hexdigest()}"

    def path(self, key: str) -> str:
        return os.path.join(self.root, key)

    async def ensure(self, field: str, options: dict[str, Any], timeout: float | None) -> str:
        """The env's directory, built if needed; raises SetupFailed."""
        key = self.key(field, options)
        path = self.path(key)
        self._last_used[key] = time.monotonic()
        if os.path.isfile(os.path.join(path, READY_MARKER)):
            return path
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._build(key, field, options, timeout))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        # shield: one waiter timing out must not cancel the build the others wait on
        return await asyncio.shield(task)

    async def _build(
        self, key: str, field: str, options: dict[str, Any], timeout: float | None
    ) -> str:
        deadline = None if timeout is None else time.monotonic() + timeout
        os.makedirs(self.root, exist_ok=True)
        tmp = await asyncio.to_thread(tempfile.mkdtemp, prefix=f".building-{key}-", dir=self.root)
        started = time.monotonic()
        try:
            await self._create_venv(tmp, deadline, timeout)
            await self._install(tmp, field, options, deadline, timeout)
            await asyncio.to_thread(_finish, tmp, self.path(key))
        finally:
            await asyncio.to_thread(shutil.rmtree, tmp, True)
        self.builds += 1
        self._sizes[key] = await asyncio.to_thread(disk_use, self.path(key))
        logger.info(
            "runtime_env %s built in %.2f s (%d MiB)",
            key,
            time.monotonic() - started,
            self._sizes[key] >> 20,
        )
        return self.path(key)

    async def _create_venv(self, tmp: str, deadline: float | None, timeout: float | None) -> None:
        if self._uv is not None:
            cmd = [self._uv, "venv", "--quiet", "--relocatable", "--python", self._base_python]
            await self._run([*cmd, tmp], "uv venv", deadline, timeout)
        else:
            cmd = [self._base_python, "-m", "venv", "--without-pip", tmp]
            await self._run(cmd, "python -m venv", deadline, timeout)
        site_dir = await self._site_packages(tmp, deadline, timeout)
        bases = [p for p in _base_site_dirs() if os.path.isdir(p)]
        line = f"import site; list(map(site.addsitedir, {bases!r}))\n"
        with open(os.path.join(site_dir, BASE_PTH), "w", encoding="utf-8") as f:
            f.write(line)

    async def _site_packages(self, tmp: str, deadline: float | None, timeout: float | None) -> str:
        code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        out = await self._run([venv_python(tmp), "-c", code], "python", deadline, timeout)
        site_dir = out.strip().splitlines()[-1]
        if not os.path.realpath(site_dir).startswith(os.path.realpath(tmp) + os.sep):
            raise SetupFailed(f"the new virtualenv's site-packages {site_dir!r} is not inside it")
        return site_dir

    async def _install(
        self,
        tmp: str,
        field: str,
        options: dict[str, Any],
        deadline: float | None,
        timeout: float | None,
    ) -> None:
        req = os.path.join(tmp, "rayops-requirements.txt")
        with open(req, "w", encoding="utf-8") as f:
            f.write("\n".join(options["packages"]) + "\n")
        index = self.settings.installer_args()
        python = venv_python(tmp)
        if not options["packages"]:
            return
        uv = self._uv
        if field == "uv" and options.get("uv_version") and uv is not None:
            spec = f"uv{options['uv_version']}"
            await self._run(
                [uv, "pip", "install", "--python", python, *index, spec], "uv", deadline, timeout
            )
            uv = os.path.join(tmp, "bin", "uv")
        uv_failed: SetupFailed | None = None
        if uv is not None and not (field == "pip" and options.get("pip_version")):
            extra = list(options.get("uv_pip_install_options", [])) if field == "uv" else []
            cmd = [uv, "pip", "install", "--python", python, *index, *extra, "-r", req]
            try:
                await self._run(cmd, "uv pip install", deadline, timeout)
            except SetupTimedOut:
                raise
            except SetupFailed as err:
                # uv sees only the env's own site-packages, not the node's (the .pth adds
                # those at run time): a requirement only the node's install satisfies fails
                # with uv when the index lacks it. pip, run in the env's interpreter, sees
                # them; a `pip` field tries it before giving up (a `uv` field's options are
                # uv's, so it does not).
                if field != "pip":
                    raise
                uv_failed = err
            else:
                if options.get("pip_check") or options.get("uv_check"):
                    check = [uv, "pip", "check", "--python", python]
                    await self._run(check, "uv pip check", deadline, timeout)
                return
        try:
            await self._pip_install(tmp, options, index, req, deadline, timeout)
        except SetupFailed as err:
            if uv_failed is None or isinstance(err, SetupTimedOut):
                raise
            raise SetupFailed(f"{uv_failed}\n\nthen, with pip instead:\n{err}") from err

    async def _pip_install(
        self,
        tmp: str,
        options: dict[str, Any],
        index: list[str],
        req: str,
        deadline: float | None,
        timeout: float | None,
    ) -> None:
        python = venv_python(tmp)
        pip = [self._base_python, "-m", "pip", "--python", python]
        quiet = ["--disable-pip-version-check", "--no-input"]
        if options.get("pip_version"):
            spec = f"pip{options['pip_version']}"
            await self._run([*pip, "install", *quiet, *index, spec], "pip", deadline, timeout)
            pip = [python, "-m", "pip"]
        await self._run(
            [*pip, "install", *quiet, *index, "-r", req], "pip install", deadline, timeout
        )
        if options.get("pip_check") or options.get("uv_check"):
            await self._run([*pip, "check"], "pip check", deadline, timeout)

    async def _run(
        self, cmd: list[str], what: str, deadline: float | None, timeout: float | None
    ) -> str:
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
        env.pop("VIRTUAL_ENV", None)
        # The installers' download caches live with the envs and count in the node's cache
        # size, unless the node's environment names its own (then they are the operator's).
        env.setdefault("UV_CACHE_DIR", os.path.join(self.root, ".uv-cache"))
        env.setdefault("PIP_CACHE_DIR", os.path.join(self.root, ".pip-cache"))
        self._installer_used = time.monotonic()
        # subprocess (vfork/posix_spawn), not the event loop's spawn (fork): a forked child
        # of a daemon runs gRPC's at-fork handlers, whose restarted threads crashed uv
        # (SIGSEGV) before it could exec.
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            out, _ = await asyncio.to_thread(proc.communicate, None, remaining)
        except subprocess.TimeoutExpired as err:
            proc.kill()
            await asyncio.to_thread(proc.communicate)
            raise SetupTimedOut(
                f"runtime_env setup took longer than setup_timeout_seconds={timeout:g}: {what} "
                f"was killed (installing from {self.settings.describe()}); raise it in "
                "runtime_env['config'] or install fewer packages."
            ) from err
        except BaseException:
            proc.kill()  # cancelled (shutdown): the thread's communicate returns
            raise
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            tail = "\n".join(text.rstrip().splitlines()[-TAIL_LINES:])
            raise SetupFailed(
                f"runtime_env {what} failed (exit code {proc.returncode}) installing from "
                f"{self.settings.describe()}; its last lines:\n{tail}"
            )
        return text

    def close(self) -> None:
        """Cancel builds under way (their installers are killed)."""
        for task in self._inflight.values():
            task.cancel()

    def installer_caches(self) -> list[str]:
        """The installers' download caches this node bounds (uv's, pip's, under ``root``;
        not there when the node's environment names its own ``UV_CACHE_DIR``/``PIP_CACHE_DIR``)."""
        return [os.path.join(self.root, ".uv-cache"), os.path.join(self.root, ".pip-cache")]

    def entries(self, in_use: set[str]) -> list[CacheEntry]:
        """The built envs and the installer caches, as eviction sees them. Blocking (it
        measures the caches): call in a thread, with no build under way."""
        out = [
            CacheEntry(self.path(k), self._sizes[k], self._last_used.get(k, 0.0),
                       self.path(k) in in_use)
            for k in self._sizes
            if os.path.isdir(self.path(k))
        ]  # fmt: skip
        for cache in self.installer_caches():
            if os.path.isdir(cache):
                # Files uv linked into an env are counted with the env (one link here too).
                size = disk_use(cache, only_unlinked=True)
                out.append(CacheEntry(cache, size, self._installer_used, cache in in_use))
        return out

    def delete(self, path: str) -> None:
        """Delete a built env or an installer cache (renamed away first: a worker starting
        now finds no half-deleted env). Blocking: call in a thread."""
        name = os.path.basename(path)
        doomed = tempfile.mkdtemp(prefix=f".deleting-{name.lstrip('.')}-", dir=self.root)
        os.rename(path, os.path.join(doomed, name))
        shutil.rmtree(doomed, ignore_errors=True)
        self._sizes.pop(name, None)
        self._last_used.pop(name, None)
        logger.info("runtime_env cache entry %s deleted (the node's cache is over its size)", name)


def _base_site_dirs() -> list[str]:
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return dirs


def _finish(tmp: str, path: str) -> None:
    with open(os.path.join(tmp, READY_MARKER), "w", encoding="utf-8") as f:
        f.write(str(time.time()))
    try:
        os.rename(tmp, path)
    except OSError:
        if not os.path.isfile(os.path.join(path, READY_MARKER)):  # else built by another
            raise


def disk_use(path: str, *, only_unlinked: bool = False) -> int:
    """Bytes the files under ``path`` take; ``only_unlinked``: files with no other link."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if not only_unlinked or st.st_nlink <= 1:
                    total += st.st_blocks * 512
    return total
