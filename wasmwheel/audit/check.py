"""Wheel audit: find what Pyodide would refuse before a user installs the wheel.

Each check has a code, a severity and a one-line fix. An *error* is only what the ABI's
Pyodide runtime refuses: its installer does not install the wheel (micropip checks the
tags), a module does not load, or importing it fails or ends the runtime. A *warning*
is something that loads and imports but breaks when code reaches it, or may break later:
Emscripten binds function imports lazily, so a function nobody defines only ends the
runtime when it is called (WW132), unless the module's own initialisation always calls
it (WW134). What each check predicts was measured in the npm runtimes 0.27.8 (2024_0),
0.29.5 (2025_0), 314.0.7 (2026_0) and 315.0.0a2 (2026_5) under Node 20; the tests load a
module for every code and confirm what the runtime does. How the runtime installs a
wheel, finds needed libraries and resolves imports is modelled in loader.py, against
the runtime's exports (runtime_exports.py).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import posixpath
import re
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name
from packaging.version import Version

from wasmwheel.audit import runtime_exports
from wasmwheel.audit.loader import (
    DATA_DIR_RE,
    IMPORT_MODULES,
    SHAREDLIB_RE,
    WASM_MAGIC,
    Library,
    Linker,
    LoaderFacts,
    unresolved_imports,
)
from wasmwheel.audit.runtime_exports import WASM_PAGE
from wasmwheel.audit.wasm import DYLINK_SECTION, Module, WasmError, always_called, parse_module
from wasmwheel.fsutil import sha256_file
from wasmwheel.model.abi import Abi
from wasmwheel.model.errors import WasmwheelError
from wasmwheel.runner import StepLog
from wasmwheel.wheel import RetagError, WheelName

if TYPE_CHECKING:  # annotations only: a doit start does not import the facts' classes
    from wasmwheel.model.facts import WheelFacts

ERROR = "error"
WARNING = "warning"
# Bump when a check's logic changes: every audit step reruns (it is in audit_config()).
RULES_VERSION = 4


@dataclass(frozen=True)
class Check:
    code: str
    severity: str
    title: str
    fix: str
    predicts: str  # what the runtime does, as measured


LINK_FIX = (
    "link the library that defines it (a needed library in the wheel), or build against this ABI's "
    "Python and Emscripten, whose runtime exports it"
)
CHECKS: dict[str, Check] = {
    c.code: c
    for c in (
        Check(
            "WW100",
            ERROR,
            "not a valid wheel",
            "rebuild the wheel: it is not a zip, a member cannot be read, or its file name is not a wheel's",
            "Pyodide's loadPackage and micropip refuse it",
        ),
        Check(
            "WW101",
            ERROR,
            "not a WebAssembly module",
            "rebuild for wasm32-unknown-emscripten; this .so is truncated or was built for another platform",
            "Pyodide fails to load the library",
        ),
        Check(
            "WW102",
            ERROR,
            "not an Emscripten side module (no dylink.0 section first)",
            "link as a side module: -C link-arg=-sSIDE_MODULE=2 (maturin adds it for wasm32-unknown-emscripten)",
            "load fails: 'need the dylink section to be first'",
        ),
        Check(
            "WW103",
            ERROR,
            "shared memory (built with -pthread or atomics + shared memory)",
            "rebuild without -pthread / -C target-feature=+atomics: Pyodide has no threads and no shared memory",
            "load fails: LinkError on the memory import (shared state or maximum size mismatch)",
        ),
        Check(
            "WW104",
            ERROR,
            "no PyInit_<name> export matching the file name",
            "make the module name match the file: #[pymodule] fn <name> and [tool.maturin] module-name",
            "import fails: 'dynamic module does not define module export function (PyInit_<name>)'",
        ),
        Check(
            "WW105",
            ERROR,
            "extension suffix for another Python or platform",
            "build with the ABI's Python (maturin -i python3.X) so the file ends in .cpython-3X-wasm32-emscripten.so",
            "Pyodide does not load the file: import fails with ModuleNotFoundError",
        ),
        Check(
            "WW106",
            ERROR,
            "modules under <dist>.data/purelib or .data/platlib",
            "put packages and extension modules at the wheel's root (for a binary wheel, Root-Is-Purelib: false "
            "puts them in platlib = the root); pip moves .data/platlib, Pyodide does not",
            "installs, then import fails with ModuleNotFoundError: they stay in site-packages/<dist>.data/...",
        ),
        Check(
            "WW107",
            ERROR,
            "memory import the runtime's memory cannot satisfy",
            "link without --max-memory / --initial-memory / -sMAXIMUM_MEMORY for the side module (and not wasm64): "
            "it shares Pyodide's memory",
            "load fails: LinkError 'memory import has a larger maximum size' / 'is smaller than initial' "
            "(wasm64: CompileError 'invalid memory limits flags')",
        ),
        Check(
            "WW108",
            ERROR,
            "extended-const instructions in constant expressions",
            "build without -mextended-const / -mcpu=bleeding-edge (Rust: no +extended-const target feature)",
            "load fails on Node.js 18 and 20 (which Pyodide supports): CompileError 'opcode i32.add is not allowed "
            "in constant expressions'",
        ),
        Check(
            "WW109",
            WARNING,
            "RECORD does not match the wheel's files",
            "rebuild the wheel (or repack it with `wheel pack`): RECORD lists every file with its sha256",
            "loads and imports: Pyodide's installer (loadPackage, micropip) does not read RECORD, and pip does not "
            "check its hashes (pypa/pip#4705); pip refuses a wheel without RECORD",
        ),
        Check(
            "WW110",
            ERROR,
            "Python/ABI tag does not fit the ABI's Python",
            "build for the ABI's Python (cp tag), or an abi3 wheel whose minimum is not newer",
            "micropip/pip refuse to install it (Pyodide's loadPackage checks no tags)",
        ),
        Check(
            "WW111",
            ERROR,
            "platform tag is not the ABI's",
            "retag it: python -m wasmwheel retag WHEEL --abi <abi>",
            "micropip/pip refuse to install it (Pyodide's loadPackage checks no tags)",
        ),
        Check(
            "WW112",
            WARNING,
            "files (no modules) under <dist>.data/purelib or .data/platlib",
            "put them at the wheel's root, where their package looks for them (or under <dist>.data/data/ for files "
            "meant for sys.prefix)",
            "installs and imports; the files stay in site-packages/<dist>.data/..., so code that reads them fails",
        ),
        Check(
            "WW120",
            WARNING,
            "JavaScript exception handling (imports invoke_*) in a wasm-EH ABI",
            "rebuild with the ABI's toolchain: wasm exception handling "
            "(Rust >= 1.93, or -Z emscripten-wasm-eh with the wasm-EH sysroot)",
            "loads and imports (unless its initialisation calls one: WW123); then the first call through an invoke_* "
            "wrapper is a fatal error ('cannot resolve symbol invoke_...'), with or without an exception (PyO3 "
            "runs each function it exposes inside catch_unwind, src/impl_/trampoline.rs: in a PyO3 module, every call)",
        ),
        Check(
            "WW121",
            ERROR,
            "WebAssembly exception handling (imports a wasm EH tag) in a JS-EH ABI",
            "rebuild with the ABI's toolchain: JS exception handling (no -Z emscripten-wasm-eh / -fwasm-exceptions)",
            "load fails: 'tag import requires a WebAssembly.Tag' (or 'bad export type for __wasm_lpad_context')",
        ),
        Check(
            "WW122",
            WARNING,
            "WebAssembly exception-handling instructions in a JS-EH ABI",
            "rebuild with the ABI's toolchain (JS exception handling)",
            "loads and runs in 0.27.8; an exception unwinding through it meets a runtime built for JS exceptions",
        ),
        Check(
            "WW123",
            ERROR,
            "JavaScript exception handling used as the module loads or is imported, in a wasm-EH ABI",
            "rebuild with the ABI's toolchain: wasm exception handling "
            "(Rust >= 1.93, or -Z emscripten-wasm-eh with the wasm-EH sysroot)",
            "the import (or the load, for constructors) ends the runtime: 'cannot resolve symbol invoke_...'",
        ),
        Check(
            "WW124",
            WARNING,
            "a PyO3 module built with panic=abort",
            "build with unwinding, as the ABI's std does: remove panic = \"abort\" from the crate's profile and "
            "-C panic=abort from the flags",
            "loads and runs until the first Rust panic, which ends the whole interpreter ('RuntimeError: unreachable', "
            "'Aborted()' on 2024_0) instead of raising pyo3_runtime.PanicException",
        ),
        Check(
            "WW130",
            ERROR,
            "needed shared library not found where Pyodide looks",
            "ship the library at the wheel's root (site-packages), or next to the module with a $ORIGIN runtime path",
            "load fails: 'Failed to find dynamic library' "
            "(0.27: 'Didn't expect to load any more file_packager files!')",
        ),
        Check(
            "WW131",
            ERROR,
            "undefined data symbol or function address",
            LINK_FIX,
            "load fails: 'Dynamic linking error: undefined symbol' "
            "(0.27/0.29: \"bad export type for '...': undefined\")",
        ),
        Check(
            "WW132",
            WARNING,
            "calls a function nobody defines",
            LINK_FIX,
            "loads and imports (unless its initialisation calls it: WW134); code that reaches the call is a fatal "
            "error that ends the runtime ('Dynamic linking error: cannot resolve symbol ...')",
        ),
        Check(
            "WW133",
            ERROR,
            "imports from a module the loader does not provide",
            "import only from env (and GOT.mem, GOT.func, wasi_snapshot_preview1): drop import_module attributes",
            "load fails: 'Import #N module=\"...\" error: module is not an object or function'",
        ),
        Check(
            "WW134",
            ERROR,
            "calls a function nobody defines as the module loads or is imported",
            LINK_FIX,
            "the import (or the load, for constructors and the start function) ends the runtime: "
            "'Dynamic linking error: cannot resolve symbol ...'",
        ),
    )
}


def audit_config(abi: Abi) -> dict[str, Any]:
    """Everything that shapes an audit verdict besides the wheel itself (the pipeline step's config_changed)."""
    return {
        "rules": RULES_VERSION,
        "checks": sorted((c.code, c.severity) for c in CHECKS.values()),
        "python": abi.python_minor,
        "platform_tags": list(abi.all_platform_tags),
        "exception_handling": abi.exception_handling,
        "pyodide": abi.pyodide_version,
        "runtime_exports": runtime_exports.file_digest(abi),
    }


def check_table() -> list[tuple[str, str, str, str]]:
    """(code, severity, what, fix) for the docs."""
    return [(c.code, c.severity, c.title, c.fix) for c in CHECKS.values()]


@dataclass(frozen=True)
class Finding:
    code: str
    member: str  # path inside the wheel ("" for the wheel itself)
    message: str

    @property
    def check(self) -> Check:
        return CHECKS[self.code]

    @property
    def severity(self) -> str:
        return self.check.severity

    @property
    def fix(self) -> str:
        return self.check.fix

    def to_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": self.severity,
            "member": self.member,
            "message": self.message,
            "fix": self.fix,
        }

    def line(self) -> str:
        where = f"{self.member}: " if self.member else ""
        return f"{self.code} {self.severity}: {where}{self.message}\n  fix: {self.fix}"


