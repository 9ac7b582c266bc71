"""Retagging wheels: file name, WHEEL Tag lines and RECORD change together; it is repeatable and reversible."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from wheel.wheelfile import WheelFile

from wasmwheel.wheel import RetagError, retag

REPO = Path(__file__).resolve().parents[1]


def make_wheel(folder: Path, tag: str = "cp313-cp313-emscripten_4_0_9_wasm32") -> Path:
    files = {
        "demo.cpython-313-wasm32-emscripten.so": b"\0asm\1\0\0\0",
        "demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.4\nName: demo\nVersion: 1.0\n",
        "demo-1.0.dist-info/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()
        ),
    }
    record = (
        "".join(
            f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\n"
            for p, d in files.items()
        )
        + "demo-1.0.dist-info/RECORD,,\n"
    )
    files["demo-1.0.dist-info/RECORD"] = record.encode()
    path = folder / f"demo-1.0-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 2, 3, 4, 6)), data)
    return path


def members(path: Path) -> dict[str, bytes]:
    with WheelFile(path) as wf:
        return {i.filename: wf.read(i) for i in wf.infolist() if not i.filename.endswith("RECORD")}


def test_retag_rewrites_name_wheel_tags_and_record(tmp_path):
    src = make_wheel(tmp_path)
    out = retag(src, "pyemscripten_2025_0_wasm32", tmp_path / "out")
    assert out.name == "demo-1.0-cp313-cp313-pyemscripten_2025_0_wasm32.whl"
    got = members(out)  # WheelFile verifies every member against the new RECORD
    assert "Tag: cp313-cp313-pyemscripten_2025_0_wasm32\n" in got["demo-1.0.dist-info/WHEEL"].decode()
    assert "emscripten_4_0_9" not in got["demo-1.0.dist-info/WHEEL"].decode()


def test_retag_twice_changes_nothing(tmp_path):
    once = retag(make_wheel(tmp_path), "pyemscripten_2025_0_wasm32", tmp_path / "a")
    twice = retag(once, "pyemscripten_2025_0_wasm32", tmp_path / "b")
    assert once.name == twice.name and once.read_bytes() == twice.read_bytes()
    again = retag(make_wheel(tmp_path), "pyemscripten_2025_0_wasm32", tmp_path / "c")
    assert again.read_bytes() == once.read_bytes(), "retag output must be reproducible"


def test_round_trip_gives_identical_members(tmp_path):
    src = make_wheel(tmp_path)
    there = retag(src, "pyemscripten_2025_0_wasm32", tmp_path / "there")
    back = retag(there, "emscripten_4_0_9_wasm32", tmp_path / "back")
    assert back.name == src.name
    assert members(back) == members(src)


def test_a_corrupted_member_is_refused(tmp_path):
    src = make_wheel(tmp_path)
    data = src.read_bytes().replace(b"Name: demo", b"Name: dem0")
    src.write_bytes(data)
    with pytest.raises(RetagError, match="not a valid wheel"):
        retag(src, "pyemscripten_2025_0_wasm32", tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.whl"))


@pytest.mark.slow  # starts wasmwheel in a subprocess
def test_retag_command_line(tmp_path):
    src = make_wheel(tmp_path, "cp314-cp314-emscripten_5_0_3_wasm32")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wasmwheel",
            "--root",
            str(REPO),
            "retag",
            str(src),
            "--abi",
            "2026_0",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).name == "demo-1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wasmwheel",
            "--root",
            str(REPO),
            "retag",
            proc.stdout.strip(),
            "--abi",
            "2026_0",
            "--legacy",
            "--out",
            str(tmp_path / "l"),
        ],
        capture_output=True,
        text=True,
    )
    assert Path(proc.stdout.strip()).name == src.name
    proc = subprocess.run(
        [sys.executable, "-m", "wasmwheel", "--root", str(REPO), "retag", str(src), "--abi", "2031_0"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "unknown ABI '2031_0'" in proc.stderr and "Traceback" not in proc.stderr
