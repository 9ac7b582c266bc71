"""A throw-away copy of the repository wired to local mirrors and stand-ins, and doit runs on it."""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import tomlkit

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
STANDIN_BIN = TESTS / "standins" / "bin"
# Persisted between local runs (gitignored); CI starts empty.
TEST_CACHE = Path(os.environ.get("WASMWHEEL_TEST_CACHE", REPO / ".cache" / "test"))
SYSROOT_NAME = "emcc-4.0.9_nightly-2025-02-01.tar.bz2"
# Where Pyodide publishes it (pyodide-build's config.py); the tests serve it from a local mirror.
SYSROOT_URL = (
    "https://github.com/pyodide/rust-emscripten-wasm-eh-sysroot/releases/download/"
    f"emcc-4.0.9_nightly-2025-02-01/{SYSROOT_NAME}"
)


def use_sysroot_std(abi_path: Path, url: str, sha256: str) -> None:
    """Switch an ABI file to std from a sysroot archive (std = "sysroot" + [rust.sysroot])."""
    doc = tomlkit.parse(Path(abi_path).read_text())
    rust = doc["rust"]
    rust["std"] = "sysroot"
    rust.pop("std_rustflags", None)
    table = tomlkit.table()
    table["url"] = url
    table["sha256"] = sha256
    rust["sysroot"] = table
    Path(abi_path).write_text(tomlkit.dumps(doc))


# -- the local world the pipeline runs against (used by tests/conftest.py and benchmarks/) ------


def provision_runtimes(cache: Path) -> dict[str, Path]:
    """Every ABI's Pyodide runtime, installed by wasmwheel's own runtime step from the committed locks.
    Returns {pyodide version: cache/pyodide/<version>}."""
    from wasmwheel.model.abi import load_abis
    from wasmwheel.model.layout import Layout
    from wasmwheel.model.settings import Settings
    from wasmwheel.runner import StepLog
    from wasmwheel.runtime import provision_runtime

    settings = Settings.from_env(
        REPO, {**os.environ, "WASMWHEEL_CACHE": str(cache / "wasmwheel"), "WASMWHEEL_BUILD_DIR": str(cache / "build")}
    )
    layout = Layout(settings)
    found = {}
    for abi in load_abis(REPO / "abi").values():
        with StepLog(cache / "logs" / f"pyodide-{abi.pyodide_version}.log") as log:
            facts = provision_runtime(abi, layout, log)
        found[abi.pyodide_version] = Path(facts["runtime"]).parent.parent  # cache/pyodide/<version>
    return found


def provision_binaryens(cache: Path) -> dict[str, Path]:
    """Every ABI's binaryen (the lean toolchain's wasm-opt), installed by wasmwheel's own step from the
    committed locks. Returns {binaryen version: cache/binaryen/<version>}."""
    from wasmwheel.model.abi import load_abis
    from wasmwheel.model.layout import Layout
    from wasmwheel.model.settings import Settings
    from wasmwheel.runner import StepLog
    from wasmwheel.toolchain.provision import provision_binaryen

    settings = Settings.from_env(
        REPO, {**os.environ, "WASMWHEEL_CACHE": str(cache / "wasmwheel"), "WASMWHEEL_BUILD_DIR": str(cache / "build")}
    )
    layout = Layout(settings)
    found = {}
    for abi in load_abis(REPO / "abi").values():
        if abi.lean and abi.lean.binaryen not in found:
            with StepLog(cache / "logs" / f"binaryen-{abi.lean.binaryen}.log") as log:
                provision_binaryen(abi, layout, log)
            found[abi.lean.binaryen] = layout.binaryen_dir(abi.lean.binaryen)
    return found


STANDIN_EMSDK = TESTS / "standins" / "emsdk"
# The files the emsdk stand-in installs into upstream/emscripten (beside its emcc): what the tests' patches patch.
STANDIN_EMSCRIPTEN = STANDIN_EMSDK / "emscripten"


