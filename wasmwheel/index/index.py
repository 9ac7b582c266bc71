"""The index of built wheels, per ABI: PEP 503 HTML, PEP 691 JSON, and a pyodide-lock.json.

``build/index/<abi>/`` holds the ABI's wheels whose smoke test passed (hard links to
``build/dist/<abi>``; ``dist/<abi>/tested/`` has a marker for each, written by the smoke step),
``simple/`` (PEP 503 pages, each with a PEP 691 ``index.json`` beside it) and
``pyodide-lock.json``: the ABI's runtime lock with the collection's packages added
(replacing Pyodide's own build of a package where both exist), so that
``loadPyodide({lockFileURL})`` + ``loadPackage("<name>")`` installs a built crate.

The lock's ``file_name`` entries are relative to the lock file, which Pyodide >= 0.28
resolves against the lock's own URL. Pyodide 0.27 (ABI 2024_0) resolves them against
``indexURL`` (browser) or ``packageCacheDir`` (Node): pass ``packageCacheDir`` / host
the index there, or set ``base_url`` to make every ``file_name`` absolute. Pyodide's own
packages keep absolute URLs of the Pyodide CDN.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from wasmwheel.fsutil import read_json, replace_dir, sha256_file, staged_dir
from wasmwheel.model.abi import Abi
from wasmwheel.model.errors import plural
from wasmwheel.model.layout import Layout, tested_dir, tested_marker
from wasmwheel.model.recipe import Recipe, index_inputs
from wasmwheel.runner import StepLog

if TYPE_CHECKING:  # annotations only: a doit start does not import the facts' classes
    from wasmwheel.model.facts import RuntimeFacts

PYODIDE_CDN = "https://cdn.jsdelivr.net/pyodide/v{version}/full/"
PEP691_TYPE = "application/vnd.pypi.simple.v1+json"


def dist_listing(dist_dir: Path) -> list[list[Any]]:
    """What the index is made from: each wheel's and each smoke-test marker's name, size and mtime
    (stat only)."""
    out = []
    for path in [*sorted(Path(dist_dir).glob("*.whl")), *sorted(tested_dir(dist_dir).glob("*.json"))]:
        st = path.stat()
        out.append([path.name, st.st_size, st.st_mtime_ns])
    return out


def tested_wheels(dist_dir: Path) -> tuple[dict[Path, str], dict[str, str]]:
    """The wheels of ``dist_dir`` whose smoke test passed (a marker in ``tested/`` names their sha256),
    with their sha256, and the others with the reason they are left out of the index."""
    tested: dict[Path, str] = {}
    left_out: dict[str, str] = {}
    for wheel in sorted(Path(dist_dir).glob("*.whl")):
        try:
            marker = read_json(tested_marker(dist_dir, wheel.name))
        except (OSError, ValueError):
            left_out[wheel.name] = "its smoke test has not passed (it failed, was skipped or has not run yet)"
            continue
        digest = sha256_file(wheel)
        if not isinstance(marker, dict) or marker.get("sha256") != digest:
            left_out[wheel.name] = "the smoke test that passed was of other bytes under this name"
            continue
        tested[wheel] = digest
    return tested, left_out


def listing_digest(dist_dir: Path, extra: Any = None) -> str:
    return hashlib.sha256(json.dumps([dist_listing(dist_dir), extra], sort_keys=True).encode()).hexdigest()


def index_step(
    abi: Abi, layout: Layout, recipes: dict[str, Recipe], runtime: RuntimeFacts, log: StepLog
) -> dict[str, Any]:
    """The index step: the index of build/dist/<abi>, with the digest of what it was made from."""
    dist = layout.dist_dir(abi.name)
    digest = listing_digest(dist, index_inputs(recipes, layout.settings.index_url))  # as IndexCurrent compares
    facts = build_index(
        abi,
        dist,
        layout.index_dir(abi.name),
        Path(runtime.runtime) / "pyodide-lock.json",
        recipes,
        layout.settings.index_url,
    )
    log.note(f"indexed {plural(len(facts['wheels']), 'wheel')} of ABI {abi.name} in {facts['index']}")
    for name, why in facts["left_out"].items():
        log.note(f"left out {name}: {why}", console=True)
    return {**facts, "digest": digest}


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def build_index(
    abi: Abi,
    dist_dir: Path,
    dest: Path,
    runtime_lock: Path | None,
    recipes: dict[str, Recipe],
    base_url: str | None = None,
) -> dict[str, Any]:
    """Write the index of ``dist_dir`` to ``dest`` (replaced as a whole, atomically)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with staged_dir(dest) as tmp:
        wheels, left_out = tested_wheels(Path(dist_dir))
        projects: dict[str, list[dict[str, Any]]] = {}
        for wheel, digest in wheels.items():
            name, version, _, _ = parse_wheel_filename(wheel.name)
            _link_or_copy(wheel, tmp / wheel.name)
            projects.setdefault(canonicalize_name(name), []).append(
                {"filename": wheel.name, "version": str(version), "sha256": digest, "size": wheel.stat().st_size}
            )
        _write_simple(tmp / "simple", projects, wheel_url(abi, base_url))
        lock = _pyodide_lock(abi, runtime_lock, projects, recipes, base_url)
        (tmp / "pyodide-lock.json").write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n")
        replace_dir(tmp, dest)
    return {"index": str(dest), "wheels": [w.name for w in wheels], "projects": sorted(projects), "left_out": left_out}


