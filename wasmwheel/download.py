"""Downloads with retries, resume, sha256 verification and mirror-aware errors.

A download goes to ``<dest>.part`` and is renamed to ``dest`` only after its
sha256 matched, so a partial or corrupt file never looks finished. Transient
failures (connection errors, timeouts, 5xx, 429) are retried with backoff; an
interrupted ``.part`` is resumed with a Range request when the server allows it.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import WasmwheelError
from .fsutil import CHUNK, file_lock, sha256_file
from .runner import StepLog

RETRIES = 3
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


class DownloadError(WasmwheelError):
    pass


@dataclass(frozen=True)
class Origin:
    """Where a file comes from and which setting points it at a mirror."""

    url: str
    mirror: str | None = None  # URL prefix; the file is fetched from <mirror>/<file name>
    setting: str = ""  # the environment variable that sets the mirror

    @property
    def filename(self) -> str:
        return self.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]

    @property
    def effective_url(self) -> str:
        if self.mirror:
            return self.mirror.rstrip("/") + "/" + self.filename
        return self.url


def _backoff(attempt: int) -> float:
    base = float(os.environ.get("WASMWHEEL_RETRY_BACKOFF", "1.0"))
    return base * (2 ** attempt)


def _hint(origin: Origin) -> str:
    if origin.setting:
        where = "the mirror" if origin.mirror else "no mirror is set"
        return f"({where}; set {origin.setting} to a URL prefix that serves {origin.filename})"
    return ""


def fetch(origin: Origin, dest: Path, sha256: str | None, log: StepLog, timeout: float = 60.0) -> Path:
    """Download ``origin`` to ``dest`` and verify it. Returns ``dest``.

    If ``dest`` already exists with the right sha256 nothing is downloaded. With
    ``sha256=None`` the file is accepted as is (used only by ``pin-sysroot``, whose
    job is to measure it).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest, what=dest.name, log=log):
        if dest.exists():
            if sha256 is None or sha256_file(dest) == sha256:
                log.note(f"using cached {dest.name}")
                return dest
            log.note(f"cached {dest.name} has the wrong sha256; downloading again")
            dest.unlink()
        url = origin.effective_url
        part = dest.with_name(dest.name + ".part")
        last_error = ""
        for attempt in range(RETRIES):
            if attempt:
                delay = _backoff(attempt - 1)
                log.note(f"retrying in {delay:.1f}s ({last_error})", console=True)
                time.sleep(delay)
            try:
                _download_once(url, part, log, timeout)
                break
            except _Transient as exc:
                last_error = str(exc)
            except _Permanent as exc:
                raise DownloadError(f"could not download {url}: {exc} {_hint(origin)}".rstrip()) from None
        else:
            raise DownloadError(f"could not download {url} after {RETRIES} attempts: {last_error} {_hint(origin)}".rstrip())
        actual = sha256_file(part)
        if sha256 is not None and actual != sha256:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"sha256 mismatch for {url}: expected {sha256}, got {actual}; the file was deleted "
                "(a changed upstream file or a bad mirror)"
            )
        os.replace(part, dest)
        log.note(f"downloaded {dest.name} ({dest.stat().st_size:,} bytes, sha256 {actual[:12]}...)")
        return dest


class _Transient(Exception):
    pass


class _Permanent(Exception):
    pass


def _download_once(url: str, part: Path, log: StepLog, timeout: float) -> None:
    import requests  # here, not at the top: every doit start imports this module, few download

    headers = {}
    have = part.stat().st_size if part.exists() else 0
    if have:
        headers["Range"] = f"bytes={have}-"
    log.write(f"# GET {url}" + (f" (resuming at byte {have})" if have else "") + "\n")
    try:
        with requests.get(url, stream=True, timeout=timeout, headers=headers) as resp:
            if resp.status_code == 416 and have:
                # Range not satisfiable: the part is complete or stale; start over.
                part.unlink()
                raise _Transient("server refused to resume; restarting")
            if resp.status_code in TRANSIENT_STATUS:
                raise _Transient(f"HTTP {resp.status_code}")
            if resp.status_code >= 400:
                raise _Permanent(f"HTTP {resp.status_code} {resp.reason}")
            mode = "ab" if (have and resp.status_code == 206) else "wb"
            if have and mode == "wb":
                log.write("# server does not support resuming; restarting\n")
            total = resp.headers.get("Content-Length")
            received = 0
            next_report = 50 << 20
            with open(part, mode) as f:
                for block in resp.iter_content(CHUNK):
                    f.write(block)
                    received += len(block)
                    if received >= next_report:
                        log.write(f"# {received >> 20} MiB" + (f" of {int(total) >> 20} MiB" if total else "") + "\n")
                        next_report += 50 << 20
                f.flush()
                os.fsync(f.fileno())
            if total is not None and received != int(total):
                raise _Transient(f"connection closed after {received} of {total} bytes")
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Transient(_reason(exc)) from None
    except requests.RequestException as exc:
        raise _Permanent(_reason(exc)) from None


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Name or service not known", "Temporary failure in name resolution", "Connection refused",
                   "No route to host", "Network is unreachable", "timed out"):
        if marker in text:
            return marker
    return text.splitlines()[0][:200] if text else type(exc).__name__


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
