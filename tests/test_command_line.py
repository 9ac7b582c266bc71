"""Where the commands run: the CLI finds its repository as git does (or says to pass --root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wasmwheel.__main__ import find_root, is_repository
from wasmwheel.errors import WasmwheelError, plural

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
    shutil.copytree(REPO / "examples" / "hello-pyo3", root / "examples" / "hello-pyo3",
                    ignore=shutil.ignore_patterns("target"))
    for name in ("pyproject.toml", "dodo.py"):
        shutil.copy2(REPO / name, root / name)
    return root


def _cli(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wasmwheel", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


# -- the CLI finds its repository -------------------------------------------------------------


def test_outside_a_repository_every_command_says_to_pass_root(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for args in (["check"], ["audit", "W.whl", "--abi", "2024_0"], ["retag", "W.whl", "--abi", "2026_0"],
                 ["matrix"], ["pin-sysroot", "2025_0"]):
        proc = _cli(outside, *args, env=_env(tmp_path))
        assert proc.returncode == 1 and proc.stdout == "", (args, proc.stdout)
        (line,) = proc.stderr.splitlines()
        assert line.startswith(f"error: not inside a wasmwheel repository: no folder from {outside} up holds "
                               "abi/, recipes/ and wasmwheel's pyproject.toml"), line
        assert "--root DIR" in line


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


def test_root_given_must_hold_abi_and_recipes(tmp_path):
    proc = _cli(tmp_path, "--root", str(tmp_path), "check", env=_env(tmp_path))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"error: --root {tmp_path}: not a wasmwheel repository (no abi/ or "
                                        f"recipes/ folder in {tmp_path})"]


def test_plural_forms():
    assert [plural(n, "step") for n in (0, 1, 2)] == ["0 steps", "1 step", "2 steps"]
    assert plural(1, "ABI") == "1 ABI" and plural(3, "ABI") == "3 ABIs"
