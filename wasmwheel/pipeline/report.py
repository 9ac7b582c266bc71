"""The batch report: ``build/report.json`` and ``build/report.md``, rewritten after every run.

It describes the whole collection, not only the last run: the last outcome and
duration of every step are kept in ``build/history.json`` and merged with what
this run did. ``report.md`` leads with what failed (any step: toolchains and runtime
included) and, when no wheel passed its smoke test, says why in its first line. Then one
row per crate and ABI: status, wheel name and size, step times, the log to read, and a
hint when the error is a known one (wasmwheel.pipeline.hints).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmwheel.fsutil import atomic_write_text, file_lock, read_json, write_json
from wasmwheel.model.errors import plural
from wasmwheel.model.settings import TOOLCHAINS
from wasmwheel.pipeline.hints import hint_for

if TYPE_CHECKING:  # annotations only
    from wasmwheel.model.facts import SmokeFacts
from wasmwheel.pipeline.steps import (
    ABI_STEPS,
    CRATE,
    CRATE_ABI_STEPS,
    PIPELINE,
    TaskId,
    last_crate_step,
    needed_by,
    task_name,
)

# The steps of a row (one crate, one ABI), in pipeline order: its crate's own (source), then its own.
ROW_STEPS = (*(s.name for s in PIPELINE if s.scope == CRATE and s.run), *CRATE_ABI_STEPS)
# Which crate step needs which ABI step: a failed one blocks it (compile needs std, smoke pyodide).
NEEDED_BY = {step: needed_by(step) for step in ABI_STEPS if needed_by(step)}
# Rows that have a wheel that passed (or failed as expected) its smoke test.
BUILT = ("ok", "xfail", "xpass")


@dataclass
class StepResult:
    task: str
    status: str  # ok | failed | skipped | uptodate
    seconds: float | None = None
    error: str = ""
    blocked_by: list[str] = field(default_factory=list)
    finished: str = ""


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def update_history(path: Path, results: list[StepResult]) -> tuple[dict[str, Any], bool, int | None]:
    """Merge this run's results into the history file (locked: parallel runs share it).
    Returns the history, whether it changed (a no-op run changes nothing) and the file's
    mtime as this history was read or written."""
    with file_lock(path, what="the build history"):
        try:
            history = read_json(path)
        except (OSError, ValueError):
            history = {}
        changed = not path.exists()
        for r in results:
            if r.status == "uptodate":
                entry = history.get(r.task) or {"status": "ok", "seconds": None}
                if entry.get("status") != "ok":
                    entry = {"status": "ok", "seconds": entry.get("seconds")}
                changed = changed or history.get(r.task) != entry
                history[r.task] = entry
            else:
                history[r.task] = {k: v for k, v in asdict(r).items() if k != "task"}
                changed = True
        if changed:
            write_json(path, history)
        try:
            mtime_ns = path.stat().st_mtime_ns
        except OSError:
            mtime_ns = None
    return history, changed, mtime_ns


def _seconds(entry: dict[str, Any] | None) -> float | None:
    return entry.get("seconds") if entry else None


def build_report(project: Any, history: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    layout = project.layout
    rows = []
    abi_names = project.abi_names
    last = last_crate_step()
    for recipe in project.recipes.recipes.values():
        skips = recipe.skips(abi_names, project.toolchain)
        for abi in abi_names:
            row: dict[str, Any] = {"crate": recipe.name, "version": recipe.version, "abi": abi}
            if abi in skips:
                row.update(status="skipped", reason=skips[abi])
                rows.append(row)
                continue
            names = {
                step: task_name(step, recipe.name, None if step not in CRATE_ABI_STEPS else abi) for step in ROW_STEPS
            }
            steps = {k: history.get(name) for k, name in names.items()}
            row["steps"] = {k: {"status": v.get("status"), "seconds": v.get("seconds")} for k, v in steps.items() if v}
            row["seconds"] = round(sum(v.get("seconds") or 0 for v in steps.values() if v), 2)
            failed = next(((k, v) for k, v in steps.items() if v and v.get("status") == "failed"), None)
            blocked = next(((k, v) for k, v in steps.items() if v and v.get("status") == "skipped"), None)
            if abi in project.abi_errors:
                row.update(status="blocked", blocked_by=[task_name("abi", abi=abi)], error=str(project.abi_errors[abi]))
            elif failed:
                step, entry = failed
                row.update(
                    status="failed", failed_step=step, error=entry.get("error", ""), log=_task_log(layout, names[step])
                )
            elif blocked:
                step, entry = blocked
                blockers = entry.get("blocked_by", [])
                row.update(
                    status="blocked", blocked_step=step, blocked_by=blockers, error=_blocking_error(history, blockers)
                )
                log = _task_log(layout, blockers[0]) if blockers else None
                if log:
                    row["log"] = log
            elif (steps.get(last) or {}).get("status") == "ok" and layout.stamp(last, abi, recipe.name).exists():
                row["status"] = "ok"
                smoked = _smoke_facts(layout.stamp(last, abi, recipe.name))
                _test_seconds(row, smoked)
                if recipe.test.expected_failures:
                    _smoke_outcome(row, smoked, recipe)
            else:
                _not_built(row, steps, history, layout, project.abis[abi])
            retag = layout.stamp("retag", abi, recipe.name)
            if retag.exists():
                try:
                    wheel = Path(read_json(retag)["wheel"])
                    row.update(wheel=wheel.name, size=wheel.stat().st_size)
                except (OSError, ValueError, KeyError):
                    pass
            if row.get("error"):
                known = hint_for(row["error"])
                if known:
                    row.update(hint=known.fix, hint_code=known.code)
            rows.append(row)
    toolchains = []
    for abi in project.abis:
        for step in ABI_STEPS:
            name = task_name(step, abi=abi)
            entry = history.get(name)
            if entry:
                toolchains.append(
                    {
                        "task": name,
                        "status": entry.get("status"),
                        "seconds": entry.get("seconds"),
                        "error": entry.get("error", ""),
                        "log": _task_log(layout, name),
                    }
                )
    summary: dict[str, int] = {}
    for row in rows:
        summary[row["status"]] = summary.get(row["status"], 0) + 1
    report = {
        "generated": utc_now(),
        "toolchain": project.toolchain,
        "abis": abi_names,
        "summary": summary,
        "run": run,
        "rows": rows,
        "toolchains": toolchains,
        "invalid_recipes": [{"recipe": stem, "error": str(err)} for stem, err in project.recipes.errors.items()],
        "invalid_abis": [{"abi": name, "error": str(err)} for name, err in project.abi_errors.items()],
    }
    report["failures"] = failures(report)
    return report


def _not_built(row: dict[str, Any], steps: dict[str, Any], history: dict[str, Any], layout, abi) -> None:
    """A row without a tested wheel and without a failed or skipped step of its own: blocked when a
    step of its ABI that its next step needs failed last (a single target stops at the first failure,
    so its crate steps never ran), else not built."""
    done = [step for step in CRATE_ABI_STEPS if (steps.get(step) or {}).get("status") == "ok"]
    waiting = next((step for step in CRATE_ABI_STEPS if step not in done), last_crate_step())
    blockers = [
        task_name(step, abi=abi.name)
        for step, needer in NEEDED_BY.items()
        if needer not in done and (history.get(task_name(step, abi=abi.name)) or {}).get("status") == "failed"
    ]
    if not blockers:
        row["status"] = "not built"
        return
    row.update(
        status="blocked",
        blocked_step=waiting,
        blocked_by=blockers,
        error=_blocking_error(history, blockers),
        log=_task_log(layout, blockers[0]),
    )


def _row_task(row: dict[str, Any]) -> str:
    step = row.get("failed_step", "")
    if not step:
        return f"{row['crate']}@{row['abi']}"
    return task_name(step, row["crate"], None if step not in CRATE_ABI_STEPS else row["abi"])


def failures(report: dict[str, Any]) -> list[dict[str, Any]]:
    """What failed, first what blocks most: the ABI steps (toolchains, runtime, index), then each
    crate's failed step, then invalid ABI files and recipes. Each with its error, log, hint and the
    crates x ABIs it blocks. From the report's own data (so a merged report has it too)."""
    out: dict[str, dict[str, Any]] = {}

    def add(task: str, error: str, log: str | None) -> None:
        if task in out:
            return
        entry: dict[str, Any] = {"task": task, "error": error}
        if log:
            entry["log"] = log
        known = hint_for(error)
        if known:
            entry.update(hint=known.fix, hint_code=known.code)
        out[task] = entry

    for entry in report.get("toolchains", []):
        if entry.get("status") == "failed":
            add(entry["task"], entry.get("error", ""), entry.get("log"))
    for row in report.get("rows", []):
        if row.get("status") == "failed":
            add(_row_task(row), row.get("error", ""), row.get("log"))
    for bad in report.get("invalid_abis", []):
        add(f"abi:{bad['abi']}", bad["error"], None)
    for bad in report.get("invalid_recipes", []):
        add(f"build:{bad['recipe']}", bad["error"], None)
    for row in report.get("rows", []):
        for task in row.get("blocked_by", []) if row.get("status") == "blocked" else []:
            if task in out:
                out[task].setdefault("blocks", []).append(f"{row['crate']}@{row['abi']}")
    return list(out.values())


