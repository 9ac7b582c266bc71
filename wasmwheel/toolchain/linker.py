"""The lean toolchain's linker: rustc's emcc-style link line in, a wasm-ld side-module link out.

rustc links ``wasm32-unknown-emscripten`` cdylibs by calling ``emcc`` with emcc's own flags.
Without the Emscripten SDK, the compile step points ``CARGO_TARGET_WASM32_UNKNOWN_EMSCRIPTEN_LINKER``
at a launcher of this module, which turns that line into what emcc itself runs for a side module:

    rust-lld -flavor wasm --shared --experimental-pic --unresolved-symbols=import-dynamic
        --no-export-dynamic --export-if-defined=__wasm_call_ctors --export=PyInit_<m> ... -o <m>.wasm
    wasm-opt <the ABI's flags> -O<level> <m>.wasm -o <m>.wasm

using the toolchain's own ``rust-lld`` (the same LLVM as its rustc) and binaryen's ``wasm-opt``
pinned per ABI. Every argument is either translated, or dropped for a stated reason (it only
shapes a main module, or rustc has already done what it asks), or refused: an argument this
module does not know stops the link with its name, so nothing is ignored silently.

What emcc does here is documented in Emscripten's ``emcc.py``/``tools/link.py`` (side modules:
``--shared --experimental-pic``, ``--no-export-dynamic`` for ``SIDE_MODULE=2``, wasm-opt with
``--post-emscripten -O<n> --low-memory-unused --strip-debug --strip-producers``) and the rustc side
in ``rustc_codegen_ssa/src/back/linker.rs`` (``EmLinker``) and ``back/link.rs`` (response files).

The launcher passes the settings through the environment (set by ``wasmwheel.build``):

    WASMWHEEL_LINK_LLD        the toolchain's rust-lld
    WASMWHEEL_LINK_EH         the ABI's exception handling, ``js`` or ``wasm``
    WASMWHEEL_WASM_OPT        wasm-opt (binaryen's Node build), or empty for none
    WASMWHEEL_WASM_OPT_FLAGS  JSON list: the ABI's wasm-opt flags (without -O<n>)
    WASMWHEEL_LINK_LOG        file the driver appends its commands and notes to (optional)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# What the compile step tells the linker (wasmwheel.build.lean_env): set by wasmwheel, not by users.
LINK_ENV = ("WASMWHEEL_LINK_LLD", "WASMWHEEL_LINK_EH", "WASMWHEEL_WASM_OPT", "WASMWHEEL_WASM_OPT_FLAGS",
            "WASMWHEEL_LINK_LOG")
# Settings that only shape a main module (its JavaScript, its malloc, its memory), none of which
# a side module has: Pyodide's main module decides them. Refusing them would break recipes that
# share flags with emsdk builds; they are dropped with a note instead.
MAIN_MODULE_SETTINGS = frozenset({
    "WASM_BIGINT",           # JS <-> i64 legalization; wasm-ld never legalizes
    "ABORTING_MALLOC",       # the main module's malloc
    "ALLOW_MEMORY_GROWTH",
    "INITIAL_MEMORY",
    "MAXIMUM_MEMORY",
    "STACK_SIZE",
    "TOTAL_STACK",
    "MODULARIZE",
    "EXPORT_ES6",
    "ENVIRONMENT",
    "ASSERTIONS",
    "DISABLE_EXCEPTION_CATCHING",  # =0 is read as JavaScript exception handling
    "SUPPORT_LONGJMP",
    "ERROR_ON_UNDEFINED_SYMBOLS",  # side modules import what they do not define (import-dynamic)
    "WARN_ON_UNDEFINED_SYMBOLS",
})
OPT_LEVELS = frozenset({"-O0", "-O1", "-O2", "-O3", "-Os", "-Oz"})
SIDE_MODULE_FLAGS = (
    "--shared", "--experimental-pic", "--unresolved-symbols=import-dynamic",
    "--no-export-dynamic", "--export-if-defined=__wasm_call_ctors",
)


# wasm-opt's last strips when it runs after wasm-ld: names and debug info (-g0), and the target_features
# section, which wasm-ld kept for wasm-opt: without it wasm-opt allows only the features its flags name,
# and refuses a module whose code uses another (SIMD in a `#[target_feature(enable = "simd128")]`
# function, say). emcc strips it the same way (Emscripten's tools/link.py: --strip-target-features).
FINAL_STRIPS = ("--strip-debug", "--strip-target-features")


class LinkError(Exception):
    """The link line holds something this driver cannot translate faithfully."""


@dataclass(frozen=True)
class LinkPlan:
    """What one link does: the wasm-ld arguments (after the program) and what follows it."""

    lld_args: tuple[str, ...]
    output: str
    opt_level: str              # "-O0" .. "-Oz" as rustc asked
    debug: bool                 # -g (not -g0): keep names and debug info
    exception_handling: str     # what the line asks for: "wasm" (-fwasm-exceptions) or "js"
    notes: tuple[str, ...] = field(default=())

    @property
    def optimises(self) -> bool:
        """Whether wasm-opt runs after the link, as emcc runs it: not for -O0/-O1, not with debug info."""
        return self.opt_level not in ("-O0", "-O1") and not self.debug

    def wasm_opt_args(self, flags: list[str]) -> list[str] | None:
        """wasm-opt's arguments, or None where emcc would not run it (-O0, or debug info kept). The
        strips that make the module what ``-g0`` asks for come last, whatever the ABI's flags."""
        if not self.optimises:
            return None
        return [*flags, *(f for f in FINAL_STRIPS if f not in flags), self.opt_level, self.output, "-o", self.output]


