"""doit reporter: one line per finished step with its time and a live count, then the report.

    ok   compile:jiter@2026_0                 41.2s  [7/24]
    FAIL compile:orjson@2026_0                 3.1s  [8/24]
         <the error, the tool's last lines, the hint, the log path>
    skip smoke:orjson@2026_0  (compile:orjson@2026_0 failed)  [9/24]

On a terminal, the running step shows on a status line. Up-to-date steps are counted,
not printed. After the run it writes build/report.json
and build/report.md and prints a one-line summary.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doit.reporter import ConsoleReporter

from wasmwheel.model.errors import plural
from wasmwheel.pipeline.report import StepResult, utc_now
from wasmwheel.pipeline.steps import TaskId

# Writes the build report of a run: (this run's step results, the run's counts) -> None.
ReportWriter = Callable[[list[StepResult], dict[str, Any]], None]

WIDTH = 44


class ProgressReporter(ConsoleReporter):
    desc = "wasmwheel: one line per finished step, live count, build report"
    write_report: ReportWriter | None = None  # set by reporter_writing()
    report_path: Path | None = None

    def __init__(self, outstream, options):
        super().__init__(outstream, options)
        self.tty = bool(getattr(outstream, "isatty", lambda: False)())
        self.started: dict[str, float] = {}
        self.results: list[StepResult] = []
        self.failed: set[str] = set()
        self.total = 0
        self.done = 0
        self.run_start = time.monotonic()
        self.tasks: dict[str, Any] = {}
        self.index_started: set[str] = set()  # ABIs whose index step has started in this run
        self.after_index: dict[str, list[str]] = {}  # ABI -> smoke steps that passed after its index started

    # -- counting ---------------------------------------------------------------
    def initialize(self, tasks, selected_tasks):
        self.tasks = tasks
        seen: set[str] = set()
        stack = list(selected_tasks)
        while stack:
            name = stack.pop()
            if name in seen or name not in tasks:
                continue
            seen.add(name)
            stack.extend(tasks[name].task_dep)
            stack.extend(getattr(tasks[name], "setup_tasks", []) or [])
        self.total = sum(1 for n in seen if self._counted(tasks[n]))

    @staticmethod
    def _counted(task) -> bool:
        # doit's Task.actions builds the action objects on first use; a no-op never needs
        # them, so look at the declared actions (doit 0.37 keeps them in _actions).
        declared = task._actions if hasattr(task, "_actions") else task.actions
        return bool(declared) and not task.name.startswith("_")

    def _count(self) -> str:
        self.done += 1
        return f"[{self.done}/{max(self.total, self.done)}]"

    def _line(self, text: str) -> None:
        if self.tty:
            self.write("\r\033[K")
        self.write(text + "\n")

    # -- doit hooks -------------------------------------------------------------
    def execute_task(self, task):
        if not self._counted(task):
            return
        self.started[task.name] = time.monotonic()
        name = TaskId.parse(task.name)
        if name.step == "index":
            self.index_started.add(name.abi)
        if self.tty:  # a status line, replaced by the next line written
            self.write(f"\r\033[K   [{self.done}/{self.total}] {task.name} ...")
            self.outstream.flush()

    def _elapsed(self, task) -> float | None:
        start = self.started.pop(task.name, None)
        return None if start is None else round(time.monotonic() - start, 2)

    def add_success(self, task):
        if not self._counted(task):
            return
        seconds = self._elapsed(task)
        self.results.append(StepResult(task.name, "ok", seconds, finished=utc_now()))
        self._line(f"ok   {task.name:<{WIDTH}} {seconds or 0:7.1f}s  {self._count()}")
        name = TaskId.parse(task.name)
        if name.step == "smoke" and name.abi in self.index_started:
            # doit -n runs the index beside the last steps (it waits only for the runtime): it may not
            # have seen this wheel's pass.
            self.after_index.setdefault(name.abi, []).append(task.name)

    def add_failure(self, task, fail):
        if not self._counted(task):
            # A group task (e.g. build:<crate>) whose dependencies failed: already reported.
            return
        if task.executed or task.name in self.started:
            seconds = self._elapsed(task)
            message = fail.get_msg().rstrip() if fail.report else ""
            self.failed.add(task.name)
            self.results.append(StepResult(task.name, "failed", seconds, error=message, finished=utc_now()))
            self._line(f"FAIL {task.name:<{WIDTH}} {seconds or 0:7.1f}s  {self._count()}")
            for line in message.splitlines():
                self.write(f"     {line}\n")
            self.failures.append({"task": task, "exception": fail})
        else:
            blockers = self._blockers(task)
            self.results.append(StepResult(task.name, "skipped", None, blocked_by=blockers, finished=utc_now()))
            why = ", ".join(f"{b} failed" for b in blockers) or "a dependency failed"
            self._line(f"skip {task.name}  ({why})  {self._count()}")

    def _blockers(self, task) -> list[str]:
        """The failed steps upstream of ``task``."""
        found: list[str] = []
        seen: set[str] = set()
        stack = list(task.task_dep)
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in self.failed:
                found.append(name)
            elif name in self.tasks:
                stack.extend(self.tasks[name].task_dep)
        return sorted(found)

    def skip_uptodate(self, task):
        if not self._counted(task):
            return
        self.results.append(StepResult(task.name, "uptodate"))
        self.done += 1  # counted, not printed

    def skip_ignore(self, task):
        self._line(f"!!   {task.name} (ignored)")

    def complete_run(self):
        seconds = round(time.monotonic() - self.run_start, 2)
        counts = {s: sum(1 for r in self.results if r.status == s) for s in ("ok", "failed", "skipped", "uptodate")}
        run = {
            "seconds": seconds,
            "executed": counts["ok"] + counts["failed"],
            "failed": counts["failed"],
            "skipped": counts["skipped"],
            "uptodate": counts["uptodate"],
            "finished": utc_now(),
        }
        # doit calls this from a `finally`: a Ctrl-C (or SIGTERM, see tasks._sigterm) is on its way out.
        interrupted = isinstance(sys.exc_info()[1], KeyboardInterrupt)
        if interrupted:
            run["interrupted"] = True
        if self.tty:
            self.write("\r\033[K")
        report_note = ""
        if self.write_report is not None and self.results:
            try:
                type(self).write_report(self.results, run)
                report_note = f"; report: {self.report_path}"
            except OSError as exc:  # the build result matters more than the report
                report_note = f"; could not write the report: {exc}"
        if interrupted:
            left = max(self.total - self.done, 0)
            self.write(
                f"{plural(run['executed'], 'step')} ran ({counts['failed']} failed), {counts['skipped']} skipped, "
                f"{counts['uptodate']} up to date, {left} not finished: interrupted after {seconds:.1f}s"
                f"{report_note}\n"
            )
        elif run["executed"] or run["skipped"]:
            left = max(self.total - self.done, 0)
            # A single target (doit build:<crate>) stops at its first failure: say what it left.
            stopped = (
                f", {left} not run (doit stops at the first failure of a single target; -c keeps going)"
                if left and counts["failed"]
                else ""
            )
            self.write(
                f"{plural(run['executed'], 'step')} ran ({counts['failed']} failed), {counts['skipped']} skipped, "
                f"{counts['uptodate']} up to date{stopped} in {seconds:.1f}s{report_note}\n"
            )
        elif self.results:
            self.write(f"nothing to do: {plural(counts['uptodate'], 'step')} up to date{report_note}\n")
        for abi, steps in sorted(self.after_index.items()):
            self.write(
                f"note: index:{abi} started before {', '.join(steps)} passed (doit -n runs steps side by "
                f"side), so it may lack their wheels: run `doit index` to add them\n"
            )
        if self.runtime_errors:
            self.write("Execution aborted.\n" + "\n".join(self.runtime_errors) + "\n")


def reporter_writing(write_report: ReportWriter, report_path: Path) -> type[ProgressReporter]:
    """The reporter class doit instantiates (it takes a class), writing the report with ``write_report``."""
    return type(
        "WasmwheelReporter",
        (ProgressReporter,),
        {"write_report": staticmethod(write_report), "report_path": report_path},
    )
