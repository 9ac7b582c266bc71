"""The step runner: the doit action of every step. It takes the step's locks, reads the facts of the
inputs its declaration names (wasmwheel.pipeline.steps), calls the step's domain function with them,
and writes the step's stamp; a failure becomes one clear message with the log's path and a hint.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from wasmwheel.fsutil import (
    OutputsIntact,
    clean_stale_temps,
    file_lock,
    read_stamp,
    sha256_file,
    stamp_inputs,
    write_stamp,
)
from wasmwheel.model.abi import Abi
from wasmwheel.model.errors import CommandFailed, ConfigError, WasmwheelError
from wasmwheel.model.layout import Layout
from wasmwheel.model.recipe import Recipe
from wasmwheel.pipeline.steps import STEP_BY_NAME
from wasmwheel.runner import StepLog

# When this process started: a stamp newer than this, with our inputs, was made by another process.
_STARTED = time.time()


def inputs_key(config: Any, deps: list[str] | tuple[str, ...]) -> str:
    """Digest of what shapes a step's output: its config and the contents of its file_dep."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for dep in sorted(deps):
        h.update(b"\0" + dep.encode() + b"\0" + sha256_file(Path(dep)).encode())
    return h.hexdigest()


def _done_meanwhile(stamp: Path, key: str) -> bool:
    try:
        return stamp.stat().st_mtime >= _STARTED and stamp_inputs(stamp) == key and OutputsIntact(stamp)()
    except OSError:
        return False


def run_step(
    step: str,
    stamp: str,
    log_path: str,
    title: str,
    abi: Abi | None,
    recipe: Recipe | None,
    layout: Layout,
    *,
    config: Any = None,
    deps: tuple[str, ...] = (),
    inputs: tuple[tuple[str, str, str | tuple[str, ...]], ...] = (),
    recipes: dict[str, Recipe] | None = None,
) -> bool | TaskFailed:
    """doit action wrapper: run the step's function, write its stamp, turn errors into one clear failure.

    ``inputs``: (parameter, step, stamp) of each declared input (a tuple of stamps for other crates'
    wheels): their typed facts are handed to the step's function. Several doit processes may work on one tree
    (and on one cache): the step holds an exclusive lock on its stamp, and shared locks on its input
    stamps, so no two processes run one step at once and none replaces a step's input (a source tree,
    say) while it is used. A process that waited while another one ran this very step with the same
    inputs (``config`` and the contents of ``deps``) takes its result instead of running it again.
    """
    declared = STEP_BY_NAME[step]
    stamp_path = Path(stamp)
    reads = [p for _, _, paths in inputs for p in ((paths,) if isinstance(paths, str) else paths)]
    console = StepLog(None)
    with contextlib.ExitStack() as locks:
        for path in sorted(set(reads)):
            locks.enter_context(
                file_lock(Path(path), what=f"the input {Path(path).name} of {title}", log=console, shared=True)
            )
        locks.enter_context(file_lock(stamp_path, what=title, log=console))
        try:
            key = inputs_key(config, deps)
        except OSError as exc:  # a dependency vanished: let doit's next run decide
            return TaskFailed(f"{title}: cannot read an input: {exc}")
        if _done_meanwhile(stamp_path, key):
            console.note(f"{title}: done meanwhile by another wasmwheel process", console=True)
            return True
        clean_stale_temps(stamp_path.parent, prefix=f".{stamp_path.name}.")
        with StepLog(Path(log_path), title) as log:
            try:
                function = step_function(declared.run)
                wanted = _parameters(function)
                given: dict[str, Any] = {
                    "abi": abi,
                    "recipe": recipe,
                    "layout": layout,
                    "recipes": recipes,
                    "log": log,
                    **(declared.options or {}),
                }
                if "previous" in wanted:
                    given["previous"] = _facts(declared.facts, stamp_path) if stamp_path.exists() else None
                for param, upstream, paths in inputs:
                    if param in wanted:
                        kind = STEP_BY_NAME[upstream].facts
                        given[param] = (
                            _facts(kind, Path(paths))
                            if isinstance(paths, str)
                            else [_facts(kind, Path(p)) for p in paths]
                        )
                facts = function(**{name: given[name] for name in wanted if name in given})
                outputs = declared.outputs(facts, StepCall(abi, recipe, layout)) if declared.outputs else []
                write_stamp(stamp_path, [Path(p) for p in outputs], inputs=key, **facts)
                return True
            except WasmwheelError as exc:
                log.write(f"# FAILED: {exc}\n")
                return TaskFailed(failure_message(exc, log))
            except Exception:  # noqa: BLE001 - any bug fails this one step with its traceback in the log
                log.write(traceback.format_exc())
                return TaskFailed(f"internal error in {title} (a wasmwheel bug; traceback in {log.path})")


@dataclass(frozen=True)
class StepCall:
    """What a step's declared ``outputs`` may look at besides its facts."""

    abi: Abi | None
    recipe: Recipe | None
    layout: Layout


def step_function(run: str) -> Callable[..., dict]:
    """``"module:function"`` of a step declaration -> the function (its module imported now: a doit
    start imports no step's module)."""
    module, _, name = run.partition(":")
    return getattr(importlib.import_module(f"wasmwheel.{module}"), name)


@cache
def _parameters(function: Callable) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


def _facts(kind: str, stamp: Path) -> Any:
    """A stamp's facts, as the class its step declares (a plain dict for a step without one)."""
    data = read_stamp(stamp)
    return getattr(importlib.import_module("wasmwheel.model.facts"), kind).from_stamp(data) if kind else data


def failure_message(exc: WasmwheelError, log: StepLog) -> str:
    message = str(exc)
    tail = exc.output_tail if isinstance(exc, CommandFailed) else ""
    if tail:
        message += "\n" + "\n".join("  | " + line for line in tail.splitlines()[-40:])
    from wasmwheel.pipeline.hints import hint_for

    known = hint_for(f"{exc}\n{tail}")
    if known and "hint:" not in message:
        message += f"\n  hint: {known.fix}"
    if log.path and not isinstance(exc, ConfigError):
        message += f"\n  full log: {log.path}"
    return message
