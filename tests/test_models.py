"""ABI files and recipes: what the repository ships loads, and mistakes give one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wasmwheel.model.abi import load_abi, load_abis
from wasmwheel.model.errors import ConfigError
from wasmwheel.model.recipe import load_recipe, load_recipes

REPO = Path(__file__).resolve().parents[1]
ABIS = ["2024_0", "2025_0", "2026_0", "2026_5"]


def test_shipped_abi_files_hold_the_abi_facts():
    abis = load_abis(REPO / "abi")
    assert list(abis) == ABIS
    a = abis["2024_0"]
    assert (a.python_minor, a.emscripten, a.platform_tag, a.exception_handling) == (
        "3.12",
        "3.1.58",
        "pyodide_2024_0_wasm32",
        "js",
    )
    assert a.legacy_tags == ("emscripten_3_1_58_wasm32",)
    b = abis["2025_0"]
    assert (b.python, b.emscripten, b.rust_toolchain) == ("3.13.2", "4.0.9", "nightly-2025-02-01")
    assert b.platform_tag == "pyemscripten_2025_0_wasm32" and "pyodide_2025_0_wasm32" in b.legacy_tags
    assert b.rustflags == (
        "-C",
        "link-arg=-sSIDE_MODULE=2",
        "-Z",
        "link-native-libraries=yes",
        "-Z",
        "emscripten-wasm-eh",
    )
    # std built from the nightly's rust-src with wasm EH, as in Pyodide's sysroot archive; the crates agree.
    assert (b.std, b.std_rustflags, b.sysroot) == ("source", ("-Z", "emscripten-wasm-eh"), None)
    assert a.std == "source" and a.std_rustflags == () and "crate-attr=feature(ptr_fn_addr_eq)" in a.rustflags
    # The lean toolchain's wasm-opt features follow each ABI's exception handling.
    assert "--enable-exception-handling" not in a.lean.wasm_opt_flags
    assert all("--enable-exception-handling" in abi.lean.wasm_opt_flags for abi in (b, *[abis[n] for n in ABIS[2:]]))
    assert {abi.lean.binaryen for abi in abis.values()} == {"132.0.0"}
    c = abis["2026_0"]
    assert (c.python, c.emscripten, c.rust_toolchain, c.pyodide_version) == ("3.14.2", "5.0.3", "1.93.0", "314.0.7")
    assert c.rustflags == ("-C", "link-arg=-sSIDE_MODULE=2") and c.sysroot is None
    assert c.maturin_tag_env() == {"MATURIN_PYEMSCRIPTEN_PLATFORM_VERSION": "2026_0"}
    assert a.maturin_tag_env() == {"MATURIN_PYODIDE_ABI_VERSION": "2024_0"}
    d = abis["2026_5"]
    assert (d.python_minor, d.rust_toolchain, d.rustflags, d.status) == ("3.15", "1.97.1", (), "development")
    # Pyodide's patches to each Emscripten, pinned (see tests/test_emsdk_patches.py for every ABI's list).
    assert (
        b.emsdk.pyodide_tag == "0.29.4"
        and b.emsdk.patches[1].name == "0002-Don-t-check-exports-for-being-valid-C-C-identifiers-.patch"
    )
    assert b.emsdk.patches[1].sha256 == "3cfc92700778eff9a39a9638f034a7cf4cf41092ef8cf6bb76475eb7c5887c50"
    assert b.emsdk_config()["patches"][1] == [b.emsdk.patches[1].name, b.emsdk.patches[1].sha256]


def test_every_shipped_runtime_has_a_committed_lock():
    for abi in load_abis(REPO / "abi").values():
        lock = REPO / "abi" / "runtimes" / abi.pyodide_version / "package-lock.json"
        assert f'"version": "{abi.pyodide_version}"' in lock.read_text()


def test_the_example_recipe_loads():
    recipe = load_recipe(REPO / "recipes" / "hello-pyo3.toml", ABIS, REPO)
    assert recipe.name == "hello-pyo3" and recipe.import_names == ("hello_pyo3",)
    assert recipe.source.kind == "path" and recipe.source.path == REPO / "examples" / "hello-pyo3"
    assert recipe.abis(ABIS) == ABIS
    assert "Counter()" in recipe.test.script


def _abi_text(**changes: str) -> str:
    text = (REPO / "abi" / "2026_0.toml").read_text()
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize(
    "old,new,message",
    [
        ('python = "3.14.2"', "python = 3.14", "python: expected a Python version"),
        ('emscripten = "5.0.3"', 'emscripten = "5.0"', "emscripten: not an X.Y.Z version"),
        ('toolchain = "1.93.0"', 'toolchain = "stable"', "rust.toolchain: not a rustup toolchain name"),
        (
            'platform_tag = "pyemscripten_2026_0_wasm32"',
            'platform_tag = "pyemscripten_2025_0_wasm32"',
            "is for ABI 2025_0, but this file is ABI 2026_0",
        ),
        (
            'rustflags = ["-C", "link-arg=-sSIDE_MODULE=2"]',
            'rustflags = ["-C link-arg=-sSIDE_MODULE=2"]',
            "rust.rustflags[0]: contains whitespace",
        ),
        (
            'rustflags = ["-C", "link-arg=-sSIDE_MODULE=2"]',
            'rustflags = ["-Z", "emscripten-wasm-eh"]',
            "-Z flags need a nightly toolchain",
        ),
        (
            'exception_handling = "wasm"',
            'exception_handling = "wasm"\nexception_handlng = "js"',
            "exception_handlng: unknown key (did you mean `exception_handling`?)",
        ),
        ("[pyodide]\n", '[pyodide]\nversion = "1"\n', "TOML syntax error"),
        ('std = "source"', 'std = "prebuilt"', 'rust.std: not a way to get std; expected "source"'),
        ('std = "source"', 'std = "sysroot"', 'rust.std: std = "sysroot" needs a [rust.sysroot] table'),
        (
            'std = "source"',
            'std = "rustup"\nstd_rustflags = ["-Zemscripten-wasm-eh"]',
            'rust.std_rustflags: only std = "source" builds std',
        ),
        (
            'std = "source"',
            'std = "source"\nstd_rustflags = ["-Cpanic=abort"]',
            "rust.std_rustflags: -Cpanic=abort would build std differently from the crates",
        ),
        (
            'std = "source"',
            'std = "source"\n[rust.sysroot]\nurl = "https://example.org/s.tar.bz2"\n',
            'rust.sysroot: [rust.sysroot] is only used with std = "sysroot", and std = "source"',
        ),
        (
            'binaryen = "132.0.0"',
            'binaryen = "latest"',
            "lean.binaryen: not an npm version; expected an npm version of binaryen",
        ),
        ('"--post-emscripten", ', '"--post-emscripten", "-O3", ', "the optimisation level comes from the link line"),
        (
            '"--post-emscripten", ',
            '"--post-emscripten", "--all-features", ',
            "lean.wasm_opt_flags[2]: enables features",
        ),
        # [emsdk]: Pyodide's patches to Emscripten
        (
            'pyodide_tag = "314.0.5"',
            'pyodide_tag = "314.0.4"',
            "emsdk.patches[0].url: is Pyodide 314.0.5's patch, but pyodide_tag = '314.0.4' (use https://raw."
            "githubusercontent.com/pyodide/pyodide/314.0.4/emsdk/patches/<name>)",
        ),
        ('pyodide_tag = "314.0.5"\n', "", "emsdk.pyodide_tag: missing; expected the Pyodide release tag"),
        ('sha256 = "4e96b6', 'sha256 = "4E96B6', "emsdk.patches[3].sha256: not a sha256"),
        (
            'Append-pic-directory-when-SIDE_MODULE.patch"',
            'Append-pic-directory-when-SIDE_MODULE.diff"',
            "emsdk.patches[3].url: does not name a .patch file",
        ),
        (
            '0002-Fix-promise-order.patch"',
            '0001-Add-useful-error-when-symbol-resolution-fails.patch"',
            "emsdk.patches[1].url: names 0001-Add-useful-error-when-symbol-resolution-fails.patch a second time",
        ),
        (
            '[[emsdk.patches]]\nurl = "https://raw.githubusercontent.com/pyodide/pyodide/314.0.5/emsdk/patches/0002',
            '[[emsdk.patches]]\nsha = ""\nurl = "https://raw.githubusercontent.com/pyodide/pyodide/314.0.5/emsdk/patches/0002',
            "emsdk.patches[1].sha: unknown key (did you mean `sha256`?)",
        ),
        (
            'pyodide_tag = "314.0.5"',
            'pyodide_tag = "314.0.5"\npyodide_version = "314.0.5"',
            "emsdk.pyodide_version: unknown key",
        ),
    ],
)
def test_abi_mistakes_name_file_key_and_fix(tmp_path, old, new, message):
    path = tmp_path / "2026_0.toml"
    path.write_text(_abi_text(**{old: new}))
    with pytest.raises(ConfigError) as err:
        load_abi(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def _recipe(tmp_path: Path, body: str, name: str = "demo") -> Path:
    (tmp_path / "recipes").mkdir(exist_ok=True)
    (tmp_path / "crate").mkdir(exist_ok=True)
    path = tmp_path / "recipes" / f"{name}.toml"
    path.write_text(body)
    return path


GOOD = """
[package]
name = "demo"
version = "1.0"

