"""The whole pipeline through doit: provisioning against local mirrors, stand-in compiles,
real retag and real smoke tests in each ABI's Pyodide, and staleness per step."""

from __future__ import annotations


def test_first_run_builds_everything(project):
    run = project.doit("build:hello-pyo3")
    print(run.output)
    assert False
