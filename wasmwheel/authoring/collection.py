"""The collection's status page (``docs/collection.md``) and the comparison with official wheels.

``python -m wasmwheel collection`` renders, from the build report (``build/report.json``, which
keeps every step's last outcome, not only the last run's), one row per recipe and one column per
ABI: built (wheel size, compile time, test time), skipped (the recipe's reason), failed or blocked
(the step, its error line and the hint). The page's data is kept beside it (``docs/collection.json``):
a build of some crates or ABIs updates their cells and keeps the others', so the page never needs
one build of everything; a cell of an older version of a recipe is dropped, and skips always show
the recipes' current reasons. ``--compare`` first fetches, for every built wheel whose
package has an official wheel for the same ABI on PyPI, that wheel, and runs the recipe's test
with each wheel in turn in the ABI's Pyodide (the same runtime, alternating, the fastest of
``--runs``): wheel and extension-module sizes, test times. The results are kept in
``build/collection-compare.json``, then in the page's data, and shown on the page.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from wasmwheel.fsutil import atomic_write_text, read_json, write_json
from wasmwheel.model.errors import WasmwheelError, plural
from wasmwheel.pipeline.report import _fmt_size, _md_escape, error_summary

if TYPE_CHECKING:  # pragma: no cover
    from wasmwheel.authoring.pypi import DistFile
    from wasmwheel.model.abi import Abi
    from wasmwheel.pipeline.graph import Project

PAGE = Path("docs") / "collection.md"
DATA_SUFFIX = ".json"  # the page's data, beside it: docs/collection.json
# What a kept cell holds of a report row (the rest is the run's detail, in build/report.json).
ROW_FIELDS = (
    "crate",
    "version",
    "abi",
    "status",
    "wheel",
    "size",
    "test_seconds",
    "failed_step",
    "blocked_step",
    "error",
    "hint",
    "built",
)
BUILT_STATUSES = ("ok", "xpass", "xfail", "failed", "blocked")  # what a build did; skipped comes from the recipe


class CollectionError(WasmwheelError):
    pass


# -- official wheels ----------------------------------------------------------------------------


def _python_ok(tag: Tag, abi: Abi) -> bool:
    """Whether the ABI's CPython runs a wheel of this tag: cpXY for its own version, or abi3 built
    for an older or equal one."""
    ours = abi.cp_tag
    if tag.interpreter == ours and tag.abi in (ours, "none"):
        return True
    if tag.abi == "abi3" and tag.interpreter.startswith("cp"):
        try:
            return int(tag.interpreter[3:]) <= int(ours[3:]) and tag.interpreter[2] == ours[2]
        except ValueError:
            return False
    return False


def official_wheel(files: Sequence[DistFile], abi: Abi) -> DistFile | None:
    """The release's wheel that the ABI's Pyodide installs: one of the ABI's platform tags (PEP 783's
    or a legacy one) and a Python tag its CPython runs. A version-specific wheel wins over abi3."""
    found: list[tuple[int, DistFile]] = []
    for f in files:
        if f.packagetype != "bdist_wheel" or f.yanked:
            continue
        try:
            _, _, _, tags = parse_wheel_filename(f.filename)
        except InvalidWheelFilename:
            continue
        for tag in tags:
            if tag.platform in abi.all_platform_tags and _python_ok(tag, abi):
                found.append((0 if tag.abi != "abi3" else 1, f))
                break
    return min(found, key=lambda item: item[0])[1] if found else None


def module_size(wheel: Path) -> int:
    """Bytes of the wheel's largest extension module, uncompressed (what the runtime loads)."""
    with zipfile.ZipFile(wheel) as zf:
        return max((i.file_size for i in zf.infolist() if i.filename.endswith(".so")), default=0)


@dataclass(frozen=True)
class Comparison:
    crate: str
    abi: str
    ours: str  # wheel file names
    official: str | None  # None: PyPI has no wheel for this ABI (``reason`` says what it has)
    reason: str = ""
    our_size: int = 0
    official_size: int = 0
    our_module: int = 0
    official_module: int = 0
    our_test: float | None = None  # seconds: the fastest of the runs (load + test)
    official_test: float | None = None
    runs: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        """A kept comparison (JSON), ignoring keys this version does not know."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @property
    def size_ratio(self) -> float | None:
        return self.our_module / self.official_module if self.official_module else None

    @property
    def time_ratio(self) -> float | None:
        """Our test time over the official wheel's (1.10: ours is 10 % slower)."""
        if self.our_test is None or not self.official_test:
            return None
        return self.our_test / self.official_test


