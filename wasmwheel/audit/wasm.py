"""A small reader for the parts of a WebAssembly binary that decide whether Pyodide can load it.

It reads the module header, the section list, the ``dylink.0`` custom section that
makes a module an Emscripten side module (memory and table sizes, needed libraries,
runtime paths), ``target_features``, the imports (functions, tables, memories with
their shared flag, globals, tags), the defined memories and tags, the exports, the start
function, and the constant expressions of globals and segments (for extended-const
instructions). Code and segment contents are skipped, so even a large module reads in
milliseconds.

Nothing here trusts the input: every length, count and LEB128 number is checked
against the bytes that are left, and any malformed or truncated input raises
:class:`WasmError` (with the byte offset), never another exception; but a broken
``target_features`` section is ignored, as engines and Emscripten's loader ignore it.
:func:`always_called` reads function bodies, on demand (see there).

Formats: the WebAssembly core binary format (with the threads, exception-handling,
memory64, custom-page-sizes and GC type encodings where they appear in imports), and
the tool conventions' ``dylink.0`` and ``target_features`` custom sections
(https://github.com/WebAssembly/tool-conventions, DynamicLinking.md and Linking.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wasmwheel.model.errors import WasmwheelError

MAGIC = b"\x00asm"
VERSION = 1

# Section ids of the core format.
SECTION_NAMES = {
    0: "custom",
    1: "type",
    2: "import",
    3: "function",
    4: "table",
    5: "memory",
    6: "global",
    7: "export",
    8: "start",
    9: "element",
    10: "code",
    11: "data",
    12: "datacount",
    13: "tag",
}
KINDS = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}
VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128"}
# Reference types: the short forms, and the GC proposal's (ref null? ht) forms.
SHORT_REFTYPES = {
    0x70: "funcref",
    0x6F: "externref",
    0x69: "exnref",
    0x6E: "anyref",
    0x6D: "eqref",
    0x6C: "i31ref",
    0x6B: "structref",
    0x6A: "arrayref",
    0x71: "nullref",
    0x72: "nullexternref",
    0x73: "nullfuncref",
    0x74: "nullexnref",
}
HEAP_TYPES = {
    0x70: "func",
    0x6F: "extern",
    0x69: "exn",
    0x6E: "any",
    0x6D: "eq",
    0x6C: "i31",
    0x6B: "struct",
    0x6A: "array",
    0x71: "none",
    0x72: "noextern",
    0x73: "nofunc",
    0x74: "noexn",
}

DYLINK_SECTION = "dylink.0"
LEGACY_DYLINK_SECTION = "dylink"
# dylink.0 subsection types.
WASM_DYLINK_MEM_INFO = 1
WASM_DYLINK_NEEDED = 2
WASM_DYLINK_EXPORT_INFO = 3
WASM_DYLINK_IMPORT_INFO = 4
WASM_DYLINK_RUNTIME_PATH = 5


class WasmError(WasmwheelError):
    """The bytes are not a WebAssembly module this reader understands."""

    def __init__(self, message: str, offset: int | None = None):
        self.problem = message
        self.offset = offset
        super().__init__(message if offset is None else f"{message} (at byte {offset})")


# -- parsed data -------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    minimum: int
    maximum: int | None
    shared: bool = False
    memory64: bool = False
    page_size_log2: int | None = None  # custom-page-sizes proposal; None = 64 KiB pages


@dataclass(frozen=True)
class Section:
    id: int
    offset: int  # of the section's id byte
    size: int  # of its contents (after the id and the size)
    name: str = ""  # custom sections only

    @property
    def kind(self) -> str:
        return SECTION_NAMES.get(self.id, f"unknown({self.id})")

    @property
    def label(self) -> str:
        return f"custom:{self.name}" if self.id == 0 else self.kind


@dataclass(frozen=True)
class Import:
    module: str
    name: str
    kind: str  # func | table | memory | global | tag
    type_index: int | None = None  # func and tag
    limits: Limits | None = None  # table and memory
    value_type: str | None = None  # global's value type, table's element type
    mutable: bool = False  # global

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class Export:
    name: str
    kind: str
    index: int


@dataclass(frozen=True)
class Dylink:
    """The ``dylink.0`` (or the older ``dylink``) section of a side module."""

    mem_size: int
    mem_align: int  # log2
    table_size: int
    table_align: int  # log2
    needed: tuple[str, ...] = ()
    runtime_paths: tuple[str, ...] = ()
    export_flags: tuple[tuple[str, int], ...] = ()
    import_flags: tuple[tuple[str, str, int], ...] = ()
    legacy: bool = False  # the pre-2021 "dylink" format


@dataclass(frozen=True)
class Module:
    version: int
    sections: tuple[Section, ...]
    imports: tuple[Import, ...]
    exports: tuple[Export, ...]
    memories: tuple[Limits, ...]  # defined (not imported) memories
    tag_count: int  # defined (not imported) tags
    dylink: Dylink | None
    target_features: tuple[tuple[str, str], ...]  # (prefix "+", "-" or "=", feature)
    # Instructions of the extended-const proposal (i32.add, ...) found in constant expressions
    # (global initializers, element and data segment offsets).
    extended_const_ops: frozenset[str] = frozenset()
    start: int | None = None  # the start function's index (it runs when the module is instantiated)
    code: tuple[int, int] | None = None  # where the code section's contents begin and end in the bytes

    @property
    def first_section(self) -> Section | None:
        return self.sections[0] if self.sections else None

    @property
    def dylink_first(self) -> bool:
        """Emscripten's loader needs the dylink section to be the very first section."""
        first = self.first_section
        return bool(first and first.id == 0 and first.name in (DYLINK_SECTION, LEGACY_DYLINK_SECTION))

    @property
    def custom_sections(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sections if s.id == 0)

    def imports_of(self, kind: str) -> tuple[Import, ...]:
        return tuple(i for i in self.imports if i.kind == kind)

    def export_names(self, kind: str | None = None) -> frozenset[str]:
        return frozenset(e.name for e in self.exports if kind is None or e.kind == kind)

    def function_index(self, export: str) -> int | None:
        """The function index of an exported function (None: no such function export)."""
        return next((e.index for e in self.exports if e.kind == "func" and e.name == export), None)

    @property
    def all_memories(self) -> tuple[Limits, ...]:
        return tuple(i.limits for i in self.imports if i.kind == "memory" and i.limits) + self.memories

    @property
    def uses_shared_memory(self) -> bool:
        return any(m.shared for m in self.all_memories)

    def has_feature(self, feature: str) -> bool:
        return any(prefix in "+=" and name == feature for prefix, name in self.target_features)


