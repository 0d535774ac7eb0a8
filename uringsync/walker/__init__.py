"""Walk a source tree and feed the engine batches of jobs.

One module per role (see core.py); the names the rest of the package and
the tests use are re-exported here.
"""

from uringsync.walker.core import Options, Tuning, Walker
from uringsync.walker.dirs import Dir, fd_budget, has_default_acl
from uringsync.walker.errors import Event, FileError, Stopped, Totals, Trace, join, show

__all__ = [
    "Dir",
    "Event",
    "FileError",
    "Options",
    "Stopped",
    "Totals",
    "Trace",
    "Tuning",
    "Walker",
    "fd_budget",
    "has_default_acl",
    "join",
    "show",
]
