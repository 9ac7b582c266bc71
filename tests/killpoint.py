"""Run doit and kill this very process with SIGKILL at a chosen function call: a test tool, like the
stand-ins, for interrupting a run at a precise point inside wasmwheel (or doit) itself.

    python tests/killpoint.py [after:]<module>:<attribute path>[:<n>] [doit arguments...]

The process dies on the n-th call (default 1) of the attribute, before the call, or after it returns
with ``after:``. Examples: ``wasmwheel.toolchain:replace_dir`` (a clone or unpack done, not yet moved
into place), ``zipfile:ZipFile.writestr:2`` (a wheel half written), ``doit.dependency:SqliteDB.dump``
(every step done, doit's state not yet saved). Nothing is cleaned up: that is the point.
"""

import importlib
import os
import signal
import sys


def install(spec: str) -> None:
    after = spec.startswith("after:")
    module_name, attr, *count = spec.removeprefix("after:").split(":")
    n = int(count[0]) if count else 1
    owner = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = 0

    def die() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == n and not after:
            die()
        result = original(*args, **kwargs)
        if calls == n and after:
            die()
        return result

    setattr(owner, name, wrapper)


if __name__ == "__main__":
    install(sys.argv[1])
    from doit.doit_cmd import DoitMain

    del sys.argv[1]  # dodo.py reads doit's arguments from sys.argv, as under the real `doit`
    sys.exit(DoitMain().run(sys.argv[1:]))
