"""User-facing errors: one clear line, never a traceback."""

from __future__ import annotations

import re

# Control characters (newlines above all) would break the one-line promise.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``), so it prints as one line."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def plural(count: int, word: str, words: str | None = None) -> str:
    """``count`` and the noun in the form that goes with it: "1 step", "2 steps", "0 steps"."""
    return f"{count} {word if count == 1 else words or word + 's'}"


class WasmwheelError(Exception):
    """An error the user can act on. ``str(err)`` is the whole message."""


class ConfigError(WasmwheelError):
    """A recipe, ABI file or setting is wrong.

    The message names the file, the key, what is wrong and how to fix it.
    """

    def __init__(self, file: object, key: str, problem: str, fix: str = ""):
        self.file = str(file)
        self.key = key
        self.problem = problem
        self.fix = fix
        where = f"{self.file}: {key}: " if key else f"{self.file}: "
        super().__init__(one_line(where + problem + (f" ({fix})" if fix else "")))


class CommandFailed(WasmwheelError):
    """An external command exited non-zero (see the step log)."""

    def __init__(self, message: str, *, returncode: int | None = None, log_path: object = None, output_tail: str = ""):
        self.returncode = returncode
        self.log_path = log_path
        self.output_tail = output_tail
        super().__init__(message)

    def reason(self) -> str:
        """The tool's own error line (``fatal: ...``/``error: ...``) if it printed one, else the message."""
        for line in self.output_tail.splitlines():
            stripped = line.strip()
            for prefix in ("fatal:", "error:", "ERROR:"):
                if stripped.startswith(prefix):
                    return stripped[len(prefix) :].strip()
        return str(self)
