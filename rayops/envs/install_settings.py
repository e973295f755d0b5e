"""Where a node's pip/uv runtime_envs install from, and how much disk their cache may take.

Read once from the environment by ``rayops.init()`` / ``rayops start`` (which reject a bad
value naming the variable before anything starts) and by the raylet's ``main``, which every
daemon inherits:

- ``RAYOPS_RUNTIME_ENV_INDEX_URL`` (default: the installer's own, its config or PyPI):
  installs get ``--index-url``;
- ``RAYOPS_RUNTIME_ENV_FIND_LINKS`` (default: none): wheelhouse directories or URLs, separated
  by spaces or commas, given as ``--find-links``; without an index URL, installs also get
  ``--no-index`` (air-gapped clusters);
- ``RAYOPS_RUNTIME_ENV_CACHE_MB`` (default 10240, Ray's 10 GiB): the disk the node's built
  envs may take; past it, envs that no leased worker or waiting request uses are deleted,
  least recently used first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

INDEX_URL_VAR = "RAYOPS_RUNTIME_ENV_INDEX_URL"
FIND_LINKS_VAR = "RAYOPS_RUNTIME_ENV_FIND_LINKS"
CACHE_MB_VAR = "RAYOPS_RUNTIME_ENV_CACHE_MB"
DEFAULT_CACHE_MB = 10 * 1024


@dataclass(frozen=True)
class InstallSettings:
    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    cache_bytes: int = DEFAULT_CACHE_MB * 1024 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> InstallSettings:
        env = os.environ if environ is None else environ
        index_url = env.get(INDEX_URL_VAR, "").strip() or None
        links = tuple(p for p in re.split(r"[\s,]+", env.get(FIND_LINKS_VAR, "")) if p)
        raw = env.get(CACHE_MB_VAR, "").strip()
        cache_mb = DEFAULT_CACHE_MB
        if raw:
            try:
                cache_mb = int(raw)
            except ValueError:
                cache_mb = -1
            if cache_mb < 0:
                raise ValueError(
                    f"{CACHE_MB_VAR}={raw!r}: expected a whole number of MiB >= 0 (0: keep no "
                    "env that no worker is leased in)"
                )
        return cls(index_url, links, cache_mb * 1024 * 1024)

    def installer_args(self) -> list[str]:
        """The index options every install on this node gets."""
        args: list[str] = []
        if self.index_url:
            args += ["--index-url", self.index_url]
        for link in self.find_links:
            args += ["--find-links", link]
        if self.find_links and not self.index_url:
            args.append("--no-index")
        return args

    def describe(self) -> str:
        """Which index and links were tried, for an error message."""
        index = (
            f"index {self.index_url} ({INDEX_URL_VAR})"
            if self.index_url
            else (
                "no index"
                if self.find_links
                else f"the installer's default index ({INDEX_URL_VAR} unset)"
            )
        )
        links = (
            f"find-links {' '.join(self.find_links)} ({FIND_LINKS_VAR})"
            if self.find_links
            else f"no find-links ({FIND_LINKS_VAR} unset)"
        )
        return f"{index}, {links}"
