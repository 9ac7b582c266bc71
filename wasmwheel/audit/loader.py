"""How a Pyodide runtime installs a wheel and links its shared libraries (as measured).

Pyodide's installer (``loadPackage`` and micropip share it) unpacks the wheel into
site-packages as it is: ``<dist>.data/purelib`` and ``platlib`` stay where they are,
only ``<dist>.data/data`` is also copied into ``sys.prefix`` (``/``). It then loads
every ``.so`` whose name is not an extension for another Python or platform, in the
order of the zip, each with its own (local) symbol scope. A library's needed
libraries are found by the runtime's loader:

- Pyodide >= 0.28 (``dlopen``): the library's runtime paths (``$ORIGIN`` is the
  library's folder) and ``LD_LIBRARY_PATH`` (``/usr/lib`` and site-packages);
- Pyodide 0.26/0.27 (its own loader, no runtime paths): ``<dist>.libs/``,
  site-packages, ``/usr/lib``, the folder of the library being installed and every
  folder below it; or any library of that name loaded before (it registers loaded
  libraries by their file name). A file that is not WebAssembly is skipped with a
  warning there, and refused by the newer loaders.

Imports are resolved against the runtime's exports (runtime_exports.py), the module's
own exports and those of its needed libraries; nothing else (every library is loaded
locally). ``GOT.mem``/``GOT.func`` imports nobody provides fail the load, a function
nobody provides fails when first called, and an import from a module other than
``env``, ``GOT.mem``, ``GOT.func`` or ``wasi_snapshot_preview1`` fails the load.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from packaging.version import Version

from wasmwheel.audit import runtime_exports
from wasmwheel.audit.runtime_exports import RuntimeExports
from wasmwheel.audit.wasm import Module
from wasmwheel.model.abi import Abi

WASM_MAGIC = b"\x00asm"
SHAREDLIB_RE = re.compile(r"\.so(\.\d+)*$")
# An extension module for some Python and platform (Pyodide's PLATFORM_TAG_REGEX).
PLATFORM_TAG_RE = re.compile(r"\.(cpython|pypy|jython)-[0-9]{2,}[a-z]*(-[a-z0-9_-]*)?")
DATA_DIR_RE = re.compile(r"^(?P<dir>[^/]+\.data)/(?P<scheme>[^/]+)/(?P<rest>.+)$")
IMPORT_MODULES = ("env", "GOT.mem", "GOT.func", "wasi_snapshot_preview1")
# Names the loader's import proxy answers itself.
LOADER_SYMBOLS = frozenset({"__memory_base", "__table_base"})
# Pyodide 0.27's resolveGlobalSymbol makes these on demand (JavaScript exception handling).
LEGACY_DYNAMIC_PREFIXES = ("invoke_", "__cxa_find_matching_catch_")
WEAK = 1  # WASM_SYMBOL_BINDING_WEAK in dylink.0's import info


@dataclass(frozen=True)
class LoaderFacts:
    """How the Pyodide runtime of an ABI installs wheels and links side modules."""

    pyodide: str
    python: tuple[int, int]
    legacy_loader: bool  # Pyodide < 0.28: its own loader; newer: dlopen()
    exports: RuntimeExports | None  # None: no abi/runtimes/<version>/exports.json.gz yet

    @classmethod
    def for_abi(cls, abi: Abi) -> LoaderFacts:
        try:
            legacy = Version(abi.pyodide_version) < Version("0.28")
        except ValueError:
            legacy = False
        v = Version(abi.python)
        return cls(abi.pyodide_version, (v.major, v.minor), legacy, runtime_exports.for_abi(abi))

    @property
    def accepts_legacy_dylink(self) -> bool:
        return self.legacy_loader  # newer loaders read only "dylink.0"

    @property
    def site_packages(self) -> str:
        return f"/lib/python{self.python[0]}.{self.python[1]}/site-packages"

    @property
    def extension_tags(self) -> tuple[str, ...]:
        return (f".cpython-{self.python[0]}{self.python[1]}-wasm32-emscripten", ".abi3")

    def loads(self, path: str) -> bool:
        """Whether the installer loads this file as a shared library (Pyodide's should_load_dynlib)."""
        name = PurePosixPath(path).name
        if not SHAREDLIB_RE.search(name):
            return False
        suffixes = PurePosixPath(name).suffixes
        if ".so" not in suffixes:
            return False
        tag = suffixes[suffixes.index(".so") - 1]
        return tag in self.extension_tags or not PLATFORM_TAG_RE.match(tag)

    def where(self, path: str) -> str:
        """A wheel-relative install location as an absolute path in the runtime."""
        return path if path.startswith("/") else f"{self.site_packages}/{path}"

    def key(self, absolute: str) -> str | None:
        """An absolute path in the runtime as an install location (site-packages-relative, or absolute
        elsewhere); None above the root."""
        norm = posixpath.normpath(absolute)
        if norm == self.site_packages:
            return ""
        if norm.startswith(self.site_packages + "/"):
            return norm[len(self.site_packages) + 1 :]
        return norm


def install_locations(path: str) -> list[str]:
    """Where the installer puts a wheel member: site-packages/<path> as it is, and for
    ``<dist>.data/data/<rest>`` also ``/<rest>`` (sys.prefix is ``/``)."""
    out = [path]
    m = DATA_DIR_RE.match(path)
    if m and m.group("scheme") == "data":
        out.append("/" + m.group("rest"))
    return out


@dataclass
class Library:
    """A shared library as installed: where, its parsed module (None if not WebAssembly)."""

    path: str  # site-packages-relative
    module: Module | None
    is_wasm: bool  # starts with the wasm magic number
    ours: bool = True  # in the wheel being audited (False: a wheel installed alongside)
    needed_found: dict[str, Library] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.path)

    @property
    def needed(self) -> tuple[str, ...]:
        return self.module.dylink.needed if self.module is not None and self.module.dylink else ()

    @property
    def runtime_paths(self) -> tuple[str, ...]:
        return self.module.dylink.runtime_paths if self.module is not None and self.module.dylink else ()


