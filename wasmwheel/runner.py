"""The one way wasmwheel runs external commands, and the per-step log.

Commands are argv lists, never shell strings: a recipe value reaches the program
as one literal argument or environment value whatever characters it holds. Each
command, its working folder and the environment variables wasmwheel changed are
written to the step's log, followed by everything the command printed.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from wasmwheel.model.errors import CommandFailed, WasmwheelError
from wasmwheel.model.settings import verbose

TAIL_LINES = 60


class StepLog:
    """The log file of one step. Rewritten each time the step runs."""

    def __init__(self, path: Path | None, title: str = "", echo: bool = False):
        self.path = Path(path) if path else None
        self.echo = echo or verbose()
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._file = None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8", errors="replace")
        if title:
            self.write(f"# {title}\n# started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")

    def write(self, text: str) -> None:
        if not text:
            return
        for line in text.splitlines():
            self._tail.append(line)
        if self._file:
            self._file.write(text)
            self._file.flush()
        if self.echo:
            sys.stderr.write(text)

    def note(self, message: str, console: bool = False) -> None:
        """A progress line in the log; with ``console``, also on the console (for what a user
        must see now: waiting on a lock, a retry, a file to commit)."""
        self.write(f"# {message}\n")
        if console and not self.echo:
            sys.stderr.write(f"   {message}\n")
            sys.stderr.flush()

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join(list(self._tail)[-lines:])

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None

    def __enter__(self) -> StepLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def format_command(argv: Sequence[str], cwd: Path | None, env_changes: Mapping[str, str | None]) -> str:
    lines = []
    if cwd:
        lines.append(f"$ cd {shlex.quote(str(cwd))}")
    for key, value in sorted(env_changes.items()):
        lines.append(f"$ unset {key}" if value is None else f"$ export {key}={shlex.quote(value)}")
    lines.append("$ " + shlex.join(argv))
    return "\n".join(lines) + "\n"


def inherited_env(drop: Sequence[str] = ()) -> dict[str, str]:
    """The environment a command inherits (this process's), without the variables in ``drop``.
    (wasmwheel's own settings are read by wasmwheel.model.settings, not from here.)"""
    return {k: v for k, v in os.environ.items() if k not in drop}


def env_diff(env: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str | None]:
    base = os.environ if base is None else base
    changes: dict[str, str | None] = {k: v for k, v in env.items() if base.get(k) != v}
    changes.update({k: None for k in base if k not in env})
    return changes


def run(
    argv: Sequence[str | os.PathLike],
    *,
    log: StepLog,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    what: str = "",
    separate_stdout: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``argv`` (a list, never a shell string), log it, and return its result.

    stdout and stderr both go to the log; ``result.stdout`` holds both, or only
    stdout with ``separate_stdout`` (for commands whose answer is on stdout). On a
    non-zero exit (with ``check``) raises CommandFailed naming the command and the log.
    """
    if isinstance(argv, (str, bytes)):
        raise TypeError("run() takes an argv list, never a shell string")
    args = [os.fspath(a) for a in argv]
    full_env = dict(os.environ if env is None else env)
    log.write(format_command(args, cwd, env_diff(full_env)))
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if separate_stdout else subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise CommandFailed(f"{what or args[0]}: command not found: {args[0]}", log_path=log.path) from None
    except PermissionError:
        raise CommandFailed(f"{what or args[0]}: not executable: {args[0]}", log_path=log.path) from None

    output: list[str] = []
    lock = threading.Lock()

    def pump(stream, keep: bool) -> None:
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace")
            with lock:
                if keep:
                    output.append(text)
                log.write(text)

    readers = [threading.Thread(target=pump, args=(proc.stdout, True), daemon=True)]
    if separate_stdout:
        readers.append(threading.Thread(target=pump, args=(proc.stderr, False), daemon=True))
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        for reader in readers:
            reader.join(timeout=10)
    elapsed = time.monotonic() - start
    log.write(f"# exit {proc.returncode} after {elapsed:.1f}s\n")
    result = subprocess.CompletedProcess(args, proc.returncode, "".join(output), None)
    # The command's own last lines (stdout and stderr), not the log's header.
    tail = "\n".join(result.stdout.splitlines()[-TAIL_LINES:]) if not separate_stdout else log.tail()
    if timed_out:
        raise CommandFailed(
            f"{what or args[0]} timed out after {timeout:.0f}s",
            returncode=proc.returncode,
            log_path=log.path,
            output_tail=tail,
        )
    if check and proc.returncode != 0:
        raise CommandFailed(
            f"{what or shlex.join(args[:3])} failed with exit code {proc.returncode}",
            returncode=proc.returncode,
            log_path=log.path,
            output_tail=tail,
        )
    return result


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    except ProcessLookupError:
        pass


class Background:
    """A command started by :func:`start`, running alongside the step."""

    def __init__(self, proc: subprocess.Popen, what: str, log: StepLog | None, readers: list[threading.Thread]):
        self.proc = proc
        self.what = what
        self._log = log
        self._readers = readers

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> int:
        """Stop it (SIGTERM, then SIGKILL after 5 s) with everything it started; return its exit code."""
        if self.proc.poll() is None:
            _kill_group(self.proc)
        for reader in self._readers:
            reader.join(timeout=10)
        if self._log is not None:
            self._log.write(f"# {self.what or self.proc.args[0]}: exit {self.proc.returncode}\n")
        return self.proc.returncode


def start(
    argv: Sequence[str | os.PathLike],
    *,
    log: StepLog,
    output: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    what: str = "",
) -> Background:
    """Start ``argv`` (a list) in the background, in its own session, and log the command.

    Its output goes to the step log, or to the file ``output`` for a helper that
    outlives the step (the smoke server); such a helper keeps running after this
    process exits. ``Background.stop()`` ends it and everything it started.
    """
    if isinstance(argv, (str, bytes)):
        raise TypeError("start() takes an argv list, never a shell string")
    args = [os.fspath(a) for a in argv]
    full_env = dict(os.environ if env is None else env)
    log.write(format_command(args, cwd, env_diff(full_env)))
    if output is not None:
        log.write(f"# output: {output}\n")
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        sink = open(output, "ab")
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=sink if output is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise CommandFailed(f"{what or args[0]}: command not found: {args[0]}", log_path=log.path) from None
    except PermissionError:
        raise CommandFailed(f"{what or args[0]}: not executable: {args[0]}", log_path=log.path) from None
    finally:
        if output is not None:
            sink.close()
    readers: list[threading.Thread] = []
    if output is None:

        def pump() -> None:
            for raw in iter(proc.stdout.readline, b""):
                log.write(raw.decode("utf-8", errors="replace"))

        readers.append(threading.Thread(target=pump, daemon=True))
        readers[0].start()
    return Background(proc, what, log if output is None else None, readers)


def capture(argv: Sequence[str | os.PathLike], *, log: StepLog, what: str = "", **kw) -> str:
    """Run and return its stdout, stripped (for version and path queries)."""
    return run(argv, log=log, what=what, separate_stdout=True, **kw).stdout.strip()


def require_tool(name: str, env: Mapping[str, str], hint: str) -> str:
    import shutil

    found = shutil.which(name, path=env.get("PATH", ""))
    if not found:
        raise WasmwheelError(f"{name} not found on PATH ({hint})")
    return found
