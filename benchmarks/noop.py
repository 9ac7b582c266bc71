"""No-op benchmark: `doit` with nothing stale, against the floor of the same task graph.

    python benchmarks/noop.py [--recipes 500] [--repeat 5] [--keep DIR]

1. Makes a project of N synthetic recipes (local-path copies of examples/hello-pyo3)
   for 3 ABIs and builds it for real with the stand-ins (`doit -n 2`; every step runs:
   provisioning from the local mirrors, source copies, stand-in compiles, retag, audit,
   smoke jobs answered by the `node` stand-in, index).
2. Dumps that task graph and writes the floor: a bare dodo with the same tasks,
   file_deps and targets (benchmarks/floor.py), run once so it is up to date too.
3. Times, interleaved, min of --repeat: `doit` (the whole collection + index) and
   `doit build:<one crate>` in both, and checks that the real no-ops ran nothing.

Prints the ratios; exits 1 when a ratio is above --target (default 1.3) for the full no-op.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import write_floor
from world import BENCH, BenchError, World, checked, cores, doit, interleaved, synth_name, table, workspace

from wasmwheel.pipeline.graph import GC_GEN0_THRESHOLD


def measure(
    recipes: int, repeat: int, keep: str | None, target: float, jobs: int, reuse: bool = False
) -> dict[str, float]:
    with workspace(keep) as work, World(work) as world:
        print(f"no-op benchmark: {recipes} recipes x 3 ABIs, {cores()} cores, min of {repeat}", flush=True)
        project = world.project("noop", recipes, fast_smoke=True, reuse=reuse)
        start = time.perf_counter()
        full = checked(doit(project.root, project.env, "-n", str(jobs), timeout=7200)[1], "full run")
        label = "stand-in run" if reuse else "full stand-in run"
        print(f"  {label}: {len(full.executed)} steps in {time.perf_counter() - start:.0f}s", flush=True)

        graph = work / "graph.json"
        subprocess.run(
            [sys.executable, str(BENCH / "floor.py"), "dump", str(graph)], cwd=project.root, env=project.env, check=True
        )
        floor_dir = work / "floor"
        counts = write_floor(graph, floor_dir)
        print(
            f"  graph: {counts['tasks']} tasks ({counts['groups']} groups), {counts['file_deps']} file_deps, "
            f"{counts['targets']} targets",
            flush=True,
        )
        checked(doit(floor_dir, project.env)[1], "first floor run")
        one = f"build:{synth_name(1)}"

        def real(*args: str):
            def run() -> float:
                seconds, result = doit(project.root, project.env, *args)
                checked(result, f"doit {' '.join(args)}")
                if result.executed:
                    raise BenchError(f"`doit {' '.join(args)}` was not a no-op: ran {result.executed[:10]}")
                return seconds

            return run

        def bare(*args: str, env: dict[str, str] | None = None):
            def run() -> float:
                seconds, result = doit(floor_dir, {**project.env, **(env or {})}, *args)
                checked(result, f"floor doit {' '.join(args)}")
                if any(line.startswith(". ") for line in result.output.splitlines()):
                    raise BenchError(f"floor `doit {' '.join(args)}` ran tasks:\n{result.output[:400]}")
                return seconds

            return run

        same_gc = {"FLOOR_GC_GEN0": str(GC_GEN0_THRESHOLD)}
        best = interleaved(
            {"noop": real(), "floor": bare(), "floor_gc": bare(env=same_gc), "one": real(one), "one_floor": bare(one)},
            repeat,
        )
    rows = [
        [
            "doit (collection + index)",
            f"{best['noop']:.2f}s",
            f"{best['floor']:.2f}s",
            f"{best['noop'] / best['floor']:.2f}x",
        ],
        [f"doit {one}", f"{best['one']:.2f}s", f"{best['one_floor']:.2f}s", f"{best['one'] / best['one_floor']:.2f}x"],
    ]
    print(table(rows, ["no-op", "wasmwheel", "floor", "ratio"]))
    print(
        f"(the floor with wasmwheel's GC threshold: {best['floor_gc']:.2f}s, "
        f"{best['noop'] / best['floor_gc']:.2f}x; the threshold pays for wasmwheel's own objects)"
    )
    ratio = best["noop"] / best["floor"]
    verdict = "ok" if ratio <= target else "ABOVE TARGET"
    print(f"no-op ratio {ratio:.2f}x (target <= {target}x): {verdict}")
    return {**best, "ratio": ratio, "ok": ratio <= target}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="doit -n for the full run (default 2)")
    parser.add_argument("--target", type=float, default=1.3)
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --keep: reuse the project built there before (only stale steps rerun)",
    )
    args = parser.parse_args(argv)
    if args.reuse and not args.keep:
        parser.error("--reuse needs --keep DIR")
    result = measure(args.recipes, args.repeat, args.keep, args.target, args.jobs, args.reuse)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
