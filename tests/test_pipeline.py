"""The whole pipeline through doit: provisioning against local mirrors, stand-in compiles,
real retag and real smoke tests in each ABI's Pyodide, and staleness per step."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from wasmwheel.build import RUSTFLAGS_VAR
from wasmwheel.pipeline.steps import CRATE_ABI_STEPS
from wasmwheel.smoke.smoke import parse_result

ALL_ABIS = ("2024_0", "2025_0", "2026_0", "2026_5")
CRATE_KINDS = CRATE_ABI_STEPS  # compile, retag, audit, smoke


def _keep_abis(project, keep):
    for path in (project.root / "abi").glob("*.toml"):
        if path.stem not in keep:
            path.unlink()


def test_first_run_provisions_builds_and_smoke_tests_every_abi(project):
    run = project.doit("build:hello-pyo3")

    expected = {f"{kind}:{abi}" for kind in ("emsdk", "rust", "std", "pyodide") for abi in ALL_ABIS}
    expected |= {"source:hello-pyo3"}
    expected |= {f"{kind}:hello-pyo3@{abi}" for kind in CRATE_KINDS for abi in ALL_ABIS}
    assert set(run.executed) == expected
    assert len(run.executed) == len(expected), "a step ran twice"

    # emsdk: cloned from the mirror, the exact version installed and activated, once per ABI.
    emsdk_calls = [tuple(r["argv"]) for r in project.records("emsdk")]
    for abi in ALL_ABIS:
        v = project.abi(abi).emscripten
        assert emsdk_calls.count(("install", v)) == 1
        assert emsdk_calls.count(("activate", v)) == 1
    # rustup: each toolchain with rust-src (to build std from), into a RUSTUP_HOME of its own under the
    # cache; 2025_0 takes its std from the sysroot archive here (helpers.TestProject), so no rust-src.
    installs = [r for r in project.records("rustup") if r["argv"][:2] == ["toolchain", "install"]]
    assert sorted(r["argv"][2] for r in installs) == sorted(project.abi(a).rust_toolchain for a in ALL_ABIS)
    homes = {r["env"]["RUSTUP_HOME"] for r in installs}
    assert len(homes) == len(ALL_ABIS)
    assert all(h.startswith(str(project.layout.cache)) for h in homes)
    for r in installs:
        extra = [] if r["argv"][2] == "nightly-2025-02-01" else ["--component", "rust-src"]
        assert r["argv"][3:] == ["--profile", "minimal", *extra, "--no-self-update"], r["argv"]
    # std built once per ABI that builds it, by the toolchain's own cargo, for the target, with its flags.
    std_builds = [r for r in project.records("cargo") if r["argv"][:1] == ["build"]]
    assert sorted(Path(r["cwd"]).parent.name for r in std_builds) == sorted(
        project.layout.rust_dir(project.abi(a)).name for a in ("2024_0", "2026_0", "2026_5")
    )
    for r in std_builds:
        assert "-Zbuild-std=std,panic_abort" in r["argv"] and r["env"]["RUSTC_BOOTSTRAP"] == "1"
        assert r["env"]["CARGO_TARGET_WASM32_UNKNOWN_EMSCRIPTEN_RUSTFLAGS"] == "-Cembed-bitcode=yes"

    # The sysroot was downloaded over HTTP, verified and unpacked into 2025_0's toolchain only.
    abi = project.abi("2025_0")
    rust_stamp = json.loads(project.layout.stamp("rust", "2025_0").read_text())
    unpacked = Path(rust_stamp["sysroot"]) / "lib/rustlib/wasm32-unknown-emscripten/lib/libstd-wasm-eh.rlib"
    assert unpacked.read_bytes() == b"std built with -Z emscripten-wasm-eh\n"
    other = json.loads(project.layout.stamp("rust", "2026_0").read_text())["sysroot"]
    assert not (Path(other) / "lib/rustlib/wasm32-unknown-emscripten/lib/libstd-wasm-eh.rlib").exists()
    assert abi.sysroot and project.layout.download(abi.sysroot.sha256, abi.sysroot.filename).exists()

    # One retagged wheel per ABI, carrying the ABI's platform tag in its name and WHEEL file.
    for name in ALL_ABIS:
        a = project.abi(name)
        wheels = project.dist(name)
        assert [w.name for w in wheels] == [f"hello_pyo3-0.1.0-{a.cp_tag}-{a.cp_tag}-{a.platform_tag}.whl"]
        with zipfile.ZipFile(wheels[0]) as zf:
            meta = zf.read("hello_pyo3-0.1.0.dist-info/WHEEL").decode()
        assert f"Tag: {a.cp_tag}-{a.cp_tag}-{a.platform_tag}" in meta.splitlines()
        smoke_log = project.layout.log("smoke", name, "hello-pyo3").read_text()
        result = parse_result(smoke_log)
        assert result["ok"] is True and result["stage"] == "test"

    # Nothing is stale afterwards.
    again = project.doit("build:hello-pyo3")
    assert again.executed == []


def test_compile_command_and_environment_come_from_the_abi_file(project):
    _keep_abis(project, ("2025_0", "2026_0"))
    project.edit_toml(
        "recipes/hello-pyo3.toml",
        lambda d: d["build"].update(
            {"rustflags": ["-C", "opt-level=s"], "features": ["fast", "extra"], "env": {"RECIPE_FLAG": "on"}}
        ),
    )
    project.doit("build:hello-pyo3")
    calls = {r["env"]["RUSTUP_TOOLCHAIN"]: r for r in project.records("maturin")}
    assert len(calls) == 2
    recipe = project.recipe("hello-pyo3")
    for name in ("2025_0", "2026_0"):
        abi = project.abi(name)
        call = calls[abi.rust_toolchain]
        argv = call["argv"]
        out = argv[argv.index("--out") + 1]
        assert argv == [
            "build",
            "--release",
            "--target",
            "wasm32-unknown-emscripten",
            "-i",
            abi.interpreter,
            "--out",
            out,
            "--features",
            "fast,extra",
        ]
        env = call["env"]
        assert env[RUSTFLAGS_VAR] == " ".join([*abi.rustflags, "-C", "opt-level=s"])
        assert env["CARGO_BUILD_TARGET"] == "wasm32-unknown-emscripten"
        assert env["CARGO_TARGET_DIR"] == str(project.layout.target_dir("hello-pyo3", name))
        assert env["RUSTUP_HOME"] == str(project.layout.rust_dir(abi) / "rustup")
        assert env["MATURIN_PYEMSCRIPTEN_PLATFORM_VERSION"] == name
        assert env["RECIPE_FLAG"] == "on"
        assert "RUSTFLAGS" not in env
        # emcc on PATH is the emsdk's, at the ABI's exact version; rustc is the ABI's toolchain.
        assert call["emcc_version"] == abi.emscripten
        assert call["emcc"] == str(project.layout.emsdk_dir(abi) / "upstream" / "emscripten" / "emcc")
        assert f"release: {'1.86.0-nightly' if abi.is_nightly else abi.rust_toolchain}" in call["rustc"]
        assert call["cwd"] == str(project.layout.src_dir("hello-pyo3"))
        assert recipe.build.features == ("fast", "extra")
    # The command and its environment are in the step's log, and the log names them exactly.
    log = project.layout.log("compile", "2026_0", "hello-pyo3").read_text()
    assert f"export {RUSTFLAGS_VAR}='-C link-arg=-sSIDE_MODULE=2 -C opt-level=s'" in log
    assert "--target wasm32-unknown-emscripten -i python3.14" in log


def test_staleness_per_step(project):
    """Each kind of edit reruns exactly the steps whose output it shapes."""
    _keep_abis(project, ("2025_0", "2026_0"))
    project.add_crate("hello-two", "hello_two")
    first = project.doit()  # build + index
    # emsdk, rust, std, pyodide per ABI + per crate: source + (compile, retag, audit, smoke) per ABI,
    # + index per ABI
    assert len(first.executed) == 4 * 2 + 2 * (1 + 4 * 2) + 2

    # A second run executes nothing.
    assert project.doit().executed == []

    # Editing a recipe's test snippet reruns only its smoke steps (the same wheels pass again: their
    # tested marks are left as they were, so the index stays); `doit info` says it is the settings.
    project.edit_toml(
        "recipes/hello-pyo3.toml",
        lambda d: d["test"].update({"script": d["test"]["script"] + "assert hello_pyo3.Counter().increment() == 1\n"}),
    )
    info = project.doit("info", "smoke:hello-pyo3@2026_0", check=None).output
    assert "StepCurrent: its settings differ from its last successful run, or it has none (test={script: " in info
    assert "output it recorded is gone" not in info and len(max(info.splitlines(), key=len)) < 400
    run = project.doit()
    assert sorted(run.executed) == ["smoke:hello-pyo3@2025_0", "smoke:hello-pyo3@2026_0"]

    # Editing its build flags reruns compile/retag/audit/smoke for that crate only (its wheels change).
    project.edit_toml("recipes/hello-pyo3.toml", lambda d: d["build"].update({"rustflags": ["-C", "opt-level=z"]}))
    run = project.doit("build")
    assert sorted(run.executed) == sorted(f"{k}:hello-pyo3@{a}" for k in CRATE_KINDS for a in ("2025_0", "2026_0"))
    # ... and the cargo target folder stayed warm: this was its second build.
    assert (project.layout.target_dir("hello-pyo3", "2026_0") / "standin-builds").read_text() == "2"

    # Editing an ABI file's flags reruns that ABI's compiles (and what their new wheels feed), for
    # every crate; no toolchain step and nothing of the other ABI.
    project.edit_toml("abi/2026_0.toml", lambda d: d["rust"]["rustflags"].append("-Cdebuginfo=0"))
    run = project.doit("build")
    assert sorted(run.executed) == sorted(f"{k}:{c}@2026_0" for k in CRATE_KINDS for c in ("hello-pyo3", "hello-two"))

    # Deleting one wheel reruns only what needs it: its retag rewrites the same bytes, so smoke stays.
    wheel = next(w for w in project.dist("2025_0") if w.name.startswith("hello_two"))
    before = wheel.read_bytes()
    wheel.unlink()
    info = project.doit("info", "retag:hello-two@2025_0", check=None).output
    assert "StepCurrent: an output it recorded is gone or changed (OutputsIntact(" in info
    assert "settings differ" not in info
    run = project.doit("build")
    assert run.executed == ["retag:hello-two@2025_0"]
    assert wheel.read_bytes() == before

    # Deleting a built (pre-retag) wheel reruns its compile; the same wheel comes out, nothing else reruns.
    raw = next(project.layout.wheels_dir("hello-two", "2026_0").glob("*.whl"))
    raw.unlink()
    run = project.doit("build")
    assert run.executed == ["compile:hello-two@2026_0"]

    # A changed toolchain version reruns that ABI's toolchain, its std and everything built with it.
    project.edit_toml("abi/2026_0.toml", lambda d: d["rust"].update({"toolchain": "1.93.1"}))
    run = project.doit("build")
    assert sorted(run.executed) == sorted(
        ["rust:2026_0", "std:2026_0"] + [f"{k}:{c}@2026_0" for k in CRATE_KINDS for c in ("hello-pyo3", "hello-two")]
    )
    assert project.doit("build").executed == []


def test_switching_the_toolchain_reruns_the_compiles_and_nothing_before_them(project):
    _keep_abis(project, ("2026_0",))
    project.doit("build:hello-pyo3")
    crate_steps = sorted(f"{k}:hello-pyo3@2026_0" for k in CRATE_KINDS)
    # emsdk -> lean: binaryen is installed once (from the locked npm package), then only the crate's steps
    # (the stand-in's wheel records how it was linked, as a real wheel's bytes and Generator line do).
    lean = project.doit("build:hello-pyo3", env={"WASMWHEEL_TOOLCHAIN": "lean"})
    assert sorted(lean.executed) == sorted(["binaryen:2026_0", *crate_steps])
    (call,) = [r for r in project.records("maturin") if r["env"].get("WASMWHEEL_LINK_LLD")]
    assert call["env"]["CARGO_TARGET_WASM32_UNKNOWN_EMSCRIPTEN_LINKER"] == str(project.layout.link_launcher)
    assert call["env"]["WASMWHEEL_LINK_EH"] == "wasm" and call["emcc"] is None
    # ... and back: emsdk is still provisioned, so only the crate's steps again.
    back = project.doit("build:hello-pyo3")
    assert sorted(back.executed) == crate_steps
    assert project.doit("build:hello-pyo3").executed == []


def test_toolchain_steps_run_once_per_abi_whatever_the_number_of_recipes(project):
    _keep_abis(project, ("2026_0",))
    project.add_crate("hello-two", "hello_two")
    run = project.doit("build")
    assert run.executed.count("emsdk:2026_0") == 1 and run.executed.count("rust:2026_0") == 1
    assert [r["argv"][0] for r in project.records("emsdk")] == ["install", "activate"]
    assert len([r for r in project.records("rustup") if r["argv"][:2] == ["toolchain", "install"]]) == 1
    assert len(project.records("maturin")) == 2


def test_a_failed_compile_shows_the_command_and_output_and_keeps_finished_steps(project):
    _keep_abis(project, ("2026_0",))
    run = project.doit("build:hello-pyo3", check=False, env={"STANDIN_MATURIN_FAIL": "hello-pyo3"})
    assert "compile:hello-pyo3@2026_0" in run.executed
    assert "maturin build (hello-pyo3 for 2026_0) failed with exit code 1" in run.output
    assert "linking with `emcc` failed" in run.output  # the tool's own output, on the console
    log = project.layout.log("compile", "2026_0", "hello-pyo3")
    assert f"full log: {log}" in run.output
    assert "$ cd " in log.read_text() and "maturin build --release" in log.read_text()
    assert not project.layout.stamp("compile", "2026_0", "hello-pyo3").exists()
    # The fix: only the failed step and what follows it run again.
    run = project.doit("build:hello-pyo3")
    assert sorted(run.executed) == sorted(f"{k}:hello-pyo3@2026_0" for k in CRATE_KINDS)


def test_switching_2025_0_to_stable_rust_needs_no_code_change(project):
    _keep_abis(project, ("2025_0",))

    def to_stable(doc):
        doc["rust"]["toolchain"] = "1.93.0"
        doc["rust"]["rustflags"] = ["-C", "link-arg=-sSIDE_MODULE=2"]
        doc["rust"]["std"] = "source"
        del doc["rust"]["sysroot"]

    project.edit_toml("abi/2025_0.toml", to_stable)
    run = project.doit("build")
    # std from 1.93.0's rust-src now, in a toolchain folder of its own: the sysroot's folder is left alone.
    assert "std:2025_0" in run.executed and project.layout.rust_dir(project.abi("2025_0")).name == "1.93.0+src"
    (call,) = project.records("maturin")
    assert call["env"]["RUSTUP_TOOLCHAIN"] == "1.93.0"
    assert call["env"][RUSTFLAGS_VAR] == "-C link-arg=-sSIDE_MODULE=2"
    assert project.doit("list", "--all").output.count("pin-sysroot:") == 0


@pytest.mark.parametrize("abi", ["2024_0", "2026_0"])
def test_retag_gives_legacy_maturin_wheels_the_abi_tag(project, abi):
    """Older maturins ignore the PEP 783 environment and emit emscripten_X_Y_Z: retag fixes the name,
    WHEEL and RECORD, and the wheel still loads in the real runtime."""
    _keep_abis(project, (abi,))
    env = {"MATURIN_PYEMSCRIPTEN_PLATFORM_VERSION": "", "MATURIN_PYODIDE_ABI_VERSION": ""}
    # The stand-in follows maturin's cascade; emptying the variables in the recipe env makes it fall back.
    project.edit_toml("recipes/hello-pyo3.toml", lambda d: d["build"].update({"env": env}))
    project.doit("build")
    a = project.abi(abi)
    (raw,) = project.layout.wheels_dir("hello-pyo3", abi).glob("*.whl")
    assert raw.name.endswith(f"-{a.legacy_tags[-1]}.whl")
    (final,) = project.dist(abi)
    assert final.name.endswith(f"-{a.platform_tag}.whl")
    from wheel.wheelfile import WheelFile

    with WheelFile(final) as wf:  # verifies every member against RECORD
        for info in wf.infolist():
            wf.read(info)
