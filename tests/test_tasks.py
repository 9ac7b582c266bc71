"""Task dicts, checked as plain data without running doit."""

from __future__ import annotations

import pickle

from doit.tools import config_changed

from wasmwheel.pipeline.graph import Project
from wasmwheel.pipeline.steps import CRATE_ABI, PIPELINE, TaskId


def _tasks(project: Project) -> dict[str, dict]:
    out = {}
    for step in PIPELINE:
        made = project.tasks(step)
        for t in [made] if isinstance(made, dict) else made:
            if t.get("name"):
                out[f"{t['basename']}:{t['name']}"] = t
    return out


def _config(task) -> dict:
    (cc,) = [u for u in task["uptodate"] if isinstance(u, config_changed)]
    return cc.config


def test_every_stamp_dependency_is_the_target_of_exactly_one_task(repo, tmp_path):
    project = Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "cache")})
    tasks = _tasks(project)
    producers: dict[str, str] = {}
    for name, t in tasks.items():
        for target in t.get("targets", []):
            assert target not in producers, f"{target} is made by {producers[target]} and {name}"
            producers[target] = name
    for name, t in tasks.items():
        for dep in t.get("file_dep", []):
            if "/stamps/" in dep:
                assert dep in producers, f"{name} depends on {dep}, which no task makes"
        for dep in t.get("task_dep", []):
            assert dep in tasks, f"{name} orders after unknown task {dep}"


def test_each_step_config_holds_what_shapes_it_and_nothing_else(repo, tmp_path):
    project = Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "cache")})
    tasks = _tasks(project)
    abi = project.abis["2025_0"]
    recipe = project.recipes.recipes["hello-pyo3"]

    compile_cfg = _config(tasks["compile:hello-pyo3@2025_0"])
    assert compile_cfg["abi"]["rustflags"] == list(abi.rustflags)
    assert compile_cfg["abi"]["toolchain"] == "nightly-2025-02-01"
    assert compile_cfg["build"] == recipe.build.config()
    assert "test" not in compile_cfg and recipe.test.script not in str(compile_cfg)

    smoke_cfg = _config(tasks["smoke:hello-pyo3@2025_0"])
    assert smoke_cfg["test"]["script"] == recipe.test.script
    assert "rustflags" not in str(smoke_cfg)

    assert _config(tasks["retag:hello-pyo3@2025_0"]) == {"platform_tag": "pyemscripten_2025_0_wasm32"}
    assert "rustflags" not in str(_config(tasks["rust:2025_0"]))
    # std is built with the ABI's std flags: they shape std and the compiles, not the toolchain install.
    from wasmwheel.toolchain.std import STD_BUILD

    assert _config(tasks["std:2025_0"]) == {
        "toolchain": "nightly-2025-02-01",
        "std": "source",
        "rustflags": ["-Z", "emscripten-wasm-eh"],
        "build": STD_BUILD,
    }
    assert compile_cfg["abi"]["std"] == abi.std_config()
    # The default toolchain is lean: binaryen, not emsdk, and its wasm-opt flags shape the compile.
    assert "emsdk:2025_0" not in tasks and _config(tasks["binaryen:2025_0"]) == {"binaryen": "132.0.0"}
    assert compile_cfg["toolchain"]["kind"] == "lean"
    assert compile_cfg["toolchain"]["wasm_opt_flags"] == list(abi.lean.wasm_opt_flags)
    emsdk = _tasks(Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "cache"), "WASMWHEEL_TOOLCHAIN": "emsdk"}))
    # emsdk: the version and Pyodide's patches applied to it (names and digests, in order), for the step and
    # for the compiles that link with it; not the patches' URLs (a mirror or a moved file is the same patch).
    patches = [[p.name, p.sha256] for p in abi.emsdk.patches]
    assert [name for name, _ in patches] == [
        "0001-Add-useful-error-when-symbol-resolution-fails.patch",
        "0002-Don-t-check-exports-for-being-valid-C-C-identifiers-.patch",
        "0003-dylink-Fix-rpath-calculation-in-nested-dependencies.patch",
        "0004-Fix-promise-order.patch",
    ]
    assert _config(emsdk["emsdk:2025_0"]) == {
        "emscripten": "4.0.9",
        "pyodide_tag": "0.29.4",
        "patches": patches,
        "mode": "managed",
    }
    assert _config(emsdk["compile:hello-pyo3@2025_0"])["toolchain"] == {
        "kind": "emsdk",
        "emscripten": "4.0.9",
        "pyodide_tag": "0.29.4",
        "patches": patches,
    }
    assert "https://" not in str(_config(emsdk["emsdk:2025_0"]))
    assert "binaryen:2025_0" not in emsdk
    # Big archives never appear as file_dep; stamps do.
    for t in tasks.values():
        for dep in t.get("file_dep", []):
            assert not dep.endswith((".tar.bz2", ".tar.gz", ".whl")), dep


def test_a_changed_patch_pin_changes_that_abi_s_emsdk_step_and_compiles_only(repo, tmp_path):
    env = {"WASMWHEEL_CACHE": str(tmp_path / "c"), "WASMWHEEL_TOOLCHAIN": "emsdk"}
    before = _tasks(Project.load(repo, env))
    path = repo / "abi" / "2026_0.toml"
    sha = Project.load(repo, env).abis["2026_0"].emsdk.patches[3].sha256
    path.write_text(path.read_text().replace(sha, "0" * 64))
    after = _tasks(Project.load(repo, env))
    changed = {
        name
        for name in before.keys() & after.keys()
        if any(isinstance(u, config_changed) for u in before[name].get("uptodate", []))
        and _config(before[name]) != _config(after[name])
    }
    compiles = {name for name in after if name.startswith("compile:") and name.endswith("@2026_0")}
    assert "compile:hello-pyo3@2026_0" in compiles
    assert changed == {"emsdk:2026_0", *compiles}