def compare(
    project: Project,
    rows: Sequence[dict[str, Any]],
    *,
    runs: int = 3,
    pypi: Any = None,
    progress: Callable[[str], None] = print,
) -> list[Comparison]:
    """Compare each built wheel (report rows with a wheel that passed) with PyPI's wheel for the
    same package, version and ABI, in that ABI's Pyodide. Writes ``build/collection-compare.json``."""
    from wasmwheel import download
    from wasmwheel.authoring.pypi import PyPI, PyPIError
    from wasmwheel.runner import StepLog
    from wasmwheel.runtime import installed_runtime
    from wasmwheel.smoke import smoke, wheelhouse

    layout = project.layout
    pypi = pypi or PyPI(layout.settings.pypi_url)
    out: list[Comparison] = []
    releases: dict[str, Any] = {}
    for row in rows:
        if row.get("status") != "ok" or not row.get("wheel"):
            continue
        recipe = project.recipes.recipes[row["crate"]]
        abi = project.abis[row["abi"]]
        ours = layout.dist_dir(abi.name) / row["wheel"]
        if not ours.exists():
            continue
        key = f"{recipe.package_name}=={recipe.version}"
        if key not in releases:
            try:
                releases[key] = pypi.release(recipe.package_name, recipe.version).files
            except PyPIError as exc:
                releases[key] = exc
        files = releases[key]
        base = {
            "crate": recipe.name,
            "abi": abi.name,
            "ours": ours.name,
            "our_size": ours.stat().st_size,
            "our_module": module_size(ours),
        }
        if isinstance(files, Exception):
            out.append(Comparison(official=None, reason=f"PyPI: {files}", **base))
            continue
        official = official_wheel(files, abi)
        if official is None:
            wasm = sorted(
                {
                    t.platform
                    for f in files
                    if f.filename.endswith(".whl")
                    for t in parse_wheel_filename(f.filename)[3]
                    if "wasm32" in t.platform
                }
            )
            reason = (
                f"PyPI has {recipe.package_name} {recipe.version} wheels for {', '.join(wasm)} only"
                if wasm
                else f"PyPI has no wasm wheel of {recipe.package_name} {recipe.version}"
            )
            out.append(Comparison(official=None, reason=reason, **base))
            continue
        with StepLog(
            layout.log("compare", abi.name, recipe.name),
            title=f"{ours.name} vs {official.filename} in Pyodide {abi.pyodide_version}",
        ) as log:
            theirs = download.fetch(
                download.Origin(official.url), layout.download(official.sha256, official.filename), official.sha256, log
            )
            requirements = wheelhouse.fetch_test_requirements(
                recipe.test.requirements, abi.python, layout, log, recipe.path.name
            )
            runtime = installed_runtime(layout, abi.name)
            if runtime is None:
                raise CollectionError(f"Pyodide for {abi.name} is not installed: run `doit pyodide:{abi.name}`")
            progress(
                f"compare {recipe.name}@{abi.name}: {ours.name} vs {official.filename} ({plural(runs, 'run')} each)"
            )
            times: dict[str, list[float]] = {"ours": [], "official": []}
            for _ in range(runs):
                for who, wheel in (("ours", ours), ("official", theirs)):
                    job = smoke.SmokeJob(
                        wheel=wheel,
                        script=recipe.test.script,
                        filename=f"{recipe.path.name} [test] script",
                        timeout=recipe.test.timeout,
                        python=abi.python_minor,
                        preload=tuple(requirements),
                    )
                    result = smoke.run_in_node(runtime, job, log, layout.settings)
                    log.write(f"# {who}: {'ok' if result.ok else 'FAILED: ' + result.error[:200]} {result.timings}\n")
                    if result.ok:
                        times[who].append(result.test_seconds)
            out.append(
                Comparison(
                    official=official.filename,
                    official_size=theirs.stat().st_size,
                    official_module=module_size(theirs),
                    our_test=min(times["ours"], default=None),
                    official_test=min(times["official"], default=None),
                    runs=runs,
                    reason="" if times["official"] else "the official wheel failed the recipe's test (see compare.log)",
                    **base,
                )
            )
    save_comparisons(project, out)
    return out


def comparisons_path(project: Project) -> Path:
    return project.layout.comparisons


