"""Several doit processes on one tree, and on one cache: they end with consistent state and the same
wheels a lone run makes, no work is done twice, and no step writes outside its own outputs."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from reliability import changed, finish, keep_abis, reference_wheels, snapshot, start_doit, wait_for, wheels

ABIS = ("2025_0", "2026_0")  # 2025_0 downloads and unpacks a sysroot
WAITING = "waiting for another wasmwheel process using "  # a run that waits for a step another one holds


def _installs(project) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in project.records():
        if r["tool"] == "emsdk" and r["argv"][0] == "install":
            key = f"emsdk install {r['argv'][1]}"
        elif r["tool"] == "rustup" and r["argv"][:2] == ["toolchain", "install"]:
            key = f"rustup install {r['argv'][2]}"
        elif r["tool"] == "maturin":
            key = f"maturin {Path(r['cwd']).name} {r['env']['RUSTUP_TOOLCHAIN']}"
        else:
            continue
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_two_doit_processes_at_once_do_each_step_once_and_agree(project, tmp_path, sysroot_archive):
    keep_abis(project, ABIS)
    # The first compile stops until the other process waits for it: at least that step is certainly
    # done by one process while the other waits (the rest overlap as the two runs happen to).
    pause_file = tmp_path / "paused"
    env = {"STANDIN_PAUSE": "maturin:before-wheel", "STANDIN_PAUSE_FILE": str(pause_file), "PYTHONUNBUFFERED": "1"}
    procs = [start_doit(project, "build", env=env), start_doit(project, "build", env=env)]

    def one_waits_for_the_compile() -> bool:
        return pause_file.exists() and any(
            re.search(WAITING + "compile:", Path(p.output_path).read_text()) for p in procs
        )

    wait_for(one_waits_for_the_compile, "a compile to be held by one run and awaited by the other", *procs)
    Path(f"{pause_file}.release").touch()
    runs = [finish(p) for p in procs]
    for run in runs:
        assert run.returncode == 0, run.output
        assert "Traceback" not in run.output
    # Every step was done by exactly one of the two processes; the other waited and took its result
    # (or, reaching it later, found it done).
    meanwhile = [
        set(re.findall(r"^ +(\S+): done meanwhile by another wasmwheel process$", run.output, flags=re.M))
        for run in runs
    ]
    did = [set(run.executed) - took for run, took in zip(runs, meanwhile, strict=True)]
    assert not did[0] & did[1], f"done twice: {sorted(did[0] & did[1])}"
    assert (
        len(did[0] | did[1]) == 4 * 2 + 1 + 4 * 2
    )  # toolchains per ABI (emsdk, rust, std, pyodide), source, 4 steps per ABI
    assert meanwhile[0] <= did[1] and meanwhile[1] <= did[0]
    waiter = next(i for i, run in enumerate(runs) if re.search(WAITING + "compile:", run.output))
    held = re.search(WAITING + r"(compile:\S+)", runs[waiter].output)[1]
    assert held in meanwhile[waiter], runs[waiter].output
    counts = _installs(project)
    assert counts and set(counts.values()) == {1}, counts
    assert len([k for k in counts if k.startswith("maturin")]) == 2
    # Consistent state: a third run has nothing to do, and the outputs are those of a lone run.
    assert project.doit("build").executed == []
    assert wheels(project.layout.build) == reference_wheels(project, tmp_path)


def test_two_parallel_doit_processes_at_once(project, tmp_path):
    keep_abis(project, ("2026_0",))
    project.add_crate("hello-two", "hello_two")
    runs = [finish(p) for p in [start_doit(project, "-n", "2", "build"), start_doit(project, "-n", "2", "build")]]
    for run in runs:
        assert run.returncode == 0, run.output
    counts = _installs(project)
    assert set(counts.values()) == {1}, counts
    assert project.doit("-n", "2", "build").executed == []
    assert project.doit("build").executed == []
    assert wheels(project.layout.build) == reference_wheels(project, tmp_path)


def test_two_doit_processes_at_once_one_killed_midway(project, tmp_path):
    """One of two runs at once is killed -9 in the middle of a compile: the other finishes the build
    (it takes over the steps the killed one held locks on), a third run has nothing to do, and the
    wheels are a lone run's."""
    keep_abis(project, ("2026_0",))
    project.add_crate("hello-two", "hello_two")
    pause_file = tmp_path / "paused"
    victim = start_doit(
        project,
        "build",
        env={"STANDIN_PAUSE": "maturin:half-wheel", "STANDIN_PAUSE_FILE": str(pause_file), "PYTHONUNBUFFERED": "1"},
    )
    wait_for(pause_file.exists, "the first run to be in the middle of a compile", victim)
    survivor = start_doit(project, "build", env={"PYTHONUNBUFFERED": "1"})
    # Everything before that compile is recorded: the second run goes straight to it and waits for
    # the lock the first one holds.
    wait_for(
        lambda: WAITING in Path(survivor.output_path).read_text(),
        "the second run to wait for the compile the first one holds",
        survivor,
    )
    for pid in (victim.pid, int(pause_file.read_text())):
        os.kill(pid, signal.SIGKILL)
    killed, done = finish(victim), finish(survivor)
    assert killed.returncode == -signal.SIGKILL
    assert done.returncode == 0 and "Traceback" not in done.output, done.output
    assert not set(killed.executed) & set(done.executed)
    # ... and took over the compile it waited for, the first step it ran.
    held = re.search(WAITING + r"(\S+)", done.output)[1]
    assert done.executed[0] == held, done.output
    assert project.doit("build").executed == []
    assert wheels(project.layout.build) == reference_wheels(project, tmp_path)


