"""The wasm reader on real side modules (clang-19 + wasm-ld-19, and the .so files of real PyPI
wheels), on hand-encoded sections for what wasm-ld-19 cannot emit, and fuzzed with hypothesis:
random, truncated and mutated bytes give WasmError and nothing else. The code reader behind
always_called() reads every function of real modules to its last byte, and finds on
hand-encoded functions exactly the calls made on every run."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wasmbuild
from wasmenc import custom, dylink0, module, name, section, subsection, swap_first_sections, to_legacy_dylink, uleb, vec
from wasmwheel.audit.wasm import (
    WasmError,
    _prefix_calls,
    _Reader,
    always_called,
    function_bodies,
    parse_module,
    read_module,
)
from wasmwheel.model.errors import WasmwheelError

# -- real modules -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hello(tmp_path_factory, wasm_tools):
    return wasmbuild.build_module(tmp_path_factory.mktemp("w") / wasmbuild.so_name("hello_pyo3", 14), 14)


def test_clang_side_module(hello):
    m = read_module(hello)
    assert m.dylink_first and m.dylink is not None and not m.dylink.legacy
    assert m.dylink.mem_size > 0 and m.dylink.needed == ()
    imports = {i.qualname: i for i in m.imports}
    assert imports["env.memory"].kind == "memory" and not imports["env.memory"].limits.shared
    assert imports["env.__indirect_function_table"].value_type == "funcref"
    assert imports["env.__stack_pointer"].kind == "global" and imports["env.__stack_pointer"].mutable
    assert imports["env.__memory_base"].value_type == "i32" and not imports["env.__memory_base"].mutable
    assert imports["env.PyModule_Create2"].kind == "func"
    assert "PyInit_hello_pyo3" in m.export_names("func")
    assert [s.label for s in m.sections][:3] == ["custom:dylink.0", "type", "import"]
    assert ("+", "mutable-globals") in m.target_features and not m.uses_shared_memory


def test_shared_memory_and_no_dylink(tmp_path, wasm_tools):
    shared = read_module(
        wasmbuild.build_module(
            tmp_path / "s.so",
            14,
            cflags=("-pthread", "-matomics", "-mbulk-memory"),
            ldflags=("--shared-memory", "--max-memory=2147483648"),
        )
    )
    memory = shared.imports_of("memory")[0]
    assert memory.limits.shared and memory.limits.maximum == 32768 and shared.uses_shared_memory
    assert shared.has_feature("atomics")
    plain = read_module(
        wasmbuild.build_module(
            tmp_path / "p.so",
            14,
            shared=False,
            ldflags=("--no-entry", "--export-dynamic", "--import-memory", "--allow-undefined"),
        )
    )
    assert plain.dylink is None and not plain.dylink_first and plain.first_section.kind == "type"


def test_exception_handling_imports(tmp_path, wasm_tools):
    js = read_module(
        wasmbuild.build_module(
            tmp_path / "js.so",
            14,
            source="eh_module.cpp",
            cflags=("-fexceptions", "-mllvm", "-enable-emscripten-cxx-exceptions"),
        )
    )
    assert any(i.name.startswith("invoke_") for i in js.imports_of("func"))
    assert not js.imports_of("tag")
    wasm = read_module(
        wasmbuild.build_module(tmp_path / "w.so", 14, source="eh_module.cpp", cflags=("-fwasm-exceptions",))
    )
    tag = wasm.imports_of("tag")[0]
    assert tag.qualname == "env.__cpp_exception" and tag.type_index is not None
    assert wasm.has_feature("exception-handling")
    assert not any(i.name.startswith("invoke_") for i in wasm.imports_of("func"))


def test_needed_library(tmp_path, wasm_tools):
    lib = wasmbuild.build_module(tmp_path / "libdep.so", 14, source="dep.c")
    mod = wasmbuild.build_module(tmp_path / "m.so", 14, source="use_dep.c", link_with=(lib,))
    assert read_module(mod).dylink.needed == ("libdep.so",)
    assert "dep_value" in read_module(lib).export_names("func")


def test_real_pypi_module(real_wheels):
    import zipfile

    with zipfile.ZipFile(real_wheels["jiter"]) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith(".so")))
    m = parse_module(data)
    assert m.dylink_first and "PyInit_jiter" in m.export_names("func")
    assert [i.qualname for i in m.imports_of("tag")] == ["env.__cpp_exception"]


def test_code_reader_reads_every_function_of_real_modules(real_wheels):
    """Each function body of real Rust modules (jiter, pydantic-core, rustworkx: SIMD, bulk memory, wasm EH)
    reads to exactly its last byte: always_called() does not skip real functions for want of an opcode."""
    import zipfile

    total = 0
    for key in ("jiter", "pydantic_core", "rustworkx"):
        with zipfile.ZipFile(real_wheels[key]) as zf:
            data = zf.read(next(n for n in zf.namelist() if n.endswith(".so")))
        m = parse_module(data)
        bodies = function_bodies(data, m)
        for start, end in bodies:
            _prefix_calls(_Reader(data, start, end))  # raises WasmError where it cannot
        total += len(bodies)
    assert total > 5000


# -- hand-encoded: what wasm-ld-19 does not emit --------------------------------------------------


def _code_module(bodies: list[bytes], imports=("a", "b", "c", "d")) -> bytes:
    """Functions of type [] -> []: the imports env.<name>, then one per body (instructions, without the
    locals vector), the first exported as "init"."""
    types = section(1, vec([b"\x60\x00\x00"]))
    imps = section(2, vec([name("env") + name(i) + b"\x00" + uleb(0) for i in imports]))
    funcs = section(3, vec([uleb(0)] * len(bodies)))
    exports = section(7, vec([name("init") + b"\x00" + uleb(len(imports))]))
    code = section(10, vec([uleb(len(b) + 1) + b"\x00" + b for b in bodies]))
    return module(types, imps, funcs, exports, code)


def _call(f: int) -> bytes:
    return b"\x10" + uleb(f)


END, IF, LOOP, BLOCK, BR_IF, I32_ONE = b"\x0b", b"\x04\x40", b"\x03\x40", b"\x02\x40", b"\x0d\x00", b"\x41\x01"


@pytest.mark.parametrize(
    "init, others, called",
    [
        # Calls before the first branch are made on every run; what an if or a branch may skip is not counted.
        (_call(0) + I32_ONE + IF + _call(1) + END + _call(2) + END, [], ["a"]),
        (BLOCK + _call(0) + I32_ONE + BR_IF + _call(1) + END + _call(2) + END, [], ["a"]),
        (LOOP + _call(3) + END + _call(0) + END, [], ["d", "a"]),  # a loop's body runs at least once
        # Callees' own prefixes count, through cycles.
        (_call(5) + _call(0) + END, [_call(3) + _call(4) + END], ["d", "a"]),
        (_call(5) + END, [_call(1) + b"\x0f" + _call(2) + END], ["b"]),  # return ends the callee's prefix
        # A body this reader cannot read to its last byte counts for nothing: an unknown opcode, bytes after the
        # end, an end too early.
        (_call(5) + _call(0) + END, [_call(1) + b"\xfb\x00\x00" + END], ["a"]),
        (_call(5) + END, [_call(1) + END + b"\x01"], []),
        (_call(5) + END, [_call(1) + BLOCK + END], []),
        (_call(9) + _call(0) + END, [], ["a"]),  # a function that does not exist
    ],
)
def test_always_called(init, others, called):
    data = _code_module([init, *others])
    m = parse_module(data)
    assert {i.name for i in always_called(data, m, m.function_index("init"))} == set(called)
    assert [i.name for i in always_called(data, m, 1)] == ["b"]  # an import is its own call


# One instruction of each shape of immediates; the reader must step over it exactly to see the call after it.
# Immediates are 0x16 (an opcode nobody knows) where the encoding allows, so that misreading one shows.
INSTRUCTIONS = {
    "memarg": b"\x28\x02\x08",
    "memarg-multi-memory": b"\x36\x42\x16\x16",
    "i64.const-min": b"\x42" + b"\x80" * 9 + b"\x7f",
    "f32.const": b"\x43" + bytes(4),
    "f64.const": b"\x44" + bytes(8),
    "select-t": b"\x1c\x01\x7f",
    "ref.null-extern": b"\xd0\x6f",
    "ref.null-type": b"\xd0\x05",
    "ref.func": b"\xd2\x03",
    "call_indirect": b"\x11\x00\x00",
    "call_ref": b"\x14\x00",
    "block-result": b"\x02\x7f\x41\x00\x0b\x1a",
    "block-type-index": b"\x02\x00\x0b",
    "block-ref-result": b"\x02\x63\x70\xd0\x70\x0b\x1a",
    "memory.init": b"\xfc\x08\x01\x00",
    "memory.copy": b"\xfc\x0a\x00\x00",
    "table.size": b"\xfc\x10\x00",
    "i32.trunc_sat": b"\xfc\x00",
    "v128.const": b"\xfd\x0c" + bytes(16),
    "i8x16.shuffle": b"\xfd\x0d" + bytes(16),
    "extract_lane": b"\xfd\x15\x16",
    "f64x2.replace_lane": b"\xfd\x22\x16",
    "load_lane": b"\xfd\x54\x00\x00\x16",
    "load32_zero": b"\xfd\x5c\x02\x00",
    "simd-no-immediate": b"\xfd\xff\x01",
    "relaxed-simd": b"\xfd\x80\x02",
    "atomic.fence": b"\xfe\x03\x00",
    "atomic.load": b"\xfe\x10\x02\x00",
    "memory.atomic.notify": b"\xfe\x00\x02\x00",
}
# After the prefix, structures the reader must still read to the end of the body.
TAILS = {
    "br_table": b"\x0e\x02\x16\x16\x16",
    "if-else": IF + _call(1) + b"\x05" + _call(2) + END,
    "try-catch": b"\x06\x40" + _call(1) + b"\x07\x00" + b"\x19" + END,
    "try-delegate": b"\x06\x40" + _call(1) + b"\x18\x00",
    "try_table": b"\x1f\x40\x04\x00\x16\x16\x01\x16\x16\x02\x16\x03\x16" + _call(1) + END,
    "throw_ref": b"\x0a",
    "return_call": b"\x12\x01",
    "return_call_indirect": b"\x13\x00\x00",
    "br_on_null": b"\xd5\x00",
}


@pytest.mark.parametrize("instruction", INSTRUCTIONS.values(), ids=INSTRUCTIONS.keys())
def test_always_called_steps_over_each_instruction(instruction):
    data = _code_module([instruction + _call(0) + END])
    m = parse_module(data)
    assert [i.name for i in always_called(data, m, m.function_index("init"))] == ["a"]


@pytest.mark.parametrize("tail", TAILS.values(), ids=TAILS.keys())
def test_always_called_reads_the_rest_of_the_body(tail):
    data = _code_module([_call(0) + tail + _call(3) + END])
    m = parse_module(data)
    assert [i.name for i in always_called(data, m, m.function_index("init"))] == ["a"]


def test_always_called_in_a_real_init(tmp_path, wasm_tools):
    """PyInit of linkage.c with CALL_IN_INIT calls made_up_function before its first branch (and
    PyModule_Create2 after it); without, it calls PyModule_Create2 and nothing else."""
    for defines, expected in (
        ({"UNDEF_FUNC": "1", "CALL_IN_INIT": "1"}, ["made_up_function"]),
        ({"UNDEF_FUNC": "1"}, ["PyModule_Create2"]),
    ):
        data = wasmbuild.build_module(tmp_path / "m.so", 14, source="linkage.c", defines=defines).read_bytes()
        m = parse_module(data)
        assert [i.name for i in always_called(data, m, m.function_index("PyInit_linkage"))] == expected


def test_dylink_subsections_and_runtime_paths():
    export_info = subsection(3, vec([name("f") + uleb(1)]))
    import_info = subsection(4, vec([name("env") + name("g") + uleb(2)]))
    unknown = subsection(9, b"\x01\x02\x03")
    body = (
        subsection(1, uleb(70000) + uleb(4) + uleb(3) + uleb(0))
        + subsection(2, vec([name("liba.so"), name("libb.so")]))
        + export_info
        + import_info
        + unknown
        + subsection(5, vec([name("$ORIGIN/../lib")]))
    )
    m = parse_module(module(custom("dylink.0", body)))
    d = m.dylink
    assert (d.mem_size, d.mem_align, d.table_size, d.table_align) == (70000, 4, 3, 0)
    assert d.needed == ("liba.so", "libb.so") and d.runtime_paths == ("$ORIGIN/../lib",)
    assert d.export_flags == (("f", 1),) and d.import_flags == (("env", "g", 2),)


def test_legacy_dylink_section():
    body = uleb(16) + uleb(2) + uleb(1) + uleb(0) + vec([name("libz.so")])
    m = parse_module(module(custom("dylink", body)))
    assert m.dylink.legacy and m.dylink.needed == ("libz.so",) and m.dylink_first


def test_dylink_not_first():
    m = parse_module(module(section(1, vec([])), dylink0()))
    assert m.dylink is not None and not m.dylink_first


def test_rewritten_real_module(hello):
    data = hello.read_bytes()
    moved = parse_module(swap_first_sections(data))
    assert moved.dylink == parse_module(data).dylink and not moved.dylink_first
    legacy = parse_module(to_legacy_dylink(data))
    assert legacy.dylink.legacy and legacy.dylink_first and legacy.dylink.mem_size == parse_module(data).dylink.mem_size


def test_import_kinds_and_limits():
    imports = vec(
        [
            name("env") + name("mem") + b"\x02" + b"\x03" + uleb(1) + uleb(10),  # shared, with max
            name("env") + name("mem64") + b"\x02" + b"\x05" + uleb(1 << 40) + uleb(1 << 41),  # 64-bit
            name("env") + name("pages") + b"\x02" + b"\x08" + uleb(1) + uleb(0),  # custom page size 1 byte
            name("env") + name("t") + b"\x01" + b"\x6f" + b"\x00" + uleb(2),  # externref table
            name("env") + name("tr") + b"\x01" + b"\x64\x70" + b"\x00" + uleb(1),  # (ref func) table
            name("env") + name("g") + b"\x03" + b"\x7e" + b"\x01",  # mutable i64
            name("env") + name("gr") + b"\x03" + b"\x63\x05" + b"\x00",  # (ref null 5)
            name("env") + name("tag") + b"\x04" + b"\x00" + uleb(3),
            name("env") + name("f") + b"\x00" + uleb(7),
        ]
    )
    memories = vec([b"\x00" + uleb(2)])
    exports = vec([name("f") + b"\x00" + uleb(0), name("m") + b"\x02" + uleb(0), name("x") + b"\x04" + uleb(0)])
    tags = vec([b"\x00" + uleb(3)])
    m = parse_module(module(section(2, imports), section(5, memories), section(13, tags), section(7, exports)))
    by = {i.name: i for i in m.imports}
    assert by["mem"].limits.shared and by["mem"].limits.maximum == 10
    assert by["mem64"].limits.memory64 and by["mem64"].limits.minimum == 1 << 40
    assert by["pages"].limits.page_size_log2 == 0
    assert by["t"].value_type == "externref" and by["tr"].value_type == "(ref func)"
    assert by["g"].value_type == "i64" and by["g"].mutable and by["gr"].value_type == "(ref null type 5)"
    assert by["tag"].kind == "tag" and by["tag"].type_index == 3 and by["f"].type_index == 7
    assert m.memories[0].minimum == 2 and m.tag_count == 1 and m.uses_shared_memory
    assert {(e.name, e.kind) for e in m.exports} == {("f", "func"), ("m", "memory"), ("x", "tag")}


def test_extended_const_in_constant_expressions(tmp_path, wasm_tools):
    """clang's -mextended-const puts i32.add into global initializers (what Node 20 refuses);
    hand-made element and data segments of every form are read too."""
    plain = read_module(wasmbuild.build_module(tmp_path / "a.so", 14))
    ext = read_module(wasmbuild.build_module(tmp_path / "b.so", 14, cflags=("-mextended-const",)))
    assert plain.extended_const_ops == frozenset() and ext.extended_const_ops == {"i32.add"}
    add = b"\x23\x00\x41\x08\x6a\x0b"  # global.get 0; i32.const 8; i32.add; end
    mvp = b"\x41\x08\x0b"
    data = vec([uleb(0) + add + name("ab"), uleb(1) + name("c"), uleb(2) + uleb(0) + mvp + name("")])
    elements = vec(
        [
            uleb(0) + mvp + vec([uleb(1)]),
            uleb(1) + b"\x00" + vec([uleb(2)]),
            uleb(2) + uleb(0) + mvp + b"\x00" + vec([uleb(3)]),
            uleb(4) + mvp + vec([b"\xd2\x01\x0b"]),
            uleb(5) + b"\x70" + vec([b"\xd0\x70\x0b"]),
            uleb(6) + uleb(0) + b"\x42\x7f\x7c\x0b" + b"\x70" + vec([]),
            uleb(7) + b"\x70" + vec([]),
        ]
    )
    globals_ = vec([b"\x7f\x00" + mvp, b"\x7b\x00\xfd\x0c" + bytes(16) + b"\x0b", b"\x7c\x01\x44" + bytes(8) + b"\x0b"])
    m = parse_module(module(section(6, globals_), section(9, elements), section(11, data)))
    assert m.extended_const_ops == {"i32.add", "i64.add"}
    assert parse_module(module(section(6, globals_))).extended_const_ops == frozenset()


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"", "only 0 bytes"),
        (b"\x7fELF\x01\x01\x01\x00" + b"\x00" * 40, "not a WebAssembly module"),
        (b"\x00asm\x0d\x00\x01\x00", "component"),
        (b"\x00asm\x02\x00\x00\x00", "version"),
        (module(section(1, b"")[:1] + b"\x05"), "truncated"),
        (module(b"\x0e\x00"), "unknown section id 14"),
        (module(section(1, b""), section(1, b"")), "a second type section"),
        (module(section(7, vec([])), section(2, vec([]))), "out of order"),
        (module(section(2, uleb(1000) + b"\x00")), "cannot fit"),
        (module(section(2, vec([name("env") + name("x") + b"\x09\x00"]))), "unknown import kind"),
        (module(section(2, vec([name("env") + name("m") + b"\x02\x10\x00"]))), "unknown limits flags"),
        (module(section(2, vec([b"\x02\xff\xfe" + name("x") + b"\x00\x00"]))), "UTF-8"),
        (module(section(2, vec([name("env") + name("f") + b"\x00\xff\xff\xff\xff\x7f"]))), "32 bits"),
        (module(section(2, vec([name("env") + name("f") + b"\x00\x80\x80\x80\x80\x80\x00"]))), "longer than 5 bytes"),
        (module(section(7, vec([name("f") + b"\x00\x00"]) + b"\x00")), "left over"),
        (module(custom("dylink.0", subsection(2, uleb(5)))), "cannot fit"),
        (module(custom("dylink.0", b"\x01\x09\x00")), "truncated"),
        (module(custom("dylink.0", subsection(1, b"\x00\x00\x00\x00\x00"))), "left over"),
        (module(section(6, vec([b"\x7f\x00\x10\x00\x0b"]))), "not allowed in a constant expression"),
        (module(section(6, vec([b"\x7f\x00\xfd\x0d\x0b"]))), "is not constant"),
        (module(section(6, vec([b"\x7f\x00\x41\x00"]))), "truncated"),
        (module(section(11, vec([uleb(3) + b"\x00"]))), "unknown flags 3"),
        (module(section(11, vec([uleb(1) + uleb(100)]))), "truncated"),
        (module(section(9, vec([uleb(8) + b"\x00"]))), "unknown flags 8"),
    ],
)
def test_malformed_input_names_the_problem(data, problem):
    with pytest.raises(WasmError) as info:
        parse_module(data)
    assert problem in str(info.value)
    assert isinstance(info.value, WasmwheelError)


@pytest.mark.parametrize("body", [vec([b"?" + name("x")]), vec([b"+" + name("x")]) + b"\x00", uleb(9)])
def test_a_broken_target_features_section_is_ignored(body):
    """Engines and Emscripten's loader do not read target_features: its contents cannot break the module."""
    m = parse_module(module(custom("target_features", body), section(2, vec([]))))
    assert m.target_features == () and [s.label for s in m.sections] == ["custom:target_features", "import"]


