"""Toolchain steps: emsdk, rustup, sysroot (pinning, verification, mirrors) and system mode."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import tomlkit

from wasmwheel.fsutil import sha256_file


def _only(project, *keep):
    for path in (project.root / "abi").glob("*.toml"):
        if path.stem not in keep:
            path.unlink()


def _unpin(project):
    project.edit_toml("abi/2025_0.toml", lambda d: d["rust"]["sysroot"].update({"sha256": ""}))


def test_an_unpinned_sysroot_is_never_unpacked(project):
    _only(project, "2025_0")
    _unpin(project)
    run = project.doit("build", check=False)
    assert "std:2025_0" in run.executed
    assert "rust.sysroot.sha256: not pinned" in run.output
    assert "run `doit pin-sysroot:2025_0`" in run.output
    rust = json.loads(project.layout.stamp("rust", "2025_0").read_text())
    assert not (Path(rust["sysroot"]) / "lib/rustlib/wasm32-unknown-emscripten/lib/libstd-wasm-eh.rlib").exists()
    assert not list((project.layout.cache / "downloads").rglob("*.tar.bz2"))


def test_pin_sysroot_records_the_sha256_keeping_comments(project, sysroot_archive):
    _only(project, "2025_0")
    _unpin(project)
    path = project.root / "abi" / "2025_0.toml"
    before = path.read_text()
    project.doit("pin-sysroot:2025_0")
    after = path.read_text()
    sha = sha256_file(sysroot_archive[0])
    assert f'sha256 = "{sha}"' in after
    # Only that one line changed: comments and layout are kept.
    changed = [
        (a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=False) if a != b
    ]  # lengths: below
    assert changed == [('sha256 = ""', f'sha256 = "{sha}"')]
    assert len(before.splitlines()) == len(after.splitlines())
    # The pinned archive is reused by the sysroot step (no second download needed), and the build passes.
    project.doit("build")
    assert project.layout.download(sha, sysroot_archive[0].name).exists()


def test_a_sysroot_with_the_wrong_sha256_is_deleted_and_both_hashes_named(project, sysroot_archive):
    _only(project, "2025_0")
    wrong = "0" * 64
    project.edit_toml("abi/2025_0.toml", lambda d: d["rust"]["sysroot"].update({"sha256": wrong}))
    run = project.doit("build", check=False)
    real = sha256_file(sysroot_archive[0])
    assert f"expected {wrong}, got {real}" in run.output
    leftovers = [p for p in (project.layout.cache / "downloads").rglob("emcc-*") if not p.name.endswith(".lock")]
    assert leftovers == []


def test_local_folders_serve_as_the_emsdk_repository_and_the_sysroot_mirror(project, emsdk_mirror, sysroot_archive):
    """Plain paths work where file:// does: the emsdk clone and a mirror that is a folder."""
    from wasmwheel.download import local_path

    _only(project, "2025_0")
    emsdk_repo = local_path(emsdk_mirror)
    env = {"WASMWHEEL_EMSDK_URL": str(emsdk_repo), "WASMWHEEL_SYSROOT_MIRROR": str(sysroot_archive[0].parent)}
    run = project.doit("emsdk:2025_0", "std:2025_0", env=env)
    assert run.failed == [] and {"emsdk:2025_0", "std:2025_0"} <= set(run.executed)
    assert f"cloning emsdk from {emsdk_repo}" in project.layout.log("emsdk", "2025_0").read_text()
    assert f"# copy {sysroot_archive[0]}" in project.layout.log("std", "2025_0").read_text()


def test_no_network_names_the_url_and_the_mirror_setting(project):
    _only(project, "2025_0")
    run = project.doit("build", check=False, env={"WASMWHEEL_SYSROOT_MIRROR": "http://127.0.0.1:9/mirror"})
    assert "could not download http://127.0.0.1:9/mirror/emcc-4.0.9_nightly-2025-02-01.tar.bz2" in run.output
    assert "WASMWHEEL_SYSROOT_MIRROR" in run.output
    assert "after 3 attempts" in run.output