def test_two_checkouts_sharing_one_cache_install_each_toolchain_and_runtime_once(project, tmp_path):
    """Cache writes (emsdk, Rust, sysroot download and unpack, std build, npm runtime) are guarded by locks."""
    keep_abis(project, ("2025_0", "2026_0"))
    abi = project.abi("2025_0")
    runtime = project.layout.runtime_dir(abi)
    for path in sorted(runtime.rglob("*"), reverse=True):  # a hard-linked copy: remove, never write
        path.unlink() if not path.is_dir() or path.is_symlink() else path.rmdir()
    runtime.rmdir()
    procs = [
        start_doit(project, "build", env={"WASMWHEEL_BUILD_DIR": str(tmp_path / f"checkout-{i}")}) for i in range(2)
    ]
    runs = [finish(p, timeout=900) for p in procs]
    for run in runs:
        assert run.returncode == 0, run.output
    counts = _installs(project)
    other = project.abi("2026_0")
    assert {k: v for k, v in counts.items() if not k.startswith("maturin")} == {
        f"emsdk install {abi.emscripten}": 1,
        f"rustup install {abi.rust_toolchain}": 1,
        f"emsdk install {other.emscripten}": 1,
        f"rustup install {other.rust_toolchain}": 1,
    }
    assert counts[f"maturin hello-pyo3 {abi.rust_toolchain}"] == 2  # one compile per checkout
    # 2026_0 builds its std from rust-src: once, though both checkouts ran its std step.
    assert len([r for r in project.records("cargo") if r["argv"][:1] == ["build"]]) == 1
    std_logs = [(tmp_path / f"checkout-{i}" / "logs" / "2026_0" / "std.log").read_text() for i in range(2)]
    assert sum("std already built for these flags" in log for log in std_logs) == 1
    logs = [(tmp_path / f"checkout-{i}" / "logs" / "2025_0" / "pyodide.log").read_text() for i in range(2)]
    assert sum(f"installing Pyodide {abi.pyodide_version}" in log for log in logs) == 1
    assert sum(f"Pyodide {abi.pyodide_version} already installed" in log for log in logs) == 1
    sysroot_logs = [(tmp_path / f"checkout-{i}" / "logs" / "2025_0" / "std.log").read_text() for i in range(2)]
    assert sum("# GET " in log for log in sysroot_logs) == 1
    assert sum("unpacking " in log for log in sysroot_logs) == 1
    assert wheels(tmp_path / "checkout-0") == wheels(tmp_path / "checkout-1")


