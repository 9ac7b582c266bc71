"""The Pyodide runtime per ABI: the npm ``pyodide`` package at the ABI's exact version.

Installed with ``npm ci`` from the lock committed under ``abi/runtimes/<version>/``
into the cache, once per version, and reused by every smoke step of the ABI, with
a boot snapshot of a fresh interpreter beside it (see smokeserver.py). A
version without a committed lock is resolved once with ``npm install`` and its
lock written back into the repository to be committed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from . import runtime_exports, smokeserver
from .abi import Abi
from .errors import WasmwheelError
from .fsutil import (
    atomic_write_bytes,
    clean_stale_temps,
    file_lock,
    read_json,
    replace_dir,
    sha256_file,
    write_json,
)
from .layout import Layout
from .runner import StepLog, capture, run

MARKER = ".wasmwheel-installed.json"


class RuntimeError_(WasmwheelError):
    pass


def package_json(version: str) -> str:
    return json.dumps({"name": f"wasmwheel-pyodide-{version}", "private": True, "description": "Pyodide runtime for wasmwheel smoke tests",
                       "dependencies": {"pyodide": version}}, indent=2) + "\n"


def runtime_package_dir(layout: Layout, abi: Abi) -> Path:
    return layout.runtime_dir(abi) / "node_modules" / "pyodide"


def provision_runtime(abi: Abi, layout: Layout, log: StepLog) -> dict[str, Any]:
    settings = layout.settings
    folder = layout.runtime_dir(abi)
    lock_dir = layout.runtime_lock_dir(abi)
    lock_file = lock_dir / "package-lock.json"
    npm = shutil.which("npm")
    node = shutil.which("node")
    if not npm or not node:
        raise RuntimeError_("node and npm are needed for smoke tests but were not found on PATH "
                            "(install Node.js >= 18, e.g. `apt-get install nodejs npm`)")
    node_version = capture([node, "--version"], log=log, what="node --version")
    want = {"pyodide": abi.pyodide_version,
            "lock_sha256": sha256_file(lock_file) if lock_file.exists() else None}
    with file_lock(folder, what=f"Pyodide {abi.pyodide_version}", log=log):
        pkg = folder / "node_modules" / "pyodide" / "package.json"
        try:
            installed = read_json(pkg).get("version")
        except (OSError, ValueError):
            installed = None
        fresh = not (installed == abi.pyodide_version and _marker(folder) == want)
        if not fresh:
            log.note(f"Pyodide {abi.pyodide_version} already installed in {folder}")
        else:
            _install(abi, folder, lock_dir, npm, settings.npm_registry, log)
            write_json(folder / MARKER, {"pyodide": abi.pyodide_version,
                                         "lock_sha256": sha256_file(lock_file)})
    package = folder / "node_modules" / "pyodide"
    if fresh or runtime_exports.load(lock_dir) is None:
        _record_exports(package, lock_dir, log)
    snapshot = smokeserver.ensure_snapshot(package, log)  # smoke tests boot from it (smokeserver.py)
    return {"runtime": str(package), "pyodide": abi.pyodide_version, "node": node_version,
            "snapshot": str(snapshot) if snapshot else None}


def _record_exports(package: Path, lock_dir: Path, log: StepLog) -> None:
    """Keep abi/runtimes/<version>/exports.json.gz (what the audit checks imports against) in step
    with the installed runtime: written when missing, rewritten if the runtime says otherwise."""
    data = runtime_exports.encode(runtime_exports.extract(package))
    path = lock_dir / runtime_exports.FILENAME
    try:
        same = path.read_bytes() == data
    except OSError:
        same = False
    if not same:
        atomic_write_bytes(path, data)
        log.note(f"wrote {path}: commit it (the audit checks side modules' imports against it)", console=True)


def _marker(folder: Path) -> Any:
    try:
        return read_json(folder / MARKER)
    except (OSError, ValueError):
        return None


def _install(abi: Abi, folder: Path, lock_dir: Path, npm: str, registry: str, log: StepLog) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(folder.parent, prefix=f".{folder.name}.")  # of an interrupted install (under the lock)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    args_common = ["--no-audit", "--no-fund", "--registry", registry]
    hint = f"(registry {registry}; set WASMWHEEL_NPM_REGISTRY to a reachable npm registry or mirror)"
    try:
        (tmp / "package.json").write_text(package_json(abi.pyodide_version))
        lock_file = lock_dir / "package-lock.json"
        try:
            if lock_file.exists():
                shutil.copyfile(lock_file, tmp / "package-lock.json")
                log.note(f"installing Pyodide {abi.pyodide_version} from {lock_file}")
                run([npm, "ci", *args_common], log=log, cwd=tmp, what=f"npm ci (pyodide {abi.pyodide_version})",
                    timeout=1800)
            else:
                log.note(f"no committed lock for Pyodide {abi.pyodide_version}; resolving one")
                run([npm, "install", "--save-exact", *args_common], log=log, cwd=tmp,
                    what=f"npm install (pyodide {abi.pyodide_version})", timeout=1800)
                atomic_write_bytes(lock_dir / "package.json", (tmp / "package.json").read_bytes())
                atomic_write_bytes(lock_file, (tmp / "package-lock.json").read_bytes())
                log.note(f"wrote {lock_file}: commit it so every machine installs the same runtime", console=True)
        except WasmwheelError as exc:
            raise RuntimeError_(f"could not install the Pyodide {abi.pyodide_version} runtime: {exc} {hint}") from None
        got = read_json(tmp / "node_modules" / "pyodide" / "package.json").get("version")
        if got != abi.pyodide_version:
            raise RuntimeError_(f"npm installed pyodide {got}, but ABI {abi.name} needs {abi.pyodide_version}; "
                                f"fix {lock_file}")
        replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
