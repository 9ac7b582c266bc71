"""Scale-out on GitHub Actions: split the collection into shards, and join what the shard jobs built.

``plan_shards`` turns the collection's crate x ABI builds into at most N shards, each a
list of doit targets (``smoke:<crate>@<abi>``, which pulls in compile, retag and audit),
balanced by the durations of the last ``build/report.json`` (the seconds of each row)
when there is one. Items without a duration weigh the median of the known ones;
without a usable report every item weighs 1. The result is deterministic: the same
recipes, ABI files and report give the same shards, whatever the order on disk.

Two rules keep shards cheap in CI:

- **One toolchain per shard.** With at least as many shards as ABIs, every shard builds
  for one ABI only, so it restores one ABI's toolchain cache; shards are shared out
  between ABIs by their total weight (the ABI with the largest load per shard gets the
  next one). With fewer shards than ABIs, whole ABIs are grouped.
- **Dependencies stay together.** Crates linked by ``[depends]`` build in the same shard
  for a given ABI, since a shard builds the wheels its crates need itself.

Inside those rules, units go to the least loaded shard, heaviest first (LPT).

``merge_shards`` joins the shard artifacts (``dist/<abi>/*.whl`` and ``report.json`` of
each) into one build folder: wheels copied in (a name that two shards built with
different bytes is an error), and one report whose row for each crate and ABI comes from
the shard that built it. ``doit index`` then writes the index of the whole collection (doit
rewrites build/report.json from its own steps: write the merged report elsewhere first).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmwheel.fsutil import atomic_write_text, sha256_file, temp_path_beside
from wasmwheel.model.errors import WasmwheelError
from wasmwheel.model.layout import dist_dir, report_json, tested_marker
from wasmwheel.pipeline.steps import last_crate_step, task_name

if TYPE_CHECKING:  # pragma: no cover
    from wasmwheel.pipeline.graph import Project

MAX_SHARDS = 256  # GitHub Actions runs at most 256 jobs per matrix


class ShardError(WasmwheelError):
    pass


@dataclass(frozen=True)
class Item:
    crate: str
    abi: str

    @property
    def task(self) -> str:
        """What a shard job runs for it: the last step of its build (which pulls in the ones before)."""
        return task_name(last_crate_step(), self.crate, self.abi)


@dataclass
class Shard:
    items: list[Item] = field(default_factory=list)
    weight: float = 0.0

    @property
    def abis(self) -> list[str]:
        return sorted({i.abi for i in self.items})

    @property
    def crates(self) -> list[str]:
        return sorted({i.crate for i in self.items})


# -- weights from the last report ---------------------------------------------------------


def read_durations(path: Path | None) -> tuple[dict[Item, float], list[str]]:
    """Seconds per (crate, ABI) from a build report, and warnings about what could not be used.

    A missing, unreadable or malformed report gives no durations (and a warning), never an
    error: the durations only balance the shards.
    """
    if path is None:
        return {}, []
    path = Path(path)
    if not path.exists():
        return {}, [f"no build report at {path}: every crate x ABI weighs the same"]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["rows"]
        if not isinstance(rows, list):
            raise TypeError("rows is not a list")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return {}, [
            f"ignoring the build report {path} ({type(exc).__name__}: {exc}): every crate x ABI weighs the same"
        ]
    durations: dict[Item, float] = {}
    bad = 0
    for row in rows:
        try:
            crate, abi, seconds = row["crate"], row["abi"], row.get("seconds")
            if not isinstance(crate, str) or not isinstance(abi, str):
                raise TypeError
        except (KeyError, TypeError, AttributeError):
            bad += 1
            continue
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0:
            durations[Item(crate, abi)] = float(seconds)
    warnings = [f"{path}: ignored {bad} malformed row(s)"] if bad else []
    return durations, warnings


def weigh(items: Iterable[Item], durations: dict[Item, float]) -> dict[Item, float]:
    """Each item's weight: its last duration, else the median of the known ones, else 1."""
    items = list(items)
    known = [durations[i] for i in items if i in durations]
    default = statistics.median(known) if known else 1.0
    return {i: durations.get(i, default) for i in items}


# -- planning -------------------------------------------------------------------------------


def collection_items(project: Project, crates: Iterable[str] = (), abis: Iterable[str] = ()) -> list[Item]:
    """Every crate x ABI the collection builds (valid ABI files only), optionally narrowed."""
    crates, abis = set(crates), set(abis)
    unknown = sorted(crates - set(project.recipes.recipes)) + sorted(abis - set(project.abis))
    if unknown:
        raise ShardError(f"unknown crate or ABI: {', '.join(unknown)} (known ABIs: {', '.join(sorted(project.abis))})")
    out = []
    for name, recipe in sorted(project.recipes.recipes.items()):
        if crates and name not in crates:
            continue
        for abi in recipe.abis(sorted(project.abis), project.toolchain):
            if not abis or abi in abis:
                out.append(Item(name, abi))
    return out


