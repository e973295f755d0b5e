"""Write a node's small files in one go: one Ansible task instead of one per file.

    python3 write-files.py < JSON

JSON (on stdin, so secrets never appear on a command line): ``{"dirs": [{"path", "mode"}],
"files": [{"path", "mode", "b64" or "text"}]}``, applied in order (``text``: written with one
trailing newline). Each file is written to a temporary
file in its directory with its mode set before any byte is written (a 0600 key is never
readable by others), then renamed over the old one; a file whose content and mode are already
right is left alone. Prints ``{"changed": [paths]}``; any error exits non-zero naming the
path. Standard library only (it runs with the host's Python before the venv exists).
"""

import base64
import json
import os
import sys


def _mode(text):
    return int(str(text), 8)


def main():
    spec = json.load(sys.stdin)
    changed = []
    for d in spec.get("dirs", []):
        path, mode = d["path"], _mode(d["mode"])
        if not os.path.isdir(path):
            os.makedirs(path, mode)
            changed.append(path)
        if os.stat(path).st_mode & 0o7777 != mode:
            os.chmod(path, mode)
            if path not in changed:
                changed.append(path)
    for f in spec.get("files", []):
        path, mode = f["path"], _mode(f["mode"])
        if "text" in f:
            data = (str(f["text"]).rstrip("\n") + "\n").encode()
        else:
            data = base64.b64decode(f["b64"])
        try:
            with open(path, "rb") as old:
                same = old.read() == data and os.stat(path).st_mode & 0o7777 == mode
        except FileNotFoundError:
            same = False
        if same:
            continue
        tmp = f"{path}.rayops-tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        changed.append(path)
    sys.stdout.write(json.dumps({"changed": changed}) + "\n")


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, KeyError) as err:
        sys.stderr.write(f"rayops write-files: {err}\n")
        sys.exit(1)
