"""Helpers for the concurrency and interruption tests: doit processes in the background, the wheels
a build produced, a reference build to compare with, and snapshots of what a step wrote."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from helpers import DoitRun, TestProject


def keep_abis(project: TestProject, keep: tuple[str, ...]) -> None:
    for path in (project.root / "abi").glob("*.toml"):
        if path.stem not in keep:
            path.unlink()


def start_doit(
    project: TestProject, *args: str, env: dict[str, str] | None = None, wrapper: list[str] | None = None
) -> subprocess.Popen:
    """``doit args`` in the background (output in ``proc.output_path``); ``wrapper`` runs doit under a
    test bootstrap (tests/killpoint.py)."""
    out = project.root.parent / f"doit-{os.getpid()}-{len(list(project.root.parent.glob('doit-*.out')))}.out"
    argv = [sys.executable, *(wrapper or ["-m", "doit"]), *args]
    f = open(out, "w")
    proc = subprocess.Popen(
        argv, cwd=project.root, env={**project.env, **(env or {})}, stdout=f, stderr=subprocess.STDOUT, text=True
    )
    f.close()
    proc.output_path = out  # type: ignore[attr-defined]
    proc.argv = argv  # type: ignore[attr-defined]
    return proc


def wait_for(condition, what: str, *procs: subprocess.Popen, timeout: float = 300) -> None:
    """Until ``condition()`` holds while ``procs`` (from start_doit) run; fails at once if one ends first.
    The bound only stops a test that would otherwise wait forever."""
    deadline = time.monotonic() + timeout
    while not condition():
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(
                    f"doit ended ({proc.returncode}) before {what}:\n" + Path(proc.output_path).read_text()
                )  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.02)


def finish(proc: subprocess.Popen, timeout: float = 600) -> DoitRun:
    proc.wait(timeout=timeout)
    return DoitRun(proc.argv, proc.returncode, Path(proc.output_path).read_text())  # type: ignore[attr-defined]


def step_logs(project: TestProject) -> dict[Path, tuple[int, int, int]]:
    """Every step log -> (inode, size, mtime_ns): take it before a run, for running_step."""
    found = {}
    for log in (project.layout.build / "logs").rglob("*.log"):
        st = log.stat()
        found[log] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return found


def running_step(project: TestProject, before: dict[Path, tuple[int, int, int]], run: DoitRun) -> str | None:
    """The step a killed run (one process) was in: the one whose log the run wrote (a step's log starts
    with ``# <task>`` and is rewritten from its first moment) that the run did not report finished.
    None when it was killed between steps. (Not the last log written: two logs written within one
    tick of the clock that stamps files have the same mtime.)"""
    started = set()
    for log, state in step_logs(project).items():
        if before.get(log) != state:
            with open(log, encoding="utf-8", errors="replace") as f:
                first = f.readline()
            if first.startswith("# "):
                started.add(first[2:].strip())
    unfinished = started - set(run.executed)
    assert len(unfinished) <= 1, f"a run of one process was in several steps at once: {sorted(unfinished)}"
    return unfinished.pop() if unfinished else None


def wheels(build_dir: Path) -> dict[str, str]:
    """``<abi>/<wheel file>`` -> sha256 of every wheel the build made (retagged and as built)."""
    found = {}
    for kind in ("dist", "wheels"):
        for path in sorted((build_dir / kind).rglob("*.whl")):
            found[f"{kind}/{path.relative_to(build_dir / kind)}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def reference_wheels(project: TestProject, tmp: Path) -> dict[str, str]:
    """The wheels of one uninterrupted, lone `doit build` in a build folder of its own (same cache)."""
    build = tmp / "reference-build"
    project.doit("build", env={"WASMWHEEL_BUILD_DIR": str(build)})
    return wheels(build)


def git_source_recipe(project: TestProject, name: str, work: Path, url: str | None = None) -> None:
    """Commit everything in the folder ``work`` and write ``recipes/<name>.toml`` with a git source at
    that commit (``url``: how the recipe spells the repository, default ``file://<work>``)."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(work)]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    (project.root / "recipes" / f"{name}.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "1.0"\n\n[source]\ngit = "{url or f"file://{work}"}"\n'
        f'commit = "{commit}"\n'
    )


def snapshot(*roots: Path) -> dict[str, tuple]:
    """path -> (kind, size, mtime_ns) for everything below ``roots`` (links not followed)."""
    found = {}
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                kind = "l" if os.path.islink(path) else "d" if os.path.isdir(path) else "f"
                found[path] = (kind, st.st_size if kind == "f" else 0, st.st_mtime_ns if kind != "d" else 0)
    return found


def changed(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
