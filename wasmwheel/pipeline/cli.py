"""doit's command line, as wasmwheel reads it before doit does: options after a task name, a
misspelt task name, doit started outside the repository root, whether a run is a batch (it keeps
going past a failed crate), and SIGTERM handled like Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from wasmwheel.pipeline.steps import PIPELINE

# The task groups dodo.py yields (one per step of the pipeline, the serve task included).
BASENAMES = tuple(step.name for step in PIPELINE)

# The parameters of `doit serve`.
SERVE_TASK_PARAMS = (
    {"name": "port", "long": "port", "type": int, "default": 8000, "help": "TCP port (default 8000)"},
    {"name": "host", "long": "host", "default": "127.0.0.1", "help": "address to bind"},
)


# Options of `doit run` that take a value (so their value is not mistaken for a task name).
_VALUE_OPTIONS = {
    "-n",
    "--process",
    "-P",
    "--parallel-type",
    "-r",
    "--reporter",
    "-f",
    "--file",
    "-d",
    "--dir",
    "-o",
    "--output-file",
    "--db-file",
    "--dep-file",
    "--backend",
    "--check_file_uptodate",
    "-v",
    "--verbosity",
    "--failure-verbosity",
}
# ... and those without one. doit reads all of these only before the first task name.
_FLAG_OPTIONS = {
    "-a",
    "--always-execute",
    "-c",
    "--continue",
    "-s",
    "--single",
    "--pdb",
    "--auto-delayed-regex",
    "-k",
    "--seek-file",
}
# Task parameters (`doit serve --port 8001`): options after that task's name are its own.
SERVE_PARAMS = {f"--{p['long']}" for p in SERVE_TASK_PARAMS}
_OTHER_COMMANDS = {
    "list",
    "info",
    "clean",
    "forget",
    "ignore",
    "dumpdb",
    "help",
    "auto",
    "strace",
    "reset-dep",
    "tabcompletion",
}


def misplaced_options(argv: list[str]) -> str | None:
    """The fix for `doit build -n 2`: doit takes options only before the task names, and after one
    it reads them as that task's own parameters ("option -n not recognized"). None if all is well."""
    args = list(argv)
    if args and args[0] in _OTHER_COMMANDS:
        return None
    prefix = ["run"] if args[:1] == ["run"] else []
    args = args[len(prefix) :]
    options: list[str] = []
    rest: list[str] = []
    moved: list[str] = []
    task = ""
    i = 0
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0]
        short = name[:2] if name.startswith("-") and not name.startswith("--") else name
        takes_value = short in _VALUE_OPTIONS and "=" not in arg and len(arg) == len(short)
        value = args[i + 1 : i + 2] if takes_value else []
        if not arg.startswith("-"):
            task = task if "=" in arg else arg
            rest.append(arg)
        elif task and task.split(":", 1)[0] == "serve" and name in SERVE_PARAMS:
            rest.append(arg)
        elif task and (short in _VALUE_OPTIONS or short in _FLAG_OPTIONS):
            options += [arg, *value]
            moved.append(" ".join([arg, *value]))
            i += len(value)
        else:
            # An option before any task name keeps its value with it (`-n 2`: 2 is not a task).
            (options if not task else rest).extend([arg, *value])
            i += len(value)
        i += 1
    if not moved:
        return None
    fixed = " ".join(["doit", *prefix, *options, *rest])
    return (
        f"doit reads its options before the task names, and {', '.join(repr(m) for m in moved)} came after "
        f"one; run `{fixed}`"
    )


# doit's commands whose arguments (after their options) are task names, targets or patterns.
_TASK_COMMANDS = ("run", "list", "info", "clean", "forget", "ignore", "strace")


@cache
def _doit_options(command: str) -> tuple[frozenset[str], frozenset[str]]:
    """doit's own command names, and the options of ``command`` that take a value (``-n``,
    ``--process``), read from doit's option tables."""
    from doit.cmd_base import DodoTaskLoader, DoitCmdBase
    from doit.doit_cmd import DoitMain

    commands = {cmd.name or cmd.__name__.lower(): cmd for cmd in DoitMain.DOIT_CMDS}
    options = [
        *DoitCmdBase.base_options,
        *DodoTaskLoader.cmd_options,
        *getattr(commands.get(command), "cmd_options", ()),
    ]
    valued = {f"-{o['short']}" for o in options if o.get("short") and o.get("type") is not bool}
    valued |= {f"--{o['long']}" for o in options if o.get("long") and o.get("type") is not bool}
    return frozenset(commands), frozenset(valued)


def task_arguments(argv: list[str]) -> list[str]:
    """The task names (or targets, or patterns) a doit command line gives: its arguments without
    the command, options and their values, task parameters (``serve --port 8001``) and
    ``key=value`` arguments. Empty for a command that takes no task names (``help``, ``dumpdb``)."""
    args = list(argv)
    commands, _ = _doit_options("run")
    command = args.pop(0) if args and args[0] in commands else "run"
    if command not in _TASK_COMMANDS:
        return []
    _, valued = _doit_options(command)
    task_valued = {f"--{p['long']}" for p in SERVE_TASK_PARAMS if p.get("type", str) is not bool}
    names: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("-") and len(arg) > 1:
            name = arg.split("=", 1)[0] if arg.startswith("--") else arg[:2]
            attached = "=" in arg if arg.startswith("--") else len(arg) > 2
            if not attached and (name in valued or (names and name in task_valued)):
                i += 1  # its value
        elif "=" not in arg:
            names.append(arg)
    return names


