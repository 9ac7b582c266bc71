"""doit ``uptodate`` items of the steps: whether a step's last run still stands.

Checked by every doit start for every task (a no-op of a 500-crate collection checks 7000), so
they read no file a check can avoid, and hash nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from doit.tools import config_changed

from wasmwheel.fsutil import UPTODATE_SIGNATURE, OutputsIntact, read_stamp


class StepCurrent(config_changed):
    """doit ``uptodate`` item of a step: its config is unchanged and, for a step with outputs,
    the outputs recorded beside its stamp are intact (:class:`~wasmwheel.fsutil.OutputsIntact`).

    One item, not two: doit inspects the signature of every uptodate callable of every
    task on each run. The saved value is doit's own ``config_changed`` digest, so build
    states written before stay up to date.
    """

    def __init__(self, config: dict, stamp: Path | str | None = None):
        super().__init__(config)
        self.outputs = OutputsIntact(stamp) if stamp is not None else None

    # Steps of one ABI share their config dict (e.g. every audit of an ABI): its digest is
    # computed once per run. The memo keeps the dict alive, so its id() is never reused.
    _digests: ClassVar[dict[int, tuple[dict, str]]] = {}

    def _calc_digest(self) -> str:
        hit = self._digests.get(id(self.config))
        if hit is not None and hit[0] is self.config:
            return hit[1]
        digest = super()._calc_digest()
        self._digests[id(self.config)] = (self.config, digest)
        return digest

    __signature__ = UPTODATE_SIGNATURE

    def configure_task(self, task) -> None:
        super().configure_task(task)
        if self.outputs is not None:
            self.outputs.configure_task(task)

    _last: tuple[bool, bool] | None = None  # (settings unchanged, outputs intact) at the last check

    def __call__(self, task, values):
        same = super().__call__(task, values)
        intact = self.outputs is None or self.outputs(task, values)
        self._last = (same, intact)
        return same and intact

    def __repr__(self) -> str:  # shown by `doit info` for a stale step: say which half is stale
        settings = ", ".join(f"{k}={_brief(v)}" for k, v in self.config.items())
        if self._last is None:
            return f"StepCurrent({settings}; {self.outputs!r})"
        same, intact = self._last
        why = []
        if not same:
            why.append(f"its settings differ from its last successful run, or it has none ({settings})")
        if not intact:
            why.append(f"an output it recorded is gone or changed ({self.outputs!r})")
        return "StepCurrent: " + "; ".join(why)


def _brief(value: Any, width: int = 40) -> str:
    """A config value for one line: long strings cut, with their length."""
    if isinstance(value, str):
        return repr(value) if len(value) <= width else f"{value[:width]!r}... ({len(value)} chars)"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_brief(v, width)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_brief(v, width) for v in value) + "]"
    return repr(value)


class IndexCurrent:
    """doit ``uptodate`` item of the index: it was made from the wheels now in build/dist/<abi>.

    Checked when the task is reached (after the builds of the same run), with stat calls only.
    """

    def __init__(self, stamp: Path, dist_dir: Path, inputs: dict[str, Any]):
        self.stamp, self.dist_dir, self.inputs = str(stamp), str(dist_dir), inputs

    def __call__(self, task=None, values=None) -> bool:
        from wasmwheel.index import index  # when the task is reached: a no-op of the crates never imports it

        try:
            recorded = read_stamp(Path(self.stamp)).get("digest")
        except (OSError, ValueError):
            return False
        return recorded == index.listing_digest(Path(self.dist_dir), self.inputs)

    def __repr__(self) -> str:
        return f"IndexCurrent({self.dist_dir})"
