"""Shared fixtures: real Pyodide runtimes, real wasm modules, local mirrors, stand-in tools.

What is real here: the Pyodide runtimes (npm, booted under Node), the wasm side
modules (clang-19 + wasm-ld-19), downloads (requests against a local HTTP server),
git clones (a local repository), unpacking, retagging and smoke tests. What is a
stand-in: emsdk, rustup and maturin, which cannot download their binaries here; they
record how they were called so the tests can check the exact commands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

import wasmbuild  # noqa: E402
from helpers import (  # noqa: E402
    TEST_CACHE,
    TestProject,
    make_emsdk_mirror,
    make_sysroot_archive,
    provision_binaryens,
    provision_runtimes,
    serve_folder,
)

# The fixtures that need clang/wasm-ld, Node (the Pyodide runtimes), rustup, Chromium or PyPI (sdists:
# tests/test_scaffold.py's real sdists). A test that uses one of them, directly or through another fixture, is
# marked slow below; the fast tier (`nox -s fast`, `-m "not slow"`) runs the rest without any of these tools.
SLOW_FIXTURES = frozenset(
    {"wasm_tools", "runtimes", "binaryens", "real_wheels", "perspective_wheels", "rustup", "chromium", "sdists"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def wasm_tools() -> None:
    missing = wasmbuild.missing_tools()
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: these tests build real wasm side modules; "
            "install them with `apt-get install clang-19 lld-19` (see .ci/run)"
        )


@pytest.fixture(scope="session")
def stand_in_modules(tmp_path_factory, wasm_tools) -> Path:
    """hello_pyo3 and hello_two side modules for Python 3.12-3.15, packed by the maturin stand-in."""
    return wasmbuild.build_stand_in_modules(tmp_path_factory.mktemp("modules"), ("hello_pyo3", "hello_two"))


@pytest.fixture(scope="session")
def runtimes() -> dict[str, Path]:
    """Every ABI's Pyodide runtime, installed by wasmwheel's own runtime step from the committed locks."""
    return provision_runtimes(TEST_CACHE)


@pytest.fixture(scope="session")
def binaryens() -> dict[str, Path]:
    """Every ABI's binaryen (wasm-opt), installed by wasmwheel's own binaryen step from the committed locks."""
    return provision_binaryens(TEST_CACHE)


# Real maturin-built wasm wheels from PyPI (and what pydantic-core imports), pinned: (requirement, platform
# tag or None for a pure wheel, Python version pip selects for).
PYPI_WHEELS = {
    "jiter": ("jiter==0.19.0", "pyemscripten_2026_0_wasm32", "3.14"),
    "pydantic_core": ("pydantic-core==2.50.4", "pyemscripten_2026_0_wasm32", "3.14"),
    "typing_extensions": ("typing-extensions==4.15.0", None, "3.14"),
    "rustworkx": (
        "rustworkx==0.18.1",
        "pyemscripten_2026_0_wasm32",
        "3.14",
    ),  # abi3, built with wasm exception handling
}
# Wheels that load and work although a function they import is defined nowhere (issue 11): the audit must pass them.
PERSPECTIVE_WHEELS = {
    "2025_0": ("perspective-python==5.5.1", "pyemscripten_2025_0_wasm32", "3.13"),
    "2026_0": ("perspective-python==5.6.1", "pyemscripten_2026_0_wasm32", "3.14"),
}
PYPI = "https://pypi.org/simple/"


class PyPIUnreachable(Exception):
    pass


def pypi_wheel(requirement: str, platform: str | None, python: str) -> Path:
    """A wheel from PyPI, downloaded once into the test cache by pip. Raises PyPIUnreachable when pip fails
    and PyPI does not answer either; fails the test when pip fails although PyPI answers."""
    folder = TEST_CACHE / "pypi"
    name, version = requirement.split("==")
    prefix = f"{name.replace('-', '_')}-{version}-"
    have = sorted(folder.glob(f"{prefix}*.whl"))
    if have:
        return have[0]
    # Into a folder of this process first, then moved: test workers downloading the same wheel at once
    # never see half a file.
    with tempfile.TemporaryDirectory(dir=folder.parent if folder.parent.exists() else None) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            tmp,
            "--disable-pip-version-check",
            requirement,
        ]
        if platform:
            cmd += ["--platform", platform, "--implementation", "cp", "--python-version", python]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            try:
                urllib.request.urlopen(PYPI, timeout=20).close()
            except OSError as exc:
                raise PyPIUnreachable(
                    f"PyPI is unreachable ({PYPI}: {exc}), so {requirement} cannot be downloaded"
                ) from exc
            pytest.fail(f"could not download {requirement} from PyPI:\n{proc.stdout}{proc.stderr}")
        folder.mkdir(parents=True, exist_ok=True)
        for wheel in Path(tmp).glob("*.whl"):
            os.replace(wheel, folder / wheel.name)
    have = sorted(folder.glob(f"{prefix}*.whl"))
    assert have, f"pip downloaded no {prefix}*.whl into {folder}"
    return have[0]


@pytest.fixture(scope="session")
def real_wheels() -> dict[str, Path]:
    """Real wheels from PyPI, downloaded once into the test cache (PyPI is reachable in CI)."""
    found = {}
    for key, spec in PYPI_WHEELS.items():
        try:
            found[key] = pypi_wheel(*spec)
        except PyPIUnreachable as exc:
            pytest.fail(str(exc))
    return found


@pytest.fixture(scope="session")
def perspective_wheels() -> dict[str, Path]:
    """perspective-python's wasm wheels for 2025_0 and 2026_0 (8 MB each), from PyPI; skipped when PyPI is
    unreachable."""
    try:
        return {abi: pypi_wheel(*spec) for abi, spec in PERSPECTIVE_WHEELS.items()}
    except PyPIUnreachable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def emsdk_mirror(tmp_path_factory) -> str:
    """A local git repository standing in for github.com/emscripten-core/emsdk."""
    return make_emsdk_mirror(tmp_path_factory.mktemp("emsdk-mirror"))


@pytest.fixture(scope="session")
def http_root(tmp_path_factory):
    """A local HTTP server (a mirror); returns (folder it serves, base URL)."""
    root = tmp_path_factory.mktemp("http")
    with serve_folder(root) as url:
        yield root, url


@pytest.fixture(scope="session")
def sysroot_archive(http_root) -> tuple[Path, str]:
    """A sysroot tarball laid out like Pyodide's (wasm32-unknown-emscripten/lib/...), served over HTTP."""
    root, url = http_root
    return make_sysroot_archive(root / "sysroot"), f"{url}/sysroot"


@pytest.fixture
def repo(tmp_path) -> Path:
    """A copy of this repository's ABI files, recipes and examples (for loading, not building)."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "abi", root / "abi")
    shutil.copytree(REPO / "recipes", root / "recipes")
    shutil.copytree(REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("target"))
    return root


@pytest.fixture
def project(tmp_path, stand_in_modules, runtimes, binaryens, emsdk_mirror, sysroot_archive) -> TestProject:
    """A copy of this repository's ABIs, example and recipe, wired to local mirrors and stand-ins."""
    return TestProject.create(
        tmp_path,
        runtimes=runtimes,
        modules=stand_in_modules,
        emsdk_url=emsdk_mirror,
        sysroot=sysroot_archive,
        binaryens=binaryens,
    )