@dataclass(frozen=True)
class AuditReport:
    wheel: Path
    abi: str
    findings: tuple[Finding, ...]
    modules: tuple[str, ...] = ()  # extension modules checked
    notes: tuple[str, ...] = ()  # checks that could not run

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == WARNING)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def to_dict(self) -> dict[str, Any]:
        return {
            "wheel": str(self.wheel),
            "abi": self.abi,
            "ok": self.ok,
            "modules": list(self.modules),
            "findings": [f.to_dict() for f in self.findings],
            "notes": list(self.notes),
        }


class AuditFailed(WasmwheelError):
    def __init__(self, report: AuditReport):
        self.report = report
        lines = [f"{report.wheel.name}: audit for ABI {report.abi} found {len(report.errors)} error(s)"]
        lines += ["  " + f.line().replace("\n", "\n  ") for f in report.errors]
        super().__init__("\n".join(lines))


# -- file names -----------------------------------------------------------------------------

EXT_TAG_RE = re.compile(r"^(?P<stem>[^.]+)\.(?P<tag>cpython-(?P<ver>\d+)[a-z]*(?:-(?P<plat>[a-z0-9_-]+))?|abi3)\.so$")
PLAIN_SO_RE = re.compile(r"^[^.]+\.so$")


def pyinit_name(module: str) -> str:
    """The init function CPython looks up for ``module`` (PEP 489: punycode for non-ASCII names)."""
    try:
        module.encode("ascii")
        return f"PyInit_{module}"
    except UnicodeEncodeError:
        return "PyInitU_" + module.encode("punycode").decode("ascii").replace("-", "_")


