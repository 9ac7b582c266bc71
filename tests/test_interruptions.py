"""Interrupted runs: kill -9 at many points of a stand-in pipeline run, in every step kind; after each
kill nothing that looks finished is partial, the next run redoes exactly the interrupted work, and the
run that finally completes makes the wheels of an uninterrupted run, byte for byte. SIGTERM keeps the
state of the steps already finished (dodo.py turns it into KeyboardInterrupt; without that, doit
throws all of them away).

The kill points are chained through one project: each run is killed further along than the one
before, so the whole sweep costs about one build. doit's record of each step is committed when the
step finishes (wasmwheel/pipeline/doitdb.py), so no run repeats a step an earlier, killed run finished.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest
from wheel.wheelfile import WheelFile

from faultserver import FaultServer
from reliability import finish, keep_abis, reference_wheels, running_step, start_doit, step_logs, wait_for, wheels
from wasmwheel.fsutil import OUTPUTS_VALUE, OutputsIntact, outputs_intact, sha256_file

TESTS = Path(__file__).resolve().parent
KILLPOINT = [str(TESTS / "killpoint.py")]
ABI = "2025_0"  # every step kind: emsdk, rust, std (a sysroot download and unpack), source, compile, retag, smoke
CRATE = "hello-pyo3"
LEGACY = {"MATURIN_PYEMSCRIPTEN_PLATFORM_VERSION": "", "MATURIN_PYODIDE_ABI_VERSION": ""}


def _kill(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _children(pid: int, needle: str) -> list[int]:
    """Processes whose parent is ``pid`` and whose command line holds ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid and needle in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _records(project) -> dict[str, dict]:
    """The record doit's database holds of each step (committed as each one finished, wasmwheel/pipeline/doitdb.py)."""
    db = project.layout.build / ".doit.db"
    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {task: json.loads(data) for task, data in conn.execute("select task_id, task_data from doit")}


def _recorded(project) -> set[str]:
    return set(_records(project))


def _step_of(stamp: Path) -> str:
    """build/stamps/<abi>/<kind>.json, <abi>/<crate>.<kind>.json, src/<crate>.source.json -> the step's name."""
    *crate, kind, _ = stamp.name.split(".")
    if stamp.parent.name == "src":
        return f"{kind}:{crate[0]}"
    return f"{kind}:{crate[0]}@{stamp.parent.name}" if crate else f"{kind}:{stamp.parent.name}"


def check_nothing_partial_looks_done(project) -> None:
    """What a later step or run would take as finished is complete."""
    layout = project.layout
    records = _records(project)
    for task, record in records.items():  # what doit takes as done (its outputs as it recorded them)
        outputs = record.get("_values_:", {}).get(OUTPUTS_VALUE)
        assert outputs is None or outputs_intact(outputs), f"doit holds {task} as done, but its outputs changed"
    for stamp in (layout.build / "stamps").rglob("*.json"):
        json.loads(stamp.read_text())
        # A stamp whose outputs changed since is no step's result: its step was running again (a run
        # killed after the stamp, before doit recorded the step, left it) and runs again.
        assert OutputsIntact(stamp)() or _step_of(stamp) not in records, (
            f"{stamp} names outputs that are gone or changed"
        )
    for kind in ("dist", "wheels"):
        for wheel in (layout.build / kind).rglob("*.whl"):
            if any(part.startswith(".") for part in wheel.relative_to(layout.build).parts):
                continue  # a temporary, never looked at
            with WheelFile(wheel) as wf:  # verifies every member against RECORD
                for info in wf.infolist():
                    wf.read(info)
    for path in (layout.cache / "downloads" / "sha256").rglob("*"):
        if path.is_file() and not path.name.endswith((".lock", ".part")):
            assert sha256_file(path) == path.parent.name, f"{path} is not what its name promises"
    abi = project.abi(ABI)
    if (layout.emsdk_dir(abi) / ".wasmwheel-installed.json").exists():
        assert os.access(layout.emsdk_dir(abi) / "upstream" / "emscripten" / "emcc", os.X_OK)
    rust_home = layout.rust_dir(abi)
    if (rust_home / ".wasmwheel-installed.json").exists():
        toolchains = list((rust_home / "rustup" / "toolchains").iterdir())
        assert all((t / "bin" / "cargo").exists() for t in toolchains)
    for marker in rust_home.rglob("rustlib/.wasmwheel-installed.json"):
        assert (marker.parent / "wasm32-unknown-emscripten" / "lib" / "libstd-wasm-eh.rlib").exists()


