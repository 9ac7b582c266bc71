"""The smoke step: install a wheel in its ABI's real Pyodide and run the recipe's test.

A job installs the wheel's test requirements (and, later, the wheels of the recipes
it depends on) from local files, then the wheel, then runs the recipe's
``[test] script``, each time in a fresh interpreter. Where it runs:

- ``node``: the runtime's smoke server (smokeserver.py: pre-booted, single-use
  interpreters shared by all smoke steps of a runtime), or one Node process per job
  (``WASMWHEEL_SMOKE_SERVER=0``, and the fallback when the server is lost);
- ``browser``: headless Chromium (browser.py).

Failures report the real cause (the loader's own error, not the misleading import
error that follows it; the test's traceback without Pyodide's frames) with a hint.
A recipe may expect a failure in one environment (``[test.expected_failures]``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmwheel.fsutil import file_snapshot, keep_if_same
from wasmwheel.model.abi import Abi
from wasmwheel.model.errors import CommandFailed, WasmwheelError
from wasmwheel.model.layout import Layout
from wasmwheel.model.recipe import DEFAULT_TEST_TIMEOUT, Recipe
from wasmwheel.model.settings import Settings
from wasmwheel.pipeline import hints
from wasmwheel.runner import StepLog, run
from wasmwheel.smoke import browser, wheelhouse
from wasmwheel.smoke import server as smokeserver

if TYPE_CHECKING:  # annotations only: a doit start does not import the facts' classes
    from wasmwheel.model.facts import RuntimeFacts, WheelFacts

RESULT_PREFIX = "WASMWHEEL-RESULT "
BOOT_ALLOWANCE = 120  # seconds a one-process-per-job run may spend booting, on top of the job's timeout
ENVIRONMENTS = {"node": "Node", "browser": "headless Chromium"}

STAGES = {
    "boot": "Pyodide did not boot",
    "load": "installing the wheel failed",
    "test": "the test script failed",
    "timeout": "timed out",
    "exit": "the interpreter exited",
    "crash": "the interpreter crashed",
    "server": "the smoke server failed",
    "cancelled": "cancelled",
}
_SO_RE = re.compile(r"^(?:.*/)?(?P<module>[^/.]+)\.cpython-3(?P<minor>\d+)-wasm32-emscripten\.so$")
_MISSING_MODULE_RE = re.compile(r"ModuleNotFoundError: No module named '(?P<name>[^']+)'")


class SmokeFailed(WasmwheelError):
    pass


@dataclass(frozen=True)
class SmokeJob:
    """One smoke test: install ``preload`` then ``wheel`` (in order), run ``script``."""

    wheel: Path
    script: str
    filename: str  # names the script in tracebacks
    timeout: int  # seconds for installing and testing
    python: str = ""  # the runtime's Python, "3.14" (for diagnosis)
    preload: tuple[Path, ...] = ()  # test requirements, then wheels of recipes this one depends on

    @property
    def wheels(self) -> tuple[Path, ...]:
        return (*self.preload, self.wheel)

    def payload(self, urls: Sequence[str]) -> dict[str, Any]:
        """The JSON job js/smoke-core.mjs runs, given each wheel's URL."""
        return {
            "wheels": [{"name": w.name, "url": u} for w, u in zip(self.wheels, urls, strict=True)],
            "script": self.script,
            "filename": self.filename,
        }

    def file_payload(self) -> dict[str, Any]:
        return self.payload([Path(w).resolve().as_uri() for w in self.wheels])


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    stage: str
    error: str = ""
    error_type: str = ""
    wheel: str = ""  # the wheel whose installation failed
    timings: dict[str, float] = field(default_factory=dict)
    output: str = ""  # everything the runtime and the test printed (also in the step log)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SmokeResult:
        return cls(
            ok=bool(data.get("ok")),
            stage=str(data.get("stage") or ""),
            error=str(data.get("error") or ""),
            error_type=str(data.get("error_type") or ""),
            wheel=str(data.get("wheel") or ""),
            timings={k: float(v) for k, v in (data.get("timings") or {}).items() if isinstance(v, (int, float))},
            output=str(data.get("output") or ""),
        )

    @property
    def test_seconds(self) -> float:
        """Installing the wheels and running the script (not booting the interpreter)."""
        return sum(self.timings.get(k, 0.0) for k in ("load", "test"))

    @property
    def is_test_failure(self) -> bool:
        """A failure of the wheel or its test (as opposed to the machinery around it)."""
        return not self.ok and self.stage in ("load", "test", "timeout", "exit", "crash")


