"""The cluster launcher: ``rayops up/down/exec/submit/attach/rsync-*/status CONFIG``.

Facts, then a plan, then apply (pyinfra's shape): ``spec`` parses cluster.yaml once;
``facts`` reads every host over SSH in parallel; ``plan`` decides per host which steps run
(pure, no I/O); ``apply`` runs the Ansible playbooks in ``playbooks/`` for exactly those steps;
``record`` keeps the cluster's record on the head only. ``ssh`` owns every SSH connection
(OpenSSH with shared ControlMaster connections, host keys always checked). The launcher never
imports the runtime's daemons; it drives them through ``rayops start/stop/status`` on the
hosts. See docs/launcher.md.

Nothing is imported here: ``rayops`` (the CLI) imports ``rayops.cli.launcher_cmds`` on every
command, and the spec's parser (pydantic) must only load when a launcher verb runs.
"""