def headline(report: dict[str, Any]) -> str:
    """The report's first line: what it holds, or, when no crate has a tested wheel, why."""
    rows = report.get("rows", [])
    built = sum(1 for r in rows if r.get("status") in BUILT)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.get("summary", {}).items()))
    if built:
        return f"wasmwheel build report: {counts}"
    failed = [f["task"] for f in report.get("failures", failures(report))]
    run = report.get("run") or {}
    # A wheel that was made but not tested (blocked, or its test failed) is not one the index takes.
    nothing = "No wheel passed its smoke test" if any(r.get("wheel") for r in rows) else "Nothing built"
    if failed:
        more = f" and {plural(len(failed) - 1, 'other step')}" if len(failed) > 1 else ""
        return f"{nothing}: {failed[0]}{more} failed"
    if run.get("interrupted"):
        return f"{nothing}: the last run was interrupted (run doit again to go on)"
    if not rows:
        return "Nothing built: no recipe builds for any ABI"
    if all(r.get("status") == "skipped" for r in rows):
        return "Nothing built: every recipe skips every ABI"
    return f"{nothing} yet: no step failed, the crates' steps have not run (run `doit build`)"


def _task_log(layout, task: str) -> str | None:
    """The log of a step named like ``compile:<crate>@<abi>``, ``source:<crate>`` or ``emsdk:<abi>``."""
    name = TaskId.parse(task)
    if name.target is None:
        return None
    return str(layout.log(name.step, name.abi, name.crate))