def test_each_step_writes_only_its_own_outputs(project, tmp_path):
    """Run the steps one by one and look at everything that changed: the repository, the build folder,
    the cache, HOME and TMPDIR."""
    keep_abis(project, ("2025_0",))
    home, tmpdir = tmp_path / "home", tmp_path / "tmpdir"
    home.mkdir()
    tmpdir.mkdir()
    env = {"HOME": str(home), "TMPDIR": str(tmpdir)}
    layout = project.layout
    abi = project.abi("2025_0")
    build, cache = layout.build, layout.cache
    rust_home = layout.rust_dir(abi)
    steps = {
        # the emsdk, and Pyodide's patches to its Emscripten, downloaded and verified
        "emsdk:2025_0": [layout.emsdk_dir(abi), *(layout.download(p.sha256, p.name) for p in abi.emsdk.patches)],
        "rust:2025_0": [rust_home],
        "std:2025_0": [cache / "downloads" / "sha256" / abi.sysroot.sha256, rust_home],  # rustlib is in it
        "pyodide:2025_0": [layout.runtime_dir(abi)],
        "source:hello-pyo3": [layout.src_dir("hello-pyo3")],
        "compile:hello-pyo3@2025_0": [
            layout.wheels_dir("hello-pyo3", "2025_0"),
            layout.target_dir("hello-pyo3", "2025_0"),
        ],
        "retag:hello-pyo3@2025_0": [layout.dist_dir("2025_0")],
        "audit:hello-pyo3@2025_0": [],
        # the runtime's smoke server (started on demand) keeps its log beside the runtime; a pass
        # marks the wheel as tested for the index
        "smoke:hello-pyo3@2025_0": [
            layout.runtime_dir(abi),
            layout.tested_marker("2025_0", "hello_pyo3-0.1.0-cp313-cp313-pyemscripten_2025_0_wasm32.whl"),
        ],
    }
    roots = [project.root, cache, home, tmpdir]
    for task, own in steps.items():
        kind, name = task.split(":")
        crate, _, abi_name = name.rpartition("@") if "@" in name else (None, "", name)
        if kind == "source":
            crate, abi_name = name, None
        stamp = layout.stamp("source", None, crate) if kind == "source" else layout.stamp(kind, abi_name, crate)
        log = layout.log(kind, abi_name, crate)
        # Besides the step's own outputs, the run itself keeps doit's state, rewrites the report
        # and keeps what speeds up the next start (parsed recipes, source listings).
        allowed = [
            *own,
            stamp,
            Path(str(stamp) + ".outputs"),
            Path(str(stamp) + ".lock"),
            log,
            log.parent,
            stamp.parent,
            build / ".doit.db",
            build / "report.json",
            build / "report.md",
            build / "history.json",
            build / "history.json.lock",
            build / "report-state.json",
            layout.recipe_cache,
            layout.source_listings,
        ]
        before = snapshot(*roots)
        run = project.doit(task, env=env)
        assert run.executed == [task]
        after = snapshot(*roots)
        for path in changed(before, after):
            p = Path(path)
            ok = any(p == a or a in p.parents for a in allowed)
            # Creating the folders that hold the step's own outputs is part of writing them.
            ok = ok or (any(p in a.parents for a in [*own, stamp, log]) and after.get(path, ("d",))[0] == "d")
            # The lock files of cache folders and of the stamps a step reads sit beside them.
            ok = (
                ok
                or (p.name.endswith(".lock") and any(Path(str(a) + ".lock") == p for a in own))
                or (p.name.endswith(".json.lock") and "stamps" in p.parts)
            )
            assert ok, f"{task} wrote {path}"
    assert snapshot(home) == {} and snapshot(tmpdir) == {}
    assert json.loads(layout.stamp("smoke", "2025_0", "hello-pyo3").read_text())["wheel"].endswith(".whl")
    assert not [p for p in snapshot(build) if os.path.basename(p).endswith(".tmp")]
