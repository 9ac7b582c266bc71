"""The GitHub Actions workflows: accepted by actionlint, consistent with the CLI, the matrix and the cache
layout they rely on, and the collection workflow's steps run here on the stand-in pipeline."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wasmwheel.__main__ import build_parser
from wasmwheel.model.layout import Layout
from wasmwheel.model.settings import Settings
from wasmwheel.pipeline.graph import Project
from wasmwheel.pipeline.shard import matrix_for

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))


def _actionlint() -> str:
    exe = shutil.which("actionlint")
    if not exe:
        pytest.fail("actionlint not found: `pip install -e .[test]` installs it (see pyproject.toml)")
    return exe


def test_there_are_the_two_workflows():
    assert [f.name for f in FILES] == ["collection.yml", "pipeline.yml"]


def test_actionlint_accepts_the_workflows():
    proc = subprocess.run([_actionlint(), "-no-color", *map(str, FILES)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_really_checks(tmp_path):
    """The check above can fail: a workflow with a mistake is refused."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        (WORKFLOWS / "collection.yml").read_text().replace("needs.plan.outputs.matrix", "needs.plan.outputs.matrixx")
    )
    proc = subprocess.run([_actionlint(), "-no-color", str(broken)], capture_output=True, text=True)
    assert proc.returncode == 1 and "matrixx" in proc.stdout


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_matrix_fields_used_by_a_workflow_are_in_the_generated_matrix(path, repo, tmp_path):
    """fromJSON matrices are untyped for actionlint: check the fields here."""
    project = Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "cache")})
    matrix, _ = matrix_for(project, 4, None)
    fields = set(matrix["include"][0])
    used = set(re.findall(r"\bmatrix\.([A-Za-z_]+)", path.read_text()))
    assert used and used <= fields, f"{path.name} uses matrix fields the generator does not make: {used - fields}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_wasmwheel_commands_in_workflows_parse(path):
    commands = [
        m
        for step in _steps(yaml.safe_load(path.read_text()))
        if "run" in step
        for m in re.findall(r"python -m wasmwheel ([^)\n]+)", step["run"])
    ]
    assert commands
    for command in commands:
        argv = [re.sub(r"^\$\w+$", "8", a) for a in shlex.split(command)]
        args = build_parser().parse_args(argv)  # exits (fails the test) on an unknown option
        assert args.func


def test_caches_hold_the_cache_folders_wasmwheel_uses(tmp_path, monkeypatch):
    """The toolchain caches cover every folder the toolchain steps fill under WASMWHEEL_CACHE's default."""
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # unset on GitHub's runners
    home = Path.home()
    layout = Layout(Settings.from_env(REPO, {}))
    assert layout.cache == home / ".cache" / "wasmwheel"  # what the workflows spell ~/.cache/wasmwheel
    abi = next(iter(Project.load(REPO, {"WASMWHEEL_BUILD_DIR": str(tmp_path / "b")}).abis.values()))
    needed = {
        p.relative_to(layout.cache).parts[0]
        for p in (layout.emsdk_dir(abi), layout.rust_dir(abi), layout.runtime_dir(abi), layout.download("0" * 64, "f"))
    }
    for path in FILES:
        jobs = yaml.safe_load(path.read_text())["jobs"]
        build = jobs["build"]
        caches = [s["with"] for s in build["steps"] if s.get("uses", "").startswith("actions/cache@")]
        toolchains = next(c for c in caches if "toolchain_key" in c["key"] and "recipes_key" not in c["key"])
        cached = {line.strip().removeprefix("~/.cache/wasmwheel/") for line in toolchains["path"].split()}
        assert needed <= cached, f"{path.name}: {needed - cached} not cached"
        targets = next(c for c in caches if c["path"].strip() == "build/target")
        assert "matrix.toolchain_key" in targets["key"] and "matrix.recipes_key" in targets["key"]
        assert "matrix.toolchain_key" in targets["restore-keys"]


# -- the collection workflow, step by step, on the stand-in pipeline ------------------------------


def _shard_tasks(entry: dict) -> list[str]:
    return entry["tasks"].split()


