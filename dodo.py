"""doit entry point: load the ABIs and recipes, yield the tasks. All logic lives in wasmwheel.tasks."""

import sys
from pathlib import Path

from doit import loader

from wasmwheel.errors import WasmwheelError
from wasmwheel.tasks import (Project, install_signal_handlers, misplaced_options, started_elsewhere, names_of_tasks,
                             unknown_task_hint)

install_signal_handlers()
if started_elsewhere(getattr(loader, "initial_workdir", None), Path(__file__).parent):  # `doit -k` in a subfolder
    sys.exit(f"error: {started_elsewhere(loader.initial_workdir, Path(__file__).parent)}")
if misplaced_options(sys.argv[1:]):  # `doit build -n 2`: doit itself would say "option -n not recognized"
    sys.exit(f"error: {misplaced_options(sys.argv[1:])}")
try:
    project = Project.load(Path(__file__).parent)
except WasmwheelError as exc:  # a bad setting: nothing can be built, say why in one line
    sys.exit(f"error: {exc}")
DOIT_CONFIG = project.doit_config()


def task_abi():
    yield from project.abi_error_tasks()


def task_emsdk():
    yield from project.emsdk_tasks()


def task_binaryen():
    yield from project.binaryen_tasks()


def task_rust():
    yield from project.rust_tasks()


def task_std():
    yield from project.std_tasks()


def task_pin_sysroot():
    yield from project.pin_sysroot_tasks()


def task_pin_patches():
    yield from project.pin_patches_tasks()


def task_pyodide():
    yield from project.runtime_tasks()


def task_source():
    yield from project.source_tasks()


def task_compile():
    yield from project.crate_tasks("compile")


def task_retag():
    yield from project.crate_tasks("retag")


def task_audit():
    yield from project.crate_tasks("audit")


def task_smoke():
    yield from project.crate_tasks("smoke")


def task_smoke_browser():
    yield from project.crate_tasks("smoke-browser")


def task_build():
    yield from project.build_tasks()


def task_index():
    yield from project.index_tasks()


def task_serve():
    return project.serve_task()


# Last, with every task_* function defined: a misspelt task name gets the closest real ones (doit alone
# says a bare "Invalid parameter", and `doit info` fails with a traceback).
if unknown_task_hint(sys.argv[1:], project.task_names, lambda: names_of_tasks(globals())):
    sys.exit(f"error: {unknown_task_hint(sys.argv[1:], project.task_names, lambda: names_of_tasks(globals()))}")
