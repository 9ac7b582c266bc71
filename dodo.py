"""doit entry point: load the ABIs and recipes, and make one task_<step> function per step of the
pipeline (wasmwheel.pipeline.steps.PIPELINE). All logic lives in wasmwheel.pipeline.graph."""

import sys
from pathlib import Path

from doit import loader

from wasmwheel.model.errors import WasmwheelError
from wasmwheel.pipeline.cli import (
    install_signal_handlers,
    misplaced_options,
    names_of_tasks,
    started_elsewhere,
    unknown_task_hint,
)
from wasmwheel.pipeline.graph import Project, dodo_functions
from wasmwheel.pipeline.steps import PIPELINE

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
globals().update(dodo_functions(project, PIPELINE))  # task_abi, task_emsdk, ..., task_serve

# Last, with every task_* function defined: a misspelt task name gets the closest real ones (doit alone
# says a bare "Invalid parameter", and `doit info` fails with a traceback).
if unknown_task_hint(sys.argv[1:], project.task_names, lambda: names_of_tasks(globals())):
    sys.exit(f"error: {unknown_task_hint(sys.argv[1:], project.task_names, lambda: names_of_tasks(globals()))}")
