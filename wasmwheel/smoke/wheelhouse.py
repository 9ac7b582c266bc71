"""Test requirements: a recipe's ``[test] requirements`` as local pure-Python wheels.

Pyodide's npm runtime has no package index offline, so the smoke test installs
its requirements from files. They are downloaded once per (Python version,
requirement list) with pip, for the ABI's Python and ``any`` platform, wheels only
(``--only-binary=:all:``), into ``<cache>/wheelhouse/<python>/<key>/``; the folder
appears complete or not at all, and later runs use it without the network. pip
takes its index from its own configuration (``PIP_INDEX_URL``, ``pip.conf``).

Limits of pip's cross-target download: environment markers of dependencies are
evaluated for this machine, not for Emscripten; a package with compiled code
has no pure-Python wheel and must come from a recipe instead.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from wasmwheel.fsutil import file_lock, read_json, replace_dir, staged_dir, write_json
from wasmwheel.model.errors import CommandFailed, WasmwheelError
from wasmwheel.model.layout import Layout
from wasmwheel.runner import StepLog, run

MANIFEST = "wheelhouse.json"
_NOT_FOUND_RE = re.compile(r"No matching distribution found for (\S+)")


class RequirementsUnavailable(WasmwheelError):
    pass


def key(requirements: Sequence[str], python: str) -> str:
    identity = json.dumps({"python": python, "requirements": sorted(requirements)})
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def folder(layout: Layout, requirements: Sequence[str], python: str) -> Path:
    return layout.cache / "wheelhouse" / python / key(requirements, python)


def cached(path: Path) -> list[Path] | None:
    """The wheels of a complete wheelhouse folder, or None."""
    try:
        wheels = [path / name for name in read_json(path / MANIFEST)["wheels"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return wheels if all(w.is_file() for w in wheels) else None


def pip_python_version(python: str) -> str:
    """What pip's --python-version takes ("3.15.0" for the ABI's "3.15.0rc1": pip refuses a pre-release)."""
    m = re.match(r"\d+(\.\d+){0,2}", python)
    if not m:
        raise ValueError(f"not a Python version: {python!r}")
    return m.group(0)


def _pip_download(requirements: Sequence[str], python: str, dest: Path, log: StepLog) -> None:
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--only-binary=:all:",
            "--platform",
            "any",
            "--implementation",
            "py",
            "--abi",
            "none",
            "--python-version",
            pip_python_version(python),
            "--dest",
            str(dest),
            "--progress-bar",
            "off",
            "--disable-pip-version-check",
            "--no-input",
            "--",
            *requirements,
        ],
        log=log,
        what=f"pip download (test requirements for Python {python})",
        timeout=900,
    )


def _missing(requirements: Sequence[str], python: str, log: StepLog) -> list[str]:
    """Which requirements have no pure-Python wheel (pip names only the first it meets)."""
    missing = []
    for requirement in requirements:
        with tempfile.TemporaryDirectory(prefix="wasmwheel-probe-") as tmp:
            try:
                _pip_download([requirement], python, Path(tmp), log)
            except CommandFailed as exc:
                found = _NOT_FOUND_RE.findall(exc.output_tail)
                missing.append(
                    requirement if not found or found[-1] == requirement else f"{requirement} (needs {found[-1]})"
                )
    return missing


def fetch_test_requirements(
    requirements: Sequence[str], python: str, layout: Layout, log: StepLog, recipe_file: str = "the recipe"
) -> list[Path]:
    """Local wheels for ``requirements`` (and what they need), downloaded once. ``python``: the ABI's, e.g. "3.14.2"."""
    if not requirements:
        return []
    path = folder(layout, requirements, python)
    wheels = cached(path)
    if wheels is not None:
        log.write(f"# test requirements from {path}: {', '.join(w.name for w in wheels)}\n")
        return wheels
    with file_lock(path, what="the test-requirements wheelhouse", log=log):
        wheels = cached(path)
        if wheels is not None:
            return wheels
        log.note(f"downloading test requirements for Python {python}: {', '.join(requirements)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with staged_dir(path) as tmp:
            try:
                _pip_download(requirements, python, tmp, log)
            except CommandFailed as exc:
                if not _NOT_FOUND_RE.search(exc.output_tail):
                    raise RequirementsUnavailable(
                        f"could not download the test requirements of {recipe_file}: {exc.reason()}"
                    ) from None
                missing = _missing(requirements, python, log) or _NOT_FOUND_RE.findall(exc.output_tail)
                raise RequirementsUnavailable(
                    f"test requirements of {recipe_file} not available as pure-Python wheels for Python {python}: "
                    f"{', '.join(missing)} (fix [test] requirements, or point pip at an index that has them, "
                    f"e.g. PIP_INDEX_URL; a package with compiled code must come from a recipe)"
                ) from None
            names = sorted(p.name for p in tmp.glob("*.whl"))
            impure = [n for n in names if not n.endswith("-none-any.whl")]
            if impure:
                raise RequirementsUnavailable(
                    f"test requirements of {recipe_file}: not pure-Python wheels: {', '.join(impure)}"
                )
            write_json(tmp / MANIFEST, {"python": python, "requirements": list(requirements), "wheels": names})
            replace_dir(tmp, path)
    return [path / name for name in names]
