"""Pyodide's patches to Emscripten in the emsdk step: pinned, fetched through the patch mirror (a folder, a
file:// URL, an HTTP server), applied with the real `patch -p1` in order between `emsdk install` and
`emsdk activate`, recorded; a patch that does not apply and a killed apply never leave a partly patched
Emscripten; a changed pin reruns the emsdk step and its compiles; system mode says whether the active
Emscripten carries them.

The patches are real unified diffs made by the tests (tests/helpers.py standin_patch_series) against the
real files the emsdk stand-in installs into upstream/emscripten (tests/standins/emsdk/emscripten/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest
import tomlkit

from faultserver import FaultServer
from helpers import STANDIN_EMSCRIPTEN, patch_url, standin_patch_series, unified_patch, use_patches, write_patches
from reliability import finish, keep_abis, start_doit
from wasmwheel.fsutil import sha256_file
from wasmwheel.toolchain.provision import MARKER, PATCHES_RECORD, PATCHING

TESTS = Path(__file__).resolve().parent
KILLPOINT = [str(TESTS / "killpoint.py")]
ABI = "2026_0"
TAG = "314.0.5"  # abi/2026_0.toml's pyodide_tag, which the test world keeps
SERIES, PATCHED = standin_patch_series()
NAMES = [name for name, _ in SERIES]


@pytest.fixture
def world(project):
    keep_abis(project, (ABI,))
    assert str(tomlkit.parse((project.root / "abi" / f"{ABI}.toml").read_text())["emsdk"]["pyodide_tag"]) == TAG
    return project


def _emsdk(project) -> Path:
    return project.layout.emsdk_dir(project.abi(ABI))


def _tree(project) -> Path:
    return _emsdk(project) / "upstream" / "emscripten"


def _installs(project) -> int:
    return sum(r["argv"][0] == "install" for r in project.records("emsdk"))


def _commands(log: Path) -> list[str]:
    """The commands a step ran, in order, shortened to the tool and its last argument."""
    found = []
    for line in log.read_text().splitlines():
        if line.startswith("$ ") and not line.startswith(("$ cd ", "$ export ", "$ unset ")):
            argv = line[2:].split()
            found.append(f"{Path(argv[0]).name} {Path(argv[-1]).name}")
    return found


def _pins(project) -> list[list[str]]:
    return [[p.name, p.sha256] for p in project.abi(ABI).emsdk.patches]


def _assert_patched_once(project) -> None:
    """upstream/emscripten holds the stand-in's files with every patch applied exactly once, and nothing else
    (no .orig, .rej or leftovers of a discarded tree), and the record of what it carries."""
    tree = _tree(project)
    for rel, text in PATCHED.items():
        assert (tree / rel).read_text() == text, rel
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    assert files == sorted([*PATCHED, "emcc", PATCHES_RECORD]), files
    assert json.loads((tree / PATCHES_RECORD).read_text()) == project.abi(ABI).emsdk_config()
    assert not [p.name for p in _emsdk(project).iterdir() if p.name.startswith(".upstream.")]


def test_the_patches_are_applied_in_order_between_install_and_activate_and_recorded(world):
    project = world
    run = project.doit("build")
    assert "emsdk:2026_0" in run.executed
    log = project.layout.log("emsdk", ABI)
    assert _commands(log) == [
        "git emsdk",
        "emsdk 5.0.3",
        *(f"patch {n}" for n in NAMES),
        "emsdk 5.0.3",
        "emcc -dumpversion",
    ]
    assert [r["argv"] for r in project.records("emsdk")] == [["install", "5.0.3"], ["activate", "5.0.3"]]
    _assert_patched_once(project)
    # The marker and the step's facts name what was applied: the tag, each patch's name and sha256, in order.
    want = {"emscripten": "5.0.3", "pyodide_tag": TAG, "patches": _pins(project)}
    assert json.loads((_emsdk(project) / MARKER).read_text()) == want
    facts = json.loads(project.layout.stamp("emsdk", ABI).read_text())
    assert (facts["pyodide_tag"], facts["patches"]) == (TAG, _pins(project))
    assert not (_emsdk(project) / PATCHING).exists()
    # The compile linked with the patched Emscripten, and its wheel says so.
    (call,) = project.records("maturin")
    assert call["emcc"] == str(_tree(project) / "emcc")
    (wheel,) = project.dist(ABI)
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/WHEEL"))).decode()
    assert f"emsdk 5.0.3 + Pyodide {TAG}'s 3 patches" in meta
    # Nothing to do the second time.
    assert project.doit("build").executed == []


def test_the_order_of_the_list_is_the_order_applied(world):
    """0003 changes lines 0001 adds: listed before it, it does not apply (and the step says so)."""
    project = world
    pins = _pins(project)
    use_patches(project.root / "abi" / f"{ABI}.toml", [tuple(pins[2]), tuple(pins[0]), tuple(pins[1])])
    run = project.doit("emsdk:2026_0", check=False)
    assert (
        f"patch {NAMES[2]} (Pyodide {TAG}, 1 of 3 in [emsdk] of 2026_0.toml) does not apply to "
        "Emscripten 5.0.3: 1 out of 1 hunk FAILED" in run.output
    )
    use_patches(project.root / "abi" / f"{ABI}.toml", [tuple(p) for p in pins])
    project.doit("emsdk:2026_0")
    _assert_patched_once(project)


def test_a_patch_that_does_not_apply_fails_the_step_and_leaves_no_partly_patched_tree(world):
    project = world
    pins = _pins(project)
    # A third patch made for other text than the stand-in's (a patch of another Emscripten release): the line
    # it changes is not there.
    other = (
        (STANDIN_EMSCRIPTEN / "tools" / "emscripten.py").read_text().replace("name.isidentifier()", "name.isascii()")
    )
    stale = unified_patch(
        "Made for another Emscripten",
        {"tools/emscripten.py": (other, other.replace("name.isascii()", "name.isprintable()"))},
    )
    folder = Path(project.env["WASMWHEEL_PATCH_MIRROR"]) / TAG
    (bad,) = write_patches(folder, [("0003-Made-for-another-Emscripten.patch", stale)])
    use_patches(project.root / "abi" / f"{ABI}.toml", [tuple(pins[0]), tuple(pins[1]), bad])

    run = project.doit("build", check=False)
    assert run.failed == ["emsdk:2026_0"]
    assert (
        "patch 0003-Made-for-another-Emscripten.patch (Pyodide 314.0.5, 3 of 3 in [emsdk] of 2026_0.toml) "
        "does not apply to Emscripten 5.0.3: 1 out of 1 hunk FAILED"
    ) in run.output
    assert "the next run installs it afresh" in run.output
    assert "Hunk #1 FAILED" in run.output  # patch's own output, from the log's tail
    assert not any(t.startswith("compile:") for t in run.executed)
    # The first two patches were applied, then the tree was removed: nothing partly patched remains.
    folder = _emsdk(project)
    assert not (folder / "upstream").exists()
    assert not (folder / MARKER).exists() and not (folder / PATCHING).exists()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".upstream.")] == []

    # Fixed (the list names the right patches again): a clean install, then every patch once.
    use_patches(project.root / "abi" / f"{ABI}.toml", [tuple(p) for p in pins])
    project.clear_records()
    project.doit("build")
    assert [r["argv"] for r in project.records("emsdk")] == [["install", "5.0.3"], ["activate", "5.0.3"]]
    _assert_patched_once(project)


def test_an_unpinned_patch_is_refused_before_anything_is_installed_then_pin_patches_records_it(world):
    project = world
    path = project.root / "abi" / f"{ABI}.toml"
    pinned = path.read_text()
    sha = _pins(project)[1][1]
    path.write_text(pinned.replace(f'sha256 = "{sha}"', 'sha256 = ""'))
    run = project.doit("build", check=False)
    assert (
        f"emsdk.patches[1].sha256: not pinned: wasmwheel applies no unverified patch to Emscripten ({NAMES[1]})"
        in run.output
    )
    assert "run `doit pin-patches:2026_0`" in run.output
    assert project.records("emsdk") == [] and not _emsdk(project).exists()  # not even cloned
    assert not list((project.layout.cache / "downloads").rglob("*.patch"))

    project.doit("pin-patches:2026_0")
    assert path.read_text() == pinned  # the one digest written back, every other byte as it was
    project.doit("build")
    _assert_patched_once(project)


def test_pin_patches_keeps_comments_and_layout_of_the_real_abi_files(tmp_path):
    from wasmwheel.model.abi import load_abi
    from wasmwheel.toolchain.provision import write_patch_shas

    for src in sorted((TESTS.parent / "abi").glob("*.toml")):
        path = tmp_path / src.name
        original = src.read_text()
        abi = load_abi(src)
        assert abi.emsdk and abi.emsdk.patches and all(p.sha256 for p in abi.emsdk.patches)
        blank = original
        for p in abi.emsdk.patches:
            blank = blank.replace(f'sha256 = "{p.sha256}"', 'sha256 = ""')
        path.write_text(blank)
        assert all(p.sha256 is None for p in load_abi(path).emsdk.patches)
        write_patch_shas(path, [(p.url, p.sha256) for p in abi.emsdk.patches])
        assert path.read_text() == original, src.name


def test_the_real_abi_files_name_their_pyodide_tag_s_patches(tmp_path):
    """Every ABI names its Pyodide tag's raw.githubusercontent.com URLs, pinned (the digests were measured
    from the files at those tags), in file-name order, the order Pyodide applies them."""
    from wasmwheel.model.abi import load_abis

    tags = {}
    for abi in load_abis(TESTS.parent / "abi").values():
        names = [p.name for p in abi.emsdk.patches]
        assert names == sorted(names) and len(set(names)) == len(names)
        for p in abi.emsdk.patches:
            assert p.url == patch_url(abi.emsdk.pyodide_tag, p.name) and p.sha256
        tags[abi.name] = (abi.emsdk.pyodide_tag, len(names))
    assert tags == {
        "2024_0": ("0.27.7", 7),
        "2025_0": ("0.29.4", 4),
        "2026_0": ("314.0.5", 5),
        "2026_5": ("315.0.0a2", 6),
    }


def test_a_changed_pin_reruns_the_emsdk_step_and_the_compiles_only_from_a_clean_install(world):
    project = world
    project.doit("build")
    # Pyodide's 0002 changes (same name, new content): the mirror serves the new file, the ABI pins it.
    name, text = SERIES[1]
    changed = text.replace("# Rust side modules export mangled names", "# side modules export what they like")
    assert changed != text
    folder = Path(project.env["WASMWHEEL_PATCH_MIRROR"]) / TAG
    (new,) = write_patches(folder, [(name, changed)])
    pins = _pins(project)
    use_patches(project.root / "abi" / f"{ABI}.toml", [tuple(pins[0]), new, tuple(pins[2])])
    project.clear_records()
    run = project.doit("build")
    assert sorted(run.executed) == ["compile:hello-pyo3@2026_0", "emsdk:2026_0"]
    # Emscripten was installed again (the old tree carried the old 0002) and patched with the new list.
    assert [r["argv"] for r in project.records("emsdk")] == [["install", "5.0.3"], ["activate", "5.0.3"]]
    tools = (_tree(project) / "tools" / "emscripten.py").read_text()
    assert "# side modules export what they like" in tools and "mangled" not in tools
    assert json.loads((_tree(project) / PATCHES_RECORD).read_text())["patches"][1] == list(new)
    assert project.doit("build").executed == []


@pytest.mark.parametrize("how", ["folder", "file-url", "http"])
def test_the_patch_mirror_a_folder_a_file_url_or_http(world, how):
    project = world
    folder = Path(project.env["WASMWHEEL_PATCH_MIRROR"])
    if how == "folder":  # what TestProject sets: a plain path
        project.doit("emsdk:2026_0")
    elif how == "file-url":
        project.doit("emsdk:2026_0", env={"WASMWHEEL_PATCH_MIRROR": folder.as_uri()})
    else:
        with FaultServer() as server:
            for name, _ in SERIES:
                server.add(f"/pyodide-patches/{TAG}/{name}", (folder / TAG / name).read_bytes())
            project.doit("emsdk:2026_0", env={"WASMWHEEL_PATCH_MIRROR": server.url + "/pyodide-patches"})
            assert [len(server.requests_for(f"/pyodide-patches/{TAG}/{n}")) for n in NAMES] == [1, 1, 1]
    _assert_patched_once(project)
    # Verified copies in the download cache, by sha256, for the next install.
    for name, sha in _pins(project):
        assert sha256_file(project.layout.download(sha, name)) == sha


def test_a_mirror_that_lacks_a_patch_names_it_and_the_setting(world, tmp_path):
    project = world
    folder = tmp_path / "partial-mirror"
    shutil.copytree(Path(project.env["WASMWHEEL_PATCH_MIRROR"]), folder)
    (folder / TAG / NAMES[2]).unlink()
    run = project.doit("emsdk:2026_0", check=False, env={"WASMWHEEL_PATCH_MIRROR": str(folder)})
    assert f"could not read {folder / TAG / NAMES[2]}" in run.output
    assert f"from the mirror WASMWHEEL_PATCH_MIRROR={folder}: check that it serves {TAG}/{NAMES[2]}" in run.output
    assert project.records("emsdk") == []  # fetched before anything is installed
    run = project.doit("emsdk:2026_0", check=False, env={"WASMWHEEL_PATCH_MIRROR": "http://127.0.0.1:9/patches"})
    # (0001 and 0002 came before it, verified, into the download cache: only 0003 is asked for)
    assert f"could not download http://127.0.0.1:9/patches/{TAG}/{NAMES[2]}" in run.output
    # A patch served with other bytes than pinned is refused.
    (folder / TAG / NAMES[2]).write_text(SERIES[1][1])
    run = project.doit("emsdk:2026_0", check=False, env={"WASMWHEEL_PATCH_MIRROR": str(folder)})
    assert f"sha256 mismatch for {folder / TAG / NAMES[2]}" in run.output
    assert project.records("emsdk") == []


def test_a_kill_in_the_middle_of_applying_then_in_the_middle_of_discarding_never_leaves_a_patched_tree(world):
    """Killed after the first patch: the next run finds the journal and starts from a clean install. That
    run is killed while it deletes the discarded tree; the one after clears that too, and patches once."""
    project = world
    run = finish(
        start_doit(project, "emsdk:2026_0", wrapper=[*KILLPOINT, "after:wasmwheel.toolchain.provision:apply_patch:1"])
    )
    assert run.returncode == -signal.SIGKILL, run.output
    folder = _emsdk(project)
    assert (folder / PATCHING).exists() and not (folder / MARKER).exists()
    assert "cannot resolve symbol" in (_tree(project) / "src/lib/libdylink.js").read_text()  # 0001 applied
    assert not project.layout.stamp("emsdk", ABI).exists()

    run = finish(
        start_doit(project, "emsdk:2026_0", wrapper=[*KILLPOINT, "wasmwheel.toolchain.provision:shutil.rmtree"])
    )
    assert run.returncode == -signal.SIGKILL, run.output
    assert not (folder / "upstream").exists()  # moved aside whole, before its deletion began
    assert len([p for p in folder.iterdir() if p.name.startswith(".upstream.old-")]) == 1

    project.clear_records()
    project.doit("emsdk:2026_0")
    assert [r["argv"] for r in project.records("emsdk")] == [["install", "5.0.3"], ["activate", "5.0.3"]]
    _assert_patched_once(project)
    assert not (folder / PATCHING).exists()


def _system_emcc(folder: Path, version: str = "5.0.3", files: bool = True) -> Path:
    """An activated emsdk of the user's own: upstream/emscripten with the stand-in's files and an emcc."""
    root = folder / "upstream" / "emscripten"
    if files:
        shutil.copytree(STANDIN_EMSCRIPTEN, root)
    root.mkdir(parents=True, exist_ok=True)
    emcc = root / "emcc"
    emcc.write_text(f'#!/bin/sh\n[ "$1" = "-dumpversion" ] && echo "{version}"\n')
    emcc.chmod(emcc.stat().st_mode | stat.S_IXUSR)
    return root


def _patch(root: Path, project, names: list[str]) -> None:
    mirror = Path(project.env["WASMWHEEL_PATCH_MIRROR"]) / TAG
    for name in names:
        subprocess.run(["patch", "-p1", "-s", "-i", str(mirror / name)], cwd=root, check=True)


WARNING = re.compile(
    r"WARNING: the active Emscripten 5\.0\.3 \((?P<root>[^)]*)\) (?P<what>.*?) \((?P<how>[^)]*)\)\. "
    r"Pyodide builds with them"
)


def test_system_mode_says_whether_the_active_emscripten_carries_the_patches(world, tmp_path):
    project = world
    env = {"WASMWHEEL_SYSTEM": "1"}

    def check(root: Path) -> tuple[str, dict]:
        # -a: the step's settings are the same each time; what changes here is the user's emsdk.
        run = project.doit("-a", "emsdk:2026_0", env={**env, "PATH": f"{root}{os.pathsep}{project.env['PATH']}"})
        assert run.executed == ["emsdk:2026_0"]  # a warning, never a failure
        return run.output, json.loads(project.layout.stamp("emsdk", ABI).read_text())

    # A plain Emscripten: every patch is missing, found by the files themselves; a console warning says so.
    plain = _system_emcc(tmp_path / "plain")
    output, facts = check(plain)
    m = WARNING.search(output)
    assert m and m["root"] == str(plain) and m["how"] == "by the patched files", output
    assert m["what"] == f"lacks 3 of Pyodide {TAG}'s 3 patches ({', '.join(NAMES)})"
    assert facts["patches_missing"] == NAMES and facts["patches_carried"] == []
    assert project.records("emsdk") == []  # nothing provisioned

    # Two of three applied by hand: the third is named.
    partly = _system_emcc(tmp_path / "partly")
    _patch(partly, project, NAMES[:2])
    output, facts = check(partly)
    assert WARNING.search(output)["what"] == f"lacks 1 of Pyodide {TAG}'s 3 patches ({NAMES[2]})"
    assert facts["patches_carried"] == NAMES[:2]

    # All applied (as `pyodide xbuildenv install-emscripten` does): no warning, the log says so.
    patched = _system_emcc(tmp_path / "patched")
    _patch(patched, project, NAMES)
    output, facts = check(patched)
    assert "WARNING" not in output and facts["patches_carried"] == NAMES and facts["patches_missing"] == []
    assert (
        f"the active Emscripten ({patched}) carries Pyodide {TAG}'s 3 patches (by the patched files)"
        in project.layout.log("emsdk", ABI).read_text()
    )

    # An emsdk wasmwheel provisioned, activated by the user: its record says what it carries.
    project.doit("emsdk:2026_0")
    output, facts = check(_tree(project))
    assert "WARNING" not in output and facts["patches_carried"] == NAMES
    assert f"(as recorded in {_tree(project) / PATCHES_RECORD})" in project.layout.log("emsdk", ABI).read_text()
    # ... and a record of other patches (the ABI's pins moved on) is a warning naming the one that differs.
    name, text = SERIES[1]
    (new,) = write_patches(Path(project.env["WASMWHEEL_PATCH_MIRROR"]) / TAG, [(name, text + "\n")])
    pins = _pins(project)
    use_patches(project.root / "abi" / f"{ABI}.toml", [tuple(pins[0]), new, tuple(pins[2])])
    output, _ = check(_tree(project))
    m = WARNING.search(output)
    assert m["what"] == f"lacks 1 of Pyodide {TAG}'s 3 patches ({NAMES[1]})" and m["how"].startswith("as recorded")

    # Offline without a mirror that has them: it cannot tell, and says that instead of failing.
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    run = project.doit(
        "-a",
        "emsdk:2026_0",
        env={
            **env,
            "PATH": f"{plain}{os.pathsep}{project.env['PATH']}",
            "WASMWHEEL_CACHE": str(tmp_path / "other-cache"),
            "WASMWHEEL_PATCH_MIRROR": str(empty),
        },
    )
    assert (
        f"could not be checked for {', '.join(NAMES)} (unpinned or not downloadable: see the step's log)" in run.output
    )


def test_the_patch_mirror_setting_takes_a_url_or_a_folder(tmp_path):
    from wasmwheel.model.errors import ConfigError
    from wasmwheel.model.settings import Settings

    def mirror(value: str) -> str | None:
        return Settings.from_env(tmp_path, {"WASMWHEEL_PATCH_MIRROR": value}).patch_mirror

    assert mirror("http://127.0.0.1:8000/patches") == "http://127.0.0.1:8000/patches"
    assert mirror("file:///srv/patches") == "file:///srv/patches"
    (tmp_path / "patches").mkdir()
    assert mirror(str(tmp_path / "patches")) == str(tmp_path / "patches")  # a folder, as the other mirrors take
    assert mirror("") is None
    with pytest.raises(ConfigError, match="WASMWHEEL_PATCH_MIRROR: expected a URL or a local folder"):
        mirror(str(tmp_path / "missing"))
