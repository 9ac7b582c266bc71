"""Shared fixtures: real Pyodide runtimes, real wasm modules, local mirrors, stand-in tools.

What is real here: the Pyodide runtimes (npm, booted under Node), the wasm side
modules (clang-19 + wasm-ld-19), downloads (requests against a local HTTP server),
git clones (a local repository), unpacking, retagging and smoke tests. What is a
stand-in: emsdk, rustup and maturin, which cannot download their binaries here; they
record how they were called so the tests can check the exact commands.
"""

from __future__ import annotations

import functools
import http.server
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

import wasmbuild  # noqa: E402
from helpers import TestProject  # noqa: E402

# Persisted between local runs (gitignored); CI starts empty.
TEST_CACHE = Path(os.environ.get("WASMWHEEL_TEST_CACHE", REPO / ".cache" / "test"))


@pytest.fixture(scope="session")
def wasm_tools() -> None:
    missing = wasmbuild.missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: these tests build real wasm side modules; "
                    "install them with `apt-get install clang-19 lld-19` (see .ci/run)")


@pytest.fixture(scope="session")
def stand_in_modules(tmp_path_factory, wasm_tools) -> Path:
    """hello_pyo3 and hello_two side modules for Python 3.12-3.15, packed by the maturin stand-in."""
    return wasmbuild.build_stand_in_modules(tmp_path_factory.mktemp("modules"), ("hello_pyo3", "hello_two"))


@pytest.fixture(scope="session")
def runtimes() -> dict[str, Path]:
    """Every ABI's Pyodide runtime, installed by wasmwheel's own runtime step from the committed locks."""
    from wasmwheel.abi import load_abis
    from wasmwheel.layout import Layout
    from wasmwheel.runner import StepLog
    from wasmwheel.runtime import provision_runtime
    from wasmwheel.settings import Settings

    settings = Settings.from_env(REPO, {**os.environ, "WASMWHEEL_CACHE": str(TEST_CACHE / "wasmwheel"),
                                        "WASMWHEEL_BUILD_DIR": str(TEST_CACHE / "build")})
    layout = Layout(settings)
    found = {}
    for abi in load_abis(REPO / "abi").values():
        with StepLog(TEST_CACHE / "logs" / f"pyodide-{abi.pyodide_version}.log") as log:
            facts = provision_runtime(abi, layout, log)
        found[abi.pyodide_version] = Path(facts["runtime"]).parent.parent  # cache/pyodide/<version>
    return found


# Real maturin-built wasm wheels from PyPI (and what pydantic-core imports), pinned.
PYPI_WHEELS = {
    "jiter": ("jiter==0.19.0", "pyemscripten_2026_0_wasm32"),
    "pydantic_core": ("pydantic-core==2.50.4", "pyemscripten_2026_0_wasm32"),
    "typing_extensions": ("typing-extensions==4.15.0", None),
}


@pytest.fixture(scope="session")
def real_wheels() -> dict[str, Path]:
    """Real wheels from PyPI, downloaded once into the test cache (PyPI is reachable in CI)."""
    folder = TEST_CACHE / "pypi"
    found = {}
    for key, (requirement, platform) in PYPI_WHEELS.items():
        name, version = requirement.split("==")
        prefix = f"{name.replace('-', '_')}-{version}-"
        have = sorted(folder.glob(f"{prefix}*.whl"))
        if not have:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(folder),
                   "--disable-pip-version-check", requirement]
            if platform:
                cmd += ["--platform", platform, "--implementation", "cp", "--python-version", "3.14"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.fail(f"could not download {requirement} from PyPI:\n{proc.stdout}{proc.stderr}")
            have = sorted(folder.glob(f"{prefix}*.whl"))
        assert have, f"pip downloaded no {prefix}*.whl into {folder}"
        found[key] = have[0]
    return found


@pytest.fixture(scope="session")
def emsdk_mirror(tmp_path_factory) -> str:
    """A local git repository standing in for github.com/emscripten-core/emsdk."""
    repo = tmp_path_factory.mktemp("emsdk-mirror") / "emsdk.git"
    work = tmp_path_factory.mktemp("emsdk-work")
    shutil.copy2(TESTS / "standins" / "emsdk" / "emsdk", work / "emsdk")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "add", "emsdk"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-q", "-m", "emsdk stand-in"], check=True)
    subprocess.run([*git, "clone", "-q", "--bare", str(work), str(repo)], check=True)
    return repo.as_uri()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture(scope="session")
def http_root(tmp_path_factory):
    """A local HTTP server (a mirror); returns (folder it serves, base URL)."""
    root = tmp_path_factory.mktemp("http")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


SYSROOT_NAME = "emcc-4.0.9_nightly-2025-02-01.tar.bz2"


@pytest.fixture(scope="session")
def sysroot_archive(http_root) -> tuple[Path, str]:
    """A sysroot tarball laid out like Pyodide's (wasm32-unknown-emscripten/lib/...), served over HTTP."""
    root, url = http_root
    path = root / "sysroot" / SYSROOT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:bz2") as tf:
        for name, data in {
            "wasm32-unknown-emscripten/lib/libstd-wasm-eh.rlib": b"std built with -Z emscripten-wasm-eh\n",
            "wasm32-unknown-emscripten/lib/libpanic_unwind-wasm-eh.rlib": b"panic_unwind (wasm EH)\n",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return path, f"{url}/sysroot"


@pytest.fixture
def project(tmp_path, stand_in_modules, runtimes, emsdk_mirror, sysroot_archive) -> TestProject:
    """A copy of this repository's ABIs, example and recipe, wired to local mirrors and stand-ins."""
    return TestProject.create(tmp_path, runtimes=runtimes, modules=stand_in_modules,
                              emsdk_url=emsdk_mirror, sysroot=sysroot_archive)
