"""Pyodide ABIs: one TOML file per ABI under ``abi/``, parsed into frozen dataclasses.

An ABI file pins everything that must match the Pyodide runtime: the Python and
Emscripten versions (with the patches Pyodide applies to that Emscripten), the Rust
toolchain and its target-only flags, the sysroot (where the toolchain needs one), the
wheel tags and the Pyodide runtime used for smoke tests. See ``abi/2026_0.toml`` for an annotated example.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from wasmwheel.model.errors import ConfigError
from wasmwheel.model.schema import NAME_RE, Table, check_http_url, check_rustflag, check_sha256, parse_toml

ABI_NAME_RE = re.compile(r"^[0-9]{4}_[0-9]+\Z")
PEP783_TAG_RE = re.compile(r"^(pyemscripten|pyodide)_([0-9]{4}_[0-9]+)_wasm32\Z")
LEGACY_TAG_RE = re.compile(r"^emscripten_[0-9]+_[0-9]+_[0-9]+_wasm32\Z")
TOOLCHAIN_RE = re.compile(r"^(?:[0-9]+\.[0-9]+\.[0-9]+|(?:nightly|beta)-[0-9]{4}-[0-9]{2}-[0-9]{2})\Z")
PYTHON_RE = re.compile(r"^3\.[0-9]+\.[0-9]+(?:(?:a|b|rc)[0-9]+)?\Z")
SEMVER3_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+\Z")
NPM_VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.]+)?\Z")
RUST_TARGET = "wasm32-unknown-emscripten"
# Where std for the target comes from (``[rust] std``); each ends in the toolchain's
# lib/rustlib/wasm32-unknown-emscripten/lib.
STD_SOURCES = {
    "source": "built once from the toolchain's rust-src with std_rustflags",
    "rustup": "the toolchain's prebuilt rust-std component",
    "sysroot": "the archive named by [rust.sysroot]",
}


@dataclass(frozen=True)
class Sysroot:
    url: str
    sha256: str | None  # None: not pinned yet (`doit pin-sysroot:<abi>`)

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Patch:
    """One of Pyodide's patches to Emscripten (``[[emsdk.patches]]``)."""

    url: str
    sha256: str | None  # None: not pinned yet (`doit pin-patches:<abi>`)

    @property
    def name(self) -> str:
        return self.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class EmscriptenPatches:
    """The patches the ABI's Pyodide release applies to its Emscripten (pyodide's ``emsdk/patches/`` at
    ``pyodide_tag``), in the order they are applied."""

    pyodide_tag: str
    patches: tuple[Patch, ...]

    def config(self) -> dict[str, Any]:
        """What of them shapes an installed Emscripten: the release, and each patch's name and digest."""
        return {"pyodide_tag": self.pyodide_tag, "patches": [[p.name, p.sha256 or ""] for p in self.patches]}


def flag_units(flags: tuple[str, ...] | list[str]) -> list[str]:
    """rustflags as single units: ``["-Z", "x"]`` and ``["-Zx"]`` are both ``-Zx``, so two lists can be compared."""
    out: list[str] = []
    i = 0
    while i < len(flags):
        flag = flags[i]
        if flag in ("-Z", "-C") and i + 1 < len(flags):
            out.append(flag + flags[i + 1])
            i += 2
            continue
        out.append(flag)
        i += 1
    return out


@dataclass(frozen=True)
class Lean:
    """The lean toolchain's settings for one ABI: binaryen's version and the wasm-opt flags the ABI's
    emcc runs on side modules (without ``-O<n>``, which comes from the link line)."""

    binaryen: str
    wasm_opt_flags: tuple[str, ...]