# (what is interrupted, the task it is in, how: ("kill", killpoint spec) | ("pause", stand-in point) |
#  ("download",) | ("node",), what the next run must show)
CHAIN = [
    (
        "emsdk cloned into a temporary folder, not moved into place",
        "emsdk",
        ("kill", "wasmwheel.toolchain.provision:replace_dir"),
    ),
    ("emsdk install half done", "emsdk", ("pause", "emsdk:install")),
    ("rustup toolchain install half done", "rust", ("pause", "rustup:install")),
    ("sysroot download in the middle of the body", "std", ("download",)),
    ("sysroot downloaded, not yet verified or renamed", "std", ("kill", "wasmwheel.download:sha256_file")),
    ("sysroot unpacking, one member written", "std", ("kill", "tarfile:TarFile._extract_one:2")),
    (
        "sysroot moved into the toolchain, no marker yet",
        "std",
        ("kill", "after:wasmwheel.toolchain.provision:replace_dir"),
    ),
    # emsdk, rust and pyodide finished (and were recorded) in the runs before: the run's first writes are
    # the std step's (the sysroot's marker, std's marker, then its output record)
    ("a step's output record written, its stamp not", "std", ("kill", "after:wasmwheel.fsutil:write_json:3")),
    ("source tree assembled, not moved into place", "source", ("kill", "wasmwheel.source:replace_dir")),
    ("maturin running, no wheel yet", "compile", ("pause", "maturin:before-wheel")),
    ("maturin writing the wheel", "compile", ("pause", "maturin:half-wheel")),
    ("compile writing the wheel's Generator line", "compile", ("kill", "wasmwheel.wheel:_rewrite")),
    ("wheel in place, compile stamp not written", "compile", ("kill", "wasmwheel.build:sha256_file")),
    # (the compile step writes a wheel too, its Generator line: the WHEEL rewrite is retag's alone)
    ("retag writing the new wheel", "retag", ("kill", "wasmwheel.wheel:rewrite_wheel_metadata")),
    ("retag done, stamp not written", "retag", ("kill", "after:wasmwheel.wheel:retag")),
    ("smoke test running (its job on the smoke server)", "smoke", ("smoke-job",)),
    ("smoke test passed, stamp not written", "smoke", ("kill", "after:wasmwheel.smoke.smoke:conclude")),
    # doit's closing save: with doit's own backend, the whole run's record was lost here.
    ("every step done and recorded, doit's closing save not reached", None, ("kill", "doit.dependency:SqliteDB.dump")),
]


