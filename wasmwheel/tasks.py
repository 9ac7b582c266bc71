"""doit task dicts, built by plain functions (unit-testable without running doit) from the step
declarations of wasmwheel.steps (which lists the pipeline, in order), and the runner of a step.

Staleness: every step's target is a small stamp file written last and atomically;
later steps depend on stamps (never on big archives or folders); each step's
``config_changed`` holds exactly what shapes its output, and ``OutputsIntact``
reruns a step whose recorded outputs were deleted or replaced (both in one
``StepCurrent`` item per task: a no-op checks 7000 tasks of a 500-crate collection).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib
import inspect
import json
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

from doit.exceptions import TaskFailed

# Modules the task dicts need on every doit start; the steps' own modules (toolchain, runtime,
# smoke, index, wheel, hints) are imported when a step runs (wasmwheel.steps names their functions).
from . import source
from .abi import Abi, abi_files, load_abi
from .errors import CommandFailed, ConfigError, WasmwheelError
from .fsutil import (
    OutputsIntact,
    clean_stale_temps,
    file_lock,
    read_stamp,
    sha256_file,
    stamp_inputs,
    write_stamp,
)
from .layout import Layout
from .uptodate import StepCurrent
from .progress import ProgressReporter, reporter_writing
from .recipe import Recipe, RecipeSet, load_recipes, runtime_closure
from .runner import StepLog
from .settings import Settings
from .steps import (ABI, CRATE, CRATE_ABI, PIPELINE, STEP_BY_NAME, Input, Step, last_crate_step, target_name,
                    task_name)

# -- the project ----------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    settings: Settings
    abis: dict[str, Abi]
    abi_errors: dict[str, ConfigError]
    recipes: RecipeSet
    layout: Layout = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", Layout(self.settings))

    @classmethod
    def load(cls, root: Path, env: dict[str, str] | None = None) -> "Project":
        fewer_gc_passes()
        root = Path(root).resolve()
        settings = Settings.from_env(root, env)
        abis: dict[str, Abi] = {}
        abi_errors: dict[str, ConfigError] = {}
        for path in abi_files(root / "abi"):
            try:
                abi = load_abi(path, root)
                abis[abi.name] = abi
            except ConfigError as exc:
                abi_errors[path.stem] = exc
        names = sorted([*abis, *abi_errors])
        recipes = load_recipes(root / "recipes", names, root, cache=Layout(settings).recipe_cache)
        settings.build_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, abis=abis, abi_errors=abi_errors, recipes=recipes)

    @property
    def abi_names(self) -> list[str]:
        return sorted([*self.abis, *self.abi_errors])

    def doit_config(self, argv: list[str] | None = None) -> dict[str, Any]:
        return {
            # From the repository root (pyproject.toml), "sqlite3" is wasmwheel.doitdb.StepCommitDB:
            # each finished step's record is committed at once, so a killed run keeps them.
            "backend": "sqlite3",
            "dep_file": str(self.layout.doit_db),
            "default_tasks": ["build", "index"],
            "check_file_uptodate": "md5",
            "reporter": self.reporter_class(),
            # The collection keeps going past a failed crate; a single target stops at the first error.
            "continue": keep_going(sys.argv[1:] if argv is None else argv),
        }

    def reporter_class(self) -> type[ProgressReporter]:
        return reporter_writing(self.write_report, self.layout.report_md)

    def write_report(self, results: list, run: dict[str, Any]) -> None:
        from .report import write_report

        write_report(self, results, run)

    @property
    def toolchain(self) -> str:
        return self.settings.toolchain

    # -- what the step declarations (wasmwheel.steps) ask of the collection -----------------
    @cached_property
    def source_listings(self) -> source.SourceListings:
        return source.SourceListings(self.layout.source_listings)

    @cached_property
    def _closures(self) -> dict[str, list[str]]:
        recipes = self.recipes.recipes
        return {name: runtime_closure(recipe, recipes) for name, recipe in recipes.items()}

    def test_deps(self, crate: str) -> list[str]:
        """The crates whose wheels a crate's smoke test installs ([depends] test, and what they need)."""
        return self._closures[crate]

    @cached_property
    def index_inputs(self) -> dict[str, Any]:
        from .index import index_inputs

        return index_inputs(self.recipes.recipes, self.settings.index_url)

    def targets(self, step: Step) -> Iterator[tuple[Abi | None, Recipe | None]]:
        """The (ABI, recipe) of each task of ``step``, by its scope and its ``when``."""
        when = step.when
        if step.scope == ABI:
            for abi in self.abis.values():
                if when is None or when(self, abi, None):
                    yield abi, None
        elif step.scope == CRATE:
            for recipe in self.recipes.recipes.values():
                yield None, recipe
        elif step.scope == CRATE_ABI:
            for recipe in self.recipes.recipes.values():
                for abi_name in recipe.abis(self.abi_names, self.toolchain):
                    abi = self.abis.get(abi_name)
                    if abi is not None and (when is None or when(self, abi, recipe)):
                        yield abi, recipe

    # -- task generators (one per step; dodo.py makes a task_<step> function of each) --------
    def tasks(self, step: Step | str) -> Iterator[dict] | dict:
        """The tasks of ``step`` (what its task_<step> function in dodo.py gives doit)."""
        step = STEP_BY_NAME[step] if isinstance(step, str) else step
        return getattr(self, step.tasks)() if step.tasks else self._step_tasks(step)

    def _step_tasks(self, step: Step) -> Iterator[dict]:
        yield group(step.name, step.doc)
        for abi, recipe in self.targets(step):
            yield step_task(step, self, abi, recipe)
        if "source_listings" in self.__dict__:
            self.source_listings.save()

    def abi_error_tasks(self) -> Iterator[dict]:
        yield group("abi", STEP_BY_NAME["abi"].doc)
        for name, error in self.abi_errors.items():
            yield error_task("abi", name, error)

    def serve_task(self) -> dict:
        return serve_task(self.layout)

    def build_tasks(self) -> Iterator[dict]:
        yield group("build", STEP_BY_NAME["build"].doc)
        for recipe in self.recipes.recipes.values():
            yield build_task(recipe, self.abi_names, self.abi_errors, self.toolchain)
        for stem, error in self.recipes.errors.items():
            yield error_task("build", stem, error)

    def task_names(self) -> set[str]:
        """Every task name the generators yield (``build``, ``build:<crate>``, ...), without building
        a task: for the hint that names the closest ones to a misspelt name."""
        names = {*BASENAMES, *(task_name("abi", abi=name) for name in self.abi_errors)}
        for step in PIPELINE:
            if step.run:
                names.update(task_name(step.name, recipe and recipe.name, abi and abi.name)
                             for abi, recipe in self.targets(step))
        names.update(task_name("build", name) for name in [*self.recipes.recipes, *self.recipes.errors])
        return names