def save_comparisons(project: Project, found: Sequence[Comparison]) -> None:
    """Merge into the kept comparisons (a run for some crates keeps the others')."""
    path = comparisons_path(project)
    kept = {f"{c['crate']}@{c['abi']}": c for c in load_comparison_dicts(path)}
    kept.update({f"{c.crate}@{c.abi}": asdict(c) for c in found})
    write_json(path, [kept[k] for k in sorted(kept)])


def load_comparison_dicts(path: Path) -> list[dict[str, Any]]:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def load_comparisons(project: Project) -> list[Comparison]:
    return [Comparison.from_dict(c) for c in load_comparison_dicts(comparisons_path(project))]


# -- the page -----------------------------------------------------------------------------------


def _cell(row: dict[str, Any]) -> str:
    status = row.get("status")
    if status in ("ok", "xpass", "xfail"):
        compile_s = ((row.get("steps") or {}).get("compile") or {}).get("seconds")
        test = row.get("test_seconds")
        parts = ["**built**" if status == "ok" else f"**{status}**", _fmt_size(row.get("size"))]
        if compile_s is not None:
            parts.append(f"compile {compile_s:.0f} s")
        if test is not None:
            parts.append(f"test {test:.2f} s")
        return " · ".join(p for p in parts if p)
    if status == "skipped":
        return "skipped: " + _md_escape(row.get("reason", ""))
    if status in ("failed", "blocked"):
        step = row.get("failed_step") or row.get("blocked_step") or ""
        text = (
            f"**{status.upper()}**"
            + (f" ({step})" if step else "")
            + ": "
            + _md_escape(error_summary(row.get("error", "")))
        )
        if row.get("hint"):
            text += " — hint: " + _md_escape(row["hint"])
        return text
    return "not built yet"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def kept_row(row: dict[str, Any], generated: str) -> dict[str, Any]:
    """The part of a report row the page keeps: its outcome, size and times, and when it was built."""
    out = {k: row[k] for k in ROW_FIELDS if k in row and row[k] not in (None, "")}
    compile_s = ((row.get("steps") or {}).get("compile") or {}).get("seconds")
    if compile_s is not None:
        out["steps"] = {"compile": {"seconds": compile_s}}
    out.setdefault("built", generated)
    return out


