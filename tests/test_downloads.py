"""Downloads against a local server that fails on purpose: retries with backoff, resume with Range or a
restart, sha256 verified before the file is used, mismatches deleted and both hashes named, and errors
that name the URL and the mirror setting. Also: every mirror setting is honoured and documented."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import threading
from pathlib import Path

import pytest

from faultserver import FaultServer
from wasmwheel.download import DownloadError, Origin, fetch
from wasmwheel.runner import StepLog

REPO = Path(__file__).resolve().parents[1]
DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
NAME = "emcc-4.0.9_nightly-2025-02-01.tar.bz2"
PATH = f"/mirror/{NAME}"
UPSTREAM = f"https://github.com/pyodide/sysroot/releases/download/v1/{NAME}"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("WASMWHEEL_RETRY_BACKOFF", "0.01")
    with FaultServer() as server:
        server.add(PATH, DATA)
        yield server


def _origin(server: FaultServer) -> Origin:
    return Origin(UPSTREAM, server.url + "/mirror", "WASMWHEEL_SYSROOT_MIRROR")


def _fetch(server: FaultServer, tmp_path: Path, sha: str | None = SHA, timeout: float = 10) -> tuple[Path, str]:
    dest = tmp_path / "cache" / NAME
    log_path = tmp_path / "fetch.log"
    with StepLog(log_path) as log:
        try:
            fetch(_origin(server), dest, sha, log, timeout=timeout)
        finally:
            log.close()
    return dest, log_path.read_text()


def _leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock"))


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_a_mirror_that_is_a_local_folder_is_copied_and_verified(tmp_path, form):
    folder = tmp_path / "mirror dir"  # a space: the file:// form quotes it
    folder.mkdir()
    (folder / NAME).write_bytes(DATA)
    mirror = str(folder) if form == "path" else folder.as_uri()
    origin = Origin(UPSTREAM, mirror, "WASMWHEEL_SYSROOT_MIRROR")
    with StepLog(None, echo=False) as log:
        dest = fetch(origin, tmp_path / "cache" / NAME, SHA, log)
        assert dest.read_bytes() == DATA and _leftovers(tmp_path) == [NAME]
        dest.unlink()
        (folder / NAME).write_bytes(DATA + b"changed")  # verified like any download
        with pytest.raises(DownloadError, match=f"sha256 mismatch for {re.escape(mirror)}/{NAME}: expected {SHA}"):
            fetch(origin, dest, SHA, log)
        (folder / NAME).unlink()
        with pytest.raises(DownloadError) as err:
            fetch(origin, dest, SHA, log)
    assert str(err.value) == (
        f"could not read {mirror}/{NAME}: No such file or directory (from the mirror "
        f"WASMWHEEL_SYSROOT_MIRROR={mirror}: check that it serves {NAME})"
    )
    assert _leftovers(tmp_path) == []


def test_transient_errors_are_retried_with_backoff(server, tmp_path):
    server.plan(PATH, "status:503", "reset", "status:502")  # three failures in a row is one too many...
    with pytest.raises(DownloadError) as err:
        _fetch(server, tmp_path)
    assert str(err.value) == (
        f"could not download {server.url}{PATH} after 3 attempts: HTTP 502 Bad Gateway "
        f"(from the mirror WASMWHEEL_SYSROOT_MIRROR={server.url}/mirror: check that it serves {NAME})"
    )
    assert _leftovers(tmp_path) == []
    server.plan(PATH, "status:503", "reset", "ok")  # ...two are not
    dest, log = _fetch(server, tmp_path)
    assert dest.read_bytes() == DATA
    delays = [float(d) for d in re.findall(r"retrying in ([0-9.]+)s", log)]
    assert delays == [0.01, 0.02]  # exponential backoff
    assert "(HTTP 503 Service Unavailable)" in log


def test_retry_after_is_honoured(server, tmp_path):
    server.plan(PATH, "status:429:1")
    dest, log = _fetch(server, tmp_path)
    assert dest.read_bytes() == DATA
    assert "retrying in 1s (HTTP 429 Too Many Requests)" in log


def test_a_connection_dropped_mid_body_is_resumed_with_range(server, tmp_path):
    server.plan(PATH, "drop:100000", "drop:50000", "ok")
    dest, log = _fetch(server, tmp_path)
    assert dest.read_bytes() == DATA
    assert [r["range"] for r in server.requests_for(PATH)] == [None, "bytes=100000-", "bytes=150000-"]
    assert "the connection dropped after 100,000 bytes" in log and "resuming at byte 150,000" in log


def test_drops_that_make_progress_do_not_use_up_the_retries(server, tmp_path):
    server.plan(PATH, *[f"drop:{40_000}"] * 6, "ok")
    dest, _ = _fetch(server, tmp_path)
    assert dest.read_bytes() == DATA and len(server.requests_for(PATH)) == 7


def test_a_server_that_ignores_range_gets_the_file_from_the_start(server, tmp_path):
    server.plan(PATH, "drop:100000", "ignore-range")
    dest, log = _fetch(server, tmp_path)
    assert dest.read_bytes() == DATA  # not the first 100000 bytes twice
    assert "the server does not resume downloads; starting again" in log


def test_a_wrong_range_answer_restarts_the_download(server, tmp_path):
    server.plan(PATH, "drop:100000", "bad-range", "ok")
    dest, log = _fetch(server, tmp_path)
    assert dest.read_bytes() == DATA
    assert "the server sent bytes from 0 when asked for byte 100000; starting again" in log
    assert [r["range"] for r in server.requests_for(PATH)] == [None, "bytes=100000-", None]


def test_wrong_bytes_are_deleted_and_both_hashes_named(server, tmp_path):
    server.plan(PATH, "wrong-bytes")
    with pytest.raises(DownloadError) as err:
        _fetch(server, tmp_path)
    got = hashlib.sha256(bytes(reversed(DATA))).hexdigest()
    assert str(err.value) == (
        f"sha256 mismatch for {server.url}{PATH}: expected {SHA}, got {got}; the file was "
        "deleted (a changed upstream file or a bad mirror)"
    )
    assert _leftovers(tmp_path) == []  # neither the file nor a .part


def test_a_stale_partial_file_from_an_earlier_run_is_resumed_then_replaced_when_it_does_not_match(server, tmp_path):
    dest = tmp_path / "cache" / NAME
    dest.parent.mkdir(parents=True)
    dest.with_name(NAME + ".part").write_bytes(b"\0" * 1000)  # e.g. of another version of the file
    dest, log = _fetch(server, tmp_path)
    assert dest.read_bytes() == DATA
    assert "resuming " + NAME + ".part (1,000 bytes from an earlier run)" in log
    assert "the resumed file does not match its sha256; downloading it again from the start" in log
    assert [r["range"] for r in server.requests_for(PATH)] == ["bytes=1000-", None]


def test_a_complete_partial_file_is_verified_without_downloading_it_again(server, tmp_path):
    dest = tmp_path / "cache" / NAME
    dest.parent.mkdir(parents=True)
    dest.with_name(NAME + ".part").write_bytes(DATA)  # a run killed after the body, before the rename
    dest, log = _fetch(server, tmp_path)
    assert dest.read_bytes() == DATA
    assert [r["range"] for r in server.requests_for(PATH)] == [f"bytes={len(DATA)}-"]
    assert "the partial file is already complete" in log


def test_a_file_labelled_gzip_is_stored_as_sent(server, tmp_path):
    packed = gzip.compress(b"a tar archive" * 1000)
    server.add(PATH, packed)
    server.plan(PATH, "label-gzip")
    dest, _ = _fetch(server, tmp_path, sha=hashlib.sha256(packed).hexdigest())
    assert dest.read_bytes() == packed
    assert server.requests_for(PATH)[0]["accept_encoding"] == "identity"


def test_a_stalled_server_times_out_and_is_retried(server, tmp_path):
    server.plan(PATH, "stall", "ok")  # no byte of the body ever comes: only the client's timeout ends it
    dest, log = _fetch(server, tmp_path, timeout=0.5)
    assert dest.read_bytes() == DATA
    assert "retrying in" in log and "timed out" in log


def test_not_found_is_not_retried_and_names_the_mirror_setting(server, tmp_path):
    server.plan(PATH, "status:404")
    with pytest.raises(DownloadError) as err:
        _fetch(server, tmp_path)
    assert str(err.value).startswith(
        f"could not download {server.url}{PATH}: HTTP 404 Not Found (from the mirror WASMWHEEL_SYSROOT_MIRROR="
    )
    assert len(server.requests_for(PATH)) == 1


def test_no_network_names_the_url_and_the_mirror_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("WASMWHEEL_RETRY_BACKOFF", "0.01")
    with socket_closed_port() as port, StepLog(None) as log:
        url = f"http://127.0.0.1:{port}/releases/{NAME}"
        with pytest.raises(DownloadError) as err:
            fetch(Origin(url, None, "WASMWHEEL_SYSROOT_MIRROR"), tmp_path / NAME, SHA, log)
    assert str(err.value) == (
        f"could not download {url} after 3 attempts: Connection refused (no mirror is set: "
        f"point WASMWHEEL_SYSROOT_MIRROR at a URL prefix that serves {NAME})"
    )


def test_a_cached_file_is_used_only_if_its_sha256_matches(server, tmp_path):
    dest, _ = _fetch(server, tmp_path)
    _fetch(server, tmp_path)
    assert len(server.requests_for(PATH)) == 1  # the second fetch used the cache
    dest.write_bytes(b"tampered")
    _, log = _fetch(server, tmp_path)
    assert dest.read_bytes() == DATA and "has the wrong sha256; downloading again" in log
    assert len(server.requests_for(PATH)) == 2


def test_two_fetches_of_one_file_at_once_download_it_once(server, tmp_path):
    server.plan(PATH, "pause:1000")
    results: list[object] = []

    def one():
        try:
            results.append(_fetch(server, tmp_path)[0].read_bytes() == DATA)
        except Exception as exc:  # noqa: BLE001 - whatever a thread raises is reported below
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    assert server.paused.wait(300)
    server.release.set()
    for t in threads:
        t.join(300)
    assert results == [True, True]
    assert len(server.requests_for(PATH)) == 1


class socket_closed_port:
    """A local port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc) -> None:
        pass