def read_response_file(path: Path) -> list[str]:
    """Arguments of a GCC-style ``@file``: whitespace separates, ``\\`` escapes the next character,
    quotes group (rustc writes one argument per line and escapes ``\\`` and spaces with ``\\``)."""
    text = Path(path).read_text(encoding="utf-8")
    args: list[str] = []
    current: list[str] = []
    have = False
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current.append(text[i + 1])
            have = True
            i += 2
            continue
        if quote:
            if c == quote:
                quote = ""
            else:
                current.append(c)
        elif c in "\"'":
            quote = c
            have = True
        elif c.isspace():
            if have:
                args.append("".join(current))
                current, have = [], False
        else:
            current.append(c)
            have = True
        i += 1
    if quote:
        raise LinkError(f"response file {path}: unterminated {quote} quote")
    if have:
        args.append("".join(current))
    return args


def expand_response_files(argv: list[str], depth: int = 0) -> list[str]:
    out: list[str] = []
    for arg in argv:
        if arg.startswith("@") and len(arg) > 1:
            if depth > 8:
                raise LinkError(f"response files nested too deep at {arg}")
            try:
                out += expand_response_files(read_response_file(Path(arg[1:])), depth + 1)
            except OSError as exc:
                raise LinkError(f"cannot read the response file {arg[1:]}: {exc.strerror}") from None
        else:
            out.append(arg)
    return out


def _exported_functions(value: str) -> list[str]:
    """``["_PyInit_x","_PyModExport_x"]`` (emcc's list syntax, quotes optional) -> wasm export names."""
    text = value.strip()
    if text.startswith("@"):
        raise LinkError(f"EXPORTED_FUNCTIONS from a file ({text}) is not supported by the lean linker")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    names = [n.strip().strip("'\"") for n in text.split(",") if n.strip()]
    exports = []
    for name in names:
        if not name.startswith("_"):
            raise LinkError(f"EXPORTED_FUNCTIONS entry {name!r} has no leading underscore (emcc's C-name convention)")
        exports.append(name[1:])
    return exports


