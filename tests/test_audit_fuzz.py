"""Garbage with structure: the audit never lets an exception escape.

Random bytes rarely get past a module's header. These strategies build modules that
are well-formed where the reader looks first (header, section framing) and wrong in the
details: LEB128 numbers too long or too big, counts of four billion, sections and
subsections whose sizes run past the end, unknown kinds, constant expressions with
stray opcodes; and wheels that hold several such modules that need each other (cycles
included), at the paths the loader model treats specially (.data folders, .libs,
extensions for other Pythons). Each wheel is audited for every ABI, and once through
the command line.
"""

from __future__ import annotations

import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wasmenc
from test_audit import ABIS, REPO, make_wheel
from wasmenc import HEADER, custom, name, section, subsection, uleb
from wasmwheel.__main__ import main
from wasmwheel.audit.check import CHECKS, audit_wheels

FILES = [
    "m.cpython-314-wasm32-emscripten.so",
    "m.cpython-313-wasm32-emscripten.so",
    "m.abi3.so",
    "m.so",
    "libx.so",
    "libx.so.1",
    "pkg/liby.so",
    "pkg/sub/n.cpython-312-wasm32-emscripten.so",
    "m.libs/libz.so",
    "m-1.0.data/platlib/libq.so",
    "m-1.0.data/data/usr/lib/libx.so",
    "other.cpython-314-x86_64-linux-gnu.so",
]
NAMES = [
    "memory",
    "__indirect_function_table",
    "__stack_pointer",
    "__memory_base",
    "made_up",
    "PyInit_m",
    "PyLong_FromLong",
    "invoke_vi",
    "__cpp_exception",
    "__c_longjmp",
    "__wasm_lpad_context",
    "",
    "é",
]
MODULES = ["env", "GOT.mem", "GOT.func", "wasi_snapshot_preview1", "foo", ""]
RPATHS = [
    "$ORIGIN",
    "$ORIGIN/..",
    "$ORIGIN/../../../..",
    "/",
    "",
    "/lib/python3.14/site-packages/pkg",
    "/usr/lib",
    "relative/path",
    "$ORIGINx",
]


def mostly(good, *bad) -> st.SearchStrategy:
    """``good`` nine times out of ten, else one of ``bad``."""
    return st.integers(0, 9).flatmap(lambda k: good if k or not bad else st.one_of(*bad))


# A number: usually fine, sometimes over-long, too big for 32 bits or not terminated.
leb = mostly(
    st.integers(0, 300).map(uleb),
    st.integers(0, 2**40).map(uleb),
    st.just(b"\xff\xff\xff\xff\x0f"),  # 4 294 967 295: a count nothing can hold
    st.just(b"\x80\x80\x80\x80\x80\x00"),  # six bytes
    st.just(b"\x80\x80"),
)  # unterminated
text = mostly(st.sampled_from(NAMES + FILES + RPATHS), st.text(max_size=8)).map(name)
needed_name = st.sampled_from(
    [f.rsplit("/", 1)[-1] for f in FILES] + ["/lib/python3.14/site-packages/libx.so", "../libx.so", "missing.so", ""]
)


def vec_of(item) -> st.SearchStrategy[bytes]:
    """A vector: usually with the right count."""
    return st.tuples(st.lists(item, max_size=5), mostly(st.none(), leb)).map(
        lambda t: (uleb(len(t[0])) if t[1] is None else t[1]) + b"".join(t[0])
    )


