"""doit's state, saved step by step: a doit backend that survives ``kill -9``.

doit's own ``sqlite3`` backend keeps what a run learns in memory and writes it when the
run ends (``dump``): a run killed with SIGKILL, or by a crash or a power cut of the CI
runner, forgets every step it finished, and the next run does them all again. This
backend is that one, with each step's record committed to the database as soon as doit
has saved it (one small transaction per finished step; a failed step's record is
deleted the same way). It is registered in ``pyproject.toml``
(``[tool.doit.plugins.backend]``) under doit's own name ``sqlite3``, which DOIT_CONFIG
selects: doit reads that file from the folder it runs in, the repository root. The
database file is the same as doit's, so doit's commands (``forget``, ``dumpdb``, ...) and
a doit started elsewhere read and write it as before.

- The database is in WAL mode: readers never wait for a writer, and a commit is one
  append to the log. ``synchronous=NORMAL``: a commit survives the process being killed
  (it is in the operating system's cache); a power cut may lose the last commits, never
  the database.
- Several ``doit`` processes at once each commit only the steps they ran, one row per
  transaction, and wait (up to BUSY_TIMEOUT_MS) while another commits. Under ``doit -n``
  only the parent process saves state; the workers only run actions.
- A no-op run writes nothing: it only reads.

doit's ``Dependency.save_success`` writes a step's record key by key and ``deps:`` last;
that key completes the record and commits it. (doit is pinned to 0.37 in pyproject.toml;
tests/test_interruptions.py checks that a killed run keeps exactly the steps it finished.)
"""

from __future__ import annotations

import sqlite3

from doit.dependency import SqliteDB

BUSY_TIMEOUT_MS = 60_000
# Keys after which a task's record is complete: the last one save_success writes, and `doit ignore`.
_COMPLETES_RECORD = frozenset({"deps:", "ignore:"})


class StepCommitDB(SqliteDB):
    desc = "sqlite3 with each finished step committed at once (wasmwheel; survives kill -9)"

    def __init__(self, name, codec, *, module_name=None):
        super().__init__(name, codec, module_name=module_name)
        self._before: dict[str, str] = {}  # task -> its record before this run changed it

    def _sqlite3(self, name: str) -> sqlite3.Connection:
        conn = super()._sqlite3(name)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if conn.execute("PRAGMA journal_mode").fetchone()["journal_mode"] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")  # stays set in the file
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def set(self, task_id: str, dependency: str, value) -> None:
        if task_id not in self._before:
            if task_id not in self._cache:  # doit did not need it (a task without dependencies)
                self._cache[task_id] = self._get_task_data(task_id)
            self._before[task_id] = self.codec.encode(self._cache[task_id])
        super().set(task_id, dependency, value)
        if dependency in _COMPLETES_RECORD:
            self._commit(task_id)

    def _commit(self, task_id: str) -> None:
        record = self.codec.encode(self._cache[task_id])
        if record == self._before.pop(task_id, None):
            # The same record again: doit saves every task that ran, and tasks without actions (the
            # build groups) run in every run. Writing nothing keeps a no-op run read-only.
            self._dirty.discard(task_id)
            return
        try:
            with self._conn:  # one transaction, committed at the end of the block
                self._conn.execute("insert or replace into doit values (?,?)", (task_id, record))
        except sqlite3.OperationalError:
            return  # locked by another writer for a whole minute: the record stays dirty, for dump()
        self._dirty.discard(task_id)

    def remove(self, task_id: str) -> None:
        super().remove(task_id)
        self._before.pop(task_id, None)
        self._conn.commit()  # doit's backend would hold this delete's write lock until the run ends
