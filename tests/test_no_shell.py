"""Commands never go through a shell: recipe values holding `;`, `$()`, backticks, quotes, globs and
newlines reach maturin (and patch, and git) through the real pipeline as literal arguments and
environment values, recorded by the maturin stand-in and found in the wheel it built."""

from __future__ import annotations

import json
import shlex
import zipfile
from pathlib import Path

from reliability import git_source_recipe, keep_abis
from wasmwheel.build import RUSTFLAGS_VAR

# Each would create a file named PWNED (or expand to something else) if a shell ever saw it.
MATURIN_ARGS = [
    "--compatibility",
    "x; touch PWNED",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a\nb; touch PWNED",
    "'single' \"double\"",
    "*",
    "~",
    "$HOME",
    "|| touch PWNED &",
    "--locked",
]
ENV = {
    "RECIPE_SEMI": "a; touch PWNED",
    "RECIPE_SUBST": "$(touch PWNED)",
    "RECIPE_TICKS": "`touch PWNED`",
    "RECIPE_LINES": "line one\nline two; touch PWNED",
    "RECIPE_GLOB": "* ~ $HOME ${IFS}",
}
# No whitespace (cargo splits the variable at whitespace), but every other shell character.
RUSTFLAGS = [
    "-Cmetadata=;touch${IFS}PWNED",
    "-Cmetadata=$(touch${IFS}PWNED)",
    "-Cmetadata=`touch${IFS}PWNED`",
    "-Cmetadata='\"*?[a]|&>",
]
FEATURES = ["fast", "serde/std"]
PATCH = "fix;$(touch PWNED)`id`.patch"


def _pwned(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if "PWNED" in p.name and p.name != PATCH]


def test_recipe_values_reach_maturin_literally(project):
    keep_abis(project, ("2026_0",))
    (project.root / "recipes" / PATCH).write_text(
        "--- a/PATCHED\n+++ b/PATCHED\n@@ -0,0 +1 @@\n+the patch was applied\n"
    )

    def change(doc):
        doc["source"]["patches"] = [PATCH]
        doc["build"].update({"maturin_args": MATURIN_ARGS, "env": ENV, "rustflags": RUSTFLAGS, "features": FEATURES})

    project.edit_toml("recipes/hello-pyo3.toml", change)
    project.doit("build:hello-pyo3")

    (call,) = project.records("maturin")
    abi = project.abi("2026_0")
    out = call["argv"][call["argv"].index("--out") + 1]
    assert call["argv"] == [
        "build",
        "--release",
        "--target",
        "wasm32-unknown-emscripten",
        "-i",
        abi.interpreter,
        "--out",
        out,
        "--features",
        "fast,serde/std",
        *MATURIN_ARGS,
    ]
    for key, value in ENV.items():
        assert call["env"][key] == value
    assert call["env"][RUSTFLAGS_VAR] == " ".join([*abi.rustflags, *RUSTFLAGS])
    assert (project.layout.src_dir("hello-pyo3") / "PATCHED").read_text() == "the patch was applied\n"
    assert _pwned(project.root.parent) == []
    # The values shaped the build: the stand-in wrote them into the wheel it made.
    (wheel,) = project.dist("2026_0")
    with zipfile.ZipFile(wheel) as zf:
        built = json.loads(zf.read("hello_pyo3-0.1.0.dist-info/standin-build.json"))
    assert built["argv"][-len(MATURIN_ARGS) :] == MATURIN_ARGS and built["env"] == ENV
    assert built["rustflags"] == " ".join([*abi.rustflags, *RUSTFLAGS])
    # The log shows each value quoted as a shell would need it, so it can be pasted.
    log = project.layout.log("compile", "2026_0", "hello-pyo3").read_text()
    assert shlex.join(MATURIN_ARGS) in log
    assert f"export RECIPE_SUBST={shlex.quote(ENV['RECIPE_SUBST'])}" in log


def test_a_git_source_url_full_of_shell_characters_reaches_git_literally(project, tmp_path):
    work = tmp_path / "repo;touch${IFS}PWNED$(touch${IFS}PWNED)`touch${IFS}PWNED`"
    work.mkdir()
    (work / "pyproject.toml").write_text("[project]\nname = 'shelly'\n")
    git_source_recipe(project, "shelly", work)
    project.doit("source:shelly")
    assert (project.layout.src_dir("shelly") / "pyproject.toml").exists()
    assert list(tmp_path.rglob("PWNED*")) == []


def test_rustflags_with_whitespace_are_refused_saying_cargo_would_split_them(tmp_path):
    from wasmwheel.model.errors import ConfigError
    from wasmwheel.model.recipe import load_recipe

    (tmp_path / "recipes").mkdir()
    (tmp_path / "crate").mkdir()
    path = tmp_path / "recipes" / "demo.toml"
    path.write_text(
        '[package]\nname = "demo"\nversion = "1"\n[source]\npath = "../crate"\n'
        '[build]\nrustflags = ["-C", "link-arg=-Wl,--foo bar"]\n'
    )
    try:
        load_recipe(path, ["2026_0"], tmp_path)
    except ConfigError as exc:
        assert str(exc) == (
            f"{path}: build.rustflags[1]: contains whitespace, and cargo splits "
            "CARGO_TARGET_WASM32_UNKNOWN_EMSCRIPTEN_RUSTFLAGS at whitespace, so this one item would reach rustc as "
            'several flags; got \'link-arg=-Wl,--foo bar\' (one flag per item, e.g. ["-C", "opt-level=s"])'
        )
    else:
        raise AssertionError("a rustflag with a space was accepted")
