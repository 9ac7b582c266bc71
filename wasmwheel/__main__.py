"""Command line: ``python -m wasmwheel <command>`` (also installed as ``wasmwheel``).

The pipeline itself runs through doit (``doit build``); these commands are the
standalone tools around it. Errors print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

from wasmwheel.fsutil import read_json
from wasmwheel.model.errors import WasmwheelError, plural


def is_repository(folder: Path) -> bool:
    """A wasmwheel repository: ``abi/`` and ``recipes/`` folders beside the pyproject.toml of the
    project named wasmwheel."""
    if not ((folder / "abi").is_dir() and (folder / "recipes").is_dir()):
        return False
    try:
        with open(folder / "pyproject.toml", "rb") as f:
            return tomllib.load(f).get("project", {}).get("name") == "wasmwheel"
    except (OSError, ValueError, AttributeError):
        return False


def find_root(start: Path) -> Path:
    """The repository holding ``start``: the nearest folder from ``start`` up that is one (as git
    finds its repository)."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        if is_repository(folder):
            return folder
    raise WasmwheelError(
        f"not inside a wasmwheel repository: no folder from {start} up holds abi/, recipes/ and "
        "wasmwheel's pyproject.toml; run this from the repository or pass --root DIR"
    )


def _project_root(arg: str | None) -> Path:
    if not arg:
        return find_root(Path.cwd())
    root = Path(arg).resolve()
    missing = [f"{name}/" for name in ("abi", "recipes") if not (root / name).is_dir()]
    if missing:
        raise WasmwheelError(f"--root {arg}: not a wasmwheel repository (no {' or '.join(missing)} folder in {root})")
    return root


def _load_abi(root: Path, name: str):
    from wasmwheel.model.abi import load_abi
    from wasmwheel.model.errors import ConfigError

    path = root / "abi" / f"{name}.toml"
    if not path.exists():
        known = sorted(p.stem for p in (root / "abi").glob("*.toml"))
        raise ConfigError(path, "", f"unknown ABI {name!r}", f"known ABIs: {', '.join(known) or 'none'}")
    return load_abi(path, root)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate every ABI file and recipe; print one line per problem."""
    from wasmwheel.pipeline.graph import Project

    project = Project.load(_project_root(args.root))
    problems = [*project.abi_errors.values(), *project.recipes.errors.values()]
    for error in problems:
        print(f"error: {error}", file=sys.stderr)
    print(
        f"{plural(len(project.abis), 'ABI')}, {plural(len(project.recipes.recipes), 'recipe')}, "
        f"{plural(len(problems), 'problem')}"
    )
    return 1 if problems else 0


def cmd_retag(args: argparse.Namespace) -> int:
    from wasmwheel.wheel import retag

    abi = _load_abi(_project_root(args.root), args.abi)
    if args.legacy and not abi.legacy_tags:
        raise WasmwheelError(f"ABI {abi.name} has no legacy tags")
    tag = abi.legacy_tags[0] if args.legacy else abi.platform_tag
    for wheel in args.wheels:
        out_dir = Path(args.out) if args.out else Path(wheel).resolve().parent
        dest = retag(Path(wheel), tag, out_dir)
        print(dest)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Audit wheels for an ABI; exit 1 when any has an error."""
    from wasmwheel.audit.check import audit_wheels, format_table, to_json

    abi = _load_abi(_project_root(args.root), args.abi)
    missing = [w for w in args.wheels if not Path(w).is_file()]
    if missing:
        raise WasmwheelError(f"no such wheel: {', '.join(missing)}")
    reports = audit_wheels([Path(w) for w in args.wheels], abi)
    print(to_json(reports) if args.json else format_table(reports))
    return 0 if all(r.ok for r in reports) else 1


def cmd_pin_sysroot(args: argparse.Namespace) -> int:
    from wasmwheel.model.layout import Layout
    from wasmwheel.model.settings import Settings
    from wasmwheel.runner import StepLog
    from wasmwheel.toolchain.provision import pin_sysroot

    root = _project_root(args.root)
    abi = _load_abi(root, args.abi)
    with StepLog(None, echo=False) as log:
        sha = pin_sysroot(abi, Layout(Settings.from_env(root)), log)
    print(sha)
    return 0


def _scaffold_env(args: argparse.Namespace):
    from wasmwheel.authoring.pypi import PyPI
    from wasmwheel.model.layout import Layout
    from wasmwheel.model.settings import Settings

    root = _project_root(args.root)
    settings = Settings.from_env(root)
    return root, PyPI(settings.pypi_url), Layout(settings)


