"""A no-op run leaves the build report alone, but only when nothing it shows changed."""

from __future__ import annotations

import json

import wasmwheel.pipeline.report as report_module
from wasmwheel.pipeline.graph import Project
from wasmwheel.pipeline.report import StepResult, write_report
from wasmwheel.pipeline.steps import CRATE_ABI_STEPS, TaskId, task_name

STEPS = [task_name(step, "hello-pyo3", "2026_0") for step in CRATE_ABI_STEPS]
RUN = {"seconds": 1.0, "executed": 0, "failed": 0, "skipped": 0, "uptodate": 0, "finished": ""}


def _project(repo, tmp_path) -> Project:
    return Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "cache"), "WASMWHEEL_BUILD_DIR": str(tmp_path / "b")})


def _results(status: str, **override: str) -> list[StepResult]:
    return [
        StepResult(t, override.get(TaskId.parse(t).step, status), 2.0 if status != "uptodate" else None) for t in STEPS
    ]


def _row(project, crate="hello-pyo3", abi="2026_0"):
    report = json.loads(project.layout.report_json.read_text())
    return next(r for r in report["rows"] if r["crate"] == crate and r["abi"] == abi)


def test_a_noop_rewrites_nothing(repo, tmp_path, monkeypatch):
    project = _project(repo, tmp_path)
    assert write_report(project, _results("ok"), {**RUN, "executed": 4}) is not None
    files = [project.layout.report_json, project.layout.report_md, project.layout.history]
    before = [(f.read_bytes(), f.stat().st_mtime_ns) for f in files]

    def unread(*args):
        raise AssertionError("a no-op read the whole history")

    monkeypatch.setattr(report_module, "update_history", unread)
    assert write_report(project, _results("uptodate"), {**RUN, "uptodate": 4}) is None
    assert write_report(project, _results("uptodate")[:2], {**RUN, "uptodate": 2}) is None  # a part of it, too
    assert [(f.read_bytes(), f.stat().st_mtime_ns) for f in files] == before
    assert _row(project)["steps"]["compile"] == {"status": "ok", "seconds": 2.0}


def test_an_up_to_date_step_recorded_as_failed_is_reported_ok_again(repo, tmp_path):
    """E.g. a config edit made compile fail (smoke skipped), and reverting it makes both up to date."""
    project = _project(repo, tmp_path)
    write_report(project, _results("ok"), RUN)
    write_report(project, _results("ok", compile="failed", smoke="skipped"), RUN)
    assert _row(project)["status"] == "failed"
    assert write_report(project, _results("uptodate"), RUN) is not None
    row = _row(project)
    assert row["steps"]["compile"]["status"] == "ok" and row["steps"]["smoke"]["status"] == "ok"
    assert write_report(project, _results("uptodate"), RUN) is None


def test_a_changed_collection_or_history_means_a_new_report(repo, tmp_path):
    project = _project(repo, tmp_path)
    write_report(project, _results("ok"), RUN)
    # A recipe removed: its rows must go, although every remaining step is up to date.
    (repo / "recipes" / "jiter.toml").unlink()
    project = _project(repo, tmp_path)
    assert write_report(project, _results("uptodate"), RUN) is not None
    assert not any(r["crate"] == "jiter" for r in json.loads(project.layout.report_json.read_text())["rows"])
    assert write_report(project, _results("uptodate"), RUN) is None
    # Another run (e.g. `doit build:other` in a second terminal) records a failure: a later no-op
    # here keeps that report, and does not bring back the state it had before.
    other = StepResult("compile:hello-pyo3@2024_0", "failed", 1.0, error="boom")
    assert write_report(_project(repo, tmp_path), [other], RUN) is not None
    assert write_report(project, _results("uptodate"), RUN) is None
    assert _row(project, abi="2024_0")["status"] == "failed"
    assert json.loads(project.layout.history.read_text())["compile:hello-pyo3@2024_0"]["error"] == "boom"
