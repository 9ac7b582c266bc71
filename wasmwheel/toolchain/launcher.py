"""Small executables that run a function of this package: what rustc and cargo call as their linker,
C compiler or rustc wrapper. Each is a Python script for the interpreter running wasmwheel, with the
package's folder on its path, so it works from a checkout as well as from an install.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from wasmwheel.fsutil import atomic_write_text

PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # wasmwheel/toolchain/..
# Linux reads at most this much of a #! line (BINPRM_BUF_SIZE, 256 since 5.1, 128 before).
SHEBANG_MAX = 127


def launcher_text(module: str, function: str, python: str = sys.executable) -> str:
    return (
        f"#!{python}\n# Written by wasmwheel; do not edit.\nimport sys\n"
        f"sys.path.insert(0, {str(PACKAGE_PARENT)!r})\n"
        f"from wasmwheel.{module} import {function}\nsys.exit({function}())\n"
    )


def ensure_launcher(path: Path, module: str, function: str) -> Path:
    """Write the launcher of ``wasmwheel.<module>.<function>`` at ``path`` unless it is already there,
    atomically (parallel steps may write the same file: each sees a whole one)."""
    if len(f"#!{sys.executable}") > SHEBANG_MAX:
        from wasmwheel.model.errors import WasmwheelError

        raise WasmwheelError(
            f"the path of this Python ({sys.executable}) is too long for a #! line "
            f"({SHEBANG_MAX} characters): run wasmwheel from a virtualenv with a shorter path"
        )
    text = launcher_text(module, function)
    try:
        same = path.read_text(encoding="utf-8") == text and os.access(path, os.X_OK)
    except OSError:
        same = False
    if not same:
        atomic_write_text(path, text)
        path.chmod(0o755)
    return path
