"""The smoke step: install a wheel in the ABI's real Pyodide under Node and run the recipe's test.

Failures report the loader's real error (shared memory, missing dylink section,
missing PyInit, ...) with a hint, not the misleading import error that follows it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from .errors import CommandFailed, WasmwheelError
from .runner import StepLog, run

RESULT_PREFIX = "WASMWHEEL-RESULT "
DEFAULT_TIMEOUT = 300

# Loader messages (ABI-FACTS.md section 4) and what they mean for the wheel.
KNOWN_LOAD_ERRORS: tuple[tuple[str, str], ...] = (
    ("mismatch in shared state of memory",
     "the module was built with -pthread or atomics (shared memory); Pyodide has no threads: rebuild without -pthread"),
    ("need the dylink section to be first",
     "the module is not an Emscripten side module; link with -sSIDE_MODULE=2 (maturin adds it for wasm32-unknown-emscripten)"),
    ("does not define module export function",
     "the module does not export PyInit_<name> for its file name; check the module name in Cargo.toml/pyproject.toml"),
    ("bad export type for",
     "the module imports something the runtime provides with another type; usually an Emscripten/ABI mismatch"),
    ("exception handling", "the module's exception-handling ABI does not match the runtime (JS vs wasm EH); check the ABI's flags"),
)


class SmokeFailed(WasmwheelError):
    pass


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    stage: str
    error: str
    output: str

    def hint(self) -> str:
        return loader_hint(self.error)


def loader_hint(message: str) -> str:
    for needle, hint in KNOWN_LOAD_ERRORS:
        if needle in message:
            return hint
    return ""


def script_path() -> Path:
    return Path(str(resources.files("wasmwheel") / "js" / "smoke.mjs"))


def parse_result(output: str) -> dict[str, Any] | None:
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_PREFIX):
            try:
                return json.loads(line[len(RESULT_PREFIX):])
            except ValueError:
                return None
    return None


def run_smoke(runtime: Path, wheels: Sequence[Path], script: str, log: StepLog,
              timeout: float = DEFAULT_TIMEOUT) -> SmokeResult:
    """Boot Pyodide from ``runtime`` (the npm package folder), load ``wheels`` in order, run ``script``."""
    node = shutil.which("node")
    if not node:
        raise SmokeFailed("node not found on PATH: smoke tests need Node.js >= 18")
    with tempfile.TemporaryDirectory(prefix="wasmwheel-smoke-") as tmp:
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"runtime": str(runtime), "wheels": [str(Path(w).resolve()) for w in wheels],
                                   "script": script}))
        try:
            proc = run([node, script_path(), job], log=log, check=False, timeout=timeout, what="smoke test")
        except CommandFailed as exc:
            if "timed out" in str(exc):
                return SmokeResult(False, "timeout", f"the smoke test did not finish within {timeout:.0f}s (killed)", "")
            raise
    data = parse_result(proc.stdout)
    if data is None:
        return SmokeResult(False, "crash", f"node exited with code {proc.returncode} without a result", proc.stdout)
    return SmokeResult(bool(data.get("ok")), str(data.get("stage", "")), str(data.get("error", "") or ""), proc.stdout)


def smoke_wheel(runtime: Path, wheel: Path, script: str, log: StepLog, timeout: float = DEFAULT_TIMEOUT,
                requirements: Sequence[Path] = ()) -> dict[str, Any]:
    result = run_smoke(runtime, [*requirements, wheel], script, log, timeout)
    if not result.ok:
        first = result.error.strip().splitlines()
        summary = first[-1] if result.stage == "test" and first else (first[0] if first else "")
        hint = result.hint()
        where = {"load": "loading the wheel failed", "test": "the test script failed", "boot": "Pyodide did not boot",
                 "timeout": "timed out", "crash": "node crashed"}.get(result.stage, result.stage)
        message = f"{Path(wheel).name}: {where}: {summary}"
        if hint:
            message += f"\n  hint: {hint}"
        if result.stage == "test" and len(first) > 1:
            message += "\n" + "\n".join("  " + line for line in first[-15:])
        raise SmokeFailed(message)
    log.note(f"{Path(wheel).name}: smoke test passed")
    return {"wheel": str(wheel)}
