"""The lean toolchain, for real: rustup's exact toolchains, std built from rust-src, rust-lld, binaryen's
wasm-opt, maturin, and the wheels loaded and called in each ABI's real Pyodide.

These are the slow tests (minutes on a cold cache, mostly compiling PyO3 once per ABI). What the
stand-in world cannot show is checked here: that the README's first command ends with wheels that
work, what the link produces (exports, exception handling), that recipe flags and env reach rustc,
that a panic becomes a Python exception (and what panic=abort costs), and that a crate compiling C
is refused under the lean toolchain with the crate's name.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import TEST_CACHE
from realbuild import RealProject, extension_module, recipe, wheel_metadata
from wasmwheel.index.check import micropip_requirement  # micropip from PyPI, as users load it, per Python
from wasmwheel.model.settings import Settings
from wasmwheel.pipeline.steps import CRATE_ABI_STEPS
from wasmwheel.runner import StepLog
from wasmwheel.smoke import smoke

ALL_ABIS = ("2024_0", "2025_0", "2026_0", "2026_5")
CRATE_STEPS = CRATE_ABI_STEPS  # compile, retag, audit, smoke


@pytest.fixture(scope="module")
def rustup():
    if not shutil.which("rustup"):
        pytest.fail(
            "rustup is not on PATH: the real-build tests install each ABI's toolchain with it "
            "(https://rustup.rs; .ci/run installs it)"
        )


def pypi_wheels(requirement: str, python: str) -> Path:
    """The pure wheel of ``requirement`` for ``python``, downloaded once into the test cache."""
    folder = TEST_CACHE / "pypi" / f"py{python}"
    name, version = requirement.split("==")
    found = sorted(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if not found:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                python,
                "-d",
                str(folder),
                "--disable-pip-version-check",
                requirement,
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, f"could not download {requirement} from PyPI:\n{proc.stdout}{proc.stderr}"
        found = sorted(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    return found[0]


class Server:
    """`doit serve --port 0` in the background; the port is read from the line it prints."""

    def __init__(self, project: RealProject):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "doit", "serve", "--port", "0"],
            cwd=project.root,
            env=project.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        seen = []
        for line in self.proc.stdout:  # waits for the line, whatever the machine's speed
            seen.append(line)
            m = re.search(r"serving .* at (http://127\.0\.0\.1:\d+)/", line)
            if m:
                self.url = m.group(1)
                return
        raise AssertionError("doit serve ended without serving:\n" + "".join(seen))

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def run_script(
    project: RealProject, abi: str, wheel, script: str, tmp_path, name: str, preload: tuple = ()
) -> smoke.SmokeResult:
    """Run ``script`` after installing ``preload`` and ``wheel`` in a fresh interpreter of the ABI's real
    Pyodide, the way the smoke step does, but with a test of our own (not the recipe's)."""
    a = project.abi(abi)
    runtime = project.layout.runtime_dir(a) / "node_modules" / "pyodide"
    job = smoke.SmokeJob(
        wheel=wheel, script=script, filename=f"{name}.py", timeout=300, python=a.python_minor, preload=tuple(preload)
    )
    with StepLog(tmp_path / f"{name}-{abi}.log") as log:
        return smoke.run_in_node(runtime, job, log, Settings.from_env(project.root, project.env))


OWN_TEST = """
import hello_pyo3, sys
assert hello_pyo3.sum_as_string(40, 2) == "42"
assert hello_pyo3.sum_as_string(2**31, 2**31 - 1) == str(2**32 - 1)  # usize is 32 bits on wasm32
c = hello_pyo3.Counter()
assert [c.increment() for _ in range(3)] == [1, 2, 3]
for bad in (-1, 2**32):
    try:
        hello_pyo3.sum_as_string(bad, 2)
    except OverflowError:
        pass
    else:
        raise AssertionError(f"{bad} is no 32-bit usize: OverflowError expected")
print("python", sys.version_info[:2])
"""


def test_the_readme_first_command_builds_tested_wheels_for_every_abi_for_real(rustup, runtimes, binaryens, tmp_path):
    project = RealProject.create(tmp_path, ALL_ABIS)
    first = project.doit("build:hello-pyo3")
    assert first.failed == [], first.output
    for abi in ALL_ABIS:
        a = project.abi(abi)
        (wheel,) = project.dist(abi)
        assert wheel.name == f"hello_pyo3-0.1.0-{a.cp_tag}-{a.cp_tag}-{a.platform_tag}.whl"
        assert project.layout.tested_marker(abi, wheel.name).exists()  # its smoke test passed
        generator = next(line for line in wheel_metadata(wheel).splitlines() if line.startswith("Generator:"))
        assert f"Rust {a.rust_toolchain}, lean: rust-lld, binaryen {a.lean.binaryen}" in generator
        name, module, _ = extension_module(wheel)
        assert name == f"hello_pyo3/hello_pyo3.cpython-{a.cp_tag[2:]}-wasm32-emscripten.so"
        assert module.dylink_first and "PyInit_hello_pyo3" in module.export_names("func")
        # The ABI's exception handling, end to end: JavaScript (invoke_* imports) for 2024_0, else wasm EH.
        invokes = [i.name for i in module.imports_of("func") if i.name.startswith("invoke_")]
        tags = [i.qualname for i in module.imports_of("tag")]
        if a.exception_handling == "js":
            assert invokes and not tags
        else:
            assert tags == ["env.__cpp_exception"] and not invokes
        # Linked by the toolchain's own rust-lld, then optimised by wasm-opt (the step's log shows both).
        log = project.layout.log("compile", abi, "hello-pyo3").read_text()
        assert "rust-lld -flavor wasm --shared --experimental-pic" in log and "/bin/wasm-opt " in log
        # Our own test, not the recipe's, in the ABI's real runtime.
        result = run_script(project, abi, wheel, OWN_TEST, tmp_path, "own-test")
        assert result.ok, result.error + result.output
        assert f"python ({a.python_minor.replace('.', ', ')})" in result.output
    report = json.loads((project.layout.build / "report.json").read_text())
    assert report["toolchain"] == "lean" and {r["status"] for r in report["rows"]} == {"ok"}
    # Each row says how long the recipe's test took in the runtime (docs/collection.md shows it).
    assert all(0 < r["test_seconds"] <= r["steps"]["smoke"]["seconds"] + 0.01 for r in report["rows"]), report["rows"]

    # A second run runs nothing.
    assert project.doit("build:hello-pyo3").executed == []

    # A one-line change to the crate reruns its steps and nothing else: the source step (which copies the
    # changed folder into build/src), then compile, retag, audit and smoke for every ABI.
    lib = project.root / "examples" / "hello-pyo3" / "src" / "lib.rs"
    lib.write_text(lib.read_text().replace("/// Add one and return the new count.", "/// Count one more."))
    again = project.doit("build:hello-pyo3")
    assert sorted(again.executed) == sorted(
        ["source:hello-pyo3"] + [f"{k}:hello-pyo3@{a}" for k in CRATE_STEPS for a in ALL_ABIS]
    )
    result = run_script(
        project,
        "2026_0",
        project.dist("2026_0")[0],
        "import hello_pyo3\nassert hello_pyo3.Counter.increment.__doc__ == 'Count one more.'\n",
        tmp_path,
        "doc-test",
    )
    assert result.ok, result.error + result.output

    # The way users install: micropip (PyPI's wheel, loaded into the runtime) installs the crate by name from
    # `doit serve`'s index, in each ABI's real Pyodide, which checks the wheel's tags against the runtime's.
    project.doit("index")
    with Server(project) as server:
        for abi in ALL_ABIS:
            a = project.abi(abi)
            packaging, micropip = (
                pypi_wheels("packaging==26.1", a.python_minor),
                pypi_wheels(micropip_requirement(a.python_minor), a.python_minor),
            )
            script = (
                f"import micropip\nawait micropip.install('hello-pyo3', deps=False, "
                f"index_urls=['{server.url}/{abi}/simple/{{package_name}}/'])\n"
                "import hello_pyo3\nassert hello_pyo3.sum_as_string(40, 2) == '42'\n"
                "print('installed', [p.name for p in micropip.list().values() if p.name == 'hello-pyo3'])\n"
            )
            result = run_script(project, abi, micropip, script, tmp_path, "micropip", preload=(packaging,))
            assert result.ok, f"{abi}: {result.error}\n{result.output}"
            assert "installed ['hello-pyo3']" in result.output, result.output


PROBE_TEST = """
import probe
assert probe.add(40, 2) == 42
try:
    probe.fail("na\\u00efve \\u2603")
except ValueError as e:
    assert str(e) == "na\\u00efve \\u2603", str(e)
else:
    raise AssertionError("fail() must raise ValueError")
# The recipe's rustflags (--cfg) and env (a compile-time variable) reached rustc for the target.
assert probe.build_info() == (True, "h\\u00e9llo"), probe.build_info()
# With the ABIs' unwinding std a Rust panic becomes a Python exception, and the module keeps working.
for _ in range(2):
    try:
        probe.boom()
    except BaseException as e:
        assert type(e).__name__ == "PanicException" and "boom from Rust" in str(e), repr(e)
    else:
        raise AssertionError("boom() must raise PanicException")
assert probe.add(1, 2) == 3
# A function compiled for SIMD128 (wasm-opt kept it: it learnt the feature from the module itself).
assert probe.simd_sum(list(range(1, 102))) == 5151 and probe.simd_sum([2**31 - 1, 1]) == -2**31
"""


def test_recipe_flags_reach_rustc_and_panics_unwind_into_python_for_both_exception_abis(
    rustup, runtimes, binaryens, tmp_path
):
    """One JS-EH ABI (2024_0) and one wasm-EH ABI (2026_0), a crate of the tests' own."""
    build = {"rustflags": ["--cfg", "probe_flag"], "env": {"PROBE_VALUE": "h\u00e9llo"}}
    project = RealProject.create(
        tmp_path, ("2024_0", "2026_0"), example=False, recipes={"probe": recipe("probe", PROBE_TEST, build)}
    )
    project.add_crate("probe")
    run = project.doit("build:probe")
    assert sorted(run.failed) == [] and {f"smoke:probe@{a}" for a in ("2024_0", "2026_0")} <= set(run.executed)
    log = project.layout.log("compile", "2026_0", "probe").read_text()
    assert "CARGO_TARGET_WASM32_UNKNOWN_EMSCRIPTEN_RUSTFLAGS='-C link-arg=-sSIDE_MODULE=2 --cfg probe_flag'" in log
    # Unwinding builds are not taken for panic=abort ones (the audit's WW124), with either exception handling.
    for abi in ("2024_0", "2026_0"):
        assert "WW124" not in project.layout.log("audit", abi, "probe").read_text()
    # Stripped after wasm-opt used them, as emcc strips them: the module's target_features and producers.
    (wheel,) = project.dist("2026_0")
    assert not {"target_features", "producers"} & set(extension_module(wheel)[1].custom_sections)

    # How the crate is linked changes (2026_0's wasm-opt flags keep the producers section now). cargo cannot
    # see that, yet the module is linked again; that ABI's crate steps rerun and nothing else.
    project.edit_toml("abi/2026_0.toml", lambda doc: doc["lean"]["wasm_opt_flags"].remove("--strip-producers"))
    again = project.doit("build:probe")
    assert sorted(again.executed) == sorted(f"{k}:probe@2026_0" for k in CRATE_STEPS), again.output
    (wheel,) = project.dist("2026_0")
    assert "producers" in extension_module(wheel)[1].custom_sections


def test_panic_abort_builds_load_until_the_first_panic_which_ends_the_runtime(rustup, runtimes, binaryens, tmp_path):
    script = "import probe_abort\nassert probe_abort.add(40, 2) == 42\n"
    project = RealProject.create(
        tmp_path,
        ("2026_0",),
        example=False,
        recipes={"probe-abort": recipe("probe-abort", script, {"rustflags": ["-C", "panic=abort"]})},
    )
    project.add_crate("probe", "probe-abort")
    run = project.doit("build:probe-abort")
    # The audit says what panic=abort costs (a warning: the wheel loads and works until a panic).
    assert "warning WW124" in project.layout.log("audit", "2026_0", "probe-abort").read_text()
    assert "smoke:probe-abort@2026_0" in run.executed
    (wheel,) = project.dist("2026_0")
    _, module, _ = extension_module(wheel)
    # No unwinding left in the module: no exception tag, no C++ runtime calls, no invoke_*.
    assert not module.imports_of("tag") and not module.tag_count
    assert not [i for i in module.imports_of("func") if i.name.startswith(("_Unwind_", "__cxa_", "invoke_"))]
    result = run_script(
        project, "2026_0", wheel, "import probe_abort\nprobe_abort.boom()\nprint('survived')\n", tmp_path, "abort"
    )
    assert not result.ok and "survived" not in result.output and result.stage in ("crash", "test"), result


def test_a_crate_that_compiles_c_is_refused_by_name_and_skipped_in_batches(rustup, runtimes, binaryens, tmp_path):
    needs_c = recipe("needs-c", "import needs_c\nassert needs_c.double(21) == 42\n")
    project = RealProject.create(tmp_path, ("2026_0",), recipes={"needs-c": needs_c})
    project.add_crate("needs-c")
    single = project.doit("build:needs-c", check=False)
    assert single.failed == ["compile:needs-c@2026_0"]
    assert "crate needs-c compiles C/C++ for wasm32-unknown-emscripten" in single.output
    assert "WASMWHEEL_TOOLCHAIN=emsdk" in single.output and "needs_emsdk" in single.output

    # Declared in the recipe: a lean batch skips it with the reason and builds the rest...
    project.edit_toml(
        "recipes/needs-c.toml", lambda d: d["build"].update({"needs_emsdk": "compiles src/twice.c with the cc crate"})
    )
    batch = project.doit("build")
    assert "compile:needs-c@2026_0" not in batch.executed and "smoke:hello-pyo3@2026_0" in batch.executed
    assert "skip build:needs-c" in batch.output and "needs emsdk (compiles src/twice.c" in batch.output
    rows = {r["crate"]: r for r in json.loads((project.layout.build / "report.json").read_text())["rows"]}
    assert rows["needs-c"]["status"] == "skipped" and "compiles src/twice.c" in rows["needs-c"]["reason"]
    assert rows["hello-pyo3"]["status"] == "ok"
    # ...and asked for by name, it says what to do instead of building nothing silently.
    named = project.doit("build:needs-c", check=False)
    assert "needs-c needs emsdk (compiles src/twice.c with the cc crate)" in named.output
    assert "WASMWHEEL_TOOLCHAIN=emsdk doit build:needs-c" in named.output
