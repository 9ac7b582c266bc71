"""``new`` and ``bump``: write and update recipes from PyPI sdists.

``new`` downloads a release's sdist (sha256 checked against PyPI's digest),
reads what maturin would read in it (the build backend, where the Cargo.toml
is, the extension module's name) and writes ``recipes/<name>.toml`` with
tomlkit: a commented file whose facts say why ABIs are left out.
``bump`` points an existing recipe at another release, keeping its comments and
layout, and says which of those facts changed.
"""

from __future__ import annotations

import datetime
import re
import tempfile
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomlkit
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wasmwheel.archive import UnpackLimits, extract, single_top_folder
from wasmwheel.authoring.pypi import PyPI, Release
from wasmwheel.download import Origin, fetch
from wasmwheel.fsutil import atomic_write_text
from wasmwheel.model.abi import Abi, load_abis
from wasmwheel.model.errors import ConfigError, WasmwheelError
from wasmwheel.model.layout import Layout
from wasmwheel.model.recipe import load_recipe
from wasmwheel.runner import StepLog

# The newest CPython each PyO3 minor release supports (SUPPORTED_VERSIONS_CPYTHON in
# pyo3-ffi's build.rs, read from the crates). From 0.28 PyO3 builds for one version more
# "experimentally" and warns not to distribute the result; 0.20-0.27 refuse any newer one.
# Before 0.20 build.rs checked no upper limit; the newest CPython there is the one pyo3-ffi's
# definitions cover (`Py_3_X` cfgs in the crates: 0.16 has 3.11 in 7 files, 0.17-0.18 in 15, 0.19
# has 3.12 in 12 files, and pydantic-core 2.10 shipped cp312 wheels built with 0.19.2).
PYO3_MAX_PYTHON: dict[tuple[int, int], tuple[int, int]] = {
    (0, 16): (3, 10),
    (0, 17): (3, 11),
    (0, 18): (3, 11),
    (0, 19): (3, 12),
    (0, 20): (3, 12),
    (0, 21): (3, 12),
    (0, 22): (3, 13),
    (0, 23): (3, 13),
    (0, 24): (3, 13),
    (0, 25): (3, 14),
    (0, 26): (3, 14),
    (0, 27): (3, 14),
    (0, 28): (3, 14),
    (0, 29): (3, 15),
    (0, 30): (3, 15),
}
# What maturin can build and wasmwheel takes (tool.maturin.bindings, or found the way maturin finds it).
PYO3_BINDINGS = ("pyo3", "pyo3-ffi")
REFUSED_BINDINGS = {
    "bin": "the wheel ships a program, not an extension module, and Pyodide cannot run programs",
    "cffi": "a cffi library is loaded with ffi.dlopen, not imported; wasmwheel builds and audits "
    "PyO3 extension modules (PyInit_<module>)",
    "uniffi": "a uniffi library is loaded through ctypes, not imported; wasmwheel builds and audits "
    "PyO3 extension modules (PyInit_<module>)",
    "rust-cpython": "wasmwheel builds PyO3 extension modules; rust-cpython is unmaintained",
}
# Rust releases come every six weeks from 1.0 (2015-05-15); a nightly is two releases ahead of stable.
RUST_1_0 = datetime.date(2015, 5, 15)
ABI3_RE = re.compile(r"^(?:pyo3/)?abi3(?:-py3(\d+))?$")


class ScaffoldError(WasmwheelError):
    pass


