"""Recipes: one TOML file per crate under ``recipes/`` (format v1), parsed into frozen dataclasses.

A recipe says where the source comes from (an sdist URL + sha256, a git URL +
commit, or a local path), how to build it (maturin arguments, cargo features,
extra target rustflags, environment, which ABIs to leave out and why) and how to
smoke-test it in Pyodide. See ``recipes/hello-pyo3.toml`` and the README.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wasmwheel.model.errors import ConfigError
from wasmwheel.model.schema import (
    NAME_RE,
    Table,
    check_env_name,
    check_http_url,
    check_no_control,
    check_no_nul,
    check_rustflag,
    check_sha256,
    parse_toml,
)

GIT_COMMIT_RE = re.compile(r"^[0-9a-f]{40}\Z")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
# `maturin build` options a recipe may not give, and why: wasmwheel sets them from the ABI, or
# they would make maturin read or write outside the step's own folders.
_FROM_ABI = "is set by wasmwheel from the ABI"
RESERVED_MATURIN_ARGS = {
    "--target": _FROM_ABI,
    "-i": _FROM_ABI,
    "--interpreter": _FROM_ABI,
    "-f": "conflicts with the ABI's interpreter (set by wasmwheel)",
    "--find-interpreter": "conflicts with the ABI's interpreter (set by wasmwheel)",
    "-o": "is set by wasmwheel, which collects the wheel itself",
    "--out": "is set by wasmwheel, which collects the wheel itself",
    "-r": "is set by wasmwheel (every build is --release)",
    "--release": "is set by wasmwheel (every build is --release)",
    "--profile": "is set by wasmwheel (every build is --release)",
    "--target-dir": "is set by wasmwheel (one cargo target folder per crate and ABI, under build/)",
    "-m": "would build another project than the source; use [source] subdir",
    "--manifest-path": "would build another project than the source; use [source] subdir",
    "--sdist": "would write a second file; wasmwheel builds one wheel",
}
# Short options that take a value: in a cluster like `-vj4`, what follows them is their value.
_SHORT_WITH_VALUE = set("ibojFmZ")
# Environment wasmwheel sets for every compile; recipes use the [build] keys instead.
RESERVED_ENV = {
    "RUSTFLAGS": "use [build] rustflags",
    "CARGO_ENCODED_RUSTFLAGS": "use [build] rustflags",
    "CARGO_TARGET_WASM32_UNKNOWN_EMSCRIPTEN_RUSTFLAGS": "use [build] rustflags",
    "CARGO_BUILD_TARGET": "set by wasmwheel",
    "CARGO_TARGET_DIR": "set by wasmwheel (one warm target folder per crate and ABI)",
    "CARGO_HOME": "set by wasmwheel",
    "RUSTUP_HOME": "set by wasmwheel",
    "RUSTUP_TOOLCHAIN": "comes from the ABI file",
    "PATH": "set by wasmwheel",
    "EMSDK": "set by wasmwheel",
    "EM_CONFIG": "set by wasmwheel",
    "WASMWHEEL_BUILD_WHEELS": "set by wasmwheel from [depends] build",
}
RECIPE_FORMAT = 1


@dataclass(frozen=True)
class Source:
    kind: str  # "url" | "git" | "path"
    url: str | None = None
    sha256: str | None = None
    git: str | None = None
    commit: str | None = None
    path: Path | None = None  # absolute, resolved
    subdir: str = ""
    patches: tuple[Path, ...] = ()  # absolute, resolved

    @property
    def filename(self) -> str:
        assert self.url
        return self.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]

    def config(self, root: Path) -> dict[str, Any]:
        """Identity of the source for staleness: location-independent paths."""
        return {
            "kind": self.kind,
            "url": self.url,
            "sha256": self.sha256,
            "git": self.git,
            "commit": self.commit,
            "path": self.path.relative_to(root).as_posix() if self.path else None,
            "subdir": self.subdir,
            "patches": [p.relative_to(root).as_posix() for p in self.patches],
        }


@dataclass(frozen=True)
class Build:
    maturin_args: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    rustflags: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    skip_abis: Mapping[str, str] = field(default_factory=dict)  # ABI name -> reason
    # Why the crate needs the Emscripten SDK (it compiles C/C++ for the target), or None: under the lean
    # toolchain such a recipe is skipped with this reason.
    needs_emsdk: str | None = None

    def config(self) -> dict[str, Any]:
        return {
            "maturin_args": list(self.maturin_args),
            "features": list(self.features),
            "rustflags": list(self.rustflags),
            "env": dict(sorted(self.env.items())),
        }


DEFAULT_TEST_TIMEOUT = 300  # seconds
MAX_TEST_TIMEOUT = 3600
TEST_ENVIRONMENTS = ("node", "browser")


@dataclass(frozen=True)
class Test:
    script: str
    requirements: tuple[str, ...] = ()
    timeout: int = DEFAULT_TEST_TIMEOUT  # seconds to install and test, after Pyodide has booted
    # Where the test is known to fail, with the reason. Keys: an environment ("node",
    # "browser"), an ABI ("2024_0"), or both ("node@2024_0").
    expected_failures: Mapping[str, str] = field(default_factory=dict)

    def expected_failure_key(self, environment: str, abi: str) -> str | None:
        """The mark that expects the test to fail in ``environment`` on ``abi``: the most
        specific one (environment@ABI, then the ABI, then the environment), or None."""
        return next((k for k in (f"{environment}@{abi}", abi, environment) if k in self.expected_failures), None)

    def expected_failure(self, environment: str, abi: str) -> str | None:
        """The reason the test is expected to fail in ``environment`` on ``abi``, or None."""
        key = self.expected_failure_key(environment, abi)
        return self.expected_failures[key] if key else None

    def config(self, environment: str = "node", abi: str = "") -> dict[str, Any]:
        """What shapes the smoke result in ``environment`` on ``abi``."""
        return {
            "script": self.script,
            "requirements": list(self.requirements),
            "timeout": self.timeout,
            "expected_failure": self.expected_failure(environment, abi),
        }


@dataclass(frozen=True)
class Depends:
    """Other recipes this one needs, by canonical name, for the same ABI."""

    test: tuple[str, ...] = ()  # their wheels are installed before the smoke test (transitively)
    build: tuple[str, ...] = ()  # built first; their wheels are listed in WASMWHEEL_BUILD_WHEELS


@dataclass(frozen=True)
class Recipe:
    name: str  # canonical (PEP 503) name: task names, file names
    path: Path
    package_name: str
    version: str
    import_names: tuple[str, ...]
    source: Source
    build: Build
    test: Test
    depends: Depends = Depends()

    @property
    def wheel_name(self) -> str:
        """Distribution name as it appears in wheel file names."""
        return re.sub(r"[-_.]+", "_", self.package_name).lower()

    def files_exist(self) -> bool:
        """The files the recipe refers to are still there (its local source folder, its patches)."""
        src = self.source
        return (src.path is None or src.path.is_dir()) and all(p.is_file() for p in src.patches)

    def skips(self, abi_names: list[str] | tuple[str, ...], toolchain: str = "emsdk") -> dict[str, str]:
        """The ABIs of ``abi_names`` this recipe does not build for with ``toolchain``, with the reason."""
        reasons = {a: self.build.skip_abis[a] for a in abi_names if a in self.build.skip_abis}
        if toolchain == "lean" and self.build.needs_emsdk:
            why = f"needs emsdk: {self.build.needs_emsdk} (build it with WASMWHEEL_TOOLCHAIN=emsdk)"
            reasons.update({a: why for a in abi_names if a not in reasons})
        return reasons

    def abis(self, abi_names: list[str] | tuple[str, ...], toolchain: str = "emsdk") -> list[str]:
        """The ABIs this recipe builds for with ``toolchain``, in the given order."""
        skips = self.skips(abi_names, toolchain)
        return [a for a in abi_names if a not in skips]


def default_test_script(import_names: tuple[str, ...]) -> str:
    return "".join(f"import {n}\n" for n in import_names)


# -- checks ---------------------------------------------------------------------


def _check_name(value: str) -> str | None:
    return None if NAME_RE.match(value) else "not a valid package name (letters, digits, . _ -)"


def _check_version(value: str) -> str | None:
    if value != value.strip():
        return "has spaces or line breaks around it"
    try:
        Version(value)
    except InvalidVersion:
        return "not a PEP 440 version"
    return None


def _check_import_name(value: str) -> str | None:
    parts = value.split(".")
    if not all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
        return "not a Python module name"
    return None


def _check_url(value: str) -> str | None:
    problem = check_http_url(value)
    if problem:
        return problem
    path = value.split("?", 1)[0]
    if not path.endswith(ARCHIVE_SUFFIXES):
        return "does not name an sdist archive (" + ", ".join(ARCHIVE_SUFFIXES) + ")"
    return None


def _sdist_version(url: str) -> Version | None:
    """The version an sdist URL's file name states (``demo-1.2.3.tar.gz``), if it follows the sdist naming."""
    from packaging.utils import InvalidSdistFilename, parse_sdist_filename

    filename = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".tgz", ".tar.bz2", ".tar.xz"):  # older sdists; packaging reads .tar.gz and .zip
        if filename.endswith(suffix):
            filename = filename[: -len(suffix)] + ".tar.gz"
    try:
        return parse_sdist_filename(filename)[1]
    except (InvalidSdistFilename, InvalidVersion):
        return None


