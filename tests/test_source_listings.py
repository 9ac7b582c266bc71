"""The cached file lists of local source folders (the source steps' file_deps)."""

from __future__ import annotations

import os
import time
import types

import pytest

import wasmwheel.source as source_module
from wasmwheel.source import SourceListings, local_file_names

OLD = time.time_ns() - 3600 * 10**9  # an hour ago: past the racy window


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "crate"
    for rel in ("Cargo.toml", "pyproject.toml", "src/lib.rs", "src/util/mod.rs", "target/junk.o", ".git/HEAD"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    _age(root)
    return root


def _age(root):
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, ns=(OLD, OLD))


@pytest.fixture
def walks(monkeypatch):
    count = []
    real = source_module.local_file_names

    def counting(*args, **kwargs):
        count.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(source_module, "local_file_names", counting)
    return count


def test_the_list_is_the_walk_and_is_reused_while_nothing_changed(tree, tmp_path, walks):
    cache = tmp_path / "build" / "sources.cache"
    listings = SourceListings(cache)
    expected = list(local_file_names(tree))
    walks.clear()
    assert listings.files(tree) == expected and len(expected) == 4  # target/ and .git/ left out
    listings.save()
    assert len(walks) == 1 and cache.exists()
    again = SourceListings(cache)
    assert again.files(tree) == expected and len(walks) == 1  # from the cache: no walk
    mtime = cache.stat().st_mtime_ns
    again.save()
    assert cache.stat().st_mtime_ns == mtime  # unchanged: not rewritten


@pytest.mark.parametrize("change", ["add in subfolder", "remove", "rename", "new folder", "remove folder"])
def test_a_changed_tree_is_listed_again(tree, tmp_path, walks, change):
    cache = tmp_path / "sources.cache"
    first = SourceListings(cache)
    first.files(tree)
    first.save()
    if change == "add in subfolder":
        (tree / "src" / "util" / "extra.rs").write_text("x")
    elif change == "remove":
        (tree / "src" / "lib.rs").unlink()
    elif change == "rename":
        (tree / "src" / "lib.rs").rename(tree / "src" / "main.rs")
    elif change == "new folder":
        (tree / "src" / "more").mkdir()
        (tree / "src" / "more" / "a.rs").write_text("x")
    else:
        (tree / "src" / "util" / "mod.rs").unlink()
        (tree / "src" / "util").rmdir()
    walks.clear()
    assert SourceListings(cache).files(tree) == list(local_file_names(tree))
    assert len(walks) == 1


def test_a_tree_changed_just_before_listing_is_not_kept(tree, tmp_path, walks, monkeypatch):
    cache = tmp_path / "sources.cache"
    (tree / "src" / "new.rs").write_text("x")  # src/ has a fresh mtime: a coarse clock could hide more
    # Listed 1 s after that change, however long this test really takes to get there.
    changed = (tree / "src").stat().st_mtime_ns
    monkeypatch.setattr(source_module, "time", types.SimpleNamespace(time_ns=lambda: changed + 10**9))
    listings = SourceListings(cache)
    listings.files(tree)
    listings.save()
    walks.clear()
    SourceListings(cache).files(tree)
    assert len(walks) == 1
    _age(tree)
    listings = SourceListings(cache)
    listings.files(tree)
    listings.save()
    walks.clear()
    SourceListings(cache).files(tree)
    assert walks == []


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{not json",
        '{"format": 2, "trees": {}}',
        '{"format": 1, "trees": []}',
        '{"format": 1, "trees": {"%s": {"dirs": 3}}}',
    ],
)
def test_a_bad_cache_is_ignored(tree, tmp_path, content):
    cache = tmp_path / "sources.cache"
    cache.write_text(content.replace("%s", str(tree)))
    assert SourceListings(cache).files(tree) == list(local_file_names(tree))