GC_GEN0_THRESHOLD = 50_000


def fewer_gc_passes() -> None:
    """Run Python's cyclic garbage collector every 50 000 allocations instead of every 700.

    doit keeps every task, action and graph node of the collection alive for the whole run,
    and with the default threshold the collector walks them again and again while they are
    built and checked: half a second of a 500-crate no-op (a bare dodo of the same graph
    is not slowed, it holds far fewer objects). Cycles are still collected.
    """
    gen0, gen1, gen2 = gc.get_threshold()
    if 0 < gen0 < GC_GEN0_THRESHOLD:
        gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def group(basename: str, doc: str) -> dict:
    return {"basename": basename, "name": None, "doc": doc}


# The task groups dodo.py yields (each generator's group()), and the serve task.
BASENAMES = tuple(step.name for step in PIPELINE)


# -- running a step -----------------------------------------------------------------------


# When this process started: a stamp newer than this, with our inputs, was made by another process.
_STARTED = time.time()


def inputs_key(config: Any, deps: list[str] | tuple[str, ...]) -> str:
    """Digest of what shapes a step's output: its config and the contents of its file_dep."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for dep in sorted(deps):
        h.update(b"\0" + dep.encode() + b"\0" + sha256_file(Path(dep)).encode())
    return h.hexdigest()


def _done_meanwhile(stamp: Path, key: str) -> bool:
    try:
        return (stamp.stat().st_mtime >= _STARTED and stamp_inputs(stamp) == key
                and OutputsIntact(stamp)())
    except OSError:
        return False


def run_step(step: str, stamp: str, log_path: str, title: str, abi: Abi | None, recipe: Recipe | None,
             layout: Layout, *, config: Any = None, deps: tuple[str, ...] = (),
             inputs: tuple[tuple[str, str, str | tuple[str, ...]], ...] = (),
             recipes: dict[str, Recipe] | None = None) -> bool | TaskFailed:
    """doit action wrapper: run the step's function, write its stamp, turn errors into one clear failure.

    ``inputs``: (parameter, step, stamp) of each declared input (a tuple of stamps for other crates'
    wheels): their typed facts are handed to the step's function. Several doit processes may work on one tree
    (and on one cache): the step holds an exclusive lock on its stamp, and shared locks on its input
    stamps, so no two processes run one step at once and none replaces a step's input (a source tree,
    say) while it is used. A process that waited while another one ran this very step with the same
    inputs (``config`` and the contents of ``deps``) takes its result instead of running it again.
    """
    declared = STEP_BY_NAME[step]
    stamp_path = Path(stamp)
    reads = [p for _, _, paths in inputs for p in ((paths,) if isinstance(paths, str) else paths)]
    console = StepLog(None)
    with contextlib.ExitStack() as locks:
        for path in sorted(set(reads)):
            locks.enter_context(file_lock(Path(path), what=f"the input {Path(path).name} of {title}", log=console,
                                          shared=True))
        locks.enter_context(file_lock(stamp_path, what=title, log=console))
        try:
            key = inputs_key(config, deps)
        except OSError as exc:  # a dependency vanished: let doit's next run decide
            return TaskFailed(f"{title}: cannot read an input: {exc}")
        if _done_meanwhile(stamp_path, key):
            console.note(f"{title}: done meanwhile by another wasmwheel process", console=True)
            return True
        clean_stale_temps(stamp_path.parent, prefix=f".{stamp_path.name}.")
        with StepLog(Path(log_path), title) as log:
            try:
                function = step_function(declared.run)
                wanted = _parameters(function)
                given: dict[str, Any] = {"abi": abi, "recipe": recipe, "layout": layout, "recipes": recipes,
                                         "log": log, **(declared.options or {})}
                if "previous" in wanted:
                    given["previous"] = _facts(declared.facts, stamp_path) if stamp_path.exists() else None
                for param, upstream, paths in inputs:
                    if param in wanted:
                        kind = STEP_BY_NAME[upstream].facts
                        given[param] = (_facts(kind, Path(paths)) if isinstance(paths, str)
                                        else [_facts(kind, Path(p)) for p in paths])
                facts = function(**{name: given[name] for name in wanted if name in given})
                outputs = declared.outputs(facts, StepCall(abi, recipe, layout)) if declared.outputs else []
                write_stamp(stamp_path, [Path(p) for p in outputs], inputs=key, **facts)
                return True
            except WasmwheelError as exc:
                log.write(f"# FAILED: {exc}\n")
                return TaskFailed(failure_message(exc, log))
            except Exception:
                log.write(traceback.format_exc())
                return TaskFailed(f"internal error in {title} (a wasmwheel bug; traceback in {log.path})")


@dataclass(frozen=True)
class StepCall:
    """What a step's declared ``outputs`` may look at besides its facts."""

    abi: Abi | None
    recipe: Recipe | None
    layout: Layout


