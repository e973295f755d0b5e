"""Test infrastructure that later issues reuse: multi-node clusters on one machine
(``cluster``) and SSH hosts in network namespaces (``hosts``). Real processes only."""