def _check_git_url(value: str) -> str | None:
    if value.startswith("-"):
        return "starts with '-'"
    if check_no_control(value):
        return "contains control characters"
    m = re.match(r"^(?:https?|git|ssh|file)://(?:[^/@\s]*@)?([^\s]*)\Z", value) or re.match(
        r"^[\w.-]+@([\w.-]+:[^\s]+)\Z", value
    )
    if not m:
        return "not a git URL (https://, ssh://, git://, file:// or user@host:path)"
    if m.group(1).startswith("-"):
        return "its host starts with '-' (git would read it as an option)"
    return None


def _check_relative(value: str) -> str | None:
    if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value):
        return "is absolute"
    return check_no_nul(value)


def _check_subdir(value: str) -> str | None:
    problem = _check_relative(value)
    if problem:
        return problem
    if ".." in Path(value).parts:
        return "contains '..'"
    return None


def _check_feature(value: str) -> str | None:
    return None if re.match(r"^[A-Za-z0-9_][A-Za-z0-9_./+-]*\Z", value) else "not a cargo feature name"


# Target rustflags that give the module shared memory, which no Pyodide runtime has (audit WW103).
_SHARED_MEMORY_FLAGS = ("+atomics", "-pthread", "USE_PTHREADS", "SHARED_MEMORY")


