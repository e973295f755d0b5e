"""Data shipped inside the wheel: the launcher's ``playbooks/`` (Ansible) and ``runtime/``
(node-side scripts and templates). Read with ``rayops.launcher.wheelhouse.launcher_assets()``."""
