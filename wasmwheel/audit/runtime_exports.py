"""What a Pyodide runtime gives the side modules it loads: symbols and memory.

A side module's imports are resolved by Emscripten's dynamic loader against the
runtime: the exports of the main module (``pyodide.asm.wasm``) and the JavaScript
library functions of ``pyodide.asm.js`` (its ``wasmImports`` object). An import
nobody provides fails when the module loads (a data symbol or a function address:
``GOT.mem``/``GOT.func``) or kills the runtime when first called (a function). The
memory a side module imports is the main module's, so its limits must fit it.

These facts come from the npm package of each runtime. They are extracted once,
when the runtime is installed, into ``abi/runtimes/<version>/exports.json.gz``
next to the runtime's npm lock, and committed: the audit reads them without a
runtime, offline, and a change of runtime shows in the diff (the tests check the
committed file against the installed runtime).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from wasmwheel.audit.wasm import WasmError, read_module
from wasmwheel.model.errors import ConfigError
from wasmwheel.model.layout import RUNTIME_EXPORTS as FILENAME  # abi/runtimes/<version>/exports.json.gz

FORMAT = 1
WASM_PAGE = 65536
_IMPORTS_RE = re.compile(r"\bvar wasmImports\s*=\s*\{")
_KEY_RE = re.compile(r"^[A-Za-z_$][\w$]*$")


class RuntimeExportsError(ConfigError):
    pass


@dataclass(frozen=True)
class RuntimeExports:
    pyodide: str
    memory_initial: int  # pages of 64 KiB the main module starts with
    memory_maximum: int | None  # pages it may grow to (None: no maximum)
    symbols: frozenset[str]

    def provides(self, name: str) -> bool:
        return name in self.symbols


def _js_import_keys(js: str, where: Path) -> set[str]:
    """The keys of ``var wasmImports={...}``: every JavaScript function the loader can hand out."""
    match = _IMPORTS_RE.search(js)
    if not match:
        raise RuntimeExportsError(
            where, "", "no `var wasmImports={...}` object found", "is this a Pyodide runtime's pyodide.asm.js?"
        )
    depth, end = 1, match.end()
    while depth and end < len(js):
        depth += {"{": 1, "}": -1}.get(js[end], 0)
        end += 1
    if depth:
        raise RuntimeExportsError(where, "", "the wasmImports object does not end", "reinstall the runtime")
    keys = set()
    for part in js[match.end() : end - 1].split(","):
        key = part.split(":", 1)[0].strip()
        if not _KEY_RE.match(key):
            raise RuntimeExportsError(
                where,
                "",
                f"unexpected wasmImports entry {part.strip()[:60]!r}",
                "this runtime's JavaScript is not in a form wasmwheel reads",
            )
        keys.add(key)
    return keys


def extract(package: Path) -> dict:
    """Read the facts from an installed npm ``pyodide`` package folder (node_modules/pyodide)."""
    package = Path(package)
    js_path = next((p for p in (package / "pyodide.asm.js", package / "pyodide.asm.mjs") if p.exists()), None)
    wasm_path = package / "pyodide.asm.wasm"
    if js_path is None or not wasm_path.exists():
        raise RuntimeExportsError(
            package,
            "",
            "no pyodide.asm.js/.mjs and pyodide.asm.wasm here",
            "point at node_modules/pyodide of an installed runtime",
        )
    try:
        main = read_module(wasm_path)
    except WasmError as exc:
        raise RuntimeExportsError(wasm_path, "", f"not a WebAssembly module: {exc}", "reinstall the runtime") from None
    memories = [i.limits for i in main.imports if i.kind == "memory" and i.limits] + list(main.memories)
    if not memories:
        raise RuntimeExportsError(wasm_path, "", "the main module has no memory", "reinstall the runtime")
    version = json.loads((package / "package.json").read_text()).get("version", "")
    symbols = _js_import_keys(js_path.read_text(encoding="utf-8"), js_path) | set(main.export_names())
    return {
        "format": FORMAT,
        "pyodide": version,
        "memory": {"initial_pages": memories[0].minimum, "maximum_pages": memories[0].maximum},
        "symbols": sorted(symbols),
    }


def encode(data: dict) -> bytes:
    """Byte-for-byte reproducible: sorted keys, one symbol per line, no gzip timestamp."""
    text = json.dumps(data, indent=0, sort_keys=True) + "\n"
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def _parse(path: Path, raw: bytes) -> RuntimeExports:
    fix = "delete it; installing the runtime (doit pyodide:<abi>) writes it again"
    try:
        data = json.loads(gzip.decompress(raw).decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise RuntimeExportsError(path, "", f"not gzip-compressed JSON ({exc})", fix) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RuntimeExportsError(path, "format", f"expected {FORMAT}", fix)
    memory = data.get("memory")
    if not isinstance(memory, dict):
        raise RuntimeExportsError(path, "memory", "expected a table", fix)
    initial, maximum = memory.get("initial_pages"), memory.get("maximum_pages")
    if not isinstance(initial, int) or not (maximum is None or isinstance(maximum, int)):
        raise RuntimeExportsError(path, "memory", "expected integer initial_pages and maximum_pages", fix)
    symbols = data.get("symbols")
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise RuntimeExportsError(path, "symbols", "expected a list of names", fix)
    pyodide = data.get("pyodide")
    if not isinstance(pyodide, str):
        raise RuntimeExportsError(path, "pyodide", "expected the runtime's version", fix)
    return RuntimeExports(pyodide, initial, maximum, frozenset(symbols))


@functools.lru_cache(maxsize=16)
def _load_cached(path: Path, mtime_ns: int, size: int) -> RuntimeExports:
    return _parse(path, path.read_bytes())


def _by_file(fn, path: Path):
    """``fn(path, mtime_ns, size)`` (an lru_cache'd reader: a changed file is read again), None if absent."""
    try:
        st = path.stat()
    except OSError:
        return None
    return fn(path, st.st_mtime_ns, st.st_size)


def load(folder: Path) -> RuntimeExports | None:
    """The facts committed in ``folder`` (abi/runtimes/<version>/), or None if there are none yet."""
    return _by_file(_load_cached, Path(folder) / FILENAME)


def for_abi(abi) -> RuntimeExports | None:
    return load(abi.runtime_lock_dir)


def file_digest(abi) -> str | None:
    """sha256 of the ABI's exports file (what an audit's config_changed needs, without parsing it at
    every doit start), or None if there is none."""
    return _by_file(_file_digest, abi.runtime_lock_dir / FILENAME)


@functools.lru_cache(maxsize=16)
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