# -- the byte reader ------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None):
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            raise WasmError(f"truncated: {what} needs {n} bytes, {self.remaining} left", self.pos)

    def byte(self, what: str = "a byte") -> int:
        self.need(1, what)
        b = self.data[self.pos]
        self.pos += 1
        return b

    def bytes(self, n: int, what: str) -> bytes:
        self.need(n, what)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return bytes(out)

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n

    def uleb(self, bits: int = 32, what: str = "a number") -> int:
        start = self.pos
        result = 0
        shift = 0
        max_bytes = (bits + 6) // 7
        for i in range(max_bytes):
            b = self.byte(what)
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                if i == max_bytes - 1 and b >> (bits - 7 * i):
                    raise WasmError(f"{what}: LEB128 number does not fit in {bits} bits", start)
                return result
            shift += 7
        raise WasmError(f"{what}: LEB128 number longer than {max_bytes} bytes", start)

    def sleb33(self, what: str) -> int:
        start = self.pos
        result = 0
        shift = 0
        for _ in range(5):
            b = self.byte(what)
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b & 0x40:
                    result -= 1 << shift
                return result
        raise WasmError(f"{what}: LEB128 number longer than 5 bytes", start)

    def count(self, what: str, min_item_size: int = 1) -> int:
        """A vector length, checked against the bytes left (so garbage cannot ask for 4 billion items)."""
        start = self.pos
        n = self.uleb(32, f"the number of {what}")
        if n * min_item_size > self.remaining:
            raise WasmError(f"{n} {what} cannot fit in the {self.remaining} bytes left", start)
        return n

    def name(self, what: str) -> str:
        start = self.pos
        n = self.uleb(32, f"the length of {what}")
        raw = self.bytes(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WasmError(f"{what} is not valid UTF-8", start) from None


# -- decoding -------------------------------------------------------------------------------------


def _limits(r: _Reader, what: str, allow_64: bool) -> Limits:
    start = r.pos
    flags = r.byte(f"the limits flags of {what}")
    if flags & ~0x0F:
        raise WasmError(f"{what}: unknown limits flags {flags:#x}", start)
    memory64 = bool(flags & 0x04)
    if memory64 and not allow_64:
        raise WasmError(f"{what}: 64-bit limits are not allowed here", start)
    bits = 64 if memory64 else 32
    minimum = r.uleb(bits, f"the minimum of {what}")
    maximum = r.uleb(bits, f"the maximum of {what}") if flags & 0x01 else None
    page_size_log2 = r.uleb(32, f"the page size of {what}") if flags & 0x08 else None
    return Limits(minimum, maximum, shared=bool(flags & 0x02), memory64=memory64, page_size_log2=page_size_log2)


def _heap_type(r: _Reader, what: str) -> str:
    start = r.pos
    b = r.data[r.pos] if r.pos < r.end else None
    if b is not None and b in HEAP_TYPES:
        r.pos += 1
        return HEAP_TYPES[b]
    index = r.sleb33(what)
    if index < 0:
        raise WasmError(f"{what}: unknown heap type {index}", start)
    return f"type {index}"


def _ref_type(r: _Reader, what: str) -> str:
    start = r.pos
    b = r.byte(what)
    if b in SHORT_REFTYPES:
        return SHORT_REFTYPES[b]
    if b in (0x63, 0x64):  # (ref null ht), (ref ht)
        ht = _heap_type(r, what)
        return f"(ref {'null ' if b == 0x63 else ''}{ht})"
    raise WasmError(f"{what}: unknown reference type {b:#x}", start)


def _value_type(r: _Reader, what: str) -> str:
    b = r.data[r.pos] if r.pos < r.end else None
    if b is not None and b in VALTYPES:
        r.pos += 1
        return VALTYPES[b]
    return _ref_type(r, what)


def _import(r: _Reader, index: int) -> Import:
    module = r.name(f"the module name of import {index}")
    name = r.name(f"the field name of import {index}")
    what = f"import {module}.{name}"
    start = r.pos
    kind = r.byte(f"the kind of {what}")
    if kind == 0:
        return Import(module, name, "func", type_index=r.uleb(32, f"the type of {what}"))
    if kind == 1:
        elem = _ref_type(r, f"the element type of {what}")
        return Import(module, name, "table", limits=_limits(r, what, allow_64=True), value_type=elem)
    if kind == 2:
        return Import(module, name, "memory", limits=_limits(r, what, allow_64=True))
    if kind == 3:
        vt = _value_type(r, f"the type of {what}")
        mut_at = r.pos
        mut = r.byte(f"the mutability of {what}")
        if mut not in (0, 1):
            raise WasmError(f"{what}: bad mutability flag {mut:#x}", mut_at)
        return Import(module, name, "global", value_type=vt, mutable=bool(mut))
    if kind == 4:
        attr_at = r.pos
        attribute = r.byte(f"the attribute of {what}")
        if attribute != 0:
            raise WasmError(f"{what}: unknown tag attribute {attribute:#x}", attr_at)
        return Import(module, name, "tag", type_index=r.uleb(32, f"the type of {what}"))
    raise WasmError(f"{what}: unknown import kind {kind:#x}", start)


def _export(r: _Reader, index: int) -> Export:
    name = r.name(f"the name of export {index}")
    start = r.pos
    kind = r.byte(f"the kind of export {name}")
    if kind not in KINDS:
        raise WasmError(f"export {name}: unknown kind {kind:#x}", start)
    return Export(name, KINDS[kind], r.uleb(32, f"the index of export {name}"))


def _dylink0(r: _Reader) -> Dylink:
    mem = (0, 0, 0, 0)
    needed: list[str] = []
    runtime_paths: list[str] = []
    export_flags: list[tuple[str, int]] = []
    import_flags: list[tuple[str, str, int]] = []
    while r.remaining:
        sub_type = r.byte("a dylink.0 subsection type")
        size = r.uleb(32, "a dylink.0 subsection size")
        r.need(size, f"dylink.0 subsection {sub_type}")
        sub = _Reader(r.data, r.pos, r.pos + size)
        r.pos += size
        if sub_type == WASM_DYLINK_MEM_INFO:
            mem = tuple(
                sub.uleb(32, f"dylink.0 {what}")  # type: ignore[assignment]
                for what in ("memory size", "memory alignment", "table size", "table alignment")
            )
        elif sub_type == WASM_DYLINK_NEEDED:
            needed = [sub.name("a needed library name") for _ in range(sub.count("needed libraries"))]
        elif sub_type == WASM_DYLINK_EXPORT_INFO:
            for _ in range(sub.count("export infos", 2)):
                name = sub.name("an export info name")
                export_flags.append((name, sub.uleb(32, "export info flags")))
        elif sub_type == WASM_DYLINK_IMPORT_INFO:
            for _ in range(sub.count("import infos", 3)):
                module = sub.name("an import info module")
                field = sub.name("an import info field")
                import_flags.append((module, field, sub.uleb(32, "import info flags")))
        elif sub_type == WASM_DYLINK_RUNTIME_PATH:
            runtime_paths = [sub.name("a runtime path") for _ in range(sub.count("runtime paths"))]
        else:
            continue  # unknown subsections are skipped, as Emscripten's loader does
        if sub.remaining:
            raise WasmError(f"dylink.0 subsection {sub_type} has {sub.remaining} bytes left over", sub.pos)
    return Dylink(
        *mem,
        needed=tuple(needed),
        runtime_paths=tuple(runtime_paths),  # type: ignore[misc]
        export_flags=tuple(export_flags),
        import_flags=tuple(import_flags),
    )


def _legacy_dylink(r: _Reader) -> Dylink:
    mem = [
        r.uleb(32, f"dylink {what}") for what in ("memory size", "memory alignment", "table size", "table alignment")
    ]
    needed = tuple(r.name("a needed library name") for _ in range(r.count("needed libraries")))
    return Dylink(*mem, needed=needed, legacy=True)


# Constant expressions: the MVP instructions (with their immediates) and the extended-const ones.
EXTENDED_CONST_OPS = {
    0x6A: "i32.add",
    0x6B: "i32.sub",
    0x6C: "i32.mul",
    0x7C: "i64.add",
    0x7D: "i64.sub",
    0x7E: "i64.mul",
}


def _const_expr(r: _Reader, what: str) -> set[str]:
    """Skip a constant expression (up to its ``end``); returns the extended-const instructions in it."""
    found: set[str] = set()
    while True:
        start = r.pos
        op = r.byte(f"an instruction of {what}")
        if op == 0x0B:  # end
            return found
        if op == 0x41:
            r.sleb33(f"the i32.const of {what}")  # 33 bits suffice to skip a 32-bit number
        elif op == 0x42:
            for _ in range(10):
                if not r.byte(f"the i64.const of {what}") & 0x80:
                    break
            else:
                raise WasmError(f"{what}: LEB128 number longer than 10 bytes", start)
        elif op == 0x43:
            r.skip(4, f"the f32.const of {what}")
        elif op == 0x44:
            r.skip(8, f"the f64.const of {what}")
        elif op in (0x23, 0xD2):  # global.get, ref.func
            r.uleb(32, f"the index in {what}")
        elif op == 0xD0:  # ref.null
            _heap_type(r, what)
        elif op == 0xFD:  # v128.const
            sub = r.uleb(32, f"the SIMD opcode in {what}")
            if sub != 12:
                raise WasmError(f"{what}: SIMD instruction {sub} is not constant", start)
            r.skip(16, f"the v128.const of {what}")
        elif op in EXTENDED_CONST_OPS:
            found.add(EXTENDED_CONST_OPS[op])
        else:
            raise WasmError(f"{what}: instruction {op:#x} is not allowed in a constant expression", start)


def _globals(r: _Reader) -> set[str]:
    found: set[str] = set()
    for i in range(r.count("globals", 3)):
        what = f"global {i}"
        _value_type(r, f"the type of {what}")
        mut_at = r.pos
        if r.byte(f"the mutability of {what}") not in (0, 1):
            raise WasmError(f"{what}: bad mutability flag", mut_at)
        found |= _const_expr(r, f"the initializer of {what}")
    return found


def _segment_flags(r: _Reader, what: str, highest: int) -> int:
    start = r.pos
    flags = r.uleb(32, f"the flags of {what}")
    if flags > highest:
        raise WasmError(f"{what}: unknown flags {flags}", start)
    return flags


def _elements(r: _Reader) -> set[str]:
    found: set[str] = set()
    for i in range(r.count("element segments", 2)):
        what = f"element segment {i}"
        flags = _segment_flags(r, what, 7)
        if flags & 0b010 and not flags & 0b001:  # active with an explicit table index
            r.uleb(32, f"the table of {what}")
        if not flags & 0b001:  # active: an offset
            found |= _const_expr(r, f"the offset of {what}")
        if flags & 0b011:  # an element kind / reference type follows
            if flags & 0b100:
                _ref_type(r, f"the type of {what}")
            else:
                r.byte(f"the element kind of {what}")
        for j in range(r.count(f"items of {what}")):
            if flags & 0b100:
                found |= _const_expr(r, f"item {j} of {what}")
            else:
                r.uleb(32, f"item {j} of {what}")
    return found


def _data(r: _Reader) -> set[str]:
    found: set[str] = set()
    for i in range(r.count("data segments", 2)):
        what = f"data segment {i}"
        flags = _segment_flags(r, what, 2)
        if flags == 2:
            r.uleb(32, f"the memory of {what}")
        if flags != 1:
            found |= _const_expr(r, f"the offset of {what}")
        r.skip(r.uleb(32, f"the size of {what}"), f"the bytes of {what}")
    return found


def _target_features(r: _Reader) -> tuple[tuple[str, str], ...]:
    out = []
    for _ in range(r.count("target features", 2)):
        start = r.pos
        prefix = chr(r.byte("a target feature prefix"))
        if prefix not in "+-=":
            raise WasmError(f"unknown target feature prefix {prefix!r}", start)
        out.append((prefix, r.name("a target feature name")))
    return tuple(out)


def parse_module(data: bytes) -> Module:
    """Read a WebAssembly binary. Raises :class:`WasmError` on anything malformed."""
    data = bytes(data)
    r = _Reader(data)
    if len(data) < 8:
        raise WasmError(f"not a WebAssembly module: only {len(data)} bytes", 0)
    if data[:4] != MAGIC:
        raise WasmError(f"not a WebAssembly module: starts with {data[:4]!r}, not {MAGIC!r}", 0)
    version = int.from_bytes(data[4:8], "little")
    if version != VERSION:
        layer = version >> 16
        what = "a WebAssembly component, not a core module" if layer == 1 else f"WebAssembly version {version:#x}"
        raise WasmError(f"unsupported: {what}", 4)
    r.pos = 8
    sections: list[Section] = []
    imports: list[Import] = []
    exports: list[Export] = []
    memories: list[Limits] = []
    tag_count = 0
    extended_const: set[str] = set()
    dylink: Dylink | None = None
    features: tuple[tuple[str, str], ...] = ()
    start: int | None = None
    code: tuple[int, int] | None = None
    seen: set[int] = set()
    last_order = 0
    while r.remaining:
        header_at = r.pos
        sid = r.byte("a section id")
        size = r.uleb(32, "a section size")
        if sid not in SECTION_NAMES:
            raise WasmError(f"unknown section id {sid}", header_at)
        r.need(size, f"the {SECTION_NAMES[sid]} section")
        body = _Reader(data, r.pos, r.pos + size)
        r.pos += size
        if sid != 0:
            if sid in seen:
                raise WasmError(f"a second {SECTION_NAMES[sid]} section", header_at)
            seen.add(sid)
            # The tag (13) and datacount (12) sections sit between others; check only the classic order.
            order = {12: 9.5, 13: 5.5}.get(sid, sid)
            if order < last_order:
                raise WasmError(f"the {SECTION_NAMES[sid]} section is out of order", header_at)
            last_order = order  # type: ignore[assignment]
        name = ""
        if sid == 0:
            name = body.name("a custom section name")
            if name == DYLINK_SECTION and dylink is None:
                dylink = _dylink0(body)
            elif name == LEGACY_DYLINK_SECTION and dylink is None:
                dylink = _legacy_dylink(body)
            elif name == "target_features":
                # Only the linker reads it; engines and Emscripten's loader ignore its contents, so a broken
                # one does not make the module malformed (its features are then unknown).
                try:
                    features = _target_features(body)
                    if body.remaining:
                        raise WasmError(f"target_features has {body.remaining} bytes left over", body.pos)
                except WasmError:
                    features = ()
        elif sid == 2:
            imports = [_import(body, i) for i in range(body.count("imports", 4))]
        elif sid == 5:
            memories = [_limits(body, f"memory {i}", allow_64=True) for i in range(body.count("memories", 2))]
        elif sid == 7:
            exports = [_export(body, i) for i in range(body.count("exports", 3))]
        elif sid == 6:
            extended_const |= _globals(body)
        elif sid == 9:
            extended_const |= _elements(body)
        elif sid == 11:
            extended_const |= _data(body)
        elif sid == 8:
            start = body.uleb(32, "the start function")
        elif sid == 10:
            code = (body.pos, body.end)
        elif sid == 13:
            tag_count = body.count("tags", 2)
            for i in range(tag_count):
                body.byte(f"the attribute of tag {i}")
                body.uleb(32, f"the type of tag {i}")
        if sid in (2, 5, 6, 7, 8, 9, 11, 13) and body.remaining:
            raise WasmError(f"the {SECTION_NAMES[sid]} section has {body.remaining} bytes left over", body.pos)
        sections.append(Section(sid, header_at, size, name))
    return Module(
        version,
        tuple(sections),
        tuple(imports),
        tuple(exports),
        tuple(memories),
        tag_count,
        dylink,
        features,
        frozenset(extended_const),
        start,
        code,
    )


# -- calls a function always makes -------------------------------------------------------------
#
# Which imported functions a function calls on every run, before anything can branch: enough to
# tell that a module's initialisation (its start function, constructors, PyInit) calls a function
# the runtime cannot resolve, without guessing which branches run. A function's *prefix* is its
# code up to the first instruction that may skip what follows (a branch, an if, a return, a throw,
# a try); a direct call in the prefix is always made, unless an earlier call never returns (then
# the function fails or hangs anyway), and so are the calls in the callee's prefix. A body counts
# only if this decoder reads all of it, exactly to its last byte, so an instruction it does not
# know (or misreads) makes it miss calls, never invent one.

# Opcodes after which the rest of the body may not run: unreachable, if, else, try, catch, throw,
# rethrow, throw_ref, br, br_if, br_table, return, return_call(_indirect), return_call_ref,
# delegate, catch_all, try_table, br_on_null, br_on_non_null.
_PREFIX_ENDS = frozenset(
    {
        0x00,
        0x04,
        0x05,
        0x06,
        0x07,
        0x08,
        0x09,
        0x0A,
        0x0C,
        0x0D,
        0x0E,
        0x0F,
        0x12,
        0x13,
        0x15,
        0x18,
        0x19,
        0x1F,
        0xD5,
        0xD6,
    }
)
_NO_IMMEDIATE = frozenset({0x00, 0x01, 0x05, 0x0A, 0x0F, 0x19, 0x1A, 0x1B, 0xD1, 0xD3, 0xD4, *range(0x45, 0xC5)})
# One index: catch, throw, rethrow, br, br_if, call, return_call, call_ref, return_call_ref,
# local/global/table get/set, memory.size/grow, ref.func, br_on_null, br_on_non_null.
_ONE_INDEX = frozenset(
    {
        0x07,
        0x08,
        0x09,
        0x0C,
        0x0D,
        0x10,
        0x12,
        0x14,
        0x15,
        0x20,
        0x21,
        0x22,
        0x23,
        0x24,
        0x25,
        0x26,
        0x3F,
        0x40,
        0xD2,
        0xD5,
        0xD6,
    }
)
_BLOCKS = frozenset({0x02, 0x03, 0x04, 0x06})  # block, loop, if, try: a block type, then a body to its end
# 0xFC prefix: how many index immediates each sub-opcode has (saturating truncations, bulk memory, tables).
_FC_INDICES = {**dict.fromkeys(range(8), 0), 8: 2, 9: 1, 10: 2, 11: 1, 12: 2, 13: 1, 14: 2, 15: 1, 16: 1, 17: 1}


def _skip_leb(r: _Reader, max_bytes: int, what: str) -> None:
    start = r.pos
    for _ in range(max_bytes):
        if not r.byte(what) & 0x80:
            return
    raise WasmError(f"{what}: LEB128 number longer than {max_bytes} bytes", start)


def _memarg(r: _Reader, what: str) -> None:
    if r.uleb(32, f"the alignment of {what}") & 0x40:  # multi-memory: a memory index follows
        r.uleb(32, f"the memory of {what}")
    r.uleb(64, f"the offset of {what}")


def _block_type(r: _Reader) -> None:
    b = r.data[r.pos] if r.pos < r.end else None
    if b == 0x40:
        r.pos += 1
    elif b is not None and (b in VALTYPES or b in SHORT_REFTYPES or b in (0x63, 0x64)):
        _value_type(r, "a block type")
    elif r.sleb33("a block type") < 0:
        raise WasmError("a block type: not a type index", r.pos)


def _prefix_calls(r: _Reader) -> list[int]:
    """Read a whole function body at ``r``; the functions its prefix calls directly, in order.
    Raises WasmError where it cannot read the body to its end."""
    for _ in range(r.count("local declarations", 2)):
        r.uleb(32, "a local count")
        _value_type(r, "a local type")
    calls: list[int] = []
    prefix = True
    depth = 0  # open blocks; the body itself is the outermost
    while True:
        at = r.pos
        op = r.byte("an instruction")
        if op in _PREFIX_ENDS:
            prefix = False
        if op == 0x0B or op == 0x18:  # end; delegate ends a try too
            if op == 0x18:
                r.uleb(32, "a label")
            if not depth:
                if op == 0x18 or r.remaining:
                    raise WasmError("the function body ends before its last byte", at)
                return calls
            depth -= 1
        elif op in _BLOCKS:
            _block_type(r)
            depth += 1
        elif op == 0x1F:  # try_table: a block type, then catch clauses (kind, tag for kinds 0 and 1, label)
            _block_type(r)
            for _ in range(r.count("catch clauses")):
                kind = r.byte("a catch kind")
                if kind > 3:
                    raise WasmError(f"unknown catch kind {kind}", r.pos - 1)
                if kind < 2:
                    r.uleb(32, "a tag")
                r.uleb(32, "a label")
            depth += 1
        elif op in _NO_IMMEDIATE:
            pass
        elif op in _ONE_INDEX:
            index = r.uleb(32, "an index")
            if op == 0x10 and prefix:
                calls.append(index)
        elif op in (0x11, 0x13):  # call_indirect, return_call_indirect: a type and a table
            r.uleb(32, "a type index")
            r.uleb(32, "a table index")
        elif op == 0x0E:  # br_table
            for _ in range(r.count("branch labels") + 1):
                r.uleb(32, "a label")
        elif op == 0x1C:  # select with types
            for _ in range(r.count("select types")):
                _value_type(r, "a select type")
        elif 0x28 <= op <= 0x3E:
            _memarg(r, "a load or store")
        elif op == 0x41:
            _skip_leb(r, 5, "an i32.const")
        elif op == 0x42:
            _skip_leb(r, 10, "an i64.const")
        elif op in (0x43, 0x44):
            r.skip(4 if op == 0x43 else 8, "a float constant")
        elif op == 0xD0:
            _heap_type(r, "a ref.null")
        elif op == 0xFC and (sub := r.uleb(32, "a 0xFC opcode")) in _FC_INDICES:
            for _ in range(_FC_INDICES[sub]):
                r.uleb(32, "an index")
        elif op == 0xFD and (sub := r.uleb(32, "a SIMD opcode")) <= 0x113:
            if sub <= 11 or sub in (92, 93):  # loads and stores; v128.load32_zero, v128.load64_zero
                _memarg(r, "a SIMD load or store")
            elif sub in (12, 13):  # v128.const, i8x16.shuffle
                r.skip(16, "a SIMD immediate")
            elif 21 <= sub <= 34:  # extract_lane, replace_lane
                r.byte("a lane index")
            elif 84 <= sub <= 91:  # load_lane, store_lane
                _memarg(r, "a SIMD lane load or store")
                r.byte("a lane index")
        elif op == 0xFE and (sub := r.uleb(32, "an atomic opcode")) in _ATOMIC_OPS:
            if sub == 0x03:  # atomic.fence
                r.byte("atomic.fence")
            else:
                _memarg(r, "an atomic access")
        else:
            raise WasmError(f"instruction {op:#x} is not known to this reader", at)


_ATOMIC_OPS = frozenset({0x00, 0x01, 0x02, 0x03, *range(0x10, 0x4F)})


def function_bodies(data: bytes, module: Module) -> list[tuple[int, int]]:
    """Where each defined function's body begins and ends in ``data`` (the module's bytes), in order."""
    if module.code is None:
        return []
    r = _Reader(data, *module.code)
    out = []
    for _ in range(r.count("function bodies")):
        size = r.uleb(32, "a function body size")
        r.need(size, "a function body")
        out.append((r.pos, r.pos + size))
        r.pos += size
    return out


def always_called(data: bytes, module: Module, function: int, limit: int = 1000) -> tuple[Import, ...]:
    """The imported functions that calling ``function`` always calls (see above), following direct calls
    into the module's own functions (at most ``limit`` of them), in the order found."""
    funcs = module.imports_of("func")
    try:
        bodies = function_bodies(data, module)
    except WasmError:
        return ()
    found: dict[int, Import] = {}
    todo, seen = [function], {function}
    while todo and len(seen) <= limit:
        index = todo.pop(0)
        if index < len(funcs):
            found.setdefault(index, funcs[index])
            continue
        if index - len(funcs) >= len(bodies):
            continue
        try:
            calls = _prefix_calls(_Reader(data, *bodies[index - len(funcs)]))
        except WasmError:
            continue
        for callee in calls:
            if callee not in seen:
                seen.add(callee)
                todo.append(callee)
    return tuple(found.values())


def read_module(path: Path) -> Module:
    """Read the WebAssembly file at ``path``; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WasmError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return parse_module(data)
    except WasmError as exc:
        raise WasmError(f"{path.name}: {exc.problem}", exc.offset) from None
