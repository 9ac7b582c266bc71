"""The compile step: ``maturin build`` for one crate and one ABI.

The command and its environment are built by pure functions
(:func:`compile_argv`, :func:`compile_env`) so tests can compare them with the
ABI file without running anything. The cargo target folder is kept per crate and
ABI between runs, so a rebuild after a small change is warm.

Two toolchains link the module (``WASMWHEEL_TOOLCHAIN``): ``emsdk`` puts the ABI's emcc on
PATH, which rustc calls as its linker; ``lean`` points rustc's linker at wasmwheel's own
(:mod:`wasmwheel.toolchain.linker`: the toolchain's rust-lld, then binaryen's wasm-opt) and refuses C
compiles for the target with a message naming the crate (a C compiler for Emscripten comes
only with emsdk). Either way std comes from the std step and the wheel's ``WHEEL`` file names
the toolchain in its ``Generator`` line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmwheel.fsutil import atomic_write_text, clean_stale_temps, sha256_file, staged_dir
from wasmwheel.model.abi import RUST_TARGET, Abi
from wasmwheel.model.errors import WasmwheelError
from wasmwheel.model.layout import Layout
from wasmwheel.model.recipe import Recipe
from wasmwheel.runner import StepLog, inherited_env, run
from wasmwheel.toolchain.launcher import ensure_launcher
from wasmwheel.toolchain.linker import LINK_ENV
from wasmwheel.wheel import set_generator

if TYPE_CHECKING:  # annotations only: a doit start does not import the facts' classes
    from wasmwheel.model.facts import BinaryenFacts, RustFacts, SourceFacts, ToolFacts, WheelFacts

RUSTFLAGS_VAR = "CARGO_TARGET_WASM32_UNKNOWN_EMSCRIPTEN_RUSTFLAGS"
LINKER_VAR = "CARGO_TARGET_WASM32_UNKNOWN_EMSCRIPTEN_LINKER"
# Inherited variables that would silently change or override the build.
SCRUBBED_ENV = (
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    RUSTFLAGS_VAR,
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTUP_TOOLCHAIN",
    "RUSTUP_HOME",
    "CARGO_HOME",
    "PYO3_CONFIG_FILE",
    "PYO3_CROSS_LIB_DIR",
    "PYO3_CROSS_PYTHON_VERSION",
    "_PYTHON_HOST_PLATFORM",
    "MATURIN_PYEMSCRIPTEN_PLATFORM_VERSION",
    "MATURIN_PYODIDE_ABI_VERSION",
    "PYEMSCRIPTEN_PLATFORM_VERSION",
    "PYODIDE_ABI_VERSION",
    "MATURIN_EMSCRIPTEN_VERSION",
    "WASMWHEEL_BUILD_WHEELS",
    LINKER_VAR,
    "CARGO_BUILD_LINKER",
    "TARGET_CC",
    "TARGET_CXX",
    "CC_wasm32_unknown_emscripten",
    "CC_wasm32-unknown-emscripten",
    "CXX_wasm32_unknown_emscripten",
    "CXX_wasm32-unknown-emscripten",
    "PYO3_CROSS",
    *LINK_ENV,
)
# Wheels built from the same inputs get the same bytes (zip timestamps).
SOURCE_DATE_EPOCH = "315532800"


class CompileError(WasmwheelError):
    pass


def rustflags(abi: Abi, recipe: Recipe) -> list[str]:
    """Target-only rustflags: the ABI's, then the recipe's."""
    return [*abi.rustflags, *recipe.build.rustflags]


def compile_argv(maturin: str, abi: Abi, recipe: Recipe, out_dir: Path) -> list[str]:
    argv = [
        maturin,
        "build",
        "--release",
        "--target",
        RUST_TARGET,
        "-i",
        abi.interpreter,
        "--out",
        str(out_dir),
    ]
    if recipe.build.features:
        argv += ["--features", ",".join(recipe.build.features)]
    argv += list(recipe.build.maturin_args)
    return argv


def linker_digest() -> str:
    """The lean linker's own code: a change to it reruns the compiles it links."""
    from wasmwheel.toolchain import linker

    return hashlib.sha256(Path(linker.__file__).read_bytes()).hexdigest()


def toolchain_config(abi: Abi, toolchain: str) -> dict[str, Any]:
    """What of the linking toolchain shapes a compiled wheel (part of the compile step's config:
    switching WASMWHEEL_TOOLCHAIN reruns the compiles and nothing before them)."""
    if toolchain == "emsdk":
        return {"kind": "emsdk", **abi.emsdk_config()}  # the version and Pyodide's patches applied to it
    return {
        "kind": "lean",
        "binaryen": abi.lean.binaryen if abi.lean else None,
        "wasm_opt_flags": list(abi.lean.wasm_opt_flags) if abi.lean else None,
        "linker": linker_digest(),
    }


