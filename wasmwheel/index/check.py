"""`python -m wasmwheel check-index`: install every crate of the index by name, as users do, and test it.

For each ABI with an index (``build/index/<abi>/``, written by ``doit index``), the index is
served (as ``doit serve`` serves it) unless ``--url`` names a published one, and in that ABI's
real Pyodide under Node micropip installs each indexed crate by name from ``<url>/<abi>/simple/``
and the recipe's test runs, in a fresh interpreter per crate. micropip is PyPI's wheel for the
ABI's Python, loaded first with the recipe's test requirements (which hold the crate's own
Python dependencies); crates of the collection that a crate requires come from the index.

``--browser``: the served try page (wasmwheel/index/js/try.html) also loads a crate in headless Chromium through
``loadPyodide({lockFileURL})`` + ``loadPackage``, the runtime coming from another origin (CORS),
as from a CDN.

The results go to ``build/index-check.json``; the exit status is 1 when a crate failed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from wasmwheel.fsutil import read_json, write_json
from wasmwheel.model.errors import WasmwheelError, plural

if TYPE_CHECKING:
    from wasmwheel.model.recipe import Recipe
    from wasmwheel.pipeline.graph import Project

# micropip from PyPI, per Python: 0.9.0 is the newest release that installs on Python 3.12 (ABI 2024_0,
# Pyodide 0.27); 0.11 imports on the runtimes from Pyodide 0.28 on (https://pypi.org/project/micropip/#history,
# measured in each runtime by tests/test_lean.py). packaging is the one package micropip imports.
MICROPIP = {"3.12": "micropip==0.9.0"}
MICROPIP_DEFAULT = "micropip==0.11.1"
PACKAGING = "packaging==26.1"
INSTALLED = "WASMWHEEL-INSTALLED "


class IndexCheckError(WasmwheelError):
    pass


@dataclass(frozen=True)
class Installed:
    """One crate installed from the index by name and tested (or not)."""

    abi: str
    crate: str
    ok: bool
    version: str = ""  # what micropip installed
    stage: str = ""  # where it failed: "install" (micropip) or one of smoke.STAGES
    error: str = ""
    seconds: float = 0.0  # install + test
    environment: str = "node"
    tested: bool = False  # the recipe's test ran and passed (not only an import: the project has a recipe)


def recipes_by_project(project: Project) -> dict[str, Recipe]:
    """The recipes by the name the index lists their package under (PEP 503 normalized: pydantic_core is
    pydantic-core)."""
    return {canonicalize_name(r.package_name): r for r in project.recipes.recipes.values()}


def micropip_requirement(python_minor: str) -> str:
    return MICROPIP.get(python_minor, MICROPIP_DEFAULT)


def install_script(package: str, version: str, simple_url: str, test: str) -> str:
    """Python for the runtime: micropip installs ``package`` by name from the index (dependencies from the
    index too), says what it installed, then the recipe's test runs."""
    return (
        "import micropip\n"
        f"await micropip.install({package!r}, index_urls=[{simple_url + '{package_name}/'!r}])\n"
        "from importlib.metadata import version as _version\n"
        f"_got = _version({package!r})\n"
        f"print({INSTALLED!r} + _got)\n"
        f"assert _got == {version!r}, f'micropip installed {package} ' + _got + ', the index lists {version}'\n"
        "del _version, _got\n"
        f"{test}\n"
    )


