"""Wheel retagging: give a built wheel the ABI's platform tag.

The file name, the ``Tag:`` lines of ``WHEEL`` and ``RECORD`` all change
together. Tags are parsed with ``packaging``; RECORD is written by the ``wheel``
project's WheelFile, which also verifies every member's hash while reading. Member
contents, order and timestamps are kept, so retagging is reversible: legacy ->
PEP 783 -> legacy gives the same members, and retagging a wheel that already has
the tag copies it byte for byte.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from wheel.wheelfile import WheelError, WheelFile

from wasmwheel.fsutil import clean_stale_temps, sha256_file, temp_path_beside
from wasmwheel.model.errors import WasmwheelError

if TYPE_CHECKING:  # annotations only: a doit start does not import the facts' classes
    from wasmwheel.model.facts import WheelFacts


class RetagError(WasmwheelError):
    pass


@dataclass(frozen=True)
class WheelName:
    distribution: str  # as in the file name (normalized underscores)
    version: str
    build: str
    tags: frozenset[Tag]

    @classmethod
    def parse(cls, filename: str) -> WheelName:
        try:
            _, version, build, tags = parse_wheel_filename(filename)
        except InvalidWheelFilename as exc:
            raise RetagError(f"{filename}: not a valid wheel file name ({exc})") from None
        dist = filename[:-4].split("-")[0]
        return cls(dist, str(version), "".join(map(str, build)) if build else "", frozenset(tags))

    def with_platform(self, platform: str) -> WheelName:
        return WheelName(
            self.distribution,
            self.version,
            self.build,
            frozenset(Tag(t.interpreter, t.abi, platform) for t in self.tags),
        )

    @property
    def filename(self) -> str:
        inter = ".".join(sorted({t.interpreter for t in self.tags}))
        abi = ".".join(sorted({t.abi for t in self.tags}))
        plat = ".".join(sorted({t.platform for t in self.tags}))
        parts = [self.distribution, self.version] + ([self.build] if self.build else []) + [inter, abi, plat]
        return "-".join(parts) + ".whl"


def _tag_lines(tags: frozenset[Tag]) -> list[str]:
    return [f"Tag: {t}" for t in sorted(tags, key=str)]


def rewrite_wheel_metadata(text: str, tags: frozenset[Tag]) -> str:
    """Replace the ``Tag:`` lines of a WHEEL file, keeping everything else in place.

    When every new tag has one platform (what retag does), each Tag line keeps its
    position and line ending and only its platform changes, so retagging back gives
    the original text byte for byte.
    """
    platforms = {t.platform for t in tags}
    lines = text.splitlines(keepends=True)
    tag_lines = [line for line in lines if line.startswith("Tag:")]
    if len(platforms) == 1 and tag_lines:
        platform = next(iter(platforms))
        out: list[str] = []
        seen: set[Tag] = set()
        for line in lines:
            if line.startswith("Tag:"):
                body = line[len("Tag:") :].strip()
                ending = line[len(line.rstrip("\r\n")) :]
                try:
                    interpreter, abi, _ = body.split("-")
                except ValueError:
                    break  # not a tag we understand: rebuild the lines below
                new = Tag(interpreter, abi, platform)
                if new in seen:
                    continue
                seen.add(new)
                out.append(f"Tag: {interpreter}-{abi}-{platform}{ending or chr(10)}")
                continue
            out.append(line)
        else:
            if seen == set(tags):
                return "".join(out)
    out = []
    placed = False
    for line in text.splitlines():
        if line.startswith("Tag:"):
            if not placed:
                out.extend(_tag_lines(tags))
                placed = True
            continue
        out.append(line)
    if not placed:
        out.extend(_tag_lines(tags))
    return "\n".join(out) + "\n"


class _ReproducibleWheelFile(WheelFile):
    """WheelFile whose RECORD entry keeps a given timestamp instead of 'now'."""

    record_date_time: tuple[int, int, int, int, int, int] = (1980, 1, 1, 0, 0, 0)

    def writestr(self, zinfo_or_arcname, data, compress_type=None):  # type: ignore[override]
        if isinstance(zinfo_or_arcname, str) and zinfo_or_arcname == self.record_path:
            zinfo = zipfile.ZipInfo(self.record_path, date_time=self.record_date_time)
            zinfo.compress_type = self.compression
            zinfo.external_attr = (0o664 | stat.S_IFREG) << 16
            zinfo_or_arcname = zinfo
        super().writestr(zinfo_or_arcname, data, compress_type)


def retag(wheel: Path, platform_tag: str, dest_dir: Path) -> Path:
    """Write ``wheel`` with ``platform_tag`` into ``dest_dir``; returns the new path.

    The result is written to a temporary file and renamed into place.
    """
    wheel = Path(wheel)
    name = WheelName.parse(wheel.name)
    new_name = name.with_platform(platform_tag)
    dest = Path(dest_dir) / new_name.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    with temp_path_beside(dest, ".whl") as staged:
        tmp = staged.with_name(new_name.filename)
        if new_name.tags == name.tags and new_name.filename == wheel.name:
            _verify(wheel)
            shutil.copyfile(wheel, tmp)
        else:
            tags = new_name.tags
            _rewrite(wheel, tmp, lambda text: rewrite_wheel_metadata(text, tags))
        tmp.replace(dest)
    return dest


def set_generator_line(text: str, generator: str) -> str:
    """A WHEEL file's text with its ``Generator:`` line replaced (or added after Wheel-Version)."""
    lines = text.splitlines(keepends=True)
    line = f"Generator: {generator}\n"
    for i, old in enumerate(lines):
        if old.startswith("Generator:"):
            lines[i] = line
            return "".join(lines)
    at = next((i + 1 for i, old in enumerate(lines) if old.startswith("Wheel-Version:")), 0)
    lines.insert(at, line)
    return "".join(lines)