def test_read_module_names_the_file(tmp_path):
    bad = tmp_path / "x.cpython-314-wasm32-emscripten.so"
    bad.write_bytes(b"\x00asm\x01\x00\x00\x00\x01\x05\x00")
    with pytest.raises(WasmError, match=r"^x\.cpython-314-wasm32-emscripten\.so: truncated"):
        read_module(bad)
    with pytest.raises(WasmError, match="cannot read"):
        read_module(tmp_path / "missing.so")


# -- fuzzing ------------------------------------------------------------------------------------


def _parse_or_wasm_error(data: bytes) -> None:
    try:
        m = parse_module(data)
    except WasmError:
        return  # any other exception fails the test
    for e in m.exports:
        if e.kind == "func":
            always_called(data, m, e.index)  # garbage code: no exception either


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, wasm_tools) -> list[bytes]:
    """Real modules (plain, JS EH, wasm EH, shared memory, needed library) and hand-made ones."""
    d = tmp_path_factory.mktemp("corpus")
    lib = wasmbuild.build_module(d / "libdep.so", 14, source="dep.c")
    paths = [
        wasmbuild.build_module(d / "a.so", 14),
        wasmbuild.build_module(
            d / "b.so",
            12,
            source="eh_module.cpp",
            cflags=("-fexceptions", "-mllvm", "-enable-emscripten-cxx-exceptions"),
        ),
        wasmbuild.build_module(d / "c.so", 13, source="eh_module.cpp", cflags=("-fwasm-exceptions",)),
        wasmbuild.build_module(
            d / "d.so",
            14,
            cflags=("-pthread", "-matomics", "-mbulk-memory"),
            ldflags=("--shared-memory", "--max-memory=2147483648"),
        ),
        wasmbuild.build_module(d / "e.so", 14, source="use_dep.c", link_with=(lib,)),
    ]
    extra = [
        module(
            dylink0((1, 2, 3, 4), ("liba.so",), ("$ORIGIN",)),
            section(2, vec([name("env") + name("mem") + b"\x02\x07" + uleb(1) + uleb(2)])),
        )
    ]
    return [p.read_bytes() for p in paths] + extra


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(data):
    _parse_or_wasm_error(data)


