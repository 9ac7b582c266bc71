"""The smoke test in headless Chromium.

Two local HTTP servers: one serves the test page (js/browser.html, which runs the
same js/smoke-core.mjs as Node) and receives its reports; the other serves the
Pyodide runtime and the wheels from another origin with CORS headers, the way a
CDN serves them to real pages. Chromium runs with a fresh profile and no outside
network. Each test gets a fresh browser, so a fresh interpreter.
"""

from __future__ import annotations

import http.server
import json
import mimetypes
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from wasmwheel.model.errors import WasmwheelError
from wasmwheel.runner import StepLog, start
from wasmwheel.smoke.server import script

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
)
BOOT_LIMIT = 180  # seconds for Chromium to start and Pyodide to boot
PAGE_FILES = {"/": "browser.html", "/browser.mjs": "browser.mjs", "/smoke-core.mjs": "smoke-core.mjs"}
TYPES = {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".zip": "application/zip",
    ".whl": "application/zip",
}


class BrowserUnavailable(WasmwheelError):
    pass


def find_chromium(configured: str | None = None) -> str:
    if configured:
        found = shutil.which(configured)
        if not found:
            raise BrowserUnavailable(f"WASMWHEEL_CHROMIUM={configured} is not an executable")
        return found
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserUnavailable(
        "Chromium not found: browser smoke tests need it (`apt-get install chromium`), "
        "or set WASMWHEEL_CHROMIUM to a Chromium/Chrome executable"
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    files: ClassVar[dict[str, Path]] = {}  # URL path -> file
    cors = False
    events: queue.Queue[tuple[str, bytes]] | None = None
    job: bytes = b""

    def log_message(self, *args: Any) -> None:
        pass

    def _headers(self, status: int, length: int, ctype: str = "") -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        if self.cors:
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "GET, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "*")
            self.send_header("Cross-Origin-Resource-Policy", "cross-origin")
        self.end_headers()

    def do_OPTIONS(self) -> None:
        self._headers(204, 0)

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path == "/job.json" and self.job:
            self._headers(200, len(self.job), "application/json")
            self.wfile.write(self.job)
            return
        file = self.files.get(path)
        if file is None or not file.is_file():
            self._headers(404, 0)
            return
        data = file.read_bytes()
        self._headers(
            200, len(data), TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        )
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlsplit(self.path).path
        if self.events is not None and path in ("/output", "/started", "/result"):
            self.events.put((path[1:], body))
            self._headers(204, 0)
        else:
            self._headers(404, 0)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the browser closing its connections when it is stopped


def _serve(handler: type[_Handler]) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@contextmanager
def file_server(files: dict[str, Path], cors: bool = True) -> Iterator[str]:
    """Serve ``files`` (URL path -> file) on a local origin meanwhile, with CORS headers as a CDN sends them."""
    server, origin = _serve(type("Files", (_Handler,), {"files": dict(files), "cors": cors}))
    try:
        yield origin
    finally:
        server.shutdown()
        server.server_close()


def runtime_files(runtime: Path, prefix: str = "/pyodide/") -> dict[str, Path]:
    """The files of a Pyodide runtime (the npm package folder) under ``prefix``."""
    return {f"{prefix}{p.name}": p for p in Path(runtime).iterdir() if p.is_file()}


def open_page(
    url: str, events: queue.Queue[tuple[str, bytes]], timeout: int, log: StepLog, chromium: str
) -> dict[str, Any]:
    """Open ``url`` in a fresh headless Chromium (own profile) and wait for what the page reports to
    ``events`` (``output`` text, ``started`` after the boot, then the JSON ``result``)."""
    profile = tempfile.mkdtemp(prefix="wasmwheel-chromium-")
    browser = None
    try:
        browser = start([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url], log=log, what="chromium")
        return _wait(events, browser, timeout, log)
    finally:
        if browser is not None:
            browser.stop()
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def report_receiver() -> Iterator[tuple[str, queue.Queue[tuple[str, bytes]]]]:
    """An origin that takes a page's reports (POST /output, /started, /result; CORS) into a queue."""
    events: queue.Queue[tuple[str, bytes]] = queue.Queue()
    server, origin = _serve(type("Receiver", (_Handler,), {"events": events, "cors": True}))
    try:
        yield origin, events
    finally:
        server.shutdown()
        server.server_close()


def run_in_browser(
    runtime: Path, wheels: Sequence[Path], payload: dict[str, Any], timeout: int, log: StepLog, chromium: str
) -> dict[str, Any]:
    """Run one smoke job (``payload`` as for Node; its wheel URLs are replaced) in headless Chromium."""
    wheel_urls = {f"/wheels/{i}/{Path(w).name}": Path(w) for i, w in enumerate(wheels)}
    with file_server({**runtime_files(runtime), **wheel_urls}) as asset_origin:
        events: queue.Queue[tuple[str, bytes]] = queue.Queue()
        job = {
            **payload,
            "runtime_url": f"{asset_origin}/pyodide/",
            "wheels": [{"name": Path(w).name, "url": asset_origin + u} for u, w in wheel_urls.items()],
        }
        page = type(
            "Page",
            (_Handler,),
            {"files": {u: script(n) for u, n in PAGE_FILES.items()}, "events": events, "job": json.dumps(job).encode()},
        )
        page_server, page_origin = _serve(page)
        log.write(f"# page {page_origin}/, runtime and wheels from {asset_origin} (CORS)\n")
        try:
            return open_page(f"{page_origin}/", events, timeout, log, chromium)
        finally:
            page_server.shutdown()
            page_server.server_close()


def _wait(events: queue.Queue[tuple[str, bytes]], browser, timeout: int, log: StepLog) -> dict[str, Any]:
    output: list[str] = []
    result = _events(events, browser, timeout, log, output)
    return {**result, "output": "".join(output)}


def _events(
    events: queue.Queue[tuple[str, bytes]], browser, timeout: int, log: StepLog, output: list[str]
) -> dict[str, Any]:
    deadline = time.monotonic() + BOOT_LIMIT
    started = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if started:
                return {
                    "ok": False,
                    "stage": "timeout",
                    "load_errors": [],
                    "error": f"the smoke test did not finish within {timeout} s and was killed",
                }
            return {
                "ok": False,
                "stage": "boot",
                "load_errors": [],
                "error": f"Pyodide did not boot in Chromium within {BOOT_LIMIT} s",
            }
        try:
            kind, body = events.get(timeout=min(remaining, 1.0))
        except queue.Empty:
            code = browser.poll()
            if code is not None:
                return {
                    "ok": False,
                    "stage": "crash",
                    "load_errors": [],
                    "error": f"Chromium exited with code {code} before the test finished",
                }
            continue
        if kind == "output":
            output.append(body.decode("utf-8", errors="replace"))
            log.write(output[-1])
        elif kind == "started":
            started = True
            boot = json.loads(body or b"{}").get("boot")
            log.write(f"# Pyodide booted in Chromium in {boot} s\n")
            deadline = time.monotonic() + timeout
        elif kind == "result":
            return json.loads(body)
