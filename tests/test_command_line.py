"""Where the commands run: the CLI finds its repository as git does (or says to pass --root), and
doit gets the closest real task names for a misspelt one, and the root when started elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wasmwheel.__main__ import find_root, is_repository
from wasmwheel.model.errors import WasmwheelError, plural
from wasmwheel.pipeline.cli import BASENAMES, names_of_tasks, started_elsewhere, task_arguments, unknown_task_hint
from wasmwheel.pipeline.graph import Project
from wasmwheel.pipeline.steps import PIPELINE

REPO = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASMWHEEL_")}
    env["WASMWHEEL_CACHE"] = str(tmp_path / "cache")
    return env


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A small copy of the repository (its pyproject.toml, dodo.py, ABIs, and one recipe)."""
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "abi", root / "abi")
    (root / "recipes").mkdir()
    shutil.copy2(REPO / "recipes" / "hello-pyo3.toml", root / "recipes")
    shutil.copytree(
        REPO / "examples" / "hello-pyo3", root / "examples" / "hello-pyo3", ignore=shutil.ignore_patterns("target")
    )
    for name in ("pyproject.toml", "dodo.py"):
        shutil.copy2(REPO / name, root / name)
    return root


def _cli(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wasmwheel", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


# -- the CLI finds its repository -------------------------------------------------------------


@pytest.mark.slow  # starts wasmwheel in a subprocess per command
def test_outside_a_repository_every_command_says_to_pass_root(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for args in (
        ["check"],
        ["audit", "W.whl", "--abi", "2024_0"],
        ["retag", "W.whl", "--abi", "2026_0"],
        ["matrix"],
        ["pin-sysroot", "2025_0"],
    ):
        proc = _cli(outside, *args, env=_env(tmp_path))
        assert proc.returncode == 1 and proc.stdout == "", (args, proc.stdout)
        (line,) = proc.stderr.splitlines()
        assert line.startswith(
            f"error: not inside a wasmwheel repository: no folder from {outside} up holds "
            "abi/, recipes/ and wasmwheel's pyproject.toml"
        ), line
        assert "--root DIR" in line


@pytest.mark.slow  # starts wasmwheel in a subprocess
def test_from_a_subfolder_the_cli_walks_up_to_its_repository(checkout, tmp_path):
    # This checkout has one recipe (the repository itself has many): the count says which one was read.
    proc = _cli(checkout / "examples" / "hello-pyo3" / "src", "check", env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    abis = len(list((checkout / "abi").glob("*.toml")))
    assert proc.stdout == f"{abis} ABIs, 1 recipe, 0 problems\n"
    assert find_root(checkout / "recipes") == checkout.resolve()


def test_a_folder_with_abi_and_recipes_of_another_project_is_not_the_repository(checkout, tmp_path):
    inner = checkout / "examples" / "other"
    (inner / "abi").mkdir(parents=True)
    (inner / "recipes").mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    assert not is_repository(inner) and is_repository(checkout)
    assert find_root(inner / "recipes") == checkout.resolve()  # walks past it
    (checkout / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    with pytest.raises(WasmwheelError, match="not inside a wasmwheel repository"):
        find_root(inner)


@pytest.mark.slow  # starts wasmwheel in a subprocess
def test_root_given_must_hold_abi_and_recipes(tmp_path):
    proc = _cli(tmp_path, "--root", str(tmp_path), "check", env=_env(tmp_path))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"error: --root {tmp_path}: not a wasmwheel repository (no abi/ or recipes/ folder in {tmp_path})"
    ]


def test_plural_forms():
    assert [plural(n, "step") for n in (0, 1, 2)] == ["0 steps", "1 step", "2 steps"]
    assert plural(1, "ABI") == "1 ABI" and plural(3, "ABI") == "3 ABIs"


# -- doit: misspelt task names, started elsewhere ------------------------------------------------


@pytest.mark.parametrize(
    "argv,names",
    [
        (["buidl:hello-pyo3"], ["buidl:hello-pyo3"]),
        (["-n", "2", "build", "index"], ["build", "index"]),
        (["-n2", "--verbosity=2", "build:x"], ["build:x"]),
        (["run", "-r", "json", "build"], ["build"]),
        (["serve", "--port", "8001"], ["serve"]),  # the value of serve's own --port is no task name
        (["list", "--all", "--sort", "name", "smoke:x@2026_0"], ["smoke:x@2026_0"]),  # list's --sort takes a value
        (["info", "compile:x@2026_0"], ["compile:x@2026_0"]),
        (["forget", "-s", "build"], ["build"]),
        (["help", "run"], []),
        (["dumpdb"], []),
        ([], []),
    ],
)
def test_the_task_names_of_a_doit_command_line(argv, names):
    assert task_arguments(argv) == names


def test_task_names_are_the_names_of_the_tasks_the_generators_yield(repo, tmp_path):
    (repo / "recipes" / "broken.toml").write_text("[package]\nname = 'broken'\n")
    path = repo / "abi" / "2026_5.toml"
    path.write_text(path.read_text().replace('python = "3.15.0rc1"', 'python = "three"'))
    # The 2025_0 ABI takes its std from a sysroot archive here, so that pin-sysroot:2025_0 exists.
    from helpers import SYSROOT_URL, use_sysroot_std

    use_sysroot_std(repo / "abi" / "2025_0.toml", SYSROOT_URL, "")
    project = Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "cache")})
    yielded = set()
    for step in PIPELINE:
        made = project.tasks(step)
        yielded |= {
            t["basename"] + (f":{t['name']}" if t.get("name") else "")
            for t in ([made] if isinstance(made, dict) else made)
        }
    assert project.task_names() == yielded
    assert {"build:broken", "abi:2026_5", "std:2025_0", "pin-sysroot:2025_0", "binaryen:2026_0"} <= yielded
    assert set(BASENAMES) <= yielded


