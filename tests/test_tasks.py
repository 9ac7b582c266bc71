"""Task dicts, checked as plain data without running doit."""

from __future__ import annotations

import pickle

from doit.tools import config_changed

from wasmwheel.tasks import CRATE_STEPS, Project


def _tasks(project: Project) -> dict[str, dict]:
    gens = [project.emsdk_tasks(), project.rust_tasks(), project.sysroot_tasks(), project.runtime_tasks(),
            project.source_tasks(), *(project.crate_tasks(kind) for kind in CRATE_STEPS), project.index_tasks(),
            project.build_tasks(), project.pin_sysroot_tasks(), project.abi_error_tasks()]
    out = {}
    for gen in gens:
        for t in gen:
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
    assert _config(tasks["emsdk:2025_0"]) == {"emscripten": "4.0.9", "mode": "managed"}
    # Big archives never appear as file_dep; stamps do.
    for t in tasks.values():
        for dep in t.get("file_dep", []):
            assert not dep.endswith((".tar.bz2", ".tar.gz", ".whl")), dep


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
    managed = _tasks(Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "c")}))
    system = _tasks(Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "c"), "WASMWHEEL_SYSTEM": "1"}))
    assert _config(managed["emsdk:2026_0"]) != _config(system["emsdk:2026_0"])
    assert _config(managed["compile:hello-pyo3@2026_0"]) == _config(system["compile:hello-pyo3@2026_0"])


def test_loading_the_project_makes_the_garbage_collector_run_less_often(repo, tmp_path):
    import gc

    from wasmwheel.tasks import GC_GEN0_THRESHOLD

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