@dataclass(frozen=True)
class SdistFacts:
    """What maturin would see in an unpacked sdist."""

    backend: str
    subdir: str  # folder holding pyproject.toml, relative to the sdist root ("" = the root)
    manifest: str  # the Cargo.toml maturin builds, relative to the sdist root
    manifest_rule: str  # how maturin finds it
    module_name: str  # the extension module, dotted
    import_names: tuple[str, ...]
    requires_python: str | None = None
    pyo3: str | None = None  # from Cargo.lock
    pyo3_crate: str = "pyo3"
    abi3: str | None = None  # "abi3" or "abi3-py310"
    rust_version: str | None = None  # the crate's own rust-version
    bindings: str = "pyo3"
    bindings_rule: str = ""  # how maturin picks them
    notes: tuple[str, ...] = field(default=())

    def summary(self) -> list[str]:
        where = f"pyproject.toml in {self.subdir}/" if self.subdir else "pyproject.toml at the sdist root"
        lines = [
            f"build backend: {self.backend} ({where})",
            f"crate: {self.manifest} ({self.manifest_rule})",
            f"extension module: {self.module_name}",
        ]
        if self.bindings_rule:
            lines.append(f"bindings: {self.bindings} ({self.bindings_rule})")
        if self.pyo3:
            top = pyo3_max_python(self.pyo3)
            limit = f"CPython up to {top[0]}.{top[1]}" if top else "newest supported CPython unknown to wasmwheel"
            if self.abi3:
                limit = f"{self.abi3}: one stable-ABI extension, no upper Python limit"
            lines.append(f"{self.pyo3_crate} {self.pyo3} (Cargo.lock): {limit}")
        else:
            lines.append("PyO3: not found in a Cargo.lock (not a PyO3 crate, or the sdist has no lock file)")
        lines.append(
            f"rust-version: {self.rust_version} (the crate's own; dependencies may need more)"
            if self.rust_version
            else "rust-version: not set by the crate"
        )
        lines.append(f"requires-python: {self.requires_python or 'not set'}")
        return lines + list(self.notes)


# -- reading an sdist ------------------------------------------------------------------------


def _load_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            # Cargo reads TOML 1.1, whose inline tables may span lines; tomllib reads TOML 1.0.
            return tomllib.loads(inline_tables_on_one_line(text))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScaffoldError(f"{what}: cannot read {path.name}: {exc}") from None


def inline_tables_on_one_line(text: str) -> str:
    """TOML 1.1 -> 1.0 for inline tables: join their lines, drop comments and trailing commas in them."""
    out: list[str] = []
    depth = 0  # nesting of { } (arrays inside count through their braces' depth only)
    quote = ""  # the open string's delimiter
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and quote in ('"', '"""'):
                out.append(text[i : i + 2])
                i += 2
                continue
            if text.startswith(quote, i):
                out.append(quote)
                i += len(quote)
                quote = ""
                continue
            out.append(ch)
            i += 1
            continue
        if ch in "\"'":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            out.append(quote)
            i += len(quote)
            continue
        if ch == "#":
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            if not depth:
                out.append(text[i:end])
            i = end
            continue
        if ch == "{":
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            while out and (out[-1].isspace() or out[-1] == ","):
                if out.pop() == ",":
                    break
        elif ch == "\n" and depth:
            ch = " "
        out.append(ch)
        i += 1
    return "".join(out)


def _backend(pyproject: dict[str, Any]) -> str:
    system = pyproject.get("build-system") or {}
    backend = str(system.get("build-backend") or "setuptools.build_meta:__legacy__ (no build-backend given)")
    requires = [str(r) for r in system.get("requires") or []]
    if any(canonicalize_name(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) == "setuptools-rust" for r in requires):
        backend += " with setuptools-rust"
    return backend


def _find_pyproject(root: Path, label: str) -> tuple[Path, dict[str, Any]]:
    top = root / "pyproject.toml"
    if top.is_file():
        return top, _load_toml(top, label)
    found = []
    for depth in ("*/pyproject.toml", "*/*/pyproject.toml"):
        for path in sorted(root.glob(depth)):
            data = _load_toml(path, label)
            if _backend(data) == "maturin":
                found.append((path, data))
        if found:
            break
    if len(found) == 1:
        return found[0]
    if found:
        where = ", ".join(str(p.parent.relative_to(root)) for p, _ in found)
        raise ScaffoldError(
            f"{label}: several maturin projects ({where}); write the recipe by hand and set "
            "[source] subdir to the one to build"
        )
    raise ScaffoldError(f"{label}: no pyproject.toml (a maturin sdist has one at its root)")