def step_function(run: str) -> Callable[..., dict]:
    """``"module:function"`` of a step declaration -> the function (its module imported now: a doit
    start imports no step's module)."""
    module, _, name = run.partition(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


@lru_cache(maxsize=None)
def _parameters(function: Callable) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


def _facts(kind: type, stamp: Path) -> Any:
    """A stamp's facts, as the class its step declares (a plain dict for a step without one)."""
    data = read_stamp(stamp)
    return data if kind is dict else kind.from_stamp(data)


def failure_message(exc: WasmwheelError, log: StepLog) -> str:
    message = str(exc)
    tail = exc.output_tail if isinstance(exc, CommandFailed) else ""
    if tail:
        message += "\n" + "\n".join("  | " + line for line in tail.splitlines()[-40:])
    from .hints import hint_for

    known = hint_for(f"{exc}\n{tail}")
    if known and "hint:" not in message:
        message += f"\n  hint: {known.fix}"
    if log.path and not isinstance(exc, ConfigError):
        message += f"\n  full log: {log.path}"
    return message


def fail_with(message: str) -> TaskFailed:
    return TaskFailed(message)


def error_task(basename: str, name: str, error: ConfigError) -> dict:
    return {
        "basename": basename,
        "name": name,
        "doc": f"ERROR: {error}",
        "actions": [(fail_with, [str(error)])],
        "verbosity": 0,
    }


# -- task dicts ----------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _inputs_of(name: str) -> tuple[tuple[Input, Step], ...]:
    return tuple((i, STEP_BY_NAME[i.step]) for i in STEP_BY_NAME[name].inputs)


def step_task(step: Step, project: "Project", abi: Abi | None, recipe: Recipe | None) -> dict:
    """The task of ``step`` for ``abi`` and/or ``recipe``, from its declaration. Its file_dep are its
    inputs' stamps (read and locked while it runs) and the files its ``file_deps`` name."""
    layout = project.layout
    crate = recipe.name if recipe is not None else None
    abi_name = abi.name if abi is not None else None
    target = target_name(crate, abi_name)
    stamp = layout.stamp_str(step.name, abi_name, crate)
    log = layout.log_str(step.name, abi_name, crate)
    title = f"{step.name}:{target}"
    doc = step.describe(project, abi, recipe)
    args = [step.name, stamp, log, title, abi, recipe, layout]
    if not step.tracked:  # runs whenever asked for, writes no stamp another step reads
        return {"basename": step.name, "name": target, "doc": doc, "actions": [(run_step, args)], "verbosity": 2}
    inputs: list[tuple[str, str, str | tuple[str, ...]]] = []
    deps: list[str] = []
    order: list[str] = []
    for declared, upstream in _inputs_of(step.name):
        if upstream.when is not None and not upstream.when(project, abi, recipe):
            continue
        if declared.crates is not None:  # other crates' tasks of this ABI
            paths = tuple(layout.stamp_str(upstream.name, abi_name, c) for c in declared.crates(project, recipe))
            inputs.append((declared.param, upstream.name, paths))
            deps.extend(paths)
            continue
        path = layout.stamp_str(upstream.name, abi_name if upstream.scope != CRATE else None,
                                None if upstream.scope == ABI else crate)
        inputs.append((declared.param, upstream.name, path))
        deps.append(path)
        if declared.first:
            order.append(task_name(upstream.name, None if upstream.scope == ABI else crate,
                                   abi_name if upstream.scope != CRATE else None))
    if step.file_deps is not None:
        deps.extend(str(p) for p in step.file_deps(project, abi, recipe))
    config = step.config(project, abi, recipe) if step.config is not None else None
    uptodate = ([step.current(project, abi, stamp), OutputsIntact(stamp)] if step.current is not None
                else [StepCurrent(config, stamp if step.outputs is not None else None)])
    return {
        "basename": step.name,
        "name": target,
        "doc": doc,
        "actions": [(run_step, args, {"config": config, "deps": deps, "inputs": tuple(inputs),
                                      **({"recipes": project.recipes.recipes} if step.scope == ABI else {})})],
        "file_dep": deps,
        "task_dep": order,
        "targets": [stamp, f"{stamp}.outputs"],  # fsutil.outputs_path, without a Path per task
        "uptodate": uptodate,
        "clean": True,
    }


def dodo_functions(project: Project, pipeline: tuple[Step, ...]) -> dict[str, Callable[[], Any]]:
    """The ``task_<step>`` functions doit finds in dodo.py, one per step, in pipeline order."""

    def creator(step: Step) -> Callable[[], Any]:
        def task() -> Any:
            return project.tasks(step)

        task.__name__ = task.__qualname__ = f"task_{step.code_name}"
        return task

    # Named after the step (task_smoke_browser), not its code name: pyodide's is task_pyodide.
    return {f"task_{step.name.replace('-', '_')}": creator(step) for step in pipeline}


def run_server(root: str, host: str, port: int) -> None:
    from .serve import serve

    serve(Path(root), host, port)


SERVE_TASK_PARAMS = (
    {"name": "port", "long": "port", "type": int, "default": 8000, "help": "TCP port (default 8000)"},
    {"name": "host", "long": "host", "default": "127.0.0.1", "help": "address to bind"},
)


def serve_task(layout: Layout) -> dict:
    return {
        "basename": "serve",
        "doc": "Serve build/index with CORS headers (--port, --host); Ctrl-C stops",
        "actions": [(run_server, [str(layout.index_root)])],
        "params": [dict(p) for p in SERVE_TASK_PARAMS],
        "uptodate": [False],
        "verbosity": 2,
    }


def build_task(recipe: Recipe, all_abis: list[str], abi_errors: dict[str, ConfigError], toolchain: str = "lean") -> dict:
    abi_names = recipe.abis(all_abis, toolchain)
    deps = [task_name("abi", abi=a) if a in abi_errors else task_name(last_crate_step(), recipe.name, a)
            for a in abi_names]
    skips = recipe.skips(all_abis, toolchain)
    doc = f"{recipe.package_name} {recipe.version} for {', '.join(abi_names) or 'no ABI'}"
    if toolchain == "lean" and recipe.build.needs_emsdk:
        doc += f"; skipped: {next(iter(skips.values()))}"
    elif skips:
        doc += "; skips " + ", ".join(f"{a} ({why})" for a, why in skips.items())
    task = {"basename": "build", "name": recipe.name, "doc": doc, "task_dep": deps, "actions": None}
    if toolchain == "lean" and recipe.build.needs_emsdk:
        # Asked for by name it fails, saying why; in a batch it is skipped with that reason and the rest go on.
        task["actions"] = [(needs_emsdk_action, [recipe.name, recipe.build.needs_emsdk])]
        task["verbosity"] = 2
    return task


def needs_emsdk_action(crate: str, why: str) -> bool | TaskFailed:
    message = (f"{crate} needs emsdk ({why}), and this run uses the lean toolchain: "
               f"build it with `WASMWHEEL_TOOLCHAIN=emsdk doit build:{crate}`")
    if keep_going(sys.argv[1:]):
        sys.stderr.write(f"skip build:{crate}  ({message})\n")
        return True
    return TaskFailed(message)


# Options of `doit run` that take a value (so their value is not mistaken for a task name).
_VALUE_OPTIONS = {"-n", "--process", "-P", "--parallel-type", "-r", "--reporter", "-f", "--file", "-d", "--dir",
                  "-o", "--output-file", "--db-file", "--dep-file", "--backend", "--check_file_uptodate",
                  "-v", "--verbosity", "--failure-verbosity"}
# ... and those without one. doit reads all of these only before the first task name.
_FLAG_OPTIONS = {"-a", "--always-execute", "-c", "--continue", "-s", "--single", "--pdb", "--auto-delayed-regex",
                 "-k", "--seek-file"}
# Task parameters (`doit serve --port 8001`): options after that task's name are its own.
SERVE_PARAMS = {f"--{p['long']}" for p in SERVE_TASK_PARAMS}
_OTHER_COMMANDS = {"list", "info", "clean", "forget", "ignore", "dumpdb", "help", "auto", "strace", "reset-dep",
                   "tabcompletion"}


def misplaced_options(argv: list[str]) -> str | None:
    """The fix for `doit build -n 2`: doit takes options only before the task names, and after one
    it reads them as that task's own parameters ("option -n not recognized"). None if all is well."""
    args = list(argv)
    if args and args[0] in _OTHER_COMMANDS:
        return None
    prefix = ["run"] if args[:1] == ["run"] else []
    args = args[len(prefix):]
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
        value = args[i + 1:i + 2] if takes_value else []
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
    return (f"doit reads its options before the task names, and {', '.join(repr(m) for m in moved)} came after "
            f"one; run `{fixed}`")


# doit's commands whose arguments (after their options) are task names, targets or patterns.
_TASK_COMMANDS = ("run", "list", "info", "clean", "forget", "ignore", "strace")


@lru_cache(maxsize=None)
def _doit_options(command: str) -> tuple[frozenset[str], frozenset[str]]:
    """doit's own command names, and the options of ``command`` that take a value (``-n``,
    ``--process``), read from doit's option tables."""
    from doit.cmd_base import DodoTaskLoader, DoitCmdBase
    from doit.doit_cmd import DoitMain

    commands = {cmd.name or cmd.__name__.lower(): cmd for cmd in DoitMain.DOIT_CMDS}
    options = [*DoitCmdBase.base_options, *DodoTaskLoader.cmd_options,
               *getattr(commands.get(command), "cmd_options", ())]
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


def unknown_task_hint(argv: list[str], known: Callable[[], set[str]],
                      every: Callable[[], set[str]] | None = None) -> str | None:
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
        lines.append(f"no task is named {name!r}: " + (f"did you mean {_either(close)}?" if close else
                                                          "`doit list` shows every task"))
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
            base = task.get("basename", key[len("task_"):])
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
    return (f"doit started in {here}, {where} the repository, whose root is {root}; doit reads its settings "
            f"(pyproject.toml) from the folder it starts in: run it from the root (cd {root})")


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
    finished steps are committed as they finish anyway (wasmwheel.doitdb); with doit's own
    backend, a plain SIGTERM would discard every success of the run.)"""
    signal.signal(signal.SIGTERM, _sigterm)
    sys.excepthook = _interrupted_hook
