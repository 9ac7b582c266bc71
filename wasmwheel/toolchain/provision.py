"""Toolchain steps per ABI: the Rust toolchain, the sysroot archive, binaryen or the Emscripten SDK.

Managed mode (the default) provisions each into the cache: rustup installs the ABI's
exact toolchain (with rust-src, or with the prebuilt wasm32-unknown-emscripten std where
the ABI takes rustup's) into a RUSTUP_HOME/CARGO_HOME of its own, so ABIs never share or
fight over one; the std step (wasmwheel.toolchain.std) then puts std for the target into it.
The lean toolchain then needs only binaryen's wasm-opt (npm, locked); the emsdk toolchain
clones emsdk from ``WASMWHEEL_EMSDK_URL``, installs the ABI's exact Emscripten, applies the
patches the ABI's Pyodide applies to it (``[emsdk]``, pinned by sha256) and activates it.
System mode (``WASMWHEEL_SYSTEM=1``) uses the emcc and rustup already on
PATH and only verifies them.

Each step returns the facts later steps need (paths, environment); the task
writes them into its stamp, and the compile step reads them from there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomlkit

from wasmwheel.archive import extract
from wasmwheel.download import DownloadError, Origin, fetch
from wasmwheel.fsutil import (
    INSTALLED,
    atomic_write_text,
    clean_stale_temps,
    file_lock,
    marker_matches,
    read_json,
    replace_dir,
    sha256_file,
    staged_dir,
    write_json,
    write_marker,
)
from wasmwheel.model.abi import RUST_TARGET, Abi, Patch
from wasmwheel.model.errors import CommandFailed, ConfigError, WasmwheelError
from wasmwheel.model.layout import Layout
from wasmwheel.model.settings import user_rust_homes
from wasmwheel.runner import StepLog, capture, inherited_env, run
from wasmwheel.toolchain.npm import NpmPackage, ensure_installed

if TYPE_CHECKING:  # annotations only: a doit start does not import the facts' classes
    from wasmwheel.model.facts import RustFacts

MARKER = INSTALLED  # a cache folder's marker (fsutil.marker_matches)


class ToolchainError(WasmwheelError):
    pass


def _reason(exc: WasmwheelError) -> str:
    return exc.reason() if isinstance(exc, CommandFailed) else str(exc)


def _tool_env(extra: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    env = inherited_env(drop)
    env.update(extra or {})
    return env


def _which(name: str, env: dict[str, str]) -> str | None:
    return shutil.which(name, path=env.get("PATH", os.defpath))


def _dumpversion(emcc: str, env: dict[str, str], log: StepLog) -> str:
    out = capture([emcc, "-dumpversion"], log=log, env=env, what="emcc -dumpversion", timeout=120)
    lines = [line for line in out.splitlines() if line.strip()]
    version = lines[-1].strip() if lines else ""
    return version.removesuffix("-git")


# -- binaryen (the lean toolchain's wasm-opt) --------------------------------------------


def binaryen_package(abi: Abi, layout: Layout) -> NpmPackage:
    assert abi.lean
    version = abi.lean.binaryen
    return NpmPackage(
        "binaryen",
        version,
        layout.binaryen_dir(version),
        layout.binaryen_lock_dir(version),
        "binaryen's wasm-opt for wasmwheel's lean toolchain",
    )


def provision_binaryen(abi: Abi, layout: Layout, log: StepLog) -> dict[str, Any]:
    """Install the ABI's binaryen (npm's Node build, which carries the wasm-opt command line) from its
    committed lock, and check that its wasm-opt runs."""
    if abi.lean is None:
        raise ConfigError(
            abi.path,
            "lean",
            "missing: the lean toolchain needs the ABI's binaryen version and wasm-opt flags",
            'add [lean] binaryen = "132.0.0" and wasm_opt_flags, or use WASMWHEEL_TOOLCHAIN=emsdk',
        )
    pkg = binaryen_package(abi, layout)
    ensure_installed(pkg, layout.settings.npm_registry, log)
    wasm_opt = pkg.package_dir / "bin" / "wasm-opt"
    version = capture([wasm_opt, "--version"], log=log, what="wasm-opt --version", timeout=300)
    log.note(f"{version} ready in {pkg.folder}")
    return {"binaryen": pkg.version, "wasm_opt": str(wasm_opt), "wasm_opt_version": version.splitlines()[-1]}


# -- Emscripten SDK ---------------------------------------------------------------
#
# Pyodide does not build with a plain Emscripten: it applies its own patches (pyodide's emsdk/patches/ at the
# release tag, `patch -p1` in upstream/emscripten, between `emsdk install` and `emsdk activate`). So does this
# step, with the patches the ABI file names and pins. A patched tree is never half trusted:
#
#   PATCHING (in the emsdk folder) is written before the first patch and removed after the marker: a run
#     that finds it (a kill, a crash in the middle) removes upstream/ before `emsdk install`, which then
#     installs Emscripten afresh. A patch that does not apply removes upstream/ at once.
#   PATCHES_RECORD (in upstream/emscripten) names the patches the tree carries, written once all applied: a
#     tree patched for another list (a changed pin) is removed the same way, never patched twice. It is also
#     what system mode reads to tell whether an activated emsdk carries the ABI's patches.
#
# emsdk decides for itself whether Emscripten is installed (upstream/.emsdk_version), so removing upstream/
# is what makes it install again; it downloads the release again (emsdk keeps no archive by default).

PATCHING = ".wasmwheel-patching.json"
PATCHES_RECORD = ".wasmwheel-patches.json"
# patch(1) reads these; a user's setting must not change how the patches are applied (backups, RCS lookups).
_PATCH_ENV_DROP = ("POSIXLY_CORRECT", "PATCH_GET", "PATCH_VERSION_CONTROL", "VERSION_CONTROL", "SIMPLE_BACKUP_SUFFIX")


def emsdk_facts(emsdk: Path, version: str, abi: Abi | None = None) -> dict[str, Any]:
    emsdk = Path(emsdk)
    facts: dict[str, Any] = {
        "mode": "managed",
        "emsdk": str(emsdk),
        "emcc_version": version,
        "path": [str(emsdk / "upstream" / "emscripten"), str(emsdk)],
        "env": {"EMSDK": str(emsdk), "EM_CONFIG": str(emsdk / ".emscripten")},
    }
    if abi is not None and abi.emsdk and abi.emsdk.patches:
        facts.update(abi.emsdk.config())  # what it applied: pyodide_tag, patches [[name, sha256], ...]
    return facts


def _patch_origin(abi: Abi, patch: Patch, layout: Layout) -> Origin:
    assert abi.emsdk
    return Origin(patch.url, layout.settings.patch_mirror, "WASMWHEEL_PATCH_MIRROR", subfolder=abi.emsdk.pyodide_tag)


def _unpinned_patch_error(abi: Abi, index: int) -> ConfigError:
    assert abi.emsdk
    return ConfigError(
        abi.path,
        f"emsdk.patches[{index}].sha256",
        f"not pinned: wasmwheel applies no unverified patch to Emscripten ({abi.emsdk.patches[index].name})",
        f"run `doit pin-patches:{abi.name}` to download the patches and record their sha256, then rerun",
    )


def fetch_patches(abi: Abi, layout: Layout, log: StepLog) -> list[Path]:
    """The ABI's patches, in order, verified against their sha256 (downloaded once into the cache). An
    unpinned one is refused before any is fetched, and so before anything is installed or applied."""
    if abi.emsdk is None:
        return []
    for index, patch in enumerate(abi.emsdk.patches):
        if patch.sha256 is None:
            raise _unpinned_patch_error(abi, index)
    return [
        fetch(_patch_origin(abi, p, layout), layout.download(p.sha256, p.name), p.sha256, log)  # type: ignore[arg-type]
        for p in abi.emsdk.patches
    ]


def _patch_tool(env: dict[str, str]) -> str:
    found = _which("patch", env)
    if not found:
        raise ToolchainError(
            "patch not found on PATH: the emsdk toolchain applies Pyodide's patches to Emscripten "
            "with it, as Pyodide does (install GNU patch, e.g. `apt-get install patch`)"
        )
    return found


def apply_patch(tool: str, patch: Patch, file: Path, root: Path, env: dict[str, str], log: StepLog) -> None:
    """``patch -p1`` one of Pyodide's patches in upstream/emscripten. --forward: a patch that looks applied
    already fails instead of being reversed; --batch: no questions; no .orig backups in the tree."""
    run(
        [tool, "-p1", "--forward", "--batch", "--no-backup-if-mismatch", "-i", file],
        log=log,
        cwd=root,
        env=env,
        what=f"patch -p1 -i {patch.name}",
        timeout=300,
    )


def _patch_failure(tail: str) -> str:
    """patch's own words for why a patch did not apply (a failed hunk, a missing file, already applied)."""
    lines = [line.strip() for line in tail.splitlines() if line.strip() and not line.startswith("# exit ")]
    for marker in (
        "hunk FAILED",
        "hunks FAILED",
        "can't find file",
        "previously applied",
        "malformed",
        "Only garbage",
        "No such file",
    ):
        for line in lines:
            if marker in line:
                return line.split(" -- ", 1)[0].rstrip(".!: ")  # not "-- saving rejects to file x.rej"
    return lines[-1] if lines else "patch failed"


