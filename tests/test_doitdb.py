"""wasmwheel's doit backend (wasmwheel/pipeline/doitdb.py): each finished step's record is in the database
the moment doit saves it, visible to any other connection before the run ends; a record saved again
unchanged writes nothing; several backends on one file at once never lose each other's records.
(That a killed doit run keeps its finished steps is tested end to end in test_interruptions.py.)"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from doit.dependency import Dependency, SqliteDB
from doit.task import Task

from wasmwheel.pipeline.doitdb import StepCommitDB

REPO = Path(__file__).resolve().parent.parent


def _rows(db: Path) -> dict[str, dict]:
    """What another process reading the file sees now."""
    with sqlite3.connect(db) as conn:
        return {task: json.loads(data) for task, data in conn.execute("select task_id, task_data from doit")}


def _task(name: str, deps: list[Path]) -> Task:
    task = Task(name, [lambda: None], file_dep=[str(d) for d in deps])
    task.values = {"n": 1}
    return task


@pytest.fixture
def deps(tmp_path) -> list[Path]:
    files = [tmp_path / "a.txt", tmp_path / "b.txt"]
    for f in files:
        f.write_text(f.name)
    return files


def test_a_saved_step_is_in_the_database_at_once_and_a_failed_one_is_gone_at_once(tmp_path, deps):
    db = tmp_path / ".doit.db"
    manager = Dependency(StepCommitDB, str(db))
    manager.save_success(_task("compile:a", deps))
    assert sorted(_rows(db)["compile:a"]["deps:"]) == [str(d) for d in deps]  # before the run ends (no dump)
    assert _rows(db)["compile:a"]["_values_:"] == {"n": 1}
    manager.save_success(_task("compile:b", deps[:1]))
    manager.remove_success(_task("compile:a", deps))
    assert sorted(_rows(db)) == ["compile:b"]
    # The delete was committed, not left holding the write lock until the end of the run.
    with sqlite3.connect(db, timeout=0.1) as other:
        other.execute("insert into doit values ('x', '{}')")
    manager.close()
    assert sorted(_rows(db)) == ["compile:b", "x"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("pragma journal_mode").fetchone() == ("wal",)


def test_doit_s_own_backend_keeps_them_until_the_end(tmp_path, deps):
    """The control experiment: what the test above fixes."""
    db = tmp_path / ".doit.db"
    manager = Dependency(SqliteDB, str(db))
    manager.save_success(_task("compile:a", deps))
    assert _rows(db) == {}
    manager.close()
    assert list(_rows(db)) == ["compile:a"]


def test_a_record_saved_again_unchanged_writes_nothing(tmp_path, deps):
    db = tmp_path / ".doit.db"
    first = Dependency(StepCommitDB, str(db))
    first.save_success(_task("build:a", []))  # a group: doit saves it in every run
    first.save_success(_task("compile:a", deps))
    first.close()
    again = Dependency(StepCommitDB, str(db))
    for name, files in (("build:a", []), ("compile:a", deps)):
        task = _task(name, files)
        assert again.get_status(task, {}).status == "up-to-date" or name.startswith("build:")
        again.save_success(task)
    assert again.backend._conn.total_changes == 0
    deps[0].write_text("changed")
    again.save_success(_task("compile:a", deps))
    assert again.backend._conn.total_changes == 1
    again.close()


def test_several_backends_on_one_file_at_once_keep_every_record(tmp_path, deps):
    """Two doit processes on one checkout: each commits its own steps while the other has the file
    open (and between them, a plain reader)."""
    db = tmp_path / ".doit.db"
    one, two = Dependency(StepCommitDB, str(db)), Dependency(StepCommitDB, str(db))
    for i in range(20):
        (one if i % 2 else two).save_success(_task(f"step:{i}", deps))
        assert len(_rows(db)) == i + 1
    one.close()
    two.close()
    assert sorted(_rows(db)) == sorted(f"step:{i}" for i in range(20))


@pytest.mark.slow  # starts doit in a subprocess
def test_doit_takes_it_from_pyproject_toml_as_its_sqlite3(tmp_path):
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["doit"]
    assert config["plugins"]["backend"]["sqlite3"] == "wasmwheel.pipeline.doitdb:StepCommitDB"
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    (tmp_path / "dodo.py").write_text(
        "DOIT_CONFIG = {'backend': 'sqlite3', 'dep_file': '.doit.db'}\n"
        "def task_x():\n    return {'actions': ['true'], 'verbosity': 0}\n"
    )
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    listed = subprocess.run(
        [sys.executable, "-m", "doit", "help", "run"], cwd=tmp_path, capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "sqlite3: sqlite3 with each finished step committed at once" in listed
    subprocess.run([sys.executable, "-m", "doit"], cwd=tmp_path, capture_output=True, env=env, check=True)
    with sqlite3.connect(tmp_path / ".doit.db") as conn:
        assert conn.execute("pragma journal_mode").fetchone() == ("wal",)  # doit's own would not set it
