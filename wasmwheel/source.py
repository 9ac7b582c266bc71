"""The source step: fetch a recipe's crate source and apply its patches.

The tree is assembled in a temporary folder beside ``build/src/<crate>`` and
renamed into place only when complete, so an interrupted fetch never leaves a
half-unpacked tree that looks done. The source is shared by all ABIs of a crate.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wasmwheel.archive import check_tree_links, extract, single_top_folder
from wasmwheel.fsutil import atomic_write_text, clean_stale_temps, replace_dir, staged_dir
from wasmwheel.model.errors import WasmwheelError
from wasmwheel.model.layout import Layout
from wasmwheel.model.recipe import Recipe
from wasmwheel.runner import StepLog, capture, run

# Never copied from a local source folder: build outputs and VCS data.
LOCAL_IGNORE = ("target", ".git", "__pycache__", "node_modules", ".venv", ".nox", "*.whl", "*.pyc")


class SourceError(WasmwheelError):
    pass


def local_file_names(
    folder: Path | str, ignore: tuple[str, ...] = LOCAL_IGNORE, visited: list[str] | None = None
) -> Iterator[str]:
    """Files of a source folder, minus ``ignore`` (names, or ``*suffix``), in a stable order, as
    strings (the source step's file_deps, listed on every doit start). ``visited`` collects
    the folders listed."""
    ignore_names = {p for p in ignore if not p.startswith("*")}
    ignore_suffixes = tuple(p[1:] for p in ignore if p.startswith("*"))
    for dirpath, dirnames, filenames in os.walk(folder):
        if visited is not None:
            visited.append(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in ignore_names)
        for name in sorted(filenames):
            if name in ignore_names or (ignore_suffixes and name.endswith(ignore_suffixes)):
                continue
            yield os.path.join(dirpath, name)


def local_files(folder: Path, ignore: tuple[str, ...] = LOCAL_IGNORE) -> Iterator[Path]:
    """:func:`local_file_names` as Paths."""
    return (Path(name) for name in local_file_names(Path(folder), ignore))


class SourceListings:
    """The file lists of local source folders (the source steps' file_deps), kept between doit
    starts in ``build/sources.cache`` (JSON, written atomically when it changed).

    A list is reused while every folder of its tree has the mtime recorded: adding, removing
    or renaming an entry changes its folder's mtime. As with git's racy-clean rule, a tree
    with a folder changed less than ``RACY_NS`` before it was listed is not kept (a coarse
    file system clock could hide a change made right after), so it is listed again next time.
    """

    RACY_NS = 2_000_000_000

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self.entries: dict[str, dict] = {}
        self.used: dict[str, dict] = {}
        if self.path is not None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and data.get("format") == 1 and isinstance(data.get("trees"), dict):
                    self.entries = data["trees"]
            except (OSError, ValueError):
                pass

    @staticmethod
    def _unchanged(entry: dict) -> bool:
        try:
            return all(os.stat(d).st_mtime_ns == mtime for d, mtime in entry["dirs"].items())
        except (OSError, KeyError, TypeError, AttributeError):
            return False

    def files(self, folder: Path | str) -> list[str]:
        key = os.fspath(folder)
        entry = self.entries.get(key)
        if entry is not None and self._unchanged(entry):
            self.used[key] = entry
            return list(entry["files"])
        start = time.time_ns()
        visited: list[str] = []
        files = list(local_file_names(folder, visited=visited))
        try:
            dirs = {d: os.stat(d).st_mtime_ns for d in visited}
        except OSError:
            return files
        if all(mtime < start - self.RACY_NS for mtime in dirs.values()):
            self.used[key] = {"dirs": dirs, "files": files}
        return files

    def save(self) -> None:
        if self.path is None or self.used == self.entries:
            return
        try:
            atomic_write_text(self.path, json.dumps({"format": 1, "trees": self.used}))
        except OSError:  # a read-only build folder only costs speed
            pass


def tree_digest(folder: Path) -> str:
    """sha256 over relative paths, modes and contents: the identity of a source tree."""
    h = hashlib.sha256()
    folder = Path(folder)
    for path in local_files(folder, ignore=()):
        rel = path.relative_to(folder).as_posix()
        h.update(rel.encode() + b"\0")
        if path.is_symlink():
            h.update(b"L" + os.readlink(path).encode() + b"\0")
            continue
        h.update(b"X" if os.access(path, os.X_OK) else b"F")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def fetch_source(recipe: Recipe, layout: Layout, log: StepLog) -> dict[str, Any]:
    dest = layout.src_dir(recipe.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(dest.parent, prefix=f".{recipe.name}.")  # of an interrupted run (the step lock is held)
    src = recipe.source
    with staged_dir(dest) as tmp:
        if src.kind == "url":
            assert src.url and src.sha256
            from wasmwheel.download import Origin, fetch  # here: it imports requests, which a doit start never needs

            origin = Origin(src.url, layout.settings.sdist_mirror, "WASMWHEEL_SDIST_MIRROR")
            archive = fetch(origin, layout.download(src.sha256, src.filename), src.sha256, log)
            unpacked = tmp / "unpacked"
            log.note(f"unpacking {archive.name}")
            extract(archive, unpacked, layout.settings.unpack_limits)
            tree = single_top_folder(unpacked)
        elif src.kind == "git":
            tree = tmp / "git"
            _git_checkout(src.git or "", src.commit or "", tree, log)
        else:
            assert src.path
            tree = tmp / "local"
            log.note(f"copying {src.path}")
            shutil.copytree(src.path, tree, symlinks=True, ignore=shutil.ignore_patterns(*LOCAL_IGNORE))
        check_tree_links(tree, f"{recipe.path.name}: the {src.kind} source")
        crate_dir = tree / src.subdir if src.subdir else tree
        if not crate_dir.is_dir():
            raise SourceError(
                f"{recipe.path}: [source] subdir: {src.subdir!r} does not exist in the source "
                f"(top-level entries: {', '.join(sorted(p.name for p in tree.iterdir())[:12])})"
            )
        for patch in src.patches:
            log.note(f"applying {patch.name}")
            try:
                run(
                    ["patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch", "-i", patch],
                    log=log,
                    cwd=tree,
                    what=f"patch {patch.name}",
                )
            except WasmwheelError as exc:
                raise SourceError(
                    f"{recipe.path}: patch {patch.name} does not apply to {recipe.package_name} {recipe.version}: {exc}"
                ) from None
        if not any((crate_dir / f).exists() for f in ("pyproject.toml", "Cargo.toml")):
            raise SourceError(
                f"{recipe.path}: no pyproject.toml or Cargo.toml in the source"
                + (f" subdir {src.subdir!r}" if src.subdir else "")
                + "; set [source] subdir to the folder maturin should build"
            )
        digest = tree_digest(tree)
        replace_dir(tree, dest)
    log.note(f"source of {recipe.name} ready in {dest}")
    return {"tree": str(dest), "crate_dir": str(dest / src.subdir if src.subdir else dest), "tree_sha256": digest}


def _git_checkout(url: str, commit: str, dest: Path, log: StepLog) -> None:
    hint = "check the URL and that the commit exists there"
    run(["git", "init", "--quiet", dest], log=log, what="git init")
    try:
        run(
            ["git", "-C", dest, "fetch", "--quiet", "--depth", "1", "--", url, commit],
            log=log,
            what=f"git fetch {commit[:12]}",
            timeout=1800,
        )
    except WasmwheelError:
        # Servers that refuse fetching a commit by id: fetch everything instead.
        log.note("shallow fetch by commit refused; fetching the whole repository")
        try:
            run(
                ["git", "-C", dest, "fetch", "--quiet", "--tags", "--", url, "+refs/heads/*:refs/remotes/origin/*"],
                log=log,
                what="git fetch",
                timeout=3600,
            )
        except WasmwheelError as exc:
            raise SourceError(f"could not fetch {url}: {exc} ({hint})") from None
    try:
        run(["git", "-C", dest, "checkout", "--quiet", "--detach", commit], log=log, what=f"git checkout {commit[:12]}")
    except WasmwheelError as exc:
        raise SourceError(f"commit {commit} not found in {url}: {exc} ({hint})") from None
    head = capture(["git", "-C", dest, "rev-parse", "HEAD"], log=log, what="git rev-parse HEAD")
    if head != commit:
        raise SourceError(f"{url}: checked out {head}, expected {commit}")
    shutil.rmtree(dest / ".git")