def _discard_tree(folder: Path, why: str, log: StepLog) -> None:
    """Remove upstream/ (renamed aside first, so a kill never leaves half of it in place) and the
    patching journal: `emsdk install` then installs Emscripten afresh."""
    upstream = folder / "upstream"
    if upstream.exists():
        log.note(f"removing {upstream} ({why}); emsdk installs Emscripten again from scratch")
        old = folder / f".upstream.old-{os.getpid()}-{time.monotonic_ns()}"
        os.replace(upstream, old)
        shutil.rmtree(old, ignore_errors=True)
    (folder / PATCHING).unlink(missing_ok=True)


def _discard_patched_tree(folder: Path, log: StepLog) -> None:
    """Start from a clean install when upstream/ may hold patches: an apply that was cut short (the journal
    is there) or the patches of another list (a changed pin)."""
    clean_stale_temps(folder, prefix=".upstream.")  # a removal that was itself cut short
    record = folder / "upstream" / "emscripten" / PATCHES_RECORD
    if (folder / PATCHING).exists():
        _discard_tree(folder, "patching it was interrupted", log)
    elif record.exists():
        _discard_tree(folder, "it carries the patches of another list", log)


def _apply_patches(abi: Abi, folder: Path, files: list[Path], log: StepLog) -> None:
    assert abi.emsdk
    env = _tool_env(drop=_PATCH_ENV_DROP)
    tool = _patch_tool(env)
    root = folder / "upstream" / "emscripten"
    tag, patches = abi.emsdk.pyodide_tag, abi.emsdk.patches
    write_json(folder / PATCHING, {"emscripten": abi.emscripten, **abi.emsdk.config()})
    for index, (patch, file) in enumerate(zip(patches, files, strict=True)):
        try:
            apply_patch(tool, patch, file, root, env, log)
        except CommandFailed as exc:
            _discard_tree(folder, f"{patch.name} did not apply", log)  # no partly patched tree stays behind
            raise CommandFailed(
                f"patch {patch.name} (Pyodide {tag}, {index + 1} of {len(patches)} in [emsdk] of {abi.path.name}) "
                f"does not apply to Emscripten {abi.emscripten}: {_patch_failure(exc.output_tail)}. The partly "
                "patched Emscripten was removed; the next run installs it afresh. Check that pyodide_tag names the "
                f"Pyodide release built with Emscripten {abi.emscripten} and that the patches are that tag's",
                returncode=exc.returncode,
                log_path=exc.log_path,
                output_tail=exc.output_tail,
            ) from None
    write_json(root / PATCHES_RECORD, {"emscripten": abi.emscripten, **abi.emsdk.config()})
    log.note(
        f"applied Pyodide {tag}'s {len(patches)} patches to Emscripten {abi.emscripten}: "
        + ", ".join(p.name for p in patches)
    )


