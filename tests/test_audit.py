"""The audit against real runtimes and real wheels.

The contract (issues 3 and 11): an error only where the runtime refuses the wheel (it does
not load, or importing it fails or ends the runtime), and every such refusal the audit
can know of is an error; a wheel with only warnings loads and imports, and a clean one
runs. So each case below is a wheel holding a real side module built with clang-19
(broken on purpose or not); the test audits it AND loads it in the ABI's real Pyodide
under Node, then checks that the codes are the expected ones and that Pyodide did what
they predict: failed with the check's message (errors), imported and then failed where
the code reached the problem (warnings with ``fails``), or ran the script. Real wheels
from PyPI are audited, retagged and imported as well.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wheel.wheelfile import WheelFile

import wasmbuild
import wasmenc
from wasmwheel.__main__ import main
from wasmwheel.audit.check import CHECKS, ERROR, WARNING, audit_config, audit_wheel, audit_wheels, check_table
from wasmwheel.model.abi import load_abis
from wasmwheel.runner import StepLog
from wasmwheel.smoke.smoke import run_smoke
from wasmwheel.wheel import retag

REPO = Path(__file__).resolve().parent.parent
ABIS = load_abis(REPO / "abi")
MINOR = {"2024_0": 12, "2025_0": 13, "2026_0": 14, "2026_5": 15}
JS_EH = ("-fexceptions", "-mllvm", "-enable-emscripten-cxx-exceptions")
WASM_EH = ("-fwasm-exceptions",)


def make_wheel(folder: Path, dist: str, files: dict[str, bytes], tag: str, version: str = "1.0") -> Path:
    """A wheel with a valid RECORD (written by the wheel project)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-{tag}.whl"
    info = f"{dist}-{version}.dist-info"
    with WheelFile(path, "w") as wf:
        for name, data in files.items():
            wf.writestr(name, data)
        wf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        wf.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n")
    return path


def wheel_tag(abi: str) -> str:
    m = MINOR[abi]
    return f"cp3{m}-cp3{m}-{ABIS[abi].platform_tag}"


def smoke(runtimes, abi: str, wheels: list[Path], script: str):
    runtime = runtimes[ABIS[abi].pyodide_version] / "node_modules" / "pyodide"
    with StepLog(None) as log:
        return run_smoke(runtime, wheels, script, log, timeout=240)


# -- the cases: (what is in the wheel, what the audit says, what Pyodide does) ---------------------

HELLO_SCRIPT = "import hello_pyo3 as m\nassert m.sum_as_string(2, 3) == '5'\nassert m.Counter().increment() == 1\n"


def hello(
    abi: str, name: str | None = None, rewrite: Callable[[bytes], bytes] = bytes, **build
) -> Callable[[Path], dict[str, bytes]]:
    def files(tmp: Path) -> dict[str, bytes]:
        minor = MINOR[abi]
        so = wasmbuild.build_module(tmp / "hello.so", minor, **build)
        return {name or wasmbuild.so_name("hello_pyo3", minor): rewrite(so.read_bytes())}

    return files


def module(abi: str, source: str, mod: str, **build) -> Callable[[Path], dict[str, bytes]]:
    def files(tmp: Path) -> dict[str, bytes]:
        minor = MINOR[abi]
        options = dict(build)
        defines = {"MODULE_NAME": mod, **options.pop("defines", {})}
        so = wasmbuild.build_module(tmp / "m.so", minor, source=source, defines=defines, **options)
        return {wasmbuild.so_name(mod, minor): so.read_bytes()}

    return files


def with_lib(abi: str, lib_at: str | None, pkg: str = "") -> Callable[[Path], dict[str, bytes]]:
    """use_dep (needs libdep.so) at <pkg>/, and libdep.so at ``lib_at`` (None: not shipped)."""

    def files(tmp: Path) -> dict[str, bytes]:
        minor = MINOR[abi]
        lib = wasmbuild.build_module(tmp / "libdep.so", minor, source="dep.c")
        mod = wasmbuild.build_module(tmp / "m.so", minor, source="use_dep.c", link_with=(lib,))
        out = {f"{pkg}{wasmbuild.so_name('use_dep', minor)}": mod.read_bytes()}
        if pkg:
            out[f"{pkg}__init__.py"] = b""
        if lib_at is not None:
            out[lib_at] = lib.read_bytes()
        return out

    return files


def linkage(
    abi: str,
    *,
    at: str = "",
    name: str = "linkage",
    link_dep: bool = False,
    rewrite: Callable[[bytes], bytes] = bytes,
    others: Callable[[Path, int], dict[str, bytes]] | None = None,
    **build,
) -> Callable[[Path], dict[str, bytes]]:
    """linkage.c (see its macros) as <at><name>.cpython-3XY-wasm32-emscripten.so, linked with libdep.so
    if ``link_dep``, plus ``others(tmp, minor)``; rewrite: applied to the module's bytes."""

    def files(tmp: Path) -> dict[str, bytes]:
        minor = MINOR[abi]
        options = dict(build)
        if link_dep:
            options["link_with"] = (wasmbuild.build_module(tmp / "libdep.so", minor, source="dep.c"),)
        defines = {"MODULE_NAME": "linkage", **options.pop("defines", {})}
        so = wasmbuild.build_module(tmp / "m.so", minor, source="linkage.c", defines=defines, **options)
        out = {f"{at}{wasmbuild.so_name(name, minor)}": rewrite(so.read_bytes())}
        if at:
            out[f"{at}__init__.py"] = b""
        out.update(others(tmp, minor) if others else {})
        return out

    return files


def libdep(*where: str) -> Callable[[Path, int], dict[str, bytes]]:
    """libdep.so (dep.c) at each of ``where``."""

    def files(tmp: Path, minor: int) -> dict[str, bytes]:
        lib = wasmbuild.build_module(tmp / "dep" / "libdep.so", minor, source="dep.c").read_bytes()
        return dict.fromkeys(where, lib)

    return files


def junk(where: str, data: bytes = b"\x7fELF" + bytes(60)) -> Callable[[Path, int], dict[str, bytes]]:
    return lambda tmp, minor: {where: data}


@dataclass
class Case:
    id: str
    abi: str
    files: Callable[[Path], dict[str, bytes]]
    script: str
    errors: set[str] = field(default_factory=set)  # expected error codes; empty: must load and import
    loader: tuple[str, ...] = ()  # Pyodide's failure contains one of these
    warnings: set[str] = field(default_factory=set)
    dist: str = "hello_pyo3"
    # Warnings only: the script imports (and prints IMPORTED), then fails with one of these where it reaches
    # what the warning names. Empty: the script runs.
    fails: tuple[str, ...] = ()


