"""Real builds for the tests: a copy of the repository wired to nothing but the real tools.

No stand-in is on PATH: rustup installs each ABI's pinned toolchain, the std step builds std from
its rust-src, maturin and cargo compile, the toolchain's rust-lld links and binaryen's wasm-opt
optimises (the lean toolchain, the default), and the wheels are smoke-tested in the real Pyodide
runtimes. Toolchains, std builds, crates.io downloads, binaryen and the runtimes live in the test
cache (``$WASMWHEEL_TEST_CACHE``, kept between runs: CI's .ci/run points it at its cache folder), so
only the first run pays for them; every test has a build folder of its own (cold cargo targets).
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from pathlib import Path

import tomlkit

from helpers import REPO, TEST_CACHE, ProjectCopy
from wasmwheel.audit.wasm import Module, parse_module

CRATES = Path(__file__).resolve().parent / "crates"


def real_cache() -> Path:
    """WASMWHEEL_CACHE of real builds: the one the runtimes and binaryen fixtures provision."""
    return TEST_CACHE / "wasmwheel"


class RealProject(ProjectCopy):
    """A copy wired to the real tools; its doit runs may take an hour at most (a cold cache, real compiles)."""

    timeout = 3600

    @classmethod
    def create(
        cls,
        tmp: Path,
        abis: tuple[str, ...],
        recipes: dict[str, str] = {},  # noqa: B006 - read only
        example: bool = True,
    ) -> RealProject:
        """A repository with the given ABI files, the example crate's recipe (``example``) and ``recipes``
        (name -> TOML text; their crates are copied from tests/crates/<name> into crates/<name>)."""
        root = tmp / "repo"
        root.mkdir(parents=True)
        shutil.copy2(REPO / "dodo.py", root / "dodo.py")
        shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
        (root / "abi").mkdir()
        shutil.copytree(REPO / "abi" / "runtimes", root / "abi" / "runtimes")
        shutil.copytree(REPO / "abi" / "tools", root / "abi" / "tools")
        for abi in abis:
            shutil.copy2(REPO / "abi" / f"{abi}.toml", root / "abi" / f"{abi}.toml")
        (root / "recipes").mkdir()
        if example:
            shutil.copy2(REPO / "recipes" / "hello-pyo3.toml", root / "recipes" / "hello-pyo3.toml")
            shutil.copytree(
                REPO / "examples" / "hello-pyo3",
                root / "examples" / "hello-pyo3",
                ignore=shutil.ignore_patterns("target"),
            )
        for name, text in recipes.items():
            (root / "recipes" / f"{name}.toml").write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WASMWHEEL_", "STANDIN_"))}
        for var in ("RUSTUP_HOME", "CARGO_HOME", "RUSTUP_TOOLCHAIN", "CARGO_TARGET_DIR", "RUSTFLAGS"):
            env.pop(var, None)
        env.update(
            {
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
                "WASMWHEEL_CACHE": str(real_cache()),
                "WASMWHEEL_SMOKE_IDLE": "5",
            }
        )
        return cls(root, env)

    def add_crate(self, source: str, name: str | None = None) -> Path:
        """Copy tests/crates/<source> to crates/<name>, renamed (package, module) when ``name`` differs."""
        name = name or source
        dest = self.root / "crates" / name
        shutil.copytree(CRATES / source, dest, ignore=shutil.ignore_patterns("target"))
        if name != source:  # the package and its module renamed, everything else as it was
            module, old_module = name.replace("-", "_"), source.replace("-", "_")
            cargo = tomlkit.parse((dest / "Cargo.toml").read_text())
            cargo["package"]["name"] = name
            cargo["lib"]["name"] = module
            (dest / "Cargo.toml").write_text(tomlkit.dumps(cargo))
            pyproject = tomlkit.parse((dest / "pyproject.toml").read_text())
            pyproject["project"]["name"] = name
            pyproject["tool"]["maturin"]["module-name"] = module
            (dest / "pyproject.toml").write_text(tomlkit.dumps(pyproject))
            lock = dest / "Cargo.lock"
            lock.write_text(lock.read_text().replace(f'name = "{source}"\nversion', f'name = "{name}"\nversion'))
            lib = dest / "src" / "lib.rs"
            lib.write_text(lib.read_text().replace(f"fn {old_module}(", f"fn {module}("))
        return dest


def extension_module(wheel: Path) -> tuple[str, Module, bytes]:
    """The wheel's one extension module: (member name, parsed module, bytes)."""
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".so")]
        data = zf.read(name)
    return name, parse_module(data), data


def wheel_metadata(wheel: Path, member: str = "WHEEL") -> str:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(f".dist-info/{member}")]
        return zf.read(name).decode()


def recipe(name: str, script: str, build: dict | None = None, abis_skipped: dict[str, str] | None = None) -> str:
    """A recipe for tests/crates/<name> copied to crates/<name>."""
    doc = tomlkit.document()
    doc["package"] = {"name": name, "version": "0.1.0", "import_names": [name.replace("-", "_")]}
    doc["source"] = {"path": f"../crates/{name}"}
    doc["build"] = dict(build or {})
    if abis_skipped:
        doc["build"]["skip_abis"] = abis_skipped
    doc["test"] = {"script": script}
    return tomlkit.dumps(doc)
