"""npm packages pinned by a committed lock: the Pyodide runtimes and binaryen.

Each package version is installed with ``npm ci`` from the lock committed in the repository
(``abi/runtimes/<version>/`` for Pyodide, ``abi/tools/binaryen/<version>/`` for binaryen) into a
cache folder of its own, under a lock, and replaced as a whole: a folder that is there is complete.
A version without a committed lock is resolved once with ``npm install --save-exact`` and its lock
written back into the repository, to be committed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from wasmwheel.fsutil import (
    atomic_write_bytes,
    clean_stale_temps,
    file_lock,
    marker_matches,
    read_json,
    replace_dir,
    sha256_file,
    staged_dir,
    write_marker,
)
from wasmwheel.model.errors import WasmwheelError
from wasmwheel.runner import StepLog, run


class NpmError(WasmwheelError):
    pass


@dataclass(frozen=True)
class NpmPackage:
    """One exact version of an npm package, its cache folder and its committed lock folder."""

    name: str
    version: str
    folder: Path  # cache: <folder>/node_modules/<name>
    lock_dir: Path  # repository: package.json + package-lock.json
    purpose: str  # for package.json, e.g. "Pyodide runtime for wasmwheel smoke tests"
    title: str = ""  # for messages, e.g. "Pyodide" (default: the package name)

    @property
    def package_dir(self) -> Path:
        return self.folder / "node_modules" / self.name

    @property
    def lock_file(self) -> Path:
        return self.lock_dir / "package-lock.json"

    def package_json(self) -> str:
        return (
            json.dumps(
                {
                    "name": f"wasmwheel-{self.name}-{self.version}",
                    "private": True,
                    "description": self.purpose,
                    "dependencies": {self.name: self.version},
                },
                indent=2,
            )
            + "\n"
        )

    def wanted(self) -> dict:
        return {
            self.name: self.version,
            "lock_sha256": sha256_file(self.lock_file) if self.lock_file.exists() else None,
        }


def npm_tools() -> tuple[str, str]:
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        raise NpmError(
            "node and npm were not found on PATH: wasmwheel installs the Pyodide runtimes and binaryen "
            "with them (install Node.js >= 18, e.g. `apt-get install nodejs npm`)"
        )
    return npm, node


def ensure_installed(pkg: NpmPackage, registry: str, log: StepLog) -> bool:
    """Install ``pkg`` unless the cache already holds exactly it; returns True when it installed."""
    npm, _ = npm_tools()
    with file_lock(pkg.folder, what=f"{pkg.title or pkg.name} {pkg.version}", log=log):
        try:
            installed = read_json(pkg.package_dir / "package.json").get("version")
        except (OSError, ValueError):
            installed = None
        if installed == pkg.version and marker_matches(pkg.folder, pkg.wanted()):
            log.note(f"{pkg.title or pkg.name} {pkg.version} already installed in {pkg.folder}")
            return False
        _install(pkg, npm, registry, log)
        write_marker(pkg.folder, pkg.wanted())
        return True


def _install(pkg: NpmPackage, npm: str, registry: str, log: StepLog) -> None:
    folder = pkg.folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(folder.parent, prefix=f".{folder.name}.")  # of an interrupted install (under the lock)
    args_common = ["--no-audit", "--no-fund", "--registry", registry]
    hint = f"(registry {registry}; set WASMWHEEL_NPM_REGISTRY to a reachable npm registry or mirror)"
    what = f"{pkg.title or pkg.name} {pkg.version}"
    with staged_dir(folder) as tmp:
        (tmp / "package.json").write_text(pkg.package_json())
        try:
            if pkg.lock_file.exists():
                shutil.copyfile(pkg.lock_file, tmp / "package-lock.json")
                log.note(f"installing {what} from {pkg.lock_file}")
                run([npm, "ci", *args_common], log=log, cwd=tmp, what=f"npm ci ({what})", timeout=1800)
            else:
                log.note(f"no committed lock for {what}; resolving one")
                run(
                    [npm, "install", "--save-exact", *args_common],
                    log=log,
                    cwd=tmp,
                    what=f"npm install ({what})",
                    timeout=1800,
                )
                atomic_write_bytes(pkg.lock_dir / "package.json", (tmp / "package.json").read_bytes())
                atomic_write_bytes(pkg.lock_file, (tmp / "package-lock.json").read_bytes())
                log.note(
                    f"wrote {pkg.lock_file}: commit it so every machine installs the same {pkg.name}", console=True
                )
        except WasmwheelError as exc:
            raise NpmError(f"could not install {what}: {exc} {hint}") from None
        got = read_json(tmp / "node_modules" / pkg.name / "package.json").get("version")
        if got != pkg.version:
            raise NpmError(f"npm installed {pkg.name} {got}, but {pkg.version} is needed; fix {pkg.lock_file}")
        replace_dir(tmp, folder)