[source]
path = "../crate"
"""


@pytest.mark.parametrize(
    "body,message",
    [
        (GOOD.replace('version = "1.0"', 'version = "one"'), "package.version: not a PEP 440 version"),
        (GOOD.replace('name = "demo"', 'name = "other"'), "does not match the file name 'demo.toml'"),
        (GOOD + 'url = "https://x.invalid/demo-1.0.tar.gz"\n', "source: gives several sources: url, path"),
        (GOOD.replace('path = "../crate"', 'path = "../../outside"'), "points outside the repository"),
        (GOOD.replace('path = "../crate"', 'path = "/etc"'), "source.path: is absolute"),
        (
            GOOD.replace('path = "../crate"', 'url = "https://x.invalid/demo-1.0.tar.gz"\nsha256 = "abc"'),
            "source.sha256: not a sha256",
        ),
        (
            GOOD.replace('path = "../crate"', 'git = "--upload-pack=evil"\ncommit = "' + "a" * 40 + '"'),
            "source.git: starts with '-'",
        ),
        (GOOD + '[build]\nskip_abis = { "2023_0" = "old" }\n', "build.skip_abis.2023_0: unknown ABI '2023_0'"),
        (GOOD + '[build]\nskip_abis = { "2024_0" = " " }\n', "build.skip_abis.2024_0: empty reason"),
        (
            GOOD + '[build]\nenv = { RUSTFLAGS = "-C x" }\n',
            "RUSTFLAGS cannot be set by a recipe: use [build] rustflags",
        ),
        (GOOD + '[build]\nmaturin_args = ["--target", "x"]\n', "--target is set by wasmwheel from the ABI"),
        (GOOD + '[build]\nfeatures = "a"\n', "build.features: expected a list of cargo feature names, got a string"),
        (GOOD + '[test]\nscript = "import (\\n"\n', "test.script: Python syntax error on line 1"),
        (GOOD + '[test]\nrequirements = ["not a req!"]\n', "test.requirements[0]: not a PEP 508 requirement"),
        (GOOD + '[tset]\nscript = "x"\n', "tset: unknown key (did you mean `test`?)"),
        (
            GOOD.replace("[source]", "[source]\npatches = ['missing.patch']"),
            "source.patches[0]: 'missing.patch' does not exist",
        ),
        # The fix fits the mistake: an upper-case digest, an ABI that does not exist, a number for a string.
        (
            GOOD.replace(
                'path = "../crate"', 'url = "https://x.invalid/demo-1.0.tar.gz"\nsha256 = "' + "AB" * 32 + '"'
            ),
            "(write it in lower case)",
        ),
        (
            GOOD + '[build]\nskip_abis = { "2026_1" = "later" }\n',
            "unknown ABI '2026_1' (known: 2024_0, 2025_0, 2026_0, 2026_5) (name an ABI that has a file in abi/)",
        ),
        (
            GOOD.replace('version = "1.0"', "version = 2"),
            'got an integer 2 (write it as a string, in quotes: version = "2")',
        ),
        # A URL whose file name names another version than the recipe (a hand bump that missed the URL).
        (
            GOOD.replace('version = "1.0"', 'version = "1.1"').replace(
                'path = "../crate"', 'url = "https://x.invalid/demo-1.0.tar.gz"\nsha256 = "' + "ab" * 32 + '"'
            ),
            "source.url: names version 1.0 of the sdist (demo-1.0.tar.gz), but package.version is 1.1",
        ),
    ],
)
def test_recipe_mistakes_name_file_key_and_fix(tmp_path, body, message):
    path = _recipe(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_recipe(path, ABIS, tmp_path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "url, version",
    [
        ("https://x.invalid/demo-1.0.tar.gz", "1.0.0"),  # the same version, spelled otherwise
        ("https://x.invalid/demo-v1.0.tar.gz", "1.0"),
        ("https://x.invalid/archive/main.zip", "1.0"),  # no version in the name: nothing to compare
        ("https://x.invalid/Demo_Pkg-2.0rc1.tgz", "2.0rc1"),
    ],
)
def test_a_url_matching_the_version_or_naming_none_loads(tmp_path, url, version):
    body = GOOD.replace('version = "1.0"', f'version = "{version}"').replace(
        'path = "../crate"', f'url = "{url}"\nsha256 = "' + "ab" * 32 + '"'
    )
    assert load_recipe(_recipe(tmp_path, body), ABIS, tmp_path).source.url == url


@pytest.mark.parametrize(
    "args", [["--locked", "--offline"], ["--features", "a b"], ["--config=x y"], ["-Z", "build-std"]]
)
def test_maturin_arguments_one_per_item_load(tmp_path, args):
    body = GOOD + "[build]\nmaturin_args = [" + ", ".join(f'"{a}"' for a in args) + "]\n"
    assert load_recipe(_recipe(tmp_path, body), ABIS, tmp_path).build.maturin_args == tuple(args)


def test_one_bad_recipe_does_not_hide_the_others(tmp_path):
    _recipe(tmp_path, GOOD)
    _recipe(tmp_path, GOOD.replace("demo", "broken").replace('version = "1.0"', "version = 1"), "broken")
    loaded = load_recipes(tmp_path / "recipes", ABIS, tmp_path)
    assert list(loaded.recipes) == ["demo"]
    assert "package.version: expected" in str(loaded.errors["broken"])


@pytest.mark.slow  # starts wasmwheel in a subprocess
def test_check_command_reports_problems_in_one_line_each(tmp_path):
    import shutil

    shutil.copytree(REPO / "abi", tmp_path / "abi")
    shutil.copy2(REPO / "dodo.py", tmp_path / "dodo.py")
    _recipe(tmp_path, GOOD)
    _recipe(tmp_path, GOOD.replace("demo", "broken").replace("[source]", "[sauce]"), "broken")
    proc = subprocess.run(
        [sys.executable, "-m", "wasmwheel", "--root", str(tmp_path), "check"], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path}/recipes/broken.toml: source: missing; "
        "expected a table (found `sauce`: did you mean `source`?)"
    ]
    assert "4 ABIs, 1 recipe, 1 problem\n" in proc.stdout
