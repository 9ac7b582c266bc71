"""Safe unpacking of sdists, sysroots and wheels.

Nothing in an archive may land outside the destination: absolute paths, ``..``
components, links pointing outside (also through chains of links, and hard links
to links), members written through a link, device files and FIFOs are refused
before anything is written. Tar archives then go through the standard library's
``data`` filter (PEP 706) as well, which also drops setuid bits and ownership;
zip archives get the same checks by hand, since zipfile has no filter, and may
not hold links at all.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from .errors import WasmwheelError


class UnsafeArchive(WasmwheelError):
    pass


TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")


def _refuse(archive: Path, name: str, problem: str) -> UnsafeArchive:
    return UnsafeArchive(f"{archive.name}: member {name!r} {problem}; refusing to unpack (nothing was written)")


def _member_path(archive: Path, name: str) -> PurePosixPath:
    """The member's path relative to the destination; refuses absolute paths, '..' and NUL."""
    if "\0" in name:
        raise _refuse(archive, name, "has a NUL character in its name")
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise _refuse(archive, name, "has an absolute path")
    if ".." in p.parts:
        raise _refuse(archive, name, "points outside the archive ('..')")
    return PurePosixPath(*[part for part in p.parts if part != "."])


def _check_symlink(archive: Path, rel: PurePosixPath, target: str, links: set[PurePosixPath]) -> None:
    """A symbolic link must stay inside, read lexically from where it sits, without passing through
    another link (``a -> .`` then ``b -> a/a/../..`` escapes although it looks inside)."""
    name = rel.as_posix()
    if not target:
        raise _refuse(archive, name, "is a symbolic link with an empty target")
    if target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        raise _refuse(archive, name, f"is a symbolic link to the absolute path {target!r}")
    parts = list(rel.parent.parts)
    components = [c for c in PurePosixPath(target).parts if c != "."]
    for i, comp in enumerate(components):
        if comp == "..":
            if not parts:
                raise _refuse(archive, name, f"is a symbolic link to {target!r}, outside the archive")
            parts.pop()
            continue
        parts.append(comp)
        if i < len(components) - 1 and PurePosixPath(*parts) in links:
            raise _refuse(archive, name, f"is a symbolic link to {target!r}, which goes through another link")


def _check_tar_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    paths = {id(m): _member_path(archive, m.name) for m in members}
    links = {paths[id(m)] for m in members if m.issym()}
    for m in members:
        rel = paths[id(m)]
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
            kind = "a FIFO" if m.isfifo() else "a device" if m.ischr() or m.isblk() else "not a file, folder or link"
            raise _refuse(archive, m.name, f"is {kind}")
        through = next((p for p in rel.parents if p in links), None)
        if through is not None:
            raise _refuse(archive, m.name, f"would be written through the symbolic link {through.as_posix()!r}")
        if m.issym():
            _check_symlink(archive, rel, m.linkname, links)
        elif m.islnk():
            target = _member_path(archive, m.linkname)
            if target in links or any(p in links for p in target.parents):
                raise _refuse(archive, m.name, f"is a hard link to the symbolic link {m.linkname!r}")


def extract(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` (tar.* or zip/whl) into the empty or new folder ``dest``.

    Every member is checked before anything is written: an unsafe archive raises
    UnsafeArchive and leaves ``dest`` as it was.
    """
    archive = Path(archive)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    if name.endswith(TAR_SUFFIXES):
        _extract_tar(archive, dest)
    elif name.endswith((".zip", ".whl")):
        _extract_zip(archive, dest)
    else:
        raise WasmwheelError(f"{archive.name}: unknown archive type (expected {', '.join(TAR_SUFFIXES)}, .zip or .whl)")


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            _check_tar_members(archive, members)
            # Belt and braces: the data filter (PEP 706) also refuses links escaping dest and strips
            # setuid/setgid bits and ownership. On its own it lets a hard link to a symlink through.
            tf.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise UnsafeArchive(f"{archive.name}: {exc}; refusing to unpack") from None
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        reason = str(exc).splitlines()[0].rstrip(":") if str(exc) else type(exc).__name__
        raise WasmwheelError(f"{archive.name}: not a readable tar archive ({reason})") from None


def _extract_zip(archive: Path, dest: Path) -> None:
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                rel = _member_path(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise _refuse(archive, info.filename, "is a symbolic link")
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise _refuse(archive, info.filename, "is not a file or folder")
                target = root.joinpath(*rel.parts).resolve()
                if target != root and root not in target.parents:
                    raise _refuse(archive, info.filename, "points outside the archive")
            for info in infos:
                target = root.joinpath(*_member_path(archive, info.filename).parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                mode = (info.external_attr >> 16) & 0o777
                if mode & 0o111:
                    os.chmod(target, 0o755)
    except UnsafeArchive:
        raise
    # Corrupt data, unsupported compression or encryption, or members that clash (a file and a
    # folder of one name): all mean the archive cannot be used as it is.
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WasmwheelError(f"{archive.name}: not a readable zip archive ({reason})") from None


def check_tree_links(tree: Path, what: str) -> None:
    """Refuse symbolic links in an unpacked or checked-out tree that point outside it (a git
    repository or a local folder can hold them; later steps would read and patch through them)."""
    tree = Path(tree)
    root = tree.resolve()
    for dirpath, dirnames, filenames in os.walk(tree):
        for entry in [*dirnames, *filenames]:
            path = Path(dirpath) / entry
            if not path.is_symlink():
                continue
            target = os.readlink(path)
            rel = path.relative_to(tree).as_posix()
            resolved = Path(os.path.realpath(path))
            if os.path.isabs(target) or (resolved != root and root not in resolved.parents):
                raise UnsafeArchive(f"{what}: {rel!r} is a symbolic link to {target!r}, outside the source; "
                                    "refusing to use it")


def single_top_folder(folder: Path) -> Path:
    """The one top-level folder of an unpacked sdist (``name-version/``), or ``folder`` itself."""
    entries = [e for e in Path(folder).iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return Path(folder)
