"""Rerun counts: after each kind of edit, exactly the steps whose output it shapes run again.

    python benchmarks/reruns.py [--recipes 4] [--fast-smoke] [--keep DIR]

Builds a project of N synthetic recipes (local-path sources) plus one recipe with an sdist
source served by a local HTTP mirror, for 3 ABIs, with `doit` (the collection + index).
Then applies one edit at a time and runs `doit` again, comparing the steps that ran with
the steps that must run, derived from the pipeline's rules (not typed in):

    edit                     must rerun
    test snippet of A        smoke:A@* (the wheels do not change: no index)
    build flags of A         compile/retag/audit/smoke:A@*, index:* (A's wheels changed)
    ABI X's rustflags        compile/retag/audit/smoke:*@X, index:X
    ABI X's Rust toolchain   rust:X, std:X, compile/retag/audit/smoke:*@X, index:X
    sdist sha256 of U        source:U, compile/retag/audit/smoke:U@*, index:*

and the edits that must rerun nothing (a second run, a touched recipe). Prints a table and
exits 1 when any run differs. Smoke tests boot each ABI's real Pyodide unless --fast-smoke.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from world import BenchError, World, checked, doit, synth_name, table, workspace

from wasmwheel.pipeline.steps import CRATE_ABI_STEPS

KINDS = CRATE_ABI_STEPS  # compile, retag, audit, smoke
SDIST = "sdist-demo"
ABIS = ("2024_0", "2025_0", "2026_0")


def _sdist(world: World, project, version_note: str) -> tuple[str, str]:
    """An sdist of a copy of the example crate named sdist-demo, served by the mirror; (url, sha256)."""
    from wasmwheel.fsutil import sha256_file

    crate = project.root / "examples" / "hello-pyo3"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for path in sorted(p for p in crate.rglob("*") if p.is_file()):
            data = path.read_bytes()
            if path.name in ("pyproject.toml", "Cargo.toml"):
                data = data.replace(b'name = "hello-pyo3"', f'name = "{SDIST}"'.encode())
            if path.name == "lib.rs":
                data += f"\n// {version_note}\n".encode()
            info = tarfile.TarInfo(f"sdist_demo-1.0.0/{path.relative_to(crate).as_posix()}")
            info.size, info.mtime, info.mode = len(data), 315532800, 0o644
            tf.addfile(info, io.BytesIO(data))
    name = f"sdist_demo-1.0.0-{version_note}.tar.gz"
    path = world.http / "sdists" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return f"https://files.example.invalid/packages/{name}", sha256_file(path)


def _add_sdist_recipe(world: World, project) -> None:
    url, sha = _sdist(world, project, "first")
    text = (project.root / "recipes" / f"{synth_name(1)}.toml").read_text()
    text = text.replace(f'name = "{synth_name(1)}"', f'name = "{SDIST}"')
    text = text.replace('path = "../examples/' + synth_name(1) + '"', f'url = "{url}"\nsha256 = "{sha}"')
    (project.root / "recipes" / f"{SDIST}.toml").write_text(text)


def measure(recipes: int, keep: str | None, fast_smoke: bool) -> bool:
    with workspace(keep) as work, World(work) as world:
        project = world.project("reruns", recipes, fast_smoke=fast_smoke)
        _add_sdist_recipe(world, project)
        crates = [synth_name(i) for i in range(1, recipes + 1)] + [SDIST]
        a, x = synth_name(1), "2026_0"

        def crate_steps(crate_list, abis):
            return {f"{k}:{c}@{abi}" for k in KINDS for c in crate_list for abi in abis}

        index = lambda abis: {f"index:{abi}" for abi in abis}  # noqa: E731

        seconds, first = doit(project.root, project.env, timeout=7200)
        checked(first, "first build")
        print(
            f"rerun counts: {len(crates)} recipes x {len(ABIS)} ABIs; first build ran {len(first.executed)} "
            f"steps in {seconds:.0f}s ({'node stand-in' if fast_smoke else 'real Pyodide'} smoke tests)",
            flush=True,
        )

        def new_sdist(p):
            url, sha = _sdist(world, project, "second")
            p.edit_toml(f"recipes/{SDIST}.toml", lambda d: d["source"].update({"url": url, "sha256": sha}))

        scenarios = [
            ("nothing changed", lambda p: None, set()),
            ("recipe touched, same content", lambda p: (p.root / "recipes" / f"{a}.toml").touch(), set()),
            (
                f"test snippet of {a}",
                lambda p: p.edit_toml(
                    f"recipes/{a}.toml",
                    lambda d: d["test"].update(
                        {"script": d["test"]["script"] + "assert hello_pyo3.sum_as_string(1, 1) == '2'\n"}
                    ),
                ),
                {f"smoke:{a}@{abi}" for abi in ABIS},
            ),
            (
                f"build flags of {a}",
                lambda p: p.edit_toml(
                    f"recipes/{a}.toml", lambda d: d["build"].update({"rustflags": ["-C", "opt-level=s"]})
                ),
                crate_steps([a], ABIS) | index(ABIS),
            ),
            (
                f"ABI {x} rustflags",
                lambda p: p.edit_toml(f"abi/{x}.toml", lambda d: d["rust"]["rustflags"].append("-Cdebuginfo=0")),
                crate_steps(crates, [x]) | index([x]),
            ),
            (
                f"ABI {x} Rust toolchain",
                lambda p: p.edit_toml(f"abi/{x}.toml", lambda d: d["rust"].update({"toolchain": "1.93.1"})),
                {f"rust:{x}", f"std:{x}"} | crate_steps(crates, [x]) | index([x]),
            ),
            (f"sdist sha256 of {SDIST}", new_sdist, {f"source:{SDIST}"} | crate_steps([SDIST], ABIS) | index(ABIS)),
        ]
        rows, ok = [], True
        for title, edit, expected in scenarios:
            edit(project)
            seconds, run = doit(project.root, project.env, timeout=3600)
            checked(run, title)
            ran = set(run.executed)
            good = ran == expected and len(run.executed) == len(ran)
            ok &= good
            rows.append(
                [title, str(len(expected)), str(len(run.executed)), f"{seconds:.1f}s", "ok" if good else "WRONG"]
            )
            if not good:
                print(f"  {title}: missing {sorted(expected - ran)}, unexpected {sorted(ran - expected)}")
        print(table(rows, ["edit", "expected", "executed", "wall", "verdict"]))
        print("rerun counts: all as expected" if ok else "rerun counts: SOME RUNS DIFFER FROM THE RULES")
        return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", type=int, default=4, help="synthetic recipes besides the sdist one (default 4)")
    parser.add_argument("--fast-smoke", action="store_true", help="answer smoke jobs with the node stand-in")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    args = parser.parse_args(argv)
    try:
        return 0 if measure(args.recipes, args.keep, args.fast_smoke) else 1
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