def unknown_task_hint(
    argv: list[str], known: Callable[[], set[str]], every: Callable[[], set[str]] | None = None
) -> str | None:
    """For a task name on the command line that no task has: the closest real names
    ("did you mean build:hello-pyo3?"), or where to find them. None when every name is a task.

    ``known`` gives the task names cheaply (Project.task_names), called only when a name is not a
    group; ``every`` gives them exactly (by making every task), called only when a name is not in
    ``known``: a name missing from the cheap list is never refused. Patterns and target paths are
    left to doit."""
    wanted = [n for n in task_arguments(argv) if n not in BASENAMES and "*" not in n and "/" not in n]
    if not wanted:
        return None
    names = known()
    if every is not None and any(n not in names for n in wanted):
        names = every()
    lines = []
    for name in dict.fromkeys(n for n in wanted if n not in names):
        close = _closest(name, names)
        lines.append(
            f"no task is named {name!r}: "
            + (f"did you mean {_either(close)}?" if close else "`doit list` shows every task")
        )
    return "; ".join(lines) or None


def names_of_tasks(namespace: dict[str, Any]) -> set[str]:
    """The names of the tasks the ``task_*`` functions of a dodo file make, named as doit names them
    (``basename:name``; a group, or a task made by a function returning a dict, by its basename)."""
    names: set[str] = set()
    for key, func in namespace.items():
        if not key.startswith("task_") or not callable(func):
            continue
        made = func()
        for task in [made] if isinstance(made, dict) else made or ():
            base = task.get("basename", key[len("task_") :])
            names.add(f"{base}:{task['name']}" if task.get("name") else base)
    return names


def _closest(name: str, names: set[str]) -> list[str]:
    """The real task names closest to a misspelt one: of the same group first (``build:helo-pyo3``),
    then with the group corrected (``buidl:hello-pyo3``), then any; only those about as close as
    the closest one."""
    base, colon, rest = name.partition(":")
    same_group = [n for n in names if n.startswith(f"{base}:")]
    if colon and same_group:
        return _best(name, same_group)
    regrouped = [f"{b}{colon}{rest}" for b in _best(base, BASENAMES) if f"{b}{colon}{rest}" in names]
    return regrouped or _best(name, names)


def _best(word: str, candidates, cutoff: float = 0.6, spread: float = 0.05, most: int = 3) -> list[str]:
    import difflib

    scored = []
    for candidate in candidates:
        matcher = difflib.SequenceMatcher(None, word, candidate)
        if matcher.real_quick_ratio() >= cutoff and matcher.quick_ratio() >= cutoff and matcher.ratio() >= cutoff:
            scored.append((-matcher.ratio(), candidate))
    scored.sort()
    return [c for score, c in scored[:most] if -score >= -scored[0][0] - spread]


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def started_elsewhere(started_in: str | Path | None, root: Path) -> str | None:
    """The fix when doit was started outside the repository root (``doit -k`` from a subfolder,
    ``doit -f ../dodo.py``): it reads its settings (pyproject.toml: the backend that keeps each
    finished step, subtasks in ``doit list``) from the folder it starts in. None if all is well."""
    if started_in is None:
        return None
    here, root = Path(started_in).resolve(), Path(root).resolve()
    if here == root:
        return None
    where = "a subfolder of" if root in here.parents else "outside"
    return (
        f"doit started in {here}, {where} the repository, whose root is {root}; doit reads its settings "
        f"(pyproject.toml) from the folder it starts in: run it from the root (cd {root})"
    )


def keep_going(argv: list[str]) -> bool:
    """True when the run targets the whole collection (`doit`, `doit build`, `doit run build`).

    A batch keeps going past a failed crate (doit --continue); a single target such as
    `doit build:<crate>` stops at its first failure unless run with -c.
    """
    args = list(argv)
    if args and args[0] in _OTHER_COMMANDS:
        return False
    if args and args[0] == "run":
        args = args[1:]
    targets: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            skip = arg in _VALUE_OPTIONS
            continue
        if "=" in arg:  # doit task parameters (pos_arg / key=value)
            continue
        targets.append(arg)
    return not targets or "build" in targets


# -- process setup -----------------------------------------------------------------------


def _sigterm(signum, frame):  # pragma: no cover - exercised by the interruption tests
    raise KeyboardInterrupt


def _interrupted_hook(kind, value, tb, previous=sys.excepthook):
    if issubclass(kind, KeyboardInterrupt):
        sys.stderr.write("interrupted: the steps that finished are kept; run doit again to continue\n")
        return
    previous(kind, value, tb)


def install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C: the running command is stopped, doit saves its state and
    lets the KeyboardInterrupt out, and the run ends with one line instead of a traceback. (The
    finished steps are committed as they finish anyway (wasmwheel.pipeline.doitdb); with doit's own
    backend, a plain SIGTERM would discard every success of the run.)"""
    signal.signal(signal.SIGTERM, _sigterm)
    sys.excepthook = _interrupted_hook
