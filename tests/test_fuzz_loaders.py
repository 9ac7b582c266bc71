"""Fuzzing the recipe and ABI loaders with hypothesis: whatever the file holds, the only exception that
may escape is ConfigError, its message is one line naming the file, and what does load keeps the
promises the rest of wasmwheel relies on (names, paths inside the repository, one flag per rustflag)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import tomlkit
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from wasmwheel.model.abi import load_abi
from wasmwheel.model.errors import ConfigError
from wasmwheel.model.recipe import RESERVED_ENV, RESERVED_MATURIN_ARGS, load_recipe
from wasmwheel.model.schema import NAME_RE

REPO = Path(__file__).resolve().parents[1]
ABIS = ("2024_0", "2025_0", "2026_0", "2026_5")
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Strings that probe the checks: shell metacharacters, paths that escape, control characters, odd shapes.
NASTY = [
    "",
    " ",
    "\n",
    "\x00",
    "\t-C",
    "..",
    "../..",
    "../../..",
    "/etc",
    "C:\\x",
    "~",
    "$HOME",
    "$(id)",
    "`id`",
    "a;b",
    "a|b",
    "a&&b",
    "-",
    "--out",
    "-o/tmp",
    "--target-dir=/tmp",
    "-vo/x",
    "2026_0",
    "2023_0",
    "nightly-2025-02-01",
    "1.93.0",
    "3.14.2",
    "314.0.7",
    "0" * 64,
    "a" * 40,
    "https://example.invalid/x-1.0.tar.gz",
    "file:///etc",
    "ssh://-oProxyCommand=x/y",
    "../examples/hello-pyo3",
    "x.patch",
    "a/" * 3000,
    "é",
    "\ud7ff",
    "RUSTFLAGS",
]
strings = st.one_of(st.sampled_from(NASTY), st.text(max_size=30))
scalars = st.one_of(
    strings,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4), max_leaves=12
)

RECIPE = {
    "package": {"name": "demo", "version": "1.0", "import_names": ["demo"]},
    "source": {"path": "../examples/hello-pyo3", "subdir": "", "patches": ["fix.patch"]},
    "build": {
        "maturin_args": ["--locked"],
        "features": ["simd"],
        "rustflags": ["-C", "opt-level=s"],
        "env": {"RECIPE_X": "1"},
        "skip_abis": {"2024_0": "too old"},
    },
    "test": {"script": "import demo\n", "requirements": ["attrs>=22"]},
}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "repo"
    shutil.copytree(
        REPO / "examples" / "hello-pyo3", root / "examples" / "hello-pyo3", ignore=shutil.ignore_patterns("target")
    )
    (root / "recipes").mkdir()
    (root / "recipes" / "fix.patch").write_text("")
    (root / "abi").mkdir()
    return root


def _mutations(base: dict) -> st.SearchStrategy[dict]:
    """``base`` with some keys replaced, removed or added (at the top level and one table down)."""
    paths = [(t,) for t in base] + [(t, k) for t, table in base.items() for k in table]

    @st.composite
    def mutate(draw) -> dict:
        doc = {t: dict(v) if isinstance(v, dict) else v for t, v in base.items()}
        for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            path = draw(st.sampled_from(paths))
            container = doc if len(path) == 1 else doc.get(path[0])
            if not isinstance(container, dict):
                continue
            if action == "delete":
                container.pop(path[-1], None)
            elif action == "replace":
                container[path[-1]] = draw(values)
            else:
                container[draw(strings)] = draw(values)
        return doc

    return mutate()


def _dump(doc: dict) -> str:
    try:
        return tomlkit.dumps(doc)
    except Exception:  # values tomlkit cannot write (a date in a key, ...): not a file anyone can have
        assume(False)
        raise


def _check_recipe(path: Path, root: Path, text: str) -> None:
    try:
        recipe = load_recipe(path, ABIS, root, text=text)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message
        assert message.startswith(f"{path}: ")
        return
    # What loads keeps the promises the pipeline relies on.
    assert NAME_RE.match(recipe.package_name)
    assert recipe.source.kind in ("url", "git", "path")
    for p in [recipe.source.path, *recipe.source.patches]:
        if p is not None:
            p.relative_to(root.resolve())
    assert ".." not in Path(recipe.source.subdir).parts and not recipe.source.subdir.startswith("/")
    assert all(f and not re.search(r"\s", f) for f in recipe.build.rustflags)
    assert all(re.match(r"^[A-Za-z0-9_][A-Za-z0-9_./+-]*$", f) for f in recipe.build.features)
    assert all(re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k) and k not in RESERVED_ENV for k in recipe.build.env)
    assert all(a.split("=", 1)[0] not in RESERVED_MATURIN_ARGS for a in recipe.build.maturin_args)
    assert set(recipe.build.skip_abis) <= set(ABIS)
    compile(recipe.test.script, "<script>", "exec")


# Pieces of TOML, so that random text is often nearly valid, sometimes absurdly nested.
FRAGMENTS = st.one_of(
    st.sampled_from(
        [
            "[package]\n",
            "[source]\n",
            "[build]\n",
            "[test]\n",
            "[[package]]\n",
            'name = "demo"\n',
            'version = "1"\n',
            'path = "../examples/hello-pyo3"\n',
            "x = ",
            '"',
            "'",
            "[",
            "]",
            "{",
            "}",
            "=",
            ",",
            ".",
            "\n",
            '"""',
            "\\",
            "\\u0000",
            "#",
        ]
    ),
    st.integers(1, 5000).map(lambda n: "x = " + "[" * n + "]" * n + "\n"),
    st.integers(1, 5000).map(lambda n: "x = " + "{a = " * n + "1" + "}" * n + "\n"),
    st.integers(1, 30000).map(lambda n: '[test]\nscript = "' + "(" * n + "-" * n + "1" + ")" * n + '"\n'),
    st.text(max_size=20),
)
recipe_texts = st.one_of(st.text(max_size=400), st.lists(FRAGMENTS, max_size=25).map("".join))


