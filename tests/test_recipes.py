"""The recipe collection: every file loads, pins a real PyPI sdist, and tests real behaviour.

The sdists (about 12 MB in all) are downloaded once and kept in the test cache:
their sha256 and what maturin would find in them are checked against each recipe.
Where PyPI has real wasm wheels of a recipe's version, the recipe's test script
runs against them in that ABI's Pyodide: proof that the scripts are right.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_sdist_filename
from packaging.version import Version

from conftest import TEST_CACHE
from pypi_mirror import cached_sdist
from wasmwheel.authoring.pypi import PyPI
from wasmwheel.authoring.scaffold import inspect_sdist, suggest_skips
from wasmwheel.download import Origin, fetch
from wasmwheel.model.abi import load_abis
from wasmwheel.model.recipe import load_recipes
from wasmwheel.model.settings import Settings
from wasmwheel.runner import StepLog
from wasmwheel.smoke.smoke import run_smoke

REPO = Path(__file__).resolve().parent.parent
ABIS = load_abis(REPO / "abi")
COLLECTION = load_recipes(REPO / "recipes", list(ABIS), REPO)
SDIST_RECIPES = sorted(name for name, r in COLLECTION.recipes.items() if r.source.kind == "url")
PUBLIC_PATH = re.compile(r"^https://files\.pythonhosted\.org/packages/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{60}/([^/]+)$")

# Recipes whose version has real maturin-built wasm wheels on PyPI, and for which ABIs.
PYPI_WASM_WHEELS = {
    "jiter": ("2026_0",),
    "pydantic-core": ("2026_0",),
    "cramjam": ("2025_0", "2026_0"),
    "uuid-utils": ("2025_0", "2026_0"),
    "minijinja": ("2025_0", "2026_0"),
    "python-calamine": ("2026_0", "2026_5"),
    "css-inline": ("2026_0",),
}


def test_every_recipe_file_loads():
    assert COLLECTION.errors == {}
    assert len(SDIST_RECIPES) >= 15


@pytest.mark.parametrize("name", SDIST_RECIPES)
def test_recipe_pins_a_pypi_sdist(name):
    recipe = COLLECTION.recipes[name]
    m = PUBLIC_PATH.match(recipe.source.url or "")
    assert m, f"{recipe.path.name}: not a files.pythonhosted.org sdist URL: {recipe.source.url}"
    sdist_name, sdist_version = parse_sdist_filename(m.group(1))
    assert canonicalize_name(sdist_name) == recipe.name == canonicalize_name(recipe.path.stem)
    assert sdist_version == Version(recipe.version)
    assert re.fullmatch(r"[0-9a-f]{64}", recipe.source.sha256 or "")


@pytest.mark.parametrize("name", SDIST_RECIPES)
def test_recipe_test_script_exercises_the_package(name):
    recipe = COLLECTION.recipes[name]
    tree = ast.parse(recipe.test.script)
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert {n.split(".")[0] for n in recipe.import_names} <= imported
    asserts = [node for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    assert len(asserts) >= 3, f"{recipe.path.name}: the test should check results, not only import"
    for req in recipe.test.requirements:
        assert canonicalize_name(Requirement(req).name) != recipe.name


@pytest.mark.parametrize("name", SDIST_RECIPES)
def test_recipe_builds_somewhere_and_says_why_not_elsewhere(name):
    recipe = COLLECTION.recipes[name]
    assert recipe.abis(list(ABIS)), f"{recipe.path.name} leaves out every ABI"
    for abi, reason in recipe.build.skip_abis.items():
        # A reason names the fact: a Rust version, a PyO3 version or requires-python.
        assert re.search(r"Rust >= \d+\.\d+|PyO3|requires-python", reason), f"{abi}: {reason}"


@pytest.mark.slow  # downloads each sdist from PyPI (once, into the test cache)
@pytest.mark.parametrize("name", SDIST_RECIPES)
def test_recipe_matches_its_sdist(name):
    """The pinned file is real (sha256), maturin-built, and the recipe agrees with what is in it."""
    recipe = COLLECTION.recipes[name]
    archive = cached_sdist(recipe.source.url, recipe.source.sha256)
    facts = inspect_sdist(archive)
    assert facts.subdir == recipe.source.subdir
    assert set(facts.import_names) <= set(recipe.import_names)
    # Whatever the sdist's own facts rule out, the recipe leaves out too (its reasons may go
    # further: dependencies can need a newer Rust than the crate itself declares).
    assert set(suggest_skips(facts, ABIS)) <= set(recipe.build.skip_abis)


def _pypi_wheel(pypi: PyPI, name: str, version: str, abi_name: str) -> Path:
    abi = ABIS[abi_name]
    release = pypi.release(name, version)
    for f in release.files:
        if f.filename.endswith(f"-{abi.platform_tag}.whl"):
            dest = TEST_CACHE / "wheels" / f.sha256 / f.filename
            with StepLog(None, echo=False) as log:
                return fetch(Origin(f.url), dest, f.sha256, log)
    raise AssertionError(f"PyPI has no {abi.platform_tag} wheel of {name} {version} any more")


def _pure_wheel(pypi: PyPI, requirement: str) -> Path:
    req = Requirement(requirement)
    release = pypi.release(req.name)
    assert req.specifier.contains(release.version), f"latest {req.name} {release.version} does not satisfy {req}"
    for f in release.files:
        if f.filename.endswith("-none-any.whl"):
            with StepLog(None, echo=False) as log:
                return fetch(Origin(f.url), TEST_CACHE / "wheels" / f.sha256 / f.filename, f.sha256, log)
    raise AssertionError(f"{req.name} {release.version} has no pure-Python wheel")


@pytest.mark.parametrize("name,abi_name", [(n, a) for n, abis in PYPI_WASM_WHEELS.items() for a in abis])
def test_recipe_script_passes_with_pypis_wasm_wheel(name, abi_name, runtimes):
    recipe = COLLECTION.recipes[name]  # the ABI may be left out for building: the script is checked anyway
    pypi = PyPI(Settings.from_env(REPO).pypi_url)
    wheels = [_pure_wheel(pypi, r) for r in recipe.test.requirements]
    wheels.append(_pypi_wheel(pypi, recipe.package_name, recipe.version, abi_name))
    runtime = runtimes[ABIS[abi_name].pyodide_version] / "node_modules" / "pyodide"
    with StepLog(TEST_CACHE / "logs" / f"pypi-wheel-{name}-{abi_name}.log") as log:
        result = run_smoke(runtime, wheels, recipe.test.script, log)
    assert result.ok, f"{recipe.path.name} in Pyodide {ABIS[abi_name].pyodide_version}: {result.stage}: {result.error}"
