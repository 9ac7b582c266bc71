"""Safe unpacking of sdists, sysroots and wheels.

Nothing in an archive may land outside the destination: absolute paths, ``..``
components, links pointing outside, device files and setuid bits are refused.
Tar archives use the standard library's ``data`` filter (PEP 706); zip archives
get the same checks by hand, since zipfile has no filter.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from .errors import WasmwheelError


class UnsafeArchive(WasmwheelError):
    pass


TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")


def _check_member_name(archive: Path, name: str) -> None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"{archive.name}: member {name!r} has an absolute path; refusing to unpack")
    if ".." in p.parts:
        raise UnsafeArchive(f"{archive.name}: member {name!r} points outside the archive ('..'); refusing to unpack")
    if "\0" in name:
        raise UnsafeArchive(f"{archive.name}: member name contains NUL; refusing to unpack")


def extract(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` (tar.* or zip/whl) into the empty or new folder ``dest``."""
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
            for member in tf.getmembers():
                _check_member_name(archive, member.name)
                if member.isdev() or member.isfifo():
                    raise UnsafeArchive(f"{archive.name}: member {member.name!r} is a device or FIFO; refusing to unpack")
            # The data filter also refuses links escaping dest, absolute link targets,
            # and strips setuid/setgid bits and ownership.
            tf.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        raise UnsafeArchive(f"{archive.name}: {exc}; refusing to unpack") from None
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise WasmwheelError(f"{archive.name}: not a readable tar archive ({exc})") from None


def _extract_zip(archive: Path, dest: Path) -> None:
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_member_name(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UnsafeArchive(f"{archive.name}: member {info.filename!r} is a symbolic link; refusing to unpack")
                if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) and stat.S_IFMT(mode):
                    raise UnsafeArchive(f"{archive.name}: member {info.filename!r} is not a file or folder; refusing to unpack")
                target = (root / info.filename).resolve()
                if target != root and root not in target.parents:
                    raise UnsafeArchive(f"{archive.name}: member {info.filename!r} points outside the archive; refusing to unpack")
            for info in infos:
                target = root / info.filename
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                mode = (info.external_attr >> 16) & 0o777
                if mode & 0o111:
                    os.chmod(target, 0o755)
    except zipfile.BadZipFile as exc:
        raise WasmwheelError(f"{archive.name}: not a readable zip archive ({exc})") from None


def single_top_folder(folder: Path) -> Path:
    """The one top-level folder of an unpacked sdist (``name-version/``), or ``folder`` itself."""
    entries = [e for e in Path(folder).iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return Path(folder)