def make_emsdk_mirror(folder: Path) -> str:
    """A local git repository standing in for github.com/emscripten-core/emsdk; returns its URL."""
    repo = folder / "emsdk.git"
    work = folder / "work"
    work.mkdir(parents=True)
    shutil.copy2(STANDIN_EMSDK / "emsdk", work / "emsdk")
    shutil.copytree(STANDIN_EMSCRIPTEN, work / "emscripten")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "emsdk", "emscripten"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", "emsdk stand-in"], check=True)
    subprocess.run([*git, "clone", "-q", "--bare", str(work), str(repo)], check=True)
    return repo.as_uri()


# -- Pyodide's patches to Emscripten, for the stand-in's Emscripten files -------------------------------


def unified_patch(subject: str, changes: dict[str, tuple[str, str]]) -> str:
    """A patch as `git format-patch` writes one: a header, then a unified diff per file (``-p1`` paths)."""
    out = [
        f"From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] {subject}\n\n---\n"
    ]
    for rel, (before, after) in changes.items():
        diff = difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True), fromfile=f"a/{rel}", tofile=f"b/{rel}"
        )
        out.append(f"diff --git a/{rel} b/{rel}\n" + "".join(diff))
    return "".join(out) + "-- \n2.43.0\n"


DYLINK = "src/lib/libdylink.js"
EXPORTS = "tools/emscripten.py"


def standin_patch_series() -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Three patches to the stand-in's Emscripten files, as Pyodide's patch the real ones, in their order
    (0003 changes lines 0001 adds: it applies only after it); and the files' text once all are applied."""
    dylink = (STANDIN_EMSCRIPTEN / DYLINK).read_text()
    exports = (STANDIN_EMSCRIPTEN / EXPORTS).read_text()
    anchor = "      resolved ||= resolveSymbol(prop);\n"
    assert anchor in dylink
    dylink1 = dylink.replace(
        anchor,
        anchor + "      if (!resolved) {\n"
        "        throw new Error(`Dynamic linking error: cannot resolve symbol ${prop}`);\n"
        "      }\n",
    )
    exports2 = exports.replace(
        "  for name in exports:\n    if not name.isidentifier():\n      raise",
        "  if settings.SIDE_MODULE:\n    return  # Rust side modules export mangled names\n"
        "  for name in exports:\n    if not name.isidentifier():\n      raise",
    )
    assert exports2 != exports
    dylink3 = dylink1.replace("cannot resolve symbol ${prop}`", "cannot resolve symbol ${prop} (is it loaded?)`")
    series = [
        (
            "0001-Add-useful-error-when-symbol-resolution-fails.patch",
            unified_patch("Add useful error when symbol resolution fails", {DYLINK: (dylink, dylink1)}),
        ),
        (
            "0002-Don-t-check-exports-of-side-modules.patch",
            unified_patch("Don't check exports of side modules", {EXPORTS: (exports, exports2)}),
        ),
        (
            "0003-Say-which-library-to-load.patch",
            unified_patch("Say which library to load", {DYLINK: (dylink1, dylink3)}),
        ),
    ]
    return series, {DYLINK: dylink3, EXPORTS: exports2}