def provision_emsdk(abi: Abi, layout: Layout, log: StepLog) -> dict[str, Any]:
    settings = layout.settings
    if settings.system:
        return verify_system_emcc(abi, log, layout)
    folder = layout.emsdk_dir(abi)
    want = abi.emsdk_config()
    with file_lock(folder, what=f"emsdk {abi.emscripten}", log=log):
        emcc = folder / "upstream" / "emscripten" / "emcc"
        if marker_matches(folder, want) and emcc.exists():
            (folder / PATCHING).unlink(missing_ok=True)  # a run killed after its marker
            log.note(f"emsdk {abi.emscripten} already installed in {folder}")
            return emsdk_facts(folder, abi.emscripten, abi)
        patch_files = fetch_patches(abi, layout, log)
        (folder / MARKER).unlink(missing_ok=True)  # until the end of this run, nothing here is known to be done
        _discard_patched_tree(folder, log)
        if not (folder / "emsdk").exists():
            _clone_emsdk(settings.emsdk_url, folder, log)
        env = _tool_env()
        run(
            [folder / "emsdk", "install", abi.emscripten],
            log=log,
            cwd=folder,
            env=env,
            what=f"emsdk install {abi.emscripten}",
        )
        if patch_files:
            _apply_patches(abi, folder, patch_files, log)
        run(
            [folder / "emsdk", "activate", abi.emscripten],
            log=log,
            cwd=folder,
            env=env,
            what=f"emsdk activate {abi.emscripten}",
        )
        if not emcc.exists():
            raise ToolchainError(f"emsdk activate {abi.emscripten} did not create {emcc}")
        facts = emsdk_facts(folder, abi.emscripten, abi)
        got = _dumpversion(str(emcc), _emsdk_env(facts), log)
        if got != abi.emscripten:
            raise ToolchainError(f"{emcc} reports version {got!r}, ABI {abi.name} needs {abi.emscripten}")
        write_marker(folder, want)
        (folder / PATCHING).unlink(missing_ok=True)
        log.note(f"emsdk {abi.emscripten} ready in {folder}")
        return facts


