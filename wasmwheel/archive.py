"""Safe unpacking of sdists, sysroots and wheels.

Nothing in an archive may land outside the destination: absolute paths, ``..``
components, links pointing outside (also through chains of links, and hard links
to links), members written through a link, device files and FIFOs are refused
before anything is written. So are archives that are ambiguous about what they
hold: a name given twice where one of them is a link or a folder (any name given
twice, in a zip), a member inside another member that is a file, a hard link to
something that is not a file before it, a member without a name. Tar archives then
go through the standard library's ``data`` filter (PEP 706) as well, which also
drops setuid bits and ownership; zip archives get the same checks by hand, since
zipfile has no filter, and may not hold links at all.

Archives are also limited in what they unpack to (:class:`UnpackLimits`: total
bytes of their files, number of members; settings WASMWHEEL_UNPACK_MAX_SIZE and
WASMWHEEL_UNPACK_MAX_FILES), so a zip or tar bomb stops with one line instead of
filling the disk. The headers are checked as they are read, before anything is
written (a tar bomb stops at its first huge header, without decompressing what
follows); zip data is counted again while it is written, since a zip's sizes are
only what its directory claims. Whatever an unpack that fails has written is removed.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from wasmwheel.model.errors import WasmwheelError
from wasmwheel.model.settings import UnpackLimits, format_size  # UnpackLimits: also imported from here


class UnsafeArchive(WasmwheelError):
    pass


SIZE_SETTING = "WASMWHEEL_UNPACK_MAX_SIZE"
FILES_SETTING = "WASMWHEEL_UNPACK_MAX_FILES"


def _too_big(archive: Path, limits: UnpackLimits, member: str, streaming: bool = False) -> UnsafeArchive:
    when = f"writing member {member!r}" if streaming else f"its member {member!r} reaches it"
    return UnsafeArchive(
        f"{archive.name}: unpacks to more than {format_size(limits.max_bytes)} ({when}); refusing "
        f"to unpack (nothing was written; {SIZE_SETTING} raises the limit for a trusted archive)"
    )


def _too_many(archive: Path, limits: UnpackLimits) -> UnsafeArchive:
    return UnsafeArchive(
        f"{archive.name}: has more than {limits.max_members} members; refusing to unpack (nothing "
        f"was written; {FILES_SETTING} raises the limit for a trusted archive)"
    )


TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")


def _refuse(archive: Path, name: str, problem: str) -> UnsafeArchive:
    return UnsafeArchive(f"{archive.name}: member {name!r} {problem}; refusing to unpack (nothing was written)")


def _member_path(archive: Path, name: str) -> PurePosixPath:
    """The member's path relative to the destination; refuses absolute paths, '..', NUL and no name."""
    if not name:
        raise _refuse(archive, name, "has no name")
    if "\0" in name:
        raise _refuse(archive, name, "has a NUL character in its name")
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise _refuse(archive, name, "has an absolute path")
    if ".." in p.parts:
        raise _refuse(archive, name, "points outside the archive ('..')")
    return PurePosixPath(*[part for part in p.parts if part != "."])


_KIND_NAMES = {"file": "file", "dir": "folder", "symlink": "symbolic link", "hardlink": "hard link"}


def _check_layout(archive: Path, entries: list[tuple[str, PurePosixPath, str]], any_duplicate: bool) -> None:
    """What the archive holds must be unambiguous: ``entries`` are (name, path, kind) in archive
    order, kind one of "file", "dir", "symlink", "hardlink". Refuses members without a name, a
    name given twice where one is a link or the kinds differ (``any_duplicate``: any name given
    twice), and members inside a member that is a file."""
    kinds: dict[PurePosixPath, str] = {}
    files = set()
    for name, rel, kind in entries:
        if not rel.parts and kind != "dir":
            raise _refuse(archive, name, "has no name")
        earlier = kinds.get(rel)
        if earlier is not None and (any_duplicate or earlier != kind or kind not in ("file", "dir")):
            what = "" if earlier == kind else f", once as a {_KIND_NAMES[earlier]} and once as a {_KIND_NAMES[kind]}"
            raise _refuse(archive, name, f"appears twice in the archive{what}")
        kinds[rel] = kind
        if kind == "file":
            files.add(rel)
    for name, rel, _kind in entries:
        inside = next((p for p in rel.parents if p in files), None)
        if inside is not None:
            raise _refuse(archive, name, f"is inside {inside.as_posix()!r}, which is a file in the archive")


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