SMOKE_OUTCOMES = {"expected failure": "xfail", "unexpected pass": "xpass"}


def _smoke_facts(stamp: Path) -> SmokeFacts | None:
    from wasmwheel.model.facts import SmokeFacts  # here: a no-op never reads them

    try:
        return SmokeFacts.from_stamp(read_json(stamp))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _test_seconds(row: dict[str, Any], facts: SmokeFacts | None) -> None:
    """The recipe's test in the runtime (installing the wheel + running the script; not booting the
    interpreter), from the smoke step's facts: ``test_seconds`` on the row."""
    timings = (facts.timings if facts is not None else None) or {}
    if any(k in timings for k in ("load", "test")):
        row["test_seconds"] = round(sum(float(timings.get(k, 0.0)) for k in ("load", "test")), 3)


def _smoke_outcome(row: dict[str, Any], facts: SmokeFacts | None, recipe: Any) -> None:
    """A smoke test that failed as the recipe expects (xfail) or passed although it expects a
    failure (xpass): the row says so, with the mark's reason."""
    if facts is None:
        return
    status = SMOKE_OUTCOMES.get(facts.outcome)
    if status:
        row.update(status=status, reason=str(facts.reason))
        if status == "xpass":
            mark = facts.mark or facts.environment
            row["hint"] = (
                f"the test passes although [test.expected_failures] {mark} says it fails: "
                f"remove that mark from {recipe.path.name}"
            )


