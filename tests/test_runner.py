"""The command runner: argv lists only, literal values, logs that hold the command and its output."""

from __future__ import annotations

import json
import sys

import pytest

from wasmwheel.model.errors import CommandFailed
from wasmwheel.runner import StepLog, run

NASTY = ["a; touch pwned", "$(touch pwned)", "`touch pwned`", "line1\nline2", "'quoted' \"double\"", "*", "~", "$HOME"]


def test_arguments_and_environment_reach_the_program_literally(tmp_path):
    code = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['NASTY']]))"
    with StepLog(tmp_path / "step.log") as log:
        result = run(
            [sys.executable, "-c", code, *NASTY],
            log=log,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "NASTY": NASTY[1]},
            separate_stdout=True,
        )
    args, env_value = json.loads(result.stdout)
    assert args == NASTY and env_value == NASTY[1]
    assert not (tmp_path / "pwned").exists()


def test_shell_strings_are_refused():
    with StepLog(None) as log, pytest.raises(TypeError):
        run("echo hi", log=log)


def test_the_log_holds_the_command_the_changed_environment_and_the_output(tmp_path):
    path = tmp_path / "step.log"
    with StepLog(path, "demo step") as log, pytest.raises(CommandFailed) as err:
        run(
            [sys.executable, "-c", "import sys; print('to stdout'); print('to stderr', file=sys.stderr); sys.exit(3)"],
            log=log,
            env={"PATH": "/usr/bin:/bin", "EXTRA": "a b"},
            what="the demo",
        )
    text = path.read_text()
    assert "# demo step" in text
    assert "$ export EXTRA='a b'" in text
    assert f"$ {sys.executable} -c" in text
    assert "to stdout" in text and "to stderr" in text and "# exit 3" in text
    assert str(err.value) == "the demo failed with exit code 3"
    assert "to stderr" in err.value.output_tail and err.value.log_path == path


def test_a_hung_command_is_killed_with_its_children(tmp_path):
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    with StepLog(tmp_path / "x.log") as log, pytest.raises(CommandFailed, match="timed out after 1s"):
        run([sys.executable, "-c", code], log=log, timeout=1)


def test_missing_programs_are_named(tmp_path):
    with StepLog(None) as log, pytest.raises(CommandFailed, match="command not found: no-such-tool-here"):
        run(["no-such-tool-here"], log=log)