def indexed_projects(index_dir: Path) -> list[str]:
    """The projects of an ABI's index (its PEP 691 root page)."""
    try:
        return [p["name"] for p in read_json(index_dir / "simple" / "index.json")["projects"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise IndexCheckError(f"{index_dir}: no index (run `doit index:{index_dir.name}` first)") from None


@contextmanager
def served(root: Path, url: str | None) -> Iterator[str]:
    """The base URL of the index: ``url`` as given, or ``root`` served on a free local port meanwhile."""
    if url:
        yield url.rstrip("/")
        return
    from wasmwheel.index.serve import make_server

    server = make_server(root, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def check_index(
    project: Project,
    abis: Sequence[str] = (),
    crates: Sequence[str] = (),
    url: str | None = None,
    browser_crate: str | None = None,
    progress: Callable[[str], None] = print,
) -> list[Installed]:
    """Install every indexed crate (or ``crates``) by name in each ABI's Pyodide (or ``abis``) and run its test."""
    from wasmwheel.runner import StepLog
    from wasmwheel.smoke import smoke, wheelhouse

    layout = project.layout
    root = layout.build / "index"
    wanted = list(abis) or ([a for a in sorted(project.abis) if (layout.index_dir(a) / "pyodide-lock.json").exists()])
    if not wanted:
        raise IndexCheckError(f"{root}: no index (run `doit index` first)")
    unknown = [a for a in wanted if a not in project.abis]
    if unknown:
        raise IndexCheckError(f"unknown ABI {', '.join(unknown)}; known: {', '.join(sorted(project.abis))}")
    results: list[Installed] = []
    with served(root, url) as base:
        for abi_name in wanted:
            abi = project.abis[abi_name]
            names = [n for n in indexed_projects(layout.index_dir(abi_name)) if not crates or n in crates]
            runtime = _runtime(project, abi_name)
            by_project = recipes_by_project(project)
            simple = f"{base}/{abi_name}/simple/"
            progress(
                f"{abi_name}: installing {plural(len(names), 'crate')} from {simple} with micropip "
                f"in Pyodide {abi.pyodide_version}"
            )
            for name in names:
                recipe = by_project.get(name)  # None: a wheel in the index that no recipe builds any more
                with StepLog(
                    layout.build / "logs" / abi_name / (recipe.name if recipe else name) / "index-check.log",
                    title=f"micropip install {name} from {simple} in Pyodide {abi.pyodide_version}",
                ) as log:
                    tools = wheelhouse.fetch_test_requirements(
                        [PACKAGING, micropip_requirement(abi.python_minor)], abi.python, layout, log, "the index check"
                    )
                    needs = wheelhouse.fetch_test_requirements(
                        recipe.test.requirements if recipe else [],
                        abi.python,
                        layout,
                        log,
                        recipe.path.name if recipe else name,
                    )
                    micropip = next(w for w in tools if w.name.startswith("micropip-"))
                    version = _indexed_version(layout.index_dir(abi_name), name)
                    test = recipe.test.script if recipe else f"import {name.replace('-', '_')}"
                    job = smoke.SmokeJob(
                        wheel=micropip,
                        script=install_script(name, version, simple, test),
                        filename=f"check-index {name}",
                        timeout=recipe.test.timeout if recipe else 300,
                        python=abi.python_minor,
                        preload=tuple(w for w in (*tools, *needs) if w != micropip),
                    )
                    result = smoke.run_in_node(runtime, job, log, layout.settings)
                    got = next(
                        (
                            line[len(INSTALLED) :].strip()
                            for line in result.output.splitlines()
                            if line.startswith(INSTALLED)
                        ),
                        "",
                    )
                    # The script failed before it printed what micropip installed: the install did.
                    stage = "install" if not result.ok and result.stage == "test" and not got else result.stage
                    outcome = Installed(
                        abi=abi_name,
                        crate=name,
                        ok=result.ok,
                        version=got,
                        stage=stage,
                        error=""
                        if result.ok
                        else result.error.strip().splitlines()[-1][:300]
                        if result.error.strip()
                        else result.stage,
                        seconds=round(result.test_seconds, 3),
                        tested=result.ok and recipe is not None,
                    )
                results.append(outcome)
                progress(
                    f"  {'ok    ' if outcome.ok else 'FAILED'} {name} {outcome.version or version}"
                    + (f"  {outcome.seconds:.2f} s" if outcome.ok else f"  {outcome.stage}: {outcome.error}")
                    + ("" if outcome.tested or not outcome.ok else "  (no recipe: installed and imported only)")
                )
            if browser_crate:
                results.append(_browser(project, abi_name, base, runtime, browser_crate, names, progress))
    write_json(
        layout.build / "index-check.json",
        {"checked": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": [asdict(r) for r in results]},
    )
    return results


def _runtime(project: Project, abi: str) -> Path:
    from wasmwheel.runtime import installed_runtime

    runtime = installed_runtime(project.layout, abi)
    if runtime is None:
        raise IndexCheckError(f"Pyodide for {abi} is not installed: run `doit pyodide:{abi}`")
    return runtime


def _indexed_version(index_dir: Path, project: str) -> str:
    from packaging.utils import parse_wheel_filename

    files = read_json(index_dir / "simple" / project / "index.json")["files"]
    return str(max(parse_wheel_filename(f["filename"])[1] for f in files))


def _browser(
    project: Project,
    abi: str,
    base: str,
    runtime: Path,
    crate: str,
    names: Sequence[str],
    progress: Callable[[str], None],
) -> Installed:
    """The try page, served from the index, loads ``crate`` in headless Chromium through the lock file."""
    from wasmwheel.index.serve import try_url
    from wasmwheel.runner import StepLog
    from wasmwheel.smoke import browser

    if crate not in names:
        raise IndexCheckError(f"--browser {crate}: not in the {abi} index ({', '.join(names) or 'empty'})")
    recipe = recipes_by_project(project).get(canonicalize_name(crate))
    imports = list(recipe.import_names) if recipe else [crate.replace("-", "_")]
    # The recipe's test may need test requirements the lock does not have: import the modules, name the first.
    code = "".join(f"import {m}\n" for m in imports) + f"{imports[0]}.__name__"
    chromium = browser.find_chromium(project.layout.settings.chromium)
    log_path = project.layout.build / "logs" / abi / (recipe.name if recipe else crate) / "index-check-browser.log"
    with browser.file_server(browser.runtime_files(runtime)) as assets, browser.report_receiver() as (inbox, events):
        page = try_url(base, abi, package=crate, code=code, run="1", pyodide=f"{assets}/pyodide/", report=inbox)
        progress(f"  {abi}: headless Chromium opens {page}")
        with StepLog(log_path, title=f"loadPackage({crate!r}) in headless Chromium from {page}") as log:
            result = browser.open_page(page, events, 300, log, chromium)
            log.write(json.dumps(result) + "\n")
    ok = bool(result.get("ok")) and result.get("value") == imports[0]
    timings = result.get("timings") or {}
    outcome = Installed(
        abi=abi,
        crate=crate,
        ok=ok,
        stage=str(result.get("stage", "")),
        error="" if ok else str(result.get("error") or f"unexpected value {result.get('value')!r}"),
        seconds=round(sum(float(timings.get(k, 0)) for k in ("load", "test")), 3),
        environment="browser",
    )
    progress(
        f"  {'ok    ' if ok else 'FAILED'} {crate} in headless Chromium (lockFileURL + loadPackage)"
        + (f"  {outcome.seconds:.2f} s" if ok else f"  {outcome.stage}: {outcome.error}")
    )
    return outcome


def summary(results: Sequence[Installed]) -> str:
    failed = [r for r in results if not r.ok]
    line = (
        f"{plural(sum(1 for r in results if r.ok), 'crate')} installed by name and tested"
        f" ({plural(len({r.abi for r in results}), 'ABI')})"
    )
    return line + (f"; {len(failed)} failed: " + ", ".join(f"{r.crate}@{r.abi}" for r in failed) if failed else "")