def test_the_readme_main_job_stops_at_the_first_download_with_a_clear_message(project):
    """Without a network, `doit build:hello-pyo3` stops at cloning emsdk, naming the URL and the setting."""
    url = "http://127.0.0.1:9/emscripten-core/emsdk.git"
    run = project.doit("build:hello-pyo3", check=False, env={"WASMWHEEL_EMSDK_URL": url})
    assert run.returncode != 0
    assert f"could not clone the Emscripten SDK from {url}" in run.output
    assert "Set WASMWHEEL_EMSDK_URL" in run.output
    assert "Traceback" not in run.output
    assert not any(t.startswith(("compile:", "rust:")) for t in run.executed), "it must stop at the first failure"


def test_emsdk_install_failure_is_reported_with_the_tools_output(project):
    _only(project, "2026_0")
    run = project.doit("build", check=False, env={"STANDIN_EMSDK_UNKNOWN": "5.0.3"})
    assert "emsdk install 5.0.3 failed" in run.output
    assert "tool or SDK not found: '5.0.3'" in run.output
    assert not (project.layout.emsdk_dir(project.abi("2026_0")) / ".wasmwheel-installed.json").exists()
    # Fixed upstream (here: the stand-in knows the version again): the next run resumes from the clone.
    project.doit("build")


def test_a_std_rustup_does_not_publish_gets_a_hint_that_can_help(project):
    """rustup has no prebuilt std for the target on some toolchains: the hint says so and where the std
    can come from, instead of sending the user to rerun the step that just failed."""
    _only(project, "2026_0")
    message = (
        "error: component 'rust-std' for target 'wasm32-unknown-emscripten' is unavailable for download "
        "for channel '1.93.0'"
    )
    run = project.doit(
        "rust:2026_0", check=False, env={"STANDIN_RUSTUP_FAIL": "1", "STANDIN_RUSTUP_FAIL_MESSAGE": message}
    )
    assert run.failed == ["rust:2026_0"]
    assert "hint: no prebuilt std for wasm32-unknown-emscripten is published for this toolchain" in run.output
    assert "doit rust:" not in run.output.split("hint:", 1)[1]
    # Where std is merely missing from an installed toolchain, the hint names the command that puts it back:
    # with -a, since doit holds the step for up to date while its marker is there.
    from wasmwheel.pipeline.hints import hint_for

    assert "`doit -a std:<abi>`" in hint_for("error[E0463]: can't find crate for `std`").fix
    # ... and that command does put it back.
    project.doit("std:2026_0")
    sysroot = Path(json.loads(project.layout.stamp("rust", "2026_0").read_text())["sysroot"])
    lib = sysroot / "lib" / "rustlib" / "wasm32-unknown-emscripten" / "lib"
    shutil.rmtree(lib)
    assert project.doit("std:2026_0").executed == []  # up to date for doit: rerunning it does nothing
    # (-a runs the steps it needs too: rust:2026_0 finds its toolchain installed)
    assert project.doit("-a", "std:2026_0").executed[-1] == "std:2026_0" and list(lib.glob("libstd-*.rlib"))


def test_rustup_failure_names_the_dist_server_setting(project):
    _only(project, "2026_0")
    run = project.doit("build", check=False, env={"STANDIN_RUSTUP_FAIL": "1"})
    assert "could not install Rust 1.93.0 from https://static.rust-lang.org" in run.output
    assert "RUSTUP_DIST_SERVER" in run.output