def _py_version(abi: Abi) -> tuple[int, int]:
    v = Version(abi.python)
    return v.major, v.minor


def supported_tags(abi: Abi) -> list[Tag]:
    """The tags an installer for this ABI accepts, most specific first (as pip/micropip compute them)."""
    version = _py_version(abi)
    platforms = list(abi.all_platform_tags)
    return [
        *cpython_tags(version, platforms=platforms),
        *compatible_tags(version, f"cp{version[0]}{version[1]}", platforms),
    ]


# -- the checks -------------------------------------------------------------------------------


@dataclass
class _Member:
    path: str  # in the wheel = where the installer puts it, relative to site-packages
    data: bytes = b""
    lib: Library | None = None  # None: the installer does not load it (an extension for another Python)
    kind: str = "library"  # "extension" or "library"
    ext_name: str = ""  # module name for extensions
    findings: list[Finding] = field(default_factory=list)

    @property
    def module(self) -> Module | None:
        return self.lib.module if self.lib else None


def _check_tags(name: WheelName, abi: Abi) -> list[Finding]:
    tags = name.tags
    if tags & set(supported_tags(abi)):
        return []
    out = []
    plats = set(abi.all_platform_tags)
    if not any(t.platform in plats for t in tags):
        have = ", ".join(sorted({t.platform for t in tags}))
        out.append(
            Finding(
                "WW111",
                "",
                f"platform tag {have} is not {abi.platform_tag} "
                f"or a legacy tag of ABI {abi.name} ({', '.join(abi.legacy_tags) or 'none'})",
            )
        )
    retagged = {Tag(t.interpreter, t.abi, abi.platform_tag) for t in tags}
    if not retagged & set(supported_tags(abi)):
        have = ", ".join(sorted(f"{t.interpreter}-{t.abi}" for t in tags))
        out.append(
            Finding(
                "WW110",
                "",
                f"{have} does not fit Python {abi.python_minor} of ABI {abi.name} "
                f"(wants {abi.cp_tag}-{abi.cp_tag}, or abi3 from cp32 to {abi.cp_tag})",
            )
        )
    return out