@dataclass(frozen=True)
class Missing:
    library: str  # the dependent (site-packages-relative path)
    needed: str
    elsewhere: tuple[str, ...]  # files of that name somewhere else
    looked: tuple[str, ...]  # where the loader looked (absolute folders)


class Linker:
    """Resolve needed libraries the way the runtime's loader does, in install order."""

    def __init__(self, facts: LoaderFacts, dist: str, libraries: Sequence[Library], files: Iterable[str]):
        self.facts = facts
        self.dist = dist
        self.libraries = list(libraries)  # ours, in zip order, after those of wheels installed before
        self.files: dict[str, Library | None] = {}
        for f in files:
            for loc in install_locations(f):
                self.files.setdefault(loc, None)
        for lib in self.libraries:
            for loc in install_locations(lib.path):
                self.files[loc] = lib
        self.missing: list[Missing] = []

    def _find_new(self, lib: Library, name: str) -> tuple[Library | None, list[str]]:
        dirs: list[str] = []
        for runtime_path in lib.runtime_paths:
            rpath = runtime_path
            if rpath.startswith("$ORIGIN"):
                rpath = self.facts.where(lib.folder) + rpath[len("$ORIGIN") :]
            if rpath.startswith("/"):
                dirs.append(rpath)
        dirs += ["/usr/lib", self.facts.site_packages]
        return self._first(name, dirs), dirs

    def _first(self, name: str, dirs: Sequence[str]) -> Library | None:
        for d in dirs:
            key = self.facts.key(posixpath.join(d, name))
            if key is not None and key in self.files:
                return self.files[key] or _placeholder(key)
        return None

    def _find_legacy(self, name: str, top_folder: str, loaded: dict[str, Library]) -> tuple[Library | None, list[str]]:
        if name in loaded:
            return loaded[name], []
        top = self.facts.where(top_folder) if top_folder else self.facts.site_packages
        dirs = [f"{self.facts.site_packages}/{self.dist}.libs", "/usr/lib", self.facts.site_packages, top]
        found = self._first(name, dirs)
        if found is None:  # then every folder below the installed library's, recursively
            base = self.facts.key(top)
            below = sorted(
                k
                for k in self.files
                if not k.startswith("/") and posixpath.basename(k) == name and (base == "" or k.startswith(base + "/"))
            )
            if below:
                found = self.files[below[0]] or _placeholder(below[0])
        return found, [*dirs, f"{top}/**"]

    def link(self) -> None:
        """Load every library in order; record what each one's needed libraries resolve to."""
        loaded: dict[str, Library] = {}  # legacy: by file name

        def resolve(lib: Library, top_folder: str, stack: tuple[int, ...]) -> bool:
            ok = True
            for name in lib.needed:
                if name.startswith("/"):
                    key = self.facts.key(name)
                    found = (self.files[key] or _placeholder(key)) if key in self.files else None
                    looked = [posixpath.dirname(name)]
                elif self.facts.legacy_loader:
                    found, looked = self._find_legacy(name, top_folder, loaded)
                else:
                    found, looked = self._find_new(lib, name)
                if found is None:
                    ok = False
                    if lib.ours:
                        elsewhere = tuple(sorted(k for k in self.files if posixpath.basename(k) == name))
                        self.missing.append(Missing(lib.path, name, elsewhere, tuple(dict.fromkeys(looked))))
                    continue
                lib.needed_found[name] = found
                if self.facts.legacy_loader:
                    loaded.setdefault(name, found)
                if id(found) not in stack and found.module is not None:
                    ok = (
                        resolve(found, top_folder if self.facts.legacy_loader else found.folder, (*stack, id(found)))
                        and ok
                    )
            return ok

        for lib in self.libraries:
            if not lib.is_wasm:
                continue  # refused (new loaders) or skipped (0.27): reported by the module checks
            if resolve(lib, lib.folder, (id(lib),)) and self.facts.legacy_loader:
                loaded.setdefault(posixpath.basename(lib.path), lib)

    def closure(self, lib: Library) -> list[Library]:
        """The libraries whose exports ``lib`` sees: its needed libraries, recursively."""
        out: list[Library] = []
        todo = list(lib.needed_found.values())
        while todo:
            nxt = todo.pop()
            if any(nxt is o for o in out) or nxt is lib:
                continue
            out.append(nxt)
            todo += nxt.needed_found.values()
        return out