def _units(items: list[Item], links: dict[str, set[str]]) -> list[list[Item]]:
    """Per ABI, the items whose crates are linked by dependencies (connected components)."""
    by_abi: dict[str, set[str]] = {}
    for item in items:
        by_abi.setdefault(item.abi, set()).add(item.crate)
    units = []
    for abi, crates in sorted(by_abi.items()):
        seen: set[str] = set()
        for start in sorted(crates):
            if start in seen:
                continue
            component, stack = set(), [start]
            while stack:
                crate = stack.pop()
                if crate in component:
                    continue
                component.add(crate)
                stack.extend(c for c in links.get(crate, ()) if c in crates)
            seen |= component
            units.append([Item(c, abi) for c in sorted(component)])
    return units


def _lpt(units: list[list[Item]], weights: dict[Item, float], shards: list[Shard]) -> None:
    """Heaviest unit first, each onto the least loaded shard (the first of equals)."""

    def unit_weight(u: list[Item]) -> float:
        return sum(weights[i] for i in u)

    for unit in sorted(units, key=lambda u: (-unit_weight(u), u[0].abi, u[0].crate)):
        target = min(range(len(shards)), key=lambda s: (shards[s].weight, s))
        shards[target].items.extend(unit)
        shards[target].weight += unit_weight(unit)


def plan_shards(
    items: list[Item], count: int, weights: dict[Item, float], links: dict[str, set[str]] | None = None
) -> list[Shard]:
    """Split ``items`` into at most ``count`` non-empty shards (see the module docstring)."""
    if not 1 <= count <= MAX_SHARDS:
        raise ShardError(f"the number of shards must be between 1 and {MAX_SHARDS}, got {count}")
    units = _units(items, links or {})
    by_abi: dict[str, list[list[Item]]] = {}
    for unit in units:
        by_abi.setdefault(unit[0].abi, []).append(unit)
    abi_weight = {abi: sum(weights[i] for u in us for i in u) for abi, us in by_abi.items()}
    if count < len(by_abi):
        # Fewer shards than ABIs: whole ABIs, heaviest first, onto the least loaded shard.
        shards = [Shard() for _ in range(count)]
        _lpt([[i for u in us for i in u] for _, us in sorted(by_abi.items())], weights, shards)
    else:
        # One ABI per shard: give each extra shard to the ABI with the most load per shard.
        per_abi = dict.fromkeys(by_abi, 1)
        for _ in range(count - len(by_abi)):
            open_ = [a for a in sorted(by_abi) if per_abi[a] < len(by_abi[a])]
            if not open_:
                break
            best = max(open_, key=lambda a: (abi_weight[a] / per_abi[a], -sorted(by_abi).index(a)))
            per_abi[best] += 1
        shards = []
        for abi in sorted(by_abi):
            mine = [Shard() for _ in range(per_abi[abi])]
            _lpt(by_abi[abi], weights, mine)
            shards.extend(mine)
    for shard in shards:
        shard.items.sort(key=lambda i: (i.abi, i.crate))
    return [s for s in shards if s.items]


def dependency_links(project: Project) -> dict[str, set[str]]:
    """Crates linked by [depends] test/build, both ways."""
    links: dict[str, set[str]] = {}
    for name, recipe in project.recipes.recipes.items():
        for dep in (*recipe.depends.test, *recipe.depends.build):
            links.setdefault(name, set()).add(dep)
            links.setdefault(dep, set()).add(name)
    return links


def _files_key(files: Iterable[Path], root: Path) -> str:
    h = hashlib.sha256()
    for path in files:
        data = path.read_bytes() if path.exists() else b"(missing)"
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def abi_files_key(project: Project, abis: Iterable[str]) -> str:
    """sha256 over the ABI files of ``abis`` and their Pyodide locks: the key of their toolchain caches."""
    root = project.settings.root
    files = []
    for name in sorted(abis):
        abi = project.abis[name]
        files += [Path(abi.path), project.layout.runtime_lock_dir(abi) / "package-lock.json"]
    return _files_key(files, root)


def recipes_key(project: Project, crates: Iterable[str]) -> str:
    """sha256 over the recipe files of ``crates`` (with the ABI files' key: their cargo target caches)."""
    recipes = project.recipes.recipes
    return _files_key([Path(recipes[c].path).resolve() for c in sorted(crates)], project.settings.root)


def github_matrix(project: Project, shards: list[Shard]) -> dict[str, Any]:
    """The ``strategy.matrix`` of the shard jobs: ``{"include": [...]}``, one entry per shard."""
    include = []
    for n, shard in enumerate(shards, 1):
        abis = shard.abis
        include.append(
            {
                "shard": n,
                "name": f"{n}/{len(shards)} {' '.join(abis)} "
                f"({len(shard.crates)} crate{'s' * (len(shard.crates) != 1)})",
                "abis": " ".join(abis),
                "tasks": " ".join(i.task for i in shard.items),
                "items": len(shard.items),
                "weight": round(shard.weight, 2),
                "toolchain_key": abi_files_key(project, abis),
                "recipes_key": recipes_key(project, shard.crates),
            }
        )
    return {"include": include}