@dataclass(frozen=True)
class Abi:
    name: str
    path: Path
    python: str
    emscripten: str
    platform_tag: str
    legacy_tags: tuple[str, ...]
    exception_handling: str  # "js" or "wasm"
    rust_toolchain: str
    rustflags: tuple[str, ...]
    sysroot: Sysroot | None
    pyodide_version: str
    status: str = "stable"
    std: str = "source"  # a key of STD_SOURCES
    std_rustflags: tuple[str, ...] = ()
    lean: Lean | None = None
    emsdk: EmscriptenPatches | None = None  # [emsdk]: Pyodide's patches to Emscripten (None: a plain Emscripten)

    @property
    def runtime_lock_dir(self) -> Path:
        """abi/runtimes/<pyodide version>/ beside this file: the runtime's committed npm lock and exports
        (the runtime itself is installed in the cache: Layout.runtime_dir)."""
        return Path(self.path).parent / "runtimes" / self.pyodide_version

    @property
    def python_minor(self) -> str:
        v = Version(self.python)
        return f"{v.major}.{v.minor}"

    @property
    def interpreter(self) -> str:
        """The `-i` argument maturin gets, e.g. ``python3.13``."""
        return f"python{self.python_minor}"

    @property
    def cp_tag(self) -> str:
        v = Version(self.python)
        return f"cp{v.major}{v.minor}"

    @property
    def pep783_version(self) -> str | None:
        m = PEP783_TAG_RE.match(self.platform_tag)
        return m.group(2) if m else None

    @property
    def all_platform_tags(self) -> tuple[str, ...]:
        return (self.platform_tag, *self.legacy_tags)

    @property
    def is_nightly(self) -> bool:
        return not SEMVER3_RE.match(self.rust_toolchain)

    def maturin_tag_env(self) -> dict[str, str]:
        """Environment that makes maturin emit :attr:`platform_tag` directly.

        maturin >= 1.14 resolves ``pyemscripten_<v>`` from
        MATURIN_PYEMSCRIPTEN_PLATFORM_VERSION and ``pyodide_<v>`` from
        MATURIN_PYODIDE_ABI_VERSION; older releases ignore both and the retag
        step fixes the tag instead.
        """
        m = PEP783_TAG_RE.match(self.platform_tag)
        if not m:
            return {}
        if m.group(1) == "pyemscripten":
            return {"MATURIN_PYEMSCRIPTEN_PLATFORM_VERSION": m.group(2)}
        return {"MATURIN_PYODIDE_ABI_VERSION": m.group(2)}

    def toolchain_config(self) -> dict[str, Any]:
        """What shapes the Rust toolchain install (not the flags): the prebuilt std comes with the
        toolchain only for ``std = "rustup"``; building std needs the rust-src component."""
        if self.std == "rustup":
            return {"toolchain": self.rust_toolchain, "target": RUST_TARGET}
        if self.std == "source":
            return {"toolchain": self.rust_toolchain, "component": "rust-src"}
        return {"toolchain": self.rust_toolchain}

    def emsdk_config(self) -> dict[str, Any]:
        """What shapes the ABI's installed Emscripten: its version and the patches applied to it (names and
        sha256, in order), so that a changed pin reruns the emsdk step and the compiles that link with it."""
        patches = self.emsdk.config() if self.emsdk else {"pyodide_tag": None, "patches": []}
        return {"emscripten": self.emscripten, **patches}

    def std_config(self) -> dict[str, Any]:
        """What shapes std for the target: where it comes from and, built from source, its flags."""
        config: dict[str, Any] = {"toolchain": self.rust_toolchain, "std": self.std}
        if self.std == "source":
            config["rustflags"] = list(self.std_rustflags)
        elif self.std == "sysroot" and self.sysroot:
            config.update(url=self.sysroot.url, sha256=self.sysroot.sha256)
        return config

    @property
    def std_key(self) -> str:
        """Names the toolchain folder together with its std, so that two ABIs on one toolchain with
        different std builds never share (and overwrite) one std: ``src``, ``src-<digest of flags>``,
        the sysroot archive's stem, or ``""`` for rustup's own."""
        if self.std == "sysroot" and self.sysroot:
            stem = self.sysroot.filename
            for suffix in (".tar.bz2", ".tar.gz", ".tar.xz", ".tgz", ".tar"):
                stem = stem.removesuffix(suffix)
            return stem
        if self.std == "source":
            if not self.std_rustflags:
                return "src"
            return "src-" + hashlib.sha256("\0".join(flag_units(self.std_rustflags)).encode()).hexdigest()[:10]
        return ""

    def compile_config(self) -> dict[str, Any]:
        """Everything from this ABI that shapes a compiled wheel."""
        return {
            "python": self.python_minor,
            "toolchain": self.rust_toolchain,
            "rustflags": list(self.rustflags),
            "std": self.std_config(),
            "exception_handling": self.exception_handling,
            "tag_env": self.maturin_tag_env(),
        }