def _placeholder(path: str) -> Library:
    return Library(path, None, True, ours=False)


@dataclass(frozen=True)
class Unresolved:
    foreign: tuple[str, ...]  # imports from a module the loader does not provide (module.name)
    load: tuple[str, ...]  # data symbols, function addresses, globals, tags: the load fails
    call: tuple[str, ...]  # functions: the first call fails


def unresolved_imports(
    module: Module, visible: Iterable[Module], facts: LoaderFacts, skip: frozenset[str] = frozenset()
) -> Unresolved:
    """Imports of ``module`` that nothing provides. ``skip``: names another check reports."""
    foreign = sorted({f"{i.module}.{i.name}" for i in module.imports if i.module not in IMPORT_MODULES})
    if facts.exports is None:
        return Unresolved(tuple(foreign), (), ())
    provided = set(module.export_names())
    for other in visible:
        provided |= other.export_names()
    weak = {name for _, name, flags in (module.dylink.import_flags if module.dylink else ()) if flags & 3 == WEAK}

    def known(name: str) -> bool:
        if name in provided or name in LOADER_SYMBOLS or facts.exports.provides(name):
            return True
        return facts.legacy_loader and name.startswith(LEGACY_DYNAMIC_PREFIXES)

    load, call = set(), set()
    for imp in module.imports:
        if imp.module not in IMPORT_MODULES or imp.name in weak or imp.name in skip or known(imp.name):
            continue
        if imp.module in ("GOT.mem", "GOT.func") or imp.kind != "func":
            load.add(imp.name)
        else:
            call.add(imp.name)
    return Unresolved(tuple(foreign), tuple(sorted(load)), tuple(sorted(call)))