def _fake_system_emcc(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    emcc = folder / "emcc"
    emcc.write_text(f'#!/bin/sh\n[ "$1" = "-dumpversion" ] && echo "{version}"\n')
    emcc.chmod(emcc.stat().st_mode | stat.S_IXUSR)
    return emcc


def test_system_mode_verifies_the_exact_versions_and_the_target(project, tmp_path):
    _only(project, "2026_0")
    sysbin = tmp_path / "system-emsdk"
    home = tmp_path / "user-rustup"
    env = {"WASMWHEEL_SYSTEM": "1", "RUSTUP_HOME": str(home), "PATH": f"{sysbin}{os.pathsep}{project.env['PATH']}"}

    _fake_system_emcc(sysbin, "5.0.2")
    run = project.doit("build", check=False, env=env)
    assert "emcc on PATH" in run.output and "is Emscripten 5.0.2, but ABI 2026_0 needs exactly 5.0.3" in run.output

    _fake_system_emcc(sysbin, "5.0.3")
    run = project.doit("build", check=False, env=env)
    assert (
        "Rust toolchain 1.93.0 is not installed: run `rustup toolchain install 1.93.0 --component "
        "rust-src`" in run.output
    )

    # The user installs the toolchain without rust-src, which building std needs: that is named too.
    subprocess.run(["rustup", "toolchain", "install", "1.93.0"], env={**project.env, **env}, check=True)
    run = project.doit("build", check=False, env=env)
    assert (
        "has no rust-src component" in run.output and "rustup component add rust-src --toolchain 1.93.0" in run.output
    )

    subprocess.run(
        ["rustup", "toolchain", "install", "1.93.0", "--component", "rust-src"], env={**project.env, **env}, check=True
    )
    project.clear_records()
    project.doit("build", env=env)
    # Nothing was provisioned; the build used the user's emcc and toolchain home, and std was built into it.
    assert project.records("emsdk") == []
    assert [r["argv"][:2] for r in project.records("rustup")] == [["run", "1.93.0"]] * 2
    (std_build,) = project.records("cargo")
    assert std_build["argv"][:2] == ["build", "--release"] and "-Zbuild-std=std,panic_abort" in std_build["argv"]
    assert list(
        (
            home
            / "toolchains"
            / "1.93.0-x86_64-unknown-linux-gnu"
            / "lib"
            / "rustlib"
            / "wasm32-unknown-emscripten"
            / "lib"
        ).glob("libstd-*.rlib")
    )
    (call,) = project.records("maturin")
    assert call["emcc"] == str(sysbin / "emcc")
    assert call["env"]["RUSTUP_HOME"] == str(home)
    assert call["env"]["RUSTUP_TOOLCHAIN"] == "1.93.0"


def test_toolchain_folders_are_shared_by_checkouts_through_the_cache(project, tmp_path):
    """A second checkout with its own build folder reuses the provisioned toolchains."""
    _only(project, "2026_0")
    project.doit("build")
    project.clear_records()
    run = project.doit("build", env={"WASMWHEEL_BUILD_DIR": str(tmp_path / "other-build")})
    assert "emsdk:2026_0" in run.executed  # its own state says not done yet...
    assert project.records("emsdk") == []  # ...but nothing is installed again
    assert not [r for r in project.records("rustup") if r["argv"][:2] == ["toolchain", "install"]]


def test_abi_file_pinning_uses_tomlkit_round_trip(tmp_path):
    from helpers import SYSROOT_URL, use_sysroot_std
    from wasmwheel.model.abi import load_abi
    from wasmwheel.toolchain.provision import write_sysroot_sha

    src = Path(__file__).resolve().parents[1] / "abi" / "2025_0.toml"
    path = tmp_path / "2025_0.toml"
    path.write_text(src.read_text())
    use_sysroot_std(path, SYSROOT_URL, "")
    before = path.read_text()
    write_sysroot_sha(path, "ab" * 32)
    doc = tomlkit.parse(path.read_text())
    assert doc["rust"]["sysroot"]["sha256"] == "ab" * 32
    assert path.read_text().count("#") == before.count("#") == src.read_text().count("#")
    assert load_abi(path).sysroot.sha256 == "ab" * 32 and load_abi(path).std == "sysroot"
