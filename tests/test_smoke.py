"""The smoke stage on real Pyodide runtimes: real errors with their causes, timeouts,
a fresh interpreter per wheel, the smoke server shared by parallel steps, test
requirements from a local wheelhouse, headless Chromium, and all of it through doit.

The wheels hold real side modules built by clang-19/wasm-ld-19 from tests/wasm/*.c,
broken on purpose in the ways Pyodide users meet: shared memory (-pthread, which Pyodide's ABI
pages say does not load), no dylink.0 section (not a side module), no PyInit_<name>, an
extension for another Python, a needed shared library no wheel provides.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import wasmbuild
from conftest import REPO, TEST_CACHE
from wasmwheel.model.abi import load_abis
from wasmwheel.model.errors import ConfigError
from wasmwheel.model.layout import Layout
from wasmwheel.model.recipe import load_recipe
from wasmwheel.model.settings import Settings
from wasmwheel.runner import StepLog
from wasmwheel.smoke import server as smokeserver
from wasmwheel.smoke import smoke, wheelhouse

ABIS = load_abis(REPO / "abi")
PYTHON = {abi.pyodide_version: abi.python_minor for abi in ABIS.values()}
NEWEST = ABIS["2026_0"]
TAG = "pyemscripten_2026_0_wasm32"


# -- wheels ------------------------------------------------------------------------------------


def pack(folder: Path, dist: str, files: dict[str, bytes], tag: str = "py3-none-any", requires: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-1.0-{tag}.whl"
    info = f"{dist}-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        requires_dist = f"Requires-Dist: {requires}\n" if requires else ""
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n{requires_dist}")
        zf.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n")
        zf.writestr(f"{info}/RECORD", "")
    return wheel


def strip_dylink(module: bytes) -> bytes:
    """Drop the leading dylink.0 custom section: a module that is no Emscripten side module."""
    assert module[8] == 0, "first section is not a custom section"
    size, i, shift = 0, 9, 0
    while True:
        byte = module[i]
        i += 1
        size |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    assert module[i + 1 : i + 1 + module[i]] == b"dylink.0"
    return module[:8] + module[i + size :]


@pytest.fixture(scope="session")
def wheels(tmp_path_factory, wasm_tools) -> dict[str, Path]:
    """Good and broken wheels; keys: good-3.<minor>, two-3.14 and the broken cases (Python 3.14)."""
    out = tmp_path_factory.mktemp("smoke-wheels")
    so = out / "so"
    made: dict[str, Path] = {}

    def wheel(key: str, module_file: Path, minor: int, so_minor: int | None = None, module: str = "hello_pyo3") -> None:
        name = wasmbuild.so_name(module, so_minor or minor)
        tag = f"cp3{minor}-cp3{minor}-{TAG}"
        made[key] = pack(out / key, module, {name: module_file.read_bytes()}, tag)

    for minor in wasmbuild.MINORS:
        wheel(f"good-3.{minor}", wasmbuild.build_module(so / f"good{minor}.so", minor), minor)
    wheel(
        "two-3.14",
        wasmbuild.build_module(so / "two.so", 14, defines={"MODULE_NAME": "hello_two"}),
        14,
        module="hello_two",
    )
    for minor in (12, 13, 14):
        shared = wasmbuild.build_module(
            so / f"shared{minor}.so",
            minor,
            cflags=("-matomics", "-mbulk-memory"),
            ldflags=("--shared-memory", "--max-memory=4294967296"),
        )
        wheel(f"shared-memory-3.{minor}", shared, minor)
    made["shared-memory"] = made["shared-memory-3.14"]
    nodylink = so / "nodylink.so"
    nodylink.write_bytes(strip_dylink(wasmbuild.build_module(so / "plain.so", 14).read_bytes()))
    wheel("no-dylink", nodylink, 14)
    wheel("missing-pyinit", wasmbuild.build_module(so / "noinit.so", 14, defines={"INIT_NAME": "other"}), 14)
    wheel("suffix-mismatch", wasmbuild.build_module(so / "py312.so", 12), 14, so_minor=12)
    wheel(
        "missing-function",
        wasmbuild.build_module(
            so / "nofunc.so",
            14,
            source="linkage.c",
            defines={"MODULE_NAME": "hello_pyo3", "UNDEF_FUNC": "1", "CALL_IN_INIT": "1"},
        ),
        14,
    )
    wheel(
        "js-exceptions",
        wasmbuild.build_module(
            so / "jseh.so",
            14,
            source="eh_module.cpp",
            defines={"MODULE_NAME": "hello_pyo3", "INIT_TRY": "1"},
            cflags=("-fexceptions", "-mllvm", "-enable-emscripten-cxx-exceptions"),
        ),
        14,
    )
    # use_dep needs libdep.so (dylink.0), which its wheel does not ship
    libdep = wasmbuild.build_module(so / "libdep.so", 14, source="dep.c")
    needs = wasmbuild.build_module(
        so / "needs.so", 14, source="use_dep.c", defines={"MODULE_NAME": "hello_pyo3"}, link_with=(libdep,)
    )
    wheel("missing-library", needs, 14)
    libdep12 = wasmbuild.build_module(so / "libdep12" / "libdep.so", 12, source="dep.c")
    needs12 = wasmbuild.build_module(
        so / "needs12.so", 12, source="use_dep.c", defines={"MODULE_NAME": "hello_pyo3"}, link_with=(libdep12,)
    )
    wheel("missing-library-3.12", needs12, 12)
    return made


# -- running jobs the way the smoke step does -------------------------------------------------------


def runtime_package(runtimes: dict[str, Path], version: str) -> Path:
    return runtimes[version] / "node_modules" / "pyodide"


def settings(**env: str) -> Settings:
    return Settings.from_env(
        REPO, {**os.environ, "WASMWHEEL_CACHE": str(TEST_CACHE / "wasmwheel"), "WASMWHEEL_SMOKE_IDLE": "5", **env}
    )


SCRIPT = 'import hello_pyo3\nassert hello_pyo3.sum_as_string(2, 3) == "5"\n'


# A job's timeout counts from its interpreter's boot and covers installing the wheel: tests that must
# pass get one no loaded machine reaches; only a test that hangs on purpose waits for its own.
PASSING_TIMEOUT = 600


def job(
    wheel: Path,
    script: str = SCRIPT,
    version: str = NEWEST.pyodide_version,
    timeout: int = PASSING_TIMEOUT,
    preload: tuple[Path, ...] = (),
) -> smoke.SmokeJob:
    return smoke.SmokeJob(
        wheel=wheel,
        script=script,
        filename="recipes/t.toml [test] script",
        timeout=timeout,
        python=PYTHON[version],
        preload=preload,
    )


@contextlib.contextmanager
def own_server(runtimes, idle: int, **env: str) -> Iterator[Settings]:
    """Settings for a smoke server of the test's own: no other test uses its ``idle`` time (part of a
    server's identity), so it is up from the test's first job to its last however slow the machine
    is, and nothing else stops it or sends it jobs. Stopped at the end."""
    config = settings(WASMWHEEL_SMOKE_IDLE=str(idle), **env)
    try:
        yield config
    finally:
        smokeserver.stop(smokeserver.Server.for_runtime(runtime_package(runtimes, NEWEST.pyodide_version), config))


def smoke_test(
    runtimes,
    the_job: smoke.SmokeJob,
    tmp_path: Path,
    version: str = NEWEST.pyodide_version,
    config: Settings | None = None,
    name: str = "smoke",
) -> tuple[dict | None, str, str]:
    """Run like the smoke step: (facts or None, the failure message, the log)."""
    log_path = tmp_path / f"{name}.log"
    with StepLog(log_path, name) as log:
        result = smoke.run_in_node(runtime_package(runtimes, version), the_job, log, config or settings())
        try:
            facts, message = (
                smoke.conclude(
                    result,
                    the_job,
                    environment="node",
                    where=f"Pyodide {version}",
                    log=log,
                    recipe_file="recipes/t.toml",
                ),
                "",
            )
        except smoke.SmokeFailed as exc:
            facts, message = None, str(exc)
    return facts, message, log_path.read_text()


# -- real errors -----------------------------------------------------------------------------------

REAL_ERRORS = {
    # case: (stage shown, the real cause, a piece of the hint)
    "shared-memory": ("installing the wheel failed", "mismatch in shared state of memory", "remove -pthread"),
    "no-dylink": ("installing the wheel failed", "need the dylink section to be first", "-sSIDE_MODULE=2"),
    "missing-pyinit": (
        "the test script failed",
        "dynamic module does not define module export function (PyInit_hello_pyo3)",
        "does not export PyInit_<name>",
    ),
    "suffix-mismatch": (
        "the test script failed",
        "ModuleNotFoundError: No module named 'hello_pyo3'",
        "for Python 3.12 (hello_pyo3.cpython-312-wasm32-emscripten.so) but this Pyodide runs Python 3.14",
    ),
    "missing-function": (
        "the interpreter crashed",
        "cannot resolve symbol made_up_function",
        "the module called a function that neither Pyodide nor",
    ),
    "js-exceptions": (
        "the interpreter crashed",
        "cannot resolve symbol invoke_",
        "the module was built with JavaScript exception handling",
    ),
    "missing-library": (
        "installing the wheel failed",
        'Failed to find dynamic library "libdep.so"',
        "needs a shared library that no installed wheel provides",
    ),
}


@pytest.mark.parametrize("case", sorted(REAL_ERRORS))
def test_a_broken_wheel_reports_its_real_cause_and_a_hint(case, wheels, runtimes, tmp_path):
    stage, cause, hint = REAL_ERRORS[case]
    facts, message, log = smoke_test(runtimes, job(wheels[case]), tmp_path)
    assert facts is None
    first = message.splitlines()[0]
    assert first.startswith(f"{wheels[case].name} in Pyodide {NEWEST.pyodide_version} (Node): {stage}: ")
    assert cause in first
    assert hint in message.split("\n  hint: ", 1)[1].splitlines()[0]
    assert cause in log  # the step log keeps the loader's full output


def test_the_good_wheel_passes_and_its_output_is_in_the_log(wheels, runtimes, tmp_path):
    script = SCRIPT + "print('counter says', hello_pyo3.Counter().increment())\n"
    facts, message, log = smoke_test(runtimes, job(wheels["good-3.14"], script), tmp_path)
    assert message == ""
    assert facts["outcome"] == "passed"
    assert "counter says 1" in log
    assert "a fresh interpreter booted" in log


def test_a_python_exception_shows_the_test_traceback_without_pyodide_frames(wheels, runtimes, tmp_path):
    script = textwrap.dedent("""\
        import hello_pyo3

        def check():
            assert hello_pyo3.sum_as_string(2, 2) == "5", "wrong sum"

        check()
        """)
    facts, message, log = smoke_test(runtimes, job(wheels["good-3.14"], script), tmp_path)
    assert facts is None
    assert message.splitlines()[0].endswith("the test script failed: AssertionError: wrong sum")
    assert 'File "recipes/t.toml [test] script", line 6, in <module>' in message
    assert 'File "recipes/t.toml [test] script", line 4, in check' in message
    assert "_pyodide/_base.py" not in message
    assert "_pyodide/_base.py" in log  # the log keeps everything


def test_a_missing_python_dependency_is_named(wheels, runtimes, tmp_path):
    script = "import hello_pyo3\nimport attrs_not_installed\n"
    _facts, message, _ = smoke_test(runtimes, job(wheels["good-3.14"], script), tmp_path)
    assert "ModuleNotFoundError: No module named 'attrs_not_installed'" in message.splitlines()[0]
    assert (
        "hint: attrs_not_installed is not installed: add the distribution that provides it to [test] "
        "requirements in recipes/t.toml" in message
    )


def test_pyodide_0_27_names_the_missing_library_it_hides(wheels, runtimes, tmp_path):
    # 0.27's loader says only "Didn't expect to load any more file_packager files!" here.
    _facts, message, log = smoke_test(
        runtimes, job(wheels["missing-library-3.12"], version="0.27.8"), tmp_path, "0.27.8"
    )
    first = message.splitlines()[0]
    assert (
        'installing the wheel failed: Failed to find dynamic library "libdep.so" (needed by '
        "hello_pyo3.cpython-312-wasm32-emscripten.so; this Pyodide says only: " in first
    )
    assert "hint: the extension needs a shared library that no installed wheel provides" in message
    assert "file_packager" in log


def test_the_summary_is_the_exception_not_pyodides_note_after_it(real_wheels, runtimes, tmp_path):
    # Pyodide 314 adds a note to ModuleNotFoundError ("... See https://pyodide.org/... for more details.").
    the_job = job(real_wheels["pydantic_core"], "import pydantic_core\n")
    _facts, message, log = smoke_test(runtimes, the_job, tmp_path)
    assert message.splitlines()[0].endswith(
        "the test script failed: ModuleNotFoundError: No module named 'typing_extensions'"
    )
    assert (
        "hint: typing_extensions is not installed: add the distribution that provides it to [test] "
        "requirements" in message
    )
    assert "for more details" in log


@pytest.mark.parametrize(
    "key, version, line, hint",
    [
        # A cp314 package whose extension module Python 3.13 does not find: an ImportError in its __init__.
        (
            "pydantic_core",
            "0.29.5",
            "the test script failed: ImportError: cannot import name",
            "the wheel's extension module is for Python 3.14 (_pydantic_core.cpython-314-wasm32-emscripten.so) "
            "but this "
            "Pyodide runs Python 3.13",
        ),
        # An abi3 wheel built with wasm exception handling, in a runtime with JavaScript exception handling.
        (
            "rustworkx",
            "0.27.8",
            "installing the wheel failed: WebAssembly.instantiate(): Import #",
            "the crate and the Rust std it links disagree on exception handling",
        ),
    ],
)
def test_real_wheels_in_the_wrong_runtime_get_the_right_hint(key, version, line, hint, real_wheels, runtimes, tmp_path):
    preload = (real_wheels["typing_extensions"],) if key == "pydantic_core" else ()
    the_job = job(real_wheels[key], f"import {key}\n", version=version, preload=preload)
    facts, message, _ = smoke_test(runtimes, the_job, tmp_path, version)
    assert facts is None
    assert line in message.splitlines()[0]
    assert message.split("\n  hint: ", 1)[1].startswith(hint)


def test_exception_line_skips_notes_and_multiline_messages():
    traceback = (
        'Traceback (most recent call last):\n  File "t", line 1, in <module>\n    x()\n'
        "ValueError: first line\nsecond line of the message\nA note added later."
    )
    assert smoke.exception_line(traceback, "ValueError") == "ValueError: first line"
    assert smoke.exception_line(traceback) == "ValueError: first line"
    assert smoke.exception_line("KeyboardInterrupt", "KeyboardInterrupt") == "KeyboardInterrupt"


# How a test ends, however it ends: (script after the import, console line, a piece of the details).
ENDINGS = {
    "sys.exit(3)": (
        "import sys\nsys.exit(3)\n",
        "the test script failed: SystemExit: 3",
        'File "recipes/t.toml [test] script", line 4, in <module>',
    ),
    "sys.exit(0)": ("import sys\nsys.exit(0)\nraise AssertionError('not reached')\n", None, None),
    "os._exit(3)": (
        "import os\nos._exit(3)\n",
        "the interpreter exited: exit status 3 (the test or the extension called os._exit(3) or C exit())",
        None,
    ),
    "wasm crash": (
        "import ctypes\nctypes.CFUNCTYPE(None)(0)()\n",
        "the interpreter crashed: Pyodide suffered a fatal error (a wasm trap, or a JavaScript error inside "
        "a wasm call): ",
        'File "recipes/t.toml [test] script", line 4 in <module>',
    ),
}


@pytest.mark.parametrize("server", [True, False], ids=["server", "one-process"])
@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_every_way_a_test_ends_is_reported_for_what_it_is(ending, server, wheels, runtimes, tmp_path):
    script, line, detail = ENDINGS[ending]
    config = settings(WASMWHEEL_SMOKE_WORKERS="1") if server else settings(WASMWHEEL_SMOKE_SERVER="0")
    facts, message, _log = smoke_test(runtimes, job(wheels["good-3.14"], SCRIPT + script), tmp_path, config=config)
    if line is None:
        assert message == "" and facts["outcome"] == "passed"
    else:
        first = message.splitlines()[0]
        assert first.startswith(f"{wheels['good-3.14'].name} in Pyodide {NEWEST.pyodide_version} (Node): {line}")
        assert "    at " not in message  # the runtime's JavaScript frames stay in the log
        if detail:
            assert detail in message
    # The next wheel gets a healthy interpreter (one slot: the same server, after the broken one).
    facts, message, _ = smoke_test(
        runtimes, job(wheels["two-3.14"], "import hello_two\n"), tmp_path, config=config, name="next"
    )
    assert message == "" and facts["outcome"] == "passed"


def test_a_test_may_await_at_the_top_level(wheels, runtimes, tmp_path):
    script = SCRIPT + "import asyncio\nawait asyncio.sleep(0.01)\nprint('awaited')\n"
    path = tmp_path / "t.toml"
    path.write_text(RECIPE + f"script = {json.dumps(script)}\n")  # a JSON string is a TOML basic string
    assert load_recipe(path, ["2026_0"], tmp_path).test.script == script
    _facts, message, log = smoke_test(runtimes, job(wheels["good-3.14"], script), tmp_path)
    assert message == "" and "awaited" in log


@pytest.mark.parametrize("version", ["0.27.8", "314.0.7"])
def test_a_test_that_prints_50_mb_keeps_all_of_it_in_the_log(version, wheels, runtimes, tmp_path):
    script = (
        SCRIPT + "import sys\nprint('x' * 40_000_000)\nfor i in range(100_000):\n    print(f'line {i:06d}', 'y' * 80)\n"
        "print('the end', file=sys.stderr)\n"
    )
    minor = PYTHON[version]
    facts, message, log = smoke_test(runtimes, job(wheels[f"good-{minor}"], script, version=version), tmp_path, version)
    assert message == "" and facts["outcome"] == "passed"
    assert "x" * 40_000_000 + "\n" in log
    assert log.count("\nline ") == 100_000 and "line 099999 " in log
    assert "the end" in log


@pytest.mark.parametrize("version", ["0.27.8", "0.29.5", "315.0.0-alpha.2"])
def test_every_runtime_passes_good_wheels_and_names_real_errors(version, wheels, runtimes, tmp_path):
    minor = PYTHON[version]
    facts, message, _ = smoke_test(runtimes, job(wheels[f"good-{minor}"], version=version), tmp_path, version)
    assert message == "" and facts["outcome"] == "passed"
    if f"shared-memory-{minor}" in wheels:
        _, message, _ = smoke_test(
            runtimes, job(wheels[f"shared-memory-{minor}"], version=version), tmp_path, version, name="broken"
        )
        assert "mismatch in shared state of memory" in message.splitlines()[0]
        assert "hint: Pyodide modules cannot use threads or shared memory: remove -pthread" in message


def _server_pid(log: str) -> str:
    return next(line for line in log.splitlines() if "smoke server pid" in line).split()[4]


def test_a_hung_test_is_killed_after_its_timeout_and_the_server_goes_on(wheels, runtimes, tmp_path):
    # Killed by its own 3 s timeout (the message says which limit ended it), not by the client giving
    # up on the server (GRACE later: "stopped answering"); the same server then runs the next test.
    hung = job(wheels["good-3.14"], "import hello_pyo3\nwhile True:\n    pass\n", timeout=3)
    with own_server(runtimes, idle=3601) as config:
        facts, message, log = smoke_test(runtimes, hung, tmp_path, config=config)
        assert facts is None
        assert message.splitlines()[0].endswith("timed out: the smoke test did not finish within 3 s and was killed")
        assert "larger [test] timeout in recipes/t.toml (now 3 s)" in message
        facts, message, after = smoke_test(runtimes, job(wheels["good-3.14"]), tmp_path, config=config, name="after")
    assert message == "" and facts["outcome"] == "passed"
    assert _server_pid(after) == _server_pid(log)


# Blocks the test's thread for good without using a core (the worker thread waits on a lock nobody
# releases).
BLOCK_FOREVER = (
    "from js import Atomics, Int32Array, SharedArrayBuffer\n"
    "Atomics.wait(Int32Array.new(SharedArrayBuffer.new(4)), 0, 0)\n"
)


def test_one_node_process_per_job_kills_a_hung_test_after_its_own_timeout(wheels, runtimes, tmp_path):
    # The test blocks its thread; the process's main thread still ends it after its own timeout, not
    # after the 120 s allowed for booting, and what it printed first is in the log. The timeout also
    # covers installing the wheel (about 1 s here): 20 s lets the print come first on a loaded machine.
    hung = job(wheels["good-3.14"], "import hello_pyo3\nprint('before the wait')\n" + BLOCK_FOREVER, timeout=20)
    _facts, message, log = smoke_test(runtimes, hung, tmp_path, config=settings(WASMWHEEL_SMOKE_SERVER="0"))
    assert message.splitlines()[0].endswith("timed out: the smoke test did not finish within 20 s and was killed")
    assert "before the wait" in log


def test_one_node_process_boots_in_full_when_the_snapshot_is_broken(wheels, runtimes, tmp_path):
    broken = tmp_path / "broken.snapshot"
    broken.write_bytes(os.urandom(1 << 20))
    runtime = runtime_package(runtimes, NEWEST.pyodide_version)
    with StepLog(tmp_path / "s.log") as log:
        result = smoke.run_in_node_process(runtime, job(wheels["good-3.14"]), log, broken)
    assert result.ok, result
    assert f"booting from the snapshot {broken} failed" in (tmp_path / "s.log").read_text()


def test_one_node_process_per_job_gives_the_same_answers(wheels, runtimes, tmp_path):
    one_shot = settings(WASMWHEEL_SMOKE_SERVER="0")
    facts, message, log = smoke_test(runtimes, job(wheels["good-3.14"]), tmp_path, config=one_shot)
    assert message == "" and facts["outcome"] == "passed"
    assert "booting one Node process" in log
    _, message, _ = smoke_test(runtimes, job(wheels["shared-memory"]), tmp_path, config=one_shot, name="broken")
    assert "mismatch in shared state of memory" in message.splitlines()[0]


# -- isolation ------------------------------------------------------------------------------------

POLLUTE = textwrap.dedent("""\
    import asyncio, atexit, builtins, sys, js, os, hello_pyo3
    from pyodide.code import run_js
    builtins.LEAKED_BUILTIN = 1
    builtins.input = lambda *args: "leaked"
    sys.modules["leaked_module"] = hello_pyo3
    sys.setrecursionlimit(123)
    js.leaked_js_global = 1
    run_js("Object.prototype.leaked_property = 1; process.env.LEAKED_ENV = '1'")
    for path in ("/tmp/leaked-file", "/home/pyodide/leaked-file"):
        with open(path, "w") as f:
            f.write("left behind")
    os.environ["LEAKED_ENV"] = "1"
    atexit.register(lambda: os.makedirs("/tmp/atexit-ran"))

    async def forever():
        while True:
            open("/tmp/task-still-running", "w").close()
            await asyncio.sleep(0.01)

    asyncio.ensure_future(forever())
    """)
CHECK_CLEAN = textwrap.dedent("""\
    import builtins, sys, js, os
    from pyodide.code import run_js
    import hello_two
    assert not hasattr(builtins, "LEAKED_BUILTIN"), "a builtin set by the previous test is visible"
    assert builtins.input.__module__ == "builtins", "a builtin replaced by the previous test is visible"
    assert "leaked_module" not in sys.modules, "a module registered by the previous test is visible"
    assert "hello_pyo3" not in sys.modules, "the previous test's import is visible"
    assert sys.getrecursionlimit() != 123, "the previous test's recursion limit is visible"
    assert not hasattr(js, "leaked_js_global"), "a JavaScript global set by the previous test is visible"
    assert run_js("({}).leaked_property") is None, "a JavaScript prototype changed by the previous test is visible"
    assert run_js("process.env.LEAKED_ENV") is None, "process.env changed by the previous test is visible"
    for path in ("/tmp/leaked-file", "/home/pyodide/leaked-file", "/tmp/atexit-ran", "/tmp/task-still-running"):
        assert not os.path.exists(path), f"{path}, written by the previous test, is visible"
    assert "LEAKED_ENV" not in os.environ, "an environment variable set by the previous test is visible"
    try:
        import hello_pyo3
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError("the previous test's wheel is installed")
    """)


def test_each_wheel_meets_a_fresh_interpreter(wheels, runtimes, tmp_path):
    # One interpreter slot: the second job runs on the same server after the first.
    with own_server(runtimes, idle=3602, WASMWHEEL_SMOKE_WORKERS="1") as one_slot:
        _first, message, log_a = smoke_test(
            runtimes, job(wheels["good-3.14"], POLLUTE), tmp_path, config=one_slot, name="a"
        )
        assert message == ""
        _second, message, log_b = smoke_test(
            runtimes, job(wheels["two-3.14"], CHECK_CLEAN), tmp_path, config=one_slot, name="b"
        )
        assert message == "", message
        assert _server_pid(log_b) == _server_pid(log_a)  # the same server ran both

        # The control: the same check after the same pollution in one interpreter fails.
        both = job(wheels["two-3.14"], POLLUTE + CHECK_CLEAN, preload=(wheels["good-3.14"],))
        _, message, _ = smoke_test(runtimes, both, tmp_path, config=one_slot, name="control")
    assert "visible" in message.splitlines()[0]


# -- the server -------------------------------------------------------------------------------------

CLIENT = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from wasmwheel.smoke import smoke, server as smokeserver
    from wasmwheel.runner import StepLog
    from wasmwheel.model.settings import Settings
    runtime, wheel, log, script = sys.argv[1:5]
    connect = smokeserver.connect

    def connect_and_say_so(server, step_log):  # the test waits for every client to be connected
        sock = connect(server, step_log)
        step_log.note("connected to the smoke server")
        return sock

    smokeserver.connect = connect_and_say_so
    job = smoke.SmokeJob(wheel=Path(wheel), script=script, filename="t", timeout=600, python="3.14")
    with StepLog(Path(log)) as step_log:
        result = smoke.run_in_node(Path(runtime), job, step_log, Settings.from_env(Path.cwd()))
    print(result)
    sys.exit(0 if result.ok else 1)
    """)


