"""`doit serve` / `python -m wasmwheel serve`: serve build/index over HTTP with CORS headers.

Pyodide fetches the lock file and the wheels with ``fetch()``, and a browser hands a page the
answer of another origin only when it carries ``Access-Control-Allow-Origin`` (CORS, see
https://developer.mozilla.org/en-US/docs/Web/HTTP/Guides/CORS): an index served from another
origin than the page needs it. This small stdlib server sends the CORS headers on every
response, answers preflight requests, negotiates PEP 691 JSON for ``simple/`` pages, makes
their wheel links absolute for micropip 0.9 and the lock's own ``file_name`` entries absolute
for Pyodide 0.27, and serves a page to try the packages in a browser (``/try.html``, wasmwheel/index/js/try.html).
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import sys
from importlib import resources
from pathlib import Path
from typing import ClassVar

from wasmwheel.index.index import PEP691_TYPE

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Type",
}


def absolute_links(page: bytes, base: str) -> bytes:
    """A project page with its root-relative wheel links (``/<abi>/<file>``, wasmwheel.index.index) made absolute
    under ``base``: micropip 0.9.0, the newest for Python 3.12 (ABI 2024_0), downloads a link as written and
    refuses one without a host ("Cannot download from a non-remote location"); pip and micropip >= 0.10
    resolve every form. Pages built with WASMWHEEL_INDEX_URL are absolute already and pass unchanged."""
    base = base.rstrip("/").encode()
    return page.replace(b'href="/', b'href="' + base + b"/").replace(b'"url": "/', b'"url": "' + base + b"/")


def absolute_lock(lock: bytes, base: str) -> bytes:
    """A pyodide-lock.json with its relative ``file_name`` entries (the collection's wheels, beside the lock;
    wasmwheel.index) made absolute under ``base``: Pyodide >= 0.28 resolves them against the lock's URL, but
    0.27 (ABI 2024_0) against ``indexURL``, the runtime's, so a page that loads the runtime from a CDN would
    look for the wheels there. Absolute names work for every version."""
    data = json.loads(lock)
    for entry in data.get("packages", {}).values():
        name = entry.get("file_name", "")
        if name and "://" not in name and not name.startswith("/"):
            entry["file_name"] = base.rstrip("/") + "/" + name
    return json.dumps(data, indent=1, sort_keys=True).encode()


def served_abis(root: Path) -> list[str]:
    """The ABIs of an index folder: those with a lock file."""
    return sorted(p.name for p in Path(root).iterdir() if (p / "pyodide-lock.json").is_file())


def try_url(base: str, abi: str, **params: str) -> str:
    """The address of the try page (js/try.html) for ``abi`` on a server at ``base``."""
    from urllib.parse import urlencode

    return f"{base.rstrip('/')}/try.html?" + urlencode({"abi": abi, **params})


def page_file(name: str) -> Path:
    """A file of the try page, shipped in the package (wasmwheel/index/js/)."""
    return Path(str(resources.files("wasmwheel.index") / "js" / name))


PAGE_FILES = {"/try.html": ("try.html", "text/html; charset=utf-8"), "/try.mjs": ("try.mjs", "text/javascript")}


class IndexHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".whl": "application/octet-stream",
        ".json": "application/json",
        ".html": "text/html; charset=utf-8",
    }
    quiet = False

    def end_headers(self) -> None:
        for key, value in CORS_HEADERS.items():
            self.send_header(key, value)
        self.send_header("Vary", "Accept")
        super().end_headers()

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, data: bytes, ctype: str) -> io.BytesIO:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return io.BytesIO(data)

    def send_head(self):
        url_path = self.path.split("?", 1)[0]
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        if url_path in PAGE_FILES:
            name, ctype = PAGE_FILES[url_path]
            return self._answer(page_file(name).read_bytes(), ctype)
        if url_path == "/try.json":
            return self._answer(json.dumps({"abis": served_abis(Path(self.directory))}).encode(), "application/json")
        path = Path(self.translate_path(self.path))
        if path.name == "pyodide-lock.json" and path.is_file():
            abi = path.parent.name
            return self._answer(absolute_lock(path.read_bytes(), f"http://{host}/{abi}"), "application/json")
        if path.is_dir() and not self.path.split("?", 1)[0].endswith("/"):
            return super().send_head()  # redirects to "<folder>/"
        page = path / "index.html" if path.is_dir() else path
        try:
            inside_simple = "simple" in page.relative_to(Path(self.directory).resolve()).parts[:-1]
        except ValueError:
            inside_simple = False
        if not inside_simple or page.name not in ("index.html", "index.json") or not page.is_file():
            return super().send_head()
        # PEP 691: a simple/ page asked for as JSON gets the index.json beside its index.html.
        as_json = page.name == "index.json" or (path.is_dir() and PEP691_TYPE in self.headers.get("Accept", ""))
        page = page.with_name("index.json") if as_json else page
        data = absolute_links(page.read_bytes(), f"http://{host}")
        return self._answer(data, PEP691_TYPE if as_json else "text/html; charset=utf-8")

    def log_message(self, format, *args):
        if not self.quiet:
            sys.stderr.write(f"   {self.address_string()} {format % args}\n")


def make_server(
    root: Path, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False
) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(type("Handler", (IndexHandler,), {"quiet": quiet}), directory=str(root))
    return http.server.ThreadingHTTPServer((host, port), handler)


def serve(root: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    root = Path(root)
    if not root.is_dir():
        from wasmwheel.model.errors import WasmwheelError

        raise WasmwheelError(f"{root} does not exist: run `doit index` first")
    server = make_server(root, host, port)
    base = f"http://{host}:{server.server_address[1]}"
    print(f"serving {root} at {base}/ (CORS enabled; Ctrl-C to stop)")
    for abi in served_abis(root):
        print(f"  {abi}: {base}/{abi}/simple/  lock: {base}/{abi}/pyodide-lock.json  try: {try_url(base, abi)}")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