limits = st.tuples(mostly(st.sampled_from([0, 1, 4, 5]), st.integers(0, 255)), leb, leb, leb).map(
    lambda t: bytes([t[0]]) + t[1] + (t[2] if t[0] & 1 else b"") + (t[3] if t[0] & 8 else b"")
)
reftype = mostly(st.sampled_from([b"\x70", b"\x6f", b"\x63\x70", b"\x64\x00"]), st.binary(min_size=1, max_size=2))
valtype = mostly(st.sampled_from([b"\x7f", b"\x7e", b"\x7b", b"\x70"]), st.binary(min_size=1, max_size=2))
import_desc = mostly(
    st.one_of(
        leb.map(lambda n: b"\x00" + n),
        st.tuples(reftype, limits).map(lambda t: b"\x01" + t[0] + t[1]),
        limits.map(lambda lim: b"\x02" + lim),
        st.tuples(valtype, st.sampled_from([b"\x00", b"\x01"])).map(lambda t: b"\x03" + t[0] + t[1]),
        leb.map(lambda n: b"\x04\x00" + n),
    ),
    st.binary(min_size=1, max_size=3),
)
import_entry = st.tuples(mostly(st.sampled_from(MODULES), st.text(max_size=4)).map(name), text, import_desc).map(
    b"".join
)
export_entry = st.tuples(text, mostly(st.integers(0, 4), st.integers(5, 255)), leb).map(
    lambda t: t[0] + bytes([t[1]]) + t[2]
)
const_op = mostly(
    st.sampled_from(
        [
            b"\x41\x05",
            b"\x42\x7f",
            b"\x23\x00",
            b"\x6a",
            b"\x7c",
            b"\xd2\x00",
            b"\xd0\x70",
            b"\x43" + bytes(4),
            b"\x44" + bytes(8),
            b"\xfd\x0c" + bytes(16),
        ]
    ),
    st.sampled_from([b"\xfd\x0d", b"\x10\x00", b"\x42" + b"\xff" * 11]),
    st.binary(min_size=1, max_size=2),
)
const_expr = st.lists(const_op, max_size=4).map(lambda ops: b"".join(ops) + b"\x0b")
global_entry = st.tuples(valtype, mostly(st.integers(0, 1), st.integers(2, 255)), const_expr).map(
    lambda t: t[0] + bytes([t[1]]) + t[2]
)
data_entry = st.tuples(mostly(st.integers(0, 2), st.integers(3, 9)), const_expr, st.binary(max_size=4)).map(
    lambda t: uleb(t[0]) + (uleb(0) if t[0] == 2 else b"") + (t[1] if t[0] != 1 else b"") + name_bytes(t[2])
)
elem_entry = st.tuples(mostly(st.integers(0, 7), st.integers(8, 20)), const_expr, leb).map(
    lambda t: (
        uleb(t[0])
        + (b"\x00" if t[0] & 2 and not t[0] & 1 else b"")
        + (t[1] if not t[0] & 1 else b"")
        + (b"\x70" if t[0] & 3 else b"")
        + b"\x01"
        + (t[1] if t[0] & 4 else t[2])
    )
)


ORDER = {0: 0, 2: 2, 5: 5, 13: 5.5, 6: 6, 7: 7, 9: 9, 11: 11}


def name_bytes(b: bytes) -> bytes:
    return uleb(len(b)) + b


def dylink_body(needed: list[str], rpaths: list[str], mem: tuple[int, ...], extra: bytes) -> bytes:
    body = subsection(1, b"".join(uleb(x) for x in mem))
    body += subsection(2, wasmenc.vec([name(n) for n in needed]))
    body += subsection(4, wasmenc.vec([name("env") + name(n) + uleb(1) for n in needed[:1]]))
    if rpaths:
        body += subsection(5, wasmenc.vec([name(p) for p in rpaths]))
    return body + extra


dylink = st.builds(
    dylink_body,
    st.lists(needed_name, max_size=3),
    st.lists(st.sampled_from(RPATHS), max_size=2),
    st.tuples(*[st.integers(0, 2**32 - 1)] * 4),
    mostly(
        st.just(b""),
        st.binary(max_size=6),
        st.tuples(st.integers(0, 9), leb, st.binary(max_size=4)).map(lambda t: bytes([t[0]]) + t[1] + t[2]),
    ),
).map(lambda b: custom("dylink.0", b))
some_section = mostly(
    st.one_of(
        st.builds(lambda v: section(2, v), vec_of(import_entry)),
        st.builds(lambda v: section(7, v), vec_of(export_entry)),
        st.builds(lambda v: section(6, v), vec_of(global_entry)),
        st.builds(lambda v: section(11, v), vec_of(data_entry)),
        st.builds(lambda v: section(9, v), vec_of(elem_entry)),
        st.builds(lambda v: section(5, v), vec_of(limits)),
        st.builds(lambda v: section(13, v), vec_of(st.binary(min_size=2, max_size=2))),
        st.builds(
            lambda f: custom("target_features", f),
            vec_of(st.tuples(st.sampled_from(b"+-=x"), text).map(lambda t: bytes([t[0]]) + t[1])),
        ),
    ),
    st.builds(lambda i, b: bytes([i]) + uleb(len(b)) + b, st.integers(0, 14), st.binary(max_size=8)),
    st.builds(lambda i, n, b: bytes([i]) + n + b, st.integers(0, 13), leb, st.binary(max_size=8)),  # size lies
)


good_import = st.tuples(
    st.sampled_from(MODULES),
    st.sampled_from(NAMES),
    st.sampled_from(
        [
            b"\x00\x00",
            b"\x03\x7f\x00",
            b"\x03\x7f\x01",
            b"\x02\x00\x01",
            b"\x02\x01\x01\x10",
            b"\x02\x05\x00\x80\x80\x04",
            b"\x01\x70\x00\x00",
            b"\x04\x00\x00",
        ]
    ),
).map(lambda t: name(t[0]) + name(t[1]) + t[2])
good_export = st.tuples(st.sampled_from(NAMES), st.sampled_from([b"\x00", b"\x03"])).map(
    lambda t: name(t[0]) + t[1] + b"\x00"
)