def _manifest(pyproject_dir: Path, pyproject: dict[str, Any], label: str) -> tuple[Path, str]:
    """The Cargo.toml maturin picks, by maturin's own rules (src/project_layout.rs)."""
    maturin = (pyproject.get("tool") or {}).get("maturin") or {}
    if maturin.get("manifest-path"):
        path = (pyproject_dir / str(maturin["manifest-path"])).resolve()
        rule = "tool.maturin.manifest-path"
    else:
        rust = pyproject_dir / "rust" / "Cargo.toml"
        name = str((pyproject.get("project") or {}).get("name", "")).replace("-", "_")
        if rust.is_file() and (maturin.get("python-source") or (name and (pyproject_dir / "src" / name).is_dir())):
            path, rule = rust, "maturin's rust/Cargo.toml rule for src layouts"
        else:
            path, rule = pyproject_dir / "Cargo.toml", "beside pyproject.toml"
    if not path.is_file():
        raise ScaffoldError(
            f"{label}: maturin would build {path.name} in {path.parent.name}/, which is not in the sdist"
        )
    return path, rule


def _workspace_root(manifest: Path, stop: Path) -> Path | None:
    for folder in manifest.parents:
        cargo = folder / "Cargo.toml"
        if cargo.is_file() and "workspace" in _load_toml(cargo, str(folder)):
            return folder
        if folder == stop:
            break
    return None


def _rust_version(cargo: dict[str, Any], workspace: dict[str, Any] | None) -> str | None:
    value = (cargo.get("package") or {}).get("rust-version")
    if isinstance(value, dict) and value.get("workspace") and workspace:
        value = ((workspace.get("workspace") or {}).get("package") or {}).get("rust-version")
    return str(value) if isinstance(value, str) else None


def _lock_packages(lock_dirs: list[Path]) -> list[dict[str, Any]] | None:
    """The packages of the nearest Cargo.lock (None: the sdist has none)."""
    for folder in lock_dirs:
        lock = folder / "Cargo.lock"
        if lock.is_file():
            return [p for p in _load_toml(lock, str(folder)).get("package") or [] if isinstance(p, dict)]
    return None


