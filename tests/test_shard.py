"""Scale-out: the GitHub Actions matrix that shards the collection, and merging what the shards built."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from wasmwheel.pipeline.graph import Project
from wasmwheel.pipeline.shard import (
    Item,
    ShardError,
    abi_files_key,
    matrix_for,
    merge_reports,
    merge_shards,
    plan_shards,
    read_durations,
    weigh,
)


def _load(root, tmp_path) -> Project:
    return Project.load(root, {"WASMWHEEL_CACHE": str(tmp_path / "cache")})


def _entries(matrix):
    return [(e["abis"], e["tasks"].split()) for e in matrix["include"]]


def _all_items(project) -> set[str]:
    return {
        f"smoke:{n}@{a}"
        for n, r in project.recipes.recipes.items()
        for a in r.abis(sorted(project.abis), project.toolchain)
    }


def _report(path: Path, seconds: dict[tuple[str, str], float | None], **extra) -> Path:
    rows = [{"crate": c, "abi": a, "status": "ok", "seconds": s} for (c, a), s in seconds.items()]
    path.write_text(json.dumps({"rows": rows, **extra}))
    return path


# -- the matrix of the real collection --------------------------------------------------------


def test_without_a_report_every_item_is_in_one_shard_of_one_abi(repo, tmp_path):
    project = _load(repo, tmp_path)
    matrix, warnings = matrix_for(project, 4, tmp_path / "missing.json")
    assert warnings == [f"no build report at {tmp_path / 'missing.json'}: every crate x ABI weighs the same"]
    entries = _entries(matrix)
    assert sorted(a for a, _ in entries) == sorted(project.abis)  # 4 ABIs, 4 shards: one each
    tasks = [t for _, ts in entries for t in ts]
    assert sorted(tasks) == sorted(_all_items(project)) and len(tasks) == len(set(tasks))
    for abis, ts in entries:
        assert all(t.endswith("@" + abis) for t in ts)
    # Shard numbers, names and the toolchain cache key of each shard's ABI file.
    for n, entry in enumerate(matrix["include"], 1):
        assert entry["shard"] == n and entry["name"].startswith(f"{n}/4 {entry['abis']} ")
        assert entry["toolchain_key"] == abi_files_key(project, [entry["abis"]])
        assert entry["items"] == len(entry["tasks"].split()) == entry["weight"]


def test_skipped_abis_are_not_built(repo, tmp_path):
    project = _load(repo, tmp_path)
    matrix, _ = matrix_for(project, 8, None)
    tasks = {t for _, ts in _entries(matrix) for t in ts}
    for name, recipe in project.recipes.recipes.items():
        for abi in recipe.skips(sorted(project.abis), project.toolchain):  # skip_abis, and needs_emsdk under lean
            assert f"smoke:{name}@{abi}" not in tasks


def test_the_matrix_is_deterministic(repo, tmp_path):
    project = _load(repo, tmp_path)
    items = sorted(_all_items(project))
    rng = random.Random(7)
    seconds = {tuple(t.removeprefix("smoke:").split("@")): round(rng.uniform(10, 600), 1) for t in items[::2]}
    first, _ = matrix_for(project, 5, _report(tmp_path / "a.json", seconds))
    shuffled = list(seconds.items())
    rng.shuffle(shuffled)
    again, _ = matrix_for(_load(repo, tmp_path), 5, _report(tmp_path / "b.json", dict(shuffled)))
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)


def test_a_report_balances_the_shards_by_duration(repo, tmp_path):
    project = _load(repo, tmp_path)
    abi = "2026_0"
    crates = sorted(n for n, r in project.recipes.recipes.items() if abi in r.abis([abi], project.toolchain))
    # One crate takes as long as all the others together.
    seconds = {(c, abi): 10.0 for c in crates}
    seconds[(crates[0], abi)] = 10.0 * (len(crates) - 1)
    matrix, warnings = matrix_for(project, 2, _report(tmp_path / "r.json", seconds), abis=[abi])
    assert warnings == []
    (one, rest) = sorted(_entries(matrix), key=lambda e: len(e[1]))
    assert one[1] == [f"smoke:{crates[0]}@{abi}"]
    assert len(rest[1]) == len(crates) - 1
    assert [e["weight"] for e in matrix["include"]] == [10.0 * (len(crates) - 1)] * 2


@pytest.mark.slow  # starts wasmwheel in a subprocess
def test_cli_prints_the_matrix_and_notes_on_stderr(repo):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wasmwheel",
            "--root",
            str(repo),
            "matrix",
            "--shards",
            "3",
            "--abi",
            "2026_0",
            "--report",
            str(repo / "nope.json"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    matrix = json.loads(proc.stdout)
    assert len(matrix["include"]) == 3
    assert "no build report at" in proc.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "wasmwheel", "--root", str(repo), "matrix", "--crate", "nosuch"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "unknown crate or ABI: nosuch" in bad.stderr


# -- planning, on made-up items ------------------------------------------------------------------


def _plan(weights: dict[Item, float], count: int, links=None):
    return plan_shards(sorted(weights, key=lambda i: (i.abi, i.crate)), count, weights, links)


def test_lpt_balance_within_one_abi():
    weights = {Item(f"c{i}", "2026_0"): w for i, w in enumerate([10, 9, 8, 7, 6, 5, 4])}
    shards = _plan(weights, 2)
    loads = sorted(s.weight for s in shards)
    assert sum(loads) == 49 and loads[1] <= 26  # LPT: within 4/3 of the best split (25)
    # Round-robin by name would give 10+8+6+4 = 28.
    assert {i for s in shards for i in s.items} == set(weights)


def test_extra_shards_go_to_the_heaviest_abi():
    weights = {Item(f"c{i}", "2024_0"): 30.0 for i in range(6)} | {Item(f"c{i}", "2026_0"): 10.0 for i in range(6)}
    shards = _plan(weights, 4)
    assert [s.abis for s in shards] == [["2024_0"]] * 3 + [["2026_0"]]
    assert [s.weight for s in shards] == [60.0, 60.0, 60.0, 60.0]


def test_fewer_shards_than_abis_group_whole_abis():
    weights = {Item(f"c{i}", abi): 1.0 for i in range(4) for abi in ("2024_0", "2025_0", "2026_0")}
    weights[Item("c0", "2025_0")] = 9.0
    shards = _plan(weights, 2)
    assert sorted(s.abis for s in shards) == [["2024_0", "2026_0"], ["2025_0"]]


def test_more_shards_than_items_gives_no_empty_shard():
    shards = _plan({Item("a", "2026_0"): 1.0, Item("b", "2026_0"): 1.0}, 10)
    assert [len(s.items) for s in shards] == [1, 1]


def test_linked_crates_stay_in_one_shard_per_abi():
    weights = {Item(c, abi): 1.0 for c in "abcdef" for abi in ("2025_0", "2026_0")}
    links = {"a": {"f"}, "f": {"a", "c"}, "c": {"f"}}
    shards = _plan(weights, 6, links)
    for abi in ("2025_0", "2026_0"):
        holding = [s for s in shards if Item("a", abi) in s.items]
        assert len(holding) == 1 and {Item("c", abi), Item("f", abi)} <= set(holding[0].items)


def test_shard_count_is_checked():
    with pytest.raises(ShardError, match="between 1 and 256"):
        _plan({Item("a", "2026_0"): 1.0}, 0)
    with pytest.raises(ShardError, match="between 1 and 256"):
        _plan({Item("a", "2026_0"): 1.0}, 257)


# -- durations from reports ------------------------------------------------------------------------


def test_unknown_items_weigh_the_median_of_the_known(tmp_path):
    items = [Item(c, "2026_0") for c in "abcd"]
    durations, warnings = read_durations(
        _report(
            tmp_path / "r.json", {("a", "2026_0"): 10, ("b", "2026_0"): 40, ("c", "2026_0"): 100, ("x", "2026_0"): None}
        )
    )
    assert warnings == []
    assert weigh(items, durations) == {items[0]: 10, items[1]: 40, items[2]: 100, items[3]: 40}
    assert weigh(items, {}) == dict.fromkeys(items, 1.0)


@pytest.mark.parametrize(
    "text,problem",
    [
        ("{not json", "JSONDecodeError"),
        ('{"rows": {"a": 1}}', "rows is not a list"),
        ('{"summary": {}}', "KeyError"),
        ("[1, 2]", "TypeError"),
        (b"\xff\xfe", "UnicodeDecodeError"),
    ],
)
def test_a_bad_report_falls_back_to_equal_weights(tmp_path, text, problem):
    path = tmp_path / "report.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    durations, warnings = read_durations(path)
    assert durations == {}
    assert len(warnings) == 1 and problem in warnings[0] and "every crate x ABI weighs the same" in warnings[0]


def test_malformed_rows_are_skipped_and_counted(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(
        json.dumps(
            {
                "rows": [
                    {"crate": "a", "abi": "2026_0", "seconds": 5},
                    {"crate": 3, "abi": "x"},
                    "row",
                    {"abi": "2026_0"},
                    {"crate": "b", "abi": "2026_0", "seconds": True},
                ]
            }
        )
    )
    durations, warnings = read_durations(path)
    assert durations == {Item("a", "2026_0"): 5.0}
    assert warnings == [f"{path}: ignored 3 malformed row(s)"]


# -- merging shard outputs -----------------------------------------------------------------------


def _wheel(path: Path, payload: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("m.txt", payload)
    return path


def _shard(folder: Path, rows: list[dict], wheels: dict[str, str], toolchains: list[dict] = ()) -> Path:
    for rel, payload in wheels.items():
        _wheel(folder / "dist" / rel, payload)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(
        json.dumps(
            {
                "generated": "2026-01-01T00:00:00+00:00",
                "abis": ["2025_0", "2026_0"],
                "rows": rows,
                "run": {"executed": len(wheels), "failed": 0, "skipped": 0, "uptodate": 0, "seconds": 5.0},
                "toolchains": list(toolchains),
                "invalid_recipes": [],
                "invalid_abis": [],
            }
        )
    )
    return folder


def _row(crate, abi, status, seconds=None):
    return {"crate": crate, "abi": abi, "status": status, "seconds": seconds}


def test_merge_takes_each_row_from_the_shard_that_built_it(tmp_path):
    a = _shard(
        tmp_path / "shard-1",
        [_row("x", "2025_0", "ok", 3.0), _row("x", "2026_0", "not built")],
        {"2025_0/x-1-a.whl": "x25"},
    )
    b = _shard(
        tmp_path / "shard-2",
        [_row("x", "2025_0", "not built"), _row("x", "2026_0", "failed", 1.0)],
        {"2026_0/y-1-b.whl": "y26"},
        [{"task": "rust:2026_0", "status": "failed", "error": "could not install Rust", "log": "rust.log"}],
    )
    build = tmp_path / "build"
    result = merge_shards([b, a], build)
    assert result["wheels"] == 2
    assert (build / "dist" / "2025_0" / "x-1-a.whl").exists() and (build / "dist" / "2026_0" / "y-1-b.whl").exists()
    report = json.loads((build / "report.json").read_text())
    assert [(r["abi"], r["status"]) for r in report["rows"]] == [("2025_0", "ok"), ("2026_0", "failed")]
    assert report["summary"] == {"ok": 1, "failed": 1}
    assert report["run"]["executed"] == 2 and report["run"]["shards"] == 2 and report["run"]["seconds"] == 5.0
    md = (build / "report.md").read_text()
    assert "| x | ok | FAILED" in md
    # ... and leads with what failed in any shard, its toolchain steps included.
    assert [f["task"] for f in report["failures"]] == ["rust:2026_0", "x@2026_0"]
    assert md.index("- **rust:2026_0**: could not install Rust\n  - log: `rust.log`") < md.index("## Crates")
    # The merged report balances the next matrix.
    assert read_durations(build / "report.json")[0] == {Item("x", "2025_0"): 3.0, Item("x", "2026_0"): 1.0}


def test_merge_accepts_the_same_wheel_twice_but_not_two_different_ones(tmp_path):
    a = _shard(tmp_path / "shard-1", [], {"2026_0/x-1-a.whl": "same"})
    b = _shard(tmp_path / "shard-2", [], {"2026_0/x-1-a.whl": "same"})
    assert merge_shards([a, b], tmp_path / "build")["wheels"] == 1
    c = _shard(tmp_path / "shard-3", [], {"2026_0/x-1-a.whl": "different"})
    with pytest.raises(ShardError, match="same name but different bytes"):
        merge_shards([a, c], tmp_path / "build2")


def test_merge_without_any_report_fails_and_says_why(tmp_path):
    folder = tmp_path / "shard-1"
    _wheel(folder / "dist" / "2026_0" / "x-1-a.whl", "x")
    with pytest.raises(ShardError, match=re.escape("no shard has a readable report.json")):
        merge_shards([folder], tmp_path / "build")
    with pytest.raises(ShardError, match="no shard reports"):
        merge_reports([])
