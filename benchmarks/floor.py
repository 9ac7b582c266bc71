"""The floor of a no-op: a bare dodo with the real pipeline's tasks, file_deps and targets.

``python benchmarks/floor.py dump OUT.json`` (run in a project folder, with its
environment) loads the project's dodo.py through doit's own loader and writes every
task's name, file_deps, targets and task_deps. :func:`write_floor` turns that into a
folder holding a dodo.py that declares the same tasks with trivial actions, no
``uptodate`` items beyond what doit needs to call a task without file_deps up to date
(``uptodate: [True]``), the same backend and checker, and its own state file. After one
run of it, its no-op costs what doit itself costs for a graph of this shape: loading,
the dependency check of every file_dep and target, and the state database. With
$FLOOR_GC_GEN0 it runs with that garbage-collector threshold (wasmwheel raises its own,
see wasmwheel.pipeline.graph.fewer_gc_passes; the benchmark shows the floor does not gain from it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FLOOR_DODO = '''"""Floor benchmark: the real task graph with nothing but doit's own work (generated)."""
import gc
import json
import os
from pathlib import Path

if os.environ.get("FLOOR_GC_GEN0"):  # the floor with wasmwheel's collector threshold (a fairness check)
    gc.set_threshold(int(os.environ["FLOOR_GC_GEN0"]), *gc.get_threshold()[1:])

_GRAPH = json.loads((Path(__file__).parent / "graph.json").read_text())
DOIT_CONFIG = {"backend": "sqlite3", "dep_file": str(Path(__file__).parent / ".floor.db"),
               "check_file_uptodate": "md5", "default_tasks": _GRAPH["default_tasks"], "verbosity": 0}


def _ok():
    return True


def task_floor():
    for base, doc in _GRAPH["groups"].items():
        yield {"basename": base, "name": None, "doc": doc}
    for t in _GRAPH["tasks"]:
        task = {"basename": t["basename"], "doc": "", "file_dep": t["file_dep"], "targets": t["targets"],
                "task_dep": t["task_dep"], "actions": [(_ok,)] if t["actions"] else None}
        if t["name"] is not None:
            task["name"] = t["name"]
        if t["actions"] and not t["file_dep"]:
            task["uptodate"] = [True]
        yield task
'''


def dump(out: Path) -> None:
    """Write the task graph of the dodo.py in the current folder (run with the project's environment)."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.loader import get_module, load_tasks

    sys.argv = ["doit"]  # what the project's DOIT_CONFIG sees for a bare `doit`
    module = get_module("dodo.py")
    loader = ModuleTaskLoader(module)
    config = loader.load_doit_config()
    tasks = load_tasks(dict(loader.namespace), allow_delayed=False)
    groups = {t.name: t.doc for t in tasks if t.has_subtask}
    out_tasks = []
    for t in tasks:
        if t.has_subtask:
            continue
        base, _, name = t.name.partition(":")
        out_tasks.append(
            {
                "basename": base,
                "name": name or None,
                "actions": bool(t.actions),
                "file_dep": sorted(t.file_dep),
                "targets": list(t.targets),
                "task_dep": list(t.task_dep),
            }
        )
    Path(out).write_text(
        json.dumps({"default_tasks": config.get("default_tasks", []), "groups": groups, "tasks": out_tasks})
    )


def write_floor(graph: Path, folder: Path) -> dict[str, int]:
    """Make the floor project in ``folder`` from a dumped graph; returns its counts."""
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(Path(graph).read_text())
    (folder / "graph.json").write_text(json.dumps(data))
    (folder / "dodo.py").write_text(FLOOR_DODO)
    return {
        "tasks": len(data["tasks"]),
        "groups": len(data["groups"]),
        "file_deps": sum(len(t["file_dep"]) for t in data["tasks"]),
        "targets": sum(len(t["targets"]) for t in data["tasks"]),
    }


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "dump":
        sys.exit("usage: python benchmarks/floor.py dump OUT.json  (in a project folder)")
    dump(Path(sys.argv[2]))
