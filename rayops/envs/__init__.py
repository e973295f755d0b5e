"""Runtime environments (``runtime_env``): the spec, its packages, and a node's cache of them.

- ``spec.py``: what a user may give (validation at the call, naming the field), Ray's merge
  rules, and the wire form (canonical JSON plus its hash) that leases carry. No I/O beyond
  checking that local paths exist.
- ``packaging.py``: a driver zips a ``working_dir`` or ``py_modules`` entry deterministically
  (``excludes`` and ``.gitignore`` honoured), names it by content hash and uploads it once.
- ``node_cache.py``: a node downloads and unpacks each package once, concurrent requests
  waiting on one download, never caching a half-unpacked directory.
- ``venv_cache.py``: a node builds each pip/uv env once (a virtualenv layered on the node's
  install, uv or pip as the installer), never caching a half-built one, and deletes unused
  envs past the cache size; ``install_settings.py``: where it installs from.

Imports nothing of rayops outside ``rayops.envs``: the core worker, the raylet and the API all
build on it.
"""