def test_a_misspelt_task_gets_the_closest_real_names(repo, tmp_path):
    project = Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "cache")})
    calls = []

    def names():
        calls.append(1)
        return project.task_names()

    hint = lambda *argv: unknown_task_hint(list(argv), names)  # noqa: E731
    assert hint("buidl:hello-pyo3") == "no task is named 'buidl:hello-pyo3': did you mean build:hello-pyo3?"
    assert hint("build:helo-pyo3") == "no task is named 'build:helo-pyo3': did you mean build:hello-pyo3?"
    assert hint("smok:jiter@2026_0") == "no task is named 'smok:jiter@2026_0': did you mean smoke:jiter@2026_0?"
    assert hint("-n", "2", "bild") == "no task is named 'bild': did you mean build?"
    assert hint("binaryen:2026").endswith("did you mean binaryen:2026_0 or binaryen:2026_5?")
    assert hint("zzzzzz") == "no task is named 'zzzzzz': `doit list` shows every task"
    calls.clear()
    # Real names, patterns and target paths get no hint; groups alone are known without listing every task.
    for argv in (
        ["build:hello-pyo3"],
        ["smoke:jiter@2026_0", "index"],
        ["build:*"],
        ["build", "index"],
        [str(repo / "build" / "stamps" / "x")],
        ["serve", "--port", "8001"],
        ["help", "buidl"],
    ):
        assert hint(*argv) is None, argv
    assert len(calls) == 2  # only for the two lines that name a single task


def test_a_task_missing_from_the_quick_list_is_never_refused():
    """Project.task_names is the quick answer; a name it lacks is looked up among the tasks the dodo
    file really makes before anything is said (so a new task group is not refused by a stale list)."""
    namespace = {
        "task_std": lambda: iter([{"basename": "std", "name": None}, {"basename": "std", "name": "2026_0"}]),
        "task_serve": lambda: {"actions": []},
        "task_made": lambda: iter([{"basename": "other", "name": "x"}]),
        "not_a_task": lambda: 1 / 0,
    }
    assert names_of_tasks(namespace) == {"std", "std:2026_0", "serve", "other:x"}
    quick = lambda: {"build", "build:hello-pyo3"}  # noqa: E731
    assert unknown_task_hint(["std:2026_0"], quick, lambda: names_of_tasks(namespace)) is None
    assert unknown_task_hint(["std:2026"], quick, lambda: names_of_tasks(namespace)) == (
        "no task is named 'std:2026': did you mean std:2026_0?"
    )


@pytest.mark.slow  # starts doit in a subprocess
def test_doit_with_a_misspelt_task_names_the_closest_and_runs_nothing(checkout, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "doit", "buidl:hello-pyo3"],
        cwd=checkout,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert proc.stdout + proc.stderr == "error: no task is named 'buidl:hello-pyo3': did you mean build:hello-pyo3?\n"
    assert not (checkout / "build" / "stamps").exists()
    # `doit info` with a wrong name: the same line (doit alone fails with a KeyError traceback).
    proc = subprocess.run(
        [sys.executable, "-m", "doit", "info", "smoke:hello-pyo3@2026"],
        cwd=checkout,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        "error: no task is named 'smoke:hello-pyo3@2026': did you mean smoke:hello-pyo3@2026_0"
    )


@pytest.mark.slow  # starts doit in a subprocess
def test_doit_started_in_a_subfolder_names_the_repository_root(checkout, tmp_path):
    sub = checkout / "recipes"
    for argv in (["-k", "list"], ["-f", "../dodo.py", "build"]):
        proc = subprocess.run(
            [sys.executable, "-m", "doit", *argv],
            cwd=sub,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode != 0 and proc.stdout == "", argv
        assert proc.stderr.splitlines() == [
            f"error: doit started in {sub.resolve()}, a subfolder of the repository, whose root is "
            f"{checkout.resolve()}; doit reads its settings (pyproject.toml) from the folder it starts in: run it "
            f"from the root (cd {checkout.resolve()})"
        ], argv
    assert not (checkout / "build" / "stamps").exists()


def test_started_elsewhere_is_quiet_at_the_root(tmp_path):
    assert started_elsewhere(tmp_path, tmp_path) is None
    assert started_elsewhere(None, tmp_path) is None
    assert "outside the repository" in started_elsewhere(tmp_path.parent, tmp_path)
