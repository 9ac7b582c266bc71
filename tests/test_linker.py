"""The lean linker on its own: rustc's emcc link lines in, wasm-ld arguments out.

The link lines in tests/data/rustc-link-lines.json are what each ABI's toolchain really passed
(nightly-2024-12-01, nightly-2025-02-01, 1.93.0, 1.97.1 linking hello-pyo3 through maturin),
with their folders replaced by placeholders. That the resulting modules load in Pyodide is
tests/test_lean.py's job (real builds).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wasmwheel.toolchain.linker import LinkError, expand_response_files, main, plan, read_response_file

LINES = json.loads((Path(__file__).parent / "data" / "rustc-link-lines.json").read_text())
EH = {"2024_0": "js", "2025_0": "wasm", "2026_0": "wasm", "2026_5": "wasm"}


@pytest.mark.parametrize("abi", sorted(LINES))
def test_each_toolchains_real_link_line_becomes_a_side_module_link(abi):
    argv = LINES[abi]["argv"]
    p = plan(argv, EH[abi])
    lld = list(p.lld_args)
    assert lld[:5] == [
        "--shared",
        "--experimental-pic",
        "--unresolved-symbols=import-dynamic",
        "--no-export-dynamic",
        "--export-if-defined=__wasm_call_ctors",
    ]
    exports = [a for a in lld if a.startswith("--export=")]
    # 1.97.1 exports the PEP 793 entry point beside PyInit (the leading _ of emcc's C names dropped).
    assert exports == ["--export=PyInit_hello_pyo3"] + (["--export=PyModExport_hello_pyo3"] if abi == "2026_5" else [])
    assert "--strip-all" in lld and p.opt_level == "-O3" and not p.debug  # rustc's -O3 -g0, no wasm-opt
    # With wasm-opt after it, wasm-ld keeps target_features for wasm-opt, which strips it and the names last.
    assert (
        "--strip-debug" in plan(argv, EH[abi], wasm_opt=True).lld_args
        and "--strip-all" not in plan(argv, EH[abi], wasm_opt=True).lld_args
    )
    assert p.exception_handling == EH[abi]
    # Every object and rlib, in rustc's order, and the output last.
    inputs = [a for a in argv if a.endswith((".o", ".rlib"))]
    assert [a for a in lld if a.endswith((".o", ".rlib"))] == inputs
    assert lld[-2:] == ["-o", argv[argv.index("-o") + 1]]
    # Nothing rustc passed is lost without a word: each flag is translated or named in a note.
    notes = " ".join(p.notes)
    for flag in ("-sWASM_BIGINT", "-sABORTING_MALLOC=0", "-B<RUSTUP_HOME>"):
        assert flag in notes
    assert p.wasm_opt_args(["--post-emscripten"]) == [
        "--post-emscripten",
        "--strip-debug",
        "--strip-target-features",
        "-O3",
        p.output,
        "-o",
        p.output,
    ]
    assert p.wasm_opt_args(["--strip-debug"]) == [
        "--strip-debug",
        "--strip-target-features",
        "-O3",
        p.output,
        "-o",
        p.output,
    ]


def test_a_line_asking_for_the_other_exception_handling_is_refused():
    with pytest.raises(LinkError, match="compiled for js exception handling, but the ABI needs -fwasm-exceptions"):
        plan(LINES["2024_0"]["argv"], "wasm")
    with pytest.raises(LinkError, match="compiled for wasm exception handling, but the ABI needs JavaScript"):
        plan(LINES["2026_0"]["argv"], "js")


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--emit-symbol-map"], "unknown linker argument '--emit-symbol-map'"),
        (["-sEXPORT_ALL=1"], "unsupported emcc setting -sEXPORT_ALL=1"),
        (["-sMAIN_MODULE=1"], "unsupported emcc setting -sMAIN_MODULE=1"),
        (["--target=wasm64-unknown-emscripten"], "links only wasm32-unknown-emscripten"),
        (['-sEXPORTED_FUNCTIONS=["PyInit_x"]'], "has no leading underscore"),
    ],
)
def test_unknown_flags_stop_the_link_naming_the_flag(extra, message):
    with pytest.raises(LinkError, match=message.replace("[", r"\[").replace("(", r"\(")):
        plan([*LINES["2026_0"]["argv"], *extra], "wasm")


def test_side_module_1_and_a_missing_side_module_are_refused_with_the_fix():
    argv = [a for a in LINES["2026_0"]["argv"] if a != "-sSIDE_MODULE=2"]
    with pytest.raises(LinkError, match="add -C link-arg=-sSIDE_MODULE=2"):
        plan(argv, "wasm")
    with pytest.raises(LinkError, match="SIDE_MODULE=1: Rust cdylibs link with SIDE_MODULE=2"):
        plan([*argv, "-sSIDE_MODULE=1"], "wasm")


def test_libraries_link_where_found_and_come_from_the_main_module_otherwise(tmp_path):
    (tmp_path / "libzstd.a").write_bytes(b"!<arch>\n")
    p = plan(
        [*LINES["2026_0"]["argv"], "-L", str(tmp_path), "-lzstd", "-lc", "-Wl,--export=extra,--gc-sections"], "wasm"
    )
    assert str(tmp_path / "libzstd.a") in p.lld_args
    assert not any(a.endswith("libc.a") for a in p.lld_args)
    assert any("-lc: no libc.a on the -L paths" in n for n in p.notes)
    assert "--export=extra" in p.lld_args and "--gc-sections" in p.lld_args


def test_debug_builds_keep_names_and_skip_wasm_opt_as_emcc_does():
    argv = [a for a in LINES["2026_0"]["argv"] if a not in ("-O3", "-g0")]
    p = plan([*argv, "-O0", "-g"], "wasm")
    assert "--strip-all" not in p.lld_args and p.wasm_opt_args(["--post-emscripten"]) is None
    assert not {"--strip-all", "--strip-debug"} & set(plan([*argv, "-O0", "-g"], "wasm", wasm_opt=True).lld_args)
    assert plan([*argv, "-Oz"], "wasm").wasm_opt_args([])[2] == "-Oz"


def test_response_files_are_read_the_way_rustc_writes_them(tmp_path):
    # rustc writes one argument per line and escapes backslashes and spaces (rustc_codegen_ssa back/link.rs)
    # for GCC-style parsing, where quotes group (libiberty's buildargv; emcc reads them with shlex alike).
    rsp = tmp_path / "linker-arguments"
    rsp.write_text(
        '-s\nEXPORTED_FUNCTIONS=["_PyInit_x"]\n/a\\ folder/x.o\n/b/c\\\\d.rlib\n-o\nx.wasm\n'
        "-sSIDE_MODULE=2\n-fwasm-exceptions\n"
    )
    args = read_response_file(rsp)
    assert args == [
        "-s",
        "EXPORTED_FUNCTIONS=[_PyInit_x]",
        "/a folder/x.o",
        "/b/c\\d.rlib",
        "-o",
        "x.wasm",
        "-sSIDE_MODULE=2",
        "-fwasm-exceptions",
    ]
    assert "--export=PyInit_x" in plan(args, "wasm").lld_args
    nested = tmp_path / "outer"
    nested.write_text(f"-O3 @{rsp}\n")
    assert expand_response_files(["-g0", f"@{nested}"])[:3] == ["-g0", "-O3", "-s"]


def test_main_expands_response_files_runs_lld_then_wasm_opt_and_logs_both(tmp_path, monkeypatch):
    tool = tmp_path / "tool.py"
    tool.write_text("import json, sys, os\nopen(os.environ['CALLS'], 'a').write(json.dumps(sys.argv) + '\\n')\n")
    for name in ("rust-lld", "wasm-opt"):
        exe = tmp_path / name
        exe.write_text(f"#!{sys.executable}\nimport runpy; runpy.run_path({str(tool)!r})\n")
        exe.chmod(0o755)
    rsp = tmp_path / "args"
    rsp.write_text("\n".join(LINES["2026_0"]["argv"]) + "\n")
    calls, log = tmp_path / "calls.jsonl", tmp_path / "link.log"
    monkeypatch.setenv("CALLS", str(calls))
    monkeypatch.setenv("WASMWHEEL_LINK_LLD", str(tmp_path / "rust-lld"))
    monkeypatch.setenv("WASMWHEEL_LINK_EH", "wasm")
    monkeypatch.setenv("WASMWHEEL_WASM_OPT", str(tmp_path / "wasm-opt"))
    monkeypatch.setenv("WASMWHEEL_WASM_OPT_FLAGS", json.dumps(["--post-emscripten", "--enable-exception-handling"]))
    monkeypatch.setenv("WASMWHEEL_LINK_LOG", str(log))
    assert main(["@" + str(rsp)]) == 0
    lld, opt = [json.loads(line) for line in calls.read_text().splitlines()]
    assert lld[1:3] == ["-flavor", "wasm"] and "--export=PyInit_hello_pyo3" in lld
    assert opt[1:6] == [
        "--post-emscripten",
        "--enable-exception-handling",
        "--strip-debug",
        "--strip-target-features",
        "-O3",
    ]
    assert "--strip-debug" in lld and "--strip-all" not in lld  # wasm-opt follows: it strips last
    text = log.read_text()
    assert "rust-lld -flavor wasm" in text and "wasm-opt --post-emscripten" in text and "dropped -sWASM_BIGINT" in text


def test_main_reports_a_refused_flag_in_one_line_and_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WASMWHEEL_LINK_LLD", "/nonexistent/rust-lld")
    assert main([*LINES["2026_0"]["argv"], "--bogus"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown linker argument '--bogus'" in err


def test_the_c_compiler_of_the_lean_toolchain_names_the_crate(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from wasmwheel.toolchain.linker import no_c_compiler; "
            "sys.exit(no_c_compiler(['-c', 'zstd.c']))",
        ],
        env={"CARGO_PKG_NAME": "zstd-sys", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert proc.returncode == 1
    assert "crate zstd-sys compiles C/C++ for wasm32-unknown-emscripten" in proc.stderr
    assert "WASMWHEEL_TOOLCHAIN=emsdk" in proc.stderr and "needs_emsdk" in proc.stderr


def test_the_compile_environment_under_each_toolchain(repo, tmp_path):
    """compile_env is a pure function: what reaches maturin (and so rustc and its linker) per toolchain."""
    from wasmwheel.build import LINKER_VAR, RUSTFLAGS_VAR, compile_env
    from wasmwheel.model.facts import BinaryenFacts, EmsdkFacts, RustFacts
    from wasmwheel.pipeline.graph import Project

    rust = RustFacts(
        sysroot="/tc",
        lld="/tc/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld",
        path=["/tc/bin"],
        env={"RUSTUP_HOME": "/homes/rustup", "CARGO_HOME": "/homes/cargo", "RUSTUP_TOOLCHAIN": "1.93.0"},
    )
    inherited = {
        "PATH": "/usr/bin",
        "RUSTFLAGS": "-Ctarget-cpu=native",
        LINKER_VAR: "/somewhere/emcc",
        "TARGET_CC": "/usr/bin/cc",
        "WASMWHEEL_LINK_LLD": "/stale/lld",
        "HOME": "/root",
    }
    for toolchain, linking in (
        ("lean", BinaryenFacts(binaryen="132.0.0", wasm_opt="/b/wasm-opt")),
        ("emsdk", EmsdkFacts(path=["/emsdk/upstream/emscripten", "/emsdk"], env={"EMSDK": "/emsdk"})),
    ):
        project = Project.load(repo, {"WASMWHEEL_CACHE": str(tmp_path / "c"), "WASMWHEEL_TOOLCHAIN": toolchain})
        abi, recipe = project.abis["2024_0"], project.recipes.recipes["hello-pyo3"]
        env = compile_env(abi, recipe, project.layout, linking, rust, base=inherited, link_log=tmp_path / "link.log")
        assert "RUSTFLAGS" not in env and env["HOME"] == "/root"
        assert env[RUSTFLAGS_VAR] == " ".join(abi.rustflags)
        assert env["CARGO_HOME"] == str(project.layout.cargo_home)  # one registry for every toolchain
        assert (env["PYO3_CROSS"], env["PYO3_CROSS_PYTHON_VERSION"]) == ("1", "3.12")
        if toolchain == "lean":
            assert env[LINKER_VAR] == str(project.layout.link_launcher)
            assert env["TARGET_CC"] == env["TARGET_CXX"] == str(project.layout.no_cc_launcher)
            assert (env["WASMWHEEL_LINK_LLD"], env["WASMWHEEL_LINK_EH"]) == (rust.lld, "js")
            assert json.loads(env["WASMWHEEL_WASM_OPT_FLAGS"]) == list(abi.lean.wasm_opt_flags)
            assert env["PATH"].split(":")[0] == "/tc/bin"
        else:  # emcc on PATH is the linker; nothing of the lean toolchain, nothing inherited
            assert LINKER_VAR not in env and "TARGET_CC" not in env and "WASMWHEEL_LINK_LLD" not in env
            assert env["PATH"].split(":")[:3] == ["/emsdk/upstream/emscripten", "/emsdk", "/tc/bin"]