def _clone_emsdk(url: str, folder: Path, log: StepLog) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(folder.parent, prefix=f".{folder.name}.")  # of an interrupted clone (under the folder's lock)
    with staged_dir(folder) as tmp:
        log.note(f"cloning emsdk from {url}")
        try:
            run(
                ["git", "clone", "--depth", "1", "--", url, tmp / "emsdk"],
                log=log,
                what="git clone emsdk",
                timeout=1800,
            )
        except WasmwheelError as exc:
            raise ToolchainError(
                f"could not clone the Emscripten SDK from {url}: {_reason(exc)}. No network? "
                "Set WASMWHEEL_EMSDK_URL to a reachable mirror (a git URL), or use WASMWHEEL_SYSTEM=1 "
                "with an activated emsdk"
            ) from None
        replace_dir(tmp / "emsdk", folder)


def _emsdk_env(facts: dict[str, Any]) -> dict[str, str]:
    env = _tool_env(facts.get("env", {}))
    prepend = os.pathsep.join(facts.get("path", []))
    if prepend:
        env["PATH"] = prepend + os.pathsep + env.get("PATH", "")
    return env


def verify_system_emcc(abi: Abi, log: StepLog, layout: Layout | None = None) -> dict[str, Any]:
    env = _tool_env()
    emcc = _which("emcc", env)
    fix = (
        f"activate it: `./emsdk install {abi.emscripten} && ./emsdk activate {abi.emscripten} && "
        "source ./emsdk_env.sh`, or unset WASMWHEEL_SYSTEM to let wasmwheel provision it"
    )
    if not emcc:
        raise ToolchainError(
            f"WASMWHEEL_SYSTEM=1 but emcc is not on PATH; ABI {abi.name} needs Emscripten {abi.emscripten}: {fix}"
        )
    got = _dumpversion(emcc, env, log)
    if got != abi.emscripten:
        raise ToolchainError(
            f"emcc on PATH ({emcc}) is Emscripten {got}, but ABI {abi.name} needs exactly {abi.emscripten}: {fix}"
        )
    log.note(f"using system emcc {got} at {emcc}")
    facts: dict[str, Any] = {"mode": "system", "emcc": emcc, "emcc_version": got, "path": [], "env": {}}
    if abi.emsdk and abi.emsdk.patches and layout is not None:
        facts.update(system_patches(abi, Path(emcc), layout, log))
    return facts


def _fetch_for_check(abi: Abi, layout: Layout, log: StepLog) -> list[Path] | None:
    """Every patch of the ABI, verified, or None when one is unpinned or cannot be had (then none is checked:
    a patch's files can only be judged with those of the patches after it)."""
    assert abi.emsdk
    files = []
    for patch in abi.emsdk.patches:
        if patch.sha256 is None:
            log.note(f"cannot check {patch.name}: it is not pinned")
            return None
        try:
            files.append(
                fetch(_patch_origin(abi, patch, layout), layout.download(patch.sha256, patch.name), patch.sha256, log)
            )
        except DownloadError as exc:
            log.note(f"cannot check {patch.name}: {exc}")
            return None
    return files


