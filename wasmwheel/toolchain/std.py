"""The std step: std for wasm32-unknown-emscripten in the ABI's Rust toolchain, one of three ways.

rustup publishes no prebuilt std for this target for most toolchains (only the ones whose
``rustup target add wasm32-unknown-emscripten`` works), and Pyodide's own std archive for 2025_0 is
a GitHub release. So by default (``[rust] std = "source"``) std is built once per toolchain and flags
from the toolchain's own rust-src component, the way Pyodide builds that archive: ``cargo
-Zbuild-std=std,panic_abort`` on an empty crate, with the ABI's ``std_rustflags`` (for 2025_0,
``-Z emscripten-wasm-eh``), and its rlibs installed where rustc looks for them. ``std = "sysroot"``
unpacks a pinned archive instead; ``std = "rustup"`` takes rustup's component. Every crate of the ABI
then links against that one std: never ``-Zbuild-std`` per crate.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmwheel.fsutil import (
    atomic_write_text,
    clean_stale_temps,
    file_lock,
    marker_matches,
    replace_dir,
    staged_dir,
    write_marker,
)
from wasmwheel.model.abi import RUST_TARGET, STD_SOURCES, Abi
from wasmwheel.model.errors import CommandFailed
from wasmwheel.model.layout import Layout
from wasmwheel.runner import StepLog, inherited_env, run
from wasmwheel.toolchain.launcher import ensure_launcher
from wasmwheel.toolchain.provision import ToolchainError, _reason, install_sysroot

if TYPE_CHECKING:  # annotations only: a doit start does not import the facts' classes
    from wasmwheel.model.facts import RustFacts


STD_MARKER = ".wasmwheel-std.json"  # in lib/rustlib/wasm32-unknown-emscripten/: how its lib/ was made
# The crate std is built beside: empty, so that the build is std's alone.
STD_CRATE = "wasmwheel-std"
# -Cembed-bitcode=yes: crates built with `lto = true` read std's bitcode, as from rustup's own std
# (which Rust's bootstrap builds with bitcode too); cargo would otherwise leave it out of rlibs.
STD_BUILD_FLAGS = ("-Cembed-bitcode=yes",)
# Rust's bootstrap compiles these std crates with extra flags (src/bootstrap/src/bin/rustc.rs): the
# panic_abort runtime is always built with panic=abort, so that crates built with panic=abort link
# against an unwinding std (else: "the crate `panic_abort` does not have the panic strategy `abort`").
BOOTSTRAP_CRATE_FLAGS = {"panic_abort": ("-C", "panic=abort")}
# How wasmwheel builds std, beyond the ABI's flags: part of the std step's configuration.
STD_BUILD = {"flags": list(STD_BUILD_FLAGS), "crates": {k: list(v) for k, v in BOOTSTRAP_CRATE_FLAGS.items()}}


def rustc_wrapper(argv: list[str] | None = None) -> int:
    """RUSTC_WRAPPER of the std build: cargo calls it as ``wrapper <rustc> <args>``; it runs rustc with
    bootstrap's extra flags for the crate being compiled."""
    argv = sys.argv[1:] if argv is None else argv
    rustc, args = argv[0], list(argv[1:])
    for crate, extra in BOOTSTRAP_CRATE_FLAGS.items():
        if "--crate-name" in args and args[args.index("--crate-name") + 1 :][:1] == [crate]:
            args += list(extra)
    os.execv(rustc, [rustc, *args])
    return 1  # not reached


def target_rustlib(rust: RustFacts) -> Path:
    return Path(rust.sysroot) / "lib" / "rustlib" / RUST_TARGET


def provide_std(abi: Abi, layout: Layout, rust: RustFacts, log: StepLog) -> dict[str, Any]:
    """Put std for wasm32-unknown-emscripten where rustc looks (the toolchain's
    lib/rustlib/wasm32-unknown-emscripten/lib), the ABI's way (``[rust] std``), once per toolchain
    and std: every crate of the ABI links against it."""
    way = abi.std
    log.note(f"std for {RUST_TARGET} on Rust {abi.rust_toolchain}: {STD_SOURCES[way]}")
    if way == "source":
        facts = build_std(abi, layout, rust, log)  # writes its own marker, with the rust-src it used
    else:
        facts = install_sysroot(abi, layout, rust, log) if way == "sysroot" else check_rustup_std(abi, rust)
        if not marker_matches(target_rustlib(rust), abi.std_config(), STD_MARKER):
            write_marker(target_rustlib(rust), abi.std_config(), STD_MARKER)
    lib = target_rustlib(rust) / "lib"
    rlibs = sorted(p.name for p in lib.glob("*.rlib"))
    if not any(name.startswith("libstd-") for name in rlibs):
        raise ToolchainError(
            f"{lib} holds no libstd-*.rlib after the std step ({way}); "
            f"delete {target_rustlib(rust)} and rerun `doit std:{abi.name}`"
        )
    return {"std": way, "lib": str(lib), "rlibs": len(rlibs), "marker": str(target_rustlib(rust) / STD_MARKER), **facts}


