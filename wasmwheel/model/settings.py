"""User settings: where caches go, which mirrors to use, system or managed mode.

Settings come from environment variables so that the same values reach doit,
nox sessions and CI jobs without a config file. Every variable is documented in
the README's "Settings" section; :data:`VARIABLES` is the single list of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from wasmwheel.model.errors import ConfigError

DEFAULT_EMSDK_URL = "https://github.com/emscripten-core/emsdk.git"
DEFAULT_PYPI_URL = "https://pypi.org"
DEFAULT_NPM_REGISTRY = "https://registry.npmjs.org/"
# Far above any sdist or sysroot: the biggest sdists, with every crate vendored, unpack to a few
# hundred MiB and some 30 000 files.
DEFAULT_UNPACK_MAX_BYTES = 4 << 30
DEFAULT_UNPACK_MAX_FILES = 200_000

# How wasm is linked (WASMWHEEL_TOOLCHAIN). "lean" needs nothing beyond rustup, crates.io and npm;
# "emsdk" links with the ABI's Emscripten SDK (cloned from GitHub) like Pyodide's own builds.
TOOLCHAINS = {
    "lean": "rustc + std built from rust-src + the toolchain's rust-lld + binaryen's wasm-opt (no Emscripten SDK)",
    "emsdk": "the ABI's exact Emscripten SDK (emcc links, as in Pyodide's own builds; C/C++ sources compile)",
}
DEFAULT_TOOLCHAIN = "lean"

VARIABLES = {
    "WASMWHEEL_CACHE": "shared downloads and toolchains (default: $XDG_CACHE_HOME/wasmwheel or ~/.cache/wasmwheel)",
    "WASMWHEEL_BUILD_DIR": "per-repository build outputs, logs and doit state (default: <repo>/build)",
    "WASMWHEEL_TOOLCHAIN": f"lean (default) or emsdk: how crates are linked "
    f"({TOOLCHAINS['lean']}; or {TOOLCHAINS['emsdk']})",
    "WASMWHEEL_EMSDK_URL": f"git URL or local path of the Emscripten SDK repository (default: {DEFAULT_EMSDK_URL})",
    "WASMWHEEL_SYSROOT_MIRROR": "URL prefix or local folder; sysroot archives are fetched from <prefix>/<file name>",
    "WASMWHEEL_PATCH_MIRROR": "URL prefix or local folder (a path or file:// URL); Pyodide's Emscripten patches are "
    "fetched from <prefix>/<pyodide tag>/<file name> (emsdk toolchain)",
    "WASMWHEEL_SDIST_MIRROR": "URL prefix or local folder; recipe sdists are fetched from <prefix>/<file name>",
    "WASMWHEEL_PYPI_URL": f"PyPI base URL for the JSON API used by `new`/`bump` (default: {DEFAULT_PYPI_URL})",
    "WASMWHEEL_NPM_REGISTRY": f"npm registry for Pyodide runtimes (default: {DEFAULT_NPM_REGISTRY})",
    "WASMWHEEL_SYSTEM": "1 = use emcc and rustup toolchains already installed; verify them instead of provisioning",
    "WASMWHEEL_INDEX_URL": "public URL the index will be served from; makes pyodide-lock.json file names absolute",
    "WASMWHEEL_RETRY_BACKOFF": "seconds before the first retry of a failed download, doubling after each (default: 1)",
    "WASMWHEEL_VERBOSE": "1 = echo every step's log to the console as it is written",
    "WASMWHEEL_SMOKE_SERVER": "0 = boot one Node process per smoke test instead of the per-runtime smoke server "
    "(slow; for debugging)",
    "WASMWHEEL_SMOKE_WORKERS": "pre-booted interpreters per smoke server (default: the number of CPUs, at most 4)",
    "WASMWHEEL_SMOKE_IDLE": "seconds a smoke server stays up without work (default: 60)",
    "WASMWHEEL_CHROMIUM": "Chromium/Chrome executable for browser smoke tests (default: chromium on PATH)",
    "WASMWHEEL_UNPACK_MAX_SIZE": "most an archive (sdist, sysroot) may unpack to, in bytes or with K, M, G, T "
    "(default: 4G)",
    "WASMWHEEL_UNPACK_MAX_FILES": "most members an archive may hold (default: 200000)",
}


def _default_cache(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wasmwheel"


# Settings read where they are used, each time (a test sets them for one test): still read here only.
def retry_backoff(env: Mapping[str, str] | None = None) -> float:
    """WASMWHEEL_RETRY_BACKOFF: seconds before the first retry of a download (default 1)."""
    try:
        return float((os.environ if env is None else env).get("WASMWHEEL_RETRY_BACKOFF", "") or 1.0)
    except ValueError:
        return 1.0


def verbose(env: Mapping[str, str] | None = None) -> bool:
    """WASMWHEEL_VERBOSE: echo every step's log to the console."""
    return (os.environ if env is None else env).get("WASMWHEEL_VERBOSE", "") not in ("", "0")


