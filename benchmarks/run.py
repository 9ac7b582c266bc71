"""Run every benchmark, one after the other: `python benchmarks/run.py` (or `nox -s bench`).

    python benchmarks/run.py [noop|reruns|parallel|lean|batch ...] [--quick]

Each prints its own ratios, measured within its run; the summary at the end repeats them
with the machine's core count. Exits 1 when a benchmark fails its check (a no-op ratio
above 1.3x, a rerun count that differs from the rules, a lean jiter bigger than 1.03x or slower
than 0.95x PyPI's, a run that errs). --quick: 100 recipes for the no-op, node stand-in smoke
tests, 2 s compiles, the lean cold build for one ABI (a smoke check of the benchmarks
themselves, not numbers to quote). `lean` and `batch` build for real (benchmarks/lean.py,
benchmarks/batch.py): minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import batch
import lean
import noop
import parallel
import reruns
from world import BenchError, cores

ALL = ("noop", "reruns", "parallel", "lean", "batch")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", metavar="|".join(ALL), help="default: all")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    unknown = [w for w in args.which if w not in ALL]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(ALL)})")
    summary, failed = [], []
    for name in args.which or ALL:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            if name == "noop":
                r = noop.measure(100 if args.quick else 500, 3, None, 1.3, 2)
                summary.append(
                    f"no-op, {100 if args.quick else 500} recipes x 3 ABIs: {r['noop']:.2f}s vs floor "
                    f"{r['floor']:.2f}s = {r['ratio']:.2f}x (target <= 1.3x); one crate: {r['one']:.2f}s vs "
                    f"{r['one_floor']:.2f}s = {r['one'] / r['one_floor']:.2f}x"
                )
                if not r["ok"]:
                    failed.append(name)
            elif name == "reruns":
                ok = reruns.measure(4, None, args.quick)
                summary.append(f"rerun counts: {'all as expected' if ok else 'DIFFERENT FROM THE RULES'}")
                if not ok:
                    failed.append(name)
            elif name == "lean":
                r = lean.measure(args.quick)
                summary.append(
                    f"lean: cold build {r['cold_total']:.0f}s (toolchains {r['cold']['toolchains']:.0f}s, "
                    f"std {r['cold']['std']:.0f}s, compile {r['cold']['compile']:.0f}s), warm rebuild "
                    f"{r['warm_total']:.0f}s; jiter .so {r['size_ratio']:.3f}x PyPI's (target <= 1.03x), "
                    f"from_json {r['speed_ratio']:.2f}x PyPI's speed (target >= 0.95x)"
                )
                if not r["ok"]:
                    failed.append(name)
            elif name == "batch":
                r = batch.measure(args.quick)
                summary.append(
                    f"batch, {len(r['crates'])} real crates for {r['abi']}: -n 2 {r['n2']:.0f}s vs -n 1 "
                    f"{r['n1']:.0f}s = {r['ratio']:.2f}; no-op {r['noop']:.1f}s; warm rebuild of one crate "
                    f"{r['warm']:.0f}s; lock waits under -n 2: {r['waits_n2'] or 'none'}"
                )
            else:
                r = parallel.measure(2.0 if args.quick else 4.0, 2, None, args.quick)
                summary.append(
                    f"parallel, 2 crates x 2 ABIs: -n 2 {r['n2']:.1f}s vs -n 1 {r['n1']:.1f}s = {r['ratio']:.2f}"
                )
        except BenchError as exc:
            print(exc, file=sys.stderr)
            failed.append(name)
            summary.append(f"{name}: FAILED ({exc})")
        print(f"   ({name}: {time.perf_counter() - start:.0f}s)", flush=True)
    print(f"\n== summary ({cores()} cores)")
    print("\n".join(f"- {line}" for line in summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
