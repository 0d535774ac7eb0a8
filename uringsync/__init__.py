"""uringsync: ``cp -a`` results at io_uring speed.

>>> import uringsync
>>> res = uringsync.copy(["src"], "dst", archive=True)   # doctest: +SKIP
>>> res.exit_code, res.files, res.errors                  # doctest: +SKIP
>>> res = uringsync.sync("src/", "dst", delete=True)    # doctest: +SKIP
>>> res.changes                                          # doctest: +SKIP
>>> uringsync.copytree("src", "dst2")   # shutil.copytree's drop-in  # doctest: +SKIP

The names below are imported when first used (PEP 562), so that
``uringsync --version`` and a small ``uringsync cp`` start without loading
what they do not run (docs/benchmarks.md, "Start-up").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from uringsync._version import __version__

if TYPE_CHECKING:  # what a type checker and an IDE see: the names themselves
    from uringsync.api import (
        EXIT_FATAL,
        EXIT_OK,
        EXIT_PARTIAL,
        EXIT_VANISHED,
        CopyError,
        PartialCopyError,
        Result,
        copy,
    )
    from uringsync.options import ArgumentError
    from uringsync.shutilapi import copy2, copyfile, copytree
    from uringsync.syncapi import EXIT_MAX_DELETE, sync
    from uringsync.verifyapi import EXIT_DIFFER, check_manifest, verify
    from uringsync.walker import Event, FileError, Stopped

# public name -> the module that defines it
_WHERE = {
    "EXIT_FATAL": "uringsync.api",
    "EXIT_OK": "uringsync.api",
    "EXIT_PARTIAL": "uringsync.api",
    "EXIT_VANISHED": "uringsync.api",
    "CopyError": "uringsync.api",
    "Result": "uringsync.api",
    "copy": "uringsync.api",
    "EXIT_MAX_DELETE": "uringsync.syncapi",
    "sync": "uringsync.syncapi",
    "EXIT_DIFFER": "uringsync.verifyapi",
    "check_manifest": "uringsync.verifyapi",
    "verify": "uringsync.verifyapi",
    "Event": "uringsync.walker",
    "FileError": "uringsync.walker",
    "Stopped": "uringsync.walker",
    "ArgumentError": "uringsync.options",
    "PartialCopyError": "uringsync.api",
    "copytree": "uringsync.shutilapi",
    "copy2": "uringsync.shutilapi",
    "copyfile": "uringsync.shutilapi",
}

__all__ = [
    "EXIT_DIFFER",
    "EXIT_FATAL",
    "EXIT_MAX_DELETE",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_VANISHED",
    "ArgumentError",
    "CopyError",
    "Event",
    "FileError",
    "PartialCopyError",
    "Result",
    "Stopped",
    "__version__",
    "check_manifest",
    "copy",
    "copy2",
    "copyfile",
    "copytree",
    "sync",
    "verify",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'uringsync' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
