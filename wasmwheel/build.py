"""The compile step: ``maturin build`` for one crate and one ABI.

The command and its environment are built by pure functions
(:func:`compile_argv`, :func:`compile_env`) so tests can compare them with the
ABI file without running anything. The cargo target folder is kept per crate and
ABI between runs, so a rebuild after a small change is warm.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from .abi import RUST_TARGET, Abi
from .errors import WasmwheelError
from .fsutil import clean_stale_temps, sha256_file
from .layout import Layout
from .recipe import Recipe
from .runner import StepLog, run

RUSTFLAGS_VAR = "CARGO_TARGET_WASM32_UNKNOWN_EMSCRIPTEN_RUSTFLAGS"
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
        maturin, "build", "--release",
        "--target", RUST_TARGET,
        "-i", abi.interpreter,
        "--out", str(out_dir),
    ]
    if recipe.build.features:
        argv += ["--features", ",".join(recipe.build.features)]
    argv += list(recipe.build.maturin_args)
    return argv


def compile_env(
    abi: Abi,
    recipe: Recipe,
    layout: Layout,
    emsdk: Mapping[str, Any],
    rust: Mapping[str, Any],
    base: Mapping[str, str] | None = None,
    build_wheels: list[Path] = (),
) -> dict[str, str]:
    """The complete environment of the maturin process."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in SCRUBBED_ENV}
    prepend = [*emsdk.get("path", []), *rust.get("path", [])]
    if prepend:
        env["PATH"] = os.pathsep.join([*prepend, env.get("PATH", "")])
    env.update(emsdk.get("env", {}))
    env.update(rust.get("env", {}))
    env.update({
        "CARGO_BUILD_TARGET": RUST_TARGET,
        RUSTFLAGS_VAR: " ".join(rustflags(abi, recipe)),
        "CARGO_TARGET_DIR": str(layout.target_dir(recipe.name, abi.name)),
        "SOURCE_DATE_EPOCH": env.get("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH),
        **abi.maturin_tag_env(),
    })
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
    except Exception:
        return "unknown"


def compile_wheel(
    recipe: Recipe,
    abi: Abi,
    layout: Layout,
    crate_dir: Path,
    emsdk: Mapping[str, Any],
    rust: Mapping[str, Any],
    log: StepLog,
    build_wheels: list[Path] = (),
) -> dict[str, Any]:
    env = compile_env(abi, recipe, layout, emsdk, rust, build_wheels=build_wheels)
    maturin = shutil.which("maturin", path=env["PATH"])
    if not maturin:
        raise CompileError("maturin not found on PATH: `pip install maturin` (wasmwheel installs it as a dependency)")
    wheels_dir = layout.wheels_dir(recipe.name, abi.name)
    wheels_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(wheels_dir, prefix=".out.")  # of an interrupted run (the step lock is held)
    layout.target_dir(recipe.name, abi.name).mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=".out.", suffix=".tmp", dir=wheels_dir))
    try:
        log.note(f"maturin build {recipe.name} {recipe.version} for {abi.name} (Python {abi.python_minor}, "
                 f"Rust {abi.rust_toolchain}, Emscripten {abi.emscripten})")
        run(compile_argv(maturin, abi, recipe, out), log=log, cwd=crate_dir, env=env,
            what=f"maturin build ({recipe.name} for {abi.name})")
        built = sorted(out.glob("*.whl"))
        if len(built) != 1:
            raise CompileError(f"maturin wrote {len(built)} wheels to {out}, expected exactly one: "
                               + (", ".join(p.name for p in built) or "none"))
        wheel = wheels_dir / built[0].name
        os.replace(built[0], wheel)
        for old in wheels_dir.glob("*.whl"):
            if old != wheel:
                old.unlink()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"wheel": str(wheel), "sha256": sha256_file(wheel)}
