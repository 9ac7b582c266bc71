"""Smoke-test throughput: one Node process per wheel vs the per-runtime smoke server.

    python benchmarks/smoke_throughput.py [--abi 2026_0] [--wheels 20] [--clients 2] [--rounds 2]

Builds N distinct wheels holding real side modules (clang-19 + wasm-ld-19, see
tests/wasmbuild.py), installs the ABI's Pyodide through wasmwheel's own runtime
step, then smoke-tests all N wheels four ways:

  baseline, 1 at a time    one `node smoke.mjs` per wheel, full boot (what `doit` did before)
  server, 1 client         smoke.run_in_node from one process at a time (plain `doit`)
  baseline, C at a time    the same with C wheels in parallel (what `doit -n C` did before)
  server, C clients        the same from C processes at once (`doit -n C`)

in that order, interleaved, for each of R rounds; each way's best round counts, so
load from other work on the machine slows both sides alike. The server runs start
with no server running (its start-up is included; the boot snapshot is made by the
runtime step, as in the pipeline). Every call goes through the same functions as
the smoke step. Prints wheels per minute for each way and the ratios, and where a
server job's time goes (booting its interpreter, waiting for one, the test).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import wasmbuild  # noqa: E402
from wasmwheel.model.abi import load_abi  # noqa: E402
from wasmwheel.model.layout import Layout  # noqa: E402
from wasmwheel.model.settings import Settings  # noqa: E402
from wasmwheel.runner import StepLog  # noqa: E402
from wasmwheel.runtime import provision_runtime  # noqa: E402
from wasmwheel.smoke import server as smokeserver  # noqa: E402
from wasmwheel.smoke import smoke  # noqa: E402


def make_wheels(folder: Path, count: int, minor: int, tag: str) -> list[Path]:
    wheels = []
    for i in range(count):
        module = f"bench_{i:02d}"
        so = wasmbuild.build_module(
            folder / "so" / wasmbuild.so_name(module, minor), minor, defines={"MODULE_NAME": module}
        )
        dist = f"bench_{i:02d}"
        wheel = folder / f"{dist}-1.0-cp3{minor}-cp3{minor}-{tag}.whl"
        info = f"{dist}-1.0.dist-info"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.write(so, so.name)
            zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
            zf.writestr(
                f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp3{minor}-cp3{minor}-{tag}\n"
            )
            zf.writestr(f"{info}/RECORD", "")
        wheels.append(wheel)
    return wheels


def job_for(wheel: Path, python: str) -> smoke.SmokeJob:
    module = wheel.name.split("-", 1)[0]
    script = (
        f"import {module}\nassert {module}.sum_as_string(2, 3) == '5'\nassert {module}.Counter().increment() == 1\n"
    )
    return smoke.SmokeJob(wheel=wheel, script=script, filename="bench [test] script", timeout=120, python=python)


# Each call runs in a pool process, like a doit task under `doit -n`.
def one(mode: str, runtime: str, wheel: str, python: str, logs: str, env: dict[str, str]) -> tuple[bool, str]:
    os.environ.update(env)
    settings = Settings.from_env(REPO)
    job = job_for(Path(wheel), python)
    with StepLog(Path(logs) / f"{mode}-{Path(wheel).stem}.log", f"{mode} {Path(wheel).name}") as log:
        log.echo = False
        if mode == "baseline":
            result = smoke.run_in_node_process(Path(runtime), job, log)
        else:
            result = smoke.run_in_node(Path(runtime), job, log, settings)
        log.write(f"# timings {json.dumps(result.timings)}\n")
    return result.ok, result.error.splitlines()[-1] if result.error else ""


def measure(
    mode: str, parallel: int, runtime: Path, wheels: list[Path], python: str, logs: Path, env: dict[str, str]
) -> float:
    start = time.monotonic()
    with ProcessPoolExecutor(max_workers=parallel) as pool:
        results = list(
            pool.map(
                one,
                [mode] * len(wheels),
                [str(runtime)] * len(wheels),
                map(str, wheels),
                [python] * len(wheels),
                [str(logs)] * len(wheels),
                [env] * len(wheels),
            )
        )
    elapsed = time.monotonic() - start
    failed = [(w.name, why) for w, (ok, why) in zip(wheels, results, strict=True) if not ok]
    if failed:
        raise SystemExit(f"{mode} x{parallel}: {len(failed)} wheels failed, e.g. {failed[0]} (logs in {logs})")
    return elapsed


_SERVER_LINE = re.compile(r"booted from the boot snapshot in ([\d.]+) s; waited ([\d.]+) s")
_TIMINGS = re.compile(r"# timings (\{.*\})")


def server_breakdown(logs: Path) -> str:
    """Mean seconds per server job: its interpreter's boot (done before the job came, in the
    background), the wait for a ready interpreter, installing the wheel plus the test."""
    boots, waits, runs = [], [], []
    for log in logs.glob("server-*.log"):
        text = log.read_text(errors="replace")
        line, timings = _SERVER_LINE.search(text), _TIMINGS.search(text)
        if line and timings:
            boots.append(float(line.group(1)))
            waits.append(float(line.group(2)))
            spent = json.loads(timings.group(1))
            runs.append(spent.get("load", 0.0) + spent.get("test", 0.0))
    if not boots:
        return "no server logs"
    mean = statistics.fmean
    return f"boot {mean(boots):.2f} s, waited {mean(waits):.2f} s, install + test {mean(runs):.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--abi", default="2026_0")
    parser.add_argument("--wheels", type=int, default=20)
    parser.add_argument("--clients", type=int, default=2, help="parallel smoke steps (like doit -n)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; each way's best counts")
    parser.add_argument(
        "--cache",
        default=str(REPO / ".cache" / "test" / "wasmwheel"),
        help="wasmwheel cache holding the Pyodide runtimes (default: the test suite's)",
    )
    args = parser.parse_args()
    missing = wasmbuild.missing_tools()
    if missing:
        raise SystemExit(f"{', '.join(missing)} not found (apt-get install clang-19 lld-19)")

    abi = load_abi(REPO / "abi" / f"{args.abi}.toml")
    env = {"WASMWHEEL_CACHE": args.cache, "WASMWHEEL_SMOKE_IDLE": "10"}
    settings = Settings.from_env(REPO, {**os.environ, **env})
    with tempfile.TemporaryDirectory(prefix="wasmwheel-bench-") as tmp:
        tmp_path = Path(tmp)
        with StepLog(tmp_path / "runtime.log") as log:
            log.echo = False
            runtime = Path(provision_runtime(abi, Layout(settings), log)["runtime"])
        minor = int(abi.python_minor.split(".")[1])
        wheels = make_wheels(tmp_path / "wheels", args.wheels, minor, abi.platform_tag)
        logs = tmp_path / "logs"
        server = smokeserver.Server.for_runtime(runtime, settings)
        cpus = os.cpu_count()
        print(
            f"{len(wheels)} wheels, Pyodide {abi.pyodide_version} (ABI {abi.name}), {cpus} CPUs, "
            f"server pool {server.workers}, load average {os.getloadavg()[0]:.1f}"
        )
        ways = [("baseline", 1), ("server", 1), ("baseline", args.clients), ("server", args.clients)]
        best: dict[tuple[str, int], float] = {}
        for round_no in range(1, args.rounds + 1):
            for mode, parallel in ways:
                smokeserver.stop(server)  # each server run starts one
                run_logs = logs / f"{round_no}-{mode}-{parallel}"
                elapsed = measure(mode, parallel, runtime, wheels, abi.python_minor, run_logs, env)
                best[mode, parallel] = min(elapsed, best.get((mode, parallel), elapsed))
                label = "one Node process per wheel" if mode == "baseline" else "smoke server"
                extra = f"  ({server_breakdown(run_logs)})" if mode == "server" else ""
                print(
                    f"  round {round_no}: {label:27s} {parallel} at a time: {elapsed:6.1f} s "
                    f"{len(wheels) / elapsed * 60:6.1f} wheels/min{extra}  [load {os.getloadavg()[0]:.1f}]",
                    flush=True,
                )
        smokeserver.stop(server)
    rate = {way: len(wheels) / seconds * 60 for way, seconds in best.items()}
    print(f"best of {args.rounds} round(s), wheels per minute:")
    for parallel in sorted({1, args.clients}):
        base, fast = rate["baseline", parallel], rate["server", parallel]
        print(
            f"  {parallel} at a time: one Node process per wheel {base:6.1f}, smoke server {fast:6.1f}: "
            f"ratio {fast / base:5.1f}x"
        )
    print(
        f"  smoke server {args.clients} clients vs one Node process per wheel 1 at a time: "
        f"{rate['server', args.clients] / rate['baseline', 1]:5.1f}x"
    )
    print(
        f"load average after: {os.getloadavg()[0]:.1f} on {cpus} CPUs (other work on this machine skews both "
        f"sides; the rounds are interleaved)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