MODULE_SUFFIXES = (".py", ".pyc", ".so")  # what Python imports (Pyodide's extensions end in .so)


def _check_data_dirs(names: Sequence[str]) -> list[Finding]:
    """Pyodide's installer copies only <dist>.data/data; purelib and platlib stay where they are: modules
    there do not import (an error), other files are not where their package looks for them (a warning)."""
    stuck: dict[str, list[str]] = {}
    for n in names:
        m = DATA_DIR_RE.match(n)
        if m and m.group("scheme") in ("purelib", "platlib"):
            stuck.setdefault(f"{m.group('dir')}/{m.group('scheme')}/", []).append(m.group("rest"))
    out = []
    for folder, rest in stuck.items():
        modules = [r for r in rest if r.endswith(MODULE_SUFFIXES)]
        if modules:
            out.append(
                Finding(
                    "WW106",
                    folder,
                    f"{len(modules)} module(s) (e.g. {modules[0]}) stay in "
                    f"site-packages/{folder}: Pyodide installs only .data/data/, so "
                    "Python does not find them",
                )
            )
        else:
            out.append(
                Finding(
                    "WW112",
                    folder,
                    f"{len(rest)} file(s) (e.g. {rest[0]}) stay in site-packages/"
                    f"{folder}: Pyodide installs only .data/data/, so they are not "
                    "where their package looks for them",
                )
            )
    return out


def _classify(m: _Member, abi: Abi) -> list[Finding]:
    """Decide whether a .so is an extension module and check its suffix."""
    base = PurePosixPath(m.path).name
    match = EXT_TAG_RE.match(base)
    major, minor = _py_version(abi)
    want = f"cpython-{major}{minor}-wasm32-emscripten"
    if match:
        m.kind, m.ext_name = "extension", match.group("stem")
        if match.group("tag") in (want, "abi3"):
            return []
        return [
            Finding(
                "WW105",
                m.path,
                f"suffix .{match.group('tag')}.so is not loaded by Python {abi.python_minor} "
                f"in Pyodide (wants .{want}.so or .abi3.so)",
            )
        ]
    plain = (
        PLAIN_SO_RE.match(base)
        and not base.startswith("lib")
        and not PurePosixPath(m.path).parent.name.endswith(".libs")
    )
    # A plain <name>.so is importable as <name>: an extension if it exports any PyInit.
    if (
        plain
        and m.module is not None
        and any(e.startswith(("PyInit_", "PyInitU_")) for e in m.module.export_names("func"))
    ):
        m.kind, m.ext_name = "extension", base[:-3]
    return []


def _drop_shadowed_foreign_extensions(members: Sequence[_Member], names: Sequence[str]) -> None:
    """An extension for another Python or platform (WW105) is only a failure when nothing else in its folder
    imports under its name: beside a loadable extension, a .py module or a package of that name, Pyodide
    never loads it and Python never tries it (measured: a cpython-313 and a Linux build beside the cpython-314
    one)."""
    importable = {
        posixpath.split(m.path)[0] + "/" + m.ext_name for m in members if m.kind == "extension" and m.lib is not None
    }
    for n in names:
        folder, base = posixpath.split(n)
        if base == "__init__.py":
            importable.add("{}/{}".format(*posixpath.split(folder)))
        elif base.endswith(".py"):
            importable.add(f"{folder}/{base[:-3]}")
    for m in members:
        if m.kind == "extension" and m.lib is None and posixpath.split(m.path)[0] + "/" + m.ext_name in importable:
            m.findings = [f for f in m.findings if f.code != "WW105"]


def _check_module(m: _Member, abi: Abi, facts: LoaderFacts) -> list[Finding]:
    mod = m.module
    assert mod is not None
    out: list[Finding] = []
    first = mod.first_section
    if not mod.dylink_first:
        got = "it has no sections" if first is None else f"its first section is '{first.label}'"
        where = "has a dylink.0 section, but not first" if mod.dylink else "has no dylink.0 section"
        out.append(Finding("WW102", m.path, f"{where} ({got}): a main module or plain wasm, not a side module"))
    elif first is not None and first.name != DYLINK_SECTION and not facts.accepts_legacy_dylink:
        out.append(Finding("WW102", m.path, f"old 'dylink' section: Pyodide {abi.pyodide_version} reads only dylink.0"))
    shared = [i for i in mod.imports if i.kind == "memory" and i.limits and i.limits.shared]
    if shared or any(lim.shared for lim in mod.memories):
        what = f"imports {shared[0].qualname} as shared memory" if shared else "defines a shared memory"
        out.append(Finding("WW103", m.path, what))
    out += _check_memory(m, facts)
    if mod.extended_const_ops:
        ops = ", ".join(sorted(mod.extended_const_ops))
        out.append(Finding("WW108", m.path, f"uses extended-const instructions ({ops}) in constant expressions"))
    if m.kind == "extension":
        want = pyinit_name(m.ext_name)
        funcs = mod.export_names("func")
        if want not in funcs:
            others = sorted(e for e in funcs if e.startswith(("PyInit_", "PyInitU_")))
            has = f"it exports {', '.join(others)}" if others else "it exports no PyInit function"
            out.append(Finding("WW104", m.path, f"Python imports it as {m.ext_name!r} and calls {want}, but {has}"))
    out += _check_exceptions(m, abi)
    out += _check_panic_strategy(m)
    return out