# -- mirrors: honoured and documented ----------------------------------------------------------------

MIRROR_SETTINGS = (
    "WASMWHEEL_EMSDK_URL",
    "WASMWHEEL_SYSROOT_MIRROR",
    "WASMWHEEL_PATCH_MIRROR",
    "WASMWHEEL_SDIST_MIRROR",
    "WASMWHEEL_PYPI_URL",
    "WASMWHEEL_NPM_REGISTRY",
)


def test_every_setting_is_documented_in_the_settings_module_and_the_readme():
    from wasmwheel.model.settings import VARIABLES

    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Settings") :]
    for name in (
        *MIRROR_SETTINGS,
        "WASMWHEEL_CACHE",
        "WASMWHEEL_BUILD_DIR",
        "WASMWHEEL_SYSTEM",
        "WASMWHEEL_RETRY_BACKOFF",
    ):
        assert name in VARIABLES, name
        assert f"| `{name}` |" in table, name
    # and nothing in the code reads an undocumented WASMWHEEL_ variable
    used = set()
    for path in (REPO / "wasmwheel").rglob("*.py"):
        used |= set(re.findall(r"\"(WASMWHEEL_[A-Z_]+)\"", path.read_text()))
    # Set by wasmwheel for the build (the [depends] build wheels; what the lean linker is told), not read
    # from the user.
    from wasmwheel.toolchain.linker import LINK_ENV

    used -= {"WASMWHEEL_BUILD_WHEELS", *LINK_ENV}
    assert used <= set(VARIABLES), used - set(VARIABLES)


