"""Every path wasmwheel reads or writes, built in one place.

doit orders tasks by matching a file_dep string to another task's target
string, so all paths come from here and are never spelled twice.

Cache (shared by checkouts, ``WASMWHEEL_CACHE``)::

    downloads/sha256/<sha256>/<file>     verified downloads (sdists, sysroots, Pyodide's patches to Emscripten)
    downloads/unpinned/                  what pin-sysroot and pin-patches measure, before it moves to sha256/
    emsdk/<emscripten version>/          one emsdk clone per Emscripten version (patched as its ABI says:
                                         .wasmwheel-installed.json, upstream/emscripten/.wasmwheel-patches.json)
    rust/<toolchain>[+<std>]/            RUSTUP_HOME (rustup/) and CARGO_HOME (cargo/) of a toolchain and its
                                         std for the target (Abi.std_key: src, src-<flags digest>, a sysroot)
    std-build/<toolchain>+<std>/         the crate std is built beside, and cargo's target folder
    cargo/                               CARGO_HOME of compiles: crates.io downloads, shared by every ABI
    binaryen/<version>/node_modules/     binaryen (wasm-opt) from npm, one per version (lean toolchain)
    pyodide/<version>/node_modules/      one Pyodide npm runtime per version

Build folder (per repository, ``WASMWHEEL_BUILD_DIR``)::

    .doit.db                             doit state (sqlite3)
    stamps/<abi>/<step>.json             toolchain step stamps
    stamps/<abi>/<crate>.<step>.json     crate step stamps
    logs/<abi>/<step>.log, logs/<abi>/<crate>/<step>.log
    report.json, report.md              the batch report, rewritten after every run that changed it
    history.json                        last outcome and duration of every step (feeds the report)
    report-state.json                   what a no-op compares to leave the report alone
    recipes.cache                        parsed recipes, reused while their files are unchanged
    sources.cache                        file lists of local source folders, reused while unchanged
    index/<abi>/                        PEP 503/691 index and pyodide-lock.json of dist/<abi>
    bin/wasmwheel-link, wasmwheel-no-cc  the lean toolchain's linker, and its refusal to compile C (launchers
                                         of wasmwheel.toolchain.linker)
    src/<crate>/                         unpacked, patched source
    target/<crate>/<abi>/                cargo target folder, kept warm between runs
    wheels/<abi>/<crate>/                maturin's wheel, as built
    dist/<abi>/                          retagged wheels: the collection
    dist/<abi>/tested/<wheel>.json       the wheel's sha256, written when its smoke test passed (the index
                                         takes only these wheels)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from wasmwheel.model.abi import Abi
from wasmwheel.model.settings import Settings

RUNTIME_EXPORTS = "exports.json.gz"  # in abi/runtimes/<version>/ (wasmwheel.audit.runtime_exports)
TESTED_DIR = "tested"  # in dist/<abi>/: one marker per wheel whose smoke test passed


# Under a build folder: also what joining shard artifacts (wasmwheel.pipeline.shard) and the index read.
def dist_dir(build: Path, abi: str) -> Path:
    """build/dist/<abi>: the retagged wheels of an ABI."""
    return Path(build) / "dist" / abi


def tested_dir(dist: Path) -> Path:
    """dist/<abi>/tested/: one marker per wheel whose smoke test passed."""
    return Path(dist) / TESTED_DIR


def tested_marker(dist: Path, wheel_name: str) -> Path:
    return tested_dir(dist) / f"{wheel_name}.json"


def report_json(build: Path) -> Path:
    return Path(build) / "report.json"


@dataclass(frozen=True)
class Layout:
    settings: Settings

    # -- cache ----------------------------------------------------------------
    @property
    def cache(self) -> Path:
        return self.settings.cache_dir

    def download(self, sha256: str, filename: str) -> Path:
        return self.cache / "downloads" / "sha256" / sha256 / filename

    def unpinned_download(self, filename: str) -> Path:
        return self.cache / "downloads" / "unpinned" / filename

    def emsdk_dir(self, abi: Abi) -> Path:
        return self.cache / "emsdk" / abi.emscripten

    def rust_dir(self, abi: Abi) -> Path:
        key = abi.rust_toolchain + (f"+{abi.std_key}" if abi.std_key else "")
        return self.cache / "rust" / key

    def std_build_dir(self, abi: Abi) -> Path:
        return self.cache / "std-build" / self.rust_dir(abi).name

    @property
    def cargo_home(self) -> Path:
        """CARGO_HOME of compiles and std builds: one registry for every ABI (cargo locks it itself)."""
        return self.cache / "cargo"

    def binaryen_dir(self, version: str) -> Path:
        return self.cache / "binaryen" / version

    def runtime_dir(self, abi: Abi) -> Path:
        """Where the ABI's Pyodide is installed (its committed lock is in runtime_lock_dir)."""
        return self.cache / "pyodide" / abi.pyodide_version

    # -- repository -------------------------------------------------------------
    def runtime_lock_dir(self, abi: Abi) -> Path:
        """Committed npm lock for the ABI's Pyodide runtime."""
        return abi.runtime_lock_dir

    def runtime_exports(self, abi: Abi) -> Path:
        """The ABI's runtime's exports (committed; what the audit checks side modules' imports against)."""
        return abi.runtime_lock_dir / RUNTIME_EXPORTS

    def binaryen_lock_dir(self, version: str) -> Path:
        """Committed npm lock for binaryen ``version`` (abi/tools/binaryen/<version>/)."""
        return self.settings.root / "abi" / "tools" / "binaryen" / version

    # -- build folder -----------------------------------------------------------
    @property
    def build(self) -> Path:
        return self.settings.build_dir

    @property
    def doit_db(self) -> Path:
        return self.build / ".doit.db"

    @cached_property
    def _stamps(self) -> str:
        return str(self.build / "stamps")

    # The *_str forms are what task dicts hold: every doit start builds them for every task,
    # and a Path each (three joins) was a sixth of a no-op. ABI and crate names hold no slash.
    def stamp_str(self, step: str, abi: str | None, crate: str | None = None) -> str:
        """stamps/<abi>/<step>.json, stamps/<abi>/<crate>.<step>.json; a crate's own step (source),
        with no ABI: stamps/src/<crate>.<step>.json."""
        name = f"{crate}.{step}.json" if crate else f"{step}.json"
        return f"{self._stamps}/{abi or 'src'}/{name}"

    def stamp(self, step: str, abi: str | None, crate: str | None = None) -> Path:
        return Path(self.stamp_str(step, abi, crate))

    @cached_property
    def _logs(self) -> str:
        return str(self.build / "logs")

    def log_str(self, step: str, abi: str | None = None, crate: str | None = None) -> str:
        return "/".join([self._logs, *(p for p in (abi, crate) if p), f"{step}.log"])

    def log(self, step: str, abi: str | None = None, crate: str | None = None) -> Path:
        return Path(self.log_str(step, abi, crate))

    @property
    def link_launcher(self) -> Path:
        return self.build / "bin" / "wasmwheel-link"

    @property
    def no_cc_launcher(self) -> Path:
        return self.build / "bin" / "wasmwheel-no-cc"

    @property
    def std_rustc_launcher(self) -> Path:
        """rustc wrapper of std builds (wasmwheel.toolchain.std.rustc_wrapper); in the cache, beside the builds."""
        return self.cache / "std-build" / "wasmwheel-rustc"

    def src_dir(self, crate: str) -> Path:
        return self.build / "src" / crate

    def target_dir(self, crate: str, abi: str) -> Path:
        return self.build / "target" / crate / abi

    def wheels_dir(self, crate: str, abi: str) -> Path:
        return self.build / "wheels" / abi / crate

    def dist_dir(self, abi: str) -> Path:
        return dist_dir(self.build, abi)

    def tested_marker(self, abi: str, wheel_name: str) -> Path:
        """Written by a passing smoke step beside the wheel (dist/<abi>/tested/<wheel>.json): the index
        takes only wheels whose marker names their bytes. A folder, not a hidden file, so that it
        travels with build/dist in CI artifacts."""
        return tested_marker(self.dist_dir(abi), wheel_name)

    @property
    def recipe_cache(self) -> Path:
        """Parsed recipes kept between doit starts (wasmwheel.model.recipe_cache)."""
        return self.build / "recipes.cache"

    @property
    def source_listings(self) -> Path:
        """File lists of local source folders kept between doit starts (wasmwheel.source)."""
        return self.build / "sources.cache"

    @property
    def report_json(self) -> Path:
        return report_json(self.build)

    @property
    def report_md(self) -> Path:
        return self.build / "report.md"

    @property
    def history(self) -> Path:
        """Last outcome and duration of every step ever run (feeds the report; not a stamp)."""
        return self.build / "history.json"

    @property
    def index_root(self) -> Path:
        """build/index: what `doit serve` serves, one folder per ABI."""
        return self.build / "index"

    def index_dir(self, abi: str) -> Path:
        return self.index_root / abi

    @property
    def comparisons(self) -> Path:
        """What `wasmwheel collection --compare` measured (wasmwheel.authoring.collection)."""
        return self.build / "collection-compare.json"
