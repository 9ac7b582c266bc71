"""Parallel builds: two crates x two ABIs whose compiles take real CPU time, `doit -n 2` against `-n 1`.

    python benchmarks/parallel.py [--burn 4] [--repeat 2] [--fast-smoke] [--keep DIR]

The maturin stand-in spends --burn seconds of CPU per compile (STANDIN_MATURIN_BURN), so the
4 compiles are 4 x burn seconds of work that two processes can share. Each run starts from a
fresh build folder with the toolchains already in the cache (checked, not reinstalled), as
a CI rerun with restored caches would; runs of -n 1 and -n 2 alternate, and the minimum of
each is kept. With 2 free cores the ratio approaches 0.5 plus the serial part (toolchain
checks, the sources, doit's start); on a busy machine it is higher.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from world import BenchError, World, checked, cores, doit, interleaved, table, workspace

ABIS = ("2025_0", "2026_0")


def measure(burn: float, repeat: int, keep: str | None, fast_smoke: bool) -> dict[str, float]:
    with workspace(keep) as work, World(work) as world:
        project = world.project("parallel", 2, abis=ABIS, fast_smoke=fast_smoke)
        env = {**project.env, "STANDIN_MATURIN_BURN": str(burn)}
        checked(
            doit(
                project.root, {**env, "WASMWHEEL_BUILD_DIR": str(work / "warm")}, "emsdk", "rust", "sysroot", "pyodide"
            )[1],
            "toolchains",
        )
        print(
            f"parallel: 2 crates x 2 ABIs, {burn:g}s of CPU per compile, {cores()} cores, min of {repeat}", flush=True
        )
        trial = iter(range(1, 1000))

        def run(jobs: int):
            def once() -> float:
                build = work / f"build-{next(trial)}"
                seconds, result = doit(
                    project.root, {**env, "WASMWHEEL_BUILD_DIR": str(build)}, "-n", str(jobs), "build"
                )
                checked(result, f"doit -n {jobs} build")
                compiles = [t for t in result.executed if t.startswith("compile:")]
                if len(compiles) != 4:
                    raise BenchError(f"doit -n {jobs} ran {len(compiles)} compiles, expected 4")
                return seconds

            return once

        best = interleaved({"n1": run(1), "n2": run(2)}, repeat)
    ratio = best["n2"] / best["n1"]
    print(
        table(
            [
                ["doit -n 1 build", f"{best['n1']:.1f}s", "1.00"],
                ["doit -n 2 build", f"{best['n2']:.1f}s", f"{ratio:.2f}"],
            ],
            ["run", "wall", "ratio to -n 1"],
        )
    )
    print(f"parallel ratio (-n 2 / -n 1): {ratio:.2f} (serial compile work {4 * burn:g}s)")
    return {**best, "ratio": ratio}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burn", type=float, default=4.0, help="CPU seconds per stand-in compile (default 4)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--fast-smoke", action="store_true", help="answer smoke jobs with the node stand-in")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    args = parser.parse_args(argv)
    try:
        measure(args.burn, args.repeat, args.keep, args.fast_smoke)
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
