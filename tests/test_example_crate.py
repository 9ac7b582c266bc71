"""The example crate is real: the real maturin builds it natively (CPython, this machine), and the
recipe's own smoke-test script passes against it, as it must in Pyodide once built for wasm."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from wasmwheel.model.abi import load_abis
from wasmwheel.model.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("WASMWHEEL_TEST_CACHE", REPO / ".cache" / "test"))

pytestmark = pytest.mark.slow  # cargo builds the crate for real


def test_the_example_builds_with_maturin_and_passes_its_recipe_test(tmp_path):
    if shutil.which("cargo") is None:
        pytest.fail("cargo is needed to build the example crate natively (rustup.rs)")
    recipe = load_recipe(REPO / "recipes" / "hello-pyo3.toml", list(load_abis(REPO / "abi")), REPO)
    crate = tmp_path / "hello-pyo3"
    shutil.copytree(REPO / "examples" / "hello-pyo3", crate, ignore=shutil.ignore_patterns("target"))
    env = {**os.environ, "CARGO_TARGET_DIR": str(CACHE / "example-target")}  # warm between runs
    for var in ("RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_ENCODED_RUSTFLAGS"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "maturin", "build", "--release", "-i", sys.executable, "--out", str(tmp_path / "dist")],
        cwd=crate,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("hello_pyo3-0.1.0-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path / "site")
    run = subprocess.run(
        [sys.executable, "-c", recipe.test.script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    # And the test script does test something: it fails against a module that misbehaves.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "hello_pyo3.py").write_text(
        "def sum_as_string(a, b): return str(a - b)\nclass Counter:\n    def increment(self): return 1\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", recipe.test.script],
        env={**os.environ, "PYTHONPATH": str(broken)},
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0 and "AssertionError" in run.stderr
