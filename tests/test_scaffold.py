"""`new` and `bump` against a local PyPI JSON API serving real sdists (downloaded once from PyPI)."""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import tomllib
from pathlib import Path

import pytest

from pypi_mirror import FakePyPI, cached_sdist, make_sdist, serve
from wasmwheel.__main__ import main
from wasmwheel.authoring.pypi import PyPI, PyPIError, split_spec
from wasmwheel.authoring.scaffold import (
    ScaffoldError,
    SdistFacts,
    bump_recipe,
    inline_tables_on_one_line,
    inspect_sdist,
    new_recipe,
    suggest_skips,
    toolchain_rust_version,
)
from wasmwheel.model.abi import load_abis
from wasmwheel.model.errors import ConfigError
from wasmwheel.model.layout import Layout
from wasmwheel.model.recipe import load_recipe
from wasmwheel.model.settings import Settings
from wasmwheel.runner import StepLog

REPO = Path(__file__).resolve().parent.parent

# Real sdists not pinned by a recipe: an older jiter (for bump) and a setuptools-rust project.
EXTRA_SDISTS = {
    ("jiter", "0.18.0"): (
        "https://files.pythonhosted.org/packages/63/5b/f68319f4fe624311a744a33d10fdbcac4c971991e348223cba60d31780b2/jiter-0.18.0.tar.gz",
        "a0ca63fd9450a212e4e658d4cfe0ab4977c4f9b0003c68828b843c65e27662ff",
    ),
    ("tiktoken", "0.14.0"): (
        "https://files.pythonhosted.org/packages/66/62/167a842aa0429d45f5e797354fd4343a96f6043d67d0513c675c7b8d36e6/tiktoken-0.14.0.tar.gz",
        "231dec90efcdccf1b565a1416107736f1e09b1a08fe736ef9d6363e626d03874",
    ),
}


def recipe_sdist(name: str) -> tuple[str, str, str, str]:
    """(PyPI name, version, url, sha256) pinned by the collection's recipe."""
    data = tomllib.loads((REPO / "recipes" / f"{name}.toml").read_text())
    return data["package"]["name"], data["package"]["version"], data["source"]["url"], data["source"]["sha256"]


@pytest.fixture(scope="session")
def sdists() -> dict[tuple[str, str], Path]:
    found = {}
    for name in ("jiter", "pendulum", "pydantic-core"):
        pypi_name, version, url, sha = recipe_sdist(name)
        found[(pypi_name, version)] = cached_sdist(url, sha)
    for key, (url, sha) in EXTRA_SDISTS.items():
        found[key] = cached_sdist(url, sha)
    return found