def _reachable(packages: list[dict[str, Any]], crate: str) -> list[dict[str, Any]]:
    """The locked packages ``crate`` depends on, itself included (all of them when the lock does not
    list it). Lock entries name dependencies as "name", "name version" or "name version (source)"."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for package in packages:
        by_name.setdefault(str(package.get("name", "")), []).append(package)
    start = by_name.get(crate)
    if not start:
        return packages
    seen: dict[int, dict[str, Any]] = {}
    todo = list(start)
    while todo:
        package = todo.pop()
        if id(package) in seen:
            continue
        seen[id(package)] = package
        for dep in package.get("dependencies") or []:
            name, _, rest = str(dep).partition(" ")
            version = rest.split(" ", 1)[0]
            todo.extend(c for c in by_name.get(name, []) if not version or c.get("version") == version)
    return list(seen.values())


def _locked_pyo3(packages: list[dict[str, Any]]) -> tuple[str | None, str]:
    for crate in ("pyo3", "pyo3-ffi"):
        versions = sorted(
            {str(p["version"]) for p in packages if p.get("name") == crate and "version" in p},
            key=Version,
            reverse=True,
        )
        if versions:
            return versions[0], crate
    return None, "pyo3"


def _dependency_names(cargo: dict[str, Any]) -> set[str]:
    """Crates named in [dependencies] and [target.<cfg>.dependencies] (their real names, not renames)."""
    tables = [cargo.get("dependencies") or {}]
    tables += [(t or {}).get("dependencies") or {} for t in (cargo.get("target") or {}).values() if isinstance(t, dict)]
    names = set()
    for table in tables:
        for key, spec in table.items():
            names.add(str(spec.get("package", key)) if isinstance(spec, dict) else str(key))
    return names


def _bindings(
    maturin: dict[str, Any], cargo: dict[str, Any], manifest: Path, dependencies: set[str]
) -> tuple[str, str]:
    """The bindings maturin builds and why: tool.maturin.bindings, else found as maturin finds them
    (a PyO3 / cpython / uniffi crate among the dependencies, else a cdylib is cffi, else a program)."""
    if maturin.get("bindings"):
        return str(maturin["bindings"]), "tool.maturin.bindings"
    old_style = ((cargo.get("package") or {}).get("metadata") or {}).get("maturin") or {}
    if isinstance(old_style, dict) and old_style.get("bindings"):
        return str(old_style["bindings"]), "package.metadata.maturin.bindings in Cargo.toml"
    for crate, bindings in (
        ("pyo3", "pyo3"),
        ("pyo3-ffi", "pyo3-ffi"),
        ("cpython", "rust-cpython"),
        ("uniffi", "uniffi"),
    ):
        if crate in dependencies:
            return bindings, f"the crate depends on {crate}"
    crate_types = (cargo.get("lib") or {}).get("crate-type") or []
    if "cdylib" in crate_types:
        return "cffi", "a cdylib without PyO3, cpython or uniffi among its dependencies"
    if (
        cargo.get("bin")
        or (manifest.parent / "src" / "main.rs").is_file()
        or (manifest.parent / "src" / "bin").is_dir()
    ):
        return "bin", "no library for Python, a program target"
    return "unknown", "neither a PyO3 dependency, a cdylib nor a program target"


def _pinned_toolchain(folder: Path, root: Path) -> tuple[str, str] | None:
    """(file, channel) of the rust-toolchain file rustup would read when building in ``folder``."""
    for here in (folder, *folder.parents):
        for name in ("rust-toolchain.toml", "rust-toolchain"):
            path = here / name
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                try:
                    channel = (tomllib.loads(text).get("toolchain") or {}).get("channel")
                except tomllib.TOMLDecodeError:
                    channel = text.strip().splitlines()[0] if text.strip() else None  # the old one-line format
                if channel:
                    return path.relative_to(root).as_posix(), str(channel)
        if here == root:
            break
    return None


def _abi3(cargo: dict[str, Any], workspace: dict[str, Any] | None, maturin_features: list[str]) -> str | None:
    """The abi3 feature the build enables on PyO3, if any (dependency features, inherited workspace
    features, tool.maturin features and the crate features those name)."""
    pyo3 = (cargo.get("dependencies") or {}).get("pyo3")
    features = list(pyo3.get("features", [])) if isinstance(pyo3, dict) else []
    if isinstance(pyo3, dict) and pyo3.get("workspace") and workspace:
        inherited = ((workspace.get("workspace") or {}).get("dependencies") or {}).get("pyo3")
        features += list(inherited.get("features", [])) if isinstance(inherited, dict) else []
    crate_features = cargo.get("features") or {}
    for name in maturin_features:
        features.append(name)
        if "/" not in name:
            features.extend(crate_features.get(name, []))
    found = [m for m in (ABI3_RE.match(f) for f in features) if m]
    if not found:
        return None
    minors = [int(m.group(1)) for m in found if m.group(1)]
    return f"abi3-py3{min(minors)}" if minors else "abi3"


def inspect_sdist(archive: Path, label: str | None = None, limits: UnpackLimits = UnpackLimits()) -> SdistFacts:
    """Unpack ``archive`` in a temporary folder and read what maturin would read."""
    label = label or Path(archive).name
    with tempfile.TemporaryDirectory(prefix="wasmwheel-inspect-") as tmp:
        extract(Path(archive), Path(tmp), limits)
        return inspect_tree(single_top_folder(Path(tmp)), label)


def inspect_tree(root: Path, label: str) -> SdistFacts:
    root = root.resolve()
    pyproject_path, pyproject = _find_pyproject(root, label)
    backend = _backend(pyproject)
    if backend != "maturin":
        raise ScaffoldError(
            f"{label}: the build backend is {backend}, not maturin; wasmwheel builds maturin projects only"
        )
    pyproject_dir = pyproject_path.parent
    maturin = (pyproject.get("tool") or {}).get("maturin") or {}
    manifest, rule = _manifest(pyproject_dir, pyproject, label)
    if root not in manifest.parents:
        raise ScaffoldError(f"{label}: tool.maturin.manifest-path points outside the sdist")
    cargo = _load_toml(manifest, label)
    package = cargo.get("package") or {}
    lib = cargo.get("lib") or {}
    old_style = ((package.get("metadata") or {}).get("maturin") or {}).get("name")
    module = (
        str(maturin.get("module-name") or "")
        or (str(old_style) if old_style and "." in str(old_style) else "")
        or str(lib.get("name") or "")
        or str(package.get("name", "")).replace("-", "_")
    )
    if not module:
        raise ScaffoldError(
            f"{label}: cannot tell the extension module's name (no module-name, [lib] name or package name)"
        )
    imports = [module.split(".")[0]]
    for extra in maturin.get("python-packages") or []:
        top = str(extra).split(".")[0]
        if top not in imports:
            imports.append(top)
    workspace_dir = _workspace_root(manifest, root)
    workspace = _load_toml(workspace_dir / "Cargo.toml", label) if workspace_dir else None
    locked = _lock_packages([p for p in manifest.parents if p == root or root in p.parents])
    crate_name = str(package.get("name", ""))
    reachable = _reachable(locked, crate_name) if locked is not None else []
    pyo3, crate = _locked_pyo3(reachable)
    bindings, bindings_rule = _bindings(
        maturin, cargo, manifest, _dependency_names(cargo) | {str(p.get("name")) for p in reachable}
    )
    if bindings not in PYO3_BINDINGS:
        why = REFUSED_BINDINGS.get(bindings, "wasmwheel builds PyO3 extension modules only")
        raise ScaffoldError(f"{label}: maturin builds {bindings!r} bindings here ({bindings_rule}): {why}")
    notes = []
    toolchain = _pinned_toolchain(manifest.parent, root)
    if toolchain and toolchain[1] != "stable":
        notes.append(
            f"{toolchain[0]} pins Rust {toolchain[1]}; wasmwheel builds with each ABI's own toolchain "
            "instead (a pinned nightly often means nightly-only features: check the compile logs)"
        )
    if maturin.get("locked"):
        notes.append("tool.maturin.locked = true: cargo must not change Cargo.lock (a pruned sdist lock can fail this)")
    return SdistFacts(
        backend=backend,
        subdir="" if pyproject_dir == root else pyproject_dir.relative_to(root).as_posix(),
        manifest=manifest.relative_to(root).as_posix(),
        manifest_rule=rule,
        module_name=module,
        import_names=tuple(imports),
        requires_python=(pyproject.get("project") or {}).get("requires-python"),
        pyo3=pyo3,
        pyo3_crate=crate,
        abi3=_abi3(cargo, workspace, [str(f) for f in maturin.get("features") or []]),
        rust_version=_rust_version(cargo, workspace),
        bindings=bindings,
        bindings_rule=bindings_rule,
        notes=tuple(notes),
    )


# -- which ABIs the facts rule out ------------------------------------------------------------


def pyo3_max_python(version: str) -> tuple[int, int] | None:
    try:
        v = Version(version)
    except InvalidVersion:
        return None
    if (v.major, v.minor) < min(PYO3_MAX_PYTHON):  # older still: no newer CPython than the oldest listed
        return PYO3_MAX_PYTHON[min(PYO3_MAX_PYTHON)]
    return PYO3_MAX_PYTHON.get((v.major, v.minor))


def toolchain_rust_version(toolchain: str) -> tuple[int, int] | None:
    """``1.93.0`` -> (1, 93); ``nightly-2025-02-01`` -> (1, 86), the version that nightly reports."""
    m = re.fullmatch(r"(\d+)\.(\d+)\.\d+", toolchain)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = re.fullmatch(r"(?:nightly|beta)-(\d{4})-(\d{2})-(\d{2})", toolchain)
    if not m:
        return None
    day = datetime.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    ahead = 2 if toolchain.startswith("nightly") else 1
    return 1, (day - RUST_1_0).days // 42 + ahead


def _minor(version: str) -> tuple[int, int] | None:
    m = re.match(r"^(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def suggest_skips(facts: SdistFacts, abis: dict[str, Abi]) -> dict[str, str]:
    """ABIs the sdist's own facts rule out, each with the reason. Dependencies can need a
    newer Rust still; cargo names them when the compile step runs."""
    skips: dict[str, str] = {}
    for name, abi in sorted(abis.items()):
        py = _minor(abi.python)
        reasons = []
        if facts.requires_python:
            try:
                if not SpecifierSet(facts.requires_python).contains(abi.python, prereleases=True):
                    reasons.append(f"requires-python {facts.requires_python} excludes Python {abi.python_minor}")
            except InvalidSpecifier:
                pass
        top = pyo3_max_python(facts.pyo3) if facts.pyo3 else None
        if py and top and py > top and not facts.abi3:
            release = Version(facts.pyo3)  # pyo3_max_python parsed it already
            if release >= Version("0.28") and py == (top[0], top[1] + 1):
                why = f"{abi.python_minor} only experimentally (PyO3 warns not to distribute such builds)"
            elif release >= Version("0.20"):
                why = f"its build script refuses {abi.python_minor}"
            else:
                why = f"it predates {abi.python_minor} (PyO3 before 0.20 checks no upper limit)"
            # "PyO3" as the recipes' checks and their readers spell it; the crate when it is not pyo3 itself.
            crate = "" if facts.pyo3_crate == "pyo3" else f" ({facts.pyo3_crate})"
            reasons.append(f"PyO3 {facts.pyo3}{crate} supports CPython up to {top[0]}.{top[1]}; {why}")
        need = _minor(facts.rust_version) if facts.rust_version else None
        have = toolchain_rust_version(abi.rust_toolchain)
        if need and have and need > have:
            reasons.append(
                f"needs Rust >= {facts.rust_version} (the crate's rust-version); the ABI's toolchain "
                f"{abi.rust_toolchain} is Rust {have[0]}.{have[1]}"
            )
        if reasons:
            skips[name] = "; ".join(reasons)
    return skips


# -- writing and bumping recipes -------------------------------------------------------------


def _download(release: Release, layout: Layout, log: StepLog) -> tuple[Path, str, str, tuple[str, ...]]:
    """Fetch the release's sdist into the download cache; (path, sha256, URL for the recipe, warnings)."""
    sdist = release.sdist()
    if not re.fullmatch(r"[0-9a-f]{64}", sdist.sha256):
        raise ScaffoldError(f"PyPI gives no usable sha256 for {sdist.filename}")
    warnings = ()
    if sdist.yanked:
        reason = f" ({sdist.yanked_reason})" if sdist.yanked_reason else ""
        warnings = (
            f"warning: {release.name} {release.version} is yanked on PyPI{reason}; pick another version "
            f"unless you need this one (latest: {release.latest})",
        )
    log.note(f"downloading {sdist.filename}")
    path = fetch(Origin(sdist.url), layout.download(sdist.sha256, sdist.filename), sdist.sha256, log)
    return path, sdist.sha256, sdist.public_url, warnings


