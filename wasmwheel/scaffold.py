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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .abi import Abi, load_abis
from .archive import UnpackLimits, extract, single_top_folder
from .download import Origin, fetch
from .errors import ConfigError, WasmwheelError
from .fsutil import atomic_write_text
from .layout import Layout
from .pypi import PyPI, Release
from .recipe import load_recipe
from .runner import StepLog

# The newest CPython each PyO3 minor release supports (SUPPORTED_VERSIONS_CPYTHON in
# pyo3-ffi's build.rs, read from the crates). PyO3 builds for one version more only
# "experimentally" and warns not to distribute the result.
PYO3_MAX_PYTHON: dict[tuple[int, int], tuple[int, int]] = {
    (0, 20): (3, 12), (0, 21): (3, 12), (0, 22): (3, 13), (0, 23): (3, 13), (0, 24): (3, 13),
    (0, 25): (3, 14), (0, 26): (3, 14), (0, 27): (3, 14), (0, 28): (3, 14), (0, 29): (3, 15), (0, 30): (3, 15),
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
    notes: tuple[str, ...] = field(default=())

    def summary(self) -> list[str]:
        where = f"pyproject.toml in {self.subdir}/" if self.subdir else "pyproject.toml at the sdist root"
        lines = [f"build backend: {self.backend} ({where})",
                 f"crate: {self.manifest} ({self.manifest_rule})",
                 f"extension module: {self.module_name}"]
        if self.pyo3:
            top = pyo3_max_python(self.pyo3)
            limit = f"CPython up to {top[0]}.{top[1]}" if top else "newest supported CPython unknown to wasmwheel"
            if self.abi3:
                limit = f"{self.abi3}: one stable-ABI extension, no upper Python limit"
            lines.append(f"{self.pyo3_crate} {self.pyo3} (Cargo.lock): {limit}")
        else:
            lines.append("PyO3: not found in a Cargo.lock (not a PyO3 crate, or the sdist has no lock file)")
        lines.append(f"rust-version: {self.rust_version} (the crate's own; dependencies may need more)"
                     if self.rust_version else "rust-version: not set by the crate")
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
                out.append(text[i:i + 2])
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
        raise ScaffoldError(f"{label}: several maturin projects ({where}); write the recipe by hand and set "
                            "[source] subdir to the one to build")
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
        raise ScaffoldError(f"{label}: maturin would build {path.name} in {path.parent.name}/, which is not in the sdist")
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


def _locked_pyo3(lock_dirs: list[Path]) -> tuple[str | None, str]:
    for folder in lock_dirs:
        lock = folder / "Cargo.lock"
        if not lock.is_file():
            continue
        packages = _load_toml(lock, str(folder)).get("package") or []
        for crate in ("pyo3", "pyo3-ffi"):
            versions = sorted({p["version"] for p in packages if p.get("name") == crate and "version" in p},
                              key=Version, reverse=True)
            if versions:
                return versions[0], crate
    return None, "pyo3"


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
        raise ScaffoldError(f"{label}: the build backend is {backend}, not maturin; wasmwheel builds maturin "
                            "projects only")
    pyproject_dir = pyproject_path.parent
    maturin = (pyproject.get("tool") or {}).get("maturin") or {}
    manifest, rule = _manifest(pyproject_dir, pyproject, label)
    if root not in manifest.parents:
        raise ScaffoldError(f"{label}: tool.maturin.manifest-path points outside the sdist")
    cargo = _load_toml(manifest, label)
    package = cargo.get("package") or {}
    lib = cargo.get("lib") or {}
    old_style = ((package.get("metadata") or {}).get("maturin") or {}).get("name")
    module = (str(maturin.get("module-name") or "")
              or (str(old_style) if old_style and "." in str(old_style) else "")
              or str(lib.get("name") or "")
              or str(package.get("name", "")).replace("-", "_"))
    if not module:
        raise ScaffoldError(f"{label}: cannot tell the extension module's name (no module-name, [lib] name or package name)")
    imports = [module.split(".")[0]]
    for extra in maturin.get("python-packages") or []:
        top = str(extra).split(".")[0]
        if top not in imports:
            imports.append(top)
    workspace_dir = _workspace_root(manifest, root)
    workspace = _load_toml(workspace_dir / "Cargo.toml", label) if workspace_dir else None
    pyo3, crate = _locked_pyo3([p for p in manifest.parents if p == root or root in p.parents])
    notes = []
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
        notes=tuple(notes),
    )


# -- which ABIs the facts rule out ------------------------------------------------------------


def pyo3_max_python(version: str) -> tuple[int, int] | None:
    try:
        v = Version(version)
    except InvalidVersion:
        return None
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
            reasons.append(f"{facts.pyo3_crate} {facts.pyo3} supports CPython up to {top[0]}.{top[1]}; "
                           f"{abi.python_minor} only experimentally (PyO3 warns not to distribute such builds)")
        need = _minor(facts.rust_version) if facts.rust_version else None
        have = toolchain_rust_version(abi.rust_toolchain)
        if need and have and need > have:
            reasons.append(f"needs Rust >= {facts.rust_version} (the crate's rust-version); the ABI's toolchain "
                           f"{abi.rust_toolchain} is Rust {have[0]}.{have[1]}")
        if reasons:
            skips[name] = "; ".join(reasons)
    return skips