def _blocking_error(history: dict[str, Any], blockers: list[str]) -> str:
    for task in blockers:
        entry = history.get(task)
        if entry and entry.get("error"):
            return f"{task} failed: {entry['error']}"
    return ""


def _fmt_seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}s"


def _fmt_size(size: int | None) -> str:
    if size is None:
        return ""
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return ""


def _cell(row: dict[str, Any]) -> str:
    status = row["status"]
    if status == "failed":
        return f"FAILED ({row.get('failed_step')})"
    if status == "blocked":
        return "blocked (" + ", ".join(row.get("blocked_by", [])) + ")"
    if status == "skipped":
        return "skipped"
    if status == "xfail":
        return "xfail (expected failure)"
    if status == "xpass":
        return "XPASS (unexpected pass)"
    return status


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _step_cell(entry: dict[str, Any] | None) -> str:
    """A step's time; a failed or skipped step says so (a bare time would read as a success)."""
    if not entry:
        return ""
    status = entry.get("status")
    if status == "failed":
        return "FAILED " + _fmt_seconds(entry.get("seconds"))
    if status == "skipped":
        return "not run"
    return _fmt_seconds(entry.get("seconds"))


def error_summary(error: str) -> str:
    """One line for an error: its first line and, when that only says a tool failed, the tool's own
    error line from the output tail kept in the message (`Caused by: ...`, `error: ...`)."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0]
    tail = [line[1:].strip() for line in lines[1:] if line.startswith("|")]
    cause = next((line for line in reversed(tail) if any(word in line.lower() for word in ("error", "caused by"))), "")
    return f"{first} ({cause})" if cause and cause not in first else first


def render_markdown(report: dict[str, Any]) -> str:
    abis = report["abis"]
    first = headline(report)
    out = [f"# {_md_escape(first)}", ""]
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report["summary"].items()))
    toolchain = report.get("toolchain")
    how = f" Toolchain: {toolchain} ({TOOLCHAINS[toolchain]})." if toolchain in TOOLCHAINS else ""
    out.append(
        f"Generated {report['generated']}.{how}"
        if counts and counts in first
        else f"{counts or 'no crates'}. Generated {report['generated']}.{how}"
    )
    run = report.get("run") or {}
    if run:
        out.append(
            f"Last run{' (interrupted)' if run.get('interrupted') else ''}: "
            f"{plural(run.get('executed', 0), 'step')} ran ({run.get('failed', 0)} failed), "
            f"{run.get('skipped', 0)} skipped after a failure, {run.get('uptodate', 0)} up to date, "
            f"{run.get('seconds', 0):.1f}s."
        )
    failed = report.get("failures", failures(report))
    if failed:
        out += ["", "## What failed", ""]
        for entry in failed:
            out.append(f"- **{entry['task']}**: {_md_escape(error_summary(entry['error']))}")
            if entry.get("log"):
                out.append(f"  - log: `{entry['log']}`")
            if entry.get("hint"):
                out.append(f"  - hint: {_md_escape(entry['hint'])}")
            blocks = entry.get("blocks", [])
            if blocks:
                shown = ", ".join(blocks[:8]) + (f" and {len(blocks) - 8} more" if len(blocks) > 8 else "")
                out.append(f"  - blocks {plural(len(blocks), 'crate build')}: {shown}")
    out += ["", "## Crates", "", "| crate | " + " | ".join(abis) + " |", "|---|" + "---|" * len(abis)]
    by_crate: dict[str, dict[str, dict[str, Any]]] = {}
    for row in report["rows"]:
        by_crate.setdefault(row["crate"], {})[row["abi"]] = row
    for crate, cells in by_crate.items():
        out.append(f"| {crate} | " + " | ".join(_cell(cells[a]) if a in cells else "" for a in abis) + " |")
    for bad in report["invalid_recipes"]:
        out.append(f"| {bad['recipe']} | " + " | ".join("invalid recipe" for _ in abis) + " |")
    out += [
        "",
        "## Details",
        "",
        f"| crate | ABI | status | wheel | size | {' | '.join(CRATE_ABI_STEPS)} | log | hint |",
        "|---|---|---|---|---|" + "---|" * len(CRATE_ABI_STEPS) + "---|---|",
    ]
    for row in report["rows"]:
        steps = row.get("steps", {})
        status = (
            f"{_cell(row)}: {row.get('reason', '')}" if row["status"] in ("skipped", "xfail", "xpass") else _cell(row)
        )
        out.append(
            "| "
            + " | ".join(
                [
                    row["crate"],
                    row["abi"],
                    _md_escape(status),
                    row.get("wheel", ""),
                    _fmt_size(row.get("size")),
                    *(_step_cell(steps.get(step)) for step in CRATE_ABI_STEPS),
                    f"`{row['log']}`" if row.get("log") else "",
                    _md_escape(row.get("hint", "")),
                ]
            )
            + " |"
        )
    blocked = [r for r in report["rows"] if r["status"] == "blocked" and r.get("error")]
    if blocked:
        out += ["", "## Blocked", ""]
        for row in blocked:
            summary = error_summary(row["error"])
            if row.get("blocked_step"):
                summary = f"{row['blocked_step']} not run, since {summary}"
            out.append(f"- **{row['crate']} @ {row['abi']}**: {_md_escape(summary)}")
    return "\n".join(out) + "\n"


def report_inputs(project: Any) -> str:
    """Digest of what the report shows besides the history: ABIs, recipes, skips, load errors."""
    recipes = [
        [n, r.version, sorted(r.skips(project.abi_names, project.toolchain).items())]
        for n, r in sorted(project.recipes.recipes.items())
    ]
    errors = sorted(f"{k}: {v}" for k, v in [*project.recipes.errors.items(), *project.abi_errors.items()])
    data = json.dumps([project.abi_names, project.toolchain, recipes, errors], sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()


def _state_path(layout) -> Path:
    return layout.history.with_name("report-state.json")


def _write_state(layout, history: dict[str, Any], mtime_ns: int | None, inputs: str) -> None:
    """What a no-op must match to leave the report alone: the report's inputs, the history
    file as this history was read or written (its mtime then: another process writing it
    since makes the state stale), and the steps recorded as ok there."""
    try:
        state = {
            "inputs": inputs,
            "history_mtime_ns": mtime_ns,
            "ok": sorted(k for k, v in history.items() if v.get("status") == "ok"),
        }
        write_json(_state_path(layout), state)
    except OSError:
        pass


def _noop_matches_state(layout, results: list[StepResult], inputs: str) -> bool:
    """A run where every step was up to date changes neither history nor report when every one
    of them is recorded as ok already (read from the small state file, not the history)."""
    if not results or any(r.status != "uptodate" for r in results) or not layout.report_md.exists():
        return False
    try:
        state = read_json(_state_path(layout))
        if state["inputs"] != inputs or state["history_mtime_ns"] != layout.history.stat().st_mtime_ns:
            return False
        ok = set(state["ok"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all(r.task in ok for r in results)


def write_report(project: Any, results: list[StepResult], run: dict[str, Any]) -> dict[str, Any] | None:
    """Rewrite the report, unless the run changed nothing it shows (a no-op: every step up to
    date and already recorded as such); then the report of the last run that did something
    stays, and None is returned."""
    layout = project.layout
    inputs = report_inputs(project)
    if _noop_matches_state(layout, results, inputs):
        return None
    history, changed, mtime_ns = update_history(layout.history, results)
    if not changed and layout.report_md.exists():
        try:
            if read_json(layout.report_json).get("inputs") == inputs:
                _write_state(layout, history, mtime_ns, inputs)
                return None
        except (OSError, ValueError, AttributeError):
            pass
    report = build_report(project, history, run)
    report["inputs"] = inputs
    atomic_write_text(layout.report_json, json.dumps(report, indent=2, sort_keys=True) + "\n")
    atomic_write_text(layout.report_md, render_markdown(report))
    _write_state(layout, history, mtime_ns, inputs)
    return report