def plan(argv: list[str], exception_handling: str, wasm_opt: bool = False) -> LinkPlan:
    """Translate rustc's emcc link line (response files already expanded) into a wasm-ld link.

    ``exception_handling`` is the ABI's (``js``/``wasm``): a line asking for the other one means the
    crate and the ABI disagree, which would link and then fail in the runtime, so it is refused.
    ``wasm_opt``: a wasm-opt is configured (it strips what wasm-ld keeps for it).
    """
    args = list(argv)
    inputs: list[str] = []
    exports: list[str] = []
    lib_dirs: list[str] = []
    libs: list[str] = []
    passthrough: list[str] = []
    notes: list[str] = []
    output = ""
    opt = "-O0"
    debug = False
    eh_seen: set[str] = set()
    side_module = None
    i = 0

    def value_of(flag: str) -> str:
        nonlocal i
        if i + 1 >= len(args):
            raise LinkError(f"{flag} needs a value")
        i += 1
        return args[i]

    def setting(text: str) -> None:
        nonlocal side_module
        key, _, val = text.partition("=")
        key = key.strip()
        if key == "EXPORTED_FUNCTIONS":
            exports.extend(_exported_functions(val))
        elif key == "SIDE_MODULE":
            side_module = val.strip() or "1"
        elif key == "DISABLE_EXCEPTION_CATCHING" and val.strip() == "0":
            eh_seen.add("js")  # rustc's way of asking for JavaScript exception handling (invoke_* imports)
        elif key in MAIN_MODULE_SETTINGS:
            notes.append(f"dropped -s{text}: it shapes the main module (Pyodide's), not a side module")
        else:
            raise LinkError(f"unsupported emcc setting -s{text}: the lean linker knows the settings rustc and "
                            "maturin pass for side modules; link this crate with emsdk (WASMWHEEL_TOOLCHAIN=emsdk)")

    while i < len(args):
        arg = args[i]
        if arg == "-s":
            setting(value_of(arg))
        elif arg.startswith("-s") and "=" in arg or re.fullmatch(r"-s[A-Z_]+", arg):
            setting(arg[2:])
        elif arg == "-o":
            output = value_of(arg)
        elif arg.startswith("-o") and len(arg) > 2:
            output = arg[2:]
        elif arg in OPT_LEVELS:
            opt = arg
        elif arg == "-g0":
            debug = False
        elif re.fullmatch(r"-g[1-3]?", arg) or arg in ("-gsource-map", "-gseparate-dwarf"):
            debug = True
        elif arg == "-fwasm-exceptions":
            eh_seen.add("wasm")
        elif arg.startswith("-B"):
            notes.append(f"dropped {arg}: the linker is the toolchain's rust-lld, named by WASMWHEEL_LINK_LLD")
        elif arg.startswith("--target="):
            if arg != "--target=wasm32-unknown-emscripten":
                raise LinkError(f"{arg}: the lean linker links only wasm32-unknown-emscripten")
        elif arg == "-L":
            lib_dirs.append(value_of(arg))
        elif arg.startswith("-L"):
            lib_dirs.append(arg[2:])
        elif arg == "-l":
            libs.append(value_of(arg))
        elif arg.startswith("-l"):
            libs.append(arg[2:])
        elif arg.startswith("-Wl,"):
            passthrough += [a for a in arg[4:].split(",") if a]
        elif arg in ("-nodefaultlibs", "-nostdlib", "-nostartfiles", "-shared", "-fPIC", "-fpic"):
            notes.append(f"dropped {arg}: a side module links no C runtime and is always position-independent")
        elif arg.startswith("-"):
            raise LinkError(f"unknown linker argument {arg!r}: the lean linker refuses what it cannot translate; "
                            "link this crate with emsdk (WASMWHEEL_TOOLCHAIN=emsdk), or report the flag")
        else:
            inputs.append(arg)
        i += 1

    if not output:
        raise LinkError("no -o <output> on the link line")
    if side_module is None:
        raise LinkError("no -sSIDE_MODULE on the link line: the lean linker makes Pyodide side modules only "
                        "(add -C link-arg=-sSIDE_MODULE=2 to the rustflags)")
    if side_module != "2":
        raise LinkError(f"-sSIDE_MODULE={side_module}: Rust cdylibs link with SIDE_MODULE=2 (export only "
                        "EXPORTED_FUNCTIONS); 1 exports everything and fails on Rust's lib.rmeta")
    if len(eh_seen) > 1:
        raise LinkError("the link line asks for both WebAssembly (-fwasm-exceptions) and JavaScript "
                        "(-sDISABLE_EXCEPTION_CATCHING=0) exception handling")
    eh = next(iter(eh_seen), exception_handling)  # neither: nothing to check (no unwinding asked for)
    if eh != exception_handling:
        want = "-fwasm-exceptions (WebAssembly exception handling)" if exception_handling == "wasm" else \
            "JavaScript exception handling (no -fwasm-exceptions)"
        raise LinkError(f"the crate was compiled for {eh} exception handling, but the ABI needs {want}: "
                        "the module would link and then fail in Pyodide; check the ABI's rustflags and std")
    for lib in libs:
        found = next((str(Path(d) / f"lib{lib}.a") for d in lib_dirs if (Path(d) / f"lib{lib}.a").is_file()), None)
        if found:
            inputs.append(found)
        else:
            notes.append(f"-l{lib}: no lib{lib}.a on the -L paths; its symbols are imported from Pyodide's main module")
    lld = [*SIDE_MODULE_FLAGS, *(f"--export={name}" for name in exports)]
    the_plan = LinkPlan((), output, opt, debug, eh, tuple(notes))
    if not debug:
        # emcc -g0: no name section, no debug info. When wasm-opt follows, wasm-ld strips only debug
        # info and keeps the target_features section for it (FINAL_STRIPS), else it strips all.
        lld.append("--strip-debug" if wasm_opt and the_plan.optimises else "--strip-all")
    lld += [*passthrough, *inputs, "-o", output]
    return dataclasses.replace(the_plan, lld_args=tuple(lld))