LCase = functools.partial(Case, dist="linkage")
EH_SCRIPT = "import eh_module as m\nassert m.risky(0) == 'no exception'\nassert m.risky(7) == 'caught 7'\n"
SJLJ_SCRIPT = "import sjlj\nassert sjlj.f(0) == 0 and sjlj.f(5) == 5\n"
DEP_SCRIPT = "from {pkg}use_dep import f\nassert f(20) == 41\n"
INVOKE = ("cannot resolve symbol invoke_",)
LINK_IMPORT = "import linkage\n"
LINK_SCRIPT = "import linkage\nassert linkage.f(20) in (21, 41), linkage.f(20)\n"
LINK_PKG = "from pkg import linkage\nassert linkage.f(20) == 41, linkage.f(20)\n"
IMPORTED_MARK = "imported, now calling"
IMPORTED = f"print({IMPORTED_MARK!r})\n"

CASES = [
    # Controls: a good module loads and passes in each ABI.
    *[Case(f"good-{abi}", abi, hello(abi), HELLO_SCRIPT) for abi in MINOR],
    Case("abi3-suffix", "2026_0", hello("2026_0", "hello_pyo3.abi3.so"), HELLO_SCRIPT),
    Case("plain-so-suffix", "2026_0", hello("2026_0", "hello_pyo3.so"), HELLO_SCRIPT),
    # Broken modules.
    Case(
        "shared-memory",
        "2026_0",
        hello(
            "2026_0",
            cflags=("-pthread", "-matomics", "-mbulk-memory"),
            ldflags=("--shared-memory", "--max-memory=4294967296"),
        ),
        HELLO_SCRIPT,
        {"WW103"},
        ("LinkError",),
    ),
    Case(
        "shared-memory-2024_0",
        "2024_0",
        hello(
            "2024_0",
            cflags=("-pthread", "-matomics", "-mbulk-memory"),
            ldflags=("--shared-memory", "--max-memory=2147483648"),
        ),
        HELLO_SCRIPT,
        {"WW103"},
        ("memory import 0",),
    ),
    Case(
        "no-dylink",
        "2026_0",
        hello(
            "2026_0",
            shared=False,
            ldflags=("--no-entry", "--export-dynamic", "--import-memory", "--import-table", "--allow-undefined"),
        ),
        HELLO_SCRIPT,
        {"WW102"},
        ("need the dylink section to be first",),
    ),
    Case(
        "dylink-not-first",
        "2024_0",
        hello("2024_0", rewrite=wasmenc.swap_first_sections),
        HELLO_SCRIPT,
        {"WW102"},
        ("need the dylink section to be first",),
    ),
    # The old "dylink" section: 0.27.8 still reads it, 314.0.7 does not.
    Case("legacy-dylink-2024_0", "2024_0", hello("2024_0", rewrite=wasmenc.to_legacy_dylink), HELLO_SCRIPT),
    Case(
        "legacy-dylink-2026_0",
        "2026_0",
        hello("2026_0", rewrite=wasmenc.to_legacy_dylink),
        HELLO_SCRIPT,
        {"WW102"},
        ("Could not load dynamic lib",),
    ),
    Case(
        "wrong-pyinit",
        "2026_0",
        hello("2026_0", defines={"INIT_NAME": "wrong"}),
        HELLO_SCRIPT,
        {"WW104"},
        ("does not define module export function (PyInit_hello_pyo3)",),
    ),
    Case(
        "suffix-of-python-3.13",
        "2026_0",
        hello("2026_0", "hello_pyo3.cpython-313-wasm32-emscripten.so"),
        HELLO_SCRIPT,
        {"WW105"},
        ("No module named 'hello_pyo3'",),
    ),
    Case(
        "suffix-of-linux",
        "2025_0",
        hello("2025_0", "hello_pyo3.cpython-313-x86_64-linux-gnu.so"),
        HELLO_SCRIPT,
        {"WW105"},
        ("No module named 'hello_pyo3'",),
    ),
    # Exception-handling ABIs: matching ones work, throwing and catching.
    Case(
        "js-eh-in-2024_0",
        "2024_0",
        module("2024_0", "eh_module.cpp", "eh_module", cflags=JS_EH),
        EH_SCRIPT,
        dist="eh_module",
    ),
    Case(
        "wasm-eh-in-2026_0",
        "2026_0",
        module("2026_0", "eh_module.cpp", "eh_module", cflags=WASM_EH),
        EH_SCRIPT,
        dist="eh_module",
    ),
    Case(
        "wasm-sjlj-in-2025_0",
        "2025_0",
        module("2025_0", "sjlj.c", "sjlj", cflags=("-mllvm", "-wasm-enable-sjlj")),
        SJLJ_SCRIPT,
        dist="sjlj",
    ),
    Case(
        "js-sjlj-in-2024_0",
        "2024_0",
        module("2024_0", "sjlj.c", "sjlj", cflags=("-mllvm", "-enable-emscripten-sjlj")),
        SJLJ_SCRIPT,
        dist="sjlj",
    ),
    # ... mismatched ones fail: JS EH loads and imports, then dies on its first invoke_* call, even without an
    # exception; an init that makes one (as PyO3's catch_unwind trampoline does) dies at import ...
    Case(
        "js-eh-in-2026_0",
        "2026_0",
        module("2026_0", "eh_module.cpp", "eh_module", cflags=JS_EH),
        "import eh_module as m\n" + IMPORTED + "m.risky(0)\n",
        warnings={"WW120"},
        fails=INVOKE,
        dist="eh_module",
    ),
    Case(
        "js-eh-init-in-2025_0",
        "2025_0",
        module("2025_0", "eh_module.cpp", "eh_module", cflags=JS_EH, defines={"INIT_TRY": "1"}),
        "import eh_module\n",
        {"WW123"},
        INVOKE,
        {"WW120"},
        dist="eh_module",
    ),
    Case(
        "js-eh-in-2026_5",
        "2026_5",
        module("2026_5", "eh_module.cpp", "eh_module", cflags=JS_EH),
        "import eh_module as m\n" + IMPORTED + "m.risky(0)\n",
        warnings={"WW120"},
        fails=INVOKE,
        dist="eh_module",
    ),
    Case(
        "js-sjlj-in-2026_0",
        "2026_0",
        module("2026_0", "sjlj.c", "sjlj", cflags=("-mllvm", "-enable-emscripten-sjlj")),
        "import sjlj\n" + IMPORTED + "sjlj.f(0)\n",
        warnings={"WW120"},
        fails=INVOKE,
        dist="sjlj",
    ),
    # ... and a wasm EH tag does not link in the JS-EH runtime.
    Case(
        "wasm-eh-in-2024_0",
        "2024_0",
        module("2024_0", "eh_module.cpp", "eh_module", cflags=WASM_EH),
        EH_SCRIPT,
        {"WW121"},
        ("tag import requires a WebAssembly.Tag", "bad export type for '__wasm_lpad_context'"),
        dist="eh_module",
    ),
    Case(
        "wasm-sjlj-in-2024_0",
        "2024_0",
        module("2024_0", "sjlj.c", "sjlj", cflags=("-mllvm", "-wasm-enable-sjlj")),
        SJLJ_SCRIPT,
        {"WW121"},
        ("tag import requires a WebAssembly.Tag",),
        dist="sjlj",
    ),
    # wasm EH instructions without a tag: loads and runs (a warning, not an error).
    Case(
        "wasm-eh-cleanup-in-2024_0",
        "2024_0",
        module("2024_0", "eh_module.cpp", "eh_module", cflags=WASM_EH, defines={"CLEANUP_ONLY": "1"}),
        "import eh_module as m\nassert m.risky(0) == 'no exception'\n",
        warnings={"WW122"},
        dist="eh_module",
    ),
    # Needed shared libraries: where each runtime's loader finds them.
    Case("lib-at-root", "2026_0", with_lib("2026_0", "libdep.so"), DEP_SCRIPT.format(pkg=""), dist="use_dep"),
    Case(
        "lib-missing",
        "2026_0",
        with_lib("2026_0", None),
        DEP_SCRIPT.format(pkg=""),
        {"WW130"},
        ("Failed to find dynamic library",),
        dist="use_dep",
    ),
    Case(
        "lib-in-dist-libs-2026_0",
        "2026_0",
        with_lib("2026_0", "use_dep.libs/libdep.so"),
        DEP_SCRIPT.format(pkg=""),
        {"WW130"},
        ("Failed to find dynamic library",),
        dist="use_dep",
    ),
    Case(
        "lib-in-dist-libs-2024_0",
        "2024_0",
        with_lib("2024_0", "use_dep.libs/libdep.so"),
        DEP_SCRIPT.format(pkg=""),
        dist="use_dep",
    ),
    Case(
        "lib-next-to-module-2025_0",
        "2025_0",
        with_lib("2025_0", "pkg/libdep.so", pkg="pkg/"),
        DEP_SCRIPT.format(pkg="pkg."),
        {"WW130"},
        ("Failed to find dynamic library",),
        dist="use_dep",
    ),
    Case(
        "lib-next-to-module-2024_0",
        "2024_0",
        with_lib("2024_0", "pkg/libdep.so", pkg="pkg/"),
        DEP_SCRIPT.format(pkg="pkg."),
        dist="use_dep",
    ),
    # ... runtime paths: 0.28+ follow them ($ORIGIN, or an absolute path into site-packages); 0.27 ignores them
    # and looks in the installed library's folder and every folder below it, or takes a library of that name
    # loaded before (in the wheel's zip order).
    LCase(
        "rpath-origin-parent-2026_0",
        "2026_0",
        linkage(
            "2026_0",
            at="pkg/",
            link_dep=True,
            defines={"DEP": "1"},
            rewrite=lambda b: wasmenc.with_dylink(b, rpaths=("$ORIGIN/../pkg_libs",)),
            others=libdep("pkg_libs/libdep.so"),
        ),
        LINK_PKG,
    ),
    LCase(
        "rpath-origin-parent-2024_0",
        "2024_0",
        linkage(
            "2024_0",
            at="pkg/",
            link_dep=True,
            defines={"DEP": "1"},
            rewrite=lambda b: wasmenc.with_dylink(b, rpaths=("$ORIGIN/../pkg_libs",)),
            others=libdep("pkg_libs/libdep.so"),
        ),
        LINK_PKG,
        {"WW130"},
        ("Didn't expect to load any more file_packager files",),
    ),
    LCase(
        "rpath-absolute-2025_0",
        "2025_0",
        linkage(
            "2025_0",
            at="pkg/",
            link_dep=True,
            defines={"DEP": "1"},
            rewrite=lambda b: wasmenc.with_dylink(b, rpaths=("/lib/python3.13/site-packages/pkg_libs",)),
            others=libdep("pkg_libs/libdep.so"),
        ),
        LINK_PKG,
    ),
    LCase(
        "needed-by-absolute-path-2026_0",
        "2026_0",
        linkage(
            "2026_0",
            link_dep=True,
            defines={"DEP": "1"},
            rewrite=lambda b: wasmenc.with_dylink(b, needed=("/lib/python3.14/site-packages/libs/libdep.so",)),
            others=libdep("libs/libdep.so"),
        ),
        LINK_SCRIPT,
    ),
    LCase(
        "lib-below-root-module-2024_0",
        "2024_0",
        linkage("2024_0", link_dep=True, defines={"DEP": "1"}, others=libdep("x/y/libdep.so")),
        LINK_SCRIPT,
    ),
    LCase(
        "lib-below-root-module-2026_0",
        "2026_0",
        linkage("2026_0", link_dep=True, defines={"DEP": "1"}, others=libdep("x/y/libdep.so")),
        LINK_SCRIPT,
        {"WW130"},
        ("Failed to find dynamic library",),
    ),
    LCase(
        "lib-loaded-before-2024_0",
        "2024_0",
        lambda tmp: {
            **libdep("other/libdep.so")(tmp, 12),
            **linkage("2024_0", at="pkg/", link_dep=True, defines={"DEP": "1"})(tmp),
        },
        LINK_PKG,
    ),
    LCase(
        "lib-loaded-after-2024_0",
        "2024_0",
        linkage("2024_0", at="pkg/", link_dep=True, defines={"DEP": "1"}, others=libdep("zzz/libdep.so")),
        LINK_PKG,
        {"WW130"},
        ("Didn't expect to load any more file_packager files",),
    ),
    # ... and a library installed by the wheel's .data/data/ into /usr/lib (sys.prefix is /).
    LCase(
        "lib-in-data-usr-lib",
        "2025_0",
        linkage(
            "2025_0", link_dep=True, defines={"DEP": "1"}, others=libdep("linkage-1.0.data/data/usr/lib/libdep.so")
        ),
        LINK_SCRIPT,
    ),
    # Files Pyodide's installer leaves alone: .data/platlib is not moved into site-packages ...
    LCase(
        "module-in-data-platlib",
        "2026_0",
        lambda tmp: {f"linkage-1.0.data/platlib/{n}": b for n, b in linkage("2026_0")(tmp).items()},
        LINK_SCRIPT,
        {"WW106"},
        ("No module named 'linkage'",),
    ),
    # ... other files there stay too: the package imports, but does not find them ...
    LCase(
        "files-in-data-purelib",
        "2026_0",
        linkage("2026_0", others=lambda tmp, minor: {"linkage-1.0.data/purelib/linkage_data.txt": b"data\n"}),
        LINK_SCRIPT + "import os\nassert not os.path.exists(os.path.join(os.path.dirname(linkage.__file__), "
        "'linkage_data.txt'))\n",
        warnings={"WW112"},
    ),
    # ... an extension for another Python or platform is never loaded: beside one that loads, harmless ...
    LCase(
        "extensions-for-others-beside",
        "2026_0",
        linkage(
            "2026_0",
            others=lambda tmp, minor: {
                "linkage.cpython-313-wasm32-emscripten.so": wasmbuild.build_module(
                    tmp / "m313.so", 13, source="linkage.c", defines={"MODULE_NAME": "linkage"}
                ).read_bytes(),
                **junk("linkage.cpython-314-x86_64-linux-gnu.so")(tmp, minor),
            },
        ),
        LINK_SCRIPT,
    ),
    # ... alone, its import fails; a library that is not
    # WebAssembly is refused by 0.28+ and skipped (a warning) by 0.27.
    LCase(
        "linux-extension-beside",
        "2026_0",
        linkage("2026_0", others=junk("other.cpython-314-x86_64-linux-gnu.so")),
        LINK_SCRIPT + "import other\n",
        {"WW105"},
        ("No module named 'other'",),
    ),
    LCase(
        "elf-library-2026_0",
        "2026_0",
        linkage("2026_0", others=junk("libjunk.so")),
        LINK_SCRIPT,
        {"WW101"},
        ("We probably just tried to load a linux .so file",),
    ),
    LCase("elf-library-2024_0", "2024_0", linkage("2024_0", others=junk("libjunk.so")), LINK_SCRIPT),
    LCase(
        "elf-needed-library-2024_0",
        "2024_0",
        linkage("2024_0", link_dep=True, defines={"DEP": "1"}, others=junk("libdep.so")),
        LINK_SCRIPT,
        {"WW101"},
        ("dynamic module does not define module export",),
    ),
    # Symbols: what neither the runtime nor the module's needed libraries define. Libraries load locally:
    # a library in the wheel that the module does not list as needed does not help.
    LCase(
        "undefined-data-2026_0",
        "2026_0",
        linkage("2026_0", defines={"UNDEF_DATA": "1"}),
        LINK_IMPORT,
        {"WW131"},
        ("undefined symbol 'made_up_data'",),
    ),
    LCase(
        "undefined-data-2024_0",
        "2024_0",
        linkage("2024_0", defines={"UNDEF_DATA": "1"}),
        LINK_IMPORT,
        {"WW131"},
        ("bad export type for 'made_up_data'",),
    ),
    LCase(
        "undefined-function-address",
        "2025_0",
        linkage("2025_0", defines={"UNDEF_FUNC_ADDR": "1"}),
        LINK_IMPORT,
        {"WW131"},
        ("bad export type for 'made_up_fn_addr'",),
    ),
    LCase("weak-undefined-data", "2026_0", linkage("2026_0", defines={"WEAK_DATA": "1"}), LINK_SCRIPT),
    # A function nobody defines: the module loads and imports (Emscripten binds functions lazily), and the
    # first call ends the runtime; unless the module's init or constructors always call it.
    LCase(
        "undefined-function-called",
        "2026_5",
        linkage("2026_5", defines={"UNDEF_FUNC": "1"}),
        "import linkage\n" + IMPORTED + "linkage.f(1)\n",
        warnings={"WW132"},
        fails=("cannot resolve symbol made_up_function",),
    ),
    LCase(
        "undefined-function-in-init",
        "2024_0",
        linkage("2024_0", defines={"UNDEF_FUNC": "1", "CALL_IN_INIT": "1"}),
        LINK_IMPORT,
        {"WW134"},
        ("cannot resolve symbol made_up_function",),
        {"WW132"},
    ),
    LCase(
        "undefined-function-in-constructor",
        "2026_0",
        linkage("2026_0", defines={"UNDEF_FUNC": "1", "CALL_IN_CTOR": "1"}),
        LINK_IMPORT,
        {"WW134"},
        ("cannot resolve symbol made_up_function",),
        {"WW132"},
    ),
    LCase(
        "function-of-unneeded-library",
        "2026_0",
        linkage("2026_0", defines={"DEP": "1"}, others=libdep("libdep.so")),
        "import linkage\n" + IMPORTED + "linkage.f(20)\n",
        warnings={"WW132"},
        fails=("cannot resolve symbol dep_value",),
    ),
    LCase(
        "foreign-import-module",
        "2025_0",
        linkage("2025_0", defines={"FOREIGN_IMPORT": "1"}),
        LINK_IMPORT,
        {"WW133"},
        ('module="foo" error: module is not an object or function',),
    ),
    # The memory is Pyodide's: a side module's limits must admit it.
    LCase(
        "memory-maximum",
        "2026_0",
        linkage("2026_0", ldflags=("--max-memory=16777216",)),
        LINK_IMPORT,
        {"WW107"},
        ("larger maximum size 65536 than the module's declared maximum 256",),
    ),
    LCase("memory-for-static-data", "2025_0", linkage("2025_0", defines={"BIG_BSS": str(21 << 20)}), LINK_SCRIPT),
    LCase(
        "memory-initial",
        "2024_0",
        linkage("2024_0", ldflags=("--initial-memory=268435456",)),
        LINK_IMPORT,
        {"WW107"},
        ("is smaller than initial 4096",),
    ),
    LCase(
        "wasm64-library",
        "2026_0",
        linkage(
            "2026_0",
            others=lambda tmp, minor: {
                "libw64.so": wasmbuild.build_module(
                    tmp / "w64.so",
                    minor,
                    source="dep.c",
                    cflags=("--target=wasm64-unknown-emscripten",),
                    ldflags=("-mwasm64",),
                ).read_bytes()
            },
        ),
        LINK_SCRIPT,
        {"WW107"},
        ("invalid memory limits flags 0x4",),
    ),
    # Instructions Node 20 (and 18) cannot compile.
    LCase(
        "extended-const",
        "2025_0",
        linkage("2025_0", cflags=("-mextended-const",)),
        LINK_IMPORT,
        {"WW108"},
        ("opcode i32.add is not allowed in constant expressions",),
    ),
    # A custom section only the linker reads: broken, it does not stop the module loading.
    LCase(
        "broken-target-features",
        "2026_0",
        linkage("2026_0", rewrite=lambda b: b + wasmenc.custom("target_features", b"\x01?\x03bad")),
        LINK_SCRIPT,
    ),
    # A non-ASCII module name: PyInitU_<punycode>, multi-phase init.
    LCase(
        "non-ascii-module-name",
        "2026_0",
        linkage("2026_0", name="pr\u00f6be", defines={"INIT_FN": "PyInitU_prbe_6qa", "MULTI_PHASE": "1"}),
        "import pr\u00f6be as m\nassert m.f(1) == 2\n",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_audit_predicts_what_pyodide_does(case: Case, tmp_path, runtimes, wasm_tools):
    wheel = make_wheel(tmp_path / "dist", case.dist, case.files(tmp_path), wheel_tag(case.abi))
    report = audit_wheel(wheel, ABIS[case.abi])
    result = smoke(runtimes, case.abi, [wheel], case.script)
    seen = result.error + "\n" + result.output
    verdicts = (
        f"audit: {[f.line() for f in report.findings]}; Pyodide ok={result.ok} ({result.stage}): {result.error[-600:]}"
    )
    assert {f.code for f in report.errors} == case.errors, verdicts
    assert {f.code for f in report.warnings} == case.warnings, verdicts
    if case.errors:  # the runtime refuses it: the load or the import fails as the check predicts
        assert not result.ok and any(text in seen for text in case.loader), f"Pyodide did otherwise: {seen[-1500:]}"
    elif case.fails:  # it loads and imports; the call the warning names fails
        assert IMPORTED_MARK in result.output, f"the import failed: {seen[-1500:]}"
        assert not result.ok and any(text in seen for text in case.fails), f"Pyodide did otherwise: {seen[-1500:]}"
    else:
        assert result.ok, verdicts


def test_every_error_code_has_a_case_or_a_reason():
    """Each check is shown against a real runtime above, except the wheel-level ones (WW100 and WW109,
    tested against the runtime below), the tags (Pyodide's loadPackage checks none; micropip does) and
    WW101 (tested below), and WW124 (panic=abort), which needs a real PyO3 module: tests/test_lean.py builds
    one with panic=abort (it fires) and unwinding ones with both exception-handling ABIs (it does not)."""
    covered = set().union(*(c.errors | c.warnings for c in CASES))
    not_loader_checks = {"WW100", "WW101", "WW109", "WW110", "WW111", "WW124"}
    assert {c.code for c in CHECKS.values()} == covered | not_loader_checks


@pytest.mark.parametrize(
    "abi, tag, errors",
    [
        ("2026_0", "cp314-cp314-pyemscripten_2026_0_wasm32", set()),
        ("2026_0", "cp314-cp314-emscripten_5_0_3_wasm32", set()),  # the legacy tag
        ("2026_0", "cp310-abi3-pyemscripten_2026_0_wasm32", set()),  # abi3 from 3.10: fine in 3.14
        ("2026_0", "cp315-abi3-pyemscripten_2026_0_wasm32", {"WW110"}),  # abi3 minimum newer than 3.14
        ("2026_0", "cp313-cp313-pyemscripten_2026_0_wasm32", {"WW110"}),
        ("2026_0", "cp314-cp314-pyemscripten_2025_0_wasm32", {"WW111"}),
        ("2026_0", "cp314-cp314-linux_x86_64", {"WW111"}),
        ("2025_0", "cp313-cp313-pyodide_2025_0_wasm32", set()),  # what 0.28/0.29.0-0.29.3 know
        ("2024_0", "cp312-cp312-pyemscripten_2024_0_wasm32", {"WW111"}),  # 0.27 does not accept it
        ("2026_0", "py3-none-any", set()),
        ("2026_0", "cp313-cp313-emscripten_4_0_9_wasm32", {"WW110", "WW111"}),
    ],
)
def test_wheel_tags(tmp_path, abi, tag, errors):
    wheel = make_wheel(tmp_path, "tagged", {"tagged/__init__.py": b""}, tag)
    assert {f.code for f in audit_wheel(wheel, ABIS[abi]).errors} == errors


# -- garbage ------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"\x7fELF" + b"\x00" * 60, b"\x00asm\x01\x00\x00\x00\x00\x09dylink"])
def test_garbage_module_is_an_audit_error(tmp_path, payload):
    wheel = make_wheel(tmp_path, "junk", {"junk.cpython-314-wasm32-emscripten.so": payload}, wheel_tag("2026_0"))
    report = audit_wheel(wheel, ABIS["2026_0"])
    assert [f.code for f in report.errors] == ["WW101"]
    assert report.errors[0].member == "junk.cpython-314-wasm32-emscripten.so"


def test_truncated_real_module_is_an_audit_error(tmp_path, real_wheels):
    with zipfile.ZipFile(real_wheels["jiter"]) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".so"))
        data = zf.read(name)
    wheel = make_wheel(tmp_path, "jiter", {name: data[: len(data) // 2]}, wheel_tag("2026_0"))
    report = audit_wheel(wheel, ABIS["2026_0"])
    assert [f.code for f in report.errors] == ["WW101"] and "truncated" in report.errors[0].message


def test_broken_wheels_are_audit_errors(tmp_path, real_wheels, capsys):
    not_zip = tmp_path / "x-1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    not_zip.write_bytes(b"not a zip")
    bad_name = tmp_path / "nonsense.whl"
    shutil.copyfile(real_wheels["jiter"], bad_name)
    bad_member = _damaged_member(real_wheels["jiter"], tmp_path / "damaged")
    for wheel in (not_zip, bad_name, bad_member):
        report = audit_wheel(wheel, ABIS["2026_0"])
        assert [f.code for f in report.findings] == ["WW100"], (wheel.name, report.findings)
    assert main(["--root", str(REPO), "audit", str(not_zip), str(real_wheels["jiter"]), "--abi", "2026_0"]) == 1
    out = capsys.readouterr().out
    assert "WW100" in out and "Traceback" not in out


def _damaged_member(src: Path, dest: Path) -> Path:
    """A copy of a wheel with one byte of its largest member's stored data flipped (a bad CRC-32 or deflate
    stream): the zip's directory is intact, the member cannot be read."""
    dest.mkdir(parents=True, exist_ok=True)
    blob = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as zf:
        info = max(zf.infolist(), key=lambda i: i.compress_size)
    local = info.header_offset
    name_len, extra_len = (
        int.from_bytes(blob[local + 26 : local + 28], "little"),
        int.from_bytes(blob[local + 28 : local + 30], "little"),
    )
    blob[local + 30 + name_len + extra_len + info.compress_size // 2] ^= 0xFF
    (dest / src.name).write_bytes(bytes(blob))
    return dest / src.name


def _tampered(src: Path, dest: Path, how: str) -> Path:
    """A copy of a wheel whose RECORD no longer matches: a changed file, a file RECORD does not list, no RECORD."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest / src.name, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if how == "no RECORD" and info.filename.endswith(".dist-info/RECORD"):
                continue
            if how == "changed" and info.filename.endswith(".dist-info/METADATA"):
                data += b"Summary: changed after RECORD was written\n"
            zout.writestr(info, data)
        if how == "unlisted":
            zout.writestr("extra.txt", b"not in RECORD\n")
    return dest / src.name


@pytest.mark.parametrize("how, abi", [("changed", "2024_0"), ("unlisted", "2026_0"), ("no RECORD", "2025_0")])
def test_a_record_that_does_not_match_is_a_warning(tmp_path, runtimes, small_wheels, how, abi):
    """Pyodide installs a wheel whatever its RECORD says (measured): WW109 is a warning, and the wheel runs."""
    wheel = _tampered(small_wheels[abi], tmp_path, how)
    report = audit_wheel(wheel, ABIS[abi])
    assert report.ok and [f.code for f in report.warnings] == ["WW109"], report.findings
    result = smoke(runtimes, abi, [wheel], HELLO_SCRIPT)
    assert result.ok, result.error[-1500:]


def test_pyodide_refuses_what_ww100_reports(tmp_path, runtimes, small_wheels):
    """A file that is not a zip, a member that cannot be read, a file name that is not a wheel's: loadPackage
    fails on each."""
    not_zip = tmp_path / "z" / small_wheels["2026_0"].name
    not_zip.parent.mkdir()
    not_zip.write_bytes(b"not a zip")
    bad_name = tmp_path / "n" / "hello.whl"
    bad_name.parent.mkdir()
    shutil.copyfile(small_wheels["2026_0"], bad_name)
    for wheel in (not_zip, bad_name, _damaged_member(small_wheels["2026_0"], tmp_path / "d")):
        assert [f.code for f in audit_wheel(wheel, ABIS["2026_0"]).errors] == ["WW100"]
        result = smoke(runtimes, "2026_0", [wheel], HELLO_SCRIPT)
        assert not result.ok and result.stage == "load", (wheel.name, result.stage, result.error[-800:])


@pytest.fixture(scope="module")
def small_wheels(tmp_path_factory, wasm_tools) -> dict[str, Path]:
    """A good hello_pyo3 wheel for each ABI."""
    tmp = tmp_path_factory.mktemp("small-wheels")
    return {abi: make_wheel(tmp / abi, "hello_pyo3", hello(abi)(tmp / f"{abi}-build"), wheel_tag(abi)) for abi in MINOR}


@pytest.fixture(scope="module")
def small_wheel_bytes(tmp_path_factory, wasm_tools) -> bytes:
    tmp = tmp_path_factory.mktemp("small")
    return make_wheel(tmp / "d", "hello_pyo3", hello("2026_0")(tmp), wheel_tag("2026_0")).read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_corrupted_wheels_give_findings_not_tracebacks(small_wheel_bytes, tmp_path, data):
    blob = bytearray(small_wheel_bytes)
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    else:
        for _ in range(data.draw(st.integers(1, 6))):
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    wheel = tmp_path / "hello_pyo3-1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    wheel.write_bytes(bytes(blob))
    report = audit_wheel(wheel, ABIS["2026_0"])  # must not raise
    assert all(f.code in CHECKS for f in report.findings)


# -- real wheels from PyPI ---------------------------------------------------------------------


def test_real_wheels_pass_their_abi_and_fail_others(real_wheels):
    wheels = [real_wheels["jiter"], real_wheels["pydantic_core"]]
    for report in audit_wheels(wheels, ABIS["2026_0"]):
        assert report.ok and not report.findings, report.findings
        assert len(report.modules) == 1
    for report in audit_wheels(wheels, ABIS["2025_0"]):
        assert {f.code for f in report.errors} == {"WW110", "WW111", "WW105"}
    for report in audit_wheels(wheels, ABIS["2024_0"]):
        # Python 3.12 does not load a cpython-314 file at all: its wasm-EH imports (WW121) never meet 0.27.
        assert {f.code for f in report.errors} == {"WW110", "WW111", "WW105"}


@pytest.mark.parametrize("abi", ["2025_0", "2026_0"])
def test_perspective_wheels_pass_with_a_warning(perspective_wheels, abi, capsys):
    """perspective-python imports HaveOffsetConverter, which no runtime defines, and works (issue 11): the
    audit passes it (exit 0) and says which function a call may not reach, as a warning."""
    assert main(["--root", str(REPO), "audit", str(perspective_wheels[abi]), "--abi", abi, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["reports"][0]
    assert report["ok"] and report["modules"] == ["perspective/perspective.abi3.so"]
    assert [(f["code"], f["severity"]) for f in report["findings"]] == [("WW132", WARNING)]
    message = report["findings"][0]["message"]
    assert "HaveOffsetConverter" in message and "loads and imports" in message and "ends the runtime" in message
    assert main(["--root", str(REPO), "audit", str(perspective_wheels[abi]), "--abi", abi]) == 0
    out = capsys.readouterr().out
    assert "WW132" in out and "warning" in out and "0 failed, 0 error(s), 1 warning(s)" in out


@pytest.mark.parametrize("abi", ["2025_0", "2026_0"])
def test_perspective_wheels_work_in_pyodide(perspective_wheels, runtimes, abi):
    """What the warning promises: the wheel loads, imports and works in the ABI's runtime."""
    script = (
        "import perspective\n"
        "table = perspective.table({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})\n"
        "view = table.view(filter=[['a', '>', 1]])\n"
        "assert view.to_json() == [{'a': 2, 'b': 'y'}, {'a': 3, 'b': 'z'}], view.to_json()\n"
    )
    result = smoke(runtimes, abi, [perspective_wheels[abi]], script)
    assert result.ok, result.error[-2000:]


@pytest.mark.slow  # starts pip in a subprocess
def test_pypi_downloads_skip_only_when_pypi_is_unreachable(monkeypatch):
    """The perspective tests skip offline, and only then: pip failing with PyPI unreachable raises
    PyPIUnreachable (the fixture's skip); pip failing with PyPI answering fails the test."""
    import conftest

    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")  # nothing listens on port 9
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setattr(conftest, "PYPI", "http://127.0.0.1:9/simple/")
    with pytest.raises(conftest.PyPIUnreachable, match="PyPI is unreachable"):
        conftest.pypi_wheel("no-such-wasmwheel-test-package==1.0", "pyemscripten_2026_0_wasm32", "3.14")
    with conftest.serve_folder(Path(__file__).parent / "data") as url:  # answers, but has no such package
        monkeypatch.setattr(conftest, "PYPI", url + "/")
        with pytest.raises(pytest.fail.Exception, match="could not download no-such-wasmwheel-test-package"):
            conftest.pypi_wheel("no-such-wasmwheel-test-package==1.0", None, "3.14")


def _members(wheel: Path) -> dict[str, bytes]:
    with WheelFile(wheel) as wf:  # verifies every member against RECORD
        return {i.filename: wf.read(i) for i in wf.infolist()}


@pytest.fixture(scope="module")
def round_tripped(real_wheels, tmp_path_factory) -> dict[str, tuple[Path, Path, Path]]:
    out = {}
    tmp = tmp_path_factory.mktemp("retag")
    legacy, pep783 = ABIS["2026_0"].legacy_tags[0], ABIS["2026_0"].platform_tag
    for key in ("jiter", "pydantic_core"):
        first = retag(real_wheels[key], legacy, tmp / "legacy")
        middle = retag(first, pep783, tmp / "pep783")
        last = retag(middle, legacy, tmp / "legacy-again")
        out[key] = (first, middle, last)
    return out


def test_retag_round_trip_keeps_member_contents(real_wheels, round_tripped):
    for key, (first, middle, last) in round_tripped.items():
        assert first.name.endswith("-cp314-cp314-emscripten_5_0_3_wasm32.whl")
        assert middle.name == real_wheels[key].name
        assert _members(first) == _members(last)
        assert _members(middle) == _members(real_wheels[key])
        changed = {n for n, d in _members(first).items() if _members(real_wheels[key])[n] != d}
        assert {n.rsplit("/", 1)[-1] for n in changed} == {"WHEEL", "RECORD"}
        assert audit_wheel(first, ABIS["2026_0"]).ok  # a legacy tag of the ABI is accepted


def test_retag_cli_legacy_and_back(real_wheels, tmp_path, capsys):
    src = real_wheels["jiter"]
    assert (
        main(["--root", str(REPO), "retag", str(src), "--abi", "2026_0", "--legacy", "--out", str(tmp_path / "a")]) == 0
    )
    legacy = Path(capsys.readouterr().out.strip())
    assert legacy.name == "jiter-0.19.0-cp314-cp314-emscripten_5_0_3_wasm32.whl" and legacy.exists()
    assert main(["--root", str(REPO), "retag", str(legacy), "--abi", "2026_0", "--out", str(tmp_path / "b")]) == 0
    back = Path(capsys.readouterr().out.strip())
    assert back.name == src.name and _members(back) == _members(src)


def test_retag_keeps_tag_order_and_line_endings():
    from packaging.tags import Tag

    from wasmwheel.wheel import rewrite_wheel_metadata

    text = (
        "Wheel-Version: 1.0\r\nTag: cp313-cp313-emscripten_4_0_9_wasm32\r\n"
        "Tag: cp313-abi3-emscripten_4_0_9_wasm32\r\nBuild: 1\r\n"
    )
    pep = rewrite_wheel_metadata(
        text,
        frozenset(
            {Tag("cp313", "cp313", "pyemscripten_2025_0_wasm32"), Tag("cp313", "abi3", "pyemscripten_2025_0_wasm32")}
        ),
    )
    assert pep == text.replace("emscripten_4_0_9_wasm32", "pyemscripten_2025_0_wasm32")
    back = rewrite_wheel_metadata(
        pep,
        frozenset({Tag("cp313", "cp313", "emscripten_4_0_9_wasm32"), Tag("cp313", "abi3", "emscripten_4_0_9_wasm32")}),
    )
    assert back == text


def test_round_tripped_real_wheels_import_in_pyodide_314(real_wheels, round_tripped, runtimes):
    wheels = [real_wheels["typing_extensions"], round_tripped["jiter"][2], round_tripped["pydantic_core"][2]]
    script = (
        "import jiter, pydantic_core\n"
        "from pydantic_core import SchemaValidator, core_schema\n"
        "assert jiter.from_json(b'{\"a\": [1, 2.5, null]}') == {'a': [1, 2.5, None]}\n"
        "v = SchemaValidator(core_schema.dict_schema(core_schema.str_schema(), core_schema.int_schema()))\n"
        "assert v.validate_python({'x': '3'}) == {'x': 3}\n"
        "try:\n    v.validate_python({'x': 'no'})\n"
        "except pydantic_core.ValidationError as e:\n    assert 'int' in str(e)\n"
        "else:\n    raise AssertionError('no ValidationError')\n"
    )
    result = smoke(runtimes, "2026_0", wheels, script)
    assert result.ok, result.error[-2000:]


# -- the command line ---------------------------------------------------------------------------


def test_audit_cli_table_json_and_exit_codes(real_wheels, capsys):
    jiter = str(real_wheels["jiter"])
    assert main(["--root", str(REPO), "audit", jiter, "--abi", "2026_0"]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "0 failed, 0 error(s)" in out
    assert main(["--root", str(REPO), "audit", jiter, "--abi", "2025_0"]) == 1
    out = capsys.readouterr().out
    assert "WW110" in out and "WW111" in out and CHECKS["WW111"].fix in out
    assert main(["--root", str(REPO), "audit", jiter, "--abi", "2025_0", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    codes = {f["code"] for f in data["reports"][0]["findings"]}
    assert codes == {"WW105", "WW110", "WW111"}
    assert all(f["fix"] and f["severity"] == ERROR for f in data["reports"][0]["findings"])
    assert main(["--root", str(REPO), "audit", "missing.whl", "--abi", "2026_0"]) == 1
    assert "no such wheel" in capsys.readouterr().err


def test_libraries_of_wheels_installed_together(tmp_path, wasm_tools):
    """A library at one wheel's root serves the modules of another wheel audited with it."""
    files = with_lib("2026_0", None)(tmp_path)
    lib = wasmbuild.build_module(tmp_path / "libdep.so", 14, source="dep.c").read_bytes()
    user = make_wheel(tmp_path / "d", "use_dep", files, wheel_tag("2026_0"))
    provider = make_wheel(tmp_path / "d", "dep", {"libdep.so": lib}, "py3-none-any")
    assert [f.code for f in audit_wheel(user, ABIS["2026_0"]).errors] == ["WW130"]
    assert all(r.ok for r in audit_wheels([user, provider], ABIS["2026_0"]))


def test_readme_lists_every_check_with_its_severity():
    """README's "Auditing wheels" table shows each code with the severity the audit gives it."""
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| (WW\d+) \| (\w+) \|", readme, re.MULTILINE)
    assert rows == [(code, severity) for code, severity, _, _ in check_table()]


def test_check_table_and_config():
    table = check_table()
    assert [row[0] for row in table] == sorted(row[0] for row in table)
    assert all(sev in (ERROR, WARNING) and fix for _, sev, _, fix in table)
    a, b = audit_config(ABIS["2025_0"]), audit_config(ABIS["2026_0"])
    assert a != b and a["exception_handling"] == "wasm" and "pyodide_2025_0_wasm32" in a["platform_tags"]


# -- the pipeline step ----------------------------------------------------------------------------


def test_audit_task_sits_between_retag_and_smoke(tmp_path):
    from wasmwheel.pipeline.graph import Project, step_task
    from wasmwheel.pipeline.steps import STEP_BY_NAME

    project = Project.load(
        REPO, {"WASMWHEEL_BUILD_DIR": str(tmp_path / "build"), "WASMWHEEL_CACHE": str(tmp_path / "cache")}
    )
    layout = project.layout
    recipe, abi = project.recipes.recipes["hello-pyo3"], project.abis["2026_0"]
    task = step_task(STEP_BY_NAME["audit"], project, abi, recipe)
    smoke = step_task(STEP_BY_NAME["smoke"], project, abi, recipe)
    assert task["name"] == "hello-pyo3@2026_0"
    assert task["file_dep"] == [str(layout.stamp("retag", "2026_0", "hello-pyo3"))]
    assert task["targets"][0] == str(layout.stamp("audit", "2026_0", "hello-pyo3"))
    assert str(layout.stamp("audit", "2026_0", "hello-pyo3")) in smoke["file_dep"]
    assert str(layout.stamp("retag", "2026_0", "hello-pyo3")) not in smoke["file_dep"]


def test_pipeline_audits_before_smoke(project):
    run = project.doit("smoke:hello-pyo3@2026_0")
    order = run.executed
    assert (
        order.index("retag:hello-pyo3@2026_0")
        < order.index("audit:hello-pyo3@2026_0")
        < order.index("smoke:hello-pyo3@2026_0")
    )
    log = project.layout.log("audit", "2026_0", "hello-pyo3").read_text()
    assert "audit for ABI 2026_0 passed (1 extension module(s), 0 warning(s))" in log
    again = project.doit("smoke:hello-pyo3@2026_0")
    assert again.executed == [] and "nothing to do" in again.output


def test_pipeline_stops_at_the_audit_with_code_and_fix(project, tmp_path, wasm_tools):
    modules = tmp_path / "broken-modules"
    shutil.copytree(project.env["STANDIN_MODULES"], modules)
    so = modules / "14" / wasmbuild.so_name("hello_pyo3", 14)
    wasmbuild.build_module(so, 14, defines={"INIT_NAME": "wrong"})
    run = project.doit("smoke:hello-pyo3@2026_0", check=False, env={"STANDIN_MODULES": str(modules)})
    assert "audit:hello-pyo3@2026_0" in run.executed and "smoke:hello-pyo3@2026_0" not in run.executed
    assert "WW104" in run.output and CHECKS["WW104"].fix in run.output
    assert "PyInit_wrong" in run.output
    log = project.layout.log("audit", "2026_0", "hello-pyo3").read_text()
    assert "WW104 error" in log and "# FAILED" in log
    assert not project.layout.stamp("audit", "2026_0", "hello-pyo3").exists()


# -- the loader model against the runtimes' own code -------------------------------------------


@pytest.mark.parametrize("abi", ["2024_0", "2026_0"])
def test_which_files_the_installer_loads_is_pyodides_own_rule(abi, tmp_path, runtimes):
    """loader.LoaderFacts.loads() says what Pyodide's should_load_dynlib says, file name by file name."""
    from wasmwheel.audit.loader import LoaderFacts

    minor = MINOR[abi]
    names = [
        f"a.cpython-3{minor}-wasm32-emscripten.so",
        "a.cpython-313-wasm32-emscripten.so",
        "a.abi3.so",
        "a.so",
        "liba.so",
        "liba.so.1",
        "liba.so.1.2",
        f"a.cpython-3{minor}-x86_64-linux-gnu.so",
        "a.pypy-73.so",
        "a.b.so",
        "a.so.txt",
        "a.SO",
        "pkg/x.cpython-39.so",
        f"a.cpython-3{minor}d.so",
    ]
    facts = LoaderFacts.for_abi(ABIS[abi])
    expected = {n: facts.loads(n) for n in names}
    assert any(expected.values()) and not all(expected.values())
    script = (
        "from pyodide._package_loader import should_load_dynlib\n"
        f"expected = {expected!r}\n"
        "got = {n: should_load_dynlib(n) for n in expected}\n"
        "assert got == expected, {n: g for n, g in got.items() if g != expected[n]}\n"
    )
    wheel = make_wheel(tmp_path, "empty", {"empty/__init__.py": b""}, "py3-none-any")
    result = smoke(runtimes, abi, [wheel], script)
    assert result.ok, result.error[-1500:]
