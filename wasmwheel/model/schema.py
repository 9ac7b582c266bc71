"""A small typed reader for TOML tables, shared by the ABI and recipe schemas.

Each file type declares its schema as code that walks the parsed TOML with a
:class:`Table`: every read names the key and what is expected, and
:meth:`Table.done` rejects keys nobody asked for. Errors are
:class:`~wasmwheel.model.errors.ConfigError` naming the file, the dotted key, the problem
and the fix, so the loaders report one line and never a traceback.
"""

from __future__ import annotations

import difflib
import errno
import json
import os
import re
import reprlib
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wasmwheel.model.errors import ConfigError

SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
# Characters a shell would treat specially. Values never pass through a shell, but
# names that become file or task names must stay plain.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+\Z")


def show_key(name: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted (so odd keys stay one readable line)."""
    return name if BARE_KEY_RE.match(name) else json.dumps(name)


def _type_name(value: object) -> str:
    return {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    # reprlib for tables and lists: a value nested thousands deep would exhaust repr's recursion.
    text = reprlib.repr(value) if isinstance(value, (dict, list)) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# No schema nests deeper than 3 (build.env.NAME); anything this deep is a mistake or an attack, and
# would exhaust the recursion of whatever walks it next (repr, pickle, json).
MAX_DEPTH = 32
_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
}


def _inside(root: Path, path: Path) -> bool:
    return path == root or root in path.parents


def read_config_text(path: Path, root: Path | None = None) -> str:
    """The text of a recipe or ABI file, which must be a regular file (a FIFO would block the
    read forever) and, given the repository ``root``, may be a symbolic link only to a file inside it."""
    path = Path(path)
    if root is not None and path.is_symlink():
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            looped = isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP
            problem = (
                "is a symbolic link loop"
                if looped
                else f"is a symbolic link to {os.readlink(path)!r}, which does not exist"
            )
            raise ConfigError(path, "", problem, "fix or remove the link") from None
        if not _inside(Path(root).resolve(), resolved):
            raise ConfigError(
                path,
                "",
                f"is a symbolic link to {str(resolved)!r}, outside the repository",
                "keep recipes and ABI files inside the repository",
            )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # non-blocking: opening a FIFO must not wait for a writer
    except OSError as exc:
        problem = "is a symbolic link loop" if exc.errno == errno.ELOOP else f"cannot read: {exc.strerror}"
        raise ConfigError(path, "", problem) from None
    kind = stat.S_IFMT(os.fstat(fd).st_mode)
    if kind != stat.S_IFREG:
        os.close(fd)
        raise ConfigError(
            path, "", f"is {_KINDS.get(kind, 'not a regular file')}, not a file", "recipes and ABI files are TOML files"
        )
    with open(fd, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(path, "", f"not UTF-8 text ({exc.reason} on line {line})", "save the file as UTF-8") from None


def _too_deep(data: Any) -> bool:
    """Whether tables and arrays nest more than MAX_DEPTH levels (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


def parse_toml(path: Path, text: str | None = None, root: Path | None = None) -> dict[str, Any]:
    """Parse a TOML file (see read_config_text for ``root``); any problem becomes one ConfigError line."""
    if text is None:
        text = read_config_text(path, root)
    if text.startswith("\ufeff"):
        raise ConfigError(
            path,
            "",
            "starts with a byte order mark (BOM), which TOML does not allow",
            "save the file as UTF-8 without BOM",
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"TOML syntax error: {exc}", "fix the TOML syntax") from None
    except RecursionError:
        data = None
    if data is None or _too_deep(data):
        raise ConfigError(
            path,
            "",
            f"arrays or tables are nested too deeply to read (more than {MAX_DEPTH} levels)",
            "fix the TOML syntax",
        )
    return data


class Table:
    """Typed access to one TOML table; remembers which keys were read."""

    def __init__(self, file: Path | str, data: dict[str, Any], prefix: str = ""):
        self.file = file
        self.data = data
        self.prefix = prefix
        self._seen: set[str] = set()

    # -- helpers -----------------------------------------------------------------
    def key(self, name: str) -> str:
        """The dotted key of the schema key ``name``, which may end with an index (``features[2]``)."""
        base, index = name, ""
        if name.endswith("]") and "[" in name:
            base, index = name[: name.index("[")], name[name.index("[") :]
        return self._join(show_key(base) + index)

    def _join(self, shown: str) -> str:
        return f"{self.prefix}.{shown}" if self.prefix else shown

    def error(self, name: str, problem: str, fix: str = "") -> ConfigError:
        return ConfigError(self.file, self.key(name) if name else self.prefix, problem, fix)

    def data_error(self, name: str, problem: str, fix: str = "") -> ConfigError:
        """An error about a key the file wrote (shown quoted if it is not a bare key)."""
        return ConfigError(self.file, self._join(show_key(name)), problem, fix)

    def has(self, name: str) -> bool:
        return name in self.data

    def _get(self, name: str, required: bool, expect: str) -> Any:
        self._seen.add(name)
        if name not in self.data:
            if required:
                typo = difflib.get_close_matches(name, [k for k in self.data if k not in self._seen], n=1)
                fix = f"found `{typo[0]}`: did you mean `{name}`?" if typo else f"add `{name} = ...`"
                raise self.error(name, f"missing; expected {expect}", fix)
            return None
        return self.data[name]

    # -- typed reads -------------------------------------------------------------
    def table(self, name: str, required: bool = False) -> Table:
        value = self._get(name, required, "a table")
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.error(name, f"expected a table, got {_type_name(value)}", f"write it as [{self.key(name)}]")
        return Table(self.file, value, self.key(name))

    def string(
        self,
        name: str,
        *,
        required: bool = False,
        default: str | None = None,
        expect: str = "a string",
        check: Callable[[str], str | None] | None = None,
        fix: str = "",
    ) -> str | None:
        value = self._get(name, required, expect)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(
                name,
                f"expected {expect}, got {_type_name(value)} {_show(value)}",
                fix or _quote_it(show_key(name), value),
            )
        if value == "" and required:
            raise self.error(name, f"is empty; expected {expect}", fix)
        if check is not None:
            problem = check(value)
            if problem:
                raise self.error(name, f"{problem}; expected {expect}, got {_show(value)}", fix)
        return value

    def table_list(self, name: str, expect: str = "a list of tables", fix: str = "") -> list[Table]:
        """An array of tables (``[[name]]``), each as a Table keyed ``name[i]``."""
        value = self._get(name, False, expect)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(name, f"expected {expect}, got {_type_name(value)} {_show(value)}", fix)
        tables = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.error(f"{name}[{i}]", f"expected a table, got {_type_name(item)} {_show(item)}", fix)
            tables.append(Table(self.file, item, self.key(f"{name}[{i}]")))
        return tables

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self._get(name, False, "true or false")
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {_type_name(value)} {_show(value)}")
        return value

    def integer(self, name: str, default: int | None = None, minimum: int | None = None) -> int | None:
        value = self._get(name, False, "an integer")
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {_type_name(value)} {_show(value)}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be at least {minimum}, got {value}")
        return value

    def string_list(
        self,
        name: str,
        *,
        required: bool = False,
        expect: str = "a list of strings",
        check: Callable[[str], str | None] | None = None,
        fix: str = "",
    ) -> tuple[str, ...]:
        value = self._get(name, required, expect)
        if value is None:
            return ()
        if isinstance(value, str):
            raise self.error(
                name, f"expected {expect}, got a string", f"write it as {name} = [{value!r}]".replace("'", '"')
            )
        if not isinstance(value, list):
            raise self.error(name, f"expected {expect}, got {_type_name(value)} {_show(value)}", fix)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{name}[{i}]", f"expected a string, got {_type_name(item)} {_show(item)}", fix)
            if check is not None:
                problem = check(item)
                if problem:
                    raise self.error(f"{name}[{i}]", f"{problem}; got {_show(item)}", fix)
        return tuple(value)

    def string_map(
        self,
        name: str,
        *,
        key_check: Callable[[str], str | None] | None = None,
        value_check: Callable[[str], str | None] | None = None,
        expect: str = "a table of strings",
        fix: str = "",
        key_fix: str | None = None,
    ) -> dict[str, str]:
        """``fix`` is shown for a bad table or value, ``key_fix`` (default: ``fix``) for a bad key."""
        value = self._get(name, False, expect)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(name, f"expected {expect}, got {_type_name(value)} {_show(value)}", fix)
        out: dict[str, str] = {}
        sub = Table(self.file, value, self.key(name))
        for key, item in value.items():
            if key_check is not None:
                problem = key_check(key)
                if problem:
                    raise sub.data_error(key, problem, fix if key_fix is None else key_fix)
            if not isinstance(item, str):
                raise sub.data_error(
                    key,
                    f"expected a string, got {_type_name(item)} {_show(item)}",
                    _quote_it(show_key(key), item) or fix,
                )
            if value_check is not None:
                problem = value_check(item)
                if problem:
                    raise sub.data_error(key, f"{problem}; got {_show(item)}", fix)
            out[key] = item
        return out

    def done(self) -> None:
        """Reject keys this schema does not know, suggesting the closest known one."""
        for name in self.data:
            if name not in self._seen:
                close = difflib.get_close_matches(name, sorted(self._seen), n=1)
                hint = f"did you mean `{close[0]}`?" if close else "known keys: " + ", ".join(sorted(self._seen))
                raise self.data_error(name, "unknown key", hint)


def _quote_it(key: str, value: object) -> str:
    """The fix for a TOML number (or boolean) written where a string belongs."""
    if isinstance(value, bool):
        return f'write it as a string, in quotes: {key} = "{str(value).lower()}"'
    if isinstance(value, int):
        return f'write it as a string, in quotes: {key} = "{value}"'
    if isinstance(value, float):
        return f'write it as a string, in quotes: {key} = "{value}" (as a number, TOML drops digits: 1.10 reads as 1.1)'
    return ""


# -- reusable checks -------------------------------------------------------------


def check_sha256(value: str) -> str | None:
    return None if SHA256_RE.match(value) else "not a sha256 (64 lowercase hex characters)"


def check_rustflag(value: str) -> str | None:
    """One rustflag. Flags reach cargo in CARGO_TARGET_<TRIPLE>_RUSTFLAGS, which cargo splits at
    whitespace: a flag holding a space would silently become two flags, so it is refused."""
    if not value:
        return "empty"
    if nul := check_no_nul(value):
        return nul
    if any(c.isspace() for c in value):
        return (
            "contains whitespace, and cargo splits CARGO_TARGET_WASM32_UNKNOWN_EMSCRIPTEN_RUSTFLAGS at "
            "whitespace, so this one item would reach rustc as several flags"
        )
    return None


def check_no_nul(value: str) -> str | None:
    return "contains a NUL character" if "\0" in value else None


def check_env_name(value: str) -> str | None:
    return None if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", value) else "not a valid environment variable name"


def check_no_control(value: str) -> str | None:
    return "contains control characters" if any(ord(c) < 32 or ord(c) == 127 for c in value) else None


def check_http_url(value: str) -> str | None:
    """An http(s) URL to download from: with a host, a valid port, and no user name or password
    (they would be written to logs and the report; requests reads ~/.netrc instead)."""
    if any(c.isspace() for c in value) or check_no_control(value):
        return "not an http(s) URL (it holds spaces or control characters)"
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return "not an http(s) URL"
    if not parts.hostname:
        return "has no host name"
    if parts.username is not None or parts.password is not None:
        return "holds a user name or password, which would be written to logs (put them in ~/.netrc)"
    return None
