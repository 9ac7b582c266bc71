"""Shared by the stand-in executables: append one JSON line per call to $STANDIN_RECORD."""

import json
import os
import sys


def record(tool: str, **extra) -> None:
    path = os.environ.get("STANDIN_RECORD")
    if not path:
        return
    entry = {"tool": tool, "argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ), **extra}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
