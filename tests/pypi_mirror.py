"""A local stand-in for PyPI's JSON API that serves real sdists.

The sdists are downloaded once from PyPI (sha256-checked, kept under the test
cache) and served with the JSON documents PyPI would give for them: files live
at PyPI's storage path ``/packages/<b2[:2]>/<b2[2:4]>/<b2[4:]>/<file>``. Knobs
imitate the mirrors seen in the wild: relative file URLs, no per-version
endpoint, and a file whose bytes do not match the digest in the JSON.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from conftest import TEST_CACHE
from wasmwheel.download import Origin, fetch
from wasmwheel.runner import StepLog

SDIST_CACHE = TEST_CACHE / "sdists"


def cached_sdist(url: str, sha256: str) -> Path:
    """A real file from PyPI, downloaded once and verified."""
    name = url.rsplit("/", 1)[-1]
    with StepLog(None, echo=False) as log:
        return fetch(Origin(url), SDIST_CACHE / sha256 / name, sha256, log)


@dataclass
class Served:
    path: Path
    sha256: str  # what the JSON claims
    blake2b_256: str
    packagetype: str = "sdist"
    body: bytes | None = None  # served instead of the file (a bad mirror)
    yanked_reason: str | None = None  # set: the file is yanked (PEP 592), with this reason ("" for none)

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass
class FakePyPI:
    releases: dict[str, dict[str, list[Served]]] = field(default_factory=dict)  # canonical name -> version -> files
    display: dict[str, str] = field(default_factory=dict)  # canonical name -> PyPI's spelling
    relative_urls: bool = False
    version_endpoint: bool = True
    requests: list[str] = field(default_factory=list)
    url: str = ""

    def add(
        self,
        name: str,
        version: str,
        path: Path,
        *,
        packagetype: str = "sdist",
        claim_sha256: str | None = None,
        body: bytes | None = None,
        yanked_reason: str | None = None,
    ) -> Served:
        data = path.read_bytes()
        served = Served(
            path,
            claim_sha256 or hashlib.sha256(data).hexdigest(),
            hashlib.blake2b(data, digest_size=32).hexdigest(),
            packagetype,
            body,
            yanked_reason,
        )
        key = _canon(name)
        self.display.setdefault(key, name)
        self.releases.setdefault(key, {}).setdefault(version, []).append(served)
        return served

    def file_path(self, served: Served) -> str:
        b2 = served.blake2b_256
        return f"/packages/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{served.filename}"

    # -- JSON documents ---------------------------------------------------------------------
    def _file_entry(self, served: Served, doc_path: str) -> dict:
        path = self.file_path(served)
        if self.relative_urls:  # as some mirrors do: relative to the JSON document
            depth = doc_path.strip("/").count("/")
            url = "../" * depth + path.lstrip("/")
        else:
            url = self.url + path
        return {
            "filename": served.filename,
            "url": url,
            "packagetype": served.packagetype,
            "digests": {"sha256": served.sha256, "blake2b_256": served.blake2b_256},
            "size": served.path.stat().st_size,
            "yanked": served.yanked_reason is not None,
            "yanked_reason": served.yanked_reason or None,
        }

    def _latest(self, key: str) -> str:
        """The newest version with a file that is not yanked, as PyPI's info.version."""
        from packaging.version import Version

        live = [v for v, files in self.releases[key].items() if any(f.yanked_reason is None for f in files)]
        return str(max(live or self.releases[key], key=Version))

    def document(self, path: str) -> dict | None:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if len(parts) not in (3, 4) or parts[0] != "pypi" or parts[-1] != "json":
            return None
        key = _canon(parts[1])
        if key not in self.releases:
            return None
        if len(parts) == 4:
            version = parts[2]
            if not self.version_endpoint or version not in self.releases[key]:
                return None
            files = self.releases[key][version]
            return {
                "info": {"name": self.display[key], "version": version},
                "urls": [self._file_entry(f, path) for f in files],
            }
        latest = self._latest(key)
        return {
            "info": {"name": self.display[key], "version": latest},
            "urls": [self._file_entry(f, path) for f in self.releases[key][latest]],
            "releases": {v: [self._file_entry(f, path) for f in fs] for v, fs in self.releases[key].items()},
        }

    def body(self, path: str) -> bytes | None:
        for versions in self.releases.values():
            for files in versions.values():
                for served in files:
                    if self.file_path(served) == path:
                        return served.body if served.body is not None else served.path.read_bytes()
        return None


def _canon(name: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name)


def serve(pypi: FakePyPI):
    """Start ``pypi`` on a free loopback port; returns the server (call .shutdown())."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            path = urlsplit(self.path).path
            pypi.requests.append(path)
            doc = pypi.document(path)
            if doc is not None:
                payload, ctype = json.dumps(doc).encode(), "application/json"
            else:
                payload, ctype = pypi.body(path), "application/octet-stream"
            if payload is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    pypi.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def make_sdist(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A small sdist ``<name>-<version>.tar.gz`` in ``folder`` holding ``files`` (relative path -> text)
    under the one top folder sdists have, with a PKG-INFO as `maturin sdist` writes."""
    import io
    import tarfile

    top = f"{name.replace('-', '_')}-{version}"
    files = {"PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", **files}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
            tar.addfile(info, io.BytesIO(data))
    return path
