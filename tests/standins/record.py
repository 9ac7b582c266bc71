"""Shared by the stand-in executables: append one JSON line per call to $STANDIN_RECORD, and stop at a
chosen point for the interruption tests ($STANDIN_PAUSE=<tool>:<point>)."""

import json
import os
import sys
import time


def record(tool: str, **extra) -> None:
    path = os.environ.get("STANDIN_RECORD")
    if not path:
        return
    entry = {"tool": tool, "argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ), **extra}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def pause(tool: str, point: str) -> None:
    """With STANDIN_PAUSE=<tool>:<point>, write this process's id to $STANDIN_PAUSE_FILE and wait
    there to be killed (the test kills the doit process and this one, as a crash would), or until
    the test creates $STANDIN_PAUSE_FILE.release (then go on). Every process that stops there (the
    compiles of a `doit -n` run, say) also adds a line with its id to $STANDIN_PAUSE_FILE.all."""
    if os.environ.get("STANDIN_PAUSE") != f"{tool}:{point}":
        return
    marker = os.environ["STANDIN_PAUSE_FILE"]
    with open(marker + ".all", "a") as f:  # one short write with O_APPEND: lines never interleave
        f.write(f"{os.getpid()}\n")
    with open(marker + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(marker + ".tmp", marker)
    deadline = time.monotonic() + 300  # only ends a stand-in whose test has gone
    while not os.path.exists(marker + ".release"):
        if time.monotonic() > deadline:
            sys.exit(f"{tool} stand-in: nobody came to kill or release it at {point}")
        time.sleep(0.05)