def wait_until_exists(path: Path) -> str:
    """A test script that runs until ``path`` exists on the host (the test's signal to finish)."""
    return (
        "import time, hello_pyo3\nfrom pyodide.code import run_js\n"
        "exists = run_js(\"(path) => process.getBuiltinModule('fs').existsSync(path)\")\n"
        f"while not exists({str(path)!r}):\n    time.sleep(0.05)\n"
    )


def wait_for(condition, what: str, timeout: float = 300) -> None:
    """Until ``condition()``; the bound only stops a test that would otherwise wait forever."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_parallel_steps_start_one_server_and_it_exits_when_idle(wheels, runtimes, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "WASMWHEEL_SMOKE_IDLE": "3",
        "WASMWHEEL_SMOKE_WORKERS": "2",
        "WASMWHEEL_CACHE": str(TEST_CACHE / "wasmwheel"),
    }
    runtime = runtime_package(runtimes, NEWEST.pyodide_version)
    server = smokeserver.Server.for_runtime(runtime, settings(WASMWHEEL_SMOKE_IDLE="3"))
    smokeserver.stop(server)
    # Three clients for two interpreters: every test runs until all three clients are connected (two
    # tests running, one queued), so however slowly the clients start, the server is never idle
    # before the last one has come.
    go = tmp_path / "go"
    logs = [tmp_path / f"client{i}.log" for i in range(3)]
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(runtime), str(wheels["good-3.14"]), str(log), wait_until_exists(go)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for log in logs
    ]

    def all_connected() -> bool:
        if any(c.poll() is not None for c in clients):  # a client that ended before its test could
            for c in clients:
                c.kill()
            raise AssertionError([c.communicate()[0] for c in clients])
        return all("# connected to the smoke server" in _text(log) for log in logs)

    wait_for(all_connected, "the three clients to connect")
    go.touch()
    outputs = [c.communicate(timeout=300)[0] for c in clients]
    assert [c.returncode for c in clients] == [0, 0, 0], outputs
    server_log = server.log_path.read_text()
    assert server_log.count("listening on") == 1
    pids = {_server_pid(log.read_text()) for log in logs}
    assert len(pids) == 1
    wait_for(lambda: not server.socket.exists(), "the server to stop after 3 s without work")
    assert "stopping: idle for" in server.log_path.read_text()


def test_a_lost_server_falls_back_to_one_process(wheels, runtimes, tmp_path):
    config = settings(WASMWHEEL_SMOKE_WORKERS="1", WASMWHEEL_SMOKE_IDLE="4")
    runtime = runtime_package(runtimes, NEWEST.pyodide_version)
    server = smokeserver.Server.for_runtime(runtime, config)
    log_path = tmp_path / "lost.log"
    stopped = tmp_path / "server-stopped"  # the test runs until then: the server cannot finish it

    def stop_once_the_test_runs() -> None:  # the server dies in the middle of the test, as in a crash
        try:
            wait_for(lambda: "# running the test script" in _text(log_path), "the test to run")
            # SIGKILL, not a polite stop: a stopping server may still finish the running test, and
            # whether it does must not decide this test.
            pong = smokeserver.request(server, "ping")
            assert pong and pong.get("pid"), pong
            os.kill(pong["pid"], signal.SIGKILL)
        finally:
            stopped.touch()

    stopper = threading.Thread(target=stop_once_the_test_runs)
    stopper.start()
    with StepLog(log_path) as log:
        result = smoke.run_in_node(runtime, job(wheels["good-3.14"], wait_until_exists(stopped)), log, config)
    stopper.join()
    assert result.ok
    text = log_path.read_text()
    assert "closed the connection before the test finished" in text
    assert "running this test in its own Node process instead" in text


def test_a_broken_boot_snapshot_is_dropped_and_the_test_still_runs(wheels, runtimes, tmp_path):
    copy = tmp_path / "pyodide" / NEWEST.pyodide_version
    copy.parent.mkdir()
    subprocess.run(["cp", "-al", str(runtimes[NEWEST.pyodide_version]), str(copy)], check=True)
    runtime = copy / "node_modules" / "pyodide"
    snapshot = smokeserver.snapshot_path(runtime, smokeserver.node_version(smokeserver.node_binary()))
    snapshot.unlink()
    snapshot.write_bytes(os.urandom(1 << 20))
    config = settings(WASMWHEEL_SMOKE_IDLE="2")
    with StepLog(tmp_path / "s.log") as log:
        result = smoke.run_in_node(runtime, job(wheels["good-3.14"]), log, config)
    assert result.ok
    server = smokeserver.Server.for_runtime(runtime, config)
    assert "booting from the snapshot fails; booting without it" in server.log_path.read_text()
    assert not snapshot.exists()
    smokeserver.stop(server)


# -- expected failures ----------------------------------------------------------------------------


def test_an_expected_failure_passes_the_step_and_says_why(wheels, runtimes, tmp_path):
    broken = job(wheels["shared-memory"])
    with StepLog(tmp_path / "x.log") as log:
        result = smoke.run_in_node(runtime_package(runtimes, NEWEST.pyodide_version), broken, log, settings())
        facts = smoke.conclude(
            result, broken, environment="node", where="Pyodide", log=log, expected_failure="threads in Node only"
        )
        assert facts == {
            "outcome": "expected failure",
            "environment": "node",
            "mark": "node",
            "reason": "threads in Node only",
        }
        # The mark is for one environment: the browser's is not this one.
        with pytest.raises(smoke.SmokeFailed):
            smoke.conclude(result, broken, environment="browser", where="Pyodide", log=log)
        good = job(wheels["good-3.14"])
        result = smoke.run_in_node(runtime_package(runtimes, NEWEST.pyodide_version), good, log, settings())
        facts = smoke.conclude(
            result,
            good,
            environment="node",
            where="Pyodide",
            log=log,
            expected_failure="why",
            recipe_file="recipes/t.toml",
        )
        assert facts["outcome"] == "unexpected pass"
    assert (
        "passed, although [test.expected_failures] node says it fails (why): remove that mark from "
        "recipes/t.toml" in (tmp_path / "x.log").read_text()
    )


def test_an_infrastructure_failure_is_never_an_expected_failure():
    lost = smoke.SmokeResult(ok=False, stage="boot", error="Pyodide does not boot")
    with StepLog(None) as log, pytest.raises(smoke.SmokeFailed, match="Pyodide did not boot"):
        smoke.conclude(
            lost, job(Path("x.whl")), environment="node", where="Pyodide", log=log, expected_failure="node-only bug"
        )


# -- the recipe's [test] table --------------------------------------------------------------------

RECIPE = """\
[package]
name = "t"
version = "1.0"
[source]
path = "."
[test]
"""


@pytest.mark.parametrize(
    "extra, problem",
    [
        ("timeout = 0", "test.timeout: must be at least 1"),
        ('timeout = "60"', "test.timeout: expected an integer"),
        ("timeout = 7200", "test.timeout: 7200 s is more than 3600 s"),
        ('expected_failures = { deno = "x" }', "test.expected_failures.deno: unknown environment 'deno'"),
        ('expected_failures = { node = " " }', "test.expected_failures.node: empty reason"),
        (
            'expected_failures = { node = "a", browser = "b" }',
            "test.expected_failures: expects the test to fail everywhere",
        ),
        ('expected_failures = { "2026_0" = "a" }', "test.expected_failures: expects the test to fail everywhere"),
        (
            'expected_failures = { "node@2026_0" = "a", "browser@2026_0" = "b" }',
            "test.expected_failures: expects the test to fail everywhere",
        ),
        (
            'expected_failures = { "2023_0" = "x" }',
            "test.expected_failures.2023_0: unknown ABI '2023_0' (known: 2026_0)",
        ),
        (
            'expected_failures = { "deno@2026_0" = "x" }',
            """test.expected_failures."deno@2026_0": unknown environment""",
        ),
        ('expected_failures = { "node@" = "x" }', """test.expected_failures."node@": no ABI after @"""),
        ('expected_failures = "node"', "test.expected_failures: expected a table"),
        ("timout = 5", "test.timout: unknown key (did you mean `timeout`?)"),
    ],
)
def test_bad_test_settings_are_rejected_with_the_key(tmp_path, extra, problem):
    path = tmp_path / "t.toml"
    path.write_text(RECIPE + extra + "\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(path, ["2026_0"], tmp_path)
    assert str(err.value).startswith(f"{path}: {problem}")


def test_an_expected_failure_can_be_for_one_abi_or_one_environment_on_one_abi(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(
        RECIPE + 'expected_failures = { "2024_0" = "Python 3.12", "node@2025_0" = "Node only", browser = "no fork" }\n'
    )
    test = load_recipe(path, ["2024_0", "2025_0", "2026_0"], tmp_path).test
    assert test.expected_failure("node", "2024_0") == "Python 3.12"
    assert test.expected_failure("node", "2025_0") == "Node only"
    assert test.expected_failure_key("node", "2025_0") == "node@2025_0"
    assert test.expected_failure("node", "2026_0") is None
    assert test.expected_failure("browser", "2025_0") == "no fork"
    assert test.expected_failure("browser", "2024_0") == "Python 3.12"  # the ABI's mark is more specific
    assert test.config("node", "2024_0")["expected_failure"] == "Python 3.12"
    assert test.config("node", "2026_0")["expected_failure"] is None
    # A mark for an ABI the recipe leaves out would never apply.
    path.write_text(
        RECIPE.replace("[test]", '[build]\nskip_abis = { "2024_0" = "3.13+" }\n[test]')
        + 'expected_failures = { "2024_0" = "x" }\n'
    )
    with pytest.raises(ConfigError, match=r"test.expected_failures.2024_0: ABI 2024_0 is in \[build\] skip_abis"):
        load_recipe(path, ["2024_0", "2026_0"], tmp_path)


def test_test_settings_are_read_and_shape_the_step(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(RECIPE + 'timeout = 20\nexpected_failures = { browser = "uses fork" }\n')
    test = load_recipe(path, ["2026_0"], tmp_path).test
    assert test.timeout == 20
    assert test.expected_failures == {"browser": "uses fork"}
    assert test.config("browser")["expected_failure"] == "uses fork"
    assert test.config("node")["expected_failure"] is None
    path.write_text(RECIPE)
    assert load_recipe(path, ["2026_0"], tmp_path).test.timeout == 300


def test_a_script_with_a_top_level_await_loads_and_runs_in_pyodide(wheels, runtimes, tmp_path):
    # Pyodide runs [test] script with runPythonAsync, which allows `await` outside a function:
    # the recipe check must accept what the runtime runs, and still refuse a real syntax error.
    path = tmp_path / "t.toml"
    path.write_text(
        RECIPE + "script = '''\nimport asyncio, hello_pyo3\nawait asyncio.sleep(0)\n"
        "print('awaited', hello_pyo3.sum_as_string(2, 3))\n'''\n"
    )
    script = load_recipe(path, ["2026_0"], tmp_path).test.script
    facts, message, log = smoke_test(runtimes, job(wheels["good-3.14"], script), tmp_path)
    assert message == "" and facts["outcome"] == "passed"
    assert "awaited 5" in log
    path.write_text(RECIPE + "script = '''\nawait asyncio.sleep(0))\n'''\n")
    with pytest.raises(ConfigError, match=r"test\.script: Python syntax error on line 1: unmatched '\)'"):
        load_recipe(path, ["2026_0"], tmp_path)


# -- test requirements ----------------------------------------------------------------------------


@pytest.fixture
def index(tmp_path, monkeypatch) -> Path:
    """A local package index (find-links folder) with pure-Python wheels; pip sees nothing else."""
    links = tmp_path / "index"
    pack(
        links,
        "smokedep",
        {"smokedep.py": b"import smokedep_base\nVALUE = smokedep_base.BASE + 1\n"},
        requires="smokedep-base>=1",
    )
    pack(links, "smokedep_base", {"smokedep_base.py": b"BASE = 41\n"})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    return links


@pytest.mark.slow  # starts pip in a subprocess
def test_test_requirements_for_a_prerelease_python_are_downloaded(index, tmp_path):
    """ABI 2026_5's Python is 3.15.0rc1, which pip's --python-version refuses as written (pycrdt's smoke test
    stopped there)."""
    pre = ABIS["2026_5"].python
    assert re.search(r"[a-z]", pre), f"2026_5's Python is no pre-release any more ({pre}): pick another version"
    assert wheelhouse.pip_python_version(pre) == re.match(r"[\d.]+\d", pre).group(0)
    layout = Layout(Settings.from_env(REPO, {"WASMWHEEL_CACHE": str(tmp_path / "cache")}))
    with StepLog(tmp_path / "req.log") as log:
        found = wheelhouse.fetch_test_requirements(["smokedep==1.0"], pre, layout, log)
    assert sorted(w.name for w in found) == ["smokedep-1.0-py3-none-any.whl", "smokedep_base-1.0-py3-none-any.whl"]


def test_test_requirements_are_downloaded_once_and_installed_first(index, wheels, runtimes, tmp_path):
    layout = Layout(Settings.from_env(REPO, {"WASMWHEEL_CACHE": str(tmp_path / "cache")}))
    with StepLog(tmp_path / "req.log") as log:
        found = wheelhouse.fetch_test_requirements(["smokedep==1.0"], NEWEST.python, layout, log)
    assert sorted(w.name for w in found) == ["smokedep-1.0-py3-none-any.whl", "smokedep_base-1.0-py3-none-any.whl"]
    assert all(w.is_relative_to(tmp_path / "cache" / "wheelhouse" / NEWEST.python) for w in found)
    shutil.rmtree(index)  # offline from now on
    with StepLog(tmp_path / "again.log") as log:
        again = wheelhouse.fetch_test_requirements(["smokedep==1.0"], NEWEST.python, layout, log)
    assert again == found
    assert "pip download" not in (tmp_path / "again.log").read_text()
    script = "import hello_pyo3, smokedep\nassert smokedep.VALUE == 42\n"
    _facts, message, log_text = smoke_test(runtimes, job(wheels["good-3.14"], script, preload=tuple(found)), tmp_path)
    assert message == ""
    assert log_text.index("installing smokedep") < log_text.index("installing hello_pyo3")


@pytest.mark.slow  # starts pip in a subprocess
def test_missing_test_requirements_are_all_named(index, tmp_path):
    layout = Layout(Settings.from_env(REPO, {"WASMWHEEL_CACHE": str(tmp_path / "cache")}))
    with StepLog(tmp_path / "req.log") as log, pytest.raises(wheelhouse.RequirementsUnavailable) as err:
        wheelhouse.fetch_test_requirements(
            ["smokedep==1.0", "nothere==2.0", "alsomissing"], NEWEST.python, layout, log, "recipes/t.toml"
        )
    message = str(err.value)
    assert message.startswith(
        "test requirements of recipes/t.toml not available as pure-Python wheels for "
        f"Python {NEWEST.python}: nothere==2.0, alsomissing ("
    )
    folder = wheelhouse.folder(layout, ["smokedep==1.0", "nothere==2.0", "alsomissing"], NEWEST.python)
    assert wheelhouse.cached(folder) is None and not folder.exists()


# -- the browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> str:
    from wasmwheel.smoke.browser import BrowserUnavailable, find_chromium

    try:
        return find_chromium()
    except BrowserUnavailable as exc:
        pytest.fail(f"{exc} (see .ci/run)")


def test_the_same_smoke_test_runs_in_headless_chromium(chromium, wheels, runtimes, tmp_path):
    from wasmwheel.smoke import browser

    runtime = runtime_package(runtimes, NEWEST.pyodide_version)
    for key, expect in (("good-3.14", None), ("shared-memory", "mismatch in shared state of memory")):
        the_job = job(wheels[key], SCRIPT + "import js\nprint('user agent:', js.navigator.userAgent)\n")
        with StepLog(tmp_path / f"{key}.log") as log:
            data = browser.run_in_browser(
                runtime, the_job.wheels, the_job.payload([""] * len(the_job.wheels)), the_job.timeout, log, chromium
            )
        result = smoke.SmokeResult.from_json(data)
        text = (tmp_path / f"{key}.log").read_text()
        assert "(CORS)" in text and "HeadlessChrome" in text
        if expect is None:
            assert result.ok, text
            assert "user agent: Mozilla/5.0" in text
        else:
            assert result.stage == "load" and expect in result.error


def test_the_browser_reports_how_a_test_ended_too(chromium, wheels, runtimes, tmp_path):
    from wasmwheel.smoke import browser

    runtime = runtime_package(runtimes, NEWEST.pyodide_version)
    for ending in ("sys.exit(3)", "os._exit(3)"):
        script, line, _ = ENDINGS[ending]
        the_job = job(wheels["good-3.14"], SCRIPT + script)
        with StepLog(tmp_path / "b.log") as log:
            data = browser.run_in_browser(
                runtime, the_job.wheels, the_job.payload([""] * len(the_job.wheels)), the_job.timeout, log, chromium
            )
            with pytest.raises(smoke.SmokeFailed) as err:
                smoke.conclude(
                    smoke.SmokeResult.from_json(data), the_job, environment="browser", where="Pyodide", log=log
                )
        assert str(err.value).splitlines()[0].endswith(f"(headless Chromium): {line}")


# -- through doit -----------------------------------------------------------------------------------


def test_doit_smoke_shows_a_line_per_wheel_and_keeps_the_output_in_its_log(project):
    run = project.doit("smoke:hello-pyo3@2026_0")
    assert "smoke:hello-pyo3@2026_0" in run.executed
    assert re.search(r"^ok +smoke:hello-pyo3@2026_0 ", run.output, flags=re.M)
    log = project.layout.log("smoke", "2026_0", "hello-pyo3").read_text()
    assert "Loaded hello_pyo3" in log and "a fresh interpreter booted" in log
    assert "hello_pyo3-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl in Pyodide 314.0.7 (Node): ok (" in log
    assert project.doit("smoke:hello-pyo3@2026_0").executed == []
    project.edit_toml("recipes/hello-pyo3.toml", lambda doc: doc["test"].__setitem__("timeout", 900))
    assert project.doit("smoke:hello-pyo3@2026_0").executed == ["smoke:hello-pyo3@2026_0"]


FAILING = 'import hello_pyo3\nassert hello_pyo3.sum_as_string(2, 2) == "5", "wrong sum"\n'


def test_doit_smoke_failure_shows_the_cause_and_log_path(project):
    project.edit_toml("recipes/hello-pyo3.toml", lambda doc: doc["test"].__setitem__("script", FAILING))
    run = project.doit("smoke:hello-pyo3@2026_0", check=False)
    log_path = project.layout.log("smoke", "2026_0", "hello-pyo3")
    assert run.failed == ["smoke:hello-pyo3@2026_0"]
    assert "(Node): the test script failed: AssertionError: wrong sum" in run.output
    assert 'File "recipes/hello-pyo3.toml [test] script", line 2, in <module>' in run.output
    assert f"full log: {log_path}" in run.output
    assert "_pyodide/_base.py" in log_path.read_text()


def test_doit_expected_node_failure_passes_with_its_reason(project):
    project.edit_toml(
        "recipes/hello-pyo3.toml",
        lambda doc: doc["test"].update({"script": FAILING, "expected_failures": {"node": "sum is off by one in Node"}}),
    )
    run = project.doit("smoke:hello-pyo3@2026_0")
    assert run.executed[-1] == "smoke:hello-pyo3@2026_0" and run.failed == []
    log = project.layout.log("smoke", "2026_0", "hello-pyo3").read_text()
    assert "failed as expected (sum is off by one in Node): the test script failed: AssertionError: wrong sum" in log


def test_doit_expected_failure_on_one_abi_is_xfail_and_a_pass_is_xpass(project):
    mark = {"2026_0": "sum is off by one on Python 3.14"}
    project.edit_toml(
        "recipes/hello-pyo3.toml", lambda doc: doc["test"].update({"script": FAILING, "expected_failures": mark})
    )
    run = project.doit("smoke:hello-pyo3@2026_0", "smoke:hello-pyo3@2025_0", check=False)
    # The mark is for 2026_0 only: the same failure on 2025_0 fails that step.
    assert run.failed == ["smoke:hello-pyo3@2025_0"]
    assert "smoke:hello-pyo3@2026_0" in run.executed
    log = project.layout.log("smoke", "2026_0", "hello-pyo3").read_text()
    assert "# expected failure ([test.expected_failures] 2026_0): sum is off by one on Python 3.14" in log
    rows = {r["abi"]: r for r in json.loads(project.layout.report_json.read_text())["rows"]}
    assert rows["2026_0"]["status"] == "xfail" and rows["2026_0"]["reason"] == mark["2026_0"]
    assert rows["2025_0"]["status"] == "failed"
    assert "xfail (expected failure): sum is off by one on Python 3.14" in project.layout.report_md.read_text()

    # Fixed: the step passes, and says loudly that the mark is stale.
    project.edit_toml("recipes/hello-pyo3.toml", lambda doc: doc["test"].__setitem__("script", SCRIPT))
    run = project.doit("smoke:hello-pyo3@2026_0")
    assert run.failed == [] and "smoke:hello-pyo3@2026_0" in run.executed
    assert (
        "UNEXPECTED PASS: passed, although [test.expected_failures] 2026_0 says it fails (sum is off by one "
        "on Python 3.14): remove that mark from recipes/hello-pyo3.toml" in run.output
    )
    row = {r["abi"]: r for r in json.loads(project.layout.report_json.read_text())["rows"]}["2026_0"]
    assert row["status"] == "xpass" and "remove that mark from hello-pyo3.toml" in row["hint"]
    assert "XPASS (unexpected pass)" in project.layout.report_md.read_text()


def test_doit_two_crates_in_parallel_share_one_server_and_stay_isolated(project):
    project.add_crate("hello-two", "hello_two")
    project.edit_toml("recipes/hello-pyo3.toml", lambda doc: doc["test"].__setitem__("script", POLLUTE))
    project.edit_toml("recipes/hello-two.toml", lambda doc: doc["test"].__setitem__("script", CHECK_CLEAN))
    # One interpreter slot: hello-two's test must meet a fresh one after hello-pyo3's.
    run = project.doit(
        "-n", "2", "smoke:hello-pyo3@2026_0", "smoke:hello-two@2026_0", env={"WASMWHEEL_SMOKE_WORKERS": "1"}
    )
    assert {"smoke:hello-pyo3@2026_0", "smoke:hello-two@2026_0"} <= set(run.executed)
    logs = [project.layout.log("smoke", "2026_0", crate).read_text() for crate in ("hello-pyo3", "hello-two")]
    pids = {line.split()[4] for text in logs for line in text.splitlines() if "smoke server pid" in line}
    assert len(pids) == 1


def test_doit_smoke_browser_task(project, chromium):
    run = project.doit("smoke-browser:hello-pyo3@2026_0")
    assert "smoke-browser:hello-pyo3@2026_0" in run.executed and run.failed == []
    log = project.layout.log("smoke-browser", "2026_0", "hello-pyo3").read_text()
    assert "HeadlessChrome" in log and "Loaded hello_pyo3" in log
    assert "in Pyodide 314.0.7 (headless Chromium): ok (" in log
    build = project.doit("list", "--all")
    assert "smoke-browser:hello-pyo3@2026_0" in build.output