def _patched_paths(file: Path) -> set[str]:
    """The files a unified diff changes, as ``patch -p1`` names them (relative, never outside the tree)."""
    paths = set()
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("--- ", "+++ ")):
            name = line[4:].split("\t", 1)[0].strip()
            rel = name.split("/", 1)[1] if "/" in name else ""
            if rel and name != "/dev/null" and not rel.startswith("/") and ".." not in Path(rel).parts:
                paths.add(rel)
    return paths


def _carried_by_files(tool: str, patches: list[tuple[Patch, Path]], root: Path, log: StepLog) -> dict[str, bool]:
    """Which patches the files under ``root`` carry: in a copy of the files they touch, each is undone, the
    last first, when it reverses cleanly (a dry run first, so a patch that does not is left alone). A patch
    changes lines an earlier one added, so the earlier one can only be judged once the later is undone."""
    env = _tool_env(drop=_PATCH_ENV_DROP)
    found: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="wasmwheel-patch-check-") as tmp:
        copy = Path(tmp)
        for rel in sorted(set().union(*(_patched_paths(f) for _, f in patches))):
            if (root / rel).is_file():
                (copy / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / rel, copy / rel)
        for patch, file in reversed(patches):
            undo = [tool, "-p1", "--reverse", "--forward", "--batch", "--no-backup-if-mismatch", "--silent", "-i", file]
            dry = run(
                [*undo, "--dry-run"],
                log=log,
                cwd=copy,
                env=env,
                check=False,
                timeout=300,
                what=f"patch --reverse --dry-run -i {patch.name}",
            )
            found[patch.name] = dry.returncode == 0
            if found[patch.name]:
                run(undo, log=log, cwd=copy, env=env, timeout=300, what=f"patch --reverse -i {patch.name}")
    return found


def system_patches(abi: Abi, emcc: Path, layout: Layout, log: StepLog) -> dict[str, Any]:
    """Whether the Emscripten of a system emcc carries the ABI's patches: by the record wasmwheel writes into
    a tree it patched, else by the patched files themselves (undone one by one, the last first, in a copy).
    Says so in the log; a console warning names the patches it lacks (or could not check). Never fails."""
    assert abi.emsdk
    root = Path(emcc).resolve().parent  # emsdk's upstream/emscripten (emcc is a script there)
    tag, patches = abi.emsdk.pyodide_tag, abi.emsdk.patches
    carried: list[str] = []
    missing: list[str] = []
    unchecked: list[str] = []
    how = "by the patched files"
    try:
        record = read_json(root / PATCHES_RECORD)
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict) and isinstance(record.get("patches"), list):
        how = f"as recorded in {root / PATCHES_RECORD}"
        have = {tuple(p) for p in record["patches"] if isinstance(p, list)}
        for patch in patches:
            (carried if (patch.name, patch.sha256 or "") in have else missing).append(patch.name)
    else:
        files = _fetch_for_check(abi, layout, log)
        tool = _which("patch", _tool_env())
        if files is None or tool is None:
            unchecked = [p.name for p in patches]
        else:
            found = _carried_by_files(tool, list(zip(patches, files, strict=True)), root, log)
            carried = [p.name for p in patches if found[p.name]]
            missing = [p.name for p in patches if not found[p.name]]
    if len(carried) == len(patches):
        log.note(f"the active Emscripten ({root}) carries Pyodide {tag}'s {len(patches)} patches ({how})")
    else:
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} of Pyodide {tag}'s {len(patches)} patches ({', '.join(missing)})")
        if unchecked:
            why = (
                "patch is not on PATH"
                if _which("patch", _tool_env()) is None
                else "unpinned or not downloadable: see the step's log"
            )
            parts.append(f"could not be checked for {', '.join(unchecked)} ({why})")
        log.note(
            f"WARNING: the active Emscripten {abi.emscripten} ({root}) "
            + "; it ".join(parts)
            + f" ({how}). Pyodide builds with them: wheels may fail to link, or link differently from "
            f"Pyodide's own packages. Apply them with `patch -p1` in {root} (the URLs are in {abi.path.name}), "
            "or unset WASMWHEEL_SYSTEM to let wasmwheel provision a patched emsdk",
            console=True,
        )
    return {"pyodide_tag": tag, "patches_carried": carried, "patches_missing": missing, "patches_unchecked": unchecked}


# -- Rust toolchain ---------------------------------------------------------------


