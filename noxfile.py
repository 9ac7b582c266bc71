"""Developer sessions: `nox -s lint` and `nox -s tests` (what CI runs), `nox -s build` (the example crate),
`nox -s bench`."""

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests"]

LINTED = ["wasmwheel", "tests", "benchmarks", "dodo.py", "noxfile.py"]


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