def cmd_new(args: argparse.Namespace) -> int:
    from wasmwheel.authoring.pypi import split_spec
    from wasmwheel.authoring.scaffold import new_recipe
    from wasmwheel.runner import StepLog

    name, version = split_spec(args.spec, args.version)
    root, pypi, layout = _scaffold_env(args)
    with StepLog(None) as log:
        path, facts = new_recipe(name, version, root, pypi, layout, log, force=args.force)
    print(f"wrote {path}")
    for line in facts.summary():
        print(f"  {line}")
    print(f"next: write a real [test] script in {path.name}, then `doit build:{path.stem}`")
    return 0


def cmd_bump(args: argparse.Namespace) -> int:
    from wasmwheel.authoring.scaffold import bump_recipe
    from wasmwheel.runner import StepLog

    root, pypi, layout = _scaffold_env(args)
    version = args.version.removeprefix("==") if args.version else None
    with StepLog(None) as log:
        result = bump_recipe(args.recipe, version, root, pypi, layout, log)
    if not result.changes and result.old_version == result.new_version:
        print(f"{result.path.name} is at {result.new_version} already; nothing to do")
        return 0
    print(f"{result.path}: {result.old_version} -> {result.new_version}")
    for change in result.changes:
        print(f"  check: {change}")
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    """Print the GitHub Actions matrix (JSON) of the collection's shards."""
    import json

    from wasmwheel.pipeline.graph import Project
    from wasmwheel.pipeline.shard import matrix_for

    project = Project.load(_project_root(args.root))
    report = None if args.report == "none" else Path(args.report) if args.report else project.layout.report_json
    matrix, warnings = matrix_for(project, args.shards, report, args.crate, args.abi)
    for warning in warnings:
        print(f"note: {warning}", file=sys.stderr)
    print(json.dumps(matrix, separators=(",", ":"), sort_keys=True))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Join shard artifacts into one build folder (wheels + report) for `doit index`."""
    from wasmwheel.model.settings import Settings
    from wasmwheel.pipeline.shard import merge_shards

    build_dir = Path(args.build_dir) if args.build_dir else Settings.from_env(_project_root(args.root)).build_dir
    result = merge_shards([Path(d) for d in args.shards], build_dir, Path(args.report) if args.report else None)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(result["report"]["summary"].items()))
    print(
        f"merged {plural(len(args.shards), 'shard')} into {build_dir}: {plural(result['wheels'], 'wheel')} copied; "
        f"{summary}; "
        f"report: {result['report_path']}"
    )
    for problem in result["report"]["missing_reports"]:
        print(f"warning: no report from {problem}", file=sys.stderr)
    return 0


def cmd_collection(args: argparse.Namespace) -> int:
    """Render docs/collection.md from the build report (after --compare: with PyPI's wheels beside ours)."""
    from wasmwheel.authoring import collection
    from wasmwheel.pipeline.graph import Project

    project = Project.load(_project_root(args.root))
    if args.compare:
        report = project.layout.report_json
        try:
            rows = read_json(report).get("rows", [])
        except (OSError, ValueError):
            raise collection.CollectionError(f"{report}: no build report (run `doit build` first)") from None
        wanted = [
            r for r in rows if (not args.crate or r["crate"] in args.crate) and (not args.abi or r["abi"] in args.abi)
        ]
        found = collection.compare(project, wanted, runs=args.runs)
        print(
            f"compared {plural(sum(1 for c in found if c.official), 'wheel')} with PyPI's; "
            f"{plural(sum(1 for c in found if not c.official), 'crate build')} without an official wheel"
        )
    path = collection.write_page(project, Path(args.output) if args.output else None)
    print(f"wrote {path}")
    return 0


def cmd_check_index(args: argparse.Namespace) -> int:
    """Install every indexed crate by name with micropip in its ABI's Pyodide and run its test."""
    from wasmwheel.index import check as indexcheck
    from wasmwheel.pipeline.graph import Project

    project = Project.load(_project_root(args.root))
    results = indexcheck.check_index(
        project, abis=args.abi, crates=args.crate, url=args.url, browser_crate=args.browser
    )
    print(indexcheck.summary(results))
    return 1 if any(not r.ok for r in results) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wasmwheel", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        help="repository root (default: the nearest folder from the current one up "
        "that holds abi/, recipes/ and wasmwheel's pyproject.toml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="validate every ABI file and recipe")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("retag", help="give wheels an ABI's platform tag (file name, WHEEL, RECORD)")
    p.add_argument("wheels", nargs="+", metavar="WHEEL")
    p.add_argument("--abi", required=True, help="ABI name, e.g. 2026_0")
    p.add_argument("--legacy", action="store_true", help="use the ABI's first legacy tag instead of its PEP 783 tag")
    p.add_argument("--out", help="output folder (default: next to each wheel)")
    p.set_defaults(func=cmd_retag)

    p = sub.add_parser("audit", help="check wheels for what an ABI's Pyodide would refuse (exit 1 on errors)")
    p.add_argument(
        "wheels",
        nargs="+",
        metavar="WHEEL",
        help="wheels to audit (installed together: libraries at one's root serve the others)",
    )
    p.add_argument("--abi", required=True, help="ABI name, e.g. 2026_0")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of a table")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("pin-sysroot", help="download an ABI's sysroot and record its sha256 in the ABI file")
    p.add_argument("abi", help="ABI name, e.g. 2025_0")
    p.set_defaults(func=cmd_pin_sysroot)

    p = sub.add_parser("new", help="write recipes/<name>.toml from a PyPI sdist (maturin projects)")
    p.add_argument("spec", metavar="NAME[==VERSION]", help="PyPI name, optionally pinned: jiter or jiter==0.19.0")
    p.add_argument("version", nargs="?", metavar="==VERSION", help="the version, if not in NAME (default: latest)")
    p.add_argument("--force", action="store_true", help="overwrite an existing recipe")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser(
        "bump", help="move a recipe to another PyPI release (version, url, sha256), keeping its comments"
    )
    p.add_argument("recipe", help="recipe name (recipes/<name>.toml) or path")
    p.add_argument("version", nargs="?", help="the version (default: latest)")
    p.set_defaults(func=cmd_bump)

    p = sub.add_parser("matrix", help="print a GitHub Actions matrix (JSON) that shards the collection's builds")
    p.add_argument("--shards", type=int, default=4, help="at most this many shards (default 4)")
    p.add_argument(
        "--report",
        help="build report whose durations balance the shards (default: build/report.json; 'none': equal weights)",
    )
    p.add_argument("--crate", action="append", default=[], help="only this crate (repeatable)")
    p.add_argument("--abi", action="append", default=[], help="only this ABI (repeatable)")
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("merge", help="join shard artifacts (dist/ + report.json each) into one build folder")
    p.add_argument("shards", nargs="+", metavar="SHARD_DIR")
    p.add_argument("--build-dir", help="where to merge (default: the build folder, $WASMWHEEL_BUILD_DIR or build/)")
    p.add_argument(
        "--report",
        help="where to write the merged report.json (+ .md beside it; default: "
        "<build dir>/report.json, which a later doit run rewrites from its own steps)",
    )
    p.set_defaults(func=cmd_merge)
    p = sub.add_parser("collection", help="write docs/collection.md: every recipe x ABI from the build report")
    p.add_argument(
        "--compare",
        action="store_true",
        help="first compare built wheels with PyPI's official wheels "
        "for the same ABI (size; the recipe's test time in the same runtime)",
    )
    p.add_argument(
        "--runs", type=int, default=3, help="test runs per wheel when comparing (the fastest counts; default 3)"
    )
    p.add_argument("--crate", action="append", default=[], help="compare only this crate (repeatable)")
    p.add_argument("--abi", action="append", default=[], help="compare only for this ABI (repeatable)")
    p.add_argument("--output", help="where to write the page (default: docs/collection.md)")
    p.set_defaults(func=cmd_collection)

    p = sub.add_parser(
        "check-index",
        help="install every indexed crate by name with micropip in its ABI's Pyodide "
        "and run its test (exit 1 on a failure)",
    )
    p.add_argument("--abi", action="append", default=[], help="only this ABI (repeatable; default: every indexed ABI)")
    p.add_argument("--crate", action="append", default=[], help="only this project (repeatable)")
    p.add_argument("--url", help="a published index to check (default: build/index, served locally meanwhile)")
    p.add_argument(
        "--browser",
        metavar="CRATE",
        help="also load CRATE in headless Chromium from the served try page (loadPyodide({lockFileURL}) + loadPackage)",
    )
    p.set_defaults(func=cmd_check_index)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WasmwheelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
