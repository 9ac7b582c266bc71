"""File helpers: atomic writes, stamps, file locks, hashing.

A file that another step treats as done is only ever created by renaming a
complete temporary file over it, so a crash leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import inspect
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, mtime_ns: int | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place. ``mtime_ns``: the
    modification time the file gets (to put back a file exactly as it was, see keep_if_same)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mtime_ns is not None:
            os.utime(tmp, ns=(time.time_ns(), mtime_ns))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def file_snapshot(path: Path) -> tuple[bytes, int] | None:
    """A small file's bytes and modification time (None if it does not exist), for keep_if_same."""
    try:
        with open(path, "rb") as f:
            return f.read(), os.fstat(f.fileno()).st_mtime_ns
    except FileNotFoundError:
        return None


def keep_if_same(path: Path, data: bytes, before: tuple[bytes, int] | None) -> None:
    """Write ``data`` to ``path`` (atomically); when that is what ``path`` held at ``before``
    (a file_snapshot), with the modification time it had then: readers that see files by their
    stat (the index's up-to-date check) see the file unchanged."""
    same = before is not None and before[0] == data
    atomic_write_bytes(path, data, mtime_ns=before[1] if same else None)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@contextlib.contextmanager
def staged_dir(path: Path) -> Iterator[Path]:
    """A fresh folder beside ``path`` (``.<name>.<random>.tmp`` in its folder) to stage an output in
    before moving it into place (replace_dir, os.replace): what was not moved is removed afterwards,
    whatever happens. A run killed meanwhile leaves it for ``clean_stale_temps(folder,
    prefix=f".{name}.")``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def temp_path_beside(path: Path, suffix: str = "") -> Iterator[Path]:
    """A fresh path in ``path``'s folder for building an output before renaming it into place.
    Removed afterwards if it still exists (i.e. was not renamed)."""
    with staged_dir(path) as tmp:
        yield tmp / ("out" + suffix)


# A cache folder's marker (emsdk, Rust, a sysroot, an npm package): written last, once the folder is
# complete, holding what the folder was made from; a folder whose marker differs is made again.
INSTALLED = ".wasmwheel-installed.json"


def marker_matches(folder: Path, expected: Any, name: str = INSTALLED) -> bool:
    """The marker ``name`` in ``folder`` holds exactly ``expected`` (False when missing or unreadable)."""
    try:
        return read_json(Path(folder) / name) == expected
    except (OSError, ValueError):
        return False


def write_marker(folder: Path, data: Any, name: str = INSTALLED) -> None:
    """Mark ``folder`` as complete, made from ``data`` (last, atomically)."""
    write_json(Path(folder) / name, data)


def replace_dir(new: Path, dest: Path) -> None:
    """Move the complete folder ``new`` to ``dest``, replacing what was there."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dest.exists() or dest.is_symlink():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(dest, old)
    os.replace(new, dest)
    _fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_stale_temps(folder: Path, prefix: str = ".", max_age_s: float = 0) -> None:
    """Remove leftovers of interrupted runs in ``folder``: ``<prefix>*.tmp`` and ``<prefix>*.old-*``
    (the temporary files and folders above start with ``.<name of what they become>.``).

    Call it while holding the lock that guards whoever writes such temporaries, and give the
    prefix of one output, so that another process's temporaries in the same folder are left alone.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    now = time.time()
    for entry in folder.iterdir():
        name = entry.name
        if name.startswith(prefix) and name.startswith(".") and (name.endswith(".tmp") or ".old-" in name):
            with contextlib.suppress(OSError):
                if now - entry.lstat().st_mtime >= max_age_s:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink()


@contextlib.contextmanager
def file_lock(path: Path, what: str = "", log=None, shared: bool = False, waiting: str = "") -> Iterator[None]:
    """Hold a lock on ``<path>.lock`` (blocking; released on process death, also on kill -9).

    Exclusive by default; ``shared=True`` for readers, which exclude writers but not each other.
    ``waiting``: the line ``log`` shows when another process holds it (default: "waiting for another
    wasmwheel process using <what>").
    """
    lock_path = Path(str(path) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if log is not None:
                log.note(waiting or f"waiting for another wasmwheel process using {what or path}", console=True)
            fcntl.flock(fd, mode)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# -- stamps -----------------------------------------------------------------------
#
# A stamp is the small JSON file a step writes last, as its doit target. It holds the
# facts later steps need (the wheel's path and sha256, the toolchain's environment), so
# they never rediscover them, and it is what later steps depend on: its content changes
# only when the step's output does. Beside it, ``<stamp>.outputs`` records each output's
# size and mtime so that a deleted or replaced output makes the step stale again
# (OutputsIntact) without changing what downstream steps see, and the digest of the
# step's inputs, so that a process that waited for another one running the same step
# can tell it is done.


def output_record(path: Path) -> dict[str, Any]:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def outputs_path(stamp: Path) -> Path:
    return Path(str(stamp) + ".outputs")


def write_stamp(stamp: Path, outputs: list[Path], *, inputs: str = "", **facts: Any) -> None:
    """Write the stamp (``facts``) and beside it the outputs' records and the digest of the
    step's ``inputs`` (see tasks.inputs_key), the stamp last."""
    write_json(outputs_path(stamp), {"outputs": {str(p): output_record(p) for p in outputs}, "inputs": inputs})
    write_json(stamp, facts)


def read_stamp(stamp: Path) -> dict[str, Any]:
    return read_json(stamp)


def _sidecar(stamp: Path) -> dict[str, Any]:
    data = read_json(outputs_path(stamp))
    return data if "outputs" in data else {"outputs": data, "inputs": ""}  # written before "inputs" existed


def stamp_inputs(stamp: Path) -> str | None:
    """The inputs digest recorded with the stamp, or None."""
    try:
        return _sidecar(Path(stamp)).get("inputs") or None
    except (OSError, ValueError, AttributeError):
        return None


# Key of the outputs record in the doit values saved with a step (OutputsIntact.configure_task).
OUTPUTS_VALUE = "_wasmwheel_outputs"
# What doit's `inspect.signature` call sees for an uptodate callable: (task, values). doit inspects
# every uptodate callable of every task on each run; a ready Signature makes that lookup instant.
UPTODATE_SIGNATURE = inspect.Signature(
    [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("task", "values")]
)


def outputs_intact(record: Any) -> bool:
    """True when every output in the record still has its recorded size and mtime."""
    try:
        for path, rec in record.items():
            st = os.stat(path)
            if st.st_size != rec["size"] or st.st_mtime_ns != rec["mtime_ns"]:
                return False
    except (OSError, KeyError, TypeError, AttributeError):
        return False
    return True


class OutputsIntact:
    """doit ``uptodate`` item: False when any output recorded for the stamp is gone or changed.

    After a step succeeds, doit saves the record of ``<stamp>.outputs`` with the step's values,
    so a no-op reads no file (a step last run by an older wasmwheel falls back to the file).
    Only ``stat`` calls: a no-op run hashes nothing. Picklable, for ``doit -n``.
    """

    __signature__ = UPTODATE_SIGNATURE

    def __init__(self, stamp: Path | str):
        self.stamp = str(stamp)

    def configure_task(self, task) -> None:
        task.value_savers.append(self.saved_record)

    def saved_record(self) -> dict[str, Any]:
        """doit value saver (runs in the main process after the step succeeded)."""
        try:
            return {OUTPUTS_VALUE: _sidecar(Path(self.stamp))["outputs"]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def __call__(self, task=None, values=None) -> bool:
        record = values.get(OUTPUTS_VALUE) if isinstance(values, dict) else None
        if record is None:
            try:
                record = _sidecar(Path(self.stamp))["outputs"]
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return False
        return outputs_intact(record)

    def __repr__(self) -> str:  # shown by `doit info`
        return f"OutputsIntact({self.stamp})"