def check_rustup_std(abi: Abi, rust: RustFacts) -> dict[str, Any]:
    rustlib = target_rustlib(rust)
    if not any((rustlib / "lib").glob("libstd-*.rlib")):
        raise ToolchainError(
            f"Rust toolchain {abi.rust_toolchain} has no {RUST_TARGET} std (no {rustlib / 'lib'}/libstd-*.rlib): "
            f'run `rustup target add {RUST_TARGET} --toolchain {abi.rust_toolchain}`, or set std = "source" in '
            f"[rust] of {abi.path.name} to build it from rust-src"
        )
    return {}


def std_build_env(abi: Abi, layout: Layout, rust: RustFacts) -> dict[str, str]:
    """The environment of std's build: the toolchain's own cargo and rustc, the shared registry,
    the ABI's std flags for the target only (build scripts and proc-macros use the host's std)."""
    from wasmwheel.build import RUSTFLAGS_VAR, SCRUBBED_ENV

    env = inherited_env((*SCRUBBED_ENV, "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER"))
    bin_dir = Path(rust.sysroot) / "bin"
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    env.update(rust.env)
    env.update(
        {
            "CARGO_HOME": str(layout.cargo_home),
            "RUSTC": str(bin_dir / "rustc"),
            "RUSTC_BOOTSTRAP": "1",  # -Zbuild-std on a stable toolchain, as Rust's own bootstrap does
            "RUSTC_WRAPPER": str(layout.std_rustc_launcher),
            RUSTFLAGS_VAR: " ".join([*abi.std_rustflags, *STD_BUILD_FLAGS]),
        }
    )
    return env


def build_std(abi: Abi, layout: Layout, rust: RustFacts, log: StepLog) -> dict[str, Any]:
    """Build std for the target once from the toolchain's rust-src (``cargo -Zbuild-std`` on an
    empty crate, with the ABI's std_rustflags) and install its rlibs into the toolchain."""
    rustlib = target_rustlib(rust)
    want = {**abi.std_config(), "rust_src": rust.rust_src, "build": STD_BUILD}
    work = layout.std_build_dir(abi)
    with file_lock(
        rustlib.parent / f"std-{RUST_TARGET}", what=f"std for {RUST_TARGET} on Rust {abi.rust_toolchain}", log=log
    ):
        if marker_matches(rustlib, want, STD_MARKER) and any((rustlib / "lib").glob("libstd-*.rlib")):
            log.note(f"std already built for these flags in {rustlib / 'lib'}")
            return {"rust_src": want["rust_src"]}
        crate = work / "crate"
        crate.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            crate / "Cargo.toml",
            f'[package]\nname = "{STD_CRATE}"\nversion = "0.0.0"\n'
            'edition = "2021"\npublish = false\n\n[lib]\npath = "lib.rs"\n\n[workspace]\n',
        )
        atomic_write_text(crate / "lib.rs", "#![no_std]\n")
        target_dir = work / "target"
        # From scratch: cargo's fingerprints do not see every input (the rustc wrapper's rules), and a
        # std is built once per toolchain and flags anyway. Downloads stay in the shared CARGO_HOME.
        shutil.rmtree(target_dir, ignore_errors=True)
        ensure_launcher(layout.std_rustc_launcher, "toolchain.std", "rustc_wrapper")
        flags = " ".join(abi.std_rustflags) or "no extra flags"
        log.note(f"building std for {RUST_TARGET} from rust-src ({flags}); once per toolchain and flags", console=True)
        try:
            run(
                [
                    Path(rust.sysroot) / "bin" / "cargo",
                    "build",
                    "--release",
                    "--target",
                    RUST_TARGET,
                    "-Zbuild-std=std,panic_abort",
                    "--manifest-path",
                    crate / "Cargo.toml",
                    "--target-dir",
                    target_dir,
                ],
                log=log,
                cwd=crate,
                env=std_build_env(abi, layout, rust),
                what=f"cargo -Zbuild-std (std for {RUST_TARGET}, Rust {abi.rust_toolchain})",
                timeout=3600,
            )
        except CommandFailed as exc:
            raise ToolchainError(
                f"could not build std for {RUST_TARGET} from the rust-src of Rust "
                f"{abi.rust_toolchain} with {flags}: {_reason(exc)}"
            ) from exc
        built = [
            p
            for p in (target_dir / RUST_TARGET / "release" / "deps").glob("lib*.rlib")
            if not p.name.startswith(f"lib{STD_CRATE.replace('-', '_')}-")
        ]
        if not any(p.name.startswith("libstd-") for p in built):
            raise ToolchainError(f"cargo -Zbuild-std made no libstd-*.rlib in {target_dir} (Rust {abi.rust_toolchain})")
        rustlib.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(rustlib, prefix=".lib.")  # of an interrupted install (under the lock)
        with staged_dir(rustlib / "lib") as tmp:
            for rlib in built:
                shutil.copy2(rlib, tmp / rlib.name)
            (rustlib / STD_MARKER).unlink(missing_ok=True)  # the lib folder changes: not done until the new marker
            replace_dir(tmp, rustlib / "lib")
        write_marker(rustlib, want, STD_MARKER)
        log.note(f"installed {len(built)} rlibs of std into {rustlib / 'lib'}")
    return {"rust_src": want["rust_src"]}
