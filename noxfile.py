"""Developer sessions: `nox -s lint` and `nox -s tests` (what CI runs), `nox -s fast` (the tests that need no
Node, clang or Rust, in under a minute), `nox -s build` (the example crate), `nox -s bench`."""

import os
import shutil
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests"]

LINTED = ["wasmwheel", "tests", "benchmarks", "dodo.py", "noxfile.py"]
# What the slow tests need and the fast tier must not: `nox -s fast` puts a script that fails in front of each.
SLOW_TOOLS = [
    "node",
    "npm",
    "npx",
    "clang",
    "clang-19",
    "clang++",
    "clang++-19",
    "wasm-ld",
    "wasm-ld-19",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "rustup",
    "cargo",
    "rustc",
]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff's lint rules and formatting (configured in pyproject.toml) over the code and the tests."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)


@nox.session
def tests(session: nox.Session) -> None:
    """Install wasmwheel with its test extras and run the test suite (pytest args after --)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-n", "2", "--durations=15", *session.posargs)


@nox.session
def fast(session: nox.Session) -> None:
    """The fast tier, `pytest -m "not slow"`, and the proof that it needs none of the slow tools: Node, npm, clang,
    wasm-ld, Chromium, rustup, cargo and rustc are replaced on PATH by scripts that fail, HTTP(S) goes to a proxy
    that does not answer (local servers excepted) and the test cache is empty, so a fast test that reaches for a
    tool, the network or a runtime fails here."""
    session.install("-e", ".[test]")
    # Outside the repository (not session.create_tmp(), which also moves TMPDIR there): tests that look for the
    # repository above a temporary folder must not find this one.
    tmp = Path(tempfile.mkdtemp(prefix="wasmwheel-fast-"))
    try:
        shadow = tmp / "no-slow-tools"
        shadow.mkdir()
        for tool in SLOW_TOOLS:
            script = shadow / tool
            script.write_text(f"#!/bin/sh\necho '{tool}: not for the fast tier (mark the test slow)' >&2\nexit 1\n")
            script.chmod(0o755)
        nowhere = "http://127.0.0.1:9"  # nothing listens on the discard port
        local = "127.0.0.1,localhost,::1"
        env = {
            "PATH": os.pathsep.join([str(shadow), os.environ.get("PATH", "")]),
            "WASMWHEEL_TEST_CACHE": str(tmp / "empty-test-cache"),
            "HTTP_PROXY": nowhere,
            "HTTPS_PROXY": nowhere,
            "http_proxy": nowhere,
            "https_proxy": nowhere,
            "NO_PROXY": local,
            "no_proxy": local,
        }
        # One process: the tier is about 10 s of CPU, and each xdist worker would collect all the tests again.
        session.run("python", "-m", "pytest", "-m", "not slow", "--durations=10", *session.posargs, env=env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@nox.session(venv_backend="none")
def build(session: nox.Session) -> None:
    """Run the pipeline with doit in the current environment: `nox -s build -- build:hello-pyo3`."""
    session.run("doit", *(session.posargs or ["build:hello-pyo3"]))


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks, ratios measured in one run: `nox -s bench` (all), `nox -s bench -- reruns --quick`."""
    # Their own venv, as for the tests: the benchmarks import wasmwheel, and `python` on PATH need not have it.
    session.install("-e", ".")
    session.run("python", "benchmarks/run.py", *session.posargs)