@FUZZ
@given(st.binary(max_size=256))
def test_fuzz_random_bytes_after_header(data):
    _parse_or_wasm_error(b"\x00asm\x01\x00\x00\x00" + data)


@FUZZ
@given(st.data())
def test_fuzz_truncated_real_modules(corpus, data):
    blob = data.draw(st.sampled_from(corpus))
    cut = data.draw(st.integers(0, len(blob)))
    _parse_or_wasm_error(blob[:cut])


@FUZZ
@given(st.data())
def test_fuzz_mutated_real_modules(corpus, data):
    blob = bytearray(data.draw(st.sampled_from(corpus)))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):  # also splice in a big LEB128 number somewhere
        at = data.draw(st.integers(8, len(blob)))
        blob[at:at] = struct.pack("<5B", 0xFF, 0xFF, 0xFF, 0xFF, 0x0F)
    _parse_or_wasm_error(bytes(blob))


def test_every_prefix_of_a_real_module(corpus):
    """Exhaustive truncation of the smallest real module: each prefix is an error, the whole reads."""
    blob = min(corpus[:5], key=len)
    parse_module(blob)
    for cut in range(len(blob)):
        prefix = blob[:cut]
        try:
            parse_module(prefix)
        except WasmError:
            continue
        # A prefix that ends exactly at a section boundary is a valid (smaller) module.
        assert cut >= 8
