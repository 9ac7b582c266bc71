"""The smoke server of a Pyodide runtime, and the boot snapshot it starts from.

Booting Pyodide costs 3-8 s here; a smoke test after it well under one. Every
smoke step (each its own doit task and, under ``doit -n 2``, its own process)
therefore hands its job to one long-lived Node process per runtime,
``js/smoke-server.mjs``, over a Unix socket. The server keeps a pool of worker
threads, each holding an interpreter booted from a memory snapshot of a fresh
Pyodide and never used: a job takes one, the worker is thrown away afterwards and
a fresh one boots in the background. So each wheel meets a fresh interpreter
(a new JavaScript realm and WebAssembly instance) and the boots overlap tests.

The first step that needs a server starts it (under a file lock, so parallel
steps start one); it exits by itself after ``WASMWHEEL_SMOKE_IDLE`` seconds
without work. A server is identified by everything that shapes it (runtime
folder, Node, snapshot, scripts, pool size, idle time): a change starts a new one and the
old one idles out. Its own log is ``<cache>/pyodide/<version>/smoke-server-<id>.log``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from wasmwheel.fsutil import file_lock, temp_path_beside
from wasmwheel.model.errors import CommandFailed, WasmwheelError
from wasmwheel.model.settings import Settings
from wasmwheel.runner import StepLog, capture, run, start

SERVER_SCRIPTS = ("smoke-server.mjs", "smoke-worker.mjs", "smoke-core.mjs")
START_TIMEOUT = 60  # seconds for a new server to listen
QUEUE_TIMEOUT = 600  # seconds a job may wait for an interpreter before the server is presumed stuck
GRACE = 30  # seconds past the job's own timeout before the client gives up on the server


class SmokeServerError(WasmwheelError):
    pass


def script(name: str) -> Path:
    return Path(str(resources.files("wasmwheel.smoke") / "js" / name))


def node_binary() -> str:
    node = shutil.which("node")
    if not node:
        raise SmokeServerError("node not found on PATH: smoke tests need Node.js >= 18 (e.g. `apt-get install nodejs`)")
    return node


@lru_cache(maxsize=8)
def _node_version(node: str, mtime_ns: int) -> str:
    with StepLog(None) as quiet:
        return capture([node, "--version"], log=quiet, what="node --version")


def node_version(node: str) -> str:
    return _node_version(node, os.stat(node).st_mtime_ns)


@lru_cache(maxsize=1)
def _scripts_digest() -> str:
    h = hashlib.sha256()
    for name in SERVER_SCRIPTS:
        h.update(script(name).read_bytes())
    return h.hexdigest()


# -- the boot snapshot ----------------------------------------------------------------------


SNAPSHOT_FORMAT = 1  # bump when what make-snapshot.mjs writes changes


def snapshot_path(runtime: Path, node_ver: str) -> Path:
    """``runtime`` is the npm package folder (``.../pyodide/<version>/node_modules/pyodide``)."""
    return Path(runtime).parent.parent / "snapshots" / f"boot-v{SNAPSHOT_FORMAT}-node-{node_ver}.snapshot"


def _probe_wheel(folder: Path) -> Path:
    """The smallest pure-Python wheel, to see what installing one imports (js/make-snapshot.mjs)."""
    wheel = folder / "wasmwheel_probe-1.0-py3-none-any.whl"
    info = "wasmwheel_probe-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("wasmwheel_probe.py", "")
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: wasmwheel-probe\nVersion: 1.0\n")
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: wasmwheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")
    return wheel


def ensure_snapshot(runtime: Path, log: StepLog) -> Path | None:
    """Make the runtime's boot snapshot once (atomically); None if this Pyodide cannot make one."""
    node = node_binary()
    path = snapshot_path(runtime, node_version(node))
    if path.exists():
        return path
    with file_lock(path, what="the Pyodide boot snapshot", log=log):
        if path.exists():
            return path
        log.note(f"making a boot snapshot of {runtime} (once per runtime and Node version)")
        with temp_path_beside(path, ".snapshot") as tmp:
            try:
                run(
                    [node, script("make-snapshot.mjs"), runtime, tmp, _probe_wheel(tmp.parent)],
                    log=log,
                    what="make a Pyodide boot snapshot",
                    timeout=300,
                )
            except CommandFailed as exc:
                log.note(f"no boot snapshot ({exc}); smoke tests boot Pyodide in full (slower)")
                return None
            os.replace(tmp, path)
    return path


# -- the server ---------------------------------------------------------------------------------


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _socket_dir() -> Path:
    """A private folder for sockets; short, since a socket path may hold ~100 bytes."""
    base = Path(tempfile.gettempdir())
    if len(str(base)) > 40:
        base = Path("/tmp")
    folder = base / f"wasmwheel-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    st = folder.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise SmokeServerError(f"{folder} is not a private folder of this user; remove it or set TMPDIR")
    return folder