def _check_recipe_rustflag(value: str) -> str | None:
    problem = check_rustflag(value)
    if problem:
        return problem
    for needle in _SHARED_MEMORY_FLAGS:
        if needle in value:
            return (
                f"{needle} gives the module shared memory (threads), which Pyodide does not have: "
                "the wheel would fail to load (audit WW103)"
            )
    return None


def _check_requirement(value: str) -> str | None:
    try:
        requirement = Requirement(value)
    except InvalidRequirement as exc:
        return f"not a PEP 508 requirement ({str(exc).splitlines()[0]})"
    if requirement.url:
        # pip would fetch it from anywhere (a file:// path included), unverified and outside the index.
        return "names a URL (name @ URL); test requirements come from the package index by name and version"
    return None


def _check_maturin_arg(value: str) -> str | None:
    problem = check_no_nul(value)
    if problem:
        return problem
    flag = value.split("=", 1)[0]
    if value.startswith("-") and any(c.isspace() for c in flag):
        return (
            "holds several arguments in one item; maturin gets each item as one argument (no shell splits "
            'it), so write one argument per item, e.g. ["--locked", "--offline"]'
        )
    if flag in RESERVED_MATURIN_ARGS:
        return f"{flag} {RESERVED_MATURIN_ARGS[flag]}"
    if value.startswith("-") and not value.startswith("--"):
        for c in value[1:]:  # a cluster of short options, e.g. -vo/tmp
            if f"-{c}" in RESERVED_MATURIN_ARGS:
                return f"-{c} (in {value[:20]!r}) {RESERVED_MATURIN_ARGS['-' + c]}"
            if c in _SHORT_WITH_VALUE:
                break
    return None