def test_pin_patches_is_a_task_per_abi_with_patches(repo, tmp_path):
    tasks = _tasks(Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "c")}))
    assert {n for n in tasks if n.startswith("pin-patches:")} == {
        f"pin-patches:{a}" for a in ("2024_0", "2025_0", "2026_0", "2026_5")
    }
    assert "Pyodide 0.29.4's 4 patches to Emscripten 4.0.9" in tasks["pin-patches:2025_0"]["doc"]
    assert "uptodate" not in tasks["pin-patches:2025_0"]  # on demand: it runs whenever asked for


def test_build_group_follows_skip_abis(repo, tmp_path):
    recipe = repo / "recipes" / "hello-pyo3.toml"
    recipe.write_text(recipe.read_text().replace("[build]", '[build]\nskip_abis = { "2024_0" = "PyO3 0.27 wants it" }'))
    project = Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "cache")})
    tasks = _tasks(project)
    build = tasks["build:hello-pyo3"]
    assert build["task_dep"] == [f"smoke:hello-pyo3@{a}" for a in ("2025_0", "2026_0", "2026_5")]
    assert "skips 2024_0 (PyO3 0.27 wants it)" in build["doc"]
    assert "compile:hello-pyo3@2024_0" not in tasks


def test_a_bad_recipe_becomes_an_error_task_and_the_rest_still_loads(repo, tmp_path):
    (repo / "recipes" / "broken.toml").write_text("[package]\nname = 'broken'\n")
    project = Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "cache")})
    tasks = _tasks(project)
    assert "build:hello-pyo3" in tasks
    err = tasks["build:broken"]
    assert err["doc"].startswith("ERROR: ") and "package.version: missing" in err["doc"]


def test_a_bad_abi_file_fails_its_crates_builds_only(repo, tmp_path):
    path = repo / "abi" / "2026_5.toml"
    path.write_text(path.read_text().replace('python = "3.15.0rc1"', 'python = "three"'))
    project = Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "cache")})
    tasks = _tasks(project)
    assert "abi:2026_5" in tasks and "python: not a version" in tasks["abi:2026_5"]["doc"]
    assert "abi:2026_5" in tasks["build:hello-pyo3"]["task_dep"]
    assert "compile:hello-pyo3@2026_0" in tasks and "compile:hello-pyo3@2026_5" not in tasks


def test_tasks_are_plain_picklable_data_for_parallel_runs(repo, tmp_path):
    project = Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "cache")})
    for name, task in _tasks(project).items():
        pickle.dumps(task), name


def test_system_mode_is_part_of_toolchain_configs(repo, tmp_path):
    env = {"WASMWHEEL_CACHE": str(tmp_path / "c"), "WASMWHEEL_TOOLCHAIN": "emsdk"}
    managed = _tasks(Project.load(repo, env))
    system = _tasks(Project.load(repo, {**env, "WASMWHEEL_SYSTEM": "1"}))
    assert _config(managed["emsdk:2026_0"]) != _config(system["emsdk:2026_0"])
    assert _config(managed["rust:2026_0"]) != _config(system["rust:2026_0"])
    assert _config(managed["compile:hello-pyo3@2026_0"]) == _config(system["compile:hello-pyo3@2026_0"])


def test_switching_the_toolchain_changes_the_compiles_config_and_nothing_before_or_after(repo, tmp_path):
    project = Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "c")})
    lean = _tasks(project)
    emsdk = _tasks(Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "c"), "WASMWHEEL_TOOLCHAIN": "emsdk"}))
    changed = {
        name
        for name in lean.keys() & emsdk.keys()
        if any(isinstance(u, config_changed) for u in lean[name].get("uptodate", []))
        and _config(lean[name]) != _config(emsdk[name])
    }
    compiles = {name for name in lean if name.startswith("compile:")}
    assert (
        changed == compiles
        and {f"compile:hello-pyo3@{a}" for a in ("2024_0", "2025_0", "2026_0", "2026_5")} <= compiles
    )
    # Besides each toolchain's own step, the recipes that need emsdk (C sources) have steps under emsdk only.
    needs_emsdk = {n: r for n, r in project.recipes.recipes.items() if r.build.needs_emsdk}
    assert needs_emsdk, "the collection has recipes that need emsdk (cramjam, orjson)"
    theirs = {
        f"{kind}:{n}@{a}"
        for n, r in needs_emsdk.items()
        for a in r.abis(project.abi_names, "emsdk")
        for kind in (s.name for s in PIPELINE if s.scope == CRATE_ABI)
    }
    assert theirs <= emsdk.keys() - lean.keys()
    assert {TaskId.parse(n).step for n in (lean.keys() ^ emsdk.keys()) - theirs} == {"binaryen", "emsdk"}
    # The compiles of each toolchain wait for its own linker step.
    assert "binaryen:2026_0" in lean["compile:hello-pyo3@2026_0"]["task_dep"]
    assert "emsdk:2026_0" in emsdk["compile:hello-pyo3@2026_0"]["task_dep"]


def test_loading_the_project_makes_the_garbage_collector_run_less_often(repo, tmp_path):
    import gc

    from wasmwheel.pipeline.graph import GC_GEN0_THRESHOLD

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "cache")})
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, 10, 10)
        gc.set_threshold(10 * GC_GEN0_THRESHOLD, 10, 10)  # a higher one is kept; 0 (disabled) too
        Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "cache")})
        assert gc.get_threshold()[0] == 10 * GC_GEN0_THRESHOLD
    finally:
        gc.set_threshold(*before)