def _check_python(value: str) -> str | None:
    return None if PYTHON_RE.match(value) else "not a version of CPython 3 (X.Y.Z, or X.Y.Z with a, b or rc N)"


def _check_semver3(value: str) -> str | None:
    return None if SEMVER3_RE.match(value) else "not an X.Y.Z version"


def _check_toolchain(value: str) -> str | None:
    return None if TOOLCHAIN_RE.match(value) else "not a rustup toolchain name"


def _check_platform_tag(value: str) -> str | None:
    return None if PEP783_TAG_RE.match(value) or LEGACY_TAG_RE.match(value) else "not an Emscripten platform tag"


def _check_sysroot_url(value: str) -> str | None:
    problem = check_http_url(value)
    if problem:
        return problem
    if not value.split("?", 1)[0].endswith((".tar.bz2", ".tar.gz", ".tar.xz", ".tgz")):
        return "does not name a tar archive"
    return None


def _check_wasm_opt_flag(value: str) -> str | None:
    if not value.startswith("-") or any(c.isspace() for c in value):
        return "not one wasm-opt flag"
    if re.fullmatch(r"-O[0-4sz]?", value):
        return "the optimisation level comes from the link line (cargo's opt-level), as with emcc; remove it"
    if value == "--all-features":
        return (
            "enables features Pyodide's runtimes cannot instantiate (measured: 'unknown import kind 0x7f'); "
            "name the ABI's features with --enable-..."
        )
    return None


# raw.githubusercontent.com/pyodide/pyodide/<ref>/...: the ref must be the ABI's Pyodide tag.
PYODIDE_RAW_RE = re.compile(r"^https://raw\.githubusercontent\.com/pyodide/pyodide/([^/]+)/")


def _check_patch_url(value: str) -> str | None:
    problem = check_http_url(value)
    if problem:
        return problem
    name = value.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if not name.endswith(".patch"):
        return "does not name a .patch file"
    if not NAME_RE.match(name):
        return "its file name is not plain (letters, digits, '.', '_', '-')"
    return None


def _load_patches(top: Table, name: str) -> EmscriptenPatches | None:
    if not top.has("emsdk"):
        return None
    et = top.table("emsdk")
    fix = f"run `doit pin-patches:{name}` to record it"
    tag = et.string(
        "pyodide_tag",
        required=True,
        expect='the Pyodide release tag whose emsdk/patches/ these are, like "0.29.4"',
        check=lambda v: None if NAME_RE.match(v) else "not a git tag name",
    )
    patches: list[Patch] = []
    for pt in et.table_list(
        "patches",
        expect="a list of [[emsdk.patches]] tables (url, sha256)",
        fix='write each as [[emsdk.patches]] with url = "..." and sha256 = "..."',
    ):
        url = pt.string(
            "url",
            required=True,
            expect="the URL of one of Pyodide's emsdk/patches/*.patch files",
            check=_check_patch_url,
        )
        sha = pt.string(
            "sha256",
            default="",
            expect="64 hex characters or empty (not pinned yet)",
            check=lambda v: None if v == "" else check_sha256(v),
            fix=fix,
        )
        pt.done()
        m = PYODIDE_RAW_RE.match(url or "")
        if m and m.group(1) != tag:
            raise pt.error(
                "url",
                f"is Pyodide {m.group(1)}'s patch, but pyodide_tag = {tag!r}",
                f"use https://raw.githubusercontent.com/pyodide/pyodide/{tag}/emsdk/patches/<name>",
            )
        patch = Patch(url=url or "", sha256=sha or None)
        if any(p.name == patch.name for p in patches):
            raise pt.error("url", f"names {patch.name} a second time", "list each patch once")
        patches.append(patch)
    et.done()
    return EmscriptenPatches(pyodide_tag=tag or "", patches=tuple(patches))