def test_no_file_points_at_notes_outside_the_repository():
    """Facts are stated with their public source, not by a pointer to notes that are not in the repository
    (shared/ABI-FACTS.md, shared/LANDSCAPE.md of the workspace this was written in)."""
    import subprocess

    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    pointers = re.compile(r"\bshared/[\w.-]+|ABI-FACTS|LANDSCAPE\.md")
    found = []
    for name in filter(None, files):
        if name == Path(__file__).relative_to(REPO).as_posix():
            continue  # this test names them
        try:
            text = (REPO / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary (wheels, gzip) or gone from the work tree
        found += [f"{name}: {m.group()}" for m in pointers.finditer(text)]
    assert found == []


def test_the_sdist_mirror_is_used_for_url_sources(project, server):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = b"[project]\nname = 'mirrored'\nversion = '1.0'\n"
        info = tarfile.TarInfo("mirrored-1.0/pyproject.toml")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    sdist = buf.getvalue()
    server.add("/pypi-mirror/mirrored-1.0.tar.gz", sdist)
    (project.root / "recipes" / "mirrored.toml").write_text(
        '[package]\nname = "mirrored"\nversion = "1.0"\n\n[source]\n'
        'url = "https://files.pythonhosted.org/packages/ab/cd/mirrored-1.0.tar.gz"\n'
        f'sha256 = "{hashlib.sha256(sdist).hexdigest()}"\n'
    )
    project.doit("source:mirrored", env={"WASMWHEEL_SDIST_MIRROR": server.url + "/pypi-mirror/"})
    assert [r["path"] for r in server.requests] == ["/pypi-mirror/mirrored-1.0.tar.gz"]
    assert (project.layout.src_dir("mirrored") / "pyproject.toml").read_bytes() == data
    # Unset, the recipe's own URL is used; without a network that fails naming the URL and the setting.
    project.doit("forget", "source:mirrored")
    project.layout.download(hashlib.sha256(sdist).hexdigest(), "mirrored-1.0.tar.gz").unlink()
    run = project.doit("source:mirrored", check=False, env={"HTTPS_PROXY": "http://127.0.0.1:9"})
    assert "could not download https://files.pythonhosted.org/packages/ab/cd/mirrored-1.0.tar.gz" in run.output
    assert "point WASMWHEEL_SDIST_MIRROR at a URL prefix that serves mirrored-1.0.tar.gz" in run.output


@pytest.mark.slow  # runs npm
def test_the_npm_registry_setting_reaches_npm(tmp_path):
    """With an unreachable registry (and an empty npm cache) installing a runtime fails naming the
    registry and the setting: so npm was told to use it, not the default registry."""
    from wasmwheel.model.abi import load_abi
    from wasmwheel.model.layout import Layout
    from wasmwheel.model.settings import Settings
    from wasmwheel.runtime import provision_runtime
    from wasmwheel.toolchain.npm import NpmError

    with socket_closed_port() as port:
        registry = f"http://127.0.0.1:{port}/"
        env = {**os.environ, "WASMWHEEL_CACHE": str(tmp_path / "cache"), "WASMWHEEL_NPM_REGISTRY": registry}
        layout = Layout(Settings.from_env(REPO, env))
        abi = load_abi(REPO / "abi" / "2026_0.toml")
        old = {k: os.environ.get(k) for k in ("npm_config_cache", "npm_config_fetch_retries")}
        os.environ.update({"npm_config_cache": str(tmp_path / "npm-cache"), "npm_config_fetch_retries": "0"})
        try:
            with StepLog(tmp_path / "npm.log") as log, pytest.raises(NpmError) as err:
                provision_runtime(abi, layout, log)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    assert f"(registry {registry}; set WASMWHEEL_NPM_REGISTRY to a reachable npm registry or mirror)" in str(err.value)
    assert f"--registry {registry}" in (tmp_path / "npm.log").read_text()
    assert not (tmp_path / "cache" / "pyodide" / abi.pyodide_version).exists()
