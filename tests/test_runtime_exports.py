"""The runtimes' exports (abi/runtimes/<version>/exports.json.gz): what the audit checks a side
module's imports and memory against. Extracted from each real npm runtime, committed, kept in step."""

from __future__ import annotations

import gzip
import json
import re
import shutil

import pytest

from test_audit import REPO, linkage, make_wheel, wheel_tag
from wasmwheel.audit import runtime_exports
from wasmwheel.audit.check import audit_wheel
from wasmwheel.model.abi import load_abis
from wasmwheel.model.errors import ConfigError

ABIS = load_abis(REPO / "abi")


def test_committed_exports_are_the_installed_runtimes(runtimes):
    """Byte for byte what extraction from each real runtime gives (so they cannot drift from the locks)."""
    for abi in ABIS.values():
        package = runtimes[abi.pyodide_version] / "node_modules" / "pyodide"
        data = runtime_exports.extract(package)
        committed = abi.runtime_lock_dir / runtime_exports.FILENAME
        assert runtime_exports.encode(data) == committed.read_bytes(), f"{committed} is stale"
        facts = runtime_exports.for_abi(abi)
        assert facts.pyodide == abi.pyodide_version
        # What every side module imports from the runtime is there: the C API, libc, the loader's globals.
        assert {
            "PyLong_FromLong",
            "PyModule_Create2",
            "malloc",
            "__stack_pointer",
            "memory",
            "__indirect_function_table",
        } <= facts.symbols
        assert facts.memory_maximum == 65536 and facts.memory_initial in (320, 480)
    # Python 3.14's C API is in 314.0.7, not in 0.29.5 (Python 3.13).
    assert "PyUnicodeWriter_Create" in runtime_exports.for_abi(ABIS["2026_0"]).symbols
    assert "PyUnicodeWriter_Create" not in runtime_exports.for_abi(ABIS["2025_0"]).symbols


def test_installing_a_runtime_records_missing_exports(project):
    exports = project.root / "abi" / "runtimes" / "314.0.7" / runtime_exports.FILENAME
    committed = exports.read_bytes()
    exports.unlink()
    run = project.doit("pyodide:2026_0")
    assert "pyodide:2026_0" in run.executed and "commit it" in run.output
    assert exports.read_bytes() == committed
    assert project.doit("pyodide:2026_0").executed == []


def _gz(data: object) -> bytes:
    return gzip.compress(json.dumps(data).encode(), mtime=0)


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"not gzip", "not gzip-compressed JSON"),
        (_gz([1, 2]), "format: expected 1"),
        (
            _gz({"format": 1, "pyodide": "1", "memory": {"initial_pages": "x"}, "symbols": []}),
            "memory: expected integer",
        ),
        (
            _gz({"format": 1, "pyodide": "1", "memory": {"initial_pages": 1, "maximum_pages": None}, "symbols": [1]}),
            "symbols: expected a list of names",
        ),
    ],
    ids=["not-gzip", "not-a-table", "memory", "symbols"],
)
def test_a_broken_exports_file_names_itself_and_the_fix(tmp_path, content, problem):
    (tmp_path / runtime_exports.FILENAME).write_bytes(content)
    with pytest.raises(ConfigError) as err:
        runtime_exports.load(tmp_path)
    assert str(tmp_path / runtime_exports.FILENAME) in str(err.value) and problem in str(err.value)
    assert "doit pyodide:<abi>" in str(err.value)


def test_extract_refuses_a_folder_that_is_not_a_runtime(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("no pyodide.asm.js/.mjs and pyodide.asm.wasm here")):
        runtime_exports.extract(tmp_path)


def test_without_exports_the_audit_says_what_it_did_not_check(tmp_path, wasm_tools):
    """An ABI whose runtime has no exports file yet: symbols and memory go unchecked, and the report says so."""
    abi_dir = tmp_path / "abi"
    shutil.copytree(REPO / "abi", abi_dir, ignore=shutil.ignore_patterns(runtime_exports.FILENAME))
    abi = load_abis(abi_dir)["2026_0"]
    wheel = make_wheel(
        tmp_path / "d", "linkage", linkage("2026_0", defines={"UNDEF_DATA": "1"})(tmp_path), wheel_tag("2026_0")
    )
    bare = audit_wheel(wheel, abi)
    assert bare.ok and bare.notes and "exports are not recorded" in bare.notes[0]
    full = audit_wheel(wheel, ABIS["2026_0"])
    assert [f.code for f in full.errors] == ["WW131"] and not full.notes


def test_new_exports_rerun_the_audits(tmp_path):
    """The exports file shapes every audit of its ABI: another file, another audit config."""
    from wasmwheel.audit.check import audit_config

    abi_dir = tmp_path / "abi"
    shutil.copytree(REPO / "abi", abi_dir)
    abi = load_abis(abi_dir)["2026_0"]
    before = audit_config(abi)
    assert before == audit_config(ABIS["2026_0"]) and before["runtime_exports"]
    exports = abi.runtime_lock_dir / runtime_exports.FILENAME
    data = json.loads(gzip.decompress(exports.read_bytes()))
    data["symbols"].append("new_in_this_runtime")
    exports.write_bytes(runtime_exports.encode(data))
    assert audit_config(abi) != before
    exports.unlink()
    assert audit_config(abi)["runtime_exports"] is None
