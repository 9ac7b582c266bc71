"""doit task dicts, built by plain functions (unit-testable without running doit).

Per ABI:  rust:<abi> -> std:<abi> (std for the target: built from rust-src, a sysroot archive or rustup's);
          binaryen:<abi> (lean toolchain: wasm-opt) or emsdk:<abi> (emsdk toolchain: emcc);
          pyodide:<abi> (the runtime for smoke tests); pin-sysroot:<abi>, pin-patches:<abi> (on demand).
Per crate: source:<crate>; per crate and ABI: compile:<crate>@<abi> ->
          retag:<crate>@<abi> -> audit:<crate>@<abi> -> smoke:<crate>@<abi> (Node);
          smoke-browser:<crate>@<abi> (headless Chromium, on demand).
Groups:   build:<crate> (everything a crate needs, for every ABI it enables);
          `doit build` builds the collection.

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
import json
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

from doit.exceptions import TaskFailed
from doit.tools import config_changed

# Modules the task dicts need on every doit start; the steps' own modules (toolchain, runtime,
# smoke, index, wheel, hints) are imported by the step functions when a step runs.
from . import audit, build, source
from .abi import Abi, abi_files, load_abi
from .errors import CommandFailed, ConfigError, WasmwheelError, plural
from .fsutil import (
    UPTODATE_SIGNATURE,
    OutputsIntact,
    clean_stale_temps,
    file_lock,
    file_snapshot,
    keep_if_same,
    read_stamp,
    sha256_file,
    stamp_inputs,
    write_stamp,
)
from .layout import Layout
from .progress import ProgressReporter
from .recipe import Recipe, RecipeSet, load_recipes, runtime_closure
from .runner import StepLog
from .settings import Settings
from .wheel import retag  # imported by audit anyway (and tests/killpoint.py patches it here)

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
        return type("WasmwheelReporter", (ProgressReporter,), {"project": self})

    # -- task generators (one per doit basename) -----------------------------------
    @property
    def toolchain(self) -> str:
        return self.settings.toolchain

    def emsdk_tasks(self) -> Iterator[dict]:
        yield group("emsdk", "Provision the Emscripten SDK of each ABI (exact version; WASMWHEEL_TOOLCHAIN=emsdk)")
        if self.toolchain == "emsdk":
            for abi in self.abis.values():
                yield emsdk_task(abi, self.layout)

    def binaryen_tasks(self) -> Iterator[dict]:
        yield group("binaryen", "Install each ABI's binaryen (wasm-opt) from npm (lean toolchain, the default)")
        if self.toolchain == "lean":
            for abi in self.abis.values():
                yield binaryen_task(abi, self.layout)

    def rust_tasks(self) -> Iterator[dict]:
        yield group("rust", "Provision the Rust toolchain of each ABI (exact version, with rust-src)")
        for abi in self.abis.values():
            yield rust_task(abi, self.layout)

    def std_tasks(self) -> Iterator[dict]:
        yield group("std", "Put std for wasm32-unknown-emscripten into each ABI's toolchain "
                           "(built once from rust-src, a pinned sysroot archive, or rustup's)")
        for abi in self.abis.values():
            yield std_task(abi, self.layout)

    def pin_sysroot_tasks(self) -> Iterator[dict]:
        yield group("pin-sysroot", "Download an ABI's sysroot and write its sha256 into the ABI file")
        for abi in self.abis.values():
            if abi.sysroot:
                yield pin_sysroot_task(abi, self.layout)

    def pin_patches_tasks(self) -> Iterator[dict]:
        yield group("pin-patches", "Download the Pyodide patches to Emscripten an ABI names and write their sha256 "
                                   "into the ABI file")
        for abi in self.abis.values():
            if abi.emsdk and abi.emsdk.patches:
                yield pin_patches_task(abi, self.layout)

    def runtime_tasks(self) -> Iterator[dict]:
        yield group("pyodide", "Install each ABI's Pyodide runtime from npm (exact version, committed lock)")
        for abi in self.abis.values():
            yield runtime_task(abi, self.layout)

    def abi_error_tasks(self) -> Iterator[dict]:
        yield group("abi", "Report ABI files that do not load")
        for name, error in self.abi_errors.items():
            yield error_task("abi", name, error)

    def source_tasks(self) -> Iterator[dict]:
        yield group("source", "Fetch each crate's source and apply its patches")
        listings = source.SourceListings(self.layout.source_listings)
        for recipe in self.recipes.recipes.values():
            yield source_task(recipe, self.layout, listings)
        listings.save()

    def crate_tasks(self, kind: str) -> Iterator[dict]:
        maker, doc = CRATE_STEPS[kind]
        yield group(kind, doc)
        recipes = self.recipes.recipes
        for recipe in recipes.values():
            extra: dict[str, Any] = {}
            if kind == "compile":
                extra["build_deps"] = list(recipe.depends.build)
            elif kind in ("smoke", "smoke-browser"):
                extra["test_deps"] = runtime_closure(recipe, recipes)
            for abi_name in recipe.abis(self.abi_names, self.toolchain):
                abi = self.abis.get(abi_name)
                if abi is not None:
                    yield maker(recipe, abi, self.layout, **extra)

    def index_tasks(self) -> Iterator[dict]:
        yield group("index", "Write each ABI's PEP 503/691 index and pyodide-lock.json from build/dist")
        for abi in self.abis.values():
            yield index_task(abi, self.layout, self.recipes.recipes)

    def serve_task(self) -> dict:
        return serve_task(self.layout)

    def task_names(self) -> set[str]:
        """Every task name the generators above yield (``build``, ``build:<crate>``, ...), without
        building a task: for the hint that names the closest ones to a misspelt name."""
        names = {*BASENAMES, *(f"abi:{name}" for name in self.abi_errors)}
        for abi in self.abis.values():
            names.update(f"{kind}:{abi.name}" for kind in (linking_step(self.toolchain), "rust", "std", "pyodide",
                                                          "index"))
            if abi.sysroot:
                names.add(f"pin-sysroot:{abi.name}")
        for recipe in self.recipes.recipes.values():
            names.update((f"source:{recipe.name}", f"build:{recipe.name}"))
            names.update(f"{kind}:{recipe.name}@{abi}" for abi in recipe.abis(self.abi_names, self.toolchain)
                         if abi in self.abis for kind in CRATE_STEPS)
        names.update(f"build:{stem}" for stem in self.recipes.errors)
        return names

    def build_tasks(self) -> Iterator[dict]:
        yield group("build", "Build and smoke-test every crate for every ABI it enables")
        for recipe in self.recipes.recipes.values():
            yield build_task(recipe, self.abi_names, self.abi_errors, self.toolchain)
        for stem, error in self.recipes.errors.items():
            yield error_task("build", stem, error)


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
BASENAMES = ("abi", "emsdk", "binaryen", "rust", "std", "pin-sysroot", "pyodide", "source", "compile", "retag",
             "audit", "smoke", "smoke-browser", "build", "index", "serve")


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


def run_step(step: str, stamp: str, log_path: str, title: str, *args: Any, config: Any = None,
             deps: tuple[str, ...] = (), reads: tuple[str, ...] = ()) -> bool | TaskFailed:
    """doit action wrapper: run ``STEPS[step]``, write its stamp, turn errors into one clear failure.

    Several doit processes may work on one tree (and on one cache): the step holds an exclusive
    lock on its stamp, and shared locks on the upstream stamps it ``reads``, so no two processes
    run one step at once and none replaces a step's input (a source tree, say) while it is used.
    A process that waited while another one ran this very step with the same inputs (``config``
    and the contents of ``deps``) takes its result instead of running it again.
    """
    stamp_path = Path(stamp)
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
                facts, outputs = STEPS[step](*args, log=log)
                write_stamp(stamp_path, [Path(p) for p in outputs], inputs=key, **facts)
                return True
            except WasmwheelError as exc:
                log.write(f"# FAILED: {exc}\n")
                return TaskFailed(failure_message(exc, log))
            except Exception:  # noqa: BLE001 - any bug fails this one step with its traceback in the log
                log.write(traceback.format_exc())
                return TaskFailed(f"internal error in {title} (a wasmwheel bug; traceback in {log.path})")


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


# -- step functions: (args..., log) -> (facts for the stamp, outputs to watch) -----------


def step_emsdk(abi: Abi, layout: Layout, log: StepLog):
    from . import toolchain

    facts = toolchain.provision_emsdk(abi, layout, log)
    emcc = facts.get("emcc") or str(Path(facts["emsdk"]) / "upstream" / "emscripten" / "emcc")
    return facts, [emcc]


def step_rust(abi: Abi, layout: Layout, log: StepLog):
    from . import toolchain

    facts = toolchain.provision_rust(abi, layout, log)
    return facts, [str(Path(facts["sysroot"]) / "bin" / "rustc")]


def step_std(abi: Abi, layout: Layout, log: StepLog):
    from . import std

    rust_facts = read_stamp(layout.stamp("rust", abi.name))
    facts = std.provide_std(abi, layout, rust_facts, log)
    return facts, [facts["marker"]]


def step_binaryen(abi: Abi, layout: Layout, log: StepLog):
    from . import toolchain

    facts = toolchain.provision_binaryen(abi, layout, log)
    return facts, [facts["wasm_opt"]]


def step_pin_sysroot(abi: Abi, layout: Layout, log: StepLog):
    from . import toolchain

    sha = toolchain.pin_sysroot(abi, layout, log)
    return {"sha256": sha}, []


def step_pin_patches(abi: Abi, layout: Layout, log: StepLog):
    from . import toolchain

    return {"sha256": toolchain.pin_patches(abi, layout, log)}, []


def step_runtime(abi: Abi, layout: Layout, log: StepLog):
    from . import runtime, runtime_exports

    facts = runtime.provision_runtime(abi, layout, log)
    # The runtime's exports file (committed; what the audit checks imports against) is an output:
    # deleting it reruns this step, which records it again.
    return facts, [str(Path(facts["runtime"]) / "package.json"),
                   str(layout.runtime_lock_dir(abi) / runtime_exports.FILENAME)]


def step_source(recipe: Recipe, layout: Layout, log: StepLog):
    facts = source.fetch_source(recipe, layout, log)
    crate_dir = Path(facts["crate_dir"])
    marker = next((crate_dir / f for f in ("pyproject.toml", "Cargo.toml") if (crate_dir / f).exists()))
    return facts, [str(marker)]


def _dep_wheels(names: list[str], abi: Abi, layout: Layout) -> list[Path]:
    return [Path(read_stamp(layout.stamp("retag", abi.name, name))["wheel"]) for name in names]


def step_compile(recipe: Recipe, abi: Abi, layout: Layout, build_deps: list[str], log: StepLog):
    src = read_stamp(layout.source_stamp(recipe.name))
    linking = read_stamp(layout.stamp(linking_step(layout.settings.toolchain), abi.name))
    rust = read_stamp(layout.stamp("rust", abi.name))
    facts = build.compile_wheel(recipe, abi, layout, Path(src["crate_dir"]), linking, rust, log,
                                build_wheels=_dep_wheels(build_deps, abi, layout))
    return facts, [facts["wheel"]]


def step_retag(recipe: Recipe, abi: Abi, layout: Layout, log: StepLog):
    built = Path(read_stamp(layout.stamp("compile", abi.name, recipe.name))["wheel"])
    stamp = layout.stamp("retag", abi.name, recipe.name)
    previous = None
    if stamp.exists():
        previous = read_stamp(stamp).get("wheel")
    clean_stale_temps(layout.dist_dir(abi.name), prefix=f".{recipe.wheel_name}-")  # of an interrupted retag
    wheel = retag(built, abi.platform_tag, layout.dist_dir(abi.name))
    if previous and Path(previous) != wheel:
        Path(previous).unlink(missing_ok=True)
    log.note(f"{built.name} -> {wheel.name}")
    return {"wheel": str(wheel), "sha256": sha256_file(wheel)}, [str(wheel)]


def step_audit(recipe: Recipe, abi: Abi, layout: Layout, log: StepLog):
    wheel = Path(read_stamp(layout.stamp("retag", abi.name, recipe.name))["wheel"])
    report = audit.audit_wheel(wheel, abi)
    for finding in report.findings:
        log.write(finding.line() + "\n")
    for finding in report.warnings:
        log.note(f"warning {finding.code}: {finding.member or wheel.name}: {finding.message}")
    for note in report.notes:
        log.note(note)
    if not report.ok:
        raise audit.AuditFailed(report)
    log.note(f"{wheel.name}: audit for ABI {abi.name} passed ({len(report.modules)} extension module(s), "
             f"{len(report.warnings)} warning(s))")
    return {"wheel": str(wheel), "sha256": sha256_file(wheel), "warnings": [f.code for f in report.warnings]}, []


def step_smoke(recipe: Recipe, abi: Abi, layout: Layout, test_deps: list[str], log: StepLog,
               environment: str = "node"):
    from . import smoke

    retagged = read_stamp(layout.stamp("retag", abi.name, recipe.name))
    wheel = Path(retagged["wheel"])
    runtime = Path(read_stamp(layout.stamp("pyodide", abi.name))["runtime"])
    marker = layout.tested_marker(abi.name, wheel.name)
    before = None
    if environment == "node":  # until this test passes, the wheel is not one the index may take
        before = file_snapshot(marker)
        marker.unlink(missing_ok=True)
    facts = smoke.smoke_wheel(recipe, abi, wheel, runtime, layout, log, environment=environment,
                              dependencies=_dep_wheels(test_deps, abi, layout))
    if environment != "node":
        return {"wheel": str(wheel), **facts}, []
    marker.parent.mkdir(parents=True, exist_ok=True)
    mark = json.dumps({"wheel": wheel.name, "sha256": retagged["sha256"], "crate": recipe.name,
                       "version": recipe.version}, sort_keys=True) + "\n"
    # The same wheel passed again (a changed test, say): the mark comes back exactly as it was, its
    # time included, so the index (which sees marks by their stat) does not rerun for nothing.
    keep_if_same(marker, mark.encode(), before)
    return {"wheel": str(wheel), **facts}, [str(marker)]


def step_smoke_browser(recipe: Recipe, abi: Abi, layout: Layout, test_deps: list[str], log: StepLog):
    return step_smoke(recipe, abi, layout, test_deps, log, environment="browser")


def step_index(abi: Abi, layout: Layout, recipes: dict[str, Recipe], log: StepLog):
    from . import index

    rt = read_stamp(layout.stamp("pyodide", abi.name))
    dist = layout.dist_dir(abi.name)
    digest = index.listing_digest(dist, _index_inputs(recipes, layout))
    facts = index.build_index(abi, dist, layout.index_dir(abi.name), Path(rt["runtime"]) / "pyodide-lock.json",
                              recipes, layout.settings.index_url)
    log.note(f"indexed {plural(len(facts['wheels']), 'wheel')} of ABI {abi.name} in {facts['index']}")
    for name, why in facts["left_out"].items():
        log.note(f"left out {name}: {why}", console=True)
    return {**facts, "digest": digest}, [str(layout.index_dir(abi.name) / "pyodide-lock.json")]


STEPS: dict[str, Callable[..., tuple[dict, list]]] = {
    "emsdk": step_emsdk,
    "binaryen": step_binaryen,
    "rust": step_rust,
    "std": step_std,
    "pin-sysroot": step_pin_sysroot,
    "pin-patches": step_pin_patches,
    "pyodide": step_runtime,
    "source": step_source,
    "compile": step_compile,
    "retag": step_retag,
    "audit": step_audit,
    "smoke": step_smoke,
    "index": step_index,
    "smoke-browser": step_smoke_browser,
}


# -- task dicts ----------------------------------------------------------------------------


class StepCurrent(config_changed):
    """doit ``uptodate`` item of a step: its config is unchanged and, for a step with outputs,
    the outputs recorded beside its stamp are intact (:class:`~wasmwheel.fsutil.OutputsIntact`).

    One item, not two: doit inspects the signature of every uptodate callable of every
    task on each run. The saved value is doit's own ``config_changed`` digest, so build
    states written before stay up to date.
    """

    def __init__(self, config: dict, stamp: Path | str | None = None):
        super().__init__(config)
        self.outputs = OutputsIntact(stamp) if stamp is not None else None

    # Steps of one ABI share their config dict (e.g. every audit of an ABI): its digest is
    # computed once per run. The memo keeps the dict alive, so its id() is never reused.
    _digests: ClassVar[dict[int, tuple[dict, str]]] = {}

    def _calc_digest(self) -> str:
        hit = self._digests.get(id(self.config))
        if hit is not None and hit[0] is self.config:
            return hit[1]
        digest = super()._calc_digest()
        self._digests[id(self.config)] = (self.config, digest)
        return digest

    __signature__ = UPTODATE_SIGNATURE

    def configure_task(self, task) -> None:
        super().configure_task(task)
        if self.outputs is not None:
            self.outputs.configure_task(task)

    _last: tuple[bool, bool] | None = None  # (settings unchanged, outputs intact) at the last check

    def __call__(self, task, values):
        same = super().__call__(task, values)
        intact = self.outputs is None or self.outputs(task, values)
        self._last = (same, intact)
        return same and intact

    def __repr__(self) -> str:  # shown by `doit info` for a stale step: say which half is stale
        settings = ", ".join(f"{k}={_brief(v)}" for k, v in self.config.items())
        if self._last is None:
            return f"StepCurrent({settings}; {self.outputs!r})"
        same, intact = self._last
        why = []
        if not same:
            why.append(f"its settings differ from its last successful run, or it has none ({settings})")
        if not intact:
            why.append(f"an output it recorded is gone or changed ({self.outputs!r})")
        return "StepCurrent: " + "; ".join(why)


def _brief(value: Any, width: int = 40) -> str:
    """A config value for one line: long strings cut, with their length."""
    if isinstance(value, str):
        return repr(value) if len(value) <= width else f"{value[:width]!r}... ({len(value)} chars)"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_brief(v, width)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_brief(v, width) for v in value) + "]"
    return repr(value)


def _step_task(basename: str, name: str, doc: str, stamp: str, log: str, args: tuple, config: dict,
               file_dep: list[str | Path] = (), task_dep: list[str] = (), inputs: list[str | Path] = (),
               outputs: bool = True) -> dict:
    """A step's task. ``inputs`` are the upstream stamps it reads (file_dep, and locked while it runs);
    ``file_dep`` are other files that shape it. ``outputs``: the step leaves files besides its stamp
    (audit and smoke only check)."""
    deps = [str(p) for p in [*inputs, *file_dep]]
    return {
        "basename": basename,
        "name": name,
        "doc": doc,
        "actions": [(run_step, [basename, str(stamp), str(log), f"{basename}:{name}", *args],
                     {"config": config, "deps": deps, "reads": deps[:len(inputs)]})],
        "file_dep": deps,
        "task_dep": list(task_dep),
        "targets": [str(stamp), f"{stamp}.outputs"],  # fsutil.outputs_path, without a Path per task
        "uptodate": [StepCurrent(config, stamp if outputs else None)],
        "clean": True,
    }


def emsdk_task(abi: Abi, layout: Layout) -> dict:
    patches = f" + Pyodide {abi.emsdk.pyodide_tag}'s {len(abi.emsdk.patches)} patches" \
        if abi.emsdk and abi.emsdk.patches else ""
    # The patch list (names and sha256) is part of the config: a changed pin reruns this step and its compiles.
    return _step_task(
        "emsdk", abi.name, f"Emscripten {abi.emscripten}{patches} for ABI {abi.name}",
        layout.stamp_str("emsdk", abi.name), layout.log_str("emsdk", abi.name), (abi, layout),
        {**abi.emsdk_config(), "mode": layout.settings.mode},
    )


def binaryen_task(abi: Abi, layout: Layout) -> dict:
    version = abi.lean.binaryen if abi.lean else None
    lock = layout.binaryen_lock_dir(version) / "package-lock.json" if version else None
    return _step_task(
        "binaryen", abi.name, f"binaryen {version} (npm: wasm-opt) for ABI {abi.name}'s lean toolchain",
        layout.stamp_str("binaryen", abi.name), layout.log_str("binaryen", abi.name), (abi, layout),
        {"binaryen": version},
        file_dep=[lock] if lock is not None and lock.exists() else [],
    )


def rust_task(abi: Abi, layout: Layout) -> dict:
    config = abi.toolchain_config()
    what = "rust-src" if "component" in config else config.get("target", "no extra component")
    return _step_task(
        "rust", abi.name, f"Rust {abi.rust_toolchain} + {what} for ABI {abi.name}",
        layout.stamp_str("rust", abi.name), layout.log_str("rust", abi.name), (abi, layout),
        {**config, "mode": layout.settings.mode, "home": str(layout.rust_dir(abi))},
    )


def std_task(abi: Abi, layout: Layout) -> dict:
    from .abi import STD_SOURCES
    from .std import STD_BUILD

    return _step_task(
        "std", abi.name, f"std for wasm32-unknown-emscripten on Rust {abi.rust_toolchain} (ABI {abi.name}): "
                         f"{STD_SOURCES[abi.std]}",
        layout.stamp_str("std", abi.name), layout.log_str("std", abi.name), (abi, layout),
        {**abi.std_config(), **({"build": STD_BUILD} if abi.std == "source" else {})},
        inputs=[layout.stamp_str("rust", abi.name)],
    )


def linking_step(toolchain: str) -> str:
    """The step that provides the linker of ``toolchain``: binaryen (lean) or emsdk."""
    return "emsdk" if toolchain == "emsdk" else "binaryen"


def pin_sysroot_task(abi: Abi, layout: Layout) -> dict:
    assert abi.sysroot
    return {
        "basename": "pin-sysroot",
        "name": abi.name,
        "doc": f"Download {abi.sysroot.filename} and write its sha256 into {abi.path.name}",
        "actions": [(run_step, ["pin-sysroot", layout.stamp_str("pin-sysroot", abi.name),
                                layout.log_str("pin-sysroot", abi.name), f"pin-sysroot:{abi.name}", abi, layout])],
        "verbosity": 2,
    }


def pin_patches_task(abi: Abi, layout: Layout) -> dict:
    assert abi.emsdk
    return {
        "basename": "pin-patches",
        "name": abi.name,
        "doc": f"Download Pyodide {abi.emsdk.pyodide_tag}'s {len(abi.emsdk.patches)} patches to Emscripten "
               f"{abi.emscripten} and write their sha256 into {abi.path.name}",
        "actions": [(run_step, ["pin-patches", layout.stamp_str("pin-patches", abi.name),
                                layout.log_str("pin-patches", abi.name), f"pin-patches:{abi.name}", abi, layout])],
        "verbosity": 2,
    }


def runtime_task(abi: Abi, layout: Layout) -> dict:
    lock = layout.runtime_lock_dir(abi) / "package-lock.json"
    return _step_task(
        "pyodide", abi.name, f"Pyodide {abi.pyodide_version} (npm) for smoke tests of ABI {abi.name}",
        layout.stamp_str("pyodide", abi.name), layout.log_str("pyodide", abi.name), (abi, layout),
        {"pyodide": abi.pyodide_version},
        file_dep=[lock] if lock.exists() else [],
    )


def source_task(recipe: Recipe, layout: Layout, listings: source.SourceListings | None = None) -> dict:
    deps = list(recipe.source.patches)
    if recipe.source.kind == "path":
        assert recipe.source.path
        deps += listings.files(recipe.source.path) if listings else list(source.local_file_names(recipe.source.path))
    root = layout.settings.root
    return _step_task(
        "source", recipe.name, f"Fetch {recipe.package_name} {recipe.version} ({recipe.source.kind} source)",
        layout.source_stamp_str(recipe.name), layout.log_str("source", None, recipe.name), (recipe, layout),
        recipe.source.config(root), file_dep=deps,
    )


@lru_cache(maxsize=1)
def _maturin_version() -> str:
    return build.maturin_version()


# One config dict per ABI, shared by its tasks (built once, not once per crate).
@lru_cache(maxsize=None)
def _compile_config(abi: Abi) -> dict:
    return abi.compile_config()


@lru_cache(maxsize=None)
def _audit_config(abi: Abi) -> dict:
    return audit.audit_config(abi)


@lru_cache(maxsize=None)
def _retag_config(abi: Abi) -> dict:
    return {"platform_tag": abi.platform_tag}


@lru_cache(maxsize=None)
def _toolchain_config(abi: Abi, toolchain: str) -> dict:
    return build.toolchain_config(abi, toolchain)


def compile_task(recipe: Recipe, abi: Abi, layout: Layout, build_deps: list[str] = ()) -> dict:
    linking = linking_step(layout.settings.toolchain)
    deps = [layout.source_stamp_str(recipe.name), layout.stamp_str(linking, abi.name),
            layout.stamp_str("rust", abi.name), layout.stamp_str("std", abi.name)]
    deps += [layout.stamp_str("retag", abi.name, name) for name in build_deps]
    # file_dep alone leaves the order to chance
    order = [f"{linking}:{abi.name}", f"rust:{abi.name}", f"std:{abi.name}"]
    return _step_task(
        "compile", f"{recipe.name}@{abi.name}", f"maturin build {recipe.name} for ABI {abi.name}",
        layout.stamp_str("compile", abi.name, recipe.name), layout.log_str("compile", abi.name, recipe.name),
        (recipe, abi, layout, list(build_deps)),
        {"abi": _compile_config(abi), "build": recipe.build.config(), "maturin": _maturin_version(),
         "toolchain": _toolchain_config(abi, layout.settings.toolchain)},
        inputs=deps, task_dep=order,
    )


def retag_task(recipe: Recipe, abi: Abi, layout: Layout) -> dict:
    return _step_task(
        "retag", f"{recipe.name}@{abi.name}", f"Retag {recipe.name}'s wheel to {abi.platform_tag}",
        layout.stamp_str("retag", abi.name, recipe.name), layout.log_str("retag", abi.name, recipe.name),
        (recipe, abi, layout), _retag_config(abi),
        inputs=[layout.stamp_str("compile", abi.name, recipe.name)],
    )


def audit_task(recipe: Recipe, abi: Abi, layout: Layout) -> dict:
    return _step_task(
        "audit", f"{recipe.name}@{abi.name}", f"Audit {recipe.name}'s wheel against ABI {abi.name}",
        layout.stamp_str("audit", abi.name, recipe.name), layout.log_str("audit", abi.name, recipe.name),
        (recipe, abi, layout), _audit_config(abi),
        inputs=[layout.stamp_str("retag", abi.name, recipe.name)], outputs=False,
    )


def smoke_task(recipe: Recipe, abi: Abi, layout: Layout, test_deps: list[str] = ()) -> dict:
    # The audit stamp holds the wheel's sha256: a new wheel reruns the smoke test, a broken one never reaches it.
    deps = [layout.stamp_str("retag", abi.name, name) for name in test_deps]
    return _step_task(
        "smoke", f"{recipe.name}@{abi.name}", f"Smoke-test {recipe.name} in Pyodide {abi.pyodide_version}",
        layout.stamp_str("smoke", abi.name, recipe.name), layout.log_str("smoke", abi.name, recipe.name),
        (recipe, abi, layout, list(test_deps)),
        # "marks": a pass writes dist/<abi>/tested/<wheel>.json, what the index takes (an output: deleted, it
        # reruns the test; the key reruns the tests of a build folder made before the marks existed).
        {"test": recipe.test.config("node", abi.name), "pyodide": abi.pyodide_version, "test_deps": list(test_deps),
         "marks": "tested"},
        inputs=[layout.stamp_str("audit", abi.name, recipe.name), layout.stamp_str("pyodide", abi.name), *deps],
    )


def smoke_browser_task(recipe: Recipe, abi: Abi, layout: Layout, test_deps: list[str] = ()) -> dict:
    deps = [layout.stamp_str("retag", abi.name, name) for name in test_deps]
    return _step_task(
        "smoke-browser", f"{recipe.name}@{abi.name}",
        f"Smoke-test {recipe.name} in Pyodide {abi.pyodide_version} in headless Chromium",
        layout.stamp_str("smoke-browser", abi.name, recipe.name), layout.log_str("smoke-browser", abi.name, recipe.name),
        (recipe, abi, layout, list(test_deps)),
        {"test": recipe.test.config("browser", abi.name), "pyodide": abi.pyodide_version, "test_deps": list(test_deps)},
        inputs=[layout.stamp_str("audit", abi.name, recipe.name), layout.stamp_str("pyodide", abi.name), *deps],
        outputs=False,
    )


CRATE_STEPS: dict[str, tuple[Callable[..., dict], str]] = {
    "compile": (compile_task, "maturin build of each crate for each ABI"),
    "retag": (retag_task, "Retag each built wheel to its ABI's platform tag"),
    "audit": (audit_task, "Audit each wheel for what its ABI's Pyodide would refuse"),
    "smoke": (smoke_task, "Smoke-test each wheel in its ABI's Pyodide under Node"),
    "smoke-browser": (smoke_browser_task, "Smoke-test each wheel in its ABI's Pyodide in headless Chromium "
                                          "(on demand; not part of build)"),
}


def _index_inputs(recipes: dict[str, Recipe], layout: Layout) -> dict[str, Any]:
    """What, besides the wheels, shapes an index: lock metadata from the recipes, the public URL."""
    return {"base_url": layout.settings.index_url,
            "recipes": {n: [list(r.import_names), list(r.depends.test), list(r.test.requirements)]
                        for n, r in sorted(recipes.items())}}


class IndexCurrent:
    """doit ``uptodate`` item: the index was made from the wheels now in build/dist/<abi>.

    Checked when the task is reached (after the builds of the same run), with stat calls only.
    """

    def __init__(self, stamp: Path, dist_dir: Path, inputs: dict[str, Any]):
        self.stamp, self.dist_dir, self.inputs = str(stamp), str(dist_dir), inputs

    def __call__(self, task=None, values=None) -> bool:
        from . import index

        try:
            recorded = read_stamp(Path(self.stamp)).get("digest")
        except (OSError, ValueError):
            return False
        return recorded == index.listing_digest(Path(self.dist_dir), self.inputs)

    def __repr__(self) -> str:
        return f"IndexCurrent({self.dist_dir})"


def index_task(abi: Abi, layout: Layout, recipes: dict[str, Recipe]) -> dict:
    stamp = layout.stamp_str("index", abi.name)
    task = _step_task(
        "index", abi.name, f"Index of build/dist/{abi.name} (PEP 503/691) and its pyodide-lock.json",
        stamp, layout.log_str("index", abi.name), (abi, layout, recipes), {},
        inputs=[layout.stamp_str("pyodide", abi.name)],
    )
    task["uptodate"] = [IndexCurrent(stamp, layout.dist_dir(abi.name), _index_inputs(recipes, layout)),
                        OutputsIntact(stamp)]
    return task


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
        "actions": [(run_server, [str(layout.build / "index")])],
        "params": [dict(p) for p in SERVE_TASK_PARAMS],
        "uptodate": [False],
        "verbosity": 2,
    }


def build_task(recipe: Recipe, all_abis: list[str], abi_errors: dict[str, ConfigError], toolchain: str = "lean") -> dict:
    abi_names = recipe.abis(all_abis, toolchain)
    deps = [f"abi:{a}" if a in abi_errors else f"smoke:{recipe.name}@{a}" for a in abi_names]
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
