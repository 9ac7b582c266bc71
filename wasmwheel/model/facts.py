"""What a step hands to the steps after it: the typed facts of its stamp.

A step's stamp (``build/stamps/...json``, written last and atomically) holds its facts as JSON: the
keys below, and a few more the report and people read. The step runner reads the stamps a step
declares as inputs (wasmwheel.pipeline.steps) and hands the step function these frozen objects, so no step
reads another one's stamp by path or picks keys out of a dict with ``.get``. Unknown keys are
ignored, missing ones take their default: a stamp written by an older wasmwheel still loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any


@cache
def _names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


@dataclass(frozen=True)
class Facts:
    @classmethod
    def from_stamp(cls, data: Mapping[str, Any]):
        names = _names(cls)
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ToolFacts(Facts):
    """What every toolchain step hands on: folders to put first on PATH, variables to set."""

    path: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", tuple(self.path))
        object.__setattr__(self, "env", dict(self.env))


@dataclass(frozen=True)
class RustFacts(ToolFacts):
    """rust:<abi>: the Rust toolchain (its sysroot, its rust-lld, the digest of its rust-src)."""

    sysroot: str = ""
    toolchain: str = ""
    host: str = ""
    rustc: str = ""
    lld: str = ""
    rust_src: str | None = None
    mode: str = ""


@dataclass(frozen=True)
class StdFacts(Facts):
    """std:<abi>: std for the target, in the toolchain's rustlib."""

    std: str = ""
    lib: str = ""
    rlibs: int = 0
    marker: str = ""


@dataclass(frozen=True)
class EmsdkFacts(ToolFacts):
    """emsdk:<abi>: the Emscripten SDK (and the Pyodide patches it carries)."""

    mode: str = ""
    emsdk: str = ""
    emcc: str = ""
    emcc_version: str = ""
    pyodide_tag: str | None = None
    patches: tuple[Any, ...] = ()


@dataclass(frozen=True)
class BinaryenFacts(ToolFacts):
    """binaryen:<abi>: wasm-opt for the lean toolchain."""

    binaryen: str = ""
    wasm_opt: str = ""
    wasm_opt_version: str = ""


@dataclass(frozen=True)
class RuntimeFacts(Facts):
    """pyodide:<abi>: the Pyodide runtime smoke tests and the index use."""

    runtime: str = ""
    pyodide: str = ""
    node: str = ""
    snapshot: str | None = None


@dataclass(frozen=True)
class SourceFacts(Facts):
    """source:<crate>: the unpacked, patched source tree."""

    tree: str = ""
    crate_dir: str = ""
    tree_sha256: str = ""


@dataclass(frozen=True)
class WheelFacts(Facts):
    """compile, retag and audit: the wheel (and its sha256, which later steps key on)."""

    wheel: str = ""
    sha256: str = ""
    toolchain: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class SmokeFacts(Facts):
    """smoke:<crate>@<abi>: how the recipe's test went."""

    wheel: str = ""
    outcome: str = ""
    environment: str = ""
    mark: str = ""
    reason: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)