def rust_env(abi: Abi, layout: Layout) -> dict[str, str]:
    """RUSTUP_HOME/CARGO_HOME of the ABI's toolchain (managed mode)."""
    home = layout.rust_dir(abi)
    return {"RUSTUP_HOME": str(home / "rustup"), "CARGO_HOME": str(home / "cargo")}


def _rustup(env: dict[str, str], system: bool) -> str:
    found = _which("rustup", env)
    if not found:
        how = "install it from https://rustup.rs"
        if not system:
            how += " (wasmwheel uses it to install each ABI's toolchain into its own cache folder)"
        raise ToolchainError(f"rustup not found on PATH: {how}")
    return found


def _install_args(abi: Abi) -> list[str]:
    """rustup's arguments for what the ABI's std needs: the prebuilt target, or rust-src to build it."""
    config = abi.toolchain_config()
    if "target" in config:
        return ["--target", config["target"]]
    if "component" in config:
        return ["--component", config["component"]]
    return []


def rust_src_digest(sysroot: Path) -> str | None:
    """The rust-src component's identity: its version and the sha256 rustup verified when installing it
    (from the toolchain's channel manifest), or None when the component is not installed."""
    rustlib = Path(sysroot) / "lib" / "rustlib"
    if not (rustlib / "src" / "rust" / "library" / "Cargo.lock").is_file():
        return None
    try:
        manifest = tomllib.loads((rustlib / "multirust-channel-manifest.toml").read_text(encoding="utf-8"))
        pkg = manifest["pkg"]["rust-src"]
        target = pkg["target"]["*"]
        return f"{pkg.get('version', '')} {target.get('xz_hash') or target.get('hash') or ''}".strip()
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        # Not installed by rustup (a linked or system toolchain): the library's lock file identifies it.
        return "Cargo.lock " + sha256_file(rustlib / "src" / "rust" / "library" / "Cargo.lock")


def provision_rust(abi: Abi, layout: Layout, log: StepLog) -> dict[str, Any]:
    system = layout.settings.system
    install_args = _install_args(abi)
    install_hint = f"rustup toolchain install {abi.rust_toolchain} {' '.join(install_args)}"
    if system:
        env = _tool_env(drop=("RUSTUP_TOOLCHAIN",))
        # Keep the user's own homes (if set): the compile step scrubs inherited ones.
        homes: dict[str, str] = user_rust_homes()
        folder = None
    else:
        homes = rust_env(abi, layout)
        env = _tool_env(homes, drop=("RUSTUP_TOOLCHAIN",))
        folder = layout.rust_dir(abi)
    env["RUST_BACKTRACE"] = "0"  # rustup's errors are clear; its backtraces are noise
    rustup = _rustup(env, system)
    tc = abi.rust_toolchain

    def inspect() -> dict[str, Any]:
        try:
            sysroot = capture(
                [rustup, "run", tc, "rustc", "--print", "sysroot"],
                log=log,
                env=env,
                what=f"rustc --print sysroot ({tc})",
                timeout=300,
            )
            version = capture(
                [rustup, "run", tc, "rustc", "-vV"], log=log, env=env, what=f"rustc -vV ({tc})", timeout=300
            )
        except WasmwheelError:
            raise ToolchainError(
                f"Rust toolchain {tc} is not installed" + (f": run `{install_hint}`" if system else "")
            ) from None
        sysroot = sysroot.splitlines()[-1].strip() if sysroot else ""
        info = dict(line.split(": ", 1) for line in version.splitlines() if ": " in line)
        host = info.get("host", "")
        src = rust_src_digest(Path(sysroot))
        if abi.std == "source" and src is None:
            raise ToolchainError(
                f"Rust toolchain {tc} has no rust-src component, which building std for "
                f"{RUST_TARGET} needs: run `rustup component add rust-src --toolchain {tc}`"
                + ("" if system else " (or delete the cached toolchain to reinstall it)")
            )
        return {
            "mode": layout.settings.mode,
            "toolchain": tc,
            "sysroot": sysroot,
            "host": host,
            "rustc": version.splitlines()[0] if version else "",
            # The toolchain's own linker (LLD, the same LLVM as its rustc): the lean toolchain links with it.
            "lld": str(Path(sysroot) / "lib" / "rustlib" / host / "bin" / "rust-lld"),
            "rust_src": src,
            "env": {**homes, "RUSTUP_TOOLCHAIN": tc},
            "path": [str(Path(sysroot) / "bin")],
        }

    if system:
        facts = inspect()
        log.note(f"using system toolchain {facts['rustc']}")
        return facts

    assert folder is not None
    want = abi.toolchain_config()
    with file_lock(folder, what=f"Rust {tc}", log=log):
        if marker_matches(folder, want):
            try:
                facts = inspect()
                log.note(f"Rust {tc} already installed in {folder}")
                return facts
            except ToolchainError:
                log.note("cached toolchain is incomplete; installing again")
        folder.mkdir(parents=True, exist_ok=True)
        log.note(f"installing Rust {tc} ({' '.join(install_args)}) into {folder}")
        try:
            # --no-self-update: with a private CARGO_HOME, rustup would otherwise look for itself there,
            # and exit 1 after a successful install ("rustup is not installed at ...").
            run(
                [rustup, "toolchain", "install", tc, "--profile", "minimal", *install_args, "--no-self-update"],
                log=log,
                env=env,
                what=f"rustup toolchain install {tc}",
                timeout=3600,
            )
        except WasmwheelError as exc:
            server = env.get("RUSTUP_DIST_SERVER", "https://static.rust-lang.org")
            unavailable = "unavailable for download" in exc.output_tail if isinstance(exc, CommandFailed) else False
            if unavailable and abi.std == "rustup":
                raise ToolchainError(
                    f"rustup has no prebuilt std for {RUST_TARGET} on Rust {tc} ({server}: "
                    f'{_reason(exc)}): set std = "source" in [rust] of {abi.path.name} to build it from rust-src '
                    "(nothing else to download), or point RUSTUP_DIST_SERVER at a mirror that has it"
                ) from None
            raise ToolchainError(
                f"could not install Rust {tc} from {server}: "
                f"{_reason(exc)}. No network? "
                "Set RUSTUP_DIST_SERVER to a reachable rustup mirror, or use WASMWHEEL_SYSTEM=1 "
                f"with `{install_hint}` done by hand"
            ) from None
        facts = inspect()
        write_marker(folder, want)
        return facts