@FUZZ
@given(text=recipe_texts)
def test_any_text_as_a_recipe(root, text):
    _check_recipe(root / "recipes" / "demo.toml", root, text)


def _grid(base: dict):
    """``base`` with each key in turn replaced by each nasty value, and each nasty key added to each table."""
    for table, content in base.items():
        for key in content:
            for value in NASTY + [[v] for v in NASTY] + [{v: v} for v in NASTY[:12]]:
                yield {**base, table: {**content, key: value}}
        for key in NASTY:
            yield {**base, table: {**content, key: "x"}}
    for key in NASTY:
        yield {**base, key: {"x": 1}}


@pytest.mark.slow  # a fuzzing run of hundreds of examples
def test_every_nasty_value_in_every_recipe_key(root):
    path = root / "recipes" / "demo.toml"
    for doc in _grid(RECIPE):
        _check_recipe(path, root, tomlkit.dumps(doc))


@pytest.mark.slow  # a fuzzing run of hundreds of examples
@FUZZ
@given(doc=_mutations(RECIPE))
def test_mutated_recipes(root, doc):
    _check_recipe(root / "recipes" / "demo.toml", root, _dump(doc))


GOOD_RECIPE_TEXT = tomlkit.dumps(RECIPE)


@FUZZ
@given(data=st.data())
def test_byte_damaged_recipes(root, data):
    raw = bytearray(GOOD_RECIPE_TEXT.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = data.draw(st.sampled_from([*b"\"[]{}=.,\n\\#'\x00\xff", data.draw(st.integers(0, 255))]))
        if op == "insert":
            raw.insert(at, byte)
        elif at < len(raw):
            if op == "delete":
                del raw[at]
            else:
                raw[at] = byte
    path = root / "recipes" / "demo.toml"
    path.write_bytes(bytes(raw))
    _check_recipe(path, root, None)  # type: ignore[arg-type]


ABI = tomlkit.parse((REPO / "abi" / "2025_0.toml").read_text()).unwrap()


def _check_abi(path: Path) -> None:
    try:
        abi = load_abi(path)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"{path}: ")
        return
    assert abi.name == path.stem
    assert all(f and not re.search(r"\s", f) for f in abi.rustflags)
    # What shapes task names and cache folders stays plain.
    assert re.match(r"^[0-9.]+$", abi.emscripten) and re.match(r"^[0-9A-Za-z.-]+$", abi.rust_toolchain)
    assert re.match(r"^[0-9A-Za-z.-]+$", abi.pyodide_version)


@pytest.mark.slow  # a fuzzing run of hundreds of examples
@FUZZ
@given(doc=_mutations(ABI))
def test_mutated_abi_files(root, doc):
    path = root / "abi" / "2025_0.toml"
    path.write_text(_dump(doc))
    _check_abi(path)


@pytest.mark.slow  # a fuzzing run of hundreds of examples
def test_every_nasty_value_in_every_abi_key(root):
    path = root / "abi" / "2025_0.toml"
    for doc in _grid(
        {
            "top": {k: v for k, v in ABI.items() if not isinstance(v, dict)},
            "rust": ABI["rust"],
            "pyodide": ABI["pyodide"],
        }
    ):
        top = doc.pop("top")
        path.write_text(tomlkit.dumps({**top, **doc}))
        _check_abi(path)


@FUZZ
@given(text=st.one_of(st.text(max_size=400), st.lists(FRAGMENTS, max_size=25).map("".join)))
def test_any_text_as_an_abi_file(root, text):
    path = root / "abi" / "2026_0.toml"
    path.write_text(text, errors="surrogatepass")
    _check_abi(path)