def render_recipe(release: Release, url: str, sha256: str, facts: SdistFacts, skips: dict[str, str]) -> str:
    doc = tomlkit.document()
    doc.add(
        tomlkit.comment(
            f"{release.name} {release.version}: maturin sdist from PyPI, scaffolded by `python -m wasmwheel new`."
        )
    )
    doc.add(tomlkit.comment(""))
    doc.add(tomlkit.comment("Facts found in the sdist:"))
    for line in facts.summary():
        doc.add(tomlkit.comment(f"  {line}"))
    doc.add(tomlkit.nl())

    package = tomlkit.table()
    package.add("name", release.name)
    package.add("version", release.version)
    package.add("import_names", facts.import_names)
    doc.add("package", package)

    source = tomlkit.table()
    source.add("url", url)
    source.add("sha256", sha256)
    source["sha256"].comment("measured from the downloaded file")
    if facts.subdir:
        source.add("subdir", facts.subdir)
        source["subdir"].comment("where pyproject.toml is; maturin runs there")
    doc.add("source", source)

    build = tomlkit.table()
    if skips:
        build.add(tomlkit.comment("ABIs the facts above rule out. Dependencies may need a newer Rust still:"))
        build.add(tomlkit.comment("a compile step that fails on rust-version names the crate; add it here."))
        skip_table = tomlkit.table()
        for abi, reason in skips.items():
            skip_table.add(abi, reason)
        build.add("skip_abis", skip_table)
    else:
        build.add(tomlkit.comment("Builds for every ABI. Dependencies may need a newer Rust than some ABI has:"))
        build.add(tomlkit.comment('then add skip_abis = { "<abi>" = "<reason>" }.'))
    doc.add("build", build)

    test = tomlkit.table()
    test.add(tomlkit.comment("TODO: call the package's API and assert on the results; an import alone proves little."))
    test.add(tomlkit.comment("Pure-Python runtime dependencies go in requirements = [...]."))
    script = "".join(f"import {name}\n" for name in facts.import_names)
    # Parsed from text so the script starts on its own line (TOML drops that first newline).
    test.add("script", tomlkit.parse(f"script = '''\n{script}'''\n")["script"])
    doc.add("test", test)
    return tomlkit.dumps(doc)


