"""A local HTTP server whose answers a test scripts, one action per request: transient failures,
connections dropped in the middle of the body, Range ignored or answered wrongly, wrong bytes, stalls,
and a pause in the middle of the body (so a test can kill the downloading process there).

    with FaultServer() as server:
        server.add("/mirror/x.tar.gz", data)
        server.plan("/mirror/x.tar.gz", "status:503", "drop:1000", "ok")
        ... server.url + "/mirror/x.tar.gz" ...
        server.requests  # what each request asked for and got

Actions (a path with no plan left answers "ok"):
  ok                   the file, honouring Range (206 + Content-Range)
  status:<code>[:<s>]  an error status, with Retry-After: <s> when given
  drop:<n>             the full Content-Length, then <n> bytes, then the connection is cut
  ignore-range         200 and the whole file, whatever Range asked
  bad-range            206, but from byte 0 whatever Range asked
  wrong-bytes          other bytes of the same length
  stall                headers, then silence until the client gives up (or ``server.release``)
  label-gzip           the file as is, labelled Content-Encoding: gzip (a classic misconfiguration)
  pause:<n>            <n> bytes, then ``server.paused`` is set and the answer waits for
                       ``server.release`` (or for the client to go away) before the rest
  reset                the connection is closed without an answer
"""

from __future__ import annotations

import http.server
import re
import socket
import threading


class FaultServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.plans: dict[str, list[str]] = {}
        self.requests: list[dict] = []
        self.paused = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server._answer(self)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- set-up -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def add(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.url + path

    def plan(self, path: str, *actions: str) -> None:
        with self._lock:
            self.plans[path] = list(actions)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def requests_for(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    # -- answering ----------------------------------------------------------------------
    def _answer(self, h: http.server.BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        with self._lock:
            plan = self.plans.get(path) or []
            action = plan.pop(0) if plan else "ok"
        rng = h.headers.get("Range")
        self.requests.append(
            {"path": path, "range": rng, "accept_encoding": h.headers.get("Accept-Encoding"), "action": action}
        )
        if action == "reset":
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if action.startswith("status:"):
            _, code, *after = action.split(":")
            h.send_response(int(code))
            if after:
                h.send_header("Retry-After", after[0])
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data = self.files.get(path)
        if data is None:
            h.send_error(404)
            return
        if action == "wrong-bytes":
            data = bytes(reversed(data))
        start = 0
        m = re.match(r"^bytes=(\d+)-$", rng or "")
        if m and action not in ("ignore-range",):
            start = int(m.group(1))
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            if action == "bad-range":
                start_sent = 0
            else:
                start_sent = start
            body = data[start_sent:]
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start_sent}-{len(data) - 1}/{len(data)}")
        else:
            body = data
            h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Content-Type", "application/octet-stream")
        if action == "label-gzip":
            h.send_header("Content-Encoding", "gzip")
        h.end_headers()
        try:
            if action.startswith("drop:"):
                h.wfile.write(body[: int(action.split(":")[1])])
                h.wfile.flush()
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            if action == "stall":
                while not self.release.wait(0.05):
                    if _peer_gone(h.connection):
                        return
            if action.startswith("pause:"):
                n = int(action.split(":")[1])
                h.wfile.write(body[:n])
                h.wfile.flush()
                body = body[n:]
                self.paused.set()
                while not self.release.wait(0.05):
                    if _peer_gone(h.connection):
                        return
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


def _peer_gone(conn: socket.socket) -> bool:
    """True when the client closed its end (a killed process)."""
    try:
        conn.setblocking(False)
        try:
            return conn.recv(1, socket.MSG_PEEK) == b""
        finally:
            conn.setblocking(True)
    except BlockingIOError:
        return False
    except OSError:
        return True