def _big_sysroot(path: Path) -> Path:
    """A sysroot laid out like Pyodide's, big enough (3 MiB) for a download to be cut in the middle."""
    import io
    import tarfile

    with tarfile.open(path, "w:bz2") as tf:
        for name, data in {
            "wasm32-unknown-emscripten/lib/libstd-wasm-eh.rlib": b"std (wasm EH)\n",
            "wasm32-unknown-emscripten/lib/libcore-wasm-eh.rlib": os.urandom(3 << 20),
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def chain_project(project, sysroot_archive, tmp_path):
    keep_abis(project, (ABI,))
    project.edit_toml(f"recipes/{CRATE}.toml", lambda d: d["build"].update({"env": LEGACY}))  # retag rewrites
    from wasmwheel.toolchain.provision import write_sysroot_sha

    archive = _big_sysroot(tmp_path / sysroot_archive[0].name)
    write_sysroot_sha(project.root / "abi" / f"{ABI}.toml", sha256_file(archive))
    with FaultServer() as server:
        name = archive.name
        server.add(f"/mirror/{name}", archive.read_bytes())
        project.env.update({"WASMWHEEL_SYSROOT_MIRROR": server.url + "/mirror", "PYTHONUNBUFFERED": "1"})
        project.sysroot_path = f"/mirror/{name}"  # type: ignore[attr-defined]
        yield project, server


def test_kill_9_at_every_step_kind_then_finish_with_the_wheels_of_an_uninterrupted_run(chain_project, tmp_path):
    project, server = chain_project
    pause_file = tmp_path / "paused"
    previous: tuple[str, str] | None = None
    seen: list[str] = []
    finished: set[str] = set()  # steps a killed run reported finished
    for what, step, how in CHAIN:
        pause_file.unlink(missing_ok=True)
        env = {"STANDIN_PAUSE_FILE": str(pause_file)}
        logs = step_logs(project)
        if how[0] == "kill":
            proc = start_doit(project, "build", wrapper=[*KILLPOINT, how[1]])
        elif how[0] == "pause":
            proc = start_doit(project, "build", env={**env, "STANDIN_PAUSE": how[1]})
            wait_for(pause_file.exists, f"the stand-in to reach {how[1]}", proc)
            _kill(proc.pid, int(pause_file.read_text()))
        elif how[0] == "download":
            server.plan(project.sysroot_path, f"pause:{2 << 20}")
            server.paused.clear()
            proc = start_doit(project, "build")
            abi = project.abi(ABI)
            part = project.layout.download(abi.sysroot.sha256, abi.sysroot.filename).with_suffix(".bz2.part")
            wait_for(
                lambda part=part: server.paused.is_set() and part.exists() and part.stat().st_size > 0,
                "the download to stall in the middle, with bytes on disk",
                proc,
            )
            _kill(proc.pid)
        else:  # kill the client while its job runs on the (shared, long-lived) smoke server
            proc = start_doit(project, "build")
            smoke_log = project.layout.log("smoke", ABI, "hello-pyo3")
            wait_for(
                lambda smoke_log=smoke_log: smoke_log.exists() and "# smoke-testing " in smoke_log.read_text(),
                "the smoke test to start",
                proc,
            )
            _kill(proc.pid)
        run = finish(proc)
        assert run.returncode == -signal.SIGKILL, f"{what}: not killed:\n{run.output}"
        killed_in = running_step(project, logs, run)
        if previous:  # the run redid the work the previous kill interrupted (or was killed redoing it)
            assert previous[1] in run.executed or previous[1] == killed_in, (
                f"after '{previous[0]}' the next run did not rerun {previous[1]}"
            )
        assert not finished & set(run.executed), f"{what}: reran {sorted(finished & set(run.executed))}"
        finished |= set(run.executed)
        if step:
            assert killed_in and killed_in.startswith(f"{step}:"), f"{what}: killed in {killed_in}"
            assert killed_in not in run.executed, f"{what}: {killed_in} was reported finished"
            previous = (what, killed_in)
        check_nothing_partial_looks_done(project)
        seen.append(what)

    # Killed in doit's closing save, after every step had been recorded: nothing is left to do.
    assert project.doit("build").executed == []
    check_nothing_partial_looks_done(project)
    assert wheels(project.layout.build) == reference_wheels(project, tmp_path)
    # No leftovers: every temporary of the killed runs was cleared by the step that owns it.
    leftovers = [
        str(p)
        for root in (project.layout.build, project.layout.cache)
        for p in root.rglob("*")
        if p.name.endswith(".tmp") or ".old-" in p.name or p.name.endswith(".part")
    ]
    assert leftovers == []
    assert len(seen) == len(CHAIN)
    # The half-done installs were redone once, and the finished ones never again.
    abi = project.abi(ABI)
    assert sum(r["argv"] == ["install", abi.emscripten] for r in project.records("emsdk")) == 2
    assert sum(r["argv"][:2] == ["toolchain", "install"] for r in project.records("rustup")) == 2
    # The download was resumed where the kill cut it (at most the 2 MiB sent before the pause), then
    # found complete (the kill after it came before the rename), then never fetched again.
    size = len(server.files[project.sysroot_path])
    ranges = [r["range"] for r in server.requests_for(project.sysroot_path)]
    assert ranges[0] is None and ranges[2] == f"bytes={size}-" and len(ranges) == 3, ranges
    assert 0 < int(ranges[1].removeprefix("bytes=").rstrip("-")) <= 2 << 20, ranges


@pytest.mark.parametrize("finished", [1, 7, 13])
def test_kill_9_keeps_doit_s_record_of_every_step_that_finished(project, tmp_path, finished):
    """Killed right after doit recorded the n-th finished step: the next run runs none of them again,
    only the rest, and ends with the wheels of an uninterrupted run. (doit's own sqlite3 backend
    writes its state at exit: the next run redid every step the killed run had finished.)"""
    keep_abis(project, (ABI,))
    project.add_crate("hello-two", "hello_two")
    reference = project.doit("build", env={"WASMWHEEL_BUILD_DIR": str(tmp_path / "reference-build")})
    assert len(reference.executed) == 14
    proc = start_doit(
        project,
        "build",
        env={"PYTHONUNBUFFERED": "1"},
        wrapper=[*KILLPOINT, f"after:wasmwheel.pipeline.progress:ProgressReporter.add_success:{finished}"],
    )
    killed = finish(proc)
    assert killed.returncode == -signal.SIGKILL and len(killed.executed) == finished, killed.output
    check_nothing_partial_looks_done(project)
    again = project.doit("build")
    rerun = sorted(set(again.executed) & set(killed.executed))
    assert rerun == [], f"{len(rerun)} of the {finished} finished steps ran again: {rerun}"
    assert sorted(again.executed + killed.executed) == sorted(reference.executed)
    assert project.doit("build").executed == []
    assert wheels(project.layout.build) == wheels(tmp_path / "reference-build")


def test_kill_9_at_random_moments_loses_no_finished_step(project, tmp_path):
    """The whole process tree (doit, its -n 2 workers, the stand-ins and smoke servers they run)
    killed at once, as a crash would, at random moments inside random steps, run after run: after
    every kill nothing partial looks done, every step the run reported finished is recorded, and
    no recorded step runs again; the run that gets through runs exactly the steps not recorded and
    ends with an uninterrupted run's wheels. The moments are drawn from those each step has in an
    uninterrupted run (tests/killpoint.py --trace); every seed kills as often as it plans (the
    chosen step is one not recorded yet, so the run must reach it). WASMWHEEL_KILL_SEED picks
    other moments."""
    keep_abis(project, ("2025_0", "2026_0"))
    project.add_crate("hello-two", "hello_two")
    # The reference installs its toolchains into a cache of its own: the runs below install them too.
    cache = tmp_path / "reference-cache"
    shutil.copytree(project.layout.cache / "pyodide", cache / "pyodide", symlinks=True, copy_function=os.link)
    trace = tmp_path / "moments.tsv"
    reference = finish(
        start_doit(
            project,
            "build",
            env={"WASMWHEEL_BUILD_DIR": str(tmp_path / "reference-build"), "WASMWHEEL_CACHE": str(cache)},
            wrapper=[*KILLPOINT, "--trace", str(trace)],
        )
    )
    assert reference.returncode == 0, reference.output
    steps = set(reference.executed)
    moments = collections.Counter(line.split("\t")[0] for line in trace.read_text().splitlines())
    assert all(moments[step] >= 2 for step in steps), moments  # its start and its log's first line at least
    seed = int(os.environ.get("WASMWHEEL_KILL_SEED", "5"))
    rng = random.Random(seed)
    plan = rng.randint(3, 6)
    for kill in range(1, plan + 1):
        recorded = _recorded(project)
        step = rng.choice(sorted(steps - recorded))
        moment = rng.randint(1, moments[step] + 1)  # one more: done, not yet recorded
        args = ["-n", "2", "build"] if rng.random() < 0.5 else ["build"]
        how = f"seed {seed}, kill {kill} of {plan}: doit {' '.join(args)} at moment {moment} of {step}"
        run = finish(
            start_doit(
                project, *args, env={"PYTHONUNBUFFERED": "1"}, wrapper=[*KILLPOINT, "--in-step", step, str(moment)]
            )
        )
        assert run.returncode == -signal.SIGKILL, f"{how}: not killed:\n{run.output}"
        assert "killpoint: crash " in run.output, f"{how}:\n{run.output}"
        assert not recorded & set(run.executed), f"{how}: reran {sorted(recorded & set(run.executed))}"
        now = _recorded(project)
        assert set(run.executed) <= now, f"{how}: lost {sorted(set(run.executed) - now)}\n{run.output}"
        assert step not in now, f"{how}: the step killed was recorded"
        check_nothing_partial_looks_done(project)
    recorded = _recorded(project)
    final = project.doit("build")
    assert sorted(final.executed) == sorted(steps - recorded), final.output
    assert project.doit("build").executed == []
    assert wheels(project.layout.build) == wheels(tmp_path / "reference-build")


def test_sigterm_keeps_the_steps_already_finished(project, tmp_path):
    keep_abis(project, ("2026_0",))
    pause_file = tmp_path / "paused"
    env = {"STANDIN_PAUSE": "maturin:before-wheel", "STANDIN_PAUSE_FILE": str(pause_file), "PYTHONUNBUFFERED": "1"}
    proc = start_doit(project, "build", env=env)
    wait_for(pause_file.exists, "maturin to start", proc)
    maturin = int(pause_file.read_text())
    proc.send_signal(signal.SIGTERM)
    run = finish(proc, timeout=60)
    assert run.returncode != 0 and "Traceback" not in run.output
    assert run.output.rstrip().endswith("interrupted: the steps that finished are kept; run doit again to continue")
    assert not Path(f"/proc/{maturin}").exists(), "the interrupted maturin was left running"
    finished = [t for t in run.executed if not t.startswith("compile:")]
    assert set(finished) == {"emsdk:2026_0", "rust:2026_0", "std:2026_0", "pyodide:2026_0", "source:hello-pyo3"}
    # The summary and the report say the run was cut short, and what it did not finish (the cut compile too).
    assert re.search(
        r"^5 steps ran \(0 failed\), 0 skipped, 0 up to date, 4 not finished: interrupted after "
        r"[\d.]+s; report: ",
        run.output,
        flags=re.M,
    ), run.output
    assert "Last run (interrupted): 5 steps ran" in project.layout.report_md.read_text()
    assert not project.layout.stamp("compile", "2026_0", "hello-pyo3").exists()
    again = project.doit("build")
    assert sorted(again.executed) == [
        "audit:hello-pyo3@2026_0",
        "compile:hello-pyo3@2026_0",
        "retag:hello-pyo3@2026_0",
        "smoke:hello-pyo3@2026_0",
    ]


@pytest.mark.parametrize("backend", ["doit's sqlite3", "wasmwheel's"])
def test_without_the_sigterm_handler(project, tmp_path, backend):
    """The control experiment for the test above: the same run under a dodo.py that does not turn
    SIGTERM into KeyboardInterrupt. Under doit's own backend (no pyproject.toml registering
    wasmwheel's) every finished step is lost; wasmwheel's has committed each of them already.
    Either way the interrupted maturin is left running: stopping it is the handler's part."""
    keep_abis(project, ("2026_0",))
    if backend == "doit's sqlite3":
        (project.root / "pyproject.toml").unlink()
    dodo = (project.root / "dodo.py").read_text()
    assert "install_signal_handlers()\n" in dodo
    (project.root / "dodo_plain.py").write_text(dodo.replace("install_signal_handlers()\n", "", 1))
    pause_file = tmp_path / "paused"
    env = {"STANDIN_PAUSE": "maturin:before-wheel", "STANDIN_PAUSE_FILE": str(pause_file), "PYTHONUNBUFFERED": "1"}
    proc = start_doit(project, "-f", "dodo_plain.py", "build", env=env)
    wait_for(pause_file.exists, "maturin to start", proc)
    proc.send_signal(signal.SIGTERM)
    finish(proc, timeout=60)
    maturin = int(pause_file.read_text())
    assert Path(f"/proc/{maturin}").exists(), "nothing should have stopped maturin"
    _kill(maturin)
    again = project.doit("build")
    finished = {"emsdk:2026_0", "rust:2026_0", "std:2026_0", "pyodide:2026_0", "source:hello-pyo3"}
    if backend == "doit's sqlite3":
        assert finished <= set(again.executed)
    else:
        assert not finished & set(again.executed)
        assert "compile:hello-pyo3@2026_0" in again.executed


def test_kill_9_of_a_parallel_run_with_two_abis(project, tmp_path):
    """`doit -n 2` over two ABIs, killed once both workers are busy compiling: the next run repeats
    none of the steps the killed one finished (only the parent process records them), and finishes
    with the wheels of an uninterrupted run."""
    keep_abis(project, ("2025_0", "2026_0"))
    pause_file = tmp_path / "paused"
    env = {"STANDIN_PAUSE": "maturin:half-wheel", "STANDIN_PAUSE_FILE": str(pause_file), "PYTHONUNBUFFERED": "1"}
    proc = start_doit(project, "-n", "2", "build", env=env)
    paused = Path(f"{pause_file}.all")  # a line per maturin stopped with its wheel half written
    wait_for(lambda: paused.exists() and len(paused.read_text().split()) == 2, "both compiles to be half written", proc)
    # The whole tree dies at once, as on a crash: doit, its worker processes and the stand-ins.
    workers = _children(proc.pid, "doit")
    assert len(workers) == 2, "doit -n 2 should run its tasks in two worker processes"
    _kill(proc.pid, *map(int, paused.read_text().split()), *workers)
    killed = finish(proc)
    check_nothing_partial_looks_done(project)
    assert {"emsdk:2025_0", "emsdk:2026_0", "source:hello-pyo3"} <= set(killed.executed)
    assert not [t for t in killed.executed if t.startswith("compile:")]
    run = project.doit("-n", "2", "build")
    assert any(t.startswith("compile:") for t in run.executed)
    assert not set(killed.executed) & set(run.executed), "steps the killed run finished ran again"
    check_nothing_partial_looks_done(project)
    assert project.doit("build").executed == []
    assert wheels(project.layout.build) == reference_wheels(project, tmp_path)
