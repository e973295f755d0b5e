"""Run a cluster spec's shell commands on a node, in order, stopping at the first failure.

    python3 run-commands.py STEP BASE64_JSON_LIST [VENV_BIN|- [KEY_FILE KEY]]

Each command runs in its own shell (as Ray runs each over its own SSH session), in the home
directory, with the node's virtualenv first on PATH. Output goes to stdout as it comes. When
a command fails, the last line on stderr is ``RAYOPS-FAILED-COMMAND <json>`` naming the
command's position, text and exit code, and this script exits with that exit code, so the
launcher can report exactly which command failed and why. When every command succeeded, KEY
(the launcher's digest of the command list) is written to KEY_FILE. Standard library only.
"""

import base64
import json
import os
import subprocess
import sys


def main(argv):
    step = argv[1]
    commands = json.loads(base64.b64decode(argv[2]).decode())
    venv_bin = argv[3] if len(argv) > 3 else "-"
    env = dict(os.environ)
    if venv_bin != "-" and os.path.isdir(venv_bin):
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
    home = os.path.expanduser("~")
    for i, command in enumerate(commands):
        sys.stdout.write("$ %s\n" % command)
        sys.stdout.flush()
        rc = subprocess.call([shell, "-c", command], cwd=home, env=env, stderr=subprocess.STDOUT)
        if rc != 0:
            sys.stdout.flush()
            info = {"step": step, "index": i, "count": len(commands), "command": command, "rc": rc}
            sys.stderr.write("RAYOPS-FAILED-COMMAND %s\n" % json.dumps(info))
            return rc if 0 < rc < 256 else 1
    if len(argv) > 5:
        os.makedirs(os.path.dirname(argv[4]), exist_ok=True)
        with open(argv[4], "w") as f:
            f.write(argv[5] + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