def set_generator(wheel: Path, dest: Path, generator: str) -> Path:
    """Write ``wheel`` to ``dest`` (atomically) with ``generator`` as its WHEEL Generator line; every
    other member is kept byte for byte (RECORD is rewritten for the new WHEEL)."""
    dest = Path(dest)
    with temp_path_beside(dest, ".whl") as staged:
        tmp = staged.with_name(dest.name)  # WheelFile reads the name and version from the file name
        _rewrite(Path(wheel), tmp, lambda text: set_generator_line(text, generator))
        tmp.replace(dest)
    return dest


def _verify(wheel: Path) -> None:
    try:
        with WheelFile(wheel) as wf:
            for info in wf.infolist():
                if not info.is_dir():
                    wf.read(info)
    except (WheelError, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise RetagError(f"{wheel.name}: not a valid wheel ({exc})") from None


def _rewrite(src: Path, dest: Path, change_wheel_file) -> None:
    """Copy the wheel ``src`` to ``dest`` with its WHEEL file's text passed through ``change_wheel_file``."""
    try:
        with WheelFile(src) as wf_in:
            wheel_meta = f"{wf_in.dist_info_path}/WHEEL"
            infos = wf_in.infolist()
            if wheel_meta not in wf_in.namelist():
                raise RetagError(f"{src.name}: has no {wheel_meta}")
            record_info = wf_in.getinfo(wf_in.record_path)
            with _ReproducibleWheelFile(dest, "w") as wf_out:
                wf_out.record_date_time = record_info.date_time
                if wf_out.record_path != wf_in.record_path:
                    raise RetagError(f"{src.name}: its .dist-info folder does not match its file name")
                for info in infos:
                    if info.filename == wf_in.record_path or info.is_dir():
                        continue
                    data = wf_in.read(info)  # verified against RECORD by WheelFile
                    if info.filename == wheel_meta:
                        data = change_wheel_file(data.decode("utf-8")).encode("utf-8")
                    out_info = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                    out_info.external_attr = info.external_attr
                    out_info.compress_type = zipfile.ZIP_DEFLATED
                    wf_out.writestr(out_info, data)
    except RetagError:
        raise
    except (WheelError, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise RetagError(f"{src.name}: not a valid wheel ({exc})") from None


def wheel_tags(wheel: Path) -> frozenset[Tag]:
    return WheelName.parse(Path(wheel).name).tags


def retag_step(recipe, abi, layout, built: WheelFacts, previous: WheelFacts | None, log) -> dict:
    """The retag step: the built wheel with the ABI's platform tag, in build/dist/<abi> (the wheel of
    the step's last run goes when the new one has another name)."""
    built_wheel = Path(built.wheel)
    clean_stale_temps(layout.dist_dir(abi.name), prefix=f".{recipe.wheel_name}-")  # of an interrupted retag
    wheel = retag(built_wheel, abi.platform_tag, layout.dist_dir(abi.name))
    if previous is not None and previous.wheel and Path(previous.wheel) != wheel:
        Path(previous.wheel).unlink(missing_ok=True)
    log.note(f"{built_wheel.name} -> {wheel.name}")
    return {"wheel": str(wheel), "sha256": sha256_file(wheel)}