# PyO3 names its panic type in every module it builds (pyo3's src/panic.rs, create_exception!).
PYO3_MARK = b"pyo3_runtime.PanicException"
# What an unwinding Rust module uses to throw: the wasm EH tag, or Emscripten's JS exception runtime.
UNWIND_IMPORTS = ("_Unwind_RaiseException", "__cxa_throw", "__resumeException")


def _check_panic_strategy(m: _Member) -> list[Finding]:
    """A PyO3 module with no way to unwind: built with panic=abort. PyO3 runs every function it exposes
    inside catch_unwind, so an unwinding build always has the machinery (a wasm EH tag, or invoke_*
    wrappers, and a throw); with panic=abort catch_unwind is a plain call and a panic calls abort()."""
    mod = m.module
    if mod is None or PYO3_MARK not in m.data:
        return []
    if mod.imports_of("tag") or mod.tag_count:
        return []
    funcs = {i.name for i in mod.imports_of("func")}
    if any(name.startswith("invoke_") or name in UNWIND_IMPORTS for name in funcs):
        return []
    return [
        Finding(
            "WW124",
            m.path,
            "PyO3 module without unwinding (no exception tag, no invoke_* wrappers, no "
            "throw): built with panic=abort, so a Rust panic ends the interpreter",
        )
    ]


