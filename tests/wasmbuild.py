"""Build real Pyodide side modules from tests/wasm/*.c with Debian's clang-19 and lld-19.

No Emscripten SDK is needed: a side module is a WebAssembly module with a ``dylink.0`` custom
section, its imports resolved at load time (WebAssembly tool conventions, DynamicLinking.md:
https://github.com/WebAssembly/tool-conventions/blob/main/DynamicLinking.md), which upstream
clang and wasm-ld make as they are; emcc adds its own runtime around the same link. Compile with
``clang-19 --target=wasm32-unknown-emscripten -fPIC`` and link with
``wasm-ld-19 --shared --experimental-pic --unresolved-symbols=import-dynamic``.
Extra flags make deliberately broken modules (shared memory, no dylink section, ...).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent / "wasm"
CLANG = "clang-19"
WASM_LD = "wasm-ld-19"
MINORS = (12, 13, 14, 15)


def missing_tools() -> list[str]:
    return [tool for tool in (CLANG, WASM_LD) if shutil.which(tool) is None]


def build_module(
    out: Path,
    minor: int,
    source: str = "hello_pyo3.c",
    defines: dict[str, str] | None = None,
    cflags: tuple[str, ...] = (),
    ldflags: tuple[str, ...] = (),
    shared: bool = True,
    link_with: tuple[Path, ...] = (),
) -> Path:
    """Compile ``tests/wasm/<source>`` for Python 3.<minor> into ``out`` (a .so path).

    ``link_with``: shared libraries to link against (they become dylink.0 needed entries).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    obj = out.with_suffix(".o")
    flags = [f"-DPY_MINOR={minor}"] + [f"-D{k}={v}" for k, v in (defines or {}).items()]
    subprocess.run(
        [
            CLANG,
            "--target=wasm32-unknown-emscripten",
            "-fPIC",
            "-O2",
            *flags,
            *cflags,
            "-I",
            str(HERE),
            "-c",
            str(HERE / source),
            "-o",
            str(obj),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    link = [WASM_LD, str(obj), *map(str, link_with), "-o", str(out), "--unresolved-symbols=import-dynamic", *ldflags]
    if shared:
        link[1:1] = ["--shared", "--experimental-pic"]
    subprocess.run(link, check=True, capture_output=True, text=True)
    obj.unlink()
    return out


def so_name(module: str, minor: int) -> str:
    return f"{module}.cpython-3{minor}-wasm32-emscripten.so"


def build_stand_in_modules(folder: Path, modules: tuple[str, ...] = ("hello_pyo3",)) -> Path:
    """The modules the maturin stand-in packs: <folder>/<minor>/<module>.cpython-3<minor>-....so"""
    for minor in MINORS:
        for module in modules:
            build_module(folder / str(minor) / so_name(module, minor), minor, defines={"MODULE_NAME": module})
    return folder
