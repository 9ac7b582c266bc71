"""Downloads with retries, resume, sha256 verification and mirror-aware errors.

A download goes to ``<dest>.part`` and is renamed to ``dest`` only after its
sha256 matched, so a partial or corrupt file never looks finished. Transient
failures (refused or dropped connections, also in the middle of the body,
timeouts, 5xx, 429) are retried with exponential backoff, or after the server's
``Retry-After``; an attempt that got some bytes does not count against the
retries. A ``.part`` left by a dropped connection or a killed run is resumed
with a Range request; a server that ignores Range (or answers with another
range) gets the file from the start. A resumed file that does not match its
sha256 is downloaded once more from the start before the mismatch is reported.
Bytes are stored as sent (``Accept-Encoding: identity``, no decoding), since
the sha256 is that of the file on the server. A ``file://`` URL or a local path (a mirror
that is a folder) is copied, and verified the same way.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import shutil
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3

from wasmwheel.fsutil import CHUNK, file_lock, sha256_file
from wasmwheel.model.errors import WasmwheelError
from wasmwheel.model.settings import retry_backoff
from wasmwheel.runner import StepLog

RETRIES = 3  # attempts in a row that got nothing
MAX_REQUESTS = 50  # in all, however much each attempt got
MAX_RETRY_AFTER = 120.0
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


class DownloadError(WasmwheelError):
    pass


@dataclass(frozen=True)
class Origin:
    """Where a file comes from and which setting points it at a mirror."""

    url: str
    mirror: str | None = None  # URL prefix; the file is fetched from <mirror>/[<subfolder>/]<file name>
    setting: str = ""  # the environment variable that sets the mirror
    subfolder: str = ""  # where a mirror keeps the file, for files whose names repeat (Pyodide's patches per tag)

    @property
    def filename(self) -> str:
        return self.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]

    @property
    def mirror_name(self) -> str:
        """The file's path under a mirror's prefix."""
        return f"{self.subfolder}/{self.filename}" if self.subfolder else self.filename

    @property
    def effective_url(self) -> str:
        if self.mirror:
            return self.mirror.rstrip("/") + "/" + self.mirror_name
        return self.url


def _backoff(attempt: int) -> float:
    return retry_backoff() * (2**attempt)


def _hint(origin: Origin) -> str:
    if not origin.setting:
        return ""
    if origin.mirror:
        return f"(from the mirror {origin.setting}={origin.mirror}: check that it serves {origin.mirror_name})"
    return f"(no mirror is set: point {origin.setting} at a URL prefix that serves {origin.mirror_name})"


def fetch(origin: Origin, dest: Path, sha256: str | None, log: StepLog, timeout: float = 60.0) -> Path:
    """Download ``origin`` to ``dest`` and verify it. Returns ``dest``.

    If ``dest`` already exists with the right sha256 nothing is downloaded. With
    ``sha256=None`` the file is accepted as is (used only by ``pin-sysroot``, whose
    job is to measure it). Processes fetching the same ``dest`` wait for each other.
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
        left_over = part.exists() and part.stat().st_size > 0
        if left_over:
            log.note(f"resuming {part.name} ({part.stat().st_size:,} bytes from an earlier run)")
        _get(url, part, origin, log, timeout)
        actual = sha256_file(part)
        if sha256 is not None and actual != sha256 and left_over:
            log.note("the resumed file does not match its sha256; downloading it again from the start")
            part.unlink()
            _get(url, part, origin, log, timeout)
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


def local_path(url: str) -> Path | None:
    """The file a ``file://`` URL or an absolute path names; None for other URLs."""
    if url.startswith("file://"):
        return Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    return Path(url) if os.path.isabs(url) else None


def _get(url: str, part: Path, origin: Origin, log: StepLog, timeout: float) -> None:
    local = local_path(url)
    if local is None:
        _download(url, part, origin, log, timeout)
        return
    log.write(f"# copy {local}\n")
    try:
        shutil.copyfile(local, part)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"could not read {url}: {exc.strerror or exc} {_hint(origin)}".rstrip()) from None