# -- diagnosis ---------------------------------------------------------------------------------


def known_hint(message: str) -> str:
    """The fix for a known loader or import error (hints.py, shared with the other steps)."""
    known = hints.hint_for(message)
    return known.fix if known else ""


def clean_traceback(text: str, filename: str) -> str:
    """Drop Pyodide's own frames above the test script's first frame."""
    lines = text.rstrip().splitlines()
    marker = f'File "{filename}"'
    for i, line in enumerate(lines):
        if line.strip().startswith(marker):
            head = [lines[0]] if lines and lines[0].startswith("Traceback") else []
            return "\n".join(head + lines[i:])
    return "\n".join(lines)


def _wheel_files(wheel: Path) -> list[str]:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return []


def _extension_modules(wheel: Path) -> dict[str, int]:
    """Extension modules in a wheel: module name -> the Python minor its file name is for."""
    return {m.group("module"): int(m.group("minor")) for m in map(_SO_RE.match, _wheel_files(wheel)) if m}


def _top_level_names(wheel: Path) -> set[str]:
    tops = {name.split("/", 1)[0] for name in _wheel_files(wheel)}
    return {top.split(".", 1)[0] for top in tops if not top.endswith((".dist-info", ".data"))}


def diagnose(result: SmokeResult, job: SmokeJob, recipe_file: str = "the recipe") -> tuple[str, str, str]:
    """(summary line, hint, details) for a failed result."""
    error = result.error.strip()
    details = ""
    if result.stage == "load":
        lines = [line for line in error.splitlines() if line.strip()]
        summary = lines[-1].strip(" '") if lines else "unknown error"
        hint = known_hint(error)
        details = error
        if not hint:
            missing = _missing_libraries(job, result.wheel)
            if missing:
                summary = (
                    f'Failed to find dynamic library "{missing[0][0]}" (needed by {missing[0][1]}; '
                    f"this Pyodide says only: {summary})"
                )
                hint = known_hint(summary)
    elif result.stage == "test":
        cleaned = clean_traceback(error, job.filename)
        summary = exception_line(cleaned, result.error_type)
        hint = known_hint(error)
        if not hint and re.search(r"\b(ImportError|ModuleNotFoundError)\b", error):
            hint = _other_python_hint(job)
        missing = _MISSING_MODULE_RE.search(error)
        if missing and not hint:
            hint = _missing_module_hint(missing.group("name"), job, recipe_file)
        details = cleaned
    elif result.stage == "timeout":
        summary = error
        hint = f"a test that is just slow needs a larger [test] timeout in {recipe_file} (now {job.timeout} s)"
    else:
        summary = error.splitlines()[0] if error else "no details"
        hint = known_hint(error)
        # JavaScript frames of the runtime say nothing to a user (the log keeps them); the
        # Python stack Pyodide dumps after a fatal error says where the test was.
        details = "\n".join(line for line in error.splitlines()[1:] if not line.startswith("    at "))
        stack = _python_stack(result.output)
        if stack:
            details = (details + "\n" if details else "") + stack
    return summary, hint, details


_EXCEPTION_RE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::|$)")


def exception_line(traceback: str, error_type: str = "") -> str:
    """The line naming the exception in a traceback: not a note printed after it (Pyodide adds
    some to ModuleNotFoundError), nor the last line of a message that spans several."""
    lines = traceback.rstrip().splitlines()
    if error_type:
        for line in reversed(lines):
            match = _EXCEPTION_RE.match(line)
            if match and match.group("type").rsplit(".", 1)[-1] == error_type.rsplit(".", 1)[-1]:
                return line
    frames = [i for i, line in enumerate(lines) if line.startswith((" ", "\t"))]
    after = lines[frames[-1] + 1 :] if frames else lines[-1:]
    return after[0] if after else (error_type or "an exception")