def _log(line: str) -> None:
    path = os.environ.get("WASMWHEEL_LINK_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")


def _run(argv: list[str]) -> int:
    import shlex

    _log("$ " + shlex.join(argv))
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            _log(stream)
            sys.stderr.write(stream)
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ
    try:
        lld = env.get("WASMWHEEL_LINK_LLD", "")
        if not lld:
            raise LinkError("WASMWHEEL_LINK_LLD is not set: this linker is run by wasmwheel's compile step")
        the_plan = plan(expand_response_files(argv), env.get("WASMWHEEL_LINK_EH", "wasm"),
                        wasm_opt=bool(env.get("WASMWHEEL_WASM_OPT")))
        flags = json.loads(env.get("WASMWHEEL_WASM_OPT_FLAGS") or "[]")
    except LinkError as exc:
        sys.stderr.write(f"wasmwheel lean linker: error: {exc}\n")
        _log(f"error: {exc}")
        return 1
    for note in the_plan.notes:
        _log(f"# {note}")
    code = _run([lld, "-flavor", "wasm", *the_plan.lld_args])
    if code != 0:
        return code
    wasm_opt = env.get("WASMWHEEL_WASM_OPT", "")
    opt_args = the_plan.wasm_opt_args(flags) if wasm_opt else None
    if opt_args is None:
        _log(f"# no wasm-opt ({'none configured' if not wasm_opt else the_plan.opt_level + (' -g' if the_plan.debug else '')})")
        return 0
    return _run([wasm_opt, *opt_args])


def no_c_compiler(argv: list[str] | None = None) -> int:
    """The lean toolchain's C/C++ compiler for the target (TARGET_CC/TARGET_CXX): it compiles nothing
    and says which crate asked. A C compiler for Emscripten brings Emscripten's libc headers and ABI,
    which only the Emscripten SDK provides. cargo names the crate whose build script runs it."""
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["--version"], ["-dumpversion"], ["-v"]):
        sys.stderr.write("wasmwheel lean toolchain: no C compiler for wasm32-unknown-emscripten\n")
        return 1
    crate = os.environ.get("CARGO_PKG_NAME") or "a build script"
    message = (f"wasmwheel lean toolchain: error: crate {crate} compiles C/C++ for wasm32-unknown-emscripten "
               "(its build script runs a C compiler), which needs emcc: the lean toolchain has none. Build this "
               "recipe with WASMWHEEL_TOOLCHAIN=emsdk, and declare it in the recipe ([build] needs_emsdk = \"why\") "
               "so that lean batches skip it")
    sys.stderr.write(message + "\n")
    _log(message)
    return 1


if __name__ == "__main__":  # pragma: no cover - run as the linker by rustc
    sys.exit(main())