@pytest.fixture
def pypi(sdists):
    mirror = FakePyPI()
    for (name, version), path in sdists.items():
        mirror.add(name, version, path)
    server = serve(mirror)
    yield mirror
    server.shutdown()


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A project with the repository's ABI files and no recipes, its cache in tmp."""
    project = tmp_path / "repo"
    project.mkdir()
    shutil.copytree(REPO / "abi", project / "abi", ignore=shutil.ignore_patterns("runtimes"))
    shutil.copy2(REPO / "dodo.py", project / "dodo.py")
    (project / "recipes").mkdir()
    for key in [k for k in os.environ if k.startswith("WASMWHEEL_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("WASMWHEEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WASMWHEEL_RETRY_BACKOFF", "0.01")
    return project


def scaffold(root: Path, pypi: FakePyPI, name: str, version: str | None = None, force: bool = False):
    layout = Layout(Settings.from_env(root))
    with StepLog(None, echo=False) as log:
        return new_recipe(name, version, root, PyPI(pypi.url), layout, log, force=force)


def bump(root: Path, pypi: FakePyPI, recipe: str, version: str | None = None):
    layout = Layout(Settings.from_env(root))
    with StepLog(None, echo=False) as log:
        return bump_recipe(recipe, version, root, PyPI(pypi.url), layout, log)


def load(root: Path, path: Path):
    return load_recipe(path, list(load_abis(root / "abi")), root)


# -- new ---------------------------------------------------------------------------------------


def test_new_writes_a_valid_commented_recipe_for_a_workspace_crate(root, pypi):
    path, facts = scaffold(root, pypi, "jiter", "0.19.0")
    assert path == root / "recipes" / "jiter.toml"
    recipe = load(root, path)
    _, _, url, sha = recipe_sdist("jiter")
    # The same public URL and digest as the hand-checked recipe: the mirror's address is not recorded.
    assert (recipe.version, recipe.source.url, recipe.source.sha256) == ("0.19.0", url, sha)
    assert recipe.import_names == ("jiter",) and recipe.source.subdir == ""
    assert facts.manifest == "crates/jiter-python/Cargo.toml" and facts.manifest_rule == "tool.maturin.manifest-path"
    assert (facts.pyo3, facts.rust_version, facts.abi3) == ("0.30.1", "1.88", None)
    # Rust 1.88 rules out the ABIs whose nightlies are 1.85 and 1.86, and nothing else.
    assert set(recipe.build.skip_abis) == {"2024_0", "2025_0"}
    assert "1.88" in recipe.build.skip_abis["2024_0"]
    text = path.read_text()
    assert "# Facts found in the sdist:" in text and "TODO" in text
    assert recipe.test.script == "import jiter\n"
    assert "\nscript = '''\nimport jiter\n'''" in text
    # Downloaded once, into the shared cache, under its digest.
    assert (root.parent / "cache" / "downloads" / "sha256" / sha / "jiter-0.19.0.tar.gz").is_file()


def test_new_finds_a_crate_in_rust_folder_and_a_dotted_module(root, pypi):
    path, facts = scaffold(root, pypi, "pendulum")  # latest
    assert facts.manifest == "rust/Cargo.toml" and "rust/Cargo.toml rule" in facts.manifest_rule
    assert facts.module_name == "pendulum._pendulum"
    recipe = load(root, path)
    assert recipe.import_names == ("pendulum",) and recipe.version == "3.3.0"
    assert recipe.build.skip_abis == {}  # PyO3 0.29.3 covers 3.15, no rust-version set


def test_new_uses_pypis_spelling_and_the_canonical_file_name(root, pypi):
    path, facts = scaffold(root, pypi, "Pydantic-Core")
    assert path.name == "pydantic-core.toml"
    recipe = load(root, path)
    assert recipe.package_name == "pydantic_core" and recipe.import_names == ("pydantic_core",)
    assert facts.module_name == "pydantic_core._pydantic_core"


def test_new_finds_a_maturin_project_below_the_sdist_root(root, pypi, sdists, tmp_path):
    # A monorepo-style archive: the real pendulum sdist one folder down.
    original = sdists[("pendulum", "3.3.0")]
    nested = tmp_path / "nested" / "pendulum-mono-1.0.tar.gz"
    nested.parent.mkdir()
    with tarfile.open(original) as src, tarfile.open(nested, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            member.name = member.name.replace("pendulum-3.3.0", "pendulum-mono-1.0/python", 1)
            dst.addfile(member, io.BytesIO(data.read()) if data else None)
    pypi.add("pendulum-mono", "1.0", nested)
    path, facts = scaffold(root, pypi, "pendulum-mono")
    assert facts.subdir == "python" and facts.manifest == "python/rust/Cargo.toml"
    recipe = load(root, path)
    assert recipe.source.subdir == "python"


def test_new_refuses_a_project_that_is_not_built_with_maturin(root, pypi):
    with pytest.raises(ScaffoldError, match=re.escape("setuptools.build_meta with setuptools-rust, not maturin")):
        scaffold(root, pypi, "tiktoken")
    assert not (root / "recipes" / "tiktoken.toml").exists()


def test_new_says_what_is_missing(root, pypi, sdists):
    with pytest.raises(PyPIError, match="no project named 'not-a-package'"):
        scaffold(root, pypi, "not-a-package")
    with pytest.raises(PyPIError, match=r"jiter has no version 9\.9 .*latest: 0\.19\.0; recent: 0\.19\.0, 0\.18\.0"):
        scaffold(root, pypi, "jiter", "9.9")
    pypi.add("wheels-only", "1.0", sdists[("jiter", "0.19.0")], packagetype="bdist_wheel")
    with pytest.raises(PyPIError, match=re.escape("wheels-only 1.0 has no sdist")):
        scaffold(root, pypi, "wheels-only")
    assert list((root / "recipes").iterdir()) == []


def test_new_refuses_a_file_that_does_not_match_pypis_digest(root, pypi, sdists, tmp_path):
    real = tmp_path / "tampered-1.0.tar.gz"
    shutil.copy2(sdists[("jiter", "0.19.0")], real)
    pypi.add("tampered", "1.0", real, body=real.read_bytes()[:-100] + b"\0" * 100)
    with pytest.raises(Exception, match="sha256 mismatch"):
        scaffold(root, pypi, "tampered")
    assert not (root / "recipes" / "tampered.toml").exists()
    # Neither the file nor a partial download is left to look finished (only the lock file stays).
    left = [p.name for p in (root.parent / "cache" / "downloads").rglob("*") if p.is_file()]
    assert left == ["tampered-1.0.tar.gz.lock"]


def test_new_keeps_an_existing_recipe_unless_forced(root, pypi):
    path, _ = scaffold(root, pypi, "jiter")
    path.write_text(path.read_text().replace("import jiter\n'''", "import jiter\nassert jiter\n'''"))
    edited = path.read_text()
    with pytest.raises(ScaffoldError, match=r"exists already.*--force"):
        scaffold(root, pypi, "jiter")
    assert path.read_text() == edited
    scaffold(root, pypi, "jiter", force=True)
    assert path.read_text() != edited


def test_new_works_through_a_mirror_with_relative_urls_and_no_version_endpoint(root, pypi):
    pypi.relative_urls = True
    pypi.version_endpoint = False
    path, _ = scaffold(root, pypi, "jiter", "0.18.0")
    recipe = load(root, path)
    url, sha = EXTRA_SDISTS[("jiter", "0.18.0")]
    assert (recipe.version, recipe.source.url, recipe.source.sha256) == ("0.18.0", url, sha)
    assert "/pypi/jiter/0.18.0/json" in pypi.requests  # tried first, then fell back to the project document


def test_new_cannot_reach_the_index(root):
    layout = Layout(Settings.from_env(root))
    with StepLog(None, echo=False) as log, pytest.raises(PyPIError, match=r"cannot reach .*WASMWHEEL_PYPI_URL"):
        new_recipe("jiter", None, root, PyPI("http://127.0.0.1:9", timeout=2), layout, log)


# -- bump ----------------------------------------------------------------------------------------


def test_bump_changes_version_url_and_sha256_and_nothing_else(root, pypi):
    path, _ = scaffold(root, pypi, "jiter", "0.18.0")
    text = path.read_text().replace("import jiter\n'''", "import jiter\n\nassert jiter.from_json(b'[1]') == [1]\n'''")
    text = text.replace("[build]\n", "[build]\n# kept: a maintainer's note\n")
    path.write_text(text)
    result = bump(root, pypi, "jiter")  # latest
    assert (result.old_version, result.new_version) == ("0.18.0", "0.19.0")
    after = path.read_text()
    changed = [(a, b) for a, b in zip(text.splitlines(), after.splitlines(), strict=False) if a != b]  # lengths: below
    assert len(text.splitlines()) == len(after.splitlines())
    assert [b.split(" = ")[0] for _, b in changed if not b.startswith("#")] == ["version", "url", "sha256"]
    # The comment block `new` wrote is brought up to the new sdist; other comments stay.
    assert [b for _, b in changed if b.startswith("#")] == [
        "# jiter 0.19.0: maturin sdist from PyPI, scaffolded by `python -m wasmwheel new`.",
        "#   requires-python: >=3.11",
    ]
    assert "# kept: a maintainer's note" in after
    _, _, url, sha = recipe_sdist("jiter")
    recipe = load(root, path)
    assert (recipe.version, recipe.source.url, recipe.source.sha256) == ("0.19.0", url, sha)
    # What changed between the sdists, for the maintainer to check.
    assert "requires-python: >=3.10 -> >=3.11" in result.changes
    assert not any("still mention" in c for c in result.changes)  # the header was the only mention
    # At the newest version already: nothing to do, nothing written.
    again = bump(root, pypi, "jiter")
    assert again.changes == () and path.read_text() == after


def test_bump_to_a_given_version_and_errors(root, pypi):
    path, _ = scaffold(root, pypi, "jiter")
    bump(root, pypi, str(path), "0.18.0")
    assert load(root, path).version == "0.18.0"
    with pytest.raises(PyPIError, match=re.escape("no version 0.1")):
        bump(root, pypi, "jiter", "0.1")
    with pytest.raises(ScaffoldError, match="no recipe 'nope'"):
        bump(root, pypi, "nope")
    local = root / "recipes" / "local-crate.toml"
    local.write_text('[package]\nname = "local-crate"\nversion = "0.1.0"\n[source]\npath = "."\n')
    with pytest.raises(ScaffoldError, match="has a path source"):
        bump(root, pypi, "local-crate")


def test_bump_repairs_a_version_changed_by_hand(root, pypi):
    path, _ = scaffold(root, pypi, "jiter", "0.18.0")
    path.write_text(path.read_text().replace('version = "0.18.0"', 'version = "0.19.0"'))
    with pytest.raises(
        ConfigError,
        match=r"source\.url: names version 0\.18\.0 of the sdist \(jiter-0\.18\.0\.tar\.gz\), "
        r"but package\.version is 0\.19\.0 \(.*`python -m wasmwheel bump jiter 0\.19\.0`",
    ):
        load(root, path)
    bump(root, pypi, "jiter", "0.19.0")  # what the error says to run
    _, _, url, sha = recipe_sdist("jiter")
    recipe = load(root, path)
    assert (recipe.version, recipe.source.url, recipe.source.sha256) == ("0.19.0", url, sha)


# -- the command line ------------------------------------------------------------------------------


def test_command_line_new_and_bump(root, pypi, monkeypatch, capsys):
    monkeypatch.setenv("WASMWHEEL_PYPI_URL", pypi.url)
    assert main(["--root", str(root), "new", "jiter", "==0.18.0"]) == 0
    out = capsys.readouterr().out
    assert "wrote " in out and "crate: crates/jiter-python/Cargo.toml" in out
    assert main(["--root", str(root), "new", "jiter==0.18.0"]) == 1
    assert "exists already" in capsys.readouterr().err
    assert main(["--root", str(root), "bump", "jiter"]) == 0
    assert "0.18.0 -> 0.19.0" in capsys.readouterr().out
    assert main(["--root", str(root), "bump", "jiter"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["--root", str(root), "new", "tiktoken"]) == 1
    assert "not maturin" in capsys.readouterr().err


# -- pieces ---------------------------------------------------------------------------------------


def test_split_spec():
    assert split_spec("jiter") == ("jiter", None)
    assert split_spec("jiter==0.19.0") == ("jiter", "0.19.0")
    assert split_spec("jiter", "==0.19.0") == ("jiter", "0.19.0")
    assert split_spec("jiter", "0.19.0") == ("jiter", "0.19.0")
    with pytest.raises(PyPIError, match="once"):
        split_spec("jiter==1", "2")
    with pytest.raises(PyPIError, match="not a package name"):
        split_spec("../etc")


def test_toolchain_rust_version():
    assert toolchain_rust_version("1.93.0") == (1, 93)
    # What these nightlies report as `rustc --version`: 1.85.0-nightly, 1.86.0-nightly, 1.97.0-nightly.
    assert toolchain_rust_version("nightly-2024-12-01") == (1, 85)
    assert toolchain_rust_version("nightly-2025-02-01") == (1, 86)
    assert toolchain_rust_version("nightly-2026-05-19") == (1, 97)
    assert toolchain_rust_version("stable") is None


def test_suggest_skips_follows_pyo3_abi3_requires_python_and_rust_version():
    abis = load_abis(REPO / "abi")
    base = {
        "backend": "maturin",
        "subdir": "",
        "manifest": "Cargo.toml",
        "manifest_rule": "",
        "module_name": "m",
        "import_names": ("m",),
    }
    old_pyo3 = SdistFacts(**base, pyo3="0.26.0")
    assert set(suggest_skips(old_pyo3, abis)) == {"2026_5"}
    assert suggest_skips(SdistFacts(**base, pyo3="0.26.0", abi3="abi3-py39"), abis) == {}
    narrow = suggest_skips(SdistFacts(**base, pyo3="0.30.1", requires_python=">=3.13"), abis)
    assert set(narrow) == {"2024_0"} and "excludes Python 3.12" in narrow["2024_0"]
    rust = suggest_skips(SdistFacts(**base, pyo3="0.30.1", rust_version="1.95"), abis)
    assert set(rust) == {"2024_0", "2025_0", "2026_0"}


def test_inspect_sdist_reads_abi3_from_maturin_features(sdists):
    facts = inspect_sdist(sdists[("pydantic_core", "2.50.4")])
    assert facts.abi3 is None and facts.pyo3 == "0.30.1"


def test_cargo_toml_in_toml_1_1_syntax_is_read():
    # Cargo accepts TOML 1.1 (pyrage 1.4.0's Cargo.toml spreads an inline table over lines);
    # tomllib reads TOML 1.0.
    text = (
        '[dependencies]\npyo3 = {\n  version = "0.24.2", # pinned\n  features = [\n    "abi3-py310",\n  ]\n}\n'
        'name = "a { b" # a brace in a string and a comment stay\n'
    )
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads(text)
    data = tomllib.loads(inline_tables_on_one_line(text))
    assert data["dependencies"]["pyo3"] == {"version": "0.24.2", "features": ["abi3-py310"]}
    assert data["dependencies"]["name"] == "a { b"


# -- layouts seen on PyPI, as small sdists made here ------------------------------------------------


def pyproject(name: str, maturin: str = "", requires_python: str = ">=3.9") -> str:
    return (
        f'[build-system]\nrequires = ["maturin>=1,<2"]\nbuild-backend = "maturin"\n\n'
        f'[project]\nname = "{name}"\nrequires-python = "{requires_python}"\n\n[tool.maturin]\n{maturin}'
    )


def cargo(name: str, deps: str = "", lib: str = '[lib]\ncrate-type = ["cdylib"]\n', extra: str = "") -> str:
    return f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n\n{lib}\n[dependencies]\n{deps}\n{extra}'


def lock(*packages: tuple[str, str, list[str]]) -> str:
    out = "version = 3\n"
    for name, version, deps in packages:
        out += f'\n[[package]]\nname = "{name}"\nversion = "{version}"\n'
        if deps:
            out += "dependencies = [" + ", ".join(f'"{d}"' for d in deps) + "]\n"
    return out


def pyo3_crate(name: str, pyo3: str, maturin: str = "", **files: str) -> dict[str, str]:
    return {
        "pyproject.toml": pyproject(name, maturin),
        "src/lib.rs": "",
        "Cargo.toml": cargo(name, f'pyo3 = {{ version = "{pyo3}", features = ["extension-module"] }}\n'),
        "Cargo.lock": lock((name, "0.1.0", ["pyo3"]), ("pyo3", pyo3, [])),
        **files,
    }


PROGRAMS_AND_FOREIGN_BINDINGS = {
    # ruff, uv, py-spy, lintrunner: a program wrapped in a wheel.
    "bin": (
        {
            "pyproject.toml": pyproject("tool", 'bindings = "bin"\n'),
            "src/main.rs": "fn main() {}\n",
            "Cargo.toml": cargo("tool", 'clap = "4"\n', lib=""),
        },
        "'bin' bindings here (tool.maturin.bindings): the wheel ships a program",
    ),
    # The same without the key: maturin finds a program target and no library.
    "bin, found": (
        {
            "pyproject.toml": pyproject("tool"),
            "src/main.rs": "fn main() {}\n",
            "Cargo.toml": cargo("tool", 'clap = "4"\n', lib=""),
        },
        "'bin' bindings here (no library for Python, a program target)",
    ),
    "cffi": (
        {"pyproject.toml": pyproject("clib"), "src/lib.rs": "", "Cargo.toml": cargo("clib", 'libc = "0.2"\n')},
        "'cffi' bindings here (a cdylib without PyO3, cpython or uniffi among its dependencies): a cffi library",
    ),
    "uniffi": (
        {
            "pyproject.toml": pyproject("ulib"),
            "src/lib.rs": "",
            "Cargo.toml": cargo("ulib", 'uniffi = "0.28"\n'),
            "Cargo.lock": lock(("ulib", "0.1.0", ["uniffi"]), ("uniffi", "0.28.0", [])),
        },
        "'uniffi' bindings here (the crate depends on uniffi): a uniffi library",
    ),
}


@pytest.mark.parametrize("kind", sorted(PROGRAMS_AND_FOREIGN_BINDINGS))
def test_new_refuses_programs_and_bindings_other_than_pyo3(root, pypi, tmp_path, kind, monkeypatch, capsys):
    files, message = PROGRAMS_AND_FOREIGN_BINDINGS[kind]
    name = {"bin": "tool", "bin, found": "tool", "cffi": "clib", "uniffi": "ulib"}[kind]
    pypi.add(name, "1.0", make_sdist(tmp_path / "sdists", name, "1.0", files))
    monkeypatch.setenv("WASMWHEEL_PYPI_URL", pypi.url)
    assert main(["--root", str(root), "new", name]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {name} 1.0 ({name}-1.0.tar.gz): maturin builds ")
    assert message in err
    assert list((root / "recipes").iterdir()) == []


def test_new_finds_pyo3_through_a_workspace_crate_and_reads_its_locked_version(root, pypi, tmp_path):
    # polars-runtime-32's layout: the crate maturin builds has no pyo3 dependency of its own; a
    # workspace crate it uses has. Another member locks a newer PyO3 that this build never uses.
    files = {
        "pyproject.toml": pyproject(
            "ws-demo", 'manifest-path = "py/Cargo.toml"\nmodule-name = "ws_demo._native"\npython-source = "python"\n'
        ),
        "python/ws_demo/__init__.py": "",
        "Cargo.toml": '[workspace]\nmembers = ["py", "bindings", "tools"]\n',
        "py/Cargo.toml": cargo("ws-demo-py", 'bindings = { path = "../bindings" }\n'),
        "py/src/lib.rs": "",
        "bindings/Cargo.toml": cargo("bindings", 'pyo3 = "0.22.6"\n', lib=""),
        "bindings/src/lib.rs": "",
        "tools/Cargo.toml": cargo("tools", 'pyo3 = "0.30.1"\n', lib=""),
        "tools/src/lib.rs": "",
        "Cargo.lock": lock(
            ("ws-demo-py", "0.1.0", ["bindings"]),
            ("bindings", "0.1.0", ["pyo3 0.22.6"]),
            ("tools", "0.1.0", ["pyo3 0.30.1"]),
            ("pyo3", "0.22.6", []),
            ("pyo3", "0.30.1", []),
        ),
    }
    pypi.add("ws-demo", "1.0", make_sdist(tmp_path / "sdists", "ws-demo", "1.0", files))
    path, facts = scaffold(root, pypi, "ws-demo")
    assert (facts.bindings, facts.bindings_rule) == ("pyo3", "the crate depends on pyo3")
    assert facts.pyo3 == "0.22.6" and facts.manifest == "py/Cargo.toml"
    recipe = load(root, path)
    assert recipe.import_names == ("ws_demo",)
    # PyO3 0.22 stops at CPython 3.13 and refuses newer ones.
    assert set(recipe.build.skip_abis) == {"2026_0", "2026_5"}
    assert recipe.build.skip_abis["2026_0"] == "PyO3 0.22.6 supports CPython up to 3.13; its build script refuses 3.14"


def test_new_leaves_out_the_pythons_an_old_pyo3_predates(root, pypi, tmp_path):
    # y-py 0.6.2 and pydantic-core 2.10.0: PyO3 0.19, which checks no upper Python limit.
    pypi.add("old-pyo3", "1.0", make_sdist(tmp_path / "sdists", "old-pyo3", "1.0", pyo3_crate("old-pyo3", "0.19.2")))
    path, facts = scaffold(root, pypi, "old-pyo3")
    assert "pyo3 0.19.2 (Cargo.lock): CPython up to 3.12" in facts.summary()
    skips = load(root, path).build.skip_abis
    assert set(skips) == {"2025_0", "2026_0", "2026_5"}
    assert (
        skips["2025_0"]
        == "PyO3 0.19.2 supports CPython up to 3.12; it predates 3.13 (PyO3 before 0.20 checks no upper limit)"
    )


def test_pyo3_limits_for_releases_before_the_table_and_the_experimental_next_python():
    abis = load_abis(REPO / "abi")
    base = {
        "backend": "maturin",
        "subdir": "",
        "manifest": "Cargo.toml",
        "manifest_rule": "",
        "module_name": "m",
        "import_names": ("m",),
    }
    assert set(suggest_skips(SdistFacts(**base, pyo3="0.14.5"), abis)) == set(abis)  # older than any 3.12 support
    experimental = suggest_skips(SdistFacts(**base, pyo3="0.28.2"), abis)
    assert experimental == {
        "2026_5": "PyO3 0.28.2 supports CPython up to 3.14; 3.15 only experimentally "
        "(PyO3 warns not to distribute such builds)"
    }
    assert suggest_skips(SdistFacts(**base, pyo3="0.31.0"), abis) == {}  # newer than wasmwheel knows: no guess
    # A crate built on pyo3-ffi alone (orjson) is named beside the version; the reason always says "PyO3",
    # which the collection's checks look for.
    ffi = suggest_skips(SdistFacts(**base, pyo3="0.28.2", pyo3_crate="pyo3-ffi"), abis)
    assert ffi["2026_5"].startswith("PyO3 0.28.2 (pyo3-ffi) supports CPython up to 3.14; ")


def test_new_notes_a_toolchain_the_sdist_pins(root, pypi, tmp_path):
    pinned = pyo3_crate("pinned", "0.30.1", **{"rust-toolchain.toml": '[toolchain]\nchannel = "nightly-2026-09-01"\n'})
    pypi.add("pinned", "1.0", make_sdist(tmp_path / "sdists", "pinned", "1.0", pinned))
    path, facts = scaffold(root, pypi, "pinned")
    note = "rust-toolchain.toml pins Rust nightly-2026-09-01; wasmwheel builds with each ABI's own toolchain instead"
    assert any(n.startswith(note) for n in facts.notes) and note in path.read_text()
    stable = pyo3_crate("stable-pin", "0.30.1", **{"rust-toolchain": "stable\n"})
    pypi.add("stable-pin", "1.0", make_sdist(tmp_path / "sdists", "stable-pin", "1.0", stable))
    assert scaffold(root, pypi, "stable-pin")[1].notes == ()


def test_new_and_bump_say_when_a_release_is_yanked(root, pypi, tmp_path):
    sdists_dir = tmp_path / "sdists"
    pypi.add("yank-demo", "1.0", make_sdist(sdists_dir, "yank-demo", "1.0", pyo3_crate("yank-demo", "0.30.1")))
    pypi.add(
        "yank-demo",
        "1.1",
        make_sdist(sdists_dir, "yank-demo", "1.1", pyo3_crate("yank-demo", "0.30.1")),
        yanked_reason="corrupted wheel got uploaded",
    )
    path, facts = scaffold(root, pypi, "yank-demo")  # latest: PyPI's latest is never a yanked release
    assert load(root, path).version == "1.0" and not any("yanked" in n for n in facts.notes)
    warning = (
        "warning: yank-demo 1.1 is yanked on PyPI (corrupted wheel got uploaded); pick another version "
        "unless you need this one (latest: 1.0)"
    )
    result = bump(root, pypi, "yank-demo", "1.1")
    assert result.changes[0] == warning and f"#   {warning}" in path.read_text()
    path, facts = scaffold(root, pypi, "yank-demo", "1.1", force=True)
    assert warning in facts.notes and f"#   {warning}" in path.read_text()


def test_bump_refreshes_the_facts_and_says_which_reasons_went_stale(root, pypi, tmp_path):
    sdists_dir = tmp_path / "sdists"
    pypi.add("moving", "1.0", make_sdist(sdists_dir, "moving", "1.0", pyo3_crate("moving", "0.19.2")))
    pypi.add("moving", "2.0", make_sdist(sdists_dir, "moving", "2.0", pyo3_crate("moving", "0.30.1")))
    path, _ = scaffold(root, pypi, "moving", "1.0")
    text = path.read_text().replace('2026_0 = "PyO3 0.19.2', '2026_0 = "moving 1.0 (not 1.0.5): PyO3 0.19.2')
    path.write_text(text)
    result = bump(root, pypi, "moving")
    after = path.read_text()
    header = after[: after.index("[package]")]
    assert "#   pyo3 0.30.1 (Cargo.lock): CPython up to 3.15" in header and "0.19.2" not in header
    assert header.startswith("# moving 2.0: maturin sdist from PyPI")
    assert "PyO3: 0.19.2 -> 0.30.1" in result.changes
    for abi in ("2025_0", "2026_0", "2026_5"):  # left out for PyO3 0.19, which the new sdist no longer has
        assert any(
            c.startswith(f"ABI {abi} is left out, but what ruled it out in 1.0 (PyO3 0.19.2")
            and c.endswith(f"check whether [build] skip_abis.{abi} still applies")
            for c in result.changes
        )
    assert [c for c in result.changes if "still mention" in c] == [
        "the reason of [build] skip_abis.2026_0 still mentions 1.0: 'moving 1.0 (not 1.0.5): PyO3 0.19.2 supports "
        "CPython up to 3.12; it predates 3.14 (PyO3 before 0.20 checks no upper limit)'"
    ]
    assert load(root, path).build.skip_abis  # bump never edits the skips: the maintainer decides