def _python_stack(output: str) -> str:
    """The Python stack Pyodide dumps after a fatal error, without the standard library's frames."""
    lines = output.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Stack (most recent call first):"):
            frames = []
            for line in lines[i + 1 :]:
                if not line.startswith("  File "):
                    break
                if ".zip/" not in line:
                    frames.append(line)
            return "\n".join([lines[i], *frames]) if frames else ""
    return ""


def _missing_libraries(job: SmokeJob, failed: str) -> list[tuple[str, str]]:
    """(library, module needing it) for the shared libraries that the extension modules of the
    wheel that failed to install need and no wheel of the job provides."""
    from wasmwheel.audit.wasm import WasmError, parse_module

    provided: set[str] = set()
    needing: list[tuple[str, bytes]] = []
    for wheel in job.wheels:
        try:
            with zipfile.ZipFile(wheel) as zf:
                for name in zf.namelist():
                    if name.endswith(".so") or ".so." in name.rsplit("/", 1)[-1]:
                        provided.add(name.rsplit("/", 1)[-1])
                        if wheel.name == (failed or job.wheel.name) and name.endswith(".so"):
                            needing.append((name.rsplit("/", 1)[-1], zf.read(name)))
        except (OSError, zipfile.BadZipFile):
            continue
    missing = []
    for module_name, data in needing:
        try:
            dylink = parse_module(data).dylink
        except WasmError:
            continue
        missing += [(lib, module_name) for lib in (dylink.needed if dylink else ()) if lib not in provided]
    return missing


def _other_python_hint(job: SmokeJob) -> str:
    """An extension module of the wheel built for another Python: the import finds no module
    (ModuleNotFoundError for the module itself, ImportError or a missing submodule for a
    package that imports it, as in pydantic_core and msgspec)."""
    minor = int(job.python.split(".")[1]) if job.python.count(".") else None
    for module, built in _extension_modules(job.wheel).items():
        if minor is not None and built != minor:
            return (
                f"the wheel's extension module is for Python 3.{built} "
                f"({module}.cpython-3{built}-wasm32-emscripten.so) but this Pyodide runs Python {job.python}: "
                f"build it with the ABI's interpreter (-i python{job.python})"
            )
    return ""


def _missing_module_hint(name: str, job: SmokeJob, recipe_file: str) -> str:
    top = name.split(".", 1)[0]
    provided = set().union(*(_top_level_names(w) for w in job.wheels))
    if top in provided:
        return ""
    return (
        f"{top} is not installed: add the distribution that provides it to [test] requirements in {recipe_file} "
        f"(pure-Python wheels), or install the wheel of the recipe that builds it first"
    )


# -- running -----------------------------------------------------------------------------------


def script_path() -> Path:
    return smokeserver.script("smoke.mjs")


def parse_result(output: str) -> dict[str, Any] | None:
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_PREFIX):
            try:
                return json.loads(line[len(RESULT_PREFIX) :])
            except ValueError:
                return None
    return None


def run_in_node_process(runtime: Path, job: SmokeJob, log: StepLog, snapshot: Path | None = None) -> SmokeResult:
    """One Node process for one job: boot Pyodide from ``runtime`` (the npm package folder), run, exit.

    js/smoke.mjs ends the test after ``job.timeout`` seconds itself; the limit here only
    catches a Node that never boots."""
    node = shutil.which("node")
    if not node:
        raise SmokeFailed("node not found on PATH: smoke tests need Node.js >= 18")
    limit = job.timeout + BOOT_ALLOWANCE
    with tempfile.TemporaryDirectory(prefix="wasmwheel-smoke-") as tmp:
        job_file = Path(tmp) / "job.json"
        job_file.write_text(
            json.dumps(
                {
                    **job.file_payload(),
                    "runtime": str(runtime),
                    "timeout": job.timeout,
                    "snapshot": str(snapshot) if snapshot else None,
                }
            )
        )
        try:
            proc = run([node, script_path(), job_file], log=log, check=False, timeout=limit, what="smoke test")
        except CommandFailed as exc:
            if "timed out" in str(exc):
                return SmokeResult(
                    False,
                    "timeout",
                    f"the smoke test did not finish within {job.timeout} s "
                    f"(+ {BOOT_ALLOWANCE} s to boot) and was killed",
                )
            raise
    data = parse_result(proc.stdout)
    if data is None:
        why = f"node exited with code {proc.returncode} without a result"
        if proc.returncode == 13:
            why += " (the test awaits something that never completes)"
        return SmokeResult(False, "crash", why, output=proc.stdout)
    return SmokeResult.from_json({**data, "output": proc.stdout})