LINK_KEY_FILE = "wasmwheel-link.json"
# What a cdylib's link writes for wasm32-unknown-emscripten, where cargo keeps it (the crate's own
# outputs; the dependencies are rlibs, untouched by a link).
LINKED = ("*.so", "*.wasm", "*.js")


def force_relink(target_dir: Path, link_config: Mapping[str, Any], log: StepLog) -> None:
    """Make cargo link again when how wasmwheel links changed (the linker's code, the toolchain,
    wasm-opt's version or flags). cargo cannot see those (they are not rustflags), so in a warm
    target folder it would call the crate fresh and maturin would package the old module. A linked
    output that is missing makes cargo rebuild the crate's own unit (its dependencies stay built)."""
    key = hashlib.sha256(json.dumps(link_config, sort_keys=True).encode()).hexdigest()
    marker = target_dir / LINK_KEY_FILE
    try:
        old = json.loads(marker.read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):
        old = None
    if old != key:
        release = target_dir / RUST_TARGET / "release"
        gone = [p for folder in (release, release / "deps") for pattern in LINKED for p in folder.glob(pattern)]
        for path in gone:
            path.unlink(missing_ok=True)
        if gone:
            log.note(
                f"how the crate is linked changed since the last build: removed {len(gone)} linked "
                "output(s) so that cargo links again"
            )
    atomic_write_text(marker, json.dumps({"key": key, "config": link_config}, sort_keys=True, indent=1))


def generator(abi: Abi, toolchain: str, linker: ToolFacts) -> str:
    """The wheel's ``Generator`` line: maturin, and how wasmwheel linked it."""
    if toolchain == "emsdk":  # linker: model.facts.EmsdkFacts
        how = f"emsdk {abi.emscripten}"
        if linker.patches:  # a managed emsdk, patched as the ABI's Pyodide patches it
            how += f" + Pyodide {linker.pyodide_tag}'s {len(linker.patches)} patches"
    else:
        how = f"lean: rust-lld, binaryen {getattr(linker, 'binaryen', '') or '?'}"
    return f"maturin ({maturin_version()}) + wasmwheel ({_own_version()}; Rust {abi.rust_toolchain}, {how})"


def _own_version() -> str:
    try:
        from importlib.metadata import version

        return version("wasmwheel")
    except Exception:  # noqa: BLE001 - a version label for the config; any failure to read it means "unknown"
        return "unknown"


def ensure_launchers(layout: Layout) -> None:
    """The lean toolchain's two executables in build/bin: the linker rustc calls, and the C compiler
    that refuses (build scripts that compile C for the target need emcc)."""
    ensure_launcher(layout.link_launcher, "toolchain.linker", "main")
    ensure_launcher(layout.no_cc_launcher, "toolchain.linker", "no_c_compiler")


def lean_env(abi: Abi, layout: Layout, rust: RustFacts, lean: BinaryenFacts, link_log: Path | None) -> dict[str, str]:
    """What makes rustc link with wasmwheel's linker (and refuse C for the target)."""
    return {
        LINKER_VAR: str(layout.link_launcher),
        "TARGET_CC": str(layout.no_cc_launcher),
        "TARGET_CXX": str(layout.no_cc_launcher),
        "WASMWHEEL_LINK_LLD": str(rust.lld),
        "WASMWHEEL_LINK_EH": abi.exception_handling,
        "WASMWHEEL_WASM_OPT": str(lean.wasm_opt),
        "WASMWHEEL_WASM_OPT_FLAGS": json.dumps(list(abi.lean.wasm_opt_flags) if abi.lean else []),
        **({"WASMWHEEL_LINK_LOG": str(link_log)} if link_log else {}),
    }