def matrix_for(
    project: Project, count: int, report: Path | None, crates: Iterable[str] = (), abis: Iterable[str] = ()
) -> tuple[dict[str, Any], list[str]]:
    """The GitHub Actions matrix for ``count`` shards, and warnings for stderr."""
    items = collection_items(project, crates, abis)
    if not items:
        raise ShardError("nothing to build: no crate x ABI matches")
    durations, warnings = read_durations(report)
    shards = plan_shards(items, count, weigh(items, durations), dependency_links(project))
    return github_matrix(project, shards), warnings


# -- joining the shards' outputs -------------------------------------------------------------

_ROW_RANK = {"not built": 0, "skipped": 1}  # anything else (ok, failed, blocked) ranks 2


def _rank(row: dict[str, Any]) -> int:
    return _ROW_RANK.get(row.get("status", "not built"), 2)


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report of the collection from the shards' reports: each row from the shard that built it."""
    from wasmwheel.pipeline.report import failures

    if not reports:
        raise ShardError("no shard reports to merge")
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for report in reports:
        for row in report.get("rows", []):
            key = (row["crate"], row["abi"])
            if key not in rows or _rank(row) > _rank(rows[key]):
                rows[key] = row
    toolchains: dict[str, dict[str, Any]] = {}
    for report in reports:
        for entry in report.get("toolchains", []):
            toolchains.setdefault(entry["task"], entry)
    summary: dict[str, int] = {}
    for row in rows.values():
        summary[row["status"]] = summary.get(row["status"], 0) + 1
    runs = [r.get("run") or {} for r in reports]
    run = {k: sum(r.get(k, 0) or 0 for r in runs) for k in ("executed", "failed", "skipped", "uptodate")}
    run.update(
        seconds=max((r.get("seconds") or 0 for r in runs), default=0),
        finished=max((r.get("finished") or "" for r in runs), default=""),
        shards=len(reports),
    )
    first = reports[0]
    abis = sorted({a for r in reports for a in r.get("abis", [])})
    merged = {
        "generated": max(r.get("generated", "") for r in reports),
        "abis": abis,
        "summary": summary,
        "run": run,
        "rows": sorted(rows.values(), key=lambda r: (r["crate"], abis.index(r["abi"]) if r["abi"] in abis else 0)),
        "toolchains": [toolchains[k] for k in sorted(toolchains)],
        "invalid_recipes": first.get("invalid_recipes", []),
        "invalid_abis": first.get("invalid_abis", []),
    }
    merged["failures"] = failures(merged)  # what the merged report.md leads with
    return merged


def _copy_wheel(wheel: Path, dest: Path, owners: dict[Path, Path]) -> bool:
    """Copy ``wheel`` to ``dest`` (atomically). False when an identical copy is there already."""
    if dest.exists():
        if sha256_file(dest) == sha256_file(wheel):
            return False
        other = owners.get(dest, dest)
        raise ShardError(
            f"{dest.name}: {wheel} and {other} have the same name but different bytes "
            "(two shards built this wheel differently); rebuild one of them"
        )
    with temp_path_beside(dest, ".whl") as tmp:
        shutil.copyfile(wheel, tmp)
        tmp.replace(dest)
    owners[dest] = wheel
    return True


def merge_shards(shard_dirs: list[Path], build_dir: Path, report: Path | None = None) -> dict[str, Any]:
    """Join shard artifacts into ``build_dir``: wheels into dist/<abi>/, and one report
    (``report``, default ``build_dir/report.json``, with its .md beside it)."""
    from wasmwheel.pipeline.report import render_markdown

    build_dir = Path(build_dir)
    merged_json = Path(report) if report else report_json(build_dir)
    reports = []
    copied = 0
    owners: dict[Path, Path] = {}
    missing = []
    for folder in sorted(Path(d) for d in shard_dirs):
        if not folder.is_dir():
            raise ShardError(f"{folder} is not a folder (expected a shard artifact with dist/ and report.json)")
        every_dist = dist_dir(Path(), "*")  # dist/*
        for wheel in sorted(folder.glob(f"{every_dist}/*.whl")):
            dest = dist_dir(build_dir, wheel.parent.name) / wheel.name
            copied += _copy_wheel(wheel, dest, owners)
        for marker in sorted(folder.glob(str(tested_marker(every_dist, "*")))):  # which wheels passed their smoke test
            dest = tested_marker(dist_dir(build_dir, marker.parent.parent.name), marker.name[: -len(".json")])
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(dest, marker.read_text(encoding="utf-8"))
        path = report_json(folder)
        try:
            reports.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            missing.append(f"{path}: {exc}")
    if not reports:
        raise ShardError("no shard has a readable report.json: " + "; ".join(missing))
    merged = merge_reports(reports)
    merged["missing_reports"] = missing
    atomic_write_text(merged_json, json.dumps(merged, indent=2, sort_keys=True) + "\n")
    atomic_write_text(merged_json.with_suffix(".md"), render_markdown(merged))
    return {"wheels": copied, "report": merged, "report_path": merged_json}