def run_in_node(runtime: Path, job: SmokeJob, log: StepLog, settings: Settings) -> SmokeResult:
    """Run on the runtime's smoke server (or one process per job when it is turned off or lost)."""
    if not settings.smoke_server:
        log.note("WASMWHEEL_SMOKE_SERVER=0: booting one Node process for this test")
        return run_in_node_process(runtime, job, log)
    server = smokeserver.Server.for_runtime(runtime, settings)
    try:
        data = smokeserver.run_job(server, job.file_payload(), job.timeout, log)
    except smokeserver.SmokeServerError as exc:
        data = {"ok": False, "stage": "server", "error": str(exc)}
    result = SmokeResult.from_json(data)
    if result.stage == "server":
        log.note(f"{result.error}; running this test in its own Node process instead")
        return run_in_node_process(runtime, job, log, smokeserver.ensure_snapshot(runtime, log))
    return result


def run_smoke(
    runtime: Path,
    wheels: Sequence[Path],
    script: str,
    log: StepLog,
    timeout: int = DEFAULT_TEST_TIMEOUT,
    settings: Settings | None = None,
) -> SmokeResult:
    """Install ``wheels`` in order in a fresh interpreter of ``runtime`` and run ``script``: the
    smoke test without a recipe (for tools and tests). Settings come from the environment."""
    *preload, wheel = [Path(w) for w in wheels]
    job = SmokeJob(wheel=wheel, script=script, filename="<smoke test>", timeout=int(timeout), preload=tuple(preload))
    return run_in_node(Path(runtime), job, log, settings or Settings.from_env(Path.cwd()))


# -- the outcome --------------------------------------------------------------------------------


def conclude(
    result: SmokeResult,
    job: SmokeJob,
    *,
    environment: str,
    where: str,
    log: StepLog,
    expected_failure: str | None = None,
    recipe_file: str = "the recipe",
    expected_key: str | None = None,
) -> dict[str, Any]:
    """Log one line for the wheel; raise SmokeFailed unless it passed or failed as expected.

    ``expected_failure``: the reason of the recipe's mark that applies (``expected_key``,
    default the environment), if any. Returns facts for the step's stamp: ``outcome`` is
    "passed", "expected failure" (xfail) or "unexpected pass" (xpass).
    """
    mark = f"[test.expected_failures] {expected_key or environment}"
    log.write(f"{RESULT_PREFIX}{json.dumps({**dataclasses.asdict(result), 'output': None})}\n")
    label = f"{job.wheel.name} in {where} ({ENVIRONMENTS[environment]})"
    if result.ok:
        if expected_failure:
            log.note(
                f"{label}: UNEXPECTED PASS: passed, although {mark} says it fails ({expected_failure}): "
                f"remove that mark from {recipe_file}",
                console=True,
            )
            return {
                "outcome": "unexpected pass",
                "environment": environment,
                "mark": expected_key or environment,
                "reason": expected_failure,
            }
        log.note(f"{label}: ok ({result.test_seconds:.2f} s)")
        return {"outcome": "passed", "environment": environment, "timings": result.timings}
    log.write(f"# the {result.stage} stage failed:\n{result.error.rstrip()}\n")
    summary, hint, details = diagnose(result, job, recipe_file)
    where_failed = STAGES.get(result.stage, result.stage)
    if result.wheel and result.wheel != job.wheel.name:
        where_failed = f"installing {result.wheel} failed"
    if expected_failure and result.is_test_failure:
        log.write(f"# expected failure ({mark}): {expected_failure}\n")
        log.note(f"{label}: failed as expected ({expected_failure}): {where_failed}: {summary}")
        return {
            "outcome": "expected failure",
            "environment": environment,
            "mark": expected_key or environment,
            "reason": expected_failure,
        }
    log.note(f"{label}: FAILED: {where_failed}: {summary}" + (f" (log: {log.path})" if log.path else ""))
    message = f"{label}: {where_failed}: {summary}"
    if hint:
        message += f"\n  hint: {hint}"
    if details and details.strip() != summary.strip():
        message += "\n" + "\n".join("  " + line for line in details.splitlines()[-20:])
    raise SmokeFailed(message)