def compile_env(
    abi: Abi,
    recipe: Recipe,
    layout: Layout,
    linker: ToolFacts,
    rust: RustFacts,
    base: Mapping[str, str] | None = None,
    build_wheels: Sequence[Path] = (),
    link_log: Path | None = None,
) -> dict[str, str]:
    """The complete environment of the maturin process. ``linker``: the facts of the step that provides the
    linker of ``layout.settings.toolchain`` (emsdk, or binaryen for lean)."""
    env = inherited_env(SCRUBBED_ENV) if base is None else {k: v for k, v in base.items() if k not in SCRUBBED_ENV}
    lean = layout.settings.toolchain == "lean"
    prepend = [*linker.path, *rust.path]
    if prepend:
        env["PATH"] = os.pathsep.join([*prepend, env.get("PATH", "")])
    env.update(linker.env)
    env.update(rust.env)
    env.update(
        {
            # One registry for every ABI and toolchain (cargo locks it itself); rustup's own CARGO_HOME stays
            # the toolchain's, but compiles call the toolchain's cargo and rustc directly (PATH).
            "CARGO_HOME": str(layout.cargo_home),
            "CARGO_BUILD_TARGET": RUST_TARGET,
            RUSTFLAGS_VAR: " ".join(rustflags(abi, recipe)),
            "CARGO_TARGET_DIR": str(layout.target_dir(recipe.name, abi.name)),
            "SOURCE_DATE_EPOCH": env.get("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH),
            # PyO3 for the ABI's Python without that Python on this machine (maturin writes its config).
            "PYO3_CROSS": "1",
            "PYO3_CROSS_PYTHON_VERSION": abi.python_minor,
            **abi.maturin_tag_env(),
        }
    )
    if lean:
        env.update(lean_env(abi, layout, rust, linker, link_log))
    if build_wheels:
        # Wheels of the recipes listed in [depends] build, for build scripts that need them.
        env["WASMWHEEL_BUILD_WHEELS"] = os.pathsep.join(str(p) for p in build_wheels)
    env.update(recipe.build.env)
    return env


def maturin_version() -> str:
    """The maturin installed with wasmwheel (part of the compile step's config)."""
    try:
        from importlib.metadata import version

        return version("maturin")
    except Exception:  # noqa: BLE001 - a version label for the config; any failure to read it means "unknown"
        return "unknown"


def compile_wheel(
    recipe: Recipe,
    abi: Abi,
    layout: Layout,
    source: SourceFacts,
    linker: ToolFacts,
    rust: RustFacts,
    log: StepLog,
    build_wheels: Sequence[WheelFacts] = (),
) -> dict[str, Any]:
    """The compile step: maturin builds the crate's source tree for the ABI, linked by the toolchain's
    ``linker`` (emsdk's emcc, or the lean linker with binaryen's wasm-opt); ``build_wheels``: the wheels
    of the recipes in its [depends] build, for build scripts."""
    toolchain = layout.settings.toolchain
    link_log = layout.log("link", abi.name, recipe.name)
    link_log.unlink(missing_ok=True)
    if toolchain == "lean":
        ensure_launchers(layout)
    env = compile_env(
        abi, recipe, layout, linker, rust, build_wheels=[Path(w.wheel) for w in build_wheels], link_log=link_log
    )
    maturin = shutil.which("maturin", path=env["PATH"])
    if not maturin:
        raise CompileError("maturin not found on PATH: `pip install maturin` (wasmwheel installs it as a dependency)")
    wheels_dir = layout.wheels_dir(recipe.name, abi.name)
    wheels_dir.mkdir(parents=True, exist_ok=True)
    # Leftovers of an interrupted run: maturin's output folder, the Generator rewrite's temporary (only this
    # step writes here, and it holds the step lock).
    clean_stale_temps(wheels_dir)
    target_dir = layout.target_dir(recipe.name, abi.name)
    target_dir.mkdir(parents=True, exist_ok=True)
    force_relink(target_dir, toolchain_config(abi, toolchain), log)
    with staged_dir(wheels_dir / "out") as out:
        how = f"Emscripten {abi.emscripten}" if toolchain == "emsdk" else "lean toolchain: rust-lld + wasm-opt"
        log.note(
            f"maturin build {recipe.name} {recipe.version} for {abi.name} (Python {abi.python_minor}, "
            f"Rust {abi.rust_toolchain}, {how})"
        )
        try:
            run(
                compile_argv(maturin, abi, recipe, out),
                log=log,
                cwd=Path(source.crate_dir),
                env=env,
                what=f"maturin build ({recipe.name} for {abi.name})",
            )
        finally:
            if link_log.exists():  # what the lean linker ran and dropped, in the step's own log
                log.write(link_log.read_text(encoding="utf-8", errors="replace"))
        built = sorted(out.glob("*.whl"))
        if len(built) != 1:
            raise CompileError(
                f"maturin wrote {len(built)} wheels to {out}, expected exactly one: "
                + (", ".join(p.name for p in built) or "none")
            )
        wheel = wheels_dir / built[0].name
        set_generator(built[0], wheel, generator(abi, toolchain, linker))
        for old in wheels_dir.glob("*.whl"):
            if old != wheel:
                old.unlink()
    return {"wheel": str(wheel), "sha256": sha256_file(wheel), "toolchain": toolchain}