def test_the_collection_workflow_builds_merges_and_indexes_over_shards(project, tmp_path):
    """plan -> shard jobs (each its own build folder, one ABI, keep going) -> merge -> doit index,
    as collection.yml runs them; then a rerun of a shard with the toolchain cache restored."""
    for path in (project.root / "abi").glob("*.toml"):
        if path.stem not in ("2025_0", "2026_0"):
            path.unlink()
    project.add_crate("hello-two", "hello_two")

    def wasmwheel(*args: str, build: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "wasmwheel", *args],
            cwd=project.root,
            check=True,
            env={**project.env, "WASMWHEEL_BUILD_DIR": str(build)},
            capture_output=True,
            text=True,
        )

    # plan: no report yet (the cache is empty on a first run).
    merged = tmp_path / "merged"
    plan = wasmwheel("matrix", "--shards", "2", "--report", str(merged / "report.json"), build=tmp_path / "plan")
    entries = json.loads(plan.stdout)["include"]
    assert [e["abis"] for e in entries] == ["2025_0", "2026_0"]  # one ABI per shard

    # build: each shard in a fresh build folder, sharing one toolchain cache (restored in CI).
    shards = tmp_path / "shards"
    for entry in entries:
        build = tmp_path / f"build-{entry['shard']}"
        emsdk_before = len(project.records("emsdk"))
        run = project.doit("--continue", *_shard_tasks(entry), env={"WASMWHEEL_BUILD_DIR": str(build)})
        assert not run.failed
        assert {t.split(":")[0] for t in run.executed} >= {"emsdk", "rust", "pyodide", "compile", "smoke"}
        assert all(t.endswith(entry["abis"]) or t.startswith("source:") for t in run.executed)
        installs = [r["argv"] for r in project.records("emsdk")[emsdk_before:] if r["argv"][0] == "install"]
        assert installs == [["install", project.abi(entry["abis"]).emscripten]]
        artifact = shards / f"shard-{entry['shard']}"  # upload-artifact of build/dist, build/logs, report.json
        for part in ("dist", "logs"):
            shutil.copytree(build / part, artifact / part)
        shutil.copy2(build / "report.json", artifact / "report.json")

    # index: merge the shards, then doit index over the merged wheels.
    final = tmp_path / "final-build"
    out = wasmwheel("merge", *map(str, sorted(shards.iterdir())), "--report", str(merged / "report.json"), build=final)
    assert "4 wheels copied; 4 ok" in out.stdout
    project.doit("index", env={"WASMWHEEL_BUILD_DIR": str(final)})
    for abi in ("2025_0", "2026_0"):
        lock = json.loads((final / "index" / abi / "pyodide-lock.json").read_text())
        assert {"hello-pyo3", "hello-two"} <= set(lock["packages"])
        assert len(list((final / "index" / abi).glob("*.whl"))) == 2
    report = json.loads((merged / "report.json").read_text())
    assert report["summary"] == {"ok": 4} and report["run"]["shards"] == 2
    assert all(r["steps"]["compile"]["status"] == "ok" for r in report["rows"])

    # The next plan is balanced by these durations.
    again = json.loads(
        wasmwheel("matrix", "--shards", "2", "--report", str(merged / "report.json"), build=tmp_path / "plan").stdout
    )["include"]
    for entry in again:
        rows = [r for r in report["rows"] if r["abi"] == entry["abis"]]
        assert entry["weight"] == round(sum(r["seconds"] for r in rows), 2)

    # A rerun of a shard on a new runner with the toolchain cache restored provisions nothing.
    emsdk_before, rustup_before = len(project.records("emsdk")), len(project.records("rustup"))
    run = project.doit("--continue", *_shard_tasks(entries[0]), env={"WASMWHEEL_BUILD_DIR": str(tmp_path / "rerun")})
    assert "emsdk:2025_0" in run.executed and not run.failed
    assert len(project.records("emsdk")) == emsdk_before
    assert not [r for r in project.records("rustup")[rustup_before:] if r["argv"][:2] == ["toolchain", "install"]]
    log = (tmp_path / "rerun" / "logs" / "2025_0" / "std.log").read_text()
    assert "already unpacked" in log
