"""Bad input: every malformed recipe and ABI file of the corpus in tests/data/bad/ gives exactly one
clear line (file, key, what is wrong), a non-zero exit and no traceback, through `python -m wasmwheel
check` and through doit, where it is an error task that hides none of the good recipes.

Each corpus file states its own expectation in its first line, ``# expect: <key>: <problem>``: the
error line must be ``error: <file>: `` followed by that text. See tests/data/bad/README.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wasmwheel.__main__ import main
from wasmwheel.model.errors import ConfigError
from wasmwheel.model.recipe import load_recipes

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
BAD = TESTS / "data" / "bad"
GOOD_ABIS = ["2024_0", "2025_0", "2026_0", "2026_5"]


def expectation(path: Path) -> str | None:
    # (bom.toml starts with a byte order mark, crlf-*.toml has Windows line ends)
    first = path.read_bytes().removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].rstrip(b"\r").decode("ascii")
    return first.removeprefix("# expect: ") if first.startswith("# expect: ") else None


def corpus(kind: str) -> list[Path]:
    return sorted(p for p in (BAD / kind).glob("*.toml") if expectation(p) is not None)


def companions(path: Path) -> list[Path]:
    """Files a case needs beside it: the other half of a duplicate pair."""
    return [
        p
        for p in (BAD / "recipes").glob("*.toml")
        if p != path and p.read_text(errors="replace").startswith(f"# One of a pair with {path.name}")
    ]


CASES = [("recipes", p) for p in corpus("recipes")] + [("abi", p) for p in corpus("abi")]


def test_the_corpus_covers_what_the_issue_lists():
    assert len(CASES) >= 30
    recipes = {p.stem for p in corpus("recipes")}
    expects = " ".join(expectation(p) or "" for _, p in CASES)
    for needle in (
        "expected a PEP 440 version",
        "missing; expected",
        "unknown key",
        "gives several sources",
        "not a sha256",
        "unknown ABI",
        "TOML syntax error",
        "also has the recipe",
        "does not exist",
        "points outside the repository",
        "not a cargo feature name; got '$(touch pwned)'",
        "not a rustup toolchain name",
        "cargo splits CARGO_TARGET_WASM32_UNKNOWN_EMSCRIPTEN_RUSTFLAGS",
    ):
        assert needle in expects, needle
    assert {"missing-patch", "patch-outside-repo", "path-outside-repo", "dup_crate", "meta-name"} <= recipes


def make_repo(tmp: Path) -> Path:
    """A repository with the shipped ABIs, the example crate and its recipe: all good."""
    root = tmp / "repo"
    shutil.copytree(REPO / "abi", root / "abi")
    (root / "recipes").mkdir()
    shutil.copy2(REPO / "recipes" / "hello-pyo3.toml", root / "recipes")
    shutil.copytree(
        REPO / "examples" / "hello-pyo3", root / "examples" / "hello-pyo3", ignore=shutil.ignore_patterns("target")
    )
    shutil.copy2(REPO / "dodo.py", root / "dodo.py")
    return root


def add_case(root: Path, kind: str, case: Path) -> Path:
    for extra in companions(case):
        shutil.copy2(extra, root / kind / extra.name)
    dest = root / kind / case.name
    shutil.copy2(case, dest)
    return dest


@pytest.mark.parametrize("kind,case", CASES, ids=[f"{k}/{p.stem}" for k, p in CASES])
def test_each_bad_file_gives_one_line_naming_file_key_and_problem(tmp_path, capsys, kind, case):
    root = make_repo(tmp_path)
    dest = add_case(root, kind, case)
    assert main(["--root", str(root), "check"]) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {dest}: {expectation(case)}"), lines[0]
    good_recipes = 0 if case.stem == "hello-pyo3" else 1
    good_abis = len(GOOD_ABIS) - (kind == "abi" and case.stem in GOOD_ABIS)
    recipes = "1 recipe" if good_recipes == 1 else "0 recipes"
    assert f"{good_abis} ABIs, {recipes}, 1 problem\n" in out


@pytest.fixture(scope="module")
def bad_repo(tmp_path_factory) -> Path:
    """One repository holding the good files and the whole corpus at once."""
    root = make_repo(tmp_path_factory.mktemp("bad"))
    for kind in ("recipes", "abi"):
        for path in (BAD / kind).glob("*.toml"):
            shutil.copy2(path, root / kind / path.name)
    return root


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("WASMWHEEL_")}
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.mark.slow  # starts wasmwheel in a subprocess
def test_check_over_the_whole_corpus_prints_one_line_per_file_and_no_traceback(bad_repo):
    proc = subprocess.run(
        [sys.executable, "-m", "wasmwheel", "--root", str(bad_repo), "check"],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == len(CASES)
    for kind, case in CASES:
        prefix = f"error: {bad_repo / kind / case.name}: {expectation(case)}"
        assert sum(line.startswith(prefix) for line in lines) == 1, prefix
    assert f"{len(GOOD_ABIS)} ABIs, 1 recipe, {len(CASES)} problems\n" in proc.stdout


def _doit(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "doit", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**_env(), "WASMWHEEL_CACHE": str(root / "cache"), **(env or {})},
        timeout=300,
    )


def _task(kind: str, case: Path) -> str:
    from packaging.utils import canonicalize_name

    return f"build:{canonicalize_name(case.stem)}" if kind == "recipes" else f"abi:{case.stem}"


@pytest.mark.slow  # starts doit in a subprocess
def test_doit_lists_every_bad_file_as_an_error_task_and_the_good_recipe_still_loads(bad_repo):
    proc = _doit(bad_repo, "list", "--all")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    listed = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in proc.stdout.splitlines() if " " in line}
    # The good recipe keeps its whole pipeline for every good ABI.
    assert listed["build:hello-pyo3"].startswith("hello-pyo3 0.1.0 for")
    for abi in GOOD_ABIS:
        assert f"compile:hello-pyo3@{abi}" in listed and f"smoke:hello-pyo3@{abi}" in listed
    for kind, case in CASES:
        doc = listed[_task(kind, case)]
        assert doc.startswith(f"ERROR: {bad_repo / kind / case.name}: {expectation(case)}"), doc


@pytest.mark.slow  # starts doit in a subprocess
def test_doit_running_bad_tasks_fails_with_their_one_line_and_no_traceback(bad_repo):
    tasks = [_task(kind, case) for kind, case in CASES]
    proc = _doit(bad_repo, "--continue", *tasks)
    assert proc.returncode == 1
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    for (kind, case), task in zip(CASES, tasks, strict=True):
        # The reporter's FAIL line, then the one-line error indented under it.
        assert re.search(
            rf"^FAIL {re.escape(task)} .*\n     {re.escape(str(bad_repo / kind / case.name))}: "
            rf"{re.escape(expectation(case))}",
            output,
            flags=re.M,
        ), task


@pytest.mark.slow  # starts doit in a subprocess
@pytest.mark.parametrize(
    "name,value,message",
    [
        (
            "WASMWHEEL_SYSTEM",
            "maybe",
            "error: environment: WASMWHEEL_SYSTEM: expected 1/0, true/false, yes/no; got 'maybe'",
        ),
        (
            "WASMWHEEL_PYPI_URL",
            "pypi.example",
            "error: environment: WASMWHEEL_PYPI_URL: expected a URL, got 'pypi.example'",
        ),
        (
            "WASMWHEEL_UNPACK_MAX_SIZE",
            "lots",
            "error: environment: WASMWHEEL_UNPACK_MAX_SIZE: expected a size in bytes, or "
            "with K, M, G or T (e.g. 8G); got 'lots'",
        ),
    ],
)
def test_a_bad_setting_stops_doit_with_one_line(tmp_path, name, value, message):
    root = make_repo(tmp_path)
    proc = _doit(root, "list", env={name: value})
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        message + (" (e.g. http://localhost:8000/mirror)" if "URL" in message else "")
    ]
    assert proc.stdout == ""


@pytest.mark.slow  # starts doit in a subprocess
@pytest.mark.parametrize("name", ["WASMWHEEL_EMSDK_URL", "WASMWHEEL_SYSROOT_MIRROR", "WASMWHEEL_SDIST_MIRROR"])
def test_a_setting_that_takes_a_local_folder_names_the_missing_one(tmp_path, name):
    root = make_repo(tmp_path)
    proc = _doit(root, "list", env={name: "mirror.example"})
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: environment: {name}: expected a URL or a local folder, got 'mirror.example', and "
        f"{root / 'mirror.example'} is no folder (e.g. http://localhost:8000/mirror or /srv/mirror)"
    ]
    (root / "mirror.example").mkdir()  # relative to the folder doit runs in, as the other path settings
    assert _doit(root, "list", env={name: "mirror.example"}).returncode == 0


@pytest.mark.slow  # starts doit in a subprocess
def test_editor_lock_and_backup_files_are_not_recipes(tmp_path):
    root = make_repo(tmp_path)
    (root / "recipes" / ".#hello-pyo3.toml").symlink_to("user@host.1234:1700000000")  # an emacs lock
    (root / "abi" / ".2026_0.toml").write_text("not toml [")
    loaded = load_recipes(root / "recipes", GOOD_ABIS, root)
    assert list(loaded.recipes) == ["hello-pyo3"] and loaded.errors == {}
    proc = _doit(root, "list", "--all")
    assert proc.returncode == 0 and "ERROR" not in proc.stdout


@pytest.mark.slow  # starts doit in a subprocess
def test_a_duplicate_recipe_is_one_error_and_neither_file_builds(tmp_path):
    root = make_repo(tmp_path)
    shutil.copy2(root / "recipes" / "hello-pyo3.toml", root / "recipes" / "Hello_Pyo3.toml")
    loaded = load_recipes(root / "recipes", GOOD_ABIS, root)
    assert loaded.recipes == {}
    (error,) = loaded.errors.values()
    assert isinstance(error, ConfigError)
    assert str(error).startswith(
        f"{root}/recipes/hello-pyo3.toml: package.name: package 'hello-pyo3' also has the recipe Hello_Pyo3.toml"
    )
    # Before, the second file's error task collided with the first file's build task and doit listed nothing.
    proc = _doit(root, "list", "--all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "build:hello-pyo3" in proc.stdout and "compile:hello-pyo3" not in proc.stdout


# -- files that cannot be corpus files: folders, FIFOs, symbolic links ---------------------------------

SPECIAL = {
    "folder": (lambda path, outside: path.mkdir(), "is a folder, not a file"),
    # Before: `check` and every doit command waited forever to read it.
    "fifo": (lambda path, outside: os.mkfifo(path), "is a FIFO, not a file"),
    # Before: a RuntimeError traceback, and doit listed nothing at all.
    "symlink-loop": (lambda path, outside: path.symlink_to(path.name), "is a symbolic link loop"),
    "symlink-dangling": (
        lambda path, outside: path.symlink_to("missing.toml"),
        "is a symbolic link to 'missing.toml', which does not exist",
    ),
    # Before: read and built as if it were in the repository.
    "symlink-outside": (
        lambda path, outside: path.symlink_to(outside),
        "is a symbolic link to '{outside}', outside the repository",
    ),
}


@pytest.mark.slow  # starts wasmwheel and doit in subprocesses
@pytest.mark.parametrize("kind", ["recipes", "abi"])
@pytest.mark.parametrize("case", sorted(SPECIAL))
def test_a_folder_fifo_or_symbolic_link_in_place_of_a_file_is_one_line(tmp_path, kind, case):
    root = make_repo(tmp_path)
    name = "special.toml" if kind == "recipes" else "2091_0.toml"
    outside = tmp_path / name  # a valid file, outside the repository
    if kind == "recipes":
        outside.write_text(
            '[package]\nname = "special"\nversion = "1.0"\n\n[source]\nurl = '
            f'"https://example.invalid/special-1.0.tar.gz"\nsha256 = "{"0" * 64}"\n'
        )
    else:
        outside.write_text((root / "abi" / "2026_0.toml").read_text().replace("2026_0", "2091_0"))
    path = root / kind / name
    make, message = SPECIAL[case]
    make(path, outside)
    message = message.format(outside=outside)
    check = subprocess.run(
        [sys.executable, "-m", "wasmwheel", "--root", str(root), "check"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert check.returncode == 1 and "Traceback" not in check.stderr
    (line,) = check.stderr.splitlines()
    assert line.startswith(f"error: {path}: {message}"), line
    listed = _doit(root, "list", "--all")
    assert listed.returncode == 0 and "Traceback" not in listed.stdout + listed.stderr, listed.stderr
    task = "build:special" if kind == "recipes" else "abi:2091_0"
    docs = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in listed.stdout.splitlines() if " " in line}
    assert docs[task].startswith(f"ERROR: {path}: {message}") and docs["build:hello-pyo3"].startswith(
        "hello-pyo3 0.1.0"
    )
