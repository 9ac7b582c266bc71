"""Batch builds of real crates from the collection: `python benchmarks/batch.py [--quick] [--crate C ...]`.

For ABI 2026_0 (Rust 1.93.0, the lean toolchain), a few recipes of recipes/ plus the example crate,
each run in a fresh checkout with cold cargo targets; the toolchain, std, binaryen and the runtime
come warm from the shared real-build cache (their cold cost is what benchmarks/lean.py measures):

1. `doit -n 1 build:<crates>` in one checkout, `doit -n 2 build:<crates>` in another: the wall-time
   ratio of -n 2 to -n 1. cargo already runs a crate's compile units on every core, so -n 2 gains
   only what one crate leaves idle (its serial tail: the last units, the link, wasm-opt, the test);
2. a no-op: `doit -n 2 build:<crates>` again (nothing may run);
3. a warm rebuild of one crate after a one-line change to the example crate's source;
4. where the time goes (seconds per kind of step, summed over the steps of the -n 2 run);
5. contention, measured: in the -n 2 run, how many times a step waited for a lock another step
   held (wasmwheel's own file locks: "waiting for another wasmwheel process using ..."; cargo's
   package cache: "Blocking waiting for file lock on ...").

Seconds are of real builds on this machine (noisy: other work beside it); only the ratios carry over.
--quick: the example crate and one recipe.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from lean import split  # noqa: E402
from world import BenchError  # noqa: E402

from realbuild import RealProject  # noqa: E402

ABI = "2026_0"
CRATES = ("rbloom", "fastnanoid", "fastuuid")  # small PyO3 crates of the collection, no patches
QUICK_CRATES = ("rbloom",)
WAITS = (
    re.compile(r"waiting for another wasmwheel process using (.+)"),
    re.compile(r"Blocking waiting for file lock on (.+)"),
)


def checkout(workdir: Path, name: str, crates: tuple[str, ...]) -> RealProject:
    """A fresh checkout with the example crate and ``crates`` (recipes and their patches), every ABI file
    (recipes name the ABIs they skip), its own build folder."""
    abis = tuple(sorted(p.stem for p in (REPO / "abi").glob("*.toml")))
    project = RealProject.create(
        workdir / name, abis, recipes={c: (REPO / "recipes" / f"{c}.toml").read_text() for c in crates}
    )
    for crate in crates:
        patches = REPO / "recipes" / "patches" / crate
        if patches.is_dir():
            shutil.copytree(patches, project.root / "recipes" / "patches" / crate)
    return project


def targets(crates: tuple[str, ...]) -> list[str]:
    return [f"smoke:{c}@{ABI}" for c in ("hello-pyo3", *crates)]


def waits(project: RealProject) -> dict[str, int]:
    """Lines in the run's step logs saying a step waited for a lock, per what it waited for."""
    found: dict[str, int] = {}
    for log in (project.layout.build / "logs").rglob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            for pattern in WAITS:
                m = pattern.search(line)
                if m:
                    key = m.group(1).strip()
                    found[key] = found.get(key, 0) + 1
    return found


def timed(project: RealProject, *args: str):
    """A doit run and its wall time as the user sees it (the process, start to end)."""
    start = time.perf_counter()
    run = project.doit(*args)
    return run, time.perf_counter() - start


def measure(quick: bool = False, crates: tuple[str, ...] | None = None) -> dict:
    crates = crates or (QUICK_CRATES if quick else CRATES)
    workdir = Path(tempfile.mkdtemp(prefix="wasmwheel-bench-batch-"))
    try:
        wanted = targets(crates)
        # -n 2 first: the -n 1 run then finds every crates.io download in the shared registry, so if anything
        # the ratio understates what -n 2 gains.
        two = checkout(workdir, "n2", crates)
        two.doit(f"pyodide:{ABI}", f"std:{ABI}", f"binaryen:{ABI}")  # warm (shared cache): not part of the ratio
        run2, n2 = timed(two, "-n", "2", *wanted)
        history = json.loads((two.layout.build / "history.json").read_text())
        where = split(history, run2.executed)
        noop, noop_s = timed(two, "-n", "2", *wanted)
        if noop.executed:
            raise BenchError(f"the no-op ran {', '.join(noop.executed)}")
        lib = two.root / "examples" / "hello-pyo3" / "src" / "lib.rs"
        lib.write_text(lib.read_text().replace("/// Add one and return the new count.", "/// Count one more."))
        warm, warm_s = timed(two, "-n", "2", *wanted)
        expected = {"source:hello-pyo3", *(f"{k}:hello-pyo3@{ABI}" for k in ("compile", "retag", "audit", "smoke"))}
        if set(warm.executed) != expected:
            raise BenchError(
                f"a one-line change to hello-pyo3 ran {sorted(warm.executed)}, expected {sorted(expected)}"
            )
        one = checkout(workdir, "n1", crates)
        one.doit(f"pyodide:{ABI}", f"std:{ABI}", f"binaryen:{ABI}")
        _, n1 = timed(one, "-n", "1", *wanted)
        result = {
            "crates": ["hello-pyo3", *crates],
            "abi": ABI,
            "n1": n1,
            "n2": n2,
            "noop": noop_s,
            "warm": warm_s,
            "steps": len(run2.executed),
            "where": where,
            "waits_n2": waits(two),
        }
        result["ratio"] = result["n2"] / result["n1"]
        print(json.dumps(result, indent=1))
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--crate", action="append", default=[], help="a recipe of recipes/ (repeatable)")
    args = parser.parse_args()
    r = measure(args.quick, tuple(args.crate) or None)
    print(
        f"{len(r['crates'])} crates for {ABI}: -n 2 {r['n2']:.0f}s vs -n 1 {r['n1']:.0f}s = {r['ratio']:.2f}; "
        f"no-op {r['noop']:.1f}s; warm rebuild of one crate {r['warm']:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
