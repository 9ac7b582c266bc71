"""A cache of parsed recipes, so that a doit start does not re-parse and re-validate every recipe.

Every `doit` command loads the whole collection; for 500 recipes, parsing and validating
them was a sixth of a no-op run. The cache is one pickle file in the build folder
(``build/recipes.cache``), written atomically (temporary file + rename) and only when
something changed. A cached recipe is used only when:

- its file has the same size, inode, mtime and ctime (ctime changes on every write, so an
  edit that keeps size and mtime is still seen);
- the ABI names and the repository root are the same, and so is the code that parses
  recipes (the stat of recipe.py, schema.py and this module, the Python version);
- the files it refers to are still there (its local source folder, its patches), as
  validation would check.

Anything else (a new, edited or invalid recipe; an unreadable or foreign cache) is parsed
as before. Invalid recipes are never cached: their error is reported on every load.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any

from wasmwheel.fsutil import atomic_write_bytes

# A parsed recipe (wasmwheel.model.recipe.Recipe; this module stores whatever the loader parses, and
# never imports the loader).
Recipe = Any

FORMAT = 1
_CODE = ("recipe.py", "schema.py", "recipe_cache.py")


def _file_key(path: Path) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns)


def _still_valid(recipe: Recipe) -> bool:
    """The files a recipe refers to are still there, as validation would check (Recipe.files_exist)."""
    return recipe.files_exist()


class RecipeCache:
    def __init__(self, path: Path | None, recipe_dir: Path, abi_names: list[str] | tuple[str, ...], root: Path):
        self.path = Path(path) if path else None
        here = Path(__file__).resolve().parent
        self.context: Any = (
            FORMAT,
            sys.version_info[:2],
            str(Path(root).resolve()),
            str(Path(recipe_dir).resolve()),
            tuple(abi_names),
            tuple(_file_key(here / name) for name in _CODE),
        )
        self.entries: dict[str, tuple[tuple[int, ...], Recipe]] = {}
        self.used: dict[str, tuple[tuple[int, ...], Recipe]] = {}
        self.changed = False
        if self.path is not None:
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                data = pickle.load(f)
            if data["context"] == self.context:
                self.entries = data["entries"]
        except Exception:  # noqa: BLE001 - missing, truncated, foreign or from another version: start empty
            self.entries = {}

    def get(self, path: Path) -> tuple[tuple[int, ...] | None, Recipe | None]:
        """(the file's stat key, the cached recipe if still valid)."""
        key = _file_key(path)
        hit = self.entries.get(path.name)
        if key is not None and hit is not None and hit[0] == key and _still_valid(hit[1]):
            self.used[path.name] = hit
            return key, hit[1]
        return key, None

    def put(self, path: Path, key: tuple[int, ...] | None, recipe: Recipe) -> None:
        if key is not None:
            self.used[path.name] = (key, recipe)
            self.changed = True

    def save(self) -> None:
        """Write the entries of this load (dropping removed recipes), if anything changed."""
        if self.path is None or not (self.changed or self.used.keys() != self.entries.keys()):
            return
        try:
            atomic_write_bytes(
                self.path,
                pickle.dumps({"context": self.context, "entries": self.used}, protocol=pickle.HIGHEST_PROTOCOL),
            )
        except OSError:  # a read-only build folder only costs speed
            pass
