"""A tiny WebAssembly encoder for the tests: hand-made sections, and rewrites of real modules
into forms wasm-ld-19 does not emit (dylink.0 not first, the old "dylink" section)."""

from __future__ import annotations

from wasmwheel.audit.wasm import Section, parse_module

HEADER = b"\x00asm\x01\x00\x00\x00"


def uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def name(s: str) -> bytes:
    raw = s.encode()
    return uleb(len(raw)) + raw


def vec(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + uleb(len(payload)) + payload


def custom(cname: str, payload: bytes) -> bytes:
    return section(0, name(cname) + payload)


def module(*sections: bytes) -> bytes:
    return HEADER + b"".join(sections)


def subsection(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + uleb(len(payload)) + payload


def dylink0(mem=(0, 0, 0, 0), needed=(), rpaths=()) -> bytes:
    body = subsection(1, b"".join(uleb(x) for x in mem))
    if needed:
        body += subsection(2, vec([name(n) for n in needed]))
    if rpaths:
        body += subsection(5, vec([name(p) for p in rpaths]))
    return custom("dylink.0", body)


def raw_sections(data: bytes) -> list[tuple[Section, bytes]]:
    """Each section of a module with its encoded bytes (id, size and contents)."""
    out = []
    for sec in parse_module(data).sections:
        length = 1 + len(uleb(sec.size)) + sec.size
        out.append((sec, data[sec.offset : sec.offset + length]))
    assert HEADER + b"".join(raw for _, raw in out) == data, "non-minimal LEB128 section sizes"
    return out


def swap_first_sections(data: bytes) -> bytes:
    """The module with its first two sections swapped (dylink.0 second)."""
    parts = [raw for _, raw in raw_sections(data)]
    return HEADER + parts[1] + parts[0] + b"".join(parts[2:])


def to_legacy_dylink(data: bytes) -> bytes:
    """The module with its dylink.0 section re-encoded in the old "dylink" format."""
    d = parse_module(data).dylink
    assert d is not None and not d.needed
    legacy = custom("dylink", b"".join(uleb(x) for x in (d.mem_size, d.mem_align, d.table_size, d.table_align, 0)))
    parts = [raw for _, raw in raw_sections(data)]
    return HEADER + legacy + b"".join(parts[1:])


def with_dylink(data: bytes, needed: tuple[str, ...] | None = None, rpaths: tuple[str, ...] | None = None) -> bytes:
    """The module with its dylink.0 section re-encoded with other needed libraries or runtime paths
    (wasm-ld-19 has no -rpath; Emscripten's linker writes them)."""
    d = parse_module(data).dylink
    assert d is not None and not d.legacy
    needed = d.needed if needed is None else needed
    rpaths = d.runtime_paths if rpaths is None else rpaths
    body = subsection(1, b"".join(uleb(x) for x in (d.mem_size, d.mem_align, d.table_size, d.table_align)))
    if needed:
        body += subsection(2, vec([name(n) for n in needed]))
    if d.export_flags:
        body += subsection(3, vec([name(n) + uleb(f) for n, f in d.export_flags]))
    if d.import_flags:
        body += subsection(4, vec([name(m) + name(n) + uleb(f) for m, n, f in d.import_flags]))
    if rpaths:
        body += subsection(5, vec([name(p) for p in rpaths]))
    parts = [raw for _, raw in raw_sections(data)]
    return HEADER + custom("dylink.0", body) + b"".join(parts[1:])
