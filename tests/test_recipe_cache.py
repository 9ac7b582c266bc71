"""The cache of parsed recipes: used while nothing changed, never once something did."""

from __future__ import annotations

import os
import pickle

import pytest

import wasmwheel.model.recipe as recipe_module
from wasmwheel.model.recipe import load_recipes
from wasmwheel.model.recipe_cache import RecipeCache

ABIS = ["2024_0", "2025_0", "2026_0", "2026_5"]


@pytest.fixture
def parses(monkeypatch):
    """The names of the recipes that were parsed (not taken from the cache), per load."""
    seen: list[str] = []
    real = recipe_module.load_recipe

    def counting(path, *args, **kwargs):
        seen.append(path.stem)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(recipe_module, "load_recipe", counting)
    return seen


def _load(repo, cache, abis=ABIS):
    return load_recipes(repo / "recipes", abis, repo, cache=cache)


def test_an_unchanged_collection_is_not_parsed_again(repo, tmp_path, parses):
    cache = tmp_path / "build" / "recipes.cache"
    first = _load(repo, cache)
    assert len(parses) == len(first.recipes) > 20 and cache.exists()
    written = cache.stat().st_mtime_ns
    parses.clear()
    second = _load(repo, cache)
    assert parses == []
    assert second.recipes == first.recipes and list(second.recipes) == list(first.recipes)
    assert cache.stat().st_mtime_ns == written  # nothing changed: not rewritten
    # Without a cache path, everything is parsed, as before.
    parses.clear()
    assert _load(repo, None).recipes == first.recipes and len(parses) == len(first.recipes)


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(repo, tmp_path, parses):
    cache = tmp_path / "recipes.cache"
    _load(repo, cache)
    path = repo / "recipes" / "hello-pyo3.toml"
    st = path.stat()
    text = path.read_text()
    assert 'version = "0.1.0"' in text
    path.write_text(text.replace('version = "0.1.0"', 'version = "0.1.9"'))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    parses.clear()
    recipes = _load(repo, cache)
    assert parses == ["hello-pyo3"]
    assert recipes.recipes["hello-pyo3"].version == "0.1.9"


def test_new_removed_and_broken_recipes(repo, tmp_path, parses):
    cache = tmp_path / "recipes.cache"
    _load(repo, cache)
    (repo / "recipes" / "jiter.toml").unlink()
    (repo / "recipes" / "hello-two.toml").write_text(
        (repo / "recipes" / "hello-pyo3.toml").read_text().replace('name = "hello-pyo3"', 'name = "hello-two"')
    )
    (repo / "recipes" / "blake3.toml").write_text("[package\n")
    parses.clear()
    loaded = _load(repo, cache)
    assert sorted(parses) == ["blake3", "hello-two"]
    assert "jiter" not in loaded.recipes and "hello-two" in loaded.recipes
    assert "TOML syntax error" in str(loaded.errors["blake3"])
    # An invalid recipe is never cached: its error comes back on every load.
    parses.clear()
    again = _load(repo, cache)
    assert parses == ["blake3"] and str(again.errors["blake3"]) == str(loaded.errors["blake3"])
    with open(cache, "rb") as f:
        assert "jiter.toml" not in pickle.load(f)["entries"]


def test_other_abis_or_a_missing_patch_or_folder_mean_parsing_again(repo, tmp_path, parses):
    cache = tmp_path / "recipes.cache"
    patch = repo / "recipes" / "fix.patch"
    patch.write_text("--- a/x\n+++ b/x\n")
    path = repo / "recipes" / "hello-pyo3.toml"
    path.write_text(
        path.read_text().replace(
            'path = "../examples/hello-pyo3"', 'path = "../examples/hello-pyo3"\npatches = ["fix.patch"]'
        )
    )
    _load(repo, cache)
    parses.clear()
    _load(repo, cache, ABIS[:3])
    assert len(parses) > 20  # the ABI names shape validation (skip_abis)
    _load(repo, cache)
    parses.clear()
    patch.unlink()
    loaded = _load(repo, cache)
    assert parses == ["hello-pyo3"] and "fix.patch" in str(loaded.errors["hello-pyo3"])
    patch.write_text("--- a/x\n+++ b/x\n")
    _load(repo, cache)
    (repo / "examples" / "hello-pyo3").rename(repo / "examples" / "moved")
    parses.clear()
    loaded = _load(repo, cache)
    assert parses == ["hello-pyo3"] and "does not exist" in str(loaded.errors["hello-pyo3"])


@pytest.mark.parametrize(
    "content", [b"", b"not a pickle", pickle.dumps({"context": "other", "entries": {}}), pickle.dumps([1, 2, 3])]
)
def test_a_corrupt_or_foreign_cache_is_ignored_and_replaced(repo, tmp_path, parses, content):
    cache = tmp_path / "recipes.cache"
    cache.write_bytes(content)
    loaded = _load(repo, cache)
    assert len(parses) == len(loaded.recipes)
    parses.clear()
    assert _load(repo, cache).recipes == loaded.recipes and parses == []


def test_the_cache_is_written_atomically(repo, tmp_path, monkeypatch):
    cache = tmp_path / "build" / "recipes.cache"
    _load(repo, cache)
    before = cache.read_bytes()
    (repo / "recipes" / "jiter.toml").unlink()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    _load(repo, cache)  # the write fails: the load still works, the old cache stays whole
    assert cache.read_bytes() == before
    assert [p.name for p in cache.parent.iterdir()] == ["recipes.cache"]  # no temporary file left
    monkeypatch.undo()
    cached = RecipeCache(cache, repo / "recipes", ABIS, repo)
    assert "jiter.toml" in cached.entries  # readable, and still the old content