def _inside(root: Path, path: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _resolve_in_repo(table: Table, key: str, value: str, base: Path, root: Path, want_dir: bool | None) -> Path:
    shown = value if len(value) <= 80 else value[:77] + "..."
    try:
        resolved = (base / value).resolve()
        inside = _inside(root, resolved)
        exists = inside and resolved.exists()
        is_dir = exists and resolved.is_dir()
        is_file = exists and resolved.is_file()
    except (OSError, RuntimeError) as exc:  # too long, a symlink loop, ...
        reason = getattr(exc, "strerror", None) or str(exc)
        raise table.error(
            key, f"{shown!r} cannot be used as a path ({reason})", "fix the path; it is relative to the recipe file"
        ) from None
    if not inside:
        raise table.error(
            key, f"{shown!r} points outside the repository ({root})", "keep sources and patches inside the repository"
        )
    if not exists:
        raise table.error(
            key, f"{shown!r} does not exist (looked at {resolved})", "fix the path; it is relative to the recipe file"
        )
    if want_dir is True and not is_dir:
        raise table.error(key, f"{shown!r} is not a folder")
    if want_dir is False and not is_file:
        raise table.error(key, f"{shown!r} is not a file")
    return resolved


# -- loading ----------------------------------------------------------------------


def _check_expected_failure_key(
    key: str, abi_names: list[str] | tuple[str, ...], skipped: Mapping[str, str]
) -> str | None:
    environment, at, abi = key.partition("@")
    if not at:
        environment, abi = (key, "") if key in TEST_ENVIRONMENTS or not re.fullmatch(r"\d+_\d+", key) else ("", key)
    if environment and environment not in TEST_ENVIRONMENTS:
        return (
            f"unknown environment {environment!r} (known: {', '.join(TEST_ENVIRONMENTS)}; "
            f"or an ABI, or environment@ABI)"
        )
    if at and not abi:
        return "no ABI after @ (environment@ABI, e.g. node@2024_0)"
    if abi and abi not in abi_names:
        return f"unknown ABI {abi!r} (known: {', '.join(sorted(abi_names))})"
    if abi in skipped:
        return f"ABI {abi} is in [build] skip_abis: no wheel, so no test, for it"
    return None


def load_recipe(
    path: Path,
    abi_names: list[str] | tuple[str, ...],
    root: Path,
    text: str | None = None,
    url_matches_version: bool = True,
) -> Recipe:
    """Parse and validate one recipe. Raises ConfigError naming file and key.

    ``url_matches_version=False`` accepts an sdist URL naming another version than ``package.version``
    (for ``bump``, which repairs exactly that)."""
    path = Path(path)
    root = Path(root).resolve()
    top = Table(path, parse_toml(path, text, root))
    base = path.resolve().parent

    fmt = top.integer("format", default=RECIPE_FORMAT)
    if fmt != RECIPE_FORMAT:
        raise top.error("format", f"recipe format {fmt} is not supported (this wasmwheel reads format {RECIPE_FORMAT})")

    pkg = top.table("package", required=True)
    package_name = pkg.string("name", required=True, expect="the PyPI name of the package", check=_check_name) or ""
    version = pkg.string("version", required=True, expect='a PEP 440 version like "1.2.3"', check=_check_version) or ""
    name = canonicalize_name(package_name)
    if canonicalize_name(path.stem) != name:
        raise pkg.error(
            "name",
            f"{package_name!r} does not match the file name {path.name!r}",
            f"rename the file to {name}.toml or fix the name",
        )
    import_names = pkg.string_list("import_names", expect="a list of module names", check=_check_import_name)
    if not import_names:
        guess = re.sub(r"[-.]+", "_", package_name)
        if _check_import_name(guess):
            raise pkg.error(
                "import_names", "missing and cannot be guessed from the package name", 'add import_names = ["module"]'
            )
        import_names = (guess,)
    pkg.done()

    src = top.table("source", required=True)
    kinds = [k for k in ("url", "git", "path") if src.has(k)]
    if len(kinds) != 1:
        problem = "has no source" if not kinds else "gives several sources: " + ", ".join(kinds)
        raise src.error("", problem, "give exactly one of url (+ sha256), git (+ commit) or path")
    kind = kinds[0]
    url = sha256 = git = commit = None
    local: Path | None = None
    if kind == "url":
        url = src.string("url", required=True, expect="an sdist URL", check=_check_url)
        raw = src.data.get("sha256")
        upper = isinstance(raw, str) and re.fullmatch(r"[0-9a-fA-F]{64}", raw) is not None
        sha256 = src.string(
            "sha256",
            required=True,
            expect="the sdist's sha256 (64 hex characters)",
            check=check_sha256,
            fix="write it in lower case" if upper else "compute it with `sha256sum` on the downloaded file",
        )
        named = _sdist_version(url or "")
        if url_matches_version and named is not None and named != Version(version):
            raise src.error(
                "url",
                f"names version {named} of the sdist ({url.rsplit('/', 1)[-1]}), but package.version is {version}",
                "point url and sha256 at the sdist of that version (`python -m wasmwheel bump "
                f"{path.stem} {version}` does both), or fix the version",
            )
    elif kind == "git":
        git = src.string("git", required=True, expect="a git URL", check=_check_git_url)
        commit = src.string(
            "commit",
            required=True,
            expect="a full 40-character commit hash",
            check=lambda v: None if GIT_COMMIT_RE.match(v) else "not a full commit hash",
            fix="use `git rev-parse <tag>^{commit}`; tags and branches move",
        )
    else:
        rel = src.string("path", required=True, expect="a folder relative to the recipe file", check=_check_relative)
        local = _resolve_in_repo(src, "path", rel or "", base, root, want_dir=True)
    for other, owner in (("sha256", "url"), ("commit", "git")):
        if src.has(other) and kind != owner:
            raise src.error(other, f"only applies to a {owner} source, not a {kind} source", f"remove {other}")
    subdir = src.string("subdir", default="", expect="a relative folder inside the source", check=_check_subdir) or ""
    patch_names = src.string_list(
        "patches", expect="a list of patch files relative to the recipe", check=_check_relative
    )
    patches = tuple(
        _resolve_in_repo(src, f"patches[{i}]", p, base, root, want_dir=False) for i, p in enumerate(patch_names)
    )
    src.done()
    source = Source(
        kind=kind, url=url, sha256=sha256, git=git, commit=commit, path=local, subdir=subdir, patches=patches
    )

    bld = top.table("build")
    maturin_args = bld.string_list("maturin_args", check=_check_maturin_arg)
    features = bld.string_list("features", expect="a list of cargo feature names", check=_check_feature)
    rustflags = bld.string_list(
        "rustflags", check=_check_recipe_rustflag, fix='one flag per item, e.g. ["-C", "opt-level=s"]'
    )

    def env_key(k: str) -> str | None:
        problem = check_env_name(k)
        if problem:
            return problem
        if k in RESERVED_ENV:
            return f"{k} cannot be set by a recipe: {RESERVED_ENV[k]}"
        return None

    env = bld.string_map("env", key_check=env_key, value_check=check_no_nul, expect="a table of environment variables")
    known = set(abi_names)

    def skip_key(k: str) -> str | None:
        if k not in known:
            return f"unknown ABI {k!r} (known: {', '.join(sorted(known))})"
        return None

    skip = bld.string_map(
        "skip_abis",
        key_check=skip_key,
        value_check=lambda v: None if v.strip() else "empty reason",
        expect='a table of ABI = "reason"',
        fix="say why the ABI is left out",
        key_fix="name an ABI that has a file in abi/",
    )
    needs_emsdk = bld.string(
        "needs_emsdk",
        expect='why the crate needs the Emscripten SDK, e.g. "compiles zstd\'s C sources (zstd-sys)"',
        check=lambda v: None if v.strip() else "empty reason",
        fix="say what needs emcc (the lean toolchain skips the recipe with this reason)",
    )
    bld.done()
    build = Build(
        maturin_args=maturin_args,
        features=features,
        rustflags=rustflags,
        env=env,
        skip_abis=skip,
        needs_emsdk=needs_emsdk,
    )

    tst = top.table("test")
    script = tst.string("script", expect="Python code run in Pyodide after installing the wheel", check=check_no_nul)
    if script is None or not script.strip():
        script = default_test_script(import_names)
    try:
        # Pyodide runs the script with runPythonAsync, which allows a top-level await.
        compile(script, f"{path}:[test].script", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as exc:
        raise tst.error("script", f"Python syntax error on line {exc.lineno}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError, OverflowError):
        # CPython's compiler gives up on absurdly nested expressions with these.
        raise tst.error("script", "Python cannot compile it (nested too deeply)") from None
    requirements = tst.string_list("requirements", expect="a list of PEP 508 requirements", check=_check_requirement)
    timeout = tst.integer("timeout", default=DEFAULT_TEST_TIMEOUT, minimum=1)
    if timeout > MAX_TEST_TIMEOUT:
        raise tst.error("timeout", f"{timeout} s is more than {MAX_TEST_TIMEOUT} s", "a smoke test should take seconds")
    expected = tst.string_map(
        "expected_failures",
        key_check=lambda k: _check_expected_failure_key(k, abi_names, build.skip_abis),
        value_check=lambda v: None if v.strip() else "empty reason",
        expect='a table like { browser = "reason", "2024_0" = "reason", "node@2025_0" = "reason" }',
        fix="keys: node, browser, an ABI, or environment@ABI; each value says why the test fails there",
    )
    runs_in = [(env, abi) for abi in abi_names if abi not in build.skip_abis for env in TEST_ENVIRONMENTS]
    if expected and runs_in and all(Test("", expected_failures=expected).expected_failure(*where) for where in runs_in):
        raise tst.error(
            "expected_failures",
            "expects the test to fail everywhere it runs",
            "a wheel failing everywhere is broken: fix the test or leave the ABI out ([build] skip_abis)",
        )
    tst.done()

    dep = top.table("depends")
    depends = Depends(
        test=tuple(
            canonicalize_name(n) for n in dep.string_list("test", expect="a list of recipe names", check=_check_name)
        ),
        build=tuple(
            canonicalize_name(n) for n in dep.string_list("build", expect="a list of recipe names", check=_check_name)
        ),
    )
    for kind, names in (("test", depends.test), ("build", depends.build)):
        if name in names:
            raise dep.error(kind, f"{package_name} cannot depend on itself")
    dep.done()
    top.done()

    return Recipe(
        name=name,
        path=path,
        package_name=package_name,
        version=version,
        import_names=import_names,
        source=source,
        build=build,
        test=Test(
            script=script,
            requirements=requirements,
            timeout=timeout or DEFAULT_TEST_TIMEOUT,
            expected_failures=expected,
        ),
        depends=depends,
    )


@dataclass(frozen=True)
class RecipeSet:
    recipes: dict[str, Recipe]
    errors: dict[str, ConfigError]  # key: the canonical name of the file, as in `build:<name>`


def recipe_files(recipe_dir: Path) -> list[Path]:
    """The recipes of a folder: ``*.toml`` without hidden files (editor locks and backups)."""
    return sorted((p for p in Path(recipe_dir).glob("*.toml") if not p.name.startswith(".")), key=lambda p: p.name)


def load_recipes(
    recipe_dir: Path, abi_names: list[str] | tuple[str, ...], root: Path, cache: Path | None = None
) -> RecipeSet:
    """Load every recipe; a bad file is reported, never hides the others.

    Both maps are keyed by the canonical name of the file (the recipe's package name, which
    must match it), so a recipe and an error can never claim the same `build:<name>` task.
    Two files for one package (``foo-bar.toml`` and ``foo_bar.toml``) are one error, and
    neither is built: wasmwheel cannot know which one is meant.

    ``cache``: a file keeping parsed recipes between loads (wasmwheel.model.recipe_cache).
    """
    from wasmwheel.model.recipe_cache import RecipeCache

    parsed = RecipeCache(cache, recipe_dir, abi_names, root)
    recipes: dict[str, Recipe] = {}
    errors: dict[str, ConfigError] = {}
    files: dict[str, list[Path]] = {}
    for path in recipe_files(recipe_dir):
        files.setdefault(canonicalize_name(path.stem), []).append(path)
    for name, paths in files.items():
        if len(paths) > 1:
            others = ", ".join(p.name for p in paths[:-1])
            errors[name] = ConfigError(
                paths[-1],
                "package.name",
                f"package {name!r} also has the recipe {others}",
                "keep one recipe per package; neither is built until then",
            )
            continue
        key, recipe = parsed.get(paths[0])
        if recipe is None:
            try:
                recipe = load_recipe(paths[0], abi_names, root)
            except ConfigError as exc:
                errors[name] = exc
                continue
            parsed.put(paths[0], key, recipe)
        recipes[name] = recipe
    parsed.save()
    _check_dependencies(recipes, errors, abi_names)
    return RecipeSet(recipes=recipes, errors=errors)


def _check_dependencies(
    recipes: dict[str, Recipe], errors: dict[str, ConfigError], abi_names: list[str] | tuple[str, ...]
) -> None:
    """Cyclic, unknown, broken or ABI-incompatible dependencies make the dependent invalid (in place)."""
    for name in list(recipes):
        cycle = _find_cycle(name, recipes)
        if cycle:
            recipe = recipes[name]
            errors[name] = ConfigError(
                recipe.path, "depends", "dependency cycle: " + " -> ".join(cycle), "remove one of the dependencies"
            )
    for name in list(errors):
        recipes.pop(name, None)
    changed = True
    while changed:  # a recipe that becomes invalid can invalidate its own dependents
        changed = False
        for name, recipe in list(recipes.items()):
            problem = _dependency_problem(recipe, recipes, abi_names)
            if problem:
                key, message, fix = problem
                errors[name] = ConfigError(recipe.path, key, message, fix)
                del recipes[name]
                changed = True


def _dependency_problem(recipe: Recipe, recipes: dict[str, Recipe], abi_names) -> tuple[str, str, str] | None:
    for kind, names in (("test", recipe.depends.test), ("build", recipe.depends.build)):
        for dep in names:
            other = recipes.get(dep)
            if other is None:
                return (
                    f"depends.{kind}",
                    f"{dep!r} is not a (valid) recipe in this collection",
                    "add its recipe, fix its errors, or remove the dependency",
                )
            missing = [a for a in recipe.abis(abi_names) if a not in other.abis(abi_names)]
            if missing:
                return (
                    f"depends.{kind}",
                    f"{dep} skips {', '.join(missing)}, which {recipe.name} builds for",
                    f"skip {', '.join(missing)} here too, with the reason",
                )
    return None


def _find_cycle(start: str, recipes: dict[str, Recipe]) -> list[str] | None:
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        recipe = recipes.get(name)
        if recipe is None:
            return None
        path.append(name)
        for dep in (*recipe.depends.test, *recipe.depends.build):
            found = visit(dep)
            if found:
                return found
        path.pop()
        return None

    cycle = visit(start)
    return cycle if cycle and cycle[0] == start else None


def index_inputs(recipes: dict[str, Recipe], base_url: str | None) -> dict[str, Any]:
    """What, besides the wheels, shapes an index: lock metadata from the recipes, the public URL
    (here, not in wasmwheel.index: every doit start needs it for the index's up-to-date check)."""
    return {
        "base_url": base_url,
        "recipes": {
            n: [list(r.import_names), list(r.depends.test), list(r.test.requirements)]
            for n, r in sorted(recipes.items())
        },
    }


def runtime_closure(recipe: Recipe, recipes: dict[str, Recipe]) -> list[str]:
    """Every recipe whose wheel the smoke test of ``recipe`` installs, dependencies first."""
    order: list[str] = []

    def visit(name: str) -> None:
        for dep in recipes[name].depends.test:
            if dep not in order:
                visit(dep)
                order.append(dep)

    visit(recipe.name)
    return order