def user_rust_homes(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The user's own RUSTUP_HOME and CARGO_HOME, when set (system mode keeps them)."""
    env = os.environ if env is None else env
    return {k: env[k] for k in ("RUSTUP_HOME", "CARGO_HOME") if env.get(k)}


def _truthy(name: str, value: str | None) -> bool:
    if value is None or value.strip() == "":
        return False
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError("environment", name, f"expected 1/0, true/false, yes/no; got {value!r}")


def _choice(name: str, value: str | None, choices: dict[str, str], default: str) -> str:
    if value is None or value.strip() == "":
        return default
    if value.strip() not in choices:
        raise ConfigError("environment", name, f"expected one of {', '.join(choices)}; got {value!r}")
    return value.strip()


def _count(name: str, value: str | None, default: int, minimum: int) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ConfigError("environment", name, f"expected a whole number >= {minimum}; got {value!r}")
    return number


_SIZE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B)?$", re.IGNORECASE)


def _size(name: str, value: str | None, default: int) -> int:
    """A size in bytes: ``123``, or with a binary unit: ``512K``, ``1.5G``, ``4GiB``."""
    if value is None or value.strip() == "":
        return default
    m = _SIZE_RE.match(value.strip())
    number = int(float(m.group(1)) * (1 << (10 * " KMGT".index(m.group(2).upper() or " ")))) if m else 0
    if number < 1:
        raise ConfigError(
            "environment", name, f"expected a size in bytes, or with K, M, G or T (e.g. 8G); got {value!r}"
        )
    return number


@dataclass(frozen=True)
class UnpackLimits:
    """What one archive may unpack to (Settings.unpack_limits; the defaults are generous)."""

    max_bytes: int = DEFAULT_UNPACK_MAX_BYTES
    max_members: int = DEFAULT_UNPACK_MAX_FILES


def format_size(n: int) -> str:
    """``n`` bytes as a size setting is written (what _size reads): 4 GiB -> '4G', 1536 KiB -> '1.5M'."""
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.4g}{unit}"
    return str(n)