def merge(
    project: Project, kept: dict[str, Any], report: dict[str, Any] | None, comparisons: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """The page's data: ``kept`` (the last page's) updated by the build report's cells that a build made
    and by new comparisons; cells of recipes that are gone or now at another version are dropped."""
    recipes = project.recipes.recipes
    rows = {(r["crate"], r["abi"]): r for r in kept.get("rows", [])}
    if report:
        generated = str(report.get("generated", ""))
        for row in report.get("rows", []):
            if row.get("status") in BUILT_STATUSES:
                rows[(row["crate"], row["abi"])] = kept_row(row, generated)
    rows = {k: r for k, r in rows.items() if k[0] in recipes and r.get("version") == recipes[k[0]].version}
    compared = {f"{c['crate']}@{c['abi']}": c for c in (*kept.get("comparisons", []), *comparisons)}
    current = {f"{k[0]}@{k[1]}": r.get("wheel") for k, r in rows.items()}
    compared = {k: c for k, c in compared.items() if k in current and c.get("ours") == current[k]}
    return {
        "toolchain": (report or {}).get("toolchain") or kept.get("toolchain") or project.toolchain,
        "rows": [rows[k] for k in sorted(rows)],
        "comparisons": [compared[k] for k in sorted(compared)],
    }


def render(project: Project, report: dict[str, Any], comparisons: Sequence[Comparison] = ()) -> str:
    """docs/collection.md: every recipe a row, every ABI a column; then the official-wheel comparison.
    ``report``: the page's data (or a build report): its rows' built cells; skips come from the recipes."""
    abis = list(project.abi_names)
    recipes = project.recipes.recipes
    # Rows of this checkout's recipes and ABIs only (a merged report may hold others).
    rows = {
        (r["crate"], r["abi"]): r
        for r in report.get("rows", [])
        if r["crate"] in recipes and r["abi"] in abis and r.get("status") in BUILT_STATUSES
    }
    for name, recipe in recipes.items():
        for abi, reason in recipe.skips(abis, project.toolchain).items():
            rows[(name, abi)] = {"crate": name, "abi": abi, "status": "skipped", "reason": reason}
    built = sum(1 for r in rows.values() if r.get("status") == "ok")
    skipped = sum(1 for r in rows.values() if r.get("status") == "skipped")
    failed = sum(1 for r in rows.values() if r.get("status") in ("failed", "blocked"))
    dates = sorted(str(r["built"])[:10] for r in rows.values() if r.get("built"))
    when = (
        f"built {dates[0]} to {dates[-1]}"
        if dates and dates[0] != dates[-1]
        else f"built {dates[0]}"
        if dates
        else "nothing built yet"
    )
    out = [
        "# The collection",
        "",
        "Written by `python -m wasmwheel collection` from the build reports of real builds "
        f"(toolchain: {report.get('toolchain', project.toolchain)}; {when}), kept in `docs/collection.json`: "
        "a build updates the cells it made and keeps the others. "
        "A cell says what the last build of that crate for that ABI did: **built** (wheel size, compile "
        "time, the recipe's test in the ABI's Pyodide under Node: install + run), skipped (the recipe's "
        "reason), **FAILED**/**BLOCKED** (the step, its error, the hint), or not built yet.",
        "",
        f"{plural(len(recipes), 'recipe')} x {plural(len(abis), 'ABI')}: {built} built and tested, {skipped} skipped, "
        f"{failed} failed or blocked, {len(recipes) * len(abis) - built - skipped - failed} not built yet.",
        "",
        "| crate | version | " + " | ".join(abis) + " |",
        "|---|---|" + "---|" * len(abis),
    ]
    for name in sorted(recipes):
        recipe = recipes[name]
        cells = [_cell(rows.get((name, abi), {"crate": name, "abi": abi})) for abi in abis]
        out.append(f"| {name} | {recipe.version} | " + " | ".join(cells) + " |")
    for stem, err in sorted(project.recipes.errors.items()):
        out.append(f"| {stem} | invalid recipe | " + " | ".join(_md_escape(str(err)) for _ in abis) + " |")
    measured = [c for c in comparisons if c.crate in recipes]
    if measured:
        out += [
            "",
            "## Ours and the official wheels",
            "",
            "The same package version's wheel from PyPI for the same ABI, where there is one, and ours, "
            "each running the recipe's test in that ABI's Pyodide, alternately, the fastest of "
            "the runs. Module: the extension module's bytes (what the runtime loads). Ratios are ours / "
            "official: below 1.00x ours is smaller or faster.",
            "",
            "| crate | ABI | official wheel | module ours | module official | size "
            "| test ours | test official | time |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in sorted(measured, key=lambda c: (c.crate, c.abi)):
            if c.official is None:
                out.append(
                    f"| {c.crate} | {c.abi} | none: {_md_escape(c.reason)} | {_fmt_size(c.our_module)} | | | | | |"
                )
                continue
            out.append(
                "| "
                + " | ".join(
                    [
                        c.crate,
                        c.abi,
                        c.official,
                        _fmt_size(c.our_module),
                        _fmt_size(c.official_module),
                        _ratio(c.size_ratio),
                        "" if c.our_test is None else f"{c.our_test:.3f} s",
                        "" if c.official_test is None else f"{c.official_test:.3f} s",
                        _ratio(c.time_ratio),
                    ]
                )
                + " |"
            )
    return "\n".join(out) + "\n"


def data_path(page: Path) -> Path:
    return page.with_suffix(DATA_SUFFIX)


def write_page(project: Project, output: Path | None = None) -> Path:
    """Merge the build report (if any) into the page's kept data, then write the data and the page."""
    path = output or project.layout.settings.root / PAGE
    kept_path = data_path(path)
    try:
        kept = read_json(kept_path)
    except FileNotFoundError:
        kept = {}
    except (OSError, ValueError) as exc:
        raise CollectionError(
            f"{kept_path}: unreadable ({exc}); restore it from git or delete it to start "
            "the page from this build's report alone"
        ) from None
    report_path = project.layout.report_json
    try:
        report = read_json(report_path)
    except (OSError, ValueError):
        report = None
        if not kept:
            raise CollectionError(
                f"{report_path}: no build report (run `doit build` first; the page shows its results)"
            ) from None
    data = merge(project, kept, report, load_comparison_dicts(comparisons_path(project)))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(kept_path, data)
    atomic_write_text(path, render(project, data, [Comparison.from_dict(c) for c in data["comparisons"]]))
    return path