# -- sysroot archive ---------------------------------------------------------------------


def _unpinned_error(abi: Abi) -> ConfigError:
    assert abi.sysroot
    return ConfigError(
        abi.path,
        "rust.sysroot.sha256",
        f"not pinned: no checksum is published for {abi.sysroot.url}, "
        "and wasmwheel does not unpack an unverified archive",
        f"run `doit pin-sysroot:{abi.name}` to download it and record its sha256, then rerun",
    )


def _sysroot_origin(abi: Abi, layout: Layout) -> Origin:
    assert abi.sysroot
    return Origin(abi.sysroot.url, layout.settings.sysroot_mirror, "WASMWHEEL_SYSROOT_MIRROR")


def install_sysroot(abi: Abi, layout: Layout, rust: RustFacts, log: StepLog) -> dict[str, Any]:
    """Download, verify and unpack the ABI's sysroot into its toolchain's rustlib."""
    if abi.sysroot is None:
        raise ToolchainError(f"ABI {abi.name} has no [rust.sysroot]")
    if abi.sysroot.sha256 is None:
        raise _unpinned_error(abi)
    sha = abi.sysroot.sha256
    archive = fetch(_sysroot_origin(abi, layout), layout.download(sha, abi.sysroot.filename), sha, log)
    rustlib = Path(rust.sysroot) / "lib" / "rustlib"
    if not rustlib.is_dir():
        raise ToolchainError(f"{rustlib} does not exist; is the Rust toolchain {abi.rust_toolchain} installed?")
    want = {"sysroot_sha256": sha}
    with file_lock(rustlib / "sysroot", what="the Rust sysroot", log=log):
        if marker_matches(rustlib, want):
            log.note(f"sysroot {abi.sysroot.filename} already unpacked in {rustlib}")
        else:
            clean_stale_temps(rustlib)  # of an interrupted unpack (temporaries, replaced folders)
            with staged_dir(rustlib / "sysroot") as tmp:
                log.note(f"unpacking {abi.sysroot.filename} into {rustlib}")
                extract(archive, tmp, layout.settings.unpack_limits)
                for entry in sorted(tmp.iterdir()):
                    if entry.is_dir():
                        replace_dir(entry, rustlib / entry.name)
                    else:
                        os.replace(entry, rustlib / entry.name)
            write_marker(rustlib, want)
    return {"sysroot_sha256": sha, "rustlib": str(rustlib), "archive": str(archive)}