@dataclass(frozen=True)
class Settings:
    root: Path
    cache_dir: Path
    build_dir: Path
    toolchain: str = DEFAULT_TOOLCHAIN  # a key of TOOLCHAINS
    emsdk_url: str = DEFAULT_EMSDK_URL
    sysroot_mirror: str | None = None
    patch_mirror: str | None = None  # a URL prefix (http, https or file://); a plain path is stored as file://
    sdist_mirror: str | None = None
    pypi_url: str = DEFAULT_PYPI_URL
    npm_registry: str = DEFAULT_NPM_REGISTRY
    system: bool = False
    index_url: str | None = None
    smoke_server: bool = True
    smoke_workers: int = 0  # 0: the number of CPUs, at most 4
    smoke_idle: int = 60
    chromium: str | None = None
    unpack_max_bytes: int = DEFAULT_UNPACK_MAX_BYTES
    unpack_max_files: int = DEFAULT_UNPACK_MAX_FILES

    @classmethod
    def from_env(cls, root: Path, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        root = Path(root).resolve()

        def path(name: str, default: Path) -> Path:
            value = env.get(name)
            return Path(value).expanduser().resolve() if value else default

        def url(name: str, default: str | None, folder: bool = False) -> str | None:
            """A URL; with ``folder``, also a local folder (what file:// names), given as a path."""
            value = (env.get(name) or "").strip()
            if not value:
                return default
            if "://" in value:
                return value
            if not folder:
                raise ConfigError(
                    "environment", name, f"expected a URL, got {value!r}", "e.g. http://localhost:8000/mirror"
                )
            local = Path(value).expanduser().resolve()
            if not local.is_dir():
                raise ConfigError(
                    "environment",
                    name,
                    f"expected a URL or a local folder, got {value!r}, and {local} is no folder",
                    "e.g. http://localhost:8000/mirror or /srv/mirror",
                )
            return str(local)

        return cls(
            root=root,
            cache_dir=path("WASMWHEEL_CACHE", _default_cache(env)),
            build_dir=path("WASMWHEEL_BUILD_DIR", root / "build"),
            toolchain=_choice("WASMWHEEL_TOOLCHAIN", env.get("WASMWHEEL_TOOLCHAIN"), TOOLCHAINS, DEFAULT_TOOLCHAIN),
            emsdk_url=url("WASMWHEEL_EMSDK_URL", DEFAULT_EMSDK_URL, folder=True) or DEFAULT_EMSDK_URL,
            sysroot_mirror=url("WASMWHEEL_SYSROOT_MIRROR", None, folder=True),
            patch_mirror=url("WASMWHEEL_PATCH_MIRROR", None, folder=True),
            sdist_mirror=url("WASMWHEEL_SDIST_MIRROR", None, folder=True),
            pypi_url=url("WASMWHEEL_PYPI_URL", DEFAULT_PYPI_URL) or DEFAULT_PYPI_URL,
            npm_registry=url("WASMWHEEL_NPM_REGISTRY", DEFAULT_NPM_REGISTRY) or DEFAULT_NPM_REGISTRY,
            system=_truthy("WASMWHEEL_SYSTEM", env.get("WASMWHEEL_SYSTEM")),
            index_url=url("WASMWHEEL_INDEX_URL", None),
            smoke_server=_truthy("WASMWHEEL_SMOKE_SERVER", env.get("WASMWHEEL_SMOKE_SERVER") or "1"),
            smoke_workers=_count("WASMWHEEL_SMOKE_WORKERS", env.get("WASMWHEEL_SMOKE_WORKERS"), 0, 1),
            smoke_idle=_count("WASMWHEEL_SMOKE_IDLE", env.get("WASMWHEEL_SMOKE_IDLE"), 60, 1),
            chromium=(env.get("WASMWHEEL_CHROMIUM") or "").strip() or None,
            unpack_max_bytes=_size(
                "WASMWHEEL_UNPACK_MAX_SIZE", env.get("WASMWHEEL_UNPACK_MAX_SIZE"), DEFAULT_UNPACK_MAX_BYTES
            ),
            unpack_max_files=_count(
                "WASMWHEEL_UNPACK_MAX_FILES", env.get("WASMWHEEL_UNPACK_MAX_FILES"), DEFAULT_UNPACK_MAX_FILES, 1
            ),
        )

    @property
    def unpack_limits(self) -> UnpackLimits:
        return UnpackLimits(max_bytes=self.unpack_max_bytes, max_members=self.unpack_max_files)

    @property
    def mode(self) -> str:
        return "system" if self.system else "managed"
