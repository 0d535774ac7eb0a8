"""uringsync: ``cp -a`` results at io_uring speed.

>>> import uringsync
>>> res = uringsync.copy(["src"], "dst", archive=True)   # doctest: +SKIP
>>> res.exit_code, res.files, res.errors                  # doctest: +SKIP
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
from uringsync.walker import Event, FileError

__all__ = [
    "EXIT_FATAL",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_VANISHED",
    "CopyError",
    "Event",
    "FileError",
    "Result",
    "__version__",
    "copy",
]
