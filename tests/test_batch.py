"""Batch builds: keep going past a failed crate, say what was skipped and why, report, resume,
parallel runs, and dependencies between recipes."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from wasmwheel.pipeline.cli import keep_going, misplaced_options
from wasmwheel.pipeline.report import ROW_STEPS
from wasmwheel.pipeline.steps import CRATE_ABI_STEPS

BULK = "wasm-opt: Unknown option '--enable-bulk-memory-opt'"


def _only(project, *keep):
    for path in (project.root / "abi").glob("*.toml"):
        if path.stem not in keep:
            path.unlink()


@pytest.mark.parametrize(
    "argv,expected",
    [
        ([], True),
        (["build"], True),
        (["run", "build"], True),
        (["-n", "2", "build"], True),
        (["-n", "2"], True),
        (["build:jiter"], False),
        (["smoke:jiter@2026_0"], False),
        (["run", "-v", "2", "build:x"], False),
        (["list"], False),
        (["info", "build"], False),
        (["build", "index"], True),
    ],
)
def test_only_the_collection_keeps_going_by_default(argv, expected):
    assert keep_going(argv) is expected


@pytest.mark.parametrize(
    "argv,fixed",
    [
        (["build", "-n", "2"], "doit -n 2 build"),
        (["run", "build", "-n2", "-c"], "doit run -n2 -c build"),
        (["build:jiter", "--continue"], "doit --continue build:jiter"),
        (["serve", "--port", "8001", "-n", "2"], "doit -n 2 serve --port 8001"),  # --port is serve's own
        # Options before the first task, each with its value, stay where they are.
        (["-n", "2", "build:x", "-c"], "doit -n 2 -c build:x"),
        (
            ["-n", "2", "-P", "thread", "build:x", "smoke:y@2026_0", "-s"],
            "doit -n 2 -P thread -s build:x smoke:y@2026_0",
        ),
        (["-n", "2", "-P", "thread", "build:x"], None),
        (["-n", "2", "build"], None),
        (["serve", "--port", "8001"], None),
        (["list", "--all"], None),
        (["-r", "json", "build"], None),
        (["info", "build", "-v"], None),
    ],
)
def test_options_after_a_task_name_are_named_with_the_command_that_works(argv, fixed):
    message = misplaced_options(argv)
    assert (message is None) if fixed is None else message.endswith(f"run `{fixed}`")


def test_doit_build_dash_n_after_the_task_says_where_options_go(project):
    # doit alone answers "Error parsing Task: option -n not recognized"; nothing runs either way.
    run = project.doit("build", "-n", "2", check=False)
    assert run.output.strip() == (
        "error: doit reads its options before the task names, and '-n 2' came after one; run `doit -n 2 build`"
    )
    assert project.records() == []


def test_the_collection_keeps_going_past_a_failed_crate_and_reports(project):
    _only(project, "2025_0", "2026_0")
    project.add_crate("hello-two", "hello_two")
    env = {"STANDIN_MATURIN_FAIL": "hello-two", "STANDIN_MATURIN_FAIL_MESSAGE": BULK}
    run = project.doit("build", check=False, env=env)
    assert run.returncode != 0
    # The good crate was built and smoke-tested for both ABIs.
    for abi in ("2025_0", "2026_0"):
        assert f"smoke:hello-pyo3@{abi}" in run.executed
        assert f"smoke:hello-pyo3@{abi}" not in run.failed
    # The failure is reported with the tool's output and the fix for this known error ...
    assert sorted(run.failed) == ["compile:hello-two@2025_0", "compile:hello-two@2026_0"]
    assert BULK in run.output
    assert "hint: this Rust is newer than the ABI's Emscripten" in run.output
    # ... and what depended on it is skipped, saying why.
    assert sorted(run.skipped) == sorted(
        f"{k}:hello-two@{a}"
        for k in CRATE_ABI_STEPS[1:]  # after compile
        for a in ("2025_0", "2026_0")
    )
    assert "skip smoke:hello-two@2026_0  (compile:hello-two@2026_0 failed)" in run.output
    # Progress: one line per finished step with its time and a live count.
    total = 4 * 2 + 2 * (
        1 + 4 * 2
    )  # toolchains per ABI (emsdk, rust, std, pyodide), per crate: source + 4 steps per ABI
    assert f"[{total}/{total}]" in run.output
    assert f"{total - 6} steps ran (2 failed), 6 skipped, 0 up to date" in run.output

    report = json.loads(project.layout.report_json.read_text())
    rows = {(r["crate"], r["abi"]): r for r in report["rows"]}
    ok = rows[("hello-pyo3", "2026_0")]
    assert ok["status"] == "ok" and ok["wheel"] == "hello_pyo3-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    assert ok["size"] == (project.layout.dist_dir("2026_0") / ok["wheel"]).stat().st_size
    assert set(ok["steps"]) == {"source", "compile", "retag", "audit", "smoke"} == set(ROW_STEPS)
    assert all(s["status"] == "ok" and s["seconds"] is not None for s in ok["steps"].values())
    bad = rows[("hello-two", "2026_0")]
    assert bad["status"] == "failed" and bad["failed_step"] == "compile"
    assert bad["hint_code"] == "bulk-memory-opt"
    assert bad["log"] == str(project.layout.log("compile", "2026_0", "hello-two"))
    assert report["summary"] == {"ok": 2, "failed": 2}
    md = project.layout.report_md.read_text()
    assert "| hello-two | FAILED (compile) | FAILED (compile) |" in md
    assert "| hello-pyo3 | ok | ok |" in md
    assert "this Rust is newer than the ABI's Emscripten" in md
    # Step cells say which step failed and which never ran (a bare time would read as a pass) ...
    detail = next(line for line in md.splitlines() if line.startswith("| hello-two | 2026_0 |"))
    cells = [c.strip() for c in detail.split("|")[1:-1]]
    assert cells[5].startswith("FAILED ") and cells[5].endswith("s") and cells[6:9] == ["not run"] * 3
    # ... and the report leads with what failed, each step with the tool's own error line (not only
    # "failed with exit code 1"), its log and the hint.
    assert md.splitlines()[0] == "# wasmwheel build report: 2 failed, 2 ok"
    failed = md.split("## What failed\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert failed[:3] == [
        "- **compile:hello-two@2025_0**: maturin build (hello-two for 2025_0) failed with exit code 1 (Caused by: "
        "error: linking with `emcc` failed: exit status: 1 (STANDIN_MATURIN_FAIL))",
        f"  - log: `{project.layout.log('compile', '2025_0', 'hello-two')}`",
        f"  - hint: {bad['hint']}",
    ]
    assert [line for line in failed if line.startswith("- ")] == [
        "- **compile:hello-two@2025_0**: " + failed[0].split(": ", 1)[1],
        "- **compile:hello-two@2026_0**: " + failed[0].split(": ", 1)[1].replace("2025_0", "2026_0"),
    ]

    # Fixed: the next run resumes where it stopped and only the failed crate's steps run.
    run = project.doit("build")
    assert sorted(run.executed) == sorted(f"{k}:hello-two@{a}" for k in CRATE_ABI_STEPS for a in ("2025_0", "2026_0"))
    report = json.loads(project.layout.report_json.read_text())
    assert report["summary"] == {"ok": 4}
    # A no-op run keeps the report of the whole collection (durations from earlier runs).
    assert f"nothing to do: {total} steps up to date" in project.doit("build").output
    report = json.loads(project.layout.report_json.read_text())
    assert report["summary"] == {"ok": 4}
    assert all(r["steps"]["compile"]["seconds"] is not None for r in report["rows"])


def test_a_single_target_stops_at_its_first_failure(project):
    _only(project, "2025_0", "2026_0")
    run = project.doit("build:hello-pyo3", check=False, env={"STANDIN_MATURIN_FAIL": "hello-pyo3"})
    assert len(run.failed) == 1
    assert not any(t.startswith(("retag:", "audit:", "smoke:")) for t in run.executed)
    # The summary says what the stop left undone, and how to go on.
    assert re.search(
        r"^\d+ steps ran \(1 failed\), 0 skipped, 0 up to date, \d+ not run \(doit stops at the "
        r"first failure of a single target; -c keeps going\) in ",
        run.output,
        flags=re.M,
    ), run.output
    # -c keeps going there too.
    run = project.doit("-c", "build:hello-pyo3", check=False, env={"STANDIN_MATURIN_FAIL": "hello-pyo3"})
    assert len(run.failed) == 2 and "not run" not in run.output


def test_a_failed_toolchain_blocks_only_its_abi(project):
    _only(project, "2025_0", "2026_0")
    run = project.doit("build", check=False, env={"STANDIN_EMSDK_UNKNOWN": "5.0.3"})
    assert run.failed == ["emsdk:2026_0"]
    assert "smoke:hello-pyo3@2025_0" in run.executed
    assert "skip compile:hello-pyo3@2026_0  (emsdk:2026_0 failed)" in run.output
    rows = {r["abi"]: r for r in json.loads(project.layout.report_json.read_text())["rows"]}
    assert rows["2026_0"]["status"] == "blocked" and rows["2026_0"]["blocked_by"] == ["emsdk:2026_0"]
    assert "tool or SDK not found" in rows["2026_0"]["error"]


def test_a_run_stopped_by_a_toolchain_step_says_so_first_in_the_report(project):
    """A single target stops at its first failure: here emsdk, before any crate step ran. The report
    does not show a table of "not built" crates with the cause only in report.json: its first line
    says why nothing was built, and its first section gives the step, its error, its log and hint."""
    _only(project, "2026_0")
    run = project.doit("build:hello-pyo3", check=False, env={"STANDIN_EMSDK_UNKNOWN": "5.0.3"})
    assert run.failed == ["emsdk:2026_0"] and not any(t.startswith("compile:") for t in run.executed)
    md = project.layout.report_md.read_text()
    lines = md.splitlines()
    assert lines[0] == "# Nothing built: emsdk:2026_0 failed"
    report = json.loads(project.layout.report_json.read_text())
    (failure,) = report["failures"]
    error = next(t["error"] for t in report["toolchains"] if t["task"] == "emsdk:2026_0")
    assert failure["task"] == "emsdk:2026_0" and failure["error"] == error and "5.0.3" in error
    assert failure["log"] == str(project.layout.log("emsdk", "2026_0"))
    assert failure["blocks"] == ["hello-pyo3@2026_0"]
    # The section that leads the report: the step, its error line, its log (and a hint where one is known).
    section = lines[lines.index("## What failed") + 2 :]
    assert section[0].startswith(f"- **emsdk:2026_0**: {error.splitlines()[0].strip()} (")
    assert section[0].endswith("tool or SDK not found: '5.0.3')")  # emsdk's own error line
    assert section[1] == f"  - log: `{project.layout.log('emsdk', '2026_0')}`"
    assert section[2] == "  - blocks 1 crate build: hello-pyo3@2026_0"
    assert lines.index("## What failed") < lines.index("## Crates")
    # The crate is not "not built" as if nothing were wrong: blocked by the toolchain, which compile needs.
    (row,) = report["rows"]
    assert row["status"] == "blocked" and row["blocked_by"] == ["emsdk:2026_0"] and row["blocked_step"] == "compile"
    assert "| hello-pyo3 | blocked (emsdk:2026_0) |" in md

    # Fixed, the next run builds the crate: the report leads with its counts again.
    project.doit("build:hello-pyo3")
    md = project.layout.report_md.read_text()
    assert md.splitlines()[0] == "# wasmwheel build report: 1 ok" and "## What failed" not in md


def test_a_failed_runtime_step_blocks_only_the_smoke_tests(project):
    _only(project, "2026_0")
    project.doit("compile:hello-pyo3@2026_0", "retag:hello-pyo3@2026_0", "audit:hello-pyo3@2026_0")
    # The runtime looks half installed, so the pyodide step installs it, from a registry that does not answer
    # (and an empty npm cache: npm would take the tarballs from its own).
    (project.layout.runtime_dir(project.abi("2026_0")) / "node_modules" / "pyodide" / "package.json").unlink()
    env = {
        "WASMWHEEL_NPM_REGISTRY": "http://127.0.0.1:9/",
        "npm_config_cache": str(project.root / "npm-cache"),
        "npm_config_fetch_retries": "0",
    }
    run = project.doit("build:hello-pyo3", check=False, env=env)
    assert run.failed == ["pyodide:2026_0"], run.output
    report = json.loads(project.layout.report_json.read_text())
    (row,) = report["rows"]
    assert row["status"] == "blocked" and row["blocked_step"] == "smoke" and row["blocked_by"] == ["pyodide:2026_0"]
    assert [f["task"] for f in report["failures"]] == ["pyodide:2026_0"]
    # Its wheel was built, but no wheel passed a smoke test.
    assert project.layout.report_md.read_text().startswith("# No wheel passed its smoke test: pyodide:2026_0 failed\n")


def _wheel_digests(project) -> dict[str, str]:
    out = {}
    for abi_dir in (project.layout.build / "dist").iterdir():
        for wheel in abi_dir.glob("*.whl"):
            out[f"{abi_dir.name}/{wheel.name}"] = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return out


def test_parallel_build_gives_the_same_wheels_as_a_serial_one(project, tmp_path):
    _only(project, "2025_0", "2026_0")
    project.add_crate("hello-two", "hello_two")
    parallel = project.doit("-n", "2", "build")
    assert len(parallel.executed) == 4 * 2 + 2 * (1 + 4 * 2) and parallel.failed == []
    digests = _wheel_digests(project)
    assert len(digests) == 4
    # The same tree built serially in another build folder gives byte-identical wheels.
    serial_dir = tmp_path / "serial-build"
    project.doit("build", env={"WASMWHEEL_BUILD_DIR": str(serial_dir)})
    project.env["WASMWHEEL_BUILD_DIR"] = str(serial_dir)
    assert _wheel_digests(project) == digests
    # Toolchains were provisioned once for both runs (file locks around shared cache folders).
    installs = [r for r in project.records("rustup") if r["argv"][:2] == ["toolchain", "install"]]
    assert len(installs) == 2


def _depends(project, crate, **kinds):
    project.edit_toml(f"recipes/{crate}.toml", lambda d: d.update({"depends": kinds}))


def test_a_test_dependency_is_installed_first_and_its_changes_rerun_dependents(project):
    _only(project, "2026_0")
    project.add_crate("hello-two", "hello_two")
    _depends(project, "hello-two", test=["hello-pyo3"])
    project.edit_toml(
        "recipes/hello-two.toml",
        lambda d: d["test"].update(
            {
                "script": "import hello_pyo3, hello_two\n"
                "assert hello_pyo3.sum_as_string(1, 1) == hello_two.sum_as_string(2, 0)\n"
            }
        ),
    )
    run = project.doit("build")
    assert run.executed.index("retag:hello-pyo3@2026_0") < run.executed.index("smoke:hello-two@2026_0")
    log = project.layout.log("smoke", "2026_0", "hello-two").read_text()
    assert "with hello_pyo3-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl" in log
    # A change that gives hello-pyo3 a new wheel reruns hello-two's smoke test, nothing else of it.
    project.edit_toml("recipes/hello-pyo3.toml", lambda d: d["build"].update({"rustflags": ["-C", "opt-level=z"]}))
    run = project.doit("build")
    assert sorted(run.executed) == sorted(
        [
            "compile:hello-pyo3@2026_0",
            "retag:hello-pyo3@2026_0",
            "audit:hello-pyo3@2026_0",
            "smoke:hello-pyo3@2026_0",
            "smoke:hello-two@2026_0",
        ]
    )


def test_a_dependent_blocked_by_a_failed_crate_says_which_step_and_points_at_its_log(project):
    _only(project, "2026_0")
    project.add_crate("hello-two", "hello_two")
    _depends(project, "hello-pyo3", test=["hello-two"])
    run = project.doit("build", check=False, env={"STANDIN_MATURIN_FAIL": "hello-two"})
    assert "skip smoke:hello-pyo3@2026_0  (compile:hello-two@2026_0 failed)" in run.output
    report = json.loads(project.layout.report_json.read_text())
    row = next(r for r in report["rows"] if r["crate"] == "hello-pyo3")
    assert row["status"] == "blocked" and row["blocked_step"] == "smoke"
    assert row["blocked_by"] == ["compile:hello-two@2026_0"]
    assert row["log"] == str(project.layout.log("compile", "2026_0", "hello-two"))  # the log that says why
    assert row["steps"]["compile"]["status"] == "ok" and row["wheel"]  # built, not tested
    md = project.layout.report_md.read_text()
    assert (
        "- **hello-pyo3 @ 2026_0**: smoke not run, since compile:hello-two@2026_0 failed: maturin build "
        "(hello-two for 2026_0) failed with exit code 1 (Caused by: error: linking with `emcc` failed"
    ) in md


def test_a_build_dependency_is_built_first_and_handed_to_the_build(project):
    _only(project, "2026_0")
    project.add_crate("hello-two", "hello_two")
    _depends(project, "hello-two", build=["hello-pyo3"])
    project.doit("build")
    calls = {r["env"]["CARGO_TARGET_DIR"].split("/")[-2]: r for r in project.records("maturin")}
    wheel = project.layout.dist_dir("2026_0") / "hello_pyo3-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    assert calls["hello-two"]["env"]["WASMWHEEL_BUILD_WHEELS"] == str(wheel)
    assert "WASMWHEEL_BUILD_WHEELS" not in calls["hello-pyo3"]["env"]


def test_dependency_mistakes_are_recipe_errors(project):
    project.add_crate("hello-two", "hello_two")
    _depends(project, "hello-two", test=["hello-pyo3"])
    project.edit_toml("recipes/hello-pyo3.toml", lambda d: d["build"].update({"skip_abis": {"2024_0": "old"}}))
    out = project.doit("list", "--all").output
    assert "build:hello-two" in out and "hello-pyo3 skips 2024_0, which hello-two builds for" in out
    _depends(project, "hello-pyo3", test=["hello-two"])
    out = project.doit("list", "--all").output
    assert "dependency cycle: hello-pyo3 -> hello-two -> hello-pyo3" in out


class _Task:
    """What the reporter reads of a doit task."""

    def __init__(self, name, task_dep=()):
        self.name, self.task_dep, self._actions, self.executed = name, list(task_dep), ["run"], True


def test_a_smoke_pass_after_the_index_started_is_announced():
    # doit -n dispatches index:<abi> once every other step is running or waiting (it needs only the
    # runtime), so the last smoke tests of that ABI can pass after it read build/dist.
    import io

    from wasmwheel.pipeline.progress import ProgressReporter

    out = io.StringIO()
    reporter = ProgressReporter(out, {})
    tasks = {n: _Task(n) for n in ("smoke:a@2026_0", "index:2026_0", "smoke:b@2026_0", "smoke:c@2025_0")}
    reporter.initialize(tasks, list(tasks))
    for name in ("smoke:a@2026_0", "index:2026_0", "smoke:b@2026_0", "smoke:c@2025_0"):
        reporter.execute_task(tasks[name])
    reporter.add_success(tasks["smoke:a@2026_0"])  # dispatched before the index, passed after it started
    reporter.add_success(tasks["index:2026_0"])
    reporter.add_success(tasks["smoke:b@2026_0"])
    reporter.add_success(tasks["smoke:c@2025_0"])  # another ABI's index is not concerned
    reporter.complete_run()
    notes = [line for line in out.getvalue().splitlines() if line.startswith("note:")]
    assert notes == [
        "note: index:2026_0 started before smoke:a@2026_0, smoke:b@2026_0 passed (doit -n runs steps "
        "side by side), so it may lack their wheels: run `doit index` to add them"
    ]
    # A serial run, where the index comes after every test, says nothing.
    out = io.StringIO()
    reporter = ProgressReporter(out, {})
    reporter.initialize(tasks, list(tasks))
    for name in ("smoke:a@2026_0", "smoke:b@2026_0", "index:2026_0"):
        reporter.execute_task(tasks[name])
        reporter.add_success(tasks[name])
    reporter.complete_run()
    assert "note:" not in out.getvalue()