@st.composite
def plausible_modules(draw) -> bytes:
    """A side module that reads, with imports and exports from the names the checks know."""
    parts = [draw(dylink)]
    parts.append(section(2, wasmenc.vec(draw(st.lists(good_import, max_size=6)))))
    parts.append(section(7, wasmenc.vec(draw(st.lists(good_export, max_size=3)))))
    return HEADER + b"".join(parts)


@st.composite
def modules(draw) -> bytes:
    if draw(st.booleans()):
        return draw(plausible_modules())
    parts = [draw(dylink)] if draw(st.integers(0, 4)) else []
    # Sections in their order (the reader checks it), or not.
    sections = draw(st.lists(some_section, max_size=5))
    if draw(st.integers(0, 4)):  # one of each, in order (as the reader wants), or not
        sections = sorted({b[0] if b[0] else b: b for b in sections}.values(), key=lambda b: ORDER.get(b[0], 0))
    parts += sections
    blob = HEADER + b"".join(parts)
    if draw(st.integers(0, 9)) == 0:
        blob = blob[: draw(st.integers(0, len(blob)))]
    return blob


@st.composite
def wheels(draw) -> dict[str, bytes]:
    paths = draw(st.lists(st.sampled_from(FILES), min_size=1, max_size=4, unique=True))
    return {p: draw(modules()) for p in paths}


LINKING = {"WW107", "WW130", "WW131", "WW132", "WW133"}


@pytest.mark.slow  # a fuzzing run of hundreds of examples
def test_fuzz_structured_wheels_give_findings_not_tracebacks(tmp_path_factory):
    """Each generated wheel is audited for every ABI (next to a wheel installed with it) without an exception;
    and the generated wheels get as far as linking: missing libraries, symbols, memory."""
    seen: set[str] = set()
    linked = [0, 0]  # examples whose audit reached the linking checks, examples in all

    @settings(
        max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(wheels())
    def audit_them(files):
        folder = tmp_path_factory.mktemp("fuzz")
        wheel = make_wheel(folder, "m", files, "cp314-cp314-pyemscripten_2026_0_wasm32")
        other = make_wheel(folder, "n", dict(list(files.items())[:1]), "py3-none-any")
        for abi in ABIS.values():
            for report in audit_wheels([other, wheel], abi):  # must not raise
                assert all(f.code in CHECKS for f in report.findings)
                seen.update(report.codes)
                linked[0] += bool(LINKING & set(report.codes))
                linked[1] += 1

    audit_them()
    # Which linking codes a run reaches depends on the examples Hypothesis gets to (fewer on a loaded
    # machine), so ask for most of them and for a real share of examples reaching them, not for each one.
    assert len(LINKING & seen) >= 4 and {"WW101", "WW102"} <= seen, sorted(seen)
    assert linked[0] >= linked[1] // 20, linked


@pytest.mark.slow  # starts wasmwheel in a subprocess per example
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(modules(), min_size=len(FILES), max_size=len(FILES)))
def test_cli_on_structured_garbage(tmp_path_factory, capsys, blobs):
    wheel = make_wheel(
        tmp_path_factory.mktemp("cli"),
        "m",
        dict(zip(FILES, blobs, strict=True)),
        "cp314-cp314-pyemscripten_2026_0_wasm32",
    )
    with zipfile.ZipFile(wheel) as zf:
        assert len([n for n in zf.namelist() if ".so" in n]) == len(FILES)
    for abi in ABIS:
        assert main(["--root", str(REPO), "audit", str(wheel), "--abi", abi, "--json"]) in (0, 1)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err


@pytest.mark.parametrize("needed", [("liba.so",), ("libb.so",)])
def test_libraries_that_need_each_other(tmp_path, needed):
    """A cycle of needed libraries (a needs b needs a) links without looping."""
    a = wasmenc.module(wasmenc.dylink0(needed=("libb.so",)))
    b = wasmenc.module(wasmenc.dylink0(needed=("liba.so",)))
    wheel = make_wheel(
        tmp_path,
        "m",
        {"liba.so": a, "libb.so": b, "libc.so": wasmenc.module(wasmenc.dylink0(needed=needed))},
        "py3-none-any",
    )
    for abi in ABIS.values():
        report = audit_wheels([wheel], abi)[0]
        assert report.ok, report.findings
