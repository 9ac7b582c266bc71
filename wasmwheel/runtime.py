"""The Pyodide runtime per ABI: the npm ``pyodide`` package at the ABI's exact version.

Installed with ``npm ci`` from the lock committed under ``abi/runtimes/<version>/``
into the cache, once per version (wasmwheel.toolchain.npm), and reused by every smoke step of
the ABI, with a boot snapshot of a fresh interpreter beside it (see smokeserver.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wasmwheel.audit import runtime_exports
from wasmwheel.fsutil import atomic_write_bytes
from wasmwheel.model.abi import Abi
from wasmwheel.model.layout import Layout
from wasmwheel.runner import StepLog, capture
from wasmwheel.smoke import server as smokeserver
from wasmwheel.toolchain.npm import NpmPackage, ensure_installed, npm_tools


def runtime_package(abi: Abi, layout: Layout) -> NpmPackage:
    return NpmPackage(
        "pyodide",
        abi.pyodide_version,
        layout.runtime_dir(abi),
        layout.runtime_lock_dir(abi),
        "Pyodide runtime for wasmwheel smoke tests",
        "Pyodide",
    )


def provision_runtime(abi: Abi, layout: Layout, log: StepLog) -> dict[str, Any]:
    pkg = runtime_package(abi, layout)
    _, node = npm_tools()
    node_version = capture([node, "--version"], log=log, what="node --version")
    fresh = ensure_installed(pkg, layout.settings.npm_registry, log)
    if fresh or runtime_exports.load(pkg.lock_dir) is None:
        _record_exports(pkg.package_dir, layout.runtime_exports(abi), log)
    snapshot = smokeserver.ensure_snapshot(pkg.package_dir, log)  # smoke tests boot from it (smokeserver.py)
    return {
        "runtime": str(pkg.package_dir),
        "pyodide": abi.pyodide_version,
        "node": node_version,
        "snapshot": str(snapshot) if snapshot else None,
    }


def _record_exports(package: Path, path: Path, log: StepLog) -> None:
    """Keep abi/runtimes/<version>/exports.json.gz (``path``: what the audit checks imports against) in
    step with the installed runtime: written when missing, rewritten if the runtime says otherwise."""
    data = runtime_exports.encode(runtime_exports.extract(package))
    try:
        same = path.read_bytes() == data
    except OSError:
        same = False
    if not same:
        atomic_write_bytes(path, data)
        log.note(f"wrote {path}: commit it (the audit checks side modules' imports against it)", console=True)


def installed_runtime(layout: Layout, abi: str) -> Path | None:
    """The npm package folder the ABI's pyodide step installed (its stamp's facts), or None before it ran."""
    from wasmwheel.fsutil import read_json
    from wasmwheel.model.facts import RuntimeFacts

    try:
        runtime = RuntimeFacts.from_stamp(read_json(layout.stamp("pyodide", abi))).runtime
    except (OSError, ValueError, TypeError):
        return None
    return Path(runtime) if runtime else None