def load_abi(path: Path, root: Path | None = None) -> Abi:
    """Parse and validate one ABI file. Raises ConfigError naming file and key. ``root``: the
    repository, which a symbolic link in place of the file may not leave."""
    path = Path(path)
    name = path.stem
    if not ABI_NAME_RE.match(name):
        raise ConfigError(path, "", f"ABI file name {name!r} is not <year>_<patch>", "rename it, e.g. abi/2026_0.toml")
    top = Table(path, parse_toml(path, root=root))
    python = top.string("python", required=True, expect='a Python version like "3.13.2"', check=_check_python)
    emscripten = top.string(
        "emscripten", required=True, expect='an Emscripten version like "4.0.9"', check=_check_semver3
    )
    platform_tag = top.string(
        "platform_tag", required=True, expect='a tag like "pyemscripten_2026_0_wasm32"', check=_check_platform_tag
    )
    m = PEP783_TAG_RE.match(platform_tag or "")
    if m and m.group(2) != name:
        raise top.error(
            "platform_tag",
            f"{platform_tag!r} is for ABI {m.group(2)}, but this file is ABI {name}",
            f"use pyemscripten_{name}_wasm32 or rename the file",
        )
    legacy = top.string_list("legacy_tags", expect="a list of platform tags", check=_check_platform_tag)
    emscripten_tag = "emscripten_" + (emscripten or "").replace(".", "_") + "_wasm32"
    for key, tag in [("platform_tag", platform_tag or ""), *((f"legacy_tags[{i}]", t) for i, t in enumerate(legacy))]:
        if LEGACY_TAG_RE.match(tag) and tag != emscripten_tag:
            raise top.error(
                key, f"{tag!r} names another Emscripten than emscripten = {emscripten!r}", f"use {emscripten_tag}"
            )
    eh = top.string(
        "exception_handling",
        required=True,
        expect='"js" or "wasm"',
        check=lambda v: None if v in ("js", "wasm") else "unknown exception-handling ABI",
    )
    status = top.string(
        "status",
        default="stable",
        expect='"stable" or "development"',
        check=lambda v: None if v in ("stable", "development") else "unknown status",
    )

    rust = top.table("rust", required=True)
    toolchain = rust.string(
        "toolchain", required=True, expect='"1.93.0" or "nightly-YYYY-MM-DD"', check=_check_toolchain
    )
    rustflags = rust.string_list(
        "rustflags", check=check_rustflag, fix='one flag per item, e.g. ["-C", "link-arg=-sSIDE_MODULE=2"]'
    )
    if SEMVER3_RE.match(toolchain or "") and any(f == "-Z" or f.startswith("-Z") for f in rustflags):
        raise rust.error(
            "rustflags",
            f"-Z flags need a nightly toolchain; stable {toolchain} rejects them",
            "remove the -Z flags (stable >= 1.93 needs no -Z emscripten-wasm-eh) or use a nightly",
        )
    std = rust.string(
        "std",
        default="sysroot" if rust.has("sysroot") else "source",
        expect=" or ".join(f'"{k}" ({v})' for k, v in STD_SOURCES.items()),
        check=lambda v: None if v in STD_SOURCES else "not a way to get std",
    )
    std_rustflags = rust.string_list(
        "std_rustflags", check=check_rustflag, fix='one flag per item, e.g. ["-Z", "emscripten-wasm-eh"]'
    )
    if std_rustflags and std != "source":
        raise rust.error(
            "std_rustflags",
            f'only std = "source" builds std; std = "{std}" comes prebuilt',
            'remove std_rustflags, or set std = "source"',
        )
    missing = [f for f in flag_units(std_rustflags) if f not in flag_units(rustflags)]
    if missing:
        raise rust.error(
            "std_rustflags",
            f"{' '.join(missing)} would build std differently from the crates "
            "(a wasm-EH crate against a JS-EH std links, then fails in Pyodide)",
            "give every std flag to rustflags too",
        )
    if std == "sysroot" and not rust.has("sysroot"):
        raise rust.error(
            "std",
            'std = "sysroot" needs a [rust.sysroot] table with the archive\'s url and sha256',
            'add [rust.sysroot], or use std = "source"',
        )
    if std != "sysroot" and rust.has("sysroot"):
        raise rust.error(
            "sysroot",
            f'[rust.sysroot] is only used with std = "sysroot", and std = "{std}"',
            'set std = "sysroot", or remove the table (keep it as a comment)',
        )
    sysroot = None
    if rust.has("sysroot"):
        st = rust.table("sysroot")
        url = st.string(
            "url",
            required=True,
            expect="the URL of a .tar.bz2/.tar.gz/.tar.xz sysroot archive",
            check=_check_sysroot_url,
        )
        sha = st.string(
            "sha256",
            default="",
            expect="64 hex characters or empty (not pinned yet)",
            check=lambda v: None if v == "" else check_sha256(v),
            fix=f"run `doit pin-sysroot:{name}` to record it",
        )
        st.done()
        sysroot = Sysroot(url=url or "", sha256=sha or None)
    rust.done()

    lean = None
    if top.has("lean"):
        lt = top.table("lean")
        binaryen = lt.string(
            "binaryen",
            required=True,
            expect='an npm version of binaryen like "132.0.0"',
            check=lambda v: None if NPM_VERSION_RE.match(v) else "not an npm version",
        )
        opt_flags = lt.string_list(
            "wasm_opt_flags",
            check=_check_wasm_opt_flag,
            fix='one flag per item, e.g. ["--post-emscripten", "--enable-exception-handling"]',
        )
        lt.done()
        lean = Lean(binaryen=binaryen or "", wasm_opt_flags=opt_flags)

    emsdk = _load_patches(top, name)

    pyodide = top.table("pyodide", required=True)
    pyodide_version = pyodide.string(
        "version",
        required=True,
        expect='an npm version of pyodide like "314.0.7"',
        check=lambda v: None if NPM_VERSION_RE.match(v) else "not an npm version",
    )
    pyodide.done()
    top.done()
    return Abi(
        name=name,
        path=path,
        python=python or "",
        emscripten=emscripten or "",
        platform_tag=platform_tag or "",
        legacy_tags=legacy,
        exception_handling=eh or "",
        rust_toolchain=toolchain or "",
        rustflags=rustflags,
        sysroot=sysroot,
        pyodide_version=pyodide_version or "",
        status=status or "stable",
        std=std or "source",
        std_rustflags=std_rustflags,
        lean=lean,
        emsdk=emsdk,
    )


def abi_files(abi_dir: Path) -> list[Path]:
    """The ABI files of a folder: ``*.toml`` without hidden files (editor locks and backups)."""
    return sorted(p for p in Path(abi_dir).glob("*.toml") if not p.name.startswith("."))


def load_abis(abi_dir: Path) -> dict[str, Abi]:
    """Load every ABI file in ``abi_dir`` (sorted by name). Raises on the first bad file:
    every recipe depends on the ABIs, so a broken one must be fixed first."""
    abis: dict[str, Abi] = {}
    files = abi_files(abi_dir)
    if not files:
        raise ConfigError(abi_dir, "", "no ABI files (*.toml) found")
    for path in files:
        abi = load_abi(path, Path(abi_dir).parent)
        abis[abi.name] = abi
    return abis