def write_patches(folder: Path, series: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Write patches into ``folder`` (a mirror's <pyodide tag>/ folder); returns [(name, sha256)]."""
    folder.mkdir(parents=True, exist_ok=True)
    pins = []
    for name, text in series:
        (folder / name).write_text(text)
        pins.append((name, hashlib.sha256(text.encode()).hexdigest()))
    return pins


def patch_url(tag: str, name: str) -> str:
    return f"https://raw.githubusercontent.com/pyodide/pyodide/{tag}/emsdk/patches/{name}"


def use_patches(abi_path: Path, pins: list[tuple[str, str]], tag: str | None = None) -> str:
    """Make an ABI file's [emsdk] name these patches (of its own pyodide_tag, or ``tag``); returns the tag."""
    doc = tomlkit.parse(Path(abi_path).read_text())
    emsdk = doc.setdefault("emsdk", tomlkit.table())
    tag = tag or str(emsdk["pyodide_tag"])
    emsdk["pyodide_tag"] = tag
    aot = tomlkit.aot()
    for name, sha in pins:
        entry = tomlkit.table()
        entry["url"] = patch_url(tag, name)
        entry["sha256"] = sha
        aot.append(entry)
    emsdk["patches"] = aot
    Path(abi_path).write_text(tomlkit.dumps(doc))
    return tag


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@contextlib.contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 (a mirror) while the block runs; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def make_sysroot_archive(folder: Path) -> Path:
    """A sysroot tarball laid out like Pyodide's (wasm32-unknown-emscripten/lib/...)."""
    path = folder / SYSROOT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:bz2") as tf:
        for name, data in {
            "wasm32-unknown-emscripten/lib/libstd-wasm-eh.rlib": b"std built with -Z emscripten-wasm-eh\n",
            "wasm32-unknown-emscripten/lib/libpanic_unwind-wasm-eh.rlib": b"panic_unwind (wasm EH)\n",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return path


@dataclass
class DoitRun:
    argv: list[str]
    returncode: int
    output: str

    @property
    def executed(self) -> list[str]:
        """Steps that ran, passed or failed (the reporter's 'ok'/'FAIL' lines)."""
        return re.findall(r"^(?:ok|FAIL) +(\S+) ", self.output, flags=re.M)

    @property
    def failed(self) -> list[str]:
        return re.findall(r"^FAIL +(\S+) ", self.output, flags=re.M)

    @property
    def skipped(self) -> list[str]:
        """Steps skipped because something they need failed."""
        return re.findall(r"^skip (\S+) ", self.output, flags=re.M)

    def executed_kinds(self) -> set[str]:
        return {t.split(":", 1)[0] for t in self.executed}


class ProjectCopy:
    """A copy of the repository and the environment its doit runs get: what the stand-in world's
    TestProject and the real builds' RealProject (tests/realbuild.py) share."""

    __test__ = False  # not a pytest class
    timeout = 600  # seconds a doit run may take, at most (a safety net, not a measure)

    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.env = env

    def doit(
        self, *args: str, check: bool | None = True, env: dict[str, str] | None = None, timeout: float | None = None
    ) -> DoitRun:
        argv = [sys.executable, "-m", "doit", *args]
        proc = subprocess.run(
            argv,
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout or self.timeout,
        )
        run = DoitRun(argv, proc.returncode, proc.stdout + proc.stderr)
        if check is True and proc.returncode != 0:
            raise AssertionError(f"doit {' '.join(args)} failed ({proc.returncode}):\n{run.output}")
        if check is False and proc.returncode == 0:
            raise AssertionError(f"doit {' '.join(args)} should have failed:\n{run.output}")
        return run

    @property
    def layout(self):
        from wasmwheel.model.layout import Layout
        from wasmwheel.model.settings import Settings

        return Layout(Settings.from_env(self.root, self.env))

    def abi(self, name: str):
        from wasmwheel.model.abi import load_abi

        return load_abi(self.root / "abi" / f"{name}.toml")

    def edit_toml(self, rel: str, change: Callable[[tomlkit.TOMLDocument], None]) -> None:
        path = self.root / rel
        doc = tomlkit.parse(path.read_text())
        change(doc)
        path.write_text(tomlkit.dumps(doc))

    def dist(self, abi: str) -> list[Path]:
        return sorted((self.layout.dist_dir(abi)).glob("*.whl"))


class TestProject(ProjectCopy):
    """The stand-in world: a copy wired to local mirrors and stand-in tools that record their calls."""

    def __init__(self, root: Path, env: dict[str, str], record: Path):
        super().__init__(root, env)
        self.record = record

    @classmethod
    def create(
        cls,
        tmp: Path,
        *,
        runtimes: dict[str, Path],
        modules: Path,
        emsdk_url: str,
        sysroot: tuple[Path, str],
        binaryens: dict[str, Path] | None = None,
    ) -> TestProject:
        root = tmp / "repo"
        root.mkdir()
        shutil.copy2(REPO / "dodo.py", root / "dodo.py")
        shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")  # doit's settings and backend
        shutil.copytree(REPO / "abi", root / "abi")
        (root / "recipes").mkdir()
        shutil.copy2(REPO / "recipes" / "hello-pyo3.toml", root / "recipes" / "hello-pyo3.toml")
        shutil.copytree(
            REPO / "examples" / "hello-pyo3", root / "examples" / "hello-pyo3", ignore=shutil.ignore_patterns("target")
        )
        archive, mirror = sysroot
        from wasmwheel.fsutil import sha256_file

        # 2025_0 takes its std from Pyodide's sysroot archive (served by the local mirror), so the
        # stand-in world runs every way of getting std: a download and unpack (2025_0), a build from
        # rust-src (the others, with the stand-in toolchain's cargo).
        use_sysroot_std(root / "abi" / "2025_0.toml", SYSROOT_URL, sha256_file(archive))
        # Each ABI names patches of its own Pyodide tag, made here against the stand-in's Emscripten files and
        # kept in a local folder, the patch mirror (Pyodide's real ones patch the real Emscripten).
        patches = tmp / "emsdk-patches"
        series, _ = standin_patch_series()
        for abi_file in sorted((root / "abi").glob("*.toml")):
            tag = str(tomlkit.parse(abi_file.read_text())["emsdk"]["pyodide_tag"])
            use_patches(abi_file, write_patches(patches / tag, series))
        cache = tmp / "cache"
        shared = {cache / "pyodide" / v: f for v, f in runtimes.items()}
        shared.update({cache / "binaryen" / v: f for v, f in (binaryens or {}).items()})
        for dest, folder in shared.items():
            dest.parent.mkdir(parents=True, exist_ok=True)
            # Hard links (fast, read-only runtime files), but not the smoke servers' own files: a
            # server of the shared runtime writes its log there, which must not show up here.
            shutil.copytree(
                folder,
                dest,
                symlinks=True,
                copy_function=os.link,
                ignore=shutil.ignore_patterns("smoke-server-*", "*.sock", "*.lock"),
            )
        record = tmp / "standin-calls.jsonl"
        env = {k: v for k, v in os.environ.items() if not k.startswith("WASMWHEEL_")}
        env.update(
            {
                # The stand-ins (#!/usr/bin/env python3) run on this interpreter, not through a version
                # manager's shim (pyenv's costs a bash process and ~0.1 s per call).
                "PATH": os.pathsep.join([str(STANDIN_BIN), str(Path(sys.executable).parent), env.get("PATH", "")]),
                "STANDIN_RECORD": str(record),
                "STANDIN_MODULES": str(modules),
                "WASMWHEEL_CACHE": str(cache),
                # The stand-in world models the emsdk toolchain (emsdk, rustup and maturin stand-ins); the lean
                # toolchain is tested with real builds (tests/test_lean.py) and with WASMWHEEL_TOOLCHAIN=lean.
                "WASMWHEEL_TOOLCHAIN": "emsdk",
                "WASMWHEEL_EMSDK_URL": emsdk_url,
                "WASMWHEEL_SYSROOT_MIRROR": mirror,
                "WASMWHEEL_PATCH_MIRROR": str(patches),
                "WASMWHEEL_RETRY_BACKOFF": "0.01",
                "WASMWHEEL_SMOKE_IDLE": "5",  # smoke servers of throw-away caches exit soon
            }
        )
        env.pop("RUSTUP_HOME", None)
        env.pop("CARGO_HOME", None)
        return cls(root, env, record)

    # -- running ----------------------------------------------------------------
    def records(self, tool: str | None = None) -> list[dict]:
        if not self.record.exists():
            return []
        entries = [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]
        return [e for e in entries if tool is None or e["tool"] == tool]

    def clear_records(self) -> None:
        self.record.unlink(missing_ok=True)

    # -- the project's files --------------------------------------------------------
    def recipe(self, name: str):
        from wasmwheel.model.abi import load_abis
        from wasmwheel.model.recipe import load_recipe

        return load_recipe(self.root / "recipes" / f"{name}.toml", list(load_abis(self.root / "abi")), self.root)

    def add_crate(self, name: str, module: str) -> None:
        """A second example crate + recipe (the stand-in packs tests/wasm's module of that name)."""
        crate = self.root / "examples" / name
        shutil.copytree(self.root / "examples" / "hello-pyo3", crate)
        for rel in ("pyproject.toml", "Cargo.toml"):
            p = crate / rel
            p.write_text(p.read_text().replace("hello-pyo3", name).replace("hello_pyo3", module))
        recipe = (self.root / "recipes" / "hello-pyo3.toml").read_text()
        recipe = recipe.replace("hello-pyo3", name).replace("hello_pyo3", module)
        (self.root / "recipes" / f"{name}.toml").write_text(recipe)
