"""A throw-away copy of the repository wired to local mirrors and stand-ins, and doit runs on it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import tomlkit

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
STANDIN_BIN = TESTS / "standins" / "bin"


@dataclass
class DoitRun:
    argv: list[str]
    returncode: int
    output: str

    @property
    def executed(self) -> list[str]:
        """Steps that ran, passed or failed (the reporter's 'ok'/'FAIL' lines)."""
        return re.findall(r"^(?:ok|FAIL) +(\S+) ", self.output, flags=re.M)

    @property
    def failed(self) -> list[str]:
        return re.findall(r"^FAIL +(\S+) ", self.output, flags=re.M)

    @property
    def skipped(self) -> list[str]:
        """Steps skipped because something they need failed."""
        return re.findall(r"^skip (\S+) ", self.output, flags=re.M)

    def executed_kinds(self) -> set[str]:
        return {t.split(":", 1)[0] for t in self.executed}


class TestProject:
    __test__ = False  # not a pytest class

    def __init__(self, root: Path, env: dict[str, str], record: Path):
        self.root = root
        self.env = env
        self.record = record

    @classmethod
    def create(cls, tmp: Path, *, runtimes: dict[str, Path], modules: Path, emsdk_url: str,
               sysroot: tuple[Path, str]) -> "TestProject":
        root = tmp / "repo"
        root.mkdir()
        shutil.copy2(REPO / "dodo.py", root / "dodo.py")
        shutil.copytree(REPO / "abi", root / "abi")
        (root / "recipes").mkdir()
        shutil.copy2(REPO / "recipes" / "hello-pyo3.toml", root / "recipes" / "hello-pyo3.toml")
        shutil.copytree(REPO / "examples" / "hello-pyo3", root / "examples" / "hello-pyo3",
                        ignore=shutil.ignore_patterns("target"))
        archive, mirror = sysroot
        from wasmwheel.fsutil import sha256_file
        from wasmwheel.toolchain import write_sysroot_sha

        write_sysroot_sha(root / "abi" / "2025_0.toml", sha256_file(archive))
        cache = tmp / "cache"
        for version, folder in runtimes.items():
            dest = cache / "pyodide" / version
            dest.parent.mkdir(parents=True, exist_ok=True)
            # Hard links (fast, read-only runtime files), but not the smoke servers' own files: a
            # server of the shared runtime writes its log there, which must not show up here.
            shutil.copytree(folder, dest, symlinks=True, copy_function=os.link,
                            ignore=shutil.ignore_patterns("smoke-server-*", "*.sock", "*.lock"))
        record = tmp / "standin-calls.jsonl"
        env = {k: v for k, v in os.environ.items() if not k.startswith("WASMWHEEL_")}
        env.update({
            "PATH": f"{STANDIN_BIN}{os.pathsep}{env.get('PATH', '')}",
            "STANDIN_RECORD": str(record),
            "STANDIN_MODULES": str(modules),
            "WASMWHEEL_CACHE": str(cache),
            "WASMWHEEL_EMSDK_URL": emsdk_url,
            "WASMWHEEL_SYSROOT_MIRROR": mirror,
            "WASMWHEEL_RETRY_BACKOFF": "0.01",
            "WASMWHEEL_SMOKE_IDLE": "5",  # smoke servers of throw-away caches exit soon
        })
        env.pop("RUSTUP_HOME", None)
        env.pop("CARGO_HOME", None)
        return cls(root, env, record)

    # -- running ----------------------------------------------------------------
    def doit(self, *args: str, check: bool | None = True, env: dict[str, str] | None = None,
             timeout: float = 600) -> DoitRun:
        argv = [sys.executable, "-m", "doit", *args]
        proc = subprocess.run(argv, cwd=self.root, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)
        run = DoitRun(argv, proc.returncode, proc.stdout + proc.stderr)
        if check is True and proc.returncode != 0:
            raise AssertionError(f"doit {' '.join(args)} failed ({proc.returncode}):\n{run.output}")
        if check is False and proc.returncode == 0:
            raise AssertionError(f"doit {' '.join(args)} should have failed:\n{run.output}")
        return run

    def records(self, tool: str | None = None) -> list[dict]:
        if not self.record.exists():
            return []
        entries = [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]
        return [e for e in entries if tool is None or e["tool"] == tool]

    def clear_records(self) -> None:
        self.record.unlink(missing_ok=True)

    # -- the project's files --------------------------------------------------------
    @property
    def layout(self):
        from wasmwheel.layout import Layout
        from wasmwheel.settings import Settings

        return Layout(Settings.from_env(self.root, self.env))

    def abi(self, name: str):
        from wasmwheel.abi import load_abi

        return load_abi(self.root / "abi" / f"{name}.toml")

    def recipe(self, name: str):
        from wasmwheel.abi import load_abis
        from wasmwheel.recipe import load_recipe

        return load_recipe(self.root / "recipes" / f"{name}.toml", list(load_abis(self.root / "abi")), self.root)

    def edit_toml(self, rel: str, change: Callable[[tomlkit.TOMLDocument], None]) -> None:
        path = self.root / rel
        doc = tomlkit.parse(path.read_text())
        change(doc)
        path.write_text(tomlkit.dumps(doc))

    def add_crate(self, name: str, module: str) -> None:
        """A second example crate + recipe (the stand-in packs tests/wasm's module of that name)."""
        crate = self.root / "examples" / name
        shutil.copytree(self.root / "examples" / "hello-pyo3", crate)
        for rel in ("pyproject.toml", "Cargo.toml"):
            p = crate / rel
            p.write_text(p.read_text().replace("hello-pyo3", name).replace("hello_pyo3", module))
        recipe = (self.root / "recipes" / "hello-pyo3.toml").read_text()
        recipe = recipe.replace("hello-pyo3", name).replace("hello_pyo3", module)
        (self.root / "recipes" / f"{name}.toml").write_text(recipe)

    def dist(self, abi: str) -> list[Path]:
        return sorted((self.layout.dist_dir(abi)).glob("*.whl"))
