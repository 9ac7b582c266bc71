"""doit entry point: load the ABIs and recipes, yield the tasks. All logic lives in wasmwheel.tasks."""

import sys
from pathlib import Path

from wasmwheel.errors import WasmwheelError
from wasmwheel.tasks import Project, install_signal_handlers, misplaced_options

install_signal_handlers()
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