def wheel_url(abi: Abi, base_url: str | None):
    """How the simple pages link a wheel: under ``base_url`` (WASMWHEEL_INDEX_URL) when it is set, else
    root-relative, ``/<abi>/<file>``, as `doit serve` serves build/index. Not relative to the page:
    micropip 0.9.0, the newest for Python 3.12 (ABI 2024_0), resolves a relative link against the server's
    root rather than the page (it fetched /x.whl for href="../../x.whl" on /2024_0/simple/x/), where
    0.11 and pip resolve all three forms right."""
    if base_url:
        return lambda filename: f"{base_url.rstrip('/')}/{filename}"
    return lambda filename: f"/{abi.name}/{filename}"


def _write_simple(root: Path, projects: dict[str, list[dict[str, Any]]], url) -> None:
    root.mkdir(parents=True)
    meta = {"api-version": "1.1"}
    links = "".join(f'    <a href="{html.escape(p)}/">{html.escape(p)}</a><br>\n' for p in sorted(projects))
    (root / "index.html").write_text(
        '<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" content="1.1">\n'
        "    <title>Simple index</title>\n  </head>\n  <body>\n" + links + "  </body>\n</html>\n"
    )
    (root / "index.json").write_text(
        json.dumps({"meta": meta, "projects": [{"name": p} for p in sorted(projects)]}, indent=1) + "\n"
    )
    for project, files in projects.items():
        folder = root / project
        folder.mkdir()
        anchors = "".join(
            f'    <a href="{html.escape(url(f["filename"]))}#sha256={f["sha256"]}">'
            f"{html.escape(f['filename'])}</a><br>\n"
            for f in files
        )
        (folder / "index.html").write_text(
            '<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" content="1.1">\n'
            f"    <title>Links for {html.escape(project)}</title>\n  </head>\n  <body>\n"
            f"    <h1>Links for {html.escape(project)}</h1>\n{anchors}  </body>\n</html>\n"
        )
        (folder / "index.json").write_text(
            json.dumps(
                {
                    "meta": meta,
                    "name": project,
                    "versions": sorted({f["version"] for f in files}),
                    "files": [
                        {
                            "filename": f["filename"],
                            "url": url(f["filename"]),
                            "hashes": {"sha256": f["sha256"]},
                            "size": f["size"],
                        }
                        for f in files
                    ],
                },
                indent=1,
            )
            + "\n"
        )


def _pyodide_lock(
    abi: Abi,
    runtime_lock: Path | None,
    projects: dict[str, list[dict[str, Any]]],
    recipes: dict[str, Recipe],
    base_url: str | None,
) -> dict[str, Any]:
    base = read_json(runtime_lock) if runtime_lock and Path(runtime_lock).exists() else {"info": {}, "packages": {}}
    cdn = PYODIDE_CDN.format(version=abi.pyodide_version)
    packages: dict[str, Any] = {}
    template: dict[str, Any] = {}
    for name, base_entry in base.get("packages", {}).items():
        entry = dict(base_entry)
        if "://" not in entry.get("file_name", ""):
            entry["file_name"] = cdn + entry["file_name"]
        packages[name] = entry
        if not template and entry.get("package_type") == "package":
            template = entry
    info = dict(base.get("info", {}))
    info.setdefault("abi_version", abi.name)
    info.setdefault("arch", "wasm32")
    info.setdefault("python", abi.python)
    prefix = base_url.rstrip("/") + "/" if base_url else ""
    for project, files in projects.items():
        newest = max(files, key=lambda f: parse_wheel_filename(f["filename"])[1])
        recipe = recipes.get(project)
        imports = list(recipe.import_names) if recipe else [project.replace("-", "_")]
        depends = []
        if recipe:
            wanted = [*recipe.depends.test, *(canonicalize_name(Requirement(r).name) for r in recipe.test.requirements)]
            depends = [d for d in wanted if d in packages or d in projects]
        entry = dict(template)
        entry.update(
            {
                "name": project,
                "version": newest["version"],
                "file_name": prefix + newest["filename"],
                "install_dir": "site",
                "sha256": newest["sha256"],
                "package_type": "package",
                "imports": imports,
                "depends": depends,
                "unvendored_tests": False,
            }
        )
        packages[project] = entry
    return {"info": info, "packages": dict(sorted(packages.items()))}