# -- writing and bumping recipes -------------------------------------------------------------


def _download(release: Release, layout: Layout, log: StepLog) -> tuple[Path, str, str]:
    """Fetch the release's sdist into the download cache; (path, sha256, URL for the recipe)."""
    sdist = release.sdist()
    if not re.fullmatch(r"[0-9a-f]{64}", sdist.sha256):
        raise ScaffoldError(f"PyPI gives no usable sha256 for {sdist.filename}")
    if sdist.yanked:
        log.note(f"warning: {sdist.filename} is yanked on PyPI")
    log.note(f"downloading {sdist.filename}")
    path = fetch(Origin(sdist.url), layout.download(sdist.sha256, sdist.filename), sdist.sha256, log)
    return path, sdist.sha256, sdist.public_url


def render_recipe(release: Release, url: str, sha256: str, facts: SdistFacts, skips: dict[str, str]) -> str:
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"{release.name} {release.version}: maturin sdist from PyPI, "
                            "scaffolded by `python -m wasmwheel new`."))
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


def new_recipe(spec_name: str, version: str | None, root: Path, pypi: PyPI, layout: Layout, log: StepLog,
               force: bool = False) -> tuple[Path, SdistFacts]:
    root = Path(root).resolve()
    abis = _project_abis(root)
    release = pypi.release(spec_name, version)
    dest = root / "recipes" / f"{canonicalize_name(release.name)}.toml"
    if dest.exists() and not force:
        raise ScaffoldError(f"{dest.relative_to(root)} exists already; `bump` moves it to another version, "
                            "--force overwrites it")
    archive, sha256, url = _download(release, layout, log)
    facts = inspect_sdist(archive, f"{release.name} {release.version} ({archive.name})", layout.settings.unpack_limits)
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
    current = load_recipe(path, list(abis), root)  # a broken recipe is reported before anything is fetched
    if current.source.kind != "url":
        raise ScaffoldError(f"{path.name}: bump updates sdist recipes ([source] url + sha256); this one has a "
                            f"{current.source.kind} source")
    release = pypi.release(current.package_name, version)
    if Version(release.version) == Version(current.version) and current.source.sha256 == release.sdist().sha256:
        return Bump(path, current.version, release.version, ())
    new_archive, sha256, url = _download(release, layout, log)
    facts = inspect_sdist(new_archive, f"{release.name} {release.version}", layout.settings.unpack_limits)
    changes: list[str] = []
    src = current.source
    assert src.url and src.sha256
    try:  # the old sdist is usually in the download cache already (its source step fetched it)
        old_archive = fetch(Origin(src.url, layout.settings.sdist_mirror, "WASMWHEEL_SDIST_MIRROR"),
                            layout.download(src.sha256, src.filename), src.sha256, log)
        changes = compare_facts(inspect_sdist(old_archive, f"{current.package_name} {current.version}",
                                              layout.settings.unpack_limits), facts)
    except WasmwheelError as exc:
        changes.append(f"could not compare with the old sdist ({exc}); check the recipe's facts by hand")
    if facts.subdir != current.source.subdir:
        changes.append(f"pyproject.toml moved: [source] subdir was {current.source.subdir!r}, the new sdist needs "
                       f"{facts.subdir!r}")
    missing = [n for n in facts.import_names if n not in current.import_names]
    if missing:
        changes.append(f"new top-level module(s) {', '.join(missing)}: check [package] import_names")
    suggested = suggest_skips(facts, abis)
    for abi, reason in suggested.items():
        if abi not in current.build.skip_abis:
            changes.append(f"ABI {abi} looks unbuildable now ({reason}): check [build] skip_abis")

    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    doc["package"]["version"] = release.version
    doc["source"]["url"] = url
    doc["source"]["sha256"] = sha256
    text = tomlkit.dumps(doc)
    stale = [line for line in text.splitlines() if line.lstrip().startswith("#") and current.version in line]
    if stale:
        changes.append(f"{len(stale)} comment line(s) still mention {current.version}, e.g. {stale[0].strip()!r}")
    load_recipe(path, list(abis), root, text=text)
    atomic_write_text(path, text)
    return Bump(path, current.version, release.version, tuple(changes))


def compare_facts(old: SdistFacts, new: SdistFacts) -> list[str]:
    changes = []
    labels = {"backend": "build backend", "manifest": "crate", "module_name": "extension module",
              "pyo3": "PyO3", "abi3": "abi3", "rust_version": "rust-version", "requires_python": "requires-python"}
    for attr, label in labels.items():
        before, after = getattr(old, attr), getattr(new, attr)
        if before != after:
            changes.append(f"{label}: {before or 'none'} -> {after or 'none'}")
    return changes
