"""Safe unpacking of sdists, sysroots and wheels, with crafted tar and zip archives: nothing is ever
written outside the destination (nothing at all when an archive is refused), and the error names the
archive, the member and what is wrong with it. Also through the pipeline: a crafted sdist, a git
source with an escaping link, and a crafted sysroot."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path

import pytest

from reliability import git_source_recipe
from wasmwheel.archive import UnpackLimits, UnsafeArchive, check_tree_links, extract
from wasmwheel.fsutil import sha256_file
from wasmwheel.model.errors import ConfigError, WasmwheelError
from wasmwheel.model.settings import Settings

REG, DIR, SYM, LNK = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


def make_tar(path: Path, members: list[tuple], mode: str = "w") -> Path:
    """members: (name, type, linkname or data, [mode])"""
    with tarfile.open(path, mode) as tf:
        for name, kind, extra, *perm in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = perm[0] if perm else (0o755 if kind == DIR else 0o644)
            if kind == REG:
                data = extra if isinstance(extra, bytes) else b"data\n"
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                if kind in (SYM, LNK):
                    info.linkname = extra
                tf.addfile(info)
    return path


def make_zip(path: Path, members: list[tuple]) -> Path:
    """members: (name, data, unix mode or None)"""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some cases hold
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


@pytest.fixture
def sandbox(tmp_path) -> Path:
    """``sandbox/dest`` is where archives are unpacked; anything else appearing in ``sandbox`` escaped."""
    (tmp_path / "sandbox" / "dest").mkdir(parents=True)
    return tmp_path / "sandbox"


def _escaped(sandbox: Path) -> list[str]:
    return sorted(
        str(p.relative_to(sandbox))
        for p in sandbox.rglob("*")
        if p != sandbox / "dest" and sandbox / "dest" not in p.parents
    )


TAR_CASES = {
    "dotdot": ([("../evil", REG, b"x")], "member '../evil' points outside the archive ('..')"),
    "dotdot-inside-path": ([("pkg/../../evil", REG, b"x")], "points outside the archive ('..')"),
    "backslash-dotdot": ([("..\\evil", REG, b"x")], "points outside the archive ('..')"),
    "absolute": ([("/tmp/evil", REG, b"x")], "member '/tmp/evil' has an absolute path"),
    "drive-letter": ([("C:\\evil", REG, b"x")], "has an absolute path"),
    "symlink-absolute": ([("pkg/etc", SYM, "/etc")], "member 'pkg/etc' is a symbolic link to the absolute path '/etc'"),
    "symlink-escaping": ([("pkg/up", SYM, "../../evil")], "is a symbolic link to '../../evil', outside the archive"),
    "symlink-empty": ([("pkg/empty", SYM, "")], "is a symbolic link with an empty target"),
    "symlink-chain": (
        [("a", SYM, "."), ("b", SYM, "a/a/../.."), ("b/evil", REG, b"x")],
        "member 'b' is a symbolic link to 'a/a/../..', which goes through another link",
    ),
    "write-through-symlink": (
        [("pkg/", DIR, None), ("link", SYM, "pkg"), ("link/evil", REG, b"x")],
        "member 'link/evil' would be written through the symbolic link 'link'",
    ),
    "write-through-escaping-symlink": (
        [("link", SYM, "../.."), ("link/evil", REG, b"x")],
        "member 'link' is a symbolic link to '../..', outside the archive",
    ),
    "hardlink-absolute": ([("h", LNK, "/etc/passwd")], "member '/etc/passwd' has an absolute path"),
    "hardlink-escaping": ([("h", LNK, "../evil")], "member '../evil' points outside the archive"),
    # Python 3.11.7's data filter lets this one through and leaves `h -> ../pwned` in the tree.
    "hardlink-to-symlink": (
        [("d/", DIR, None), ("d/s", SYM, "../pwned"), ("h", LNK, "d/s"), ("h", REG, b"written outside\n")],
        "member 'h' is a hard link to the symbolic link 'd/s'",
    ),
    "char-device": ([("pkg/tty", tarfile.CHRTYPE, None)], "member 'pkg/tty' is a device"),
    "block-device": ([("pkg/sda", tarfile.BLKTYPE, None)], "member 'pkg/sda' is a device"),
    "fifo": ([("pkg/pipe", tarfile.FIFOTYPE, None)], "member 'pkg/pipe' is a FIFO"),
    "dot-dotdot": ([("./../evil", REG, b"x")], "member './../evil' points outside the archive ('..')"),
    # Ambiguous archives: what they unpack to depends on the order tools apply members in.
    # Before, the file went through the link into pkg-1.0/README.
    "symlink-then-file-of-its-name": (
        [("s", SYM, "pkg-1.0/README"), ("s", REG, b"through the link\n")],
        "member 's' appears twice in the archive, once as a symbolic link and once as a file",
    ),
    "symlink-then-folder-of-its-name": (
        [("s", SYM, "."), ("s/", DIR, None)],
        "member 's' appears twice in the archive, once as a symbolic link and once as a folder",
    ),
    "file-then-member-inside-it": (
        [("x", REG, b"file"), ("x/y", REG, b"under a file")],
        "member 'x/y' is inside 'x', which is a file in the archive",
    ),
    # Before, these three were a KeyError from tarfile (an "internal error" in the pipeline).
    "hardlink-to-itself": ([("h", LNK, "h")], "member 'h' is a hard link to 'h', which is not a file before it"),
    "hardlink-before-its-target": (
        [("h", LNK, "f"), ("f", REG, b"x")],
        "member 'h' is a hard link to 'f', which is not a file before it",
    ),
    "hardlink-to-nothing": ([("h", LNK, "nothere")], "is a hard link to 'nothere', which is not a file before it"),
    # Before, tarfile copied the folder member d/ as a second folder h/.
    "hardlink-to-folder": (
        [("d/", DIR, None), ("h", LNK, "d")],
        "member 'h' is a hard link to 'd', which is not a file",
    ),
    "file-without-name": ([(".", REG, b"x")], "member '.' has no name"),
}


@pytest.mark.parametrize("case", sorted(TAR_CASES))
def test_crafted_tar_archives_are_refused_before_anything_is_written(sandbox, case):
    members, message = TAR_CASES[case]
    archive = make_tar(sandbox.parent / f"{case}.tar.gz", [("pkg-1.0/README", REG, b"ok\n"), *members], "w:gz")
    with pytest.raises(UnsafeArchive) as err:
        extract(archive, sandbox / "dest")
    text = str(err.value)
    assert (
        text.startswith(f"{case}.tar.gz: ")
        and message in text
        and text.endswith("refusing to unpack (nothing was written)")
    )
    assert "\n" not in text
    assert list((sandbox / "dest").iterdir()) == []
    assert _escaped(sandbox) == []


ZIP_CASES = {
    "dotdot": ([("../evil", b"x", None)], "member '../evil' points outside the archive ('..')"),
    "backslash-dotdot": ([("pkg\\..\\..\\evil", b"x", None)], "points outside the archive ('..')"),
    "absolute": ([("/tmp/evil", b"x", None)], "member '/tmp/evil' has an absolute path"),
    "drive-letter": ([("C:/evil", b"x", None)], "has an absolute path"),
    "symlink": ([("pkg/link", b"/etc/passwd", stat.S_IFLNK | 0o777)], "member 'pkg/link' is a symbolic link"),
    "device": ([("pkg/tty", b"", stat.S_IFCHR | 0o644)], "member 'pkg/tty' is not a file or folder"),
    "fifo": ([("pkg/pipe", b"", stat.S_IFIFO | 0o644)], "is not a file or folder"),
    "socket": ([("pkg/sock", b"", stat.S_IFSOCK | 0o644)], "member 'pkg/sock' is not a file or folder"),
    "dot-dotdot": ([("./../evil", b"x", None)], "member './../evil' points outside the archive ('..')"),
    "drive-letter-backslash": ([("C:\\evil", b"x", None)], "member 'C:\\\\evil' has an absolute path"),
    "unc-path": ([("\\\\server\\share\\evil", b"x", None)], "has an absolute path"),
    # Before: the last copy won silently (tools that take the first see other contents).
    "duplicate": ([("pkg/ok.py", b"second\n", None)], "member 'pkg/ok.py' appears twice in the archive"),
    "duplicate-spelled-differently": (
        [("./pkg/ok.py", b"second\n", None)],
        "member './pkg/ok.py' appears twice in the archive",
    ),
    # Before: an IndexError from zipfile.
    "no-name": ([("", b"x", None)], "member '' has no name"),
    # A folder by its mode but not by its name is written as a file; before, the member inside it
    # then failed half-way through the unpack.
    "folder-mode-without-slash": (
        [("pkg/d", b"", stat.S_IFDIR | 0o755), ("pkg/d/f", b"x", None)],
        "member 'pkg/d/f' is inside 'pkg/d', which is a file in the archive",
    ),
}


@pytest.mark.parametrize("case", sorted(ZIP_CASES))
@pytest.mark.parametrize("suffix", [".zip", ".whl"])
def test_crafted_zip_archives_and_wheels_are_refused_before_anything_is_written(sandbox, case, suffix):
    members, message = ZIP_CASES[case]
    archive = make_zip(sandbox.parent / f"{case}{suffix}", [("pkg/ok.py", b"ok\n", 0o644), *members])
    with pytest.raises(UnsafeArchive) as err:
        extract(archive, sandbox / "dest")
    assert str(err.value).startswith(f"{case}{suffix}: ") and message in str(err.value)
    assert list((sandbox / "dest").iterdir()) == []
    assert _escaped(sandbox) == []


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz"])
def test_a_normal_sdist_unpacks_with_inner_links_and_exec_bits_and_without_setuid(sandbox, mode):
    suffix = {"w:gz": ".tar.gz", "w:bz2": ".tar.bz2", "w:xz": ".tar.xz"}[mode]
    archive = make_tar(
        sandbox.parent / f"pkg-1.0{suffix}",
        [
            ("pkg-1.0/", DIR, None),
            ("pkg-1.0/docs/LICENSE", REG, b"MIT\n"),
            ("pkg-1.0/LICENSE", SYM, "docs/LICENSE"),
            ("pkg-1.0/docs/COPYING", LNK, "pkg-1.0/docs/LICENSE"),
            ("pkg-1.0/configure", REG, b"#!/bin/sh\n", 0o4755),
        ],
        mode,
    )
    extract(archive, sandbox / "dest")
    root = sandbox / "dest" / "pkg-1.0"
    assert (root / "LICENSE").read_text() == "MIT\n" and os.readlink(root / "LICENSE") == "docs/LICENSE"
    assert (root / "docs" / "COPYING").read_text() == "MIT\n"
    st = (root / "configure").stat()
    assert st.st_mode & stat.S_IXUSR and not st.st_mode & stat.S_ISUID
    assert _escaped(sandbox) == []


def test_a_tar_giving_a_file_twice_unpacks_the_last_copy(sandbox):
    """Appending to a tar archive repeats a name; tar and pip take the last copy, and so does wasmwheel
    (only repeats that change what a name is, or involve a link, are refused)."""
    archive = make_tar(
        sandbox.parent / "pkg-1.0.tar.gz",
        [("pkg-1.0/", DIR, None), ("pkg-1.0/", DIR, None), ("pkg-1.0/a", REG, b"old\n"), ("pkg-1.0/a", REG, b"new\n")],
        "w:gz",
    )
    extract(archive, sandbox / "dest")
    assert (sandbox / "dest" / "pkg-1.0" / "a").read_text() == "new\n"


def test_a_wheel_unpacks_with_exec_bits(sandbox):
    archive = make_zip(
        sandbox.parent / "demo-1.0-py3-none-any.whl",
        [
            ("demo/", b"", stat.S_IFDIR | 0o755),
            ("demo/__init__.py", b"x = 1\n", stat.S_IFREG | 0o644),
            ("demo/tool", b"#!/bin/sh\n", stat.S_IFREG | 0o755),
            ("demo-1.0.dist-info/RECORD", b"", None),
        ],
    )
    extract(archive, sandbox / "dest")
    assert (sandbox / "dest" / "demo" / "__init__.py").read_text() == "x = 1\n"
    assert os.access(sandbox / "dest" / "demo" / "tool", os.X_OK)


@pytest.mark.parametrize(
    "name,data,message",
    [
        ("truncated.tar.gz", None, "truncated.tar.gz: not a readable tar archive"),
        ("garbage.tar.bz2", b"not an archive at all", "garbage.tar.bz2: not a readable tar archive"),
        ("garbage.zip", b"PK\x03\x04 broken", "garbage.zip: not a readable zip archive"),
        ("sdist.rar", b"Rar!", "sdist.rar: unknown archive type"),
    ],
)
def test_unreadable_archives_give_one_clear_line(sandbox, name, data, message):
    path = sandbox.parent / name
    if data is None:
        full = make_tar(sandbox.parent / "full.tar.gz", [(f"f{i}", REG, os.urandom(4000)) for i in range(8)], "w:gz")
        data = full.read_bytes()[: full.stat().st_size // 2]
    path.write_bytes(data)
    with pytest.raises(WasmwheelError) as err:
        extract(path, sandbox / "dest")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert _escaped(sandbox) == []


def test_clashing_zip_members_are_an_error_not_a_traceback(sandbox):
    archive = make_zip(sandbox.parent / "clash.zip", [("a", b"file", None), ("a/b", b"under a file", None)])
    with pytest.raises(
        WasmwheelError,
        match=r"^clash.zip: member 'a/b' is inside 'a', which is a file in the archive; "
        r"refusing to unpack \(nothing was written\)$",
    ):
        extract(archive, sandbox / "dest")
    assert list((sandbox / "dest").iterdir()) == []


# -- limits: zip and tar bombs -----------------------------------------------------------------------

SIZE_LIMIT_TAIL = (
    "refusing to unpack (nothing was written; WASMWHEEL_UNPACK_MAX_SIZE raises the limit for a trusted archive)"
)


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, without holding them in memory."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def _tar_bomb(path: Path, sizes: dict[str, int]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, size in sizes.items():
            info = tarfile.TarInfo(name)
            info.size = size
            tf.addfile(info, io.BufferedReader(_Zeros(size)))
    return path


def test_a_tar_bomb_is_refused_from_its_headers_before_anything_is_written(sandbox):
    archive = _tar_bomb(sandbox.parent / "bomb-1.0.tar.gz", {"bomb-1.0/a": 10 << 20, "bomb-1.0/b": 10 << 20})
    assert archive.stat().st_size < 100 << 10  # 20 MiB of zeros, compressed
    with pytest.raises(UnsafeArchive) as err:
        extract(archive, sandbox / "dest", UnpackLimits(max_bytes=16 << 20))
    assert (
        str(err.value)
        == "bomb-1.0.tar.gz: unpacks to more than 16M (its member 'bomb-1.0/b' reaches it); " + SIZE_LIMIT_TAIL
    )
    assert list((sandbox / "dest").iterdir()) == [] and _escaped(sandbox) == []
    extract(archive, sandbox / "dest")  # the default limits let it through
    assert (sandbox / "dest" / "bomb-1.0" / "b").stat().st_size == 10 << 20


def test_a_tar_bomb_stops_at_its_first_header_without_decompressing_the_rest(sandbox):
    """A header claiming 1 TiB: reading every header first (tarfile.getmembers) would decompress a
    terabyte to find the next one; here there is none, and tarfile would call the archive truncated."""
    header = tarfile.TarInfo("huge-1.0/zeros")
    header.size = 1 << 40
    archive = sandbox.parent / "huge-1.0.tar.gz"
    archive.write_bytes(zlib.compress(header.tobuf(format=tarfile.GNU_FORMAT), wbits=31))
    with pytest.raises(UnsafeArchive) as err:
        extract(archive, sandbox / "dest")
    assert (
        str(err.value)
        == "huge-1.0.tar.gz: unpacks to more than 4G (its member 'huge-1.0/zeros' reaches it); " + SIZE_LIMIT_TAIL
    )
    assert list((sandbox / "dest").iterdir()) == []


def test_an_archive_with_too_many_members_is_refused(sandbox):
    archive = make_tar(sandbox.parent / "many-1.0.tar.gz", [(f"many-1.0/f{i}", REG, b"") for i in range(101)], "w:gz")
    with pytest.raises(UnsafeArchive) as err:
        extract(archive, sandbox / "dest", UnpackLimits(max_members=100))
    assert str(err.value) == (
        "many-1.0.tar.gz: has more than 100 members; refusing to unpack (nothing was written; "
        "WASMWHEEL_UNPACK_MAX_FILES raises the limit for a trusted archive)"
    )
    zipped = make_zip(sandbox.parent / "many.whl", [(f"f{i}", b"", None) for i in range(101)])
    with pytest.raises(UnsafeArchive, match=r"^many.whl: has more than 100 members; "):
        extract(zipped, sandbox / "dest", UnpackLimits(max_members=100))
    extract(zipped, sandbox / "dest", UnpackLimits(max_members=101))
    assert len(list((sandbox / "dest").iterdir())) == 101


def test_a_zip_bomb_is_refused_from_its_directory_before_anything_is_written(sandbox):
    archive = make_zip(sandbox.parent / "bomb.zip", [(f"z{i}", bytes(8 << 20), None) for i in range(3)])
    assert archive.stat().st_size < 100 << 10
    with pytest.raises(UnsafeArchive) as err:
        extract(archive, sandbox / "dest", UnpackLimits(max_bytes=20 << 20))
    assert str(err.value) == "bomb.zip: unpacks to more than 20M (its member 'z2' reaches it); " + SIZE_LIMIT_TAIL
    assert list((sandbox / "dest").iterdir()) == [] and _escaped(sandbox) == []


def test_a_zip_whose_directory_understates_its_sizes_writes_nothing(sandbox):
    """The sizes a zip declares are only claims: here 1 KiB for 8 MiB of data, under a 4 MiB limit.
    What comes out of a member is counted as it is written (zipfile also stops at the declared
    size and then fails the CRC check): the unpack fails and what it wrote is removed."""
    archive = make_zip(sandbox.parent / "liar.zip", [("small.txt", b"ok\n", None), ("big", bytes(8 << 20), None)])
    data = bytearray(archive.read_bytes())
    local = data.find(b"PK\x03\x04" + data[4:8], 1)  # the second member's local header
    central = data.find(b"PK\x01\x02", data.find(b"PK\x01\x02") + 1)  # ... and its directory entry
    assert local > 0 and central > 0
    data[local + 22 : local + 26] = data[central + 24 : central + 28] = (1024).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("big").file_size == 1024
    with pytest.raises(WasmwheelError) as err:
        extract(archive, sandbox / "dest", UnpackLimits(max_bytes=4 << 20))
    assert str(err.value).startswith("liar.zip: ") and "\n" not in str(err.value)
    assert list((sandbox / "dest").iterdir()) == [] and _escaped(sandbox) == []


@pytest.mark.parametrize(
    "value,expected",
    [
        ("", 4 << 30),
        ("123", 123),
        ("512K", 512 << 10),
        ("1.5G", 3 << 29),
        ("8GiB", 8 << 30),
        ("2t", 2 << 40),
        ("100 MB", 100 << 20),
    ],
)
def test_the_size_limit_setting_takes_bytes_or_units(tmp_path, value, expected):
    settings = Settings.from_env(tmp_path, {"WASMWHEEL_UNPACK_MAX_SIZE": value, "WASMWHEEL_UNPACK_MAX_FILES": "7"})
    assert settings.unpack_limits == UnpackLimits(max_bytes=expected, max_members=7)


@pytest.mark.parametrize(
    "name,value",
    [
        ("WASMWHEEL_UNPACK_MAX_SIZE", "lots"),
        ("WASMWHEEL_UNPACK_MAX_SIZE", "0"),
        ("WASMWHEEL_UNPACK_MAX_SIZE", "-1G"),
        ("WASMWHEEL_UNPACK_MAX_FILES", "1e6"),
    ],
)
def test_a_bad_limit_setting_is_one_clear_error(tmp_path, name, value):
    with pytest.raises(ConfigError) as err:
        Settings.from_env(tmp_path, {name: value})
    assert str(err.value).startswith(f"environment: {name}: expected ") and repr(value) in str(err.value)


def test_tree_links_outside_are_refused_and_inside_kept(tmp_path):
    tree = tmp_path / "tree"
    (tree / "docs").mkdir(parents=True)
    (tree / "docs" / "LICENSE").write_text("MIT\n")
    (tree / "LICENSE").symlink_to("docs/LICENSE")
    (tree / "dangling").symlink_to("docs/not-there")
    check_tree_links(tree, "demo.toml: the git source")
    (tree / "docs" / "secrets").symlink_to("../../outside")
    with pytest.raises(
        UnsafeArchive,
        match=r"^demo.toml: the git source: 'docs/secrets' is a symbolic link to "
        r"'../../outside', outside the source; refusing to use it$",
    ):
        check_tree_links(tree, "demo.toml: the git source")


# -- through the pipeline --------------------------------------------------------------------------


def _url_recipe(project, name: str, url: str, sha: str) -> None:
    (project.root / "recipes" / f"{name}.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "1.0"\n\n[source]\nurl = "{url}"\nsha256 = "{sha}"\n'
    )


def test_a_crafted_sdist_fails_the_source_step_and_writes_nothing_outside(project, http_root):
    served, base = http_root
    sdist = make_tar(
        served / "evil-1.0.tar.gz",
        [
            ("evil-1.0/pyproject.toml", REG, b"[project]\nname = 'evil'\n"),
            ("evil-1.0/d/", DIR, None),
            ("evil-1.0/d/s", SYM, "../../../../pwned"),
        ],
        "w:gz",
    )
    _url_recipe(project, "evil", f"{base}/evil-1.0.tar.gz", sha256_file(sdist))
    run = project.doit("source:evil", check=False)
    assert (
        "evil-1.0.tar.gz: member 'evil-1.0/d/s' is a symbolic link to '../../../../pwned', outside the archive; "
        "refusing to unpack (nothing was written)" in run.output
    )
    assert "Traceback" not in run.output
    layout = project.layout
    assert not layout.stamp("source", None, "evil").exists() and not layout.src_dir("evil").exists()
    assert [p.name for p in layout.src_dir("evil").parent.iterdir()] == []  # no temporary folder left either
    assert not list(project.root.parent.rglob("pwned"))


def test_a_git_source_with_an_escaping_link_is_refused(project, tmp_path):
    work = tmp_path / "crate-repo"
    work.mkdir()
    (work / "pyproject.toml").write_text("[project]\nname = 'linky'\n")
    (work / "secret").symlink_to("/etc/hostname")
    git_source_recipe(project, "linky", work)
    run = project.doit("source:linky", check=False)
    assert (
        "linky.toml: the git source: 'secret' is a symbolic link to '/etc/hostname', outside the source" in run.output
    )
    assert not project.layout.src_dir("linky").exists()


def test_an_sdist_over_the_size_limit_fails_the_source_step_with_one_line(project, http_root):
    served, base = http_root
    sdist = _tar_bomb(served / "roomy-1.0.tar.gz", {"roomy-1.0/pyproject.toml": 10, "roomy-1.0/data.bin": 3 << 20})
    _url_recipe(project, "roomy", f"{base}/roomy-1.0.tar.gz", sha256_file(sdist))
    run = project.doit("source:roomy", check=False, env={"WASMWHEEL_UNPACK_MAX_SIZE": "2M"})
    assert (
        "roomy-1.0.tar.gz: unpacks to more than 2M (its member 'roomy-1.0/data.bin' reaches it); " + SIZE_LIMIT_TAIL
        in run.output
    )
    assert "Traceback" not in run.output and not project.layout.stamp("source", None, "roomy").exists()
    assert [p.name for p in project.layout.src_dir("roomy").parent.iterdir()] == []
    project.doit("source:roomy", env={"WASMWHEEL_UNPACK_MAX_SIZE": "4M"})  # within a raised limit, it unpacks


def test_a_crafted_sysroot_is_refused_and_the_toolchain_is_left_alone(project, http_root):
    served, base = http_root
    name = "emcc-4.0.9_nightly-2025-02-01.tar.bz2"
    (served / "crafted").mkdir(exist_ok=True)
    archive = make_tar(
        served / "crafted" / name,
        [
            ("wasm32-unknown-emscripten/lib/libstd.rlib", REG, b"std\n"),
            ("wasm32-unknown-emscripten/lib/evil", SYM, "/usr/lib"),
        ],
        "w:bz2",
    )
    from wasmwheel.toolchain.provision import write_sysroot_sha

    write_sysroot_sha(project.root / "abi" / "2025_0.toml", sha256_file(archive))
    run = project.doit("std:2025_0", check=False, env={"WASMWHEEL_SYSROOT_MIRROR": f"{base}/crafted"})
    assert (
        f"{name}: member 'wasm32-unknown-emscripten/lib/evil' is a symbolic link to the absolute path '/usr/lib'"
        in run.output
    )
    rust = project.layout.stamp("rust", "2025_0")
    import json

    rustlib = Path(json.loads(rust.read_text())["sysroot"]) / "lib" / "rustlib"
    assert not (rustlib / ".wasmwheel-installed.json").exists()
    assert not (rustlib / "wasm32-unknown-emscripten" / "lib" / "libstd.rlib").exists()
    assert not project.layout.stamp("std", "2025_0").exists()
    assert [p.name for p in rustlib.iterdir() if p.name.startswith(".sysroot.")] == []
