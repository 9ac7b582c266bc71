"""The index of built wheels: PEP 503/691 pages, a pyodide-lock.json per ABI that the real runtimes
load offline, and `doit serve` with CORS headers, fetched cross-origin by a real Chromium."""

from __future__ import annotations

import hashlib
import html.parser
import json
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from helpers import REPO, TestProject
from wasmwheel.index import check
from wasmwheel.index.serve import make_server
from wasmwheel.pipeline.graph import Project

TESTS = Path(__file__).resolve().parent
ABIS = ("2024_0", "2025_0", "2026_0")


def _only(project, *keep):
    for path in (project.root / "abi").glob("*.toml"):
        if path.stem not in keep:
            path.unlink()


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs)["href"])


def _links(path: Path) -> list[str]:
    parser = _Links()
    parser.feed(path.read_text())
    return parser.links


@pytest.fixture(scope="module")
def built(tmp_path_factory, stand_in_modules, runtimes, emsdk_mirror, sysroot_archive):
    """One collection built for three ABIs, shared by this module's tests (a build takes a minute)."""
    project = TestProject.create(
        tmp_path_factory.mktemp("index"),
        runtimes=runtimes,
        modules=stand_in_modules,
        emsdk_url=emsdk_mirror,
        sysroot=sysroot_archive,
    )
    _only(project, *ABIS)
    project.add_crate("hello-two", "hello_two")
    run = project.doit()  # the default tasks: build, then index
    assert {f"index:{a}" for a in ABIS} <= set(run.executed)
    return project


def test_pep503_and_pep691_pages_list_every_wheel_with_its_sha256(built):
    root = built.layout.index_dir("2026_0")
    assert _links(root / "simple" / "index.html") == ["hello-pyo3/", "hello-two/"]
    for project, dist in (("hello-pyo3", "hello_pyo3"), ("hello-two", "hello_two")):
        (link,) = _links(root / "simple" / project / "index.html")
        target, sha = link.split("#sha256=")
        # Root-relative, as `doit serve` serves build/index (micropip 0.9 needs it: wasmwheel/index/index.py).
        assert target.startswith("/2026_0/")
        wheel = built.layout.build / "index" / target.lstrip("/")
        assert wheel.name == f"{dist}-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() == sha
        assert wheel.read_bytes() == (built.layout.dist_dir("2026_0") / wheel.name).read_bytes()
        page = json.loads((root / "simple" / project / "index.json").read_text())
        assert page["meta"]["api-version"] == "1.1" and page["name"] == project
        assert page["files"] == [
            {"filename": wheel.name, "url": target, "hashes": {"sha256": sha}, "size": wheel.stat().st_size}
        ]
    assert json.loads((root / "simple" / "index.json").read_text())["projects"] == [
        {"name": "hello-pyo3"},
        {"name": "hello-two"},
    ]


def test_the_lock_adds_the_collection_to_the_runtimes_own_lock(built, runtimes):
    lock = json.loads((built.layout.index_dir("2026_0") / "pyodide-lock.json").read_text())
    runtime_lock = json.loads((runtimes["314.0.7"] / "node_modules/pyodide/pyodide-lock.json").read_text())
    assert lock["info"] == runtime_lock["info"]
    entry = lock["packages"]["hello-pyo3"]
    assert entry["file_name"] == "hello_pyo3-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    assert entry["imports"] == ["hello_pyo3"] and entry["install_dir"] == "site"
    assert set(runtime_lock["packages"]) < set(lock["packages"])
    assert lock["packages"]["micropip"]["file_name"].startswith("https://cdn.jsdelivr.net/pyodide/v314.0.7/full/")


