"""PyPI's JSON API: the release facts ``new`` and ``bump`` need (files, digests, versions).

Reads ``<base>/pypi/<name>/json`` and ``<base>/pypi/<name>/<version>/json``
(``WASMWHEEL_PYPI_URL`` sets ``<base>``). File URLs are resolved against the API
URL, since mirrors may serve relative ones. A recipe should name the public file,
not a mirror's copy: :attr:`DistFile.public_url` gives the files.pythonhosted.org
address when the served URL has PyPI's storage layout for the file's BLAKE2b
digest, and the served URL otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests
from packaging.version import InvalidVersion, Version
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from wasmwheel.download import RETRIES, TRANSIENT_STATUS
from wasmwheel.model.errors import WasmwheelError
from wasmwheel.model.settings import retry_backoff

PUBLIC_FILES = "https://files.pythonhosted.org/packages"


class PyPIError(WasmwheelError):
    pass


@dataclass(frozen=True)
class DistFile:
    filename: str
    url: str  # absolute, where this index serves it
    sha256: str
    blake2b_256: str | None
    packagetype: str  # "sdist" | "bdist_wheel" | ...
    yanked: bool = False
    yanked_reason: str | None = None

    @property
    def public_url(self) -> str:
        """files.pythonhosted.org/packages/<b2[:2]>/<b2[2:4]>/<b2[4:]>/<file> if the served
        path ends that way (PyPI and its mirrors), else the served URL."""
        b2 = self.blake2b_256
        if b2 and re.fullmatch(r"[0-9a-f]{64}", b2):
            tail = f"/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{quote(self.filename)}"
            if urlsplit(self.url).path.endswith(tail):
                return PUBLIC_FILES + tail
        return self.url


@dataclass(frozen=True)
class Release:
    name: str  # PyPI's spelling of the project name
    version: str
    latest: str  # the project's current version, for messages
    files: tuple[DistFile, ...]

    def sdist(self) -> DistFile:
        sdists = [f for f in self.files if f.packagetype == "sdist"]
        if not sdists:
            have = f"only {len(self.files)} wheel(s)" if self.files else "no files"
            raise PyPIError(
                f"{self.name} {self.version} has no sdist on PyPI ({have}); wasmwheel builds from "
                "source: pick a version with an sdist, or write a recipe with a git source"
            )
        return sdists[0]


def _retry_backoff() -> float:
    return retry_backoff()


class PyPI:
    """A small client for the JSON API of PyPI or a mirror of it."""

    def __init__(self, base_url: str, timeout: float = 30.0, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        retry = Retry(
            total=RETRIES - 1,
            backoff_factor=_retry_backoff(),
            status_forcelist=sorted(TRANSIENT_STATUS),
            allowed_methods=["GET"],
            raise_on_status=False,
        )
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, HTTPAdapter(max_retries=retry))

    def _get(self, path: str) -> tuple[int, Any, str]:
        url = f"{self.base_url}/pypi/{path}/json"
        try:
            resp = self.session.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise PyPIError(
                f"cannot reach {url}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]} "
                "(set WASMWHEEL_PYPI_URL to a PyPI mirror if this machine cannot reach PyPI)"
            ) from None
        if resp.status_code == 404:
            return 404, None, resp.url
        if resp.status_code >= 400:
            raise PyPIError(f"{url}: HTTP {resp.status_code} {resp.reason}")
        try:
            return resp.status_code, resp.json(), resp.url
        except ValueError:
            raise PyPIError(f"{url}: the answer is not JSON (is WASMWHEEL_PYPI_URL a PyPI JSON API?)") from None

    def project(self, name: str) -> tuple[dict[str, Any], str]:
        status, data, url = self._get(quote(name, safe=""))
        if status == 404:
            raise PyPIError(
                f"no project named {name!r} on {self.base_url} (check the spelling; "
                f"{self.base_url}/project/{quote(name, safe='')}/ shows what PyPI has)"
            )
        return data, url

    def release(self, name: str, version: str | None = None) -> Release:
        """The release ``version`` of ``name`` (default: the latest)."""
        project, project_url = self.project(name)
        info = project.get("info") or {}
        latest = str(info.get("version", ""))
        pypi_name = str(info.get("name") or name)
        if version is None or version == latest:
            return Release(pypi_name, latest, latest, _files(project.get("urls") or [], project_url))
        try:
            wanted = Version(version)
        except InvalidVersion:
            raise PyPIError(f"{version!r} is not a version (PEP 440), e.g. {latest or '1.2.3'}") from None
        status, data, url = self._get(f"{quote(name, safe='')}/{quote(version, safe='')}")
        if status != 404:
            return Release(
                pypi_name,
                str((data.get("info") or {}).get("version", version)),
                latest,
                _files(data.get("urls") or [], url),
            )
        # Some mirrors serve only the project document; its "releases" map has every version.
        releases = project.get("releases") or {}
        for key, files in releases.items():
            try:
                if Version(key) == wanted:
                    return Release(pypi_name, key, latest, _files(files, project_url))
            except InvalidVersion:
                continue
        recent = sorted((_v for _v in map(_parse, releases) if _v is not None), reverse=True)[:5]
        shown = ", ".join(map(str, recent)) if recent else latest
        raise PyPIError(f"{pypi_name} has no version {version} on {self.base_url} (latest: {latest}; recent: {shown})")


def _parse(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _files(entries: list[dict[str, Any]], base: str) -> tuple[DistFile, ...]:
    out = []
    for entry in entries:
        digests = entry.get("digests") or {}
        if not entry.get("filename") or not entry.get("url") or not digests.get("sha256"):
            continue
        out.append(
            DistFile(
                filename=entry["filename"],
                url=urljoin(base, entry["url"]),
                sha256=str(digests["sha256"]).lower(),
                blake2b_256=digests.get("blake2b_256"),
                packagetype=str(entry.get("packagetype", "")),
                yanked=bool(entry.get("yanked", False)),
                yanked_reason=str(entry["yanked_reason"]).strip() or None if entry.get("yanked_reason") else None,
            )
        )
    return tuple(out)


def split_spec(spec: str, version: str | None = None) -> tuple[str, str | None]:
    """``name``, ``name==1.2``, or ``name`` + ``==1.2``/``1.2`` -> (name, version or None)."""
    name, sep, pinned = spec.partition("==")
    if sep and version:
        raise PyPIError(f"give the version once: {spec!r} already pins {pinned!r}")
    if version is not None:
        pinned = version.removeprefix("==")
    name, pinned = name.strip(), pinned.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise PyPIError(f"{name!r} is not a package name (letters, digits, '.', '_', '-')")
    return name, pinned or None