def _project_abis(root: Path) -> dict[str, Abi]:
    return load_abis(root / "abi")


def new_recipe(
    spec_name: str, version: str | None, root: Path, pypi: PyPI, layout: Layout, log: StepLog, force: bool = False
) -> tuple[Path, SdistFacts]:
    root = Path(root).resolve()
    abis = _project_abis(root)
    release = pypi.release(spec_name, version)
    dest = root / "recipes" / f"{canonicalize_name(release.name)}.toml"
    if dest.exists() and not force:
        raise ScaffoldError(
            f"{dest.relative_to(root)} exists already; `bump` moves it to another version, --force overwrites it"
        )
    archive, sha256, url, warnings = _download(release, layout, log)
    facts = inspect_sdist(archive, f"{release.name} {release.version} ({archive.name})", layout.settings.unpack_limits)
    facts = replace(facts, notes=facts.notes + warnings)
    text = render_recipe(release, url, sha256, facts, suggest_skips(facts, abis))
    try:  # what we write must load: a failure here is a wasmwheel bug, caught before the file exists
        load_recipe(dest, list(abis), root, text=text)
    except ConfigError as exc:
        raise ScaffoldError(f"internal error: the scaffolded recipe does not validate: {exc}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest, text)
    return dest, facts


@dataclass(frozen=True)
class Bump:
    path: Path
    old_version: str
    new_version: str
    changes: tuple[str, ...]  # facts that differ between the two sdists, for the user to check


def resolve_recipe_path(root: Path, recipe: str) -> Path:
    candidate = Path(recipe)
    if candidate.suffix == ".toml" and candidate.exists():
        return candidate.resolve()
    path = Path(root) / "recipes" / f"{canonicalize_name(recipe)}.toml"
    if not path.exists():
        raise ScaffoldError(f"no recipe {recipe!r} (looked for {path})")
    return path


def bump_recipe(recipe: str, version: str | None, root: Path, pypi: PyPI, layout: Layout, log: StepLog) -> Bump:
    root = Path(root).resolve()
    abis = _project_abis(root)
    path = resolve_recipe_path(root, recipe)
    # A broken recipe is reported before anything is fetched; a URL left at another version than
    # package.version (a bump by hand that missed it) is what this command repairs.
    current = load_recipe(path, list(abis), root, url_matches_version=False)
    if current.source.kind != "url":
        raise ScaffoldError(
            f"{path.name}: bump updates sdist recipes ([source] url + sha256); this one has a "
            f"{current.source.kind} source"
        )
    release = pypi.release(current.package_name, version)
    if Version(release.version) == Version(current.version) and current.source.sha256 == release.sdist().sha256:
        return Bump(path, current.version, release.version, ())
    new_archive, sha256, url, warnings = _download(release, layout, log)
    facts = inspect_sdist(new_archive, f"{release.name} {release.version}", layout.settings.unpack_limits)
    changes: list[str] = list(warnings)
    src = current.source
    assert src.url and src.sha256
    old_facts = None
    try:  # the old sdist is usually in the download cache already (its source step fetched it)
        old_archive = fetch(
            Origin(src.url, layout.settings.sdist_mirror, "WASMWHEEL_SDIST_MIRROR"),
            layout.download(src.sha256, src.filename),
            src.sha256,
            log,
        )
        old_facts = inspect_sdist(
            old_archive, f"{current.package_name} {current.version}", layout.settings.unpack_limits
        )
        changes += compare_facts(old_facts, facts)
    except WasmwheelError as exc:
        changes.append(f"could not compare with the old sdist ({exc}); check the recipe's facts by hand")
    if facts.subdir != current.source.subdir:
        changes.append(
            f"pyproject.toml moved: [source] subdir was {current.source.subdir!r}, the new sdist needs {facts.subdir!r}"
        )
    missing = [n for n in facts.import_names if n not in current.import_names]
    if missing:
        changes.append(f"new top-level module(s) {', '.join(missing)}: check [package] import_names")
    suggested = suggest_skips(facts, abis)
    for abi, reason in suggested.items():
        if abi not in current.build.skip_abis:
            changes.append(f"ABI {abi} looks unbuildable now ({reason}): check [build] skip_abis")
    old_skips = suggest_skips(old_facts, abis) if old_facts else {}
    for abi in current.build.skip_abis:
        if abi in old_skips and abi not in suggested:
            changes.append(
                f"ABI {abi} is left out, but what ruled it out in {current.version} ({old_skips[abi]}) "
                f"no longer holds: check whether [build] skip_abis.{abi} still applies"
            )

    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    doc["package"]["version"] = release.version
    doc["source"]["url"] = url
    doc["source"]["sha256"] = sha256
    text = rewrite_scaffold_header(
        tomlkit.dumps(doc), current.version, release.version, replace(facts, notes=facts.notes + warnings)
    )
    mentions = re.compile(r"(?<![\w.])" + re.escape(current.version) + r"(?![\w]|\.\d)")
    stale = [line for line in text.splitlines() if line.lstrip().startswith("#") and mentions.search(line)]
    if stale:
        changes.append(f"{len(stale)} comment line(s) still mention {current.version}, e.g. {stale[0].strip()!r}")
    for abi, reason in current.build.skip_abis.items():
        if mentions.search(reason):
            changes.append(f"the reason of [build] skip_abis.{abi} still mentions {current.version}: {reason!r}")
    load_recipe(path, list(abis), root, text=text)
    atomic_write_text(path, text)
    return Bump(path, current.version, release.version, tuple(changes))


FACTS_HEADING = "# Facts found in the sdist:"


def rewrite_scaffold_header(text: str, old_version: str, new_version: str, facts: SdistFacts) -> str:
    """The comment block `new` wrote at the top of a recipe, brought up to the new sdist: its first line's
    version and the facts list. Recipes without that block (written or edited by hand) are left as they are."""
    lines = text.split("\n")
    try:
        start = lines.index(FACTS_HEADING)
    except ValueError:
        return text
    if any(not line.startswith("#") for line in lines[:start]):  # only the leading comment block
        return text
    end = start + 1
    while end < len(lines) and lines[end].startswith("#   "):
        end += 1
    first = lines[0]
    marker = f" {old_version}: maturin sdist from PyPI"
    if marker in first:
        lines[0] = first.replace(marker, f" {new_version}: maturin sdist from PyPI", 1)
    lines[start + 1 : end] = [f"#   {line}" for line in facts.summary()]
    return "\n".join(lines)


def compare_facts(old: SdistFacts, new: SdistFacts) -> list[str]:
    changes = []
    labels = {
        "backend": "build backend",
        "bindings": "bindings",
        "manifest": "crate",
        "module_name": "extension module",
        "pyo3": "PyO3",
        "abi3": "abi3",
        "rust_version": "rust-version",
        "requires_python": "requires-python",
    }
    for attr, label in labels.items():
        before, after = getattr(old, attr), getattr(new, attr)
        if before != after:
            changes.append(f"{label}: {before or 'none'} -> {after or 'none'}")
    return changes