def _tar_kind(m: tarfile.TarInfo) -> str:
    return "file" if m.isreg() else "dir" if m.isdir() else "symlink" if m.issym() else "hardlink"


def _check_tar_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    paths = {id(m): _member_path(archive, m.name) for m in members}
    links = {paths[id(m)] for m in members if m.issym()}
    earlier_files: set[PurePosixPath] = set()
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
            if target not in earlier_files:
                raise _refuse(
                    archive, m.name, f"is a hard link to {m.linkname!r}, which is not a file before it in the archive"
                )
        if m.isreg():
            earlier_files.add(rel)
    _check_layout(archive, [(m.name, paths[id(m)], _tar_kind(m)) for m in members], any_duplicate=False)


def extract(archive: Path, dest: Path, limits: UnpackLimits = UnpackLimits()) -> None:
    """Unpack ``archive`` (tar.* or zip/whl) into the empty or new folder ``dest``.

    Every member is checked before anything is written: an unsafe archive, or one that
    unpacks to more than ``limits``, raises UnsafeArchive and leaves ``dest`` as it was
    (so does any other failure: what was written is removed).
    """
    archive = Path(archive)
    dest = Path(dest)
    name = archive.name.lower()
    if name.endswith(TAR_SUFFIXES):
        unpack = _extract_tar
    elif name.endswith((".zip", ".whl")):
        unpack = _extract_zip
    else:
        raise WasmwheelError(f"{archive.name}: unknown archive type (expected {', '.join(TAR_SUFFIXES)}, .zip or .whl)")
    dest.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(dest))
    try:
        unpack(archive, dest, limits)
    except BaseException:
        for entry in set(os.listdir(dest)) - before:
            path = dest / entry
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def _read_tar_members(archive: Path, tf: tarfile.TarFile, limits: UnpackLimits) -> list[tarfile.TarInfo]:
    """The members, header by header: stops at the first header past a limit, before reading
    (for a compressed archive: decompressing) the data behind it."""
    members: list[tarfile.TarInfo] = []
    total = 0
    while (m := tf.next()) is not None:
        members.append(m)
        if len(members) > limits.max_members:
            raise _too_many(archive, limits)
        if m.isreg():  # tarfile writes exactly m.size bytes for it (sparse files: their full size)
            total += m.size
            if total > limits.max_bytes:
                raise _too_big(archive, limits, m.name)
    return members


def _extract_tar(archive: Path, dest: Path, limits: UnpackLimits) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = _read_tar_members(archive, tf, limits)
            _check_tar_members(archive, members)
            # Belt and braces: the data filter (PEP 706) also refuses links escaping dest and strips
            # setuid/setgid bits and ownership. On its own it lets a hard link to a symlink through.
            tf.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise UnsafeArchive(f"{archive.name}: {exc}; refusing to unpack") from None
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
        reason = str(exc).splitlines()[0].rstrip(":") if str(exc) else type(exc).__name__
        raise WasmwheelError(f"{archive.name}: not a readable tar archive ({reason})") from None


def _zip_kind(info: zipfile.ZipInfo) -> str:
    return "dir" if info.is_dir() else "file"


def _extract_zip(archive: Path, dest: Path, limits: UnpackLimits) -> None:
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise _too_many(archive, limits)
            total = 0
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
                total += info.file_size
                if total > limits.max_bytes:
                    raise _too_big(archive, limits, info.filename)
            _check_layout(
                archive,
                [(i.filename, _member_path(archive, i.filename), _zip_kind(i)) for i in infos],
                any_duplicate=True,
            )
            written = 0
            for info in infos:
                target = root.joinpath(*_member_path(archive, info.filename).parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                # The sizes above are what the zip's directory claims; count what really comes out.
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > limits.max_bytes:
                            raise _too_big(archive, limits, info.filename, streaming=True)
                        out.write(chunk)
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
                raise UnsafeArchive(
                    f"{what}: {rel!r} is a symbolic link to {target!r}, outside the source; refusing to use it"
                )


def single_top_folder(folder: Path) -> Path:
    """The one top-level folder of an unpacked sdist (``name-version/``), or ``folder`` itself."""
    entries = list(Path(folder).iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return Path(folder)
