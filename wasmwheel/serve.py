"""`doit serve` / `python -m wasmwheel serve`: serve build/index over HTTP with CORS headers.

Pyodide fetches the lock file and the wheels with ``fetch()``, and a browser hands a page the
answer of another origin only when it carries ``Access-Control-Allow-Origin`` (CORS, see
https://developer.mozilla.org/en-US/docs/Web/HTTP/Guides/CORS): an index served from another
origin than the page needs it. This small stdlib server sends the CORS headers on every
response, answers preflight requests, negotiates PEP 691 JSON for ``simple/`` pages and makes
their wheel links absolute for micropip 0.9.
"""

from __future__ import annotations

import functools
import http.server
import io
import sys
from pathlib import Path
from typing import ClassVar

from .index import PEP691_TYPE

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Type",
}


def absolute_links(page: bytes, base: str) -> bytes:
    """A project page with its root-relative wheel links (``/<abi>/<file>``, wasmwheel.index) made absolute
    under ``base``: micropip 0.9.0, the newest for Python 3.12 (ABI 2024_0), downloads a link as written and
    refuses one without a host ("Cannot download from a non-remote location"); pip and micropip >= 0.10
    resolve every form. Pages built with WASMWHEEL_INDEX_URL are absolute already and pass unchanged."""
    base = base.rstrip("/").encode()
    return page.replace(b'href="/', b'href="' + base + b"/").replace(b'"url": "/', b'"url": "' + base + b"/")


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

    def do_OPTIONS(self) -> None:  # noqa: N802 - http.server naming
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_head(self):
        path = Path(self.translate_path(self.path))
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
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        data = absolute_links(page.read_bytes(), f"http://{host}")
        self.send_response(200)
        self.send_header("Content-Type", PEP691_TYPE if as_json else "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return io.BytesIO(data)

    def log_message(self, format, *args):  # noqa: A002 - http.server signature
        if not self.quiet:
            sys.stderr.write(f"   {self.address_string()} {format % args}\n")


def make_server(root: Path, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(type("Handler", (IndexHandler,), {"quiet": quiet}), directory=str(root))
    return http.server.ThreadingHTTPServer((host, port), handler)


def serve(root: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    root = Path(root)
    if not root.is_dir():
        from .errors import WasmwheelError

        raise WasmwheelError(f"{root} does not exist: run `doit index` first")
    server = make_server(root, host, port)
    abis = sorted(p.name for p in root.iterdir() if (p / "pyodide-lock.json").exists())
    print(f"serving {root} at http://{host}:{server.server_address[1]}/ (CORS enabled; Ctrl-C to stop)")
    for abi in abis:
        print(f"  {abi}: http://{host}:{server.server_address[1]}/{abi}/simple/  "
              f"lock: http://{host}:{server.server_address[1]}/{abi}/pyodide-lock.json")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