def _download(url: str, part: Path, origin: Origin, log: StepLog, timeout: float) -> None:
    """Get ``url`` into ``part`` completely, resuming what is there, or raise DownloadError."""
    failures = 0
    for _request in range(MAX_REQUESTS):
        try:
            _download_once(url, part, log, timeout)
            return
        except _Permanent as exc:
            raise DownloadError(f"could not download {url}: {exc} {_hint(origin)}".rstrip()) from None
        except _Transient as exc:
            failures = 0 if exc.progress else failures + 1
            if failures >= RETRIES:
                raise DownloadError(
                    f"could not download {url} after {RETRIES} attempts: {exc} {_hint(origin)}".rstrip()
                ) from None
            delay = (
                exc.retry_after if exc.retry_after is not None else (0.0 if exc.progress else _backoff(failures - 1))
            )
            log.note(f"retrying in {delay:g}s ({exc})", console=True)
            time.sleep(delay)
    raise DownloadError(f"could not download {url}: gave up after {MAX_REQUESTS} requests {_hint(origin)}".rstrip())


class _Transient(Exception):
    def __init__(self, message: str, *, progress: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.progress = progress
        self.retry_after = retry_after


class _Permanent(Exception):
    pass


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _content_range(resp: requests.Response) -> tuple[int | None, int | None]:
    """(first byte, total size) of a ``Content-Range: bytes a-b/n`` or ``bytes */n`` header."""
    m = re.match(r"^bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)$", resp.headers.get("Content-Range", "").strip())
    if not m:
        return None, None
    first = int(m.group(1)) if m.group(1) else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return first, total


def _download_once(url: str, part: Path, log: StepLog, timeout: float) -> None:
    headers = {"Accept-Encoding": "identity"}
    have = part.stat().st_size if part.exists() else 0
    if have:
        headers["Range"] = f"bytes={have}-"
    log.write(f"# GET {url}" + (f" (resuming at byte {have:,})" if have else "") + "\n")
    received = 0
    try:
        with requests.get(url, stream=True, timeout=timeout, headers=headers) as resp:
            if resp.status_code == 416 and have:
                if _content_range(resp)[1] == have:
                    log.write("# the partial file is already complete\n")
                    return
                part.unlink()
                raise _Transient("the server cannot resume this file; starting again", progress=True)
            if resp.status_code in TRANSIENT_STATUS:
                raise _Transient(f"HTTP {resp.status_code} {resp.reason}".rstrip(), retry_after=_retry_after(resp))
            if resp.status_code >= 400:
                raise _Permanent(f"HTTP {resp.status_code} {resp.reason}".rstrip())
            append = False
            if resp.status_code == 206:
                first, _ = _content_range(resp)
                if not have or first != have:
                    part.unlink(missing_ok=True)
                    raise _Transient(
                        f"the server sent bytes from {first} when asked for byte {have}; starting again", progress=True
                    )
                append = True
            elif have:
                log.write("# the server does not resume downloads; starting again\n")
            total = resp.headers.get("Content-Length")
            next_report = 50 << 20
            with open(part, "ab" if append else "wb") as f:
                for block in resp.raw.stream(CHUNK, decode_content=False):
                    f.write(block)
                    received += len(block)
                    if received >= next_report:
                        log.write(f"# {received >> 20} MiB" + (f" of {int(total) >> 20} MiB" if total else "") + "\n")
                        next_report += 50 << 20
                f.flush()
                os.fsync(f.fileno())
            if total is not None and received != int(total):
                raise _Transient(f"connection closed after {received:,} of {int(total):,} bytes", progress=received > 0)
    except (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError) as exc:
        reason = _reason(exc)
        if "Connection broken" in reason or "IncompleteRead" in reason:
            reason = f"the connection dropped after {received:,} bytes"
        raise _Transient(reason, progress=received > 0) from None
    except (
        requests.ConnectionError,
        requests.Timeout,
        urllib3.exceptions.HTTPError,
        ConnectionError,
        TimeoutError,
    ) as exc:
        raise _Transient(_reason(exc), progress=received > 0) from None
    except requests.RequestException as exc:
        raise _Permanent(_reason(exc)) from None


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in (
        "Name or service not known",
        "Temporary failure in name resolution",
        "Connection refused",
        "No route to host",
        "Network is unreachable",
        "timed out",
    ):
        if marker in text:
            return marker
    return text.splitlines()[0][:200] if text else type(exc).__name__


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
