"""Run doit and kill it with SIGKILL at a chosen point: a test tool, like the stand-ins, for interrupting
a run at a precise point inside wasmwheel (or doit) itself. Nothing is cleaned up: that is the point.

    python tests/killpoint.py [after:]<module>:<attribute path>[:<n>] [doit arguments...]

The doit process dies on the n-th call (default 1) of the attribute, before the call, or after it
returns with ``after:``. Examples: ``wasmwheel.toolchain.provision:replace_dir`` (a clone or unpack done, not
yet moved into place), ``zipfile:ZipFile.writestr:2`` (a wheel half written),
``doit.dependency:SqliteDB.dump`` (every step done, doit's state not yet saved).

    python tests/killpoint.py --in-step <task> <j> [doit arguments...]

A crash inside one step: the whole run (doit, its ``-n`` workers, the tools and smoke servers they
started) dies at once at the j-th moment of the step ``<task>`` or, if the step has fewer moments,
once it is done and before doit records it. The moments of a step (MOMENTS) are its start, each
write to its log (a command, a line of a tool's output while the tool runs), each file or folder
put in place (just before and just after its rename), each archive member unpacked and each wheel
member written. They are counted in the process that runs the step, so the point is the same under
``doit -n``; the other processes are stopped wherever they are, as in a real crash. Once the chosen
moment is reached, no thread of the step's process gets past another moment.

    python tests/killpoint.py --trace <file> [doit arguments...]

Runs doit to the end and appends one line ``<task>\\t<moment>`` to <file> per moment of every step
(from every process of the run): the real moments a ``--in-step`` kill can choose from.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading

# Where a step's moments are ("after:": when the call returns); the first one starts a step.
MOMENTS = (
    "doit.task:Task.execute",  # the step starts
    "wasmwheel.runner:StepLog.write",  # its log grows: a command, a tool's output as the tool runs
    "os:replace",  # a file or folder about to be put in place
    "after:os:replace",  # ... and just put in place
    "tarfile:TarFile._extract_one",  # an archive member about to be unpacked
    "zipfile:ZipFile.writestr",  # a wheel member about to be written
)
RECORD = "doit.dependency:Dependency.save_success"  # doit records a step that finished

ROOT = os.getpid()  # the doit process: the root of the run's process tree


def _resolve(spec: str):
    """``[after:]module:attr.path`` -> (owner object, attribute name, after?)."""
    after = spec.startswith("after:")
    module_name, attr = spec.removeprefix("after:").split(":")
    owner = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name, after


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _parents() -> dict[int, int]:
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    found[int(entry.name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return found


def _tree(root: int) -> set[int]:
    parents = _parents()
    found, todo = {root}, [root]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent and p not in found]
        found.update(kids)
        todo += kids
    return found


def crash() -> None:
    """Kill the whole run at once, as a crash would: stop every process of the tree (again until no
    new one shows up: a process may start one while it is listed), then kill them all, this one last."""
    me = os.getpid()
    stopped: set[int] = set()
    while True:
        new = _tree(ROOT) - stopped - {me}
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        stopped |= new
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _die()


def install(spec: str) -> None:
    """Die on the n-th call of one attribute (this process only)."""
    after = spec.startswith("after:")
    module_name, attr, *count = spec.removeprefix("after:").split(":")
    owner, name, _ = _resolve(f"{module_name}:{attr}")
    n = int(count[0]) if count else 1
    original = getattr(owner, name)
    calls = 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == n and not after:
            _die()
        result = original(*args, **kwargs)
        if calls == n and after:
            _die()
        return result

    setattr(owner, name, wrapper)


class Moments:
    """Wraps every MOMENTS point (and RECORD) and calls ``on_moment(task, point)`` at each moment of
    the step this process is running (``on_record(task)`` when doit is about to record a step)."""

    def __init__(self, on_moment, on_record=None):
        self.on_moment = on_moment
        self.current: str | None = None  # the step this process runs (doit runs one at a time)
        self.lock = threading.Lock()  # a tool's output is logged by a thread beside the step's own
        for point in MOMENTS:
            self._wrap(point)
        if on_record is not None:
            owner, name, _ = _resolve(RECORD)
            original = getattr(owner, name)

            def record(dep_manager, task, *args, **kwargs):
                on_record(task.name)
                return original(dep_manager, task, *args, **kwargs)

            setattr(owner, name, record)

    def _wrap(self, point: str) -> None:
        owner, name, after = _resolve(point)
        original = getattr(owner, name)
        starts_step = point == MOMENTS[0]

        def wrapper(*args, **kwargs):
            if starts_step:
                self.current = args[0].name
            if not after:
                self._moment(point)
            try:
                return original(*args, **kwargs)
            finally:
                if after:
                    self._moment(point)
                if starts_step:
                    self._moment(None)  # a crash under way stops the step here, before doit sees it end
                    self.current = None

        setattr(owner, name, wrapper)

    def _moment(self, point: str | None) -> None:
        with self.lock:
            if self.current is not None:
                self.on_moment(self.current, point)


def install_in_step(task: str, moment: int) -> None:
    reached = threading.Event()
    seen = 0

    def kill_here(why: str) -> None:
        if reached.is_set():
            return
        reached.set()
        os.write(2, f"killpoint: crash {why}\n".encode())
        crash()

    def on_moment(name: str, point: str | None) -> None:
        nonlocal seen
        if reached.is_set():  # another thread of this process reached the moment: wait for the end here
            threading.Event().wait()
        if name != task or point is None:
            return
        seen += 1
        if seen == moment:
            kill_here(f"at moment {moment} of {task} ({point})")

    def on_record(name: str) -> None:
        if name == task:
            kill_here(f"when {task} was done, before doit recorded it")

    Moments(on_moment, on_record)


def install_trace(path: str) -> None:
    def on_moment(name: str, point: str | None) -> None:
        if point is not None:
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"{name}\t{point}\n")

    Moments(on_moment)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] == "--in-step":
        install_in_step(args[1], int(args[2]))
        args = args[3:]
    elif args[0] == "--trace":
        install_trace(args[1])
        args = args[2:]
    else:
        install(args[0])
        args = args[1:]
    sys.argv[1:] = args  # dodo.py reads doit's arguments from sys.argv, as under the real `doit`
    from doit.doit_cmd import DoitMain

    sys.exit(DoitMain().run(args))