@dataclass(frozen=True)
class Server:
    """Identity and paths of the smoke server for one runtime."""

    runtime: Path  # the npm package folder
    node: str
    snapshot: Path
    workers: int
    idle: int

    @classmethod
    def for_runtime(cls, runtime: Path, settings: Settings) -> Server:
        node = node_binary()
        return cls(
            runtime=Path(runtime).resolve(),
            node=node,
            snapshot=snapshot_path(runtime, node_version(node)),
            workers=settings.smoke_workers or default_workers(),
            idle=settings.smoke_idle,
        )

    @property
    def key(self) -> str:
        identity = [
            str(self.runtime),
            self.node,
            node_version(self.node),
            str(self.snapshot),
            self.workers,
            self.idle,
            _scripts_digest(),
        ]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:20]

    @property
    def socket(self) -> Path:
        return _socket_dir() / f"smoke-{self.key}.sock"

    @property
    def log_path(self) -> Path:
        return self.runtime.parent.parent / f"smoke-server-{self.key[:12]}.log"

    def describe(self) -> str:
        return f"smoke server for {self.runtime} ({self.socket}; its log: {self.log_path})"


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


def connect(server: Server, log: StepLog) -> socket.socket:
    """Connect to the runtime's server, starting it first if none answers."""
    try:
        return _connect(server.socket)
    except (FileNotFoundError, ConnectionRefusedError):
        pass
    with file_lock(
        server.socket,
        what="the smoke server start",
        log=log,
        waiting="waiting for the smoke server that another step is starting",
    ):
        try:
            return _connect(server.socket)  # another step started it meanwhile
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        snapshot = ensure_snapshot(server.runtime, log)
        config = {
            "socket": str(server.socket),
            "runtime": str(server.runtime),
            "snapshot": str(snapshot) if snapshot else None,
            "workers": server.workers,
            "idle": server.idle,
        }
        server.log_path.unlink(missing_ok=True)
        log.note(
            f"starting the smoke server for Pyodide in {server.runtime.parent.parent.name} "
            f"({server.workers} interpreters{', from a snapshot' if snapshot else ''})"
        )
        proc = start(
            [server.node, script("smoke-server.mjs"), json.dumps(config)],
            log=log,
            output=server.log_path,
            what="smoke server",
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                return _connect(server.socket)
            except (FileNotFoundError, ConnectionRefusedError):
                pass
            code = proc.poll()
            if code is not None or time.monotonic() > deadline:
                if code is None:
                    proc.stop()
                raise SmokeServerError(
                    f"the smoke server did not start (exit code {proc.poll()}): "
                    f"{_tail(server.log_path)} (log: {server.log_path})"
                )
            time.sleep(0.05)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "no log"


def _lines(sock: socket.socket) -> Iterator[dict[str, Any]]:
    # Linear in the bytes received: a test may print one 50 MB line.
    pending = bytearray()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return
        pending += chunk
        if b"\n" not in chunk:
            continue
        end = pending.rfind(b"\n")
        complete = bytes(pending[:end])
        del pending[: end + 1]
        for line in complete.split(b"\n"):
            if line.strip():
                yield json.loads(line)


def run_job(server: Server, payload: dict[str, Any], timeout: int, log: StepLog) -> dict[str, Any]:
    """Run one smoke job on the server; its output goes to ``log`` as it comes.

    Returns the job's result (see js/smoke-core.mjs). A server that goes away before
    taking the job (it was idling out) is replaced once; one that dies or stops
    answering mid-job gives ``stage: "server"``.
    """
    for attempt in (1, 2):
        started, data = _exchange(server, payload, timeout, log)
        if started or attempt == 2 or data.get("stage") != "server":
            return data
        log.write(f"# {data['error']}, before taking the job; asking a new server\n")
    raise AssertionError("unreachable")


def _exchange(server: Server, payload: dict[str, Any], timeout: int, log: StepLog) -> tuple[bool, dict[str, Any]]:
    started = False
    output: list[str] = []
    sock = connect(server, log)
    with sock:
        sock.settimeout(QUEUE_TIMEOUT)
        try:
            sock.sendall((json.dumps({"cmd": "run", "job": payload, "timeout": timeout}) + "\n").encode())
            for message in _lines(sock):
                kind = message.get("type")
                if kind == "output":
                    output.append(message.get("text", ""))
                    log.write(output[-1])
                elif kind == "started":
                    started = True
                    sock.settimeout(timeout + GRACE)
                    how = "from the boot snapshot" if message.get("snapshot") else "in full"
                    log.write(
                        f"# smoke server pid {message.get('pid')} ({server.log_path}): a fresh interpreter "
                        f"booted {how} in {message.get('boot')} s; waited {message.get('waited')} s for it\n"
                    )
                elif kind == "result":
                    return started, {**message["result"], "output": "".join(output)}
                elif kind == "error":
                    raise SmokeServerError(f"the smoke server refused the job: {message.get('error')}")
        except TimeoutError:
            return started, _lost(f"the {server.describe()} stopped answering")
        except (OSError, ValueError) as exc:
            return started, _lost(f"lost the {server.describe()}: {exc}")
    return started, _lost(
        f"the {server.describe()} closed the connection before the test finished: {_tail(server.log_path)}"
    )


def _lost(error: str) -> dict[str, Any]:
    return {"ok": False, "stage": "server", "load_errors": [], "error": error}


def request(server: Server, cmd: str) -> dict[str, Any] | None:
    """Send ``ping`` or ``stop`` to a running server; None if none runs."""
    try:
        sock = _connect(server.socket)
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    with sock:
        sock.settimeout(10)
        sock.sendall((json.dumps({"cmd": cmd}) + "\n").encode())
        for message in _lines(sock):
            return message
    return None


def stop(server: Server, wait: float = 10) -> bool:
    """Stop the server if it runs; True if one was stopped."""
    if request(server, "stop") is None:
        return False
    deadline = time.monotonic() + wait
    while server.socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return True
