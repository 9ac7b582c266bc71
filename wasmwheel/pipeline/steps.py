"""The pipeline: every step, declared once, in order.

Per ABI:   rust -> std (std for the target); binaryen (lean) or emsdk (emsdk): the linker;
           pyodide (the runtime for smoke tests); pin-sysroot, pin-patches (on demand).
Per crate: source; per crate x ABI: compile -> retag -> audit -> smoke (Node);
           smoke-browser (headless Chromium, on demand).
Groups:    build:<crate> (everything a crate needs, for every ABI it enables), build (the collection);
           index:<abi> (of the wheels that passed), serve.

A :class:`Step` says what the task graph (wasmwheel.pipeline.graph), ``dodo.py``, the report, the progress
lines, the shards and the tests need to know about a step: its doit basename (the ``step`` of its
task names, stamps and logs), its scope, the steps whose facts it reads, how its configuration is
made, what it leaves besides its stamp, and the domain function that does it. The step runner
(wasmwheel.pipeline.run.run_step) reads the declared inputs' stamps and hands their typed facts
(wasmwheel.model.facts) to that function by parameter name, with ``abi``, ``recipe``, ``layout``,
``recipes``, ``previous`` (this step's own last facts) and ``log``; the function returns the facts
for its stamp. Adding a step is one declaration here and one domain function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # pragma: no cover - annotations only (the project is built from these declarations)
    from wasmwheel.model.abi import Abi
    from wasmwheel.model.recipe import Recipe

# A step's scope: what one of its tasks is for.
ABI = "abi"  # one task per ABI:             std:2026_0
CRATE = "crate"  # one per crate:                source:jiter
CRATE_ABI = "crate x abi"  # one per crate and ABI:  compile:jiter@2026_0
COLLECTION = "collection"  # one for the collection:  serve


class TaskId(NamedTuple):
    """A task's name, parsed: ``compile:jiter@2026_0`` is ``TaskId("compile", "jiter", "2026_0")``,
    ``std:2026_0`` is ``TaskId("std", abi="2026_0")``, ``source:jiter`` ``TaskId("source", "jiter")``,
    ``build`` ``TaskId("build")``. (A tuple: the graph makes thousands of names on every doit start.)"""

    step: str
    crate: str | None = None
    abi: str | None = None

    def __str__(self) -> str:
        return task_name(self.step, self.crate, self.abi)

    @property
    def target(self) -> str | None:
        """The part after ``<step>:`` (doit's subtask name), None for a group or a whole-collection task."""
        return target_name(self.crate, self.abi)

    @classmethod
    def parse(cls, name: str) -> TaskId:
        """The inverse of ``str()``. A name without ``@`` names a crate or an ABI by its step's scope."""
        step, _, rest = name.partition(":")
        if not rest:
            return cls(step)
        crate, at, abi = rest.rpartition("@")
        if at:
            return cls(step, crate, abi)
        return cls(step, rest) if STEP_SCOPES.get(step) == CRATE else cls(step, None, rest)


def target_name(crate: str | None, abi: str | None) -> str | None:
    if crate and abi:
        return f"{crate}@{abi}"
    return crate or abi or None


def task_name(step: str, crate: str | None = None, abi: str | None = None) -> str:
    """The one formatter of task names (TaskId's ``str``, without making a TaskId)."""
    target = target_name(crate, abi)
    return f"{step}:{target}" if target else step


@dataclass(frozen=True)
class Input:
    """A step whose facts another step reads (its stamp: a file_dep, locked while the step runs).

    ``step``'s task of the same ABI and/or crate, by that step's scope. ``crates``: instead, that
    step's tasks of other crates of the same ABI (a recipe's ``[depends]``), handed on as a list.
    ``name``: the parameter the facts are handed under (default: the step's ``code_name``). An input
    whose step does not run under this configuration (emsdk under the lean toolchain) is left out.
    ``first``: also a task_dep, so that doit runs it before the inputs it finds by file_dep (which it
    appends after the task_dep): a compile's toolchains before its crate's source."""

    step: str
    name: str = ""
    crates: Callable[[Any, Recipe], list[str]] | None = None
    first: bool = False

    @property
    def param(self) -> str:
        return self.name or STEP_BY_NAME[self.step].code_name


@dataclass(frozen=True)
class Step:
    """One step of the pipeline. ``name`` is its doit basename: the ``<step>`` of ``<step>:<target>``,
    of its stamp (``stamps/<abi>/[<crate>.]<step>.json``) and of its log (``logs/.../<step>.log``)."""

    name: str
    doc: str  # the group's line in `doit list`
    scope: str  # ABI, CRATE, CRATE_ABI or COLLECTION
    run: str = ""  # "module:function" (under wasmwheel: "toolchain.std:provide_std"), imported when it runs
    inputs: tuple[Input, ...] = ()
    # (project, abi, recipe) -> the task's config: exactly what shapes its output (doit config_changed)
    config: Callable[..., dict] | None = None
    describe: Callable[..., str] | None = None  # (project, abi, recipe) -> the task's line in `doit list`
    file_deps: Callable[..., list] | None = None  # (project, abi, recipe) -> files besides input stamps
    # (facts, call) -> the files the step leaves besides its stamp, watched: deleted or changed, the step
    # reruns. None: the step only checks (audit).
    outputs: Callable[[dict, Any], list] | None = None
    in_build: bool = True  # part of `doit build` (else on demand)
    tracked: bool = True  # False: no stamp target, runs whenever asked (the pin steps write the ABI file)
    when: Callable[..., bool] | None = None  # (project, abi, recipe) -> whether the task exists
    code_name: str = ""  # its name in the code and as an input parameter, when not ``name``
    # The class in wasmwheel.model.facts of its stamp's facts, handed to the steps that read them (by
    # name: a doit start does not import them); "" for a plain dict.
    facts: str = ""
    options: Mapping[str, Any] | None = None  # fixed keyword arguments of ``run``
    tasks: str = ""  # a Project method making this group's tasks itself (groups: build, abi, serve)
    current: Callable[..., Any] | None = None  # (project, abi, stamp) -> its uptodate item, when not config

    def __post_init__(self) -> None:
        if not self.code_name:
            object.__setattr__(self, "code_name", self.name.replace("-", "_"))


# -- how each step's configuration is made ----------------------------------------------------------
# One config dict per ABI, shared by its tasks (built once, not once per crate): doit digests each once.


@lru_cache(maxsize=1)
def _maturin_version() -> str:
    from wasmwheel.build import maturin_version

    return maturin_version()


@cache
def _compile_abi_config(abi: Abi) -> dict:
    return abi.compile_config()


@cache
def _toolchain_config(abi: Abi, toolchain: str) -> dict:
    from wasmwheel.build import toolchain_config

    return toolchain_config(abi, toolchain)


@cache
def _audit_config(abi: Abi) -> dict:
    from wasmwheel.audit.check import audit_config

    return audit_config(abi)


@cache
def _retag_config(abi: Abi) -> dict:
    return {"platform_tag": abi.platform_tag}


def _std_config(project, abi, recipe) -> dict:
    from wasmwheel.toolchain.std import STD_BUILD

    return {**abi.std_config(), **({"build": STD_BUILD} if abi.std == "source" else {})}


def _std_doc(project, abi, recipe) -> str:
    from wasmwheel.model.abi import STD_SOURCES

    return f"std for wasm32-unknown-emscripten on Rust {abi.rust_toolchain} (ABI {abi.name}): {STD_SOURCES[abi.std]}"


def _rust_config(project, abi, recipe) -> dict:
    return {**abi.toolchain_config(), "mode": project.settings.mode, "home": str(project.layout.rust_dir(abi))}


def _rust_doc(project, abi, recipe) -> str:
    config = abi.toolchain_config()
    what = "rust-src" if "component" in config else config.get("target", "no extra component")
    return f"Rust {abi.rust_toolchain} + {what} for ABI {abi.name}"


def _emsdk_doc(project, abi, recipe) -> str:
    patches = (
        f" + Pyodide {abi.emsdk.pyodide_tag}'s {len(abi.emsdk.patches)} patches"
        if abi.emsdk and abi.emsdk.patches
        else ""
    )
    return f"Emscripten {abi.emscripten}{patches} for ABI {abi.name}"


def _existing(path: Path) -> list[Path]:
    return [path] if path.exists() else []


def _binaryen_lock(project, abi, recipe) -> list[Path]:
    version = abi.lean.binaryen if abi.lean else None
    return _existing(project.layout.binaryen_lock_dir(version) / "package-lock.json") if version else []


def _source_files(project, abi, recipe) -> list:
    """The recipe's patches and, for a local source, its files (listed once per doit start)."""
    deps = list(recipe.source.patches)
    if recipe.source.kind == "path":
        assert recipe.source.path
        deps += project.source_listings.files(recipe.source.path)
    return deps


def _crate_marker(facts) -> Path:
    """What a source tree is watched by: the crate's pyproject.toml, else its Cargo.toml."""
    crate_dir = Path(facts["crate_dir"])
    return next(crate_dir / name for name in ("pyproject.toml", "Cargo.toml") if (crate_dir / name).exists())


def _compile_config(project, abi, recipe) -> dict:
    return {
        "abi": _compile_abi_config(abi),
        "build": recipe.build.config(),
        "maturin": _maturin_version(),
        "toolchain": _toolchain_config(abi, project.toolchain),
    }


def _smoke_config(environment: str) -> Callable[..., dict]:
    def config(project, abi, recipe) -> dict:
        test_deps = project.test_deps(recipe.name)
        cfg = {
            "test": recipe.test.config(environment, abi.name),
            "pyodide": abi.pyodide_version,
            "test_deps": list(test_deps),
        }
        if environment == "node":
            # "marks": a pass writes dist/<abi>/tested/<wheel>.json, what the index takes (an output: deleted, it
            # reruns the test; the key reruns the tests of a build folder made before the marks existed).
            cfg["marks"] = "tested"
        return cfg

    return config


def _index_current(project, abi, stamp: str):
    from wasmwheel.pipeline.uptodate import IndexCurrent

    return IndexCurrent(stamp, project.layout.dist_dir(abi.name), project.index_inputs)


def _build_deps(project, recipe) -> list[str]:
    return list(recipe.depends.build)


def _test_deps(project, recipe) -> list[str]:
    return project.test_deps(recipe.name)


def _lean(project, abi, recipe) -> bool:
    return project.toolchain == "lean"


def _emsdk(project, abi, recipe) -> bool:
    return project.toolchain == "emsdk"


# -- the pipeline ---------------------------------------------------------------------------------

PIPELINE: tuple[Step, ...] = (
    Step("abi", "Report ABI files that do not load", ABI, tasks="abi_error_tasks"),
    Step(
        "emsdk",
        "Provision the Emscripten SDK of each ABI (exact version; WASMWHEEL_TOOLCHAIN=emsdk)",
        ABI,
        run="toolchain.provision:provision_emsdk",
        when=_emsdk,
        describe=_emsdk_doc,
        # The patch list (names and sha256) is part of the config: a changed pin reruns this step and its compiles.
        config=lambda project, abi, recipe: {**abi.emsdk_config(), "mode": project.settings.mode},
        outputs=lambda facts, call: [
            facts.get("emcc") or str(Path(facts["emsdk"]) / "upstream" / "emscripten" / "emcc")
        ],
        facts="EmsdkFacts",
    ),
    Step(
        "binaryen",
        "Install each ABI's binaryen (wasm-opt) from npm (lean toolchain, the default)",
        ABI,
        run="toolchain.provision:provision_binaryen",
        when=_lean,
        describe=lambda project, abi, recipe: (
            f"binaryen {abi.lean.binaryen if abi.lean else None} (npm: wasm-opt) for ABI {abi.name}'s lean toolchain"
        ),
        config=lambda project, abi, recipe: {"binaryen": abi.lean.binaryen if abi.lean else None},
        file_deps=_binaryen_lock,
        outputs=lambda facts, call: [facts["wasm_opt"]],
        facts="BinaryenFacts",
    ),
    Step(
        "rust",
        "Provision the Rust toolchain of each ABI (exact version, with rust-src)",
        ABI,
        run="toolchain.provision:provision_rust",
        describe=_rust_doc,
        config=_rust_config,
        outputs=lambda facts, call: [str(Path(facts["sysroot"]) / "bin" / "rustc")],
        facts="RustFacts",
    ),
    Step(
        "std",
        "Put std for wasm32-unknown-emscripten into each ABI's toolchain "
        "(built once from rust-src, a pinned sysroot archive, or rustup's)",
        ABI,
        run="toolchain.std:provide_std",
        inputs=(Input("rust"),),
        describe=_std_doc,
        config=_std_config,
        outputs=lambda facts, call: [facts["marker"]],
        facts="StdFacts",
    ),
    Step(
        "pin-sysroot",
        "Download an ABI's sysroot and write its sha256 into the ABI file",
        ABI,
        run="toolchain.provision:pin_sysroot_step",
        in_build=False,
        tracked=False,
        when=lambda project, abi, recipe: bool(abi.sysroot),
        describe=lambda project, abi, recipe: (
            f"Download {abi.sysroot.filename} and write its sha256 into {abi.path.name}"
        ),
    ),
    Step(
        "pin-patches",
        "Download the Pyodide patches to Emscripten an ABI names and write their sha256 into the ABI file",
        ABI,
        run="toolchain.provision:pin_patches_step",
        in_build=False,
        tracked=False,
        when=lambda project, abi, recipe: bool(abi.emsdk and abi.emsdk.patches),
        describe=lambda project, abi, recipe: (
            f"Download Pyodide {abi.emsdk.pyodide_tag}'s {len(abi.emsdk.patches)} "
            f"patches to Emscripten {abi.emscripten} and write their sha256 into "
            f"{abi.path.name}"
        ),
    ),
    # The task is named after what it installs (`doit pyodide:2026_0`); the code calls it the runtime.
    Step(
        "pyodide",
        "Install each ABI's Pyodide runtime from npm (exact version, committed lock)",
        ABI,
        run="runtime:provision_runtime",
        code_name="runtime",
        describe=lambda project, abi, recipe: f"Pyodide {abi.pyodide_version} (npm) for smoke tests of ABI {abi.name}",
        config=lambda project, abi, recipe: {"pyodide": abi.pyodide_version},
        file_deps=lambda project, abi, recipe: _existing(project.layout.runtime_lock_dir(abi) / "package-lock.json"),
        # The runtime's exports file (committed; what the audit checks imports against) is an output:
        # deleting it reruns this step, which records it again.
        outputs=lambda facts, call: [
            str(Path(facts["runtime"]) / "package.json"),
            str(call.layout.runtime_exports(call.abi)),
        ],
        facts="RuntimeFacts",
    ),
    Step(
        "source",
        "Fetch each crate's source and apply its patches",
        CRATE,
        run="source:fetch_source",
        describe=lambda project, abi, recipe: (
            f"Fetch {recipe.package_name} {recipe.version} ({recipe.source.kind} source)"
        ),
        config=lambda project, abi, recipe: recipe.source.config(project.settings.root),
        file_deps=_source_files,
        outputs=lambda facts, call: [str(_crate_marker(facts))],
        facts="SourceFacts",
    ),
    Step(
        "compile",
        "maturin build of each crate for each ABI",
        CRATE_ABI,
        run="build:compile_wheel",
        inputs=(
            Input("source"),
            Input("emsdk", "linker", first=True),
            Input("binaryen", "linker", first=True),
            Input("rust", first=True),
            Input("std", first=True),
            Input("retag", "build_wheels", crates=_build_deps),
        ),
        describe=lambda project, abi, recipe: f"maturin build {recipe.name} for ABI {abi.name}",
        config=_compile_config,
        outputs=lambda facts, call: [facts["wheel"]],
        facts="WheelFacts",
    ),
    Step(
        "retag",
        "Retag each built wheel to its ABI's platform tag",
        CRATE_ABI,
        run="wheel:retag_step",
        inputs=(Input("compile", "built"),),
        describe=lambda project, abi, recipe: f"Retag {recipe.name}'s wheel to {abi.platform_tag}",
        config=lambda project, abi, recipe: _retag_config(abi),
        outputs=lambda facts, call: [facts["wheel"]],
        facts="WheelFacts",
    ),
    Step(
        "audit",
        "Audit each wheel for what its ABI's Pyodide would refuse",
        CRATE_ABI,
        run="audit.check:audit_step",
        inputs=(Input("retag", "wheel"),),
        describe=lambda project, abi, recipe: f"Audit {recipe.name}'s wheel against ABI {abi.name}",
        config=lambda project, abi, recipe: _audit_config(abi),
        facts="WheelFacts",
    ),
    # The audit's facts hold the wheel's sha256: a new wheel reruns the smoke test, a broken one never reaches it.
    Step(
        "smoke",
        "Smoke-test each wheel in its ABI's Pyodide under Node",
        CRATE_ABI,
        run="smoke.smoke:smoke_step",
        inputs=(Input("audit", "wheel"), Input("pyodide"), Input("retag", "test_wheels", crates=_test_deps)),
        describe=lambda project, abi, recipe: f"Smoke-test {recipe.name} in Pyodide {abi.pyodide_version}",
        config=_smoke_config("node"),
        options={"environment": "node"},
        outputs=lambda facts, call: [str(call.layout.tested_marker(call.abi.name, Path(facts["wheel"]).name))],
        facts="SmokeFacts",
    ),
    Step(
        "smoke-browser",
        "Smoke-test each wheel in its ABI's Pyodide in headless Chromium (on demand; not part of build)",
        CRATE_ABI,
        run="smoke.smoke:smoke_step",
        in_build=False,
        inputs=(Input("audit", "wheel"), Input("pyodide"), Input("retag", "test_wheels", crates=_test_deps)),
        describe=lambda project, abi, recipe: (
            f"Smoke-test {recipe.name} in Pyodide {abi.pyodide_version} in headless Chromium"
        ),
        config=_smoke_config("browser"),
        options={"environment": "browser"},
        facts="SmokeFacts",
    ),
    Step("build", "Build and smoke-test every crate for every ABI it enables", CRATE, tasks="build_tasks"),
    Step(
        "index",
        "Write each ABI's PEP 503/691 index and pyodide-lock.json from build/dist",
        ABI,
        run="index.index:index_step",
        in_build=False,
        inputs=(Input("pyodide"),),
        describe=lambda project, abi, recipe: f"Index of build/dist/{abi.name} (PEP 503/691) and its pyodide-lock.json",
        config=lambda project, abi, recipe: {},
        current=_index_current,
        outputs=lambda facts, call: [str(call.layout.index_dir(call.abi.name) / "pyodide-lock.json")],
    ),
    Step(
        "serve",
        "Serve build/index with CORS headers (--port, --host); Ctrl-C stops",
        COLLECTION,
        in_build=False,
        tasks="serve_task",
    ),
)

STEP_BY_NAME: dict[str, Step] = {s.name: s for s in PIPELINE}
STEP_SCOPES: dict[str, str] = {s.name: s.scope for s in PIPELINE}
# The steps with a stamp of their own, in pipeline order.
STAMPED: tuple[Step, ...] = tuple(s for s in PIPELINE if s.run and s.tracked)
# The steps of one crate for one ABI that a build runs, in order (compile, retag, audit, smoke).
CRATE_ABI_STEPS: tuple[str, ...] = tuple(s.name for s in PIPELINE if s.scope == CRATE_ABI and s.in_build)
# The steps of one ABI with a stamp (its toolchains, its runtime, its index).
ABI_STEPS: tuple[str, ...] = tuple(s.name for s in STAMPED if s.scope == ABI)


def needed_by(step: str) -> str | None:
    """The first step of a crate x ABI that reads the ABI step ``step`` (compile reads std, smoke pyodide)."""
    return next(
        (s.name for s in PIPELINE if s.scope == CRATE_ABI and s.in_build and any(i.step == step for i in s.inputs)),
        None,
    )


def last_crate_step() -> str:
    """What build:<crate> waits for, per ABI: the last crate x ABI step of a build (smoke)."""
    return CRATE_ABI_STEPS[-1]
