"""The lean toolchain, measured on real builds: `python benchmarks/lean.py [--quick]`.

1. A cold build of the example crate for three ABIs (2024_0, 2025_0, 2026_0) in an empty cache,
   split into where the time goes: Rust toolchain installs, std builds, wasm-opt (binaryen) and
   Pyodide installs, compiles, and retag + audit + smoke.
2. A warm rebuild after a one-line change to the crate (the same cache and cargo targets).
3. jiter 0.19.0 built by wasmwheel (lean, ABI 2026_0) against PyPI's official emsdk-built wheel
   (cp314, pyemscripten_2026_0): the size of the extension module (target <= 1.03x), and
   `jiter.from_json` on a 1 MB document in Pyodide 314.0.7 (target >= 0.95x PyPI's speed), both
   wheels timed in one Node process each, in alternating rounds, best of each.

Timings are seconds of real builds on this machine: only the ratios mean anything elsewhere.
--quick: the cold build for 2026_0 alone and fewer timing rounds (a check of the benchmark itself).
--only build|jiter: one of the two parts.
The cold build downloads three Rust toolchains (about 250 MB each).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from world import BenchError  # noqa: E402

from realbuild import RealProject, real_cache  # noqa: E402

JITER = "jiter==0.19.0"
KINDS = {
    "toolchains": ("rust",),
    "std": ("std",),
    "npm (binaryen, Pyodide)": ("binaryen", "pyodide"),
    "source": ("source",),
    "compile": ("compile",),
    "retag + audit + smoke": ("retag", "audit", "smoke"),
}


def _history(project: RealProject) -> dict[str, dict]:
    return json.loads((project.layout.build / "history.json").read_text())


def split(history: dict[str, dict], tasks: list[str]) -> dict[str, float]:
    """Seconds of the given tasks, summed per kind of step."""
    out = dict.fromkeys(KINDS, 0.0)
    for task in tasks:
        kind = task.split(":", 1)[0]
        for name, kinds in KINDS.items():
            if kind in kinds:
                out[name] += history.get(task, {}).get("seconds") or 0.0
    return out


def cold_and_warm(abis: tuple[str, ...], workdir: Path) -> dict:
    project = RealProject.create(workdir / "example", abis)
    project.env["WASMWHEEL_CACHE"] = str(workdir / "cold-cache")  # nothing provisioned yet
    first = project.doit("build:hello-pyo3")
    cold = split(_history(project), first.executed)
    lib = project.root / "examples" / "hello-pyo3" / "src" / "lib.rs"
    lib.write_text(lib.read_text().replace("/// Add one and return the new count.", "/// Count one more."))
    again = project.doit("build:hello-pyo3")
    warm = split(_history(project), again.executed)
    return {
        "cold": cold,
        "warm": warm,
        "cold_total": run_seconds(first),
        "warm_total": run_seconds(again),
        "warm_steps": len(again.executed),
    }


def run_seconds(run) -> float:
    """The run's own wall time, from its summary line."""
    m = re.search(r" in ([\d.]+)s; report", run.output)
    return float(m.group(1)) if m else float("nan")


def official_jiter(workdir: Path) -> Path:
    folder = workdir / "pypi"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(folder),
            "--platform",
            "pyemscripten_2026_0_wasm32",
            "--implementation",
            "cp",
            "--python-version",
            "3.14",
            "--disable-pip-version-check",
            JITER,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BenchError(f"could not download {JITER} from PyPI: {proc.stderr.strip()[-300:]}")
    return next(folder.glob("jiter-*.whl"))


def so_size(wheel: Path) -> int:
    with zipfile.ZipFile(wheel) as zf:
        return sum(i.file_size for i in zf.infolist() if i.filename.endswith(".so"))


TIMING = """
import json, time, jiter
doc = json.dumps([{"id": i, "name": f"item {i} \\u00e9", "tags": ["a", "b", "c"], "price": i * 1.25,
                   "nested": {"ok": i % 2 == 0, "values": list(range(10))}} for i in range(7000)]).encode()
assert len(doc) > 1_000_000, len(doc)
jiter.from_json(doc)  # warm up
best = float("inf")
for _ in range(ROUNDS):
    start = time.perf_counter()
    jiter.from_json(doc)
    best = min(best, time.perf_counter() - start)
print("SECONDS", best)
"""