def pin_sysroot(abi: Abi, layout: Layout, log: StepLog) -> str:
    """Download the sysroot, record its sha256 in the ABI file (comments kept)."""
    if abi.sysroot is None:
        raise ToolchainError(f"ABI {abi.name} has no [rust.sysroot] to pin")
    origin = _sysroot_origin(abi, layout)
    part = layout.unpinned_download(abi.sysroot.filename)
    part.unlink(missing_ok=True)
    fetch(origin, part, None, log)
    sha = sha256_file(part)
    final = layout.download(sha, abi.sysroot.filename)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    write_sysroot_sha(abi.path, sha)
    if abi.sysroot.sha256 and abi.sysroot.sha256 != sha:
        log.note(
            f"WARNING: {abi.path.name} had sha256 {abi.sysroot.sha256}; the file now served has {sha}", console=True
        )
    log.note(f"recorded sha256 {sha} for {abi.sysroot.filename} in {abi.path}", console=True)
    return sha


def write_sysroot_sha(abi_path: Path, sha: str) -> None:
    """Set [rust.sysroot] sha256 with tomlkit, keeping comments and layout."""
    doc = tomlkit.parse(Path(abi_path).read_text(encoding="utf-8"))
    try:
        table = doc["rust"]["sysroot"]  # type: ignore[index]
    except KeyError:
        raise ConfigError(abi_path, "rust.sysroot", "missing") from None
    table["sha256"] = sha  # type: ignore[index]
    atomic_write_text(abi_path, tomlkit.dumps(doc))


# -- pinning Pyodide's patches to Emscripten ---------------------------------------------


def pin_patches(abi: Abi, layout: Layout, log: StepLog) -> list[str]:
    """Download the ABI's patches (through WASMWHEEL_PATCH_MIRROR when set) and record each one's sha256 in
    the ABI file (comments kept); the downloads are kept for the emsdk step."""
    if abi.emsdk is None or not abi.emsdk.patches:
        raise ToolchainError(f"ABI {abi.name} has no [[emsdk.patches]] to pin")
    pins: list[tuple[str, str]] = []
    for patch in abi.emsdk.patches:
        part = layout.unpinned_download(f"{abi.emsdk.pyodide_tag}/{patch.name}")
        part.unlink(missing_ok=True)
        fetch(_patch_origin(abi, patch, layout), part, None, log)
        sha = sha256_file(part)
        final = layout.download(sha, patch.name)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)
        if patch.sha256 and patch.sha256 != sha:
            log.note(
                f"WARNING: {abi.path.name} had sha256 {patch.sha256} for {patch.name}; the file now served has {sha}",
                console=True,
            )
        pins.append((patch.url, sha))
    write_patch_shas(abi.path, pins)
    log.note(
        f"recorded the sha256 of Pyodide {abi.emsdk.pyodide_tag}'s {len(pins)} patches in {abi.path}", console=True
    )
    return [sha for _, sha in pins]


def write_patch_shas(abi_path: Path, pins: list[tuple[str, str]]) -> None:
    """Set each [[emsdk.patches]] entry's sha256 (found by its url) with tomlkit, keeping comments and layout."""
    doc = tomlkit.parse(Path(abi_path).read_text(encoding="utf-8"))
    try:
        entries = doc["emsdk"]["patches"]  # type: ignore[index]
    except KeyError:
        raise ConfigError(abi_path, "emsdk.patches", "missing") from None
    by_url = {str(entry.get("url")): entry for entry in entries}  # type: ignore[union-attr]
    for url, sha in pins:
        if url not in by_url:
            raise ConfigError(
                abi_path,
                "emsdk.patches",
                f"no entry has url = {url!r} any more",
                "the file changed while pinning: pin again",
            )
        by_url[url]["sha256"] = sha
    atomic_write_text(abi_path, tomlkit.dumps(doc))


def pin_sysroot_step(abi: Abi, layout: Layout, log: StepLog) -> dict[str, Any]:
    """The pin-sysroot step (on demand): the sysroot's sha256, written into the ABI file."""
    return {"sha256": pin_sysroot(abi, layout, log)}


def pin_patches_step(abi: Abi, layout: Layout, log: StepLog) -> dict[str, Any]:
    """The pin-patches step (on demand): the patches' sha256, written into the ABI file."""
    return {"sha256": pin_patches(abi, layout, log)}
