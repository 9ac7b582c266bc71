"""Known build and load errors, mapped to the fix.

The patterns are the tools' own messages (rustc, wasm-ld, wasm-opt, PyO3's build
script, maturin, rustup, Pyodide's loader). :func:`hint_for` is used for step failures
on the console and in the batch report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownError:
    code: str
    pattern: re.Pattern[str]
    fix: str


def _k(code: str, pattern: str, fix: str) -> KnownError:
    return KnownError(code, re.compile(pattern, re.IGNORECASE | re.MULTILINE), fix)


KNOWN_ERRORS: tuple[KnownError, ...] = (
    _k(
        "bulk-memory-opt",
        r"Unknown option '--enable-bulk-memory-opt'",
        "this Rust is newer than the ABI's Emscripten (its wasm-opt does not know bulk-memory-opt): "
        "build with the ABI's pinned toolchain, not a newer one (PyO3/maturin#2549)",
    ),
    _k(
        "side-module-1",
        r"lib\.rmeta.*(neither Wasm object file nor LLVM bitcode|unknown file type)|"
        r"unknown file type: lib\.rmeta",
        "-sSIDE_MODULE=1 links whole archives and trips over Rust's lib.rmeta: use -C link-arg=-sSIDE_MODULE=2",
    ),
    _k(
        "pyo3-too-old",
        r"is newer than PyO3's maximum supported version \((\d+\.\d+)\)",
        "the crate's PyO3 is too old for this ABI's Python: bump pyo3 with a recipe patch, or list the ABI in "
        "[build] skip_abis with that reason (PYO3_USE_ABI3_FORWARD_COMPATIBILITY=1 only helps abi3 builds)",
    ),
    _k(
        "eh-mismatch",
        r"undefined symbol: (__cpp_exception|__cxa_find_matching_catch\w*|__resumeException|"
        r"_Unwind_\w+|__cxa_\w+|rust_eh_personality)|"
        r"(panic_unwind|unwind).*(undefined|mismatch)|"
        r'function="__cpp_exception" error: tag import requires a WebAssembly\.Tag|'
        r"exception[- ]handling.*(mismatch|incompatible)",
        "the crate and the Rust std it links disagree on exception handling: a 2025_0 nightly needs a std built "
        "with -Z emscripten-wasm-eh (std_rustflags in the ABI file, or Pyodide's sysroot) and the same flag for "
        "the crates; stable Rust >= 1.93 needs neither; 2024_0 uses JS exception handling and must not get "
        "-Z emscripten-wasm-eh",
    ),
    _k(
        "panic-strategy",
        r"does not have the panic strategy `(abort|unwind)`|"
        r"is compiled with the panic strategy `\w+` which is incompatible",
        "the crate's panic strategy differs from the std it links (Pyodide's std unwinds): remove panic = \"abort\" "
        "/ -C panic=abort (with unwinding a Rust panic becomes a Python exception instead of ending the runtime)",
    ),
    _k(
        "needs-emcc",
        r"wasmwheel lean toolchain: error: crate \S+ compiles C|failed to find tool\.? .?emcc",
        "this crate compiles C/C++ for the target, which needs Emscripten's emcc: build it with "
        'WASMWHEEL_TOOLCHAIN=emsdk, and give its recipe [build] needs_emsdk = "<why>" so that lean batches skip it',
    ),
    _k(
        "pthread",
        r"-pthread|--shared-memory|shared memory|mismatch in shared state of memory|"
        r"atomics.*(require|not allowed)",
        "Pyodide modules cannot use threads or shared memory: remove -pthread (and +atomics) from the flags",
    ),
    # Before missing-target: installing again cannot help here.
    _k(
        "std-unpublished",
        r"component 'rust-std' for target 'wasm32-unknown-emscripten' is unavailable",
        "no prebuilt std for wasm32-unknown-emscripten is published for this toolchain, so installing it again "
        "cannot help: set std = \"source\" in the ABI file's [rust] to build it from the toolchain's rust-src "
        '(the std step, `doit std:<abi>`), or take it from a sysroot archive (std = "sysroot" with a '
        "[rust.sysroot] table; `doit pin-sysroot:<abi>` records its sha256)",
    ),
    _k(
        "missing-target",
        r"can't find crate for `(std|core)`|target may not be installed",
        "rustc finds no std for wasm32-unknown-emscripten in the toolchain: `doit -a std:<abi>` builds or installs "
        'it again (-a: the step is up to date as far as doit knows); with std = "rustup" in system mode, '
        "`rustup target add wasm32-unknown-emscripten --toolchain <toolchain>`",
    ),
    # Legalization stubs and BigInt conversion errors, not the flag's name (which every maturin command shows).
    _k(
        "wasm-bigint",
        r"legalstub\$|legalimport\$|Cannot convert a BigInt value|BigInt.*(not|cannot).*(i64|convert)",
        "i64 values cross the JS boundary without BigInt: link with -sWASM_BIGINT (maturin adds it unless the "
        "flags already mention it; check the recipe's rustflags)",
    ),
    _k(
        "emcc-missing",
        r"linker `emcc` not found",
        "emcc is not on PATH for the compile: rerun `doit emsdk:<abi>` (system mode: `source emsdk_env.sh`)",
    ),
    _k(
        "dylink",
        r"need the dylink section to be first",
        "the module is not an Emscripten side module: link with -sSIDE_MODULE=2 (maturin adds it for this target)",
    ),
    _k(
        "js-eh-call",
        r"cannot resolve symbol invoke_",
        "the module was built with JavaScript exception handling (it calls invoke_* wrappers), which this ABI's "
        "Pyodide does not provide (it uses wasm exception handling; audit WW120/WW123): rebuild with the ABI's "
        "toolchain (Rust >= 1.93, or -Z emscripten-wasm-eh with the wasm-EH sysroot)",
    ),
    _k(
        "missing-function",
        r"cannot resolve symbol ([\w$]+)",
        "the module called a function that neither Pyodide nor the module's needed libraries define; it loads, "
        "and the first call ends the runtime (audit WW132, or WW134 when its init makes the call): link the "
        "library that defines it, or build against this ABI's Python and Emscripten",
    ),
    _k(
        "missing-library",
        r'Failed to find dynamic library "?([^"\s]+)',
        "the extension needs a shared library that no installed wheel provides: vendor it into the wheel "
        "(`pyodide auditwheel repair`), or install the wheel of the recipe that provides it first ([depends] test)",
    ),
    _k(
        "memory-maximum",
        r"memory import \d+ has a larger maximum size",
        "the module's memory import allows less memory than the runtime has: link the side module without a "
        "maximum memory setting (-sMAXIMUM_MEMORY, --max-memory)",
    ),
    _k(
        "pyinit",
        r"dynamic module does not define module export function",
        "the extension does not export PyInit_<name> for its file name: check the module name in Cargo.toml "
        "([lib] name) and pyproject.toml (tool.maturin.module-name)",
    ),
)


def hint_for(text: str) -> KnownError | None:
    """The first known error whose pattern appears in ``text``."""
    for known in KNOWN_ERRORS:
        if known.pattern.search(text):
            return known
    return None