@pytest.mark.parametrize("abi,version", [("2024_0", "0.27.8"), ("2025_0", "0.29.5"), ("2026_0", "314.0.7")])
def test_load_package_from_the_lock_installs_a_built_crate_offline(built, runtimes, abi, version):
    index = built.layout.index_dir(abi)
    args = [
        "node",
        str(TESTS / "pyodide_lock_load.mjs"),
        str(runtimes[version] / "node_modules/pyodide"),
        str(index / "pyodide-lock.json"),
        "hello-pyo3",
        "import hello_pyo3; c = hello_pyo3.Counter(); c.increment(); "
        "f'{hello_pyo3.sum_as_string(40, 2)}/{c.increment()}'",
    ]
    if abi == "2024_0":
        # Pyodide 0.27 resolves lock file names against packageCacheDir in Node (see wasmwheel/index/index.py).
        args.append(str(index))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert "RESULT 42/2" in proc.stdout, proc.stdout + proc.stderr


def test_the_index_is_rebuilt_only_when_the_wheels_change(built):
    assert built.doit("index").executed == []
    built.edit_toml("recipes/hello-two.toml", lambda d: d["build"].update({"rustflags": ["-C", "opt-level=z"]}))
    run = built.doit()
    assert sorted(t for t in run.executed if t.startswith("index:")) == [f"index:{a}" for a in ABIS]
    lock = json.loads((built.layout.index_dir("2026_0") / "pyodide-lock.json").read_text())
    wheel = built.layout.dist_dir("2026_0") / lock["packages"]["hello-two"]["file_name"]
    assert lock["packages"]["hello-two"]["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_an_absolute_index_url_makes_lock_file_names_absolute(built):
    run = built.doit("index", env={"WASMWHEEL_INDEX_URL": "https://wheels.example.org/2026_0"})
    assert "index:2026_0" in run.executed
    lock = json.loads((built.layout.index_dir("2026_0") / "pyodide-lock.json").read_text())
    assert lock["packages"]["hello-pyo3"]["file_name"] == (
        "https://wheels.example.org/2026_0/hello_pyo3-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    )
    (link,) = _links(built.layout.index_dir("2026_0") / "simple" / "hello-pyo3" / "index.html")
    assert link.startswith("https://wheels.example.org/2026_0/hello_pyo3-0.1.0-")
    built.doit("index")  # back to relative names for the tests that serve the index


@pytest.fixture
def served(built):
    server = make_server(built.layout.build / "index", port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield built, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_server_sends_cors_headers_and_negotiates_pep691(served):
    _, url = served
    req = urllib.request.Request(f"{url}/2026_0/pyodide-lock.json", headers={"Origin": "http://elsewhere.example"})
    with urllib.request.urlopen(req) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert json.load(resp)["info"]["abi_version"] == "2026_0"
    req = urllib.request.Request(
        f"{url}/2026_0/simple/hello-pyo3/",
        method="OPTIONS",
        headers={"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "GET"},
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == "*"
    req = urllib.request.Request(
        f"{url}/2026_0/simple/hello-pyo3/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
        page = json.load(resp)
        assert page["name"] == "hello-pyo3"
    # Served, the wheel links are absolute (micropip 0.9 downloads a link as written: wasmwheel/index/serve.py).
    wheel = f"{url}/2026_0/hello_pyo3-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    assert [f["url"] for f in page["files"]] == [wheel]
    with urllib.request.urlopen(f"{url}/2026_0/simple/hello-pyo3/") as resp:
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert f'href="{wheel}#sha256=' in resp.read().decode()


def test_pip_installs_from_the_served_index(served, tmp_path):
    _, url = served
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            "pyemscripten_2026_0_wasm32",
            "--implementation",
            "cp",
            "--python-version",
            "3.14",
            "--index-url",
            f"{url}/2026_0/simple/",
            "-d",
            str(tmp_path / "dl"),
            "hello-two",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [p.name for p in (tmp_path / "dl").iterdir()] == [
        "hello_two-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    ]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Debian's chromium is needed for the cross-origin test: `apt-get install chromium` (see .ci/run)")
    return found


def test_a_browser_on_another_origin_can_fetch_the_index(served, tmp_path):
    """A page served from one origin fetches the lock file and a wheel from the index server's origin."""
    _, index_url = served
    page_root = tmp_path / "page"
    page_root.mkdir()
    (page_root / "index.html").write_text(f"""<!DOCTYPE html><html><body><pre id="out">pending</pre><script>
    (async () => {{
      const out = document.getElementById("out");
      try {{
        const lock = await (await fetch("{index_url}/2026_0/pyodide-lock.json")).json();
        const url = lock.packages["hello-pyo3"].file_name;  // absolute when served (wasmwheel/serve.py)
        const wheel = await (await fetch(url)).arrayBuffer();
        out.textContent = "FETCHED " + url + " " + wheel.byteLength;
      }} catch (e) {{ out.textContent = "BLOCKED " + e; }}
    }})();
    </script></body></html>""")
    page_server = make_server(page_root, port=0, quiet=True)
    threading.Thread(target=page_server.serve_forever, daemon=True).start()
    try:
        page = f"http://127.0.0.1:{page_server.server_address[1]}/index.html"
        proc = subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                page,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        page_server.shutdown()
        page_server.server_close()
    wheel = "hello_pyo3-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    size = (served[0].layout.dist_dir("2026_0") / wheel).stat().st_size
    assert f"FETCHED {index_url}/2026_0/{wheel} {size}" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_the_served_lock_names_wheels_by_absolute_url_for_pyodide_0_27(served):
    """Pyodide 0.27 (ABI 2024_0) resolves a relative file_name against the runtime's URL, not the lock's: the
    server makes the collection's names absolute; Pyodide's own packages keep their CDN URLs."""
    built, url = served
    on_disk = json.loads((built.layout.index_dir("2024_0") / "pyodide-lock.json").read_text())
    with urllib.request.urlopen(f"{url}/2024_0/pyodide-lock.json") as resp:
        lock = json.load(resp)
    assert on_disk["packages"]["hello-pyo3"]["file_name"] == "hello_pyo3-0.1.0-cp312-cp312-pyodide_2024_0_wasm32.whl"
    assert (
        lock["packages"]["hello-pyo3"]["file_name"] == f"{url}/2024_0/{on_disk['packages']['hello-pyo3']['file_name']}"
    )
    assert lock["packages"]["micropip"] == on_disk["packages"]["micropip"]
    assert {k: v for k, v in lock["packages"]["hello-pyo3"].items() if k != "file_name"} == {
        k: v for k, v in on_disk["packages"]["hello-pyo3"].items() if k != "file_name"
    }


def _check_index(project, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wasmwheel", "--root", str(project.root), "check-index", *args],
        env=project.env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_check_index_installs_every_crate_by_name_with_micropip_and_loads_one_in_chromium(built):
    """`check-index`: micropip (0.9.0 on Python 3.12, 0.11.1 on 3.14) installs each crate by name from the
    served index in the ABI's real Pyodide and the recipe's test runs; the served try page loads one crate
    in headless Chromium through loadPyodide({lockFileURL}) + loadPackage."""
    proc = _check_index(built, "--abi", "2024_0", "--abi", "2026_0", "--browser", "hello-two")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for abi in ("2024_0", "2026_0"):
        assert f"{abi}: installing 2 crates from http://127.0.0.1:" in out
    assert out.count("ok     hello-pyo3 0.1.0") == 2 and out.count("ok     hello-two 0.1.0") == 2, out
    assert out.count("ok     hello-two in headless Chromium (lockFileURL + loadPackage)") == 2, out
    assert "6 crates installed by name and tested (2 ABIs)" in out
    results = json.loads((built.layout.build / "index-check.json").read_text())["results"]
    assert {(r["abi"], r["crate"], r["environment"], r["ok"]) for r in results} == {
        (a, c, "node", True) for a in ("2024_0", "2026_0") for c in ("hello-pyo3", "hello-two")
    } | {(a, "hello-two", "browser", True) for a in ("2024_0", "2026_0")}
    # Each crate's own recipe test ran after the install (not only an import).
    assert all(r["tested"] for r in results if r["environment"] == "node"), results
    # The runtime's own log says micropip fetched the wheel from the index, by name.
    log = (built.layout.build / "logs" / "2026_0" / "hello-two" / "index-check.log").read_text()
    assert "micropip install hello-two from http://127.0.0.1:" in log


def test_check_index_finds_a_recipe_by_the_normalized_name_the_index_lists(tmp_path):
    """The index lists pydantic_core (the recipe's package name) as pydantic-core (PEP 503): its recipe, and so
    its test and test requirements, must still be found."""
    project = Project.load(
        REPO, env={"WASMWHEEL_BUILD_DIR": str(tmp_path / "build"), "WASMWHEEL_CACHE": str(tmp_path / "cache")}
    )
    found = check.recipes_by_project(project)
    assert project.recipes.recipes["pydantic-core"].package_name == "pydantic_core"
    assert found["pydantic-core"].name == "pydantic-core" and found["jiter"].name == "jiter"
    assert len(found) == len(project.recipes.recipes)


def test_check_index_fails_on_a_wheel_that_does_not_match_its_index_entry(built, tmp_path):
    """A published index whose wheel differs from its sha256 (a botched upload): micropip refuses it and
    check-index says which crate, exit 1."""
    copy = tmp_path / "published"
    shutil.copytree(built.layout.build / "index", copy)
    wheel = copy / "2026_0" / "hello_two-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    data = bytearray(wheel.read_bytes())
    wheel.unlink()
    wheel.write_bytes(bytes(data[:-1]) + bytes([data[-1] ^ 0xFF]))
    server = make_server(copy, port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = _check_index(built, "--abi", "2026_0", "--url", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ok     hello-pyo3 0.1.0" in proc.stdout
    failed = [line for line in proc.stdout.splitlines() if line.startswith("  FAILED hello-two")]
    sha = json.loads((copy / "2026_0" / "simple" / "hello-two" / "index.json").read_text())["files"][0]["hashes"]
    assert failed and f"install: RuntimeError: Invalid checksum: expected {sha['sha256']}" in failed[0], proc.stdout
    assert proc.stdout.rstrip().endswith("1 failed: hello-two@2026_0")


def test_the_index_takes_only_wheels_whose_smoke_test_passed(project):
    # `doit` builds, then indexes. A wheel that failed its test, or whose test did not run, is built
    # and kept in build/dist, but never published; fixed, it is indexed on the next run.
    _only(project, "2026_0")
    project.add_crate("hello-two", "hello_two")
    project.edit_toml(
        "recipes/hello-two.toml",
        lambda d: d["test"].update({"script": "import hello_two\nassert hello_two.sum_as_string(2, 2) == '5'\n"}),
    )
    run = project.doit(check=False)
    assert run.failed == ["smoke:hello-two@2026_0"] and "index:2026_0" in run.executed
    two = "hello_two-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    assert (project.layout.dist_dir("2026_0") / two).is_file()
    index = project.layout.index_dir("2026_0")
    assert sorted(p.name for p in index.glob("*.whl")) == [
        "hello_pyo3-0.1.0-cp314-cp314-pyemscripten_2026_0_wasm32.whl"
    ]
    lock = json.loads((index / "pyodide-lock.json").read_text())
    assert "hello-pyo3" in lock["packages"] and "hello-two" not in lock["packages"]
    assert f"left out {two}: its smoke test has not passed" in run.output
    assert "hello-two" not in _links(index / "simple" / "index.html")

    project.edit_toml("recipes/hello-two.toml", lambda d: d["test"].update({"script": "import hello_two\n"}))
    run = project.doit()
    assert sorted(run.executed) == ["index:2026_0", "smoke:hello-two@2026_0"]
    assert two in {p.name for p in index.glob("*.whl")}
    marker = json.loads((project.layout.tested_marker("2026_0", two)).read_text())
    assert marker["sha256"] == hashlib.sha256((project.layout.dist_dir("2026_0") / two).read_bytes()).hexdigest()

    # Other bytes under the tested wheel's name are not what was tested; a deleted mark reruns the test.
    wheel = project.layout.dist_dir("2026_0") / two
    original = wheel.read_bytes()
    wheel.write_bytes(original + b"\0")
    run = project.doit("index")
    assert f"left out {two}: the smoke test that passed was of other bytes under this name" in run.output
    wheel.write_bytes(original)
    project.layout.tested_marker("2026_0", two).unlink()
    run = project.doit()
    assert "smoke:hello-two@2026_0" in run.executed and two in {p.name for p in index.glob("*.whl")}
