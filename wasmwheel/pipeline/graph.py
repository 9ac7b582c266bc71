"""The doit task graph: task dicts, built by plain functions (unit-testable without running doit) from
the step declarations of wasmwheel.pipeline.steps (which lists the pipeline, in order).

Staleness: every step's target is a small stamp file written last and atomically;
later steps depend on stamps (never on big archives or folders); each step's
``config_changed`` holds exactly what shapes its output, and ``OutputsIntact``
reruns a step whose recorded outputs were deleted or replaced (both in one
``StepCurrent`` item per task: a no-op checks 7000 tasks of a 500-crate collection).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

from doit.exceptions import TaskFailed

# Modules the task dicts need on every doit start; the steps' own modules (toolchain, runtime,
# smoke, index, wheel, hints) are imported when a step runs (wasmwheel.pipeline.steps names their functions).
from wasmwheel import source
from wasmwheel.fsutil import OutputsIntact
from wasmwheel.model.abi import Abi, abi_files, load_abi
from wasmwheel.model.errors import ConfigError
from wasmwheel.model.layout import Layout
from wasmwheel.model.recipe import Recipe, RecipeSet, index_inputs, load_recipes, runtime_closure
from wasmwheel.model.settings import Settings
from wasmwheel.pipeline.cli import BASENAMES, SERVE_TASK_PARAMS, keep_going
from wasmwheel.pipeline.progress import ProgressReporter, reporter_writing
from wasmwheel.pipeline.run import run_step
from wasmwheel.pipeline.steps import (
    ABI,
    CRATE,
    CRATE_ABI,
    PIPELINE,
    STEP_BY_NAME,
    Step,
    last_crate_step,
    target_name,
    task_name,
)
from wasmwheel.pipeline.uptodate import StepCurrent

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
    def load(cls, root: Path, env: dict[str, str] | None = None) -> Project:
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
            # From the repository root (pyproject.toml), "sqlite3" is wasmwheel.pipeline.doitdb.StepCommitDB:
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
        from wasmwheel.pipeline.report import write_report

        write_report(self, results, run)

    @property
    def toolchain(self) -> str:
        return self.settings.toolchain

    # -- what the step declarations (wasmwheel.pipeline.steps) ask of the collection -----------------
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
        plans: dict[str | None, tuple[Wiring, ...]] = {}  # per ABI: made once, not once per crate
        for abi, recipe in self.targets(step):
            key = abi.name if abi is not None else None
            plan = plans.get(key)
            if plan is None:
                plan = plans[key] = wiring(step, self, abi)
            yield step_task(step, self, abi, recipe, plan)
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
        per_crate_abi = []
        for step in PIPELINE:
            if not step.run:
                continue
            if step.scope == CRATE_ABI:
                per_crate_abi.append(step)
            else:
                names.update(
                    task_name(step.name, recipe and recipe.name, abi and abi.name) for abi, recipe in self.targets(step)
                )
        for recipe in self.recipes.recipes.values():  # each recipe's ABIs once, not once per step
            for abi_name in recipe.abis(self.abi_names, self.toolchain):
                abi = self.abis.get(abi_name)
                if abi is not None:
                    names.update(
                        f"{step.name}:{recipe.name}@{abi_name}"
                        for step in per_crate_abi
                        if step.when is None or step.when(self, abi, recipe)
                    )
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


# -- running a step -----------------------------------------------------------------------


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


class Wiring(NamedTuple):
    """One declared input of a step, as it is wired under this configuration."""

    param: str  # the parameter its facts are handed under
    step: str  # the step it reads
    scope: str  # that step's scope
    crates: Callable[..., list[str]] | None  # other crates' tasks (a recipe's [depends])
    first: bool  # also a task_dep


def wiring(step: Step, project: Project, abi: Abi | None) -> tuple[Wiring, ...]:
    """The inputs of ``step`` for ``abi``: those whose step runs under this configuration (emsdk's under
    WASMWHEEL_TOOLCHAIN=emsdk, binaryen's under lean). An input step's ``when`` is decided per ABI."""
    found = []
    for declared in step.inputs:
        upstream = STEP_BY_NAME[declared.step]
        if upstream.when is None or upstream.when(project, abi, None):
            found.append(Wiring(declared.param, upstream.name, upstream.scope, declared.crates, declared.first))
    return tuple(found)


def step_task(
    step: Step, project: Project, abi: Abi | None, recipe: Recipe | None, plan: tuple[Wiring, ...] | None = None
) -> dict:
    """The task of ``step`` for ``abi`` and/or ``recipe``, from its declaration. Its file_dep are its
    inputs' stamps (read and locked while it runs) and the files its ``file_deps`` name. ``plan``:
    wiring(step, project, abi), when the caller has it."""
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
    for param, upstream, scope, crates, first in wiring(step, project, abi) if plan is None else plan:
        if crates is not None:  # other crates' tasks of this ABI
            paths = tuple(layout.stamp_str(upstream, abi_name, c) for c in crates(project, recipe))
            inputs.append((param, upstream, paths))
            deps.extend(paths)
            continue
        if scope == ABI:
            path = layout.stamp_str(upstream, abi_name)
            if first:
                order.append(f"{upstream}:{abi_name}")  # task_name(upstream, abi=abi_name)
        else:
            path = layout.stamp_str(upstream, abi_name if scope == CRATE_ABI else None, crate)
            if first:
                order.append(task_name(upstream, crate, abi_name if scope == CRATE_ABI else None))
        inputs.append((param, upstream, path))
        deps.append(path)
    if step.file_deps is not None:
        deps.extend(str(p) for p in step.file_deps(project, abi, recipe))
    config = step.config(project, abi, recipe) if step.config is not None else None
    uptodate = (
        [step.current(project, abi, stamp), OutputsIntact(stamp)]
        if step.current is not None
        else [StepCurrent(config, stamp if step.outputs is not None else None)]
    )
    return {
        "basename": step.name,
        "name": target,
        "doc": doc,
        "actions": [
            (
                run_step,
                args,
                {
                    "config": config,
                    "deps": deps,
                    "inputs": tuple(inputs),
                    **({"recipes": project.recipes.recipes} if step.scope == ABI else {}),
                },
            )
        ],
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
    from wasmwheel.index.serve import serve

    serve(Path(root), host, port)


def serve_task(layout: Layout) -> dict:
    return {
        "basename": "serve",
        "doc": "Serve build/index with CORS headers (--port, --host); Ctrl-C stops",
        "actions": [(run_server, [str(layout.index_root)])],
        "params": [dict(p) for p in SERVE_TASK_PARAMS],
        "uptodate": [False],
        "verbosity": 2,
    }


def build_task(
    recipe: Recipe, all_abis: list[str], abi_errors: dict[str, ConfigError], toolchain: str = "lean"
) -> dict:
    abi_names = recipe.abis(all_abis, toolchain)
    deps = [
        task_name("abi", abi=a) if a in abi_errors else task_name(last_crate_step(), recipe.name, a) for a in abi_names
    ]
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
    message = (
        f"{crate} needs emsdk ({why}), and this run uses the lean toolchain: "
        f"build it with `WASMWHEEL_TOOLCHAIN=emsdk doit build:{crate}`"
    )
    if keep_going(sys.argv[1:]):
        sys.stderr.write(f"skip build:{crate}  ({message})\n")
        return True
    return TaskFailed(message)
