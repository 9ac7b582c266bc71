"""The stand-in world the benchmarks run in, and the helpers they share.

The same one the tests use (tests/helpers.py): a copy of the repository wired to a
local git mirror of emsdk, a local HTTP server for sysroots and sdists, the Pyodide
runtimes from npm, and the emsdk/rustup/maturin stand-ins, whose maturin packs real
wasm side modules built with clang-19. The benchmarks add many synthetic recipes
(local-path copies of examples/hello-pyo3) and, for runs of thousands of steps, the
`node` stand-in of benchmarks/standins (smoke jobs answered without booting Pyodide).

Timings are wall-clock seconds of whole `python -m doit` processes, taken as the
minimum of several runs interleaved with their baseline: on a shared machine only
ratios measured side by side mean anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import wasmbuild  # noqa: E402
from helpers import (  # noqa: E402
    TEST_CACHE,
    DoitRun,
    TestProject,
    make_emsdk_mirror,
    make_sysroot_archive,
    provision_runtimes,
    serve_folder,
)

FAST_NODE = BENCH / "standins"
DEFAULT_ABIS = ("2024_0", "2025_0", "2026_0")


class BenchError(SystemExit):
    """A benchmark whose premise failed (a no-op that ran steps, a count that differs)."""

    def __init__(self, message: str):
        super().__init__(f"BENCHMARK FAILED: {message}")


class World:
    """Local mirrors, runtimes and stand-in modules, shared by the projects of one benchmark run."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> World:
        if wasmbuild.missing_tools():
            raise BenchError(f"{', '.join(wasmbuild.missing_tools())} not found (apt-get install clang-19 lld-19)")
        for leftover in ("modules", "emsdk-mirror", "http"):
            shutil.rmtree(self.workdir / leftover, ignore_errors=True)
        self.modules = wasmbuild.build_stand_in_modules(self.workdir / "modules", ("hello_pyo3", "hello_two"))
        self.runtimes = provision_runtimes(TEST_CACHE)
        self.emsdk_url = make_emsdk_mirror(self.workdir / "emsdk-mirror")
        self.http = self.workdir / "http"
        self.http.mkdir()
        self.url = self._stack.enter_context(serve_folder(self.http))
        self.sysroot = make_sysroot_archive(self.http / "sysroot")
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def project(
        self,
        name: str,
        recipes: int,
        abis: tuple[str, ...] = DEFAULT_ABIS,
        fast_smoke: bool = False,
        reuse: bool = False,
    ) -> TestProject:
        """A repository copy with ``recipes`` synthetic crates (synth-0001, ...) and only ``abis``.

        ``reuse``: keep the project a kept workspace already has (same recipes), with its build
        folder and cache, wired to this run's mirrors; only what is stale reruns.
        """
        folder = self.workdir / name
        saved = folder / "env.json"
        if reuse and saved.exists() and len(list((folder / "repo" / "recipes").glob("*.toml"))) == recipes:
            env = json.loads(saved.read_text())
            env.update(
                WASMWHEEL_EMSDK_URL=self.emsdk_url,
                WASMWHEEL_SYSROOT_MIRROR=f"{self.url}/sysroot",
                WASMWHEEL_SDIST_MIRROR=f"{self.url}/sdists",
                STANDIN_MODULES=str(self.modules),
            )
            saved.write_text(json.dumps(env))
            return TestProject(folder / "repo", env, folder / "standin-calls.jsonl")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        project = TestProject.create(
            folder,
            runtimes=self.runtimes,
            modules=self.modules,
            emsdk_url=self.emsdk_url,
            sysroot=(self.sysroot, f"{self.url}/sysroot"),
        )
        for path in (project.root / "abi").glob("*.toml"):
            if path.stem not in abis:
                path.unlink()
        for i in range(1, recipes + 1):
            project.add_crate(synth_name(i), "hello_pyo3")
        (project.root / "recipes" / "hello-pyo3.toml").unlink()
        # Timings as users see them: with the bytecode cache (an installed wasmwheel has one).
        project.env.pop("PYTHONDONTWRITEBYTECODE", None)
        project.env["WASMWHEEL_SDIST_MIRROR"] = f"{self.url}/sdists"
        if fast_smoke:  # one `node smoke.mjs JOB` per smoke step, answered by the stand-in
            project.env["PATH"] = f"{FAST_NODE}{os.pathsep}{project.env['PATH']}"
            project.env["WASMWHEEL_SMOKE_SERVER"] = "0"
        (folder / "env.json").write_text(json.dumps(project.env))  # for `world.py run` (profiling)
        return project


def synth_name(i: int) -> str:
    return f"synth-{i:04d}"


@contextlib.contextmanager
def workspace(keep: str | None) -> Iterator[Path]:
    """A scratch folder: ``keep`` (kept afterwards) or a temporary one (removed)."""
    if keep:
        path = Path(keep).resolve()
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="wasmwheel-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def doit(cwd: Path, env: dict[str, str], *args: str, timeout: float = 3600) -> tuple[float, DoitRun]:
    """Run ``python -m doit ARGS`` in ``cwd``; returns (wall seconds, the run)."""
    argv = [sys.executable, "-m", "doit", *args]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    return seconds, DoitRun(argv, proc.returncode, proc.stdout + proc.stderr)


def checked(run: DoitRun, what: str) -> DoitRun:
    if run.returncode != 0:
        raise BenchError(f"{what}: doit exited with {run.returncode}:\n{run.output[-4000:]}")
    return run


def interleaved(runs: dict[str, Callable[[], float]], repeat: int) -> dict[str, float]:
    """Call each measurement ``repeat`` times, alternating between them; the minimum of each."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):
        for name, measure in runs.items():
            best[name] = min(best[name], measure())
    return best


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


if __name__ == "__main__":
    # python benchmarks/world.py run PROJECT_FOLDER CMD...: run CMD in a kept project (--keep) with its
    # environment, e.g. `... run /tmp/b/noop python -m cProfile -o noop.prof -m doit`.
    if len(sys.argv) < 4 or sys.argv[1] != "run":
        sys.exit("usage: python benchmarks/world.py run PROJECT_FOLDER CMD...")
    folder = Path(sys.argv[2]).resolve()
    env = json.loads((folder / "env.json").read_text())
    sys.exit(subprocess.run(sys.argv[3:], cwd=folder / "repo", env=env).returncode)
