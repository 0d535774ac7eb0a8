"""uringsync: ``cp -a`` results at io_uring speed.

>>> import uringsync
>>> res = uringsync.copy(["src"], "dst", archive=True)   # doctest: +SKIP
>>> res.exit_code, res.files, res.errors                  # doctest: +SKIP
>>> res = uringsync.sync("src/", "dst", delete=True)    # doctest: +SKIP
>>> res.changes                                          # doctest: +SKIP
"""

from uringsync._version import __version__
from uringsync.api import (
    EXIT_FATAL,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_VANISHED,
    CopyError,
    Result,
    copy,
)
from uringsync.options import ArgumentError, PartialCopyError
from uringsync.syncapi import EXIT_MAX_DELETE, sync
from uringsync.verifyapi import EXIT_DIFFER, check_manifest, verify
from uringsync.walker import Event, FileError, Stopped

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
    "sync",
    "verify",
]