# -- the step ---------------------------------------------------------------------------------


def smoke_wheel(
    recipe: Recipe,
    abi: Abi,
    wheel: Path,
    runtime: Path,
    layout: Layout,
    log: StepLog,
    *,
    environment: str = "node",
    dependencies: Sequence[Path] = (),
) -> dict[str, Any]:
    """Smoke-test ``wheel`` in the ABI's Pyodide (``runtime``: the npm package folder) in ``environment``.

    ``dependencies``: wheels of other recipes, installed before the wheel (after the test requirements).
    """
    try:
        recipe_file = recipe.path.resolve().relative_to(layout.settings.root).as_posix()
    except ValueError:
        recipe_file = str(recipe.path)
    requirements = wheelhouse.fetch_test_requirements(recipe.test.requirements, abi.python, layout, log, recipe_file)
    job = SmokeJob(
        wheel=Path(wheel),
        script=recipe.test.script,
        filename=f"{recipe_file} [test] script",
        timeout=recipe.test.timeout,
        python=abi.python_minor,
        preload=(*requirements, *map(Path, dependencies)),
    )
    where = f"Pyodide {abi.pyodide_version}"
    log.write(
        f"# smoke-testing {job.wheel.name} in {where} ({ENVIRONMENTS[environment]})"
        + (f" with {', '.join(w.name for w in job.preload)}" if job.preload else "")
        + "\n"
    )
    if environment == "browser":
        chromium = browser.find_chromium(layout.settings.chromium)
        result = SmokeResult.from_json(
            browser.run_in_browser(runtime, job.wheels, job.payload([""] * len(job.wheels)), job.timeout, log, chromium)
        )
    else:
        result = run_in_node(runtime, job, log, layout.settings)
    return conclude(
        result,
        job,
        environment=environment,
        where=where,
        log=log,
        recipe_file=recipe_file,
        expected_failure=recipe.test.expected_failure(environment, abi.name),
        expected_key=recipe.test.expected_failure_key(environment, abi.name),
    )


def smoke_step(
    recipe: Recipe,
    abi: Abi,
    layout: Layout,
    wheel: WheelFacts,
    runtime: RuntimeFacts,
    test_wheels: Sequence[WheelFacts],
    log: StepLog,
    environment: str = "node",
) -> dict[str, Any]:
    """The smoke step: test the audited wheel. Under Node, a pass marks the wheel as tested
    (dist/<abi>/tested/<wheel>.json: what the index takes)."""
    path = Path(wheel.wheel)
    marker = layout.tested_marker(abi.name, path.name)
    before = None
    if environment == "node":  # until this test passes, the wheel is not one the index may take
        before = file_snapshot(marker)
        marker.unlink(missing_ok=True)
    facts = smoke_wheel(
        recipe,
        abi,
        path,
        Path(runtime.runtime),
        layout,
        log,
        environment=environment,
        dependencies=[Path(w.wheel) for w in test_wheels],
    )
    if environment == "node":
        marker.parent.mkdir(parents=True, exist_ok=True)
        mark = (
            json.dumps(
                {"wheel": path.name, "sha256": wheel.sha256, "crate": recipe.name, "version": recipe.version},
                sort_keys=True,
            )
            + "\n"
        )
        # The same wheel passed again (a changed test, say): the mark comes back exactly as it was, its
        # time included, so the index (which sees marks by their stat) does not rerun for nothing.
        keep_if_same(marker, mark.encode(), before)
    return {"wheel": str(path), **facts}