def time_from_json(project: RealProject, wheel: Path, rounds: int, tmp: Path) -> float:
    from wasmwheel.model.settings import Settings
    from wasmwheel.runner import StepLog
    from wasmwheel.smoke import smoke

    abi = project.abi("2026_0")
    runtime = project.layout.runtime_dir(abi) / "node_modules" / "pyodide"
    job = smoke.SmokeJob(
        wheel=wheel,
        script=TIMING.replace("ROUNDS", str(rounds)),
        filename="bench.py",
        timeout=600,
        python=abi.python_minor,
    )
    with StepLog(tmp / f"time-{wheel.name}.log") as log:
        result = smoke.run_in_node(runtime, job, log, Settings.from_env(project.root, project.env))
    if not result.ok:
        raise BenchError(f"timing {wheel.name} failed: {result.error}")
    return float(result.output.split("SECONDS", 1)[1].split()[0])


def jiter_versus_pypi(workdir: Path, rounds: int, repeats: int) -> dict:
    # The recipe names 2024_0 and 2025_0 (it skips them), so their ABI files are there too; only 2026_0 builds.
    project = RealProject.create(
        workdir / "jiter",
        ("2024_0", "2025_0", "2026_0"),
        example=False,
        recipes={"jiter": (REPO / "recipes" / "jiter.toml").read_text()},
    )
    project.env["WASMWHEEL_CACHE"] = str(real_cache())
    project.doit("build:jiter")
    (ours,) = project.dist("2026_0")
    theirs = official_jiter(workdir)
    ours_t, theirs_t = [], []
    for _ in range(repeats):  # alternating, so a busy machine slows both alike
        ours_t.append(time_from_json(project, ours, rounds, workdir))
        theirs_t.append(time_from_json(project, theirs, rounds, workdir))
    return {
        "ours": ours.name,
        "size": so_size(ours),
        "pypi_size": so_size(theirs),
        "ours_s": min(ours_t),
        "pypi_s": min(theirs_t),
    }


def measure(quick: bool = False, parts: tuple[str, ...] = ("build", "jiter")) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="wasmwheel-bench-lean-"))
    try:
        build: dict = {}
        if "build" in parts:
            abis = ("2026_0",) if quick else ("2024_0", "2025_0", "2026_0")
            print(f"cold build of the example for {', '.join(abis)} in an empty cache", flush=True)
            build = cold_and_warm(abis, workdir)
            for name in KINDS:
                print(f"  {name:<24} cold {build['cold'][name]:7.1f}s   warm {build['warm'][name]:6.1f}s")
            print(
                f"  {'whole run':<24} cold {build['cold_total']:7.1f}s   warm {build['warm_total']:6.1f}s "
                f"({build['warm_steps']} steps)",
                flush=True,
            )
        if "jiter" not in parts:
            return {**build, "ok": True}
        print("jiter 0.19.0, ours (lean, 2026_0) vs PyPI's (emsdk)", flush=True)
        j = jiter_versus_pypi(workdir, 3 if quick else 10, 2 if quick else 4)
        size_ratio, speed_ratio = j["size"] / j["pypi_size"], j["pypi_s"] / j["ours_s"]
        print(f"  .so size   {j['size']:,} vs {j['pypi_size']:,} bytes = {size_ratio:.3f}x (target <= 1.03x)")
        print(
            f"  from_json  1 MB: {j['ours_s'] * 1000:.1f} ms vs {j['pypi_s'] * 1000:.1f} ms = {speed_ratio:.2f}x "
            "PyPI's speed (target >= 0.95x)"
        )
        return {
            **build,
            **j,
            "size_ratio": size_ratio,
            "speed_ratio": speed_ratio,
            "ok": size_ratio <= 1.03 and speed_ratio >= 0.95,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only",
        choices=("build", "jiter"),
        help="run one part: the example's cold and warm builds, or jiter against PyPI's",
    )
    args = parser.parse_args()
    return 0 if measure(args.quick, (args.only,) if args.only else ("build", "jiter"))["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
