"""The collection's page (docs/collection.md) and the choice of the official wheel to compare with.

The page is written from a real build's report and committed; these tests keep it in step with
recipes/ (a recipe without a row, or a row for a recipe that is gone, fails) and check the
renderer and the official-wheel choice on data written here.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from wasmwheel.__main__ import main
from wasmwheel.authoring import collection
from wasmwheel.authoring.pypi import DistFile
from wasmwheel.pipeline.graph import Project

REPO = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| ([a-z0-9-]+) \| ([^|]+) \|")


@pytest.fixture
def repo_project(tmp_path):
    """This repository's ABIs and recipes, with a build folder of the test's own."""
    return Project.load(
        REPO, env={"WASMWHEEL_BUILD_DIR": str(tmp_path / "build"), "WASMWHEEL_CACHE": str(tmp_path / "cache")}
    )


def _page_rows(text: str) -> dict[str, str]:
    table = text.split("\n## ", 1)[0]
    return {m.group(1): m.group(2).strip() for m in map(ROW.match, table.splitlines()) if m and m.group(1) != "crate"}


def test_the_committed_page_has_a_row_for_every_recipe_and_no_other(repo_project):
    page = REPO / collection.PAGE
    rows = _page_rows(page.read_text(encoding="utf-8"))
    recipes = {name: r.version for name, r in repo_project.recipes.recipes.items()}
    missing = sorted(set(recipes) - set(rows))
    extra = sorted(set(rows) - set(recipes))
    assert not missing and not extra, (
        f"docs/collection.md is out of step with recipes/ (missing: {missing}, "
        f"gone: {extra}): build, then run `python -m wasmwheel collection`"
    )
    stale = {n: (rows[n], v) for n, v in recipes.items() if rows[n] != v}
    assert not stale, f"docs/collection.md shows other versions than the recipes (page, recipe): {stale}"


def test_the_committed_page_is_what_its_kept_data_and_the_recipes_render(repo_project):
    """docs/collection.md is rendered from docs/collection.json and recipes/ as they are committed (a recipe's
    new skip reason, a removed recipe, a bumped version: run `python -m wasmwheel collection`)."""
    page = REPO / collection.PAGE
    data = json.loads(collection.data_path(page).read_text(encoding="utf-8"))
    assert collection.merge(repo_project, data, None) == data, "docs/collection.json holds cells of other versions"
    comparisons = [collection.Comparison.from_dict(c) for c in data["comparisons"]]
    assert collection.render(repo_project, data, comparisons) == page.read_text(encoding="utf-8"), (
        "docs/collection.md is not what `python -m wasmwheel collection` renders: run it"
    )


def _dist(filename: str, **kw) -> DistFile:
    return DistFile(
        filename=filename,
        url=f"https://files.example/{filename}",
        sha256="0" * 64,
        blake2b_256=None,
        packagetype="sdist" if filename.endswith(".tar.gz") else "bdist_wheel",
        **kw,
    )


def test_the_official_wheel_is_the_one_the_abis_pyodide_installs(repo_project):
    abis = repo_project.abis
    files = [
        _dist("pkg-1.0.tar.gz"),
        _dist("pkg-1.0-cp313-cp313-pyemscripten_2025_0_wasm32.whl"),
        _dist("pkg-1.0-cp311-abi3-pyemscripten_2026_0_wasm32.whl"),
        _dist("pkg-1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"),
        _dist("pkg-1.0-cp314-cp314-manylinux_2_17_x86_64.whl"),
        _dist("pkg-1.0-cp312-cp312-pyodide_2024_0_wasm32.whl", yanked=True),
    ]
    # A version-specific wheel wins over abi3; the 2025_0 wheel is not 2026_0's.
    assert collection.official_wheel(files, abis["2026_0"]).filename.startswith("pkg-1.0-cp314-cp314-pyemscripten")
    assert (
        collection.official_wheel(files[:3], abis["2026_0"]).filename
        == "pkg-1.0-cp311-abi3-pyemscripten_2026_0_wasm32.whl"
    )
    # A legacy tag of the ABI counts (Pyodide 0.29 installs pyodide_2025_0 wheels).
    legacy = [_dist("pkg-1.0-cp313-cp313-pyodide_2025_0_wasm32.whl")]
    assert collection.official_wheel(legacy, abis["2025_0"]).filename == legacy[0].filename
    # A yanked wheel, a wheel for another CPython, abi3 built for a newer one: none.
    assert collection.official_wheel(files, abis["2024_0"]) is None
    assert (
        collection.official_wheel([_dist("pkg-1.0-cp313-cp313-pyemscripten_2026_0_wasm32.whl")], abis["2026_0"]) is None
    )
    assert (
        collection.official_wheel([_dist("pkg-1.0-cp315-abi3-pyemscripten_2026_0_wasm32.whl")], abis["2026_0"]) is None
    )


def _wheel(path: Path, so_bytes: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg/_pkg.cpython-314-wasm32-emscripten.so", b"\0asm" + bytes(so_bytes - 4))
        zf.writestr("pkg/__init__.py", "from ._pkg import *\n")
    return path


def test_the_page_says_what_each_build_did(repo_project, tmp_path):
    layout = repo_project.layout
    names = sorted(repo_project.recipes.recipes)
    built, failed, skipped_name = names[0], names[1], "jiter"
    wheel = _wheel(layout.dist_dir("2026_0") / f"{built}-1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl", 300_000)
    report = {
        "generated": "2026-12-07T00:00:00+00:00",
        "toolchain": "lean",
        "rows": [
            {
                "crate": built,
                "abi": "2026_0",
                "status": "ok",
                "wheel": wheel.name,
                "size": wheel.stat().st_size,
                "steps": {"compile": {"status": "ok", "seconds": 61.4}},
                "test_seconds": 0.75,
            },
            {
                "crate": failed,
                "abi": "2026_0",
                "status": "failed",
                "failed_step": "compile",
                "error": "maturin failed (exit 1)\n| error: linking with `cc` failed",
                "hint": "set the linker",
            },
            {"crate": skipped_name, "abi": "2024_0", "status": "skipped", "reason": "needs Rust >= 1.88"},
        ],
    }
    rows = {}
    for line in collection.render(repo_project, report).splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = [cell.strip() for cell in line.strip("|").split("|")]
    abis = rows["crate"][2:]
    cell = dict(zip(abis, rows[built][2:], strict=True))
    assert (
        cell["2026_0"].startswith("**built**") and "compile 61 s" in cell["2026_0"] and "test 0.75 s" in cell["2026_0"]
    )
    assert cell["2024_0"] == "not built yet"
    fail = dict(zip(abis, rows[failed][2:], strict=True))["2026_0"]
    assert fail.startswith("**FAILED** (compile): maturin failed (exit 1) (error: linking with `cc` failed)")
    assert fail.endswith("hint: set the linker")
    # A skip shows the recipe's reason as it is now (not the one a report recorded).
    reason = repo_project.recipes.recipes[skipped_name].build.skip_abis["2024_0"]
    assert dict(zip(abis, rows[skipped_name][2:], strict=True))["2024_0"] == "skipped: " + reason
    assert set(rows) - {"crate"} == set(names)


def _cells(page: str) -> dict[tuple[str, str], str]:
    lines = [line for line in page.split("\n## ", 1)[0].splitlines() if ROW.match(line)]
    abis = [c.strip() for c in lines[0].strip("|").split("|")][2:]
    return {
        (cells[0], abi): cell
        for line in lines[1:]
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
        for abi, cell in zip(abis, cells[2:], strict=True)
    }


def test_a_build_of_some_cells_updates_them_and_keeps_the_others(repo_project, tmp_path, monkeypatch):
    """The page's data (docs/collection.json beside it) keeps the cells of earlier builds: a build for one ABI
    adds its cells; a cell of an older version of a recipe is dropped; a comparison goes with its wheel."""
    page = tmp_path / "docs" / "collection.md"
    layout = repo_project.layout
    layout.report_json.parent.mkdir(parents=True, exist_ok=True)
    jiter = repo_project.recipes.recipes["jiter"]
    ok = {"status": "ok", "size": 300_000, "steps": {"compile": {"seconds": 100.0}}, "test_seconds": 0.5}

    def write(rows, generated):
        layout.report_json.write_text(json.dumps({"generated": generated, "toolchain": "lean", "rows": rows}))

    write(
        [
            {"crate": "jiter", "version": jiter.version, "abi": "2026_0", "wheel": "jiter-a.whl", **ok},
            {"crate": "rtoml", "version": "0.0.1", "abi": "2026_0", "wheel": "rtoml-old.whl", **ok},
        ],
        "2026-12-01T10:00:00",
    )
    collection.save_comparisons(
        repo_project,
        [
            collection.Comparison(
                crate="jiter",
                abi="2026_0",
                ours="jiter-a.whl",
                official="j.whl",
                our_module=330_000,
                official_module=300_000,
                our_test=0.2,
                official_test=0.25,
                runs=3,
            )
        ],
    )
    collection.write_page(repo_project, page)
    first = _cells(page.read_text())
    assert first[("jiter", "2026_0")].startswith("**built** · 293.0 KiB · compile 100 s")
    assert first[("rtoml", "2026_0")] == "not built yet"  # 0.0.1 is not the recipe's version
    assert "| jiter | 2026_0 | j.whl |" in page.read_text()

    # A later build of another ABI only (its own report; the first build's folder is gone).
    layout.report_json.unlink()
    collection.comparisons_path(repo_project).unlink()
    write(
        [
            {
                "crate": "jiter",
                "version": jiter.version,
                "abi": "2026_5",
                "wheel": "jiter-b.whl",
                **ok,
                "size": 200_000,
            },
            {"crate": "jiter", "version": jiter.version, "abi": "2026_0", "status": "skipped", "reason": "x"},
            {
                "crate": "rtoml",
                "version": repo_project.recipes.recipes["rtoml"].version,
                "abi": "2026_0",
                "status": "failed",
                "failed_step": "compile",
                "error": "maturin failed (exit 1)",
            },
        ],
        "2026-12-07T10:00:00",
    )
    collection.write_page(repo_project, page)
    second = _cells(page.read_text())
    assert second[("jiter", "2026_0")] == first[("jiter", "2026_0")]  # kept: this build did not make it
    assert second[("jiter", "2026_5")].startswith("**built** · 195.3 KiB")
    assert second[("rtoml", "2026_0")].startswith("**FAILED** (compile): maturin failed (exit 1)")
    assert "| jiter | 2026_0 | j.whl |" in page.read_text()  # its wheel is still the cell's
    assert "built 2026-12-01 to 2026-12-07" in page.read_text()
    data = json.loads(page.with_suffix(".json").read_text())
    assert [(r["crate"], r["abi"]) for r in data["rows"]] == [
        ("jiter", "2026_0"),
        ("jiter", "2026_5"),
        ("rtoml", "2026_0"),
    ]

    # Rebuilt with another wheel: the old comparison goes with the old wheel.
    write(
        [{"crate": "jiter", "version": jiter.version, "abi": "2026_0", "wheel": "jiter-c.whl", **ok}],
        "2026-12-08T10:00:00",
    )
    collection.write_page(repo_project, page)
    assert "| jiter | 2026_0 | j.whl |" not in page.read_text()


def test_the_comparison_table_gives_ratios_ours_over_official(repo_project):
    c = collection.Comparison(
        crate="jiter",
        abi="2026_0",
        ours="a.whl",
        official="b.whl",
        our_size=10,
        official_size=9,
        our_module=330_000,
        official_module=300_000,
        our_test=0.2,
        official_test=0.25,
        runs=3,
    )
    assert c.size_ratio == pytest.approx(1.1) and c.time_ratio == pytest.approx(0.8)
    collection.save_comparisons(repo_project, [c])
    collection.save_comparisons(
        repo_project,
        [
            collection.Comparison(
                crate="rtoml", abi="2026_0", ours="r.whl", official=None, reason="PyPI has no wasm wheel"
            )
        ],
    )
    kept = collection.load_comparisons(repo_project)
    assert [k.crate for k in kept] == ["jiter", "rtoml"]  # a later run keeps the earlier one's results
    page = collection.render(repo_project, {"rows": []}, kept)
    assert "| jiter | 2026_0 | b.whl | 322.3 KiB | 293.0 KiB | 1.10x | 0.200 s | 0.250 s | 0.80x |" in page
    assert "| rtoml | 2026_0 | none: PyPI has no wasm wheel |" in page


def test_the_command_needs_a_build_report(repo_project, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("WASMWHEEL_BUILD_DIR", str(tmp_path / "empty-build"))
    assert main(["--root", str(REPO), "collection", "--output", str(tmp_path / "page.md")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no build report (run `doit build` first" in err
    assert not (tmp_path / "page.md").exists()


def _with_custom_section(wheel: Path, dest: Path, pad: int) -> Path:
    """A copy of ``wheel`` whose extension module ends with a custom section of ``pad`` bytes (it loads
    as before; only its size differs)."""
    name = b"pad"
    body = bytes([len(name)]) + name + bytes(pad - 1 - len(name))
    size, n = b"", len(body)
    while True:  # LEB128
        byte, n = n & 0x7F, n >> 7
        size += bytes([byte | (0x80 if n else 0)])
        if not n:
            break
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".so"):
                data += b"\x00" + size + body
            out.writestr(info, data)
    return dest


def test_compare_runs_the_recipes_test_with_ours_and_pypis_wheel_in_the_same_runtime(repo_project, runtimes, tmp_path):
    """For real: jiter's recipe test in Pyodide 314.0.7 with PyPI's jiter 0.19.0 wheel and with "ours" (that
    wheel with a 4096-byte custom section added to its module), PyPI's JSON API served by a local mirror of the
    release."""
    from conftest import PYPI_WHEELS, PyPIUnreachable, pypi_wheel
    from pypi_mirror import FakePyPI, serve

    try:
        official = pypi_wheel(*PYPI_WHEELS["jiter"])
    except PyPIUnreachable as exc:
        pytest.skip(str(exc))
    layout, abi = repo_project.layout, repo_project.abis["2026_0"]
    layout.dist_dir("2026_0").mkdir(parents=True)
    ours = _with_custom_section(official, layout.dist_dir("2026_0") / official.name, 4096)
    stamp = layout.stamp("pyodide", "2026_0")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"runtime": str(runtimes[abi.pyodide_version] / "node_modules" / "pyodide")}))
    pypi = FakePyPI()
    pypi.add("jiter", "0.19.0", official, packagetype="bdist_wheel")
    server = serve(pypi)
    try:
        from wasmwheel.authoring.pypi import PyPI

        rows = [
            {"crate": "jiter", "abi": "2026_0", "status": "ok", "wheel": ours.name},
            {"crate": "jiter", "abi": "2025_0", "status": "skipped"},
        ]
        lines: list[str] = []
        (c,) = collection.compare(repo_project, rows, runs=2, pypi=PyPI(pypi.url), progress=lines.append)
    finally:
        server.shutdown()
    assert c.official == official.name and c.runs == 2 and c.reason == ""
    assert c.our_module - c.official_module == 1 + 2 + 4096 and c.size_ratio > 1  # section id, size (LEB128), body
    assert c.our_test > 0 and c.official_test > 0, c  # the recipe's test passed with both
    log = (layout.build / "logs" / "2026_0" / "jiter" / "compare.log").read_text()
    assert log.count("# ours: ok") == 2 and log.count("# official: ok") == 2
    assert collection.load_comparisons(repo_project) == [c]
    assert lines == [f"compare jiter@2026_0: {ours.name} vs {official.name} (2 runs each)"]