def _check_memory(m: _Member, facts: LoaderFacts) -> list[Finding]:
    """The imported memory is the runtime's: its limits must admit it."""
    mod = m.module
    assert mod is not None
    out = []
    for imp in mod.imports_of("memory"):
        lim = imp.limits
        if lim is None or lim.shared:
            continue  # shared: WW103
        if lim.memory64:
            out.append(
                Finding(
                    "WW107", m.path, f"imports {imp.qualname} as 64-bit memory (wasm64); Pyodide's memory is 32-bit"
                )
            )
            continue
        if facts.exports is None:
            continue
        have_max, have_min = facts.exports.memory_maximum, facts.exports.memory_initial
        if lim.maximum is not None and (have_max is None or lim.maximum < have_max):
            out.append(
                Finding(
                    "WW107",
                    m.path,
                    f"{imp.qualname} declares a maximum of {lim.maximum} pages; Pyodide "
                    f"{facts.pyodide}'s memory may grow to {have_max or 'unlimited'} pages",
                )
            )
        # The loader allocates the module's static data (dylink.0 memory size) before instantiating it.
        static = -(-(mod.dylink.mem_size if mod.dylink else 0) // WASM_PAGE)
        if lim.minimum > have_min + static:
            out.append(
                Finding(
                    "WW107",
                    m.path,
                    f"{imp.qualname} needs at least {lim.minimum} pages; Pyodide "
                    f"{facts.pyodide}'s memory starts with {have_min} (+{static} for "
                    "the module's data)",
                )
            )
    return out


JS_EH_PREFIXES = ("invoke_",)
WASM_EH_TAGS = ("__cpp_exception", "__c_longjmp")
WASM_EH_DATA = ("__wasm_lpad_context",)


def _check_exceptions(m: _Member, abi: Abi) -> list[Finding]:
    mod = m.module
    assert mod is not None
    if abi.exception_handling == "wasm":
        invokes = sorted(
            {i.name for i in mod.imports_of("func") if i.module == "env" and i.name.startswith(JS_EH_PREFIXES)}
        )
        if invokes:
            shown = ", ".join(invokes[:3]) + (f" (+{len(invokes) - 3} more)" if len(invokes) > 3 else "")
            return [
                Finding(
                    "WW120",
                    m.path,
                    f"imports {shown}: built for JavaScript exception handling; "
                    f"ABI {abi.name} uses wasm exception handling: the wheel loads, but "
                    "the first call through one of them ends the runtime",
                )
            ]
        return []
    tags = sorted(
        {i.name for i in mod.imports_of("tag") if i.name in WASM_EH_TAGS}
        | {i.name for i in mod.imports_of("global") if i.name in WASM_EH_DATA}
    )
    other_tags = sorted({i.qualname for i in mod.imports_of("tag") if i.name not in WASM_EH_TAGS})
    if tags or other_tags:
        return [
            Finding(
                "WW121",
                m.path,
                f"imports {', '.join(tags + other_tags)}: built for wasm exception handling; "
                f"ABI {abi.name} uses JavaScript exception handling",
            )
        ]
    if mod.has_feature("exception-handling") or mod.tag_count:
        return [
            Finding(
                "WW122",
                m.path,
                f"uses wasm exception-handling instructions; ABI {abi.name} uses JavaScript exception handling",
            )
        ]
    return []


# The runtime support each exception-handling ABI's modules import, missing from the other ABI's runtime:
# reported as WW120/WW121 (the cause), not as undefined symbols on top.
JS_EH_SUPPORT = (
    "invoke_",
    "__cxa_find_matching_catch_",
    "__resumeException",
    "getTempRet0",
    "setTempRet0",
    "llvm_eh_typeid_for",
    "__THREW__",
    "__threwValue",
    "emscripten_longjmp",
    "_emscripten_throw_longjmp",
    "saveSetjmp",
    "testSetjmp",
    "setThrew",
)
WASM_EH_SUPPORT = ("__wasm_setjmp", "__wasm_longjmp", "_Unwind_CallPersonality", *WASM_EH_TAGS, *WASM_EH_DATA)


def _eh_reported(mod: Module, findings: Sequence[Finding]) -> frozenset[str]:
    """Imports an exception-handling finding already explains."""
    codes = {f.code for f in findings}
    family = (JS_EH_SUPPORT if "WW120" in codes else ()) + (WASM_EH_SUPPORT if "WW121" in codes else ())
    return (
        frozenset(i.name for i in mod.imports if i.name.startswith(family) or ("WW121" in codes and i.kind == "tag"))
        if family
        else frozenset()
    )


def _shown(names: Sequence[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _check_symbols(m: _Member, closure: Sequence[Library], facts: LoaderFacts, abi: Abi) -> list[Finding]:
    assert m.module is not None
    visible = [lib.module for lib in closure if lib.module is not None]
    un = unresolved_imports(m.module, visible, facts, skip=_eh_reported(m.module, m.findings))
    out = []
    if un.foreign:
        out.append(
            Finding(
                "WW133",
                m.path,
                f"imports {_shown(un.foreign)} from a module the loader does not provide "
                f"(only {', '.join(IMPORT_MODULES)})",
            )
        )
    if un.load:
        out.append(
            Finding(
                "WW131",
                m.path,
                f"needs {_shown(un.load)}, which neither Pyodide {facts.pyodide} nor its needed libraries define",
            )
        )
    if un.call:
        out.append(
            Finding(
                "WW132",
                m.path,
                f"calls {_shown(un.call)}, which neither Pyodide {facts.pyodide} nor "
                "its needed libraries define: the wheel loads and imports, but calling "
                f"code that reaches {'it' if len(un.call) == 1 else 'one of them'} ends "
                "the runtime ('cannot resolve symbol')",
            )
        )
    # Calls the module always makes as it loads or is imported: with one that cannot resolve, it never works.
    unresolvable = set(unresolved_imports(m.module, visible, facts).call)
    if unresolvable:
        out += _check_init(m, unresolvable, facts, abi)
    return out


def _init_roots(m: _Member) -> list[tuple[str, int]]:
    """(what runs it, function index) for the code a module runs as it loads, and as it is imported."""
    mod = m.module
    assert mod is not None
    roots = []
    if mod.start is not None:
        roots.append(("its start function runs when it loads", mod.start))
    ctors = mod.function_index("__wasm_call_ctors")  # Emscripten's loader calls it right after instantiating
    if ctors is not None:
        roots.append(("its constructors (__wasm_call_ctors) run when it loads", ctors))
    init = mod.function_index(pyinit_name(m.ext_name)) if m.kind == "extension" else None
    if init is not None:
        roots.append((f"{pyinit_name(m.ext_name)} runs when it is imported", init))
    return roots


def _check_init(m: _Member, unresolvable: set[str], facts: LoaderFacts, abi: Abi) -> list[Finding]:
    assert m.module is not None
    out = []
    for when, index in _init_roots(m):
        called = [i.name for i in always_called(m.data, m.module, index) if i.name in unresolvable]
        eh = [n for n in called if abi.exception_handling == "wasm" and n.startswith(JS_EH_SUPPORT)]
        other = [n for n in called if n not in eh]
        if eh:
            out.append(
                Finding(
                    "WW123",
                    m.path,
                    f"{when} and always calls {_shown(eh)}, JavaScript exception "
                    f"handling, which Pyodide {facts.pyodide} (wasm exception handling) "
                    "does not provide: that ends the runtime",
                )
            )
        if other:
            out.append(
                Finding(
                    "WW134",
                    m.path,
                    f"{when} and always calls {_shown(other)}, which neither Pyodide "
                    f"{facts.pyodide} nor its needed libraries define: that ends the "
                    "runtime",
                )
            )
        if called:
            break  # the first failure ends it: later code never runs
    return out


def _missing_findings(linker: Linker, abi: Abi, facts: LoaderFacts) -> list[Finding]:
    out = []
    for miss in linker.missing:
        looked = ", ".join(miss.looked)
        if miss.elsewhere:
            where = miss.elsewhere[0] if miss.elsewhere[0].startswith("/") else f"site-packages/{miss.elsewhere[0]}"
            msg = f"needs {miss.needed}; the wheel has {where}, but Pyodide {abi.pyodide_version} looks in {looked}"
        else:
            msg = (
                f"needs {miss.needed}, which is neither in the wheel nor provided by Pyodide {abi.pyodide_version} "
                f"(it looks in {looked})"
            )
        if facts.legacy_loader:
            msg += " or for a library of that name loaded before"
        out.append(Finding("WW130", miss.library, msg))
    return out


@dataclass(frozen=True)
class _Wheel:
    path: Path
    name: WheelName
    names: tuple[str, ...]  # members, in zip order
    libs: tuple[tuple[str, bytes], ...]  # shared libraries, in zip order
    findings: tuple[Finding, ...] = ()  # about the wheel as a whole (its RECORD)


RECORD_RE = re.compile(r"^[^/]+\.dist-info/RECORD$")
RECORD_SIGNATURES = re.compile(r"^[^/]+\.dist-info/RECORD\.(jws|p7s)$")


def _record_problems(name: WheelName, members: dict[str, bytes]) -> list[str]:
    """Where RECORD disagrees with the wheel's files (PEP 427: every file listed with its hash, but RECORD itself
    and its signatures)."""
    records = [n for n in members if RECORD_RE.match(n)]
    if not records:
        return ["there is no <name>-<version>.dist-info/RECORD"]
    own = [n for n in records if canonicalize_name(n.split("-")[0]) == canonicalize_name(name.distribution)]
    record = (own or records)[0]
    try:
        rows = list(csv.reader(io.StringIO(members[record].decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        return [f"{record} cannot be read ({exc})"]
    listed: dict[str, str] = {}
    problems = []
    for number, row in enumerate(rows, 1):
        if not row:
            continue
        if len(row) != 3:
            problems.append(f"{record} line {number} has {len(row)} fields, not 3")
            continue
        listed[row[0]] = row[1]
    for member, data in members.items():
        if member == record or RECORD_SIGNATURES.match(member):
            continue
        if member not in listed:
            problems.append(f"{member} is not listed")
            continue
        algorithm, _, digest = listed[member].partition("=")
        if algorithm not in hashlib.algorithms_guaranteed or algorithm.startswith("shake"):
            problems.append(f"{member} has no usable hash ({listed[member] or 'none'})")
        elif base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest()).rstrip(b"=").decode() != digest:
            problems.append(f"{member} does not match its {algorithm} hash")
    problems += [f"{path} is listed but not in the wheel" for path in listed if path not in members]
    return problems


def _read_wheel(wheel: Path) -> _Wheel | Finding:
    try:
        name = WheelName.parse(wheel.name)
    except RetagError as exc:
        return Finding("WW100", "", str(exc))
    members: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    members[info.filename] = zf.read(info)  # checks each member's CRC-32
    except (
        zipfile.BadZipFile,
        zlib.error,
        KeyError,
        ValueError,
        OSError,
        EOFError,
        RuntimeError,
        NotImplementedError,
    ) as exc:  # RuntimeError: an encrypted member
        return Finding("WW100", "", f"cannot read the wheel: {exc}")
    libs = tuple((n, d) for n, d in members.items() if SHAREDLIB_RE.search(n))
    findings = ()
    problems = _record_problems(name, members)
    if problems:
        findings = (
            Finding(
                "WW109",
                "",
                f"RECORD does not match the wheel: {_shown(problems, 2)}; Pyodide's "
                "installer (loadPackage and micropip) does not read RECORD, so it installs",
            ),
        )
    return _Wheel(wheel, name, tuple(members), libs, findings)


def _library(path: str, data: bytes, ours: bool) -> tuple[Library, WasmError | None]:
    try:
        return Library(path, parse_module(data), data[:4] == WASM_MAGIC, ours), None
    except WasmError as exc:
        return Library(path, None, data[:4] == WASM_MAGIC, ours), exc


def _audit(read: _Wheel, abi: Abi, facts: LoaderFacts, companions: Sequence[_Wheel]) -> AuditReport:
    findings: list[Finding] = [*read.findings, *_check_tags(read.name, abi), *_check_data_dirs(read.names)]
    theirs = [_library(p, d, False)[0] for c in companions for p, d in c.libs if facts.loads(p)]
    members: list[_Member] = []
    for path, data in read.libs:
        m = _Member(path, data)
        if facts.loads(path):
            m.lib, error = _library(path, data, True)
            if error is not None:
                m.findings.append(Finding("WW101", path, str(error)))
        members.append(m)
    linker = Linker(
        facts,
        read.name.distribution,
        theirs + [m.lib for m in members if m.lib],
        [n for c in companions for n in c.names] + list(read.names),
    )
    linker.link()
    needed = {id(found) for lib in linker.libraries for found in lib.needed_found.values()}
    unlinked = {miss.library for miss in linker.missing}  # their symbols may be in the missing library
    for m in members:
        m.findings += _classify(m, abi)
    _drop_shadowed_foreign_extensions(members, read.names)
    for m in members:
        if m.module is not None and m.lib is not None:
            m.findings += _check_module(m, abi, facts)
            closure = linker.closure(m.lib)
            # A missing or unreadable needed library may define what the module imports: reported as such.
            if not unlinked & {m.path, *(lib.path for lib in closure)} and all(lib.module for lib in closure):
                m.findings += _check_symbols(m, closure, facts, abi)
        elif (
            m.lib is not None
            and not m.lib.is_wasm
            and facts.legacy_loader
            and m.kind == "library"
            and id(m.lib) not in needed
        ):
            # 0.27 skips a library that is not WebAssembly (a warning) when nothing needs it.
            m.findings = [f for f in m.findings if f.code != "WW101"]
        findings += m.findings
    findings += _missing_findings(linker, abi, facts)
    modules = tuple(sorted(m.path for m in members if m.kind == "extension" and m.lib is not None))
    notes = (
        ()
        if facts.exports
        else (
            f"Pyodide {facts.pyodide}'s exports are not recorded ({abi.runtime_lock_dir}/"
            f"{runtime_exports.FILENAME}): imported symbols and memory limits were not checked; installing the runtime "
            f"(doit pyodide:{abi.name}) records them",
        )
    )
    return AuditReport(read.path, abi.name, tuple(findings), modules, notes)


def audit_wheel(wheel: Path, abi: Abi, companions: Sequence[Path] = ()) -> AuditReport:
    """Audit one wheel for ``abi``. ``companions``: wheels installed before it (their files and libraries count)."""
    wheel = Path(wheel)
    read = _read_wheel(wheel)
    if isinstance(read, Finding):
        return AuditReport(wheel, abi.name, (read,))
    others = [r for r in (_read_wheel(Path(c)) for c in companions if Path(c) != wheel) if isinstance(r, _Wheel)]
    return _audit(read, abi, LoaderFacts.for_abi(abi), others)


def audit_wheels(wheels: Iterable[Path], abi: Abi) -> list[AuditReport]:
    """Audit wheels meant to be installed together (each one's files and libraries serve the others)."""
    paths = [Path(w) for w in wheels]
    facts = LoaderFacts.for_abi(abi)
    reads = {p: _read_wheel(p) for p in paths}
    out = []
    for p in paths:
        read = reads[p]
        if isinstance(read, Finding):
            out.append(AuditReport(p, abi.name, (read,)))
            continue
        others = [r for q, r in reads.items() if q != p and isinstance(r, _Wheel)]
        out.append(_audit(read, abi, facts, others))
    return out


# -- output -----------------------------------------------------------------------------------


def format_table(reports: Sequence[AuditReport]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []
    for r in reports:
        if not r.findings:
            rows.append((r.wheel.name, "ok", "", "", f"{len(r.modules)} extension module(s)"))
        for f in r.findings:
            rows.append((r.wheel.name, f.severity, f.code, f.member, f.message))
    header = ("WHEEL", "RESULT", "CODE", "MEMBER", "FINDING")
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) if rows else len(header[i]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header[:4], widths, strict=True)) + "  " + header[4]]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    fixes = sorted({(f.code, f.fix) for r in reports for f in r.findings})
    if fixes:
        lines.append("")
        lines += [f"{code}: {fix}" for code, fix in fixes]
    notes = list(dict.fromkeys(n for r in reports for n in r.notes))
    if notes:
        lines.append("")
        lines += [f"note: {n}" for n in notes]
    n_err = sum(len(r.errors) for r in reports)
    n_warn = sum(len(r.warnings) for r in reports)
    failed = sum(1 for r in reports if not r.ok)
    lines.append("")
    lines.append(f"{len(reports)} wheel(s) audited: {failed} failed, {n_err} error(s), {n_warn} warning(s)")
    return "\n".join(lines)


def to_json(reports: Sequence[AuditReport]) -> str:
    return json.dumps({"ok": all(r.ok for r in reports), "reports": [r.to_dict() for r in reports]}, indent=2)


def audit_step(abi: Abi, wheel: WheelFacts, log: StepLog) -> dict[str, Any]:
    """The audit step: audit the retagged wheel against its ABI; a finding that Pyodide would refuse
    fails the step (AuditFailed), warnings and notes go to the log."""
    path = Path(wheel.wheel)
    report = audit_wheel(path, abi)
    for finding in report.findings:
        log.write(finding.line() + "\n")
    for finding in report.warnings:
        log.note(f"warning {finding.code}: {finding.member or path.name}: {finding.message}")
    for note in report.notes:
        log.note(note)
    if not report.ok:
        raise AuditFailed(report)
    log.note(
        f"{path.name}: audit for ABI {abi.name} passed ({len(report.modules)} extension module(s), "
        f"{len(report.warnings)} warning(s))"
    )
    return {"wheel": str(path), "sha256": sha256_file(path), "warnings": [f.code for f in report.warnings]}
