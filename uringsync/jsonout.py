"""The JSON object ``cp --json`` prints (and ``sync --json`` extends)."""

from __future__ import annotations

import base64
import os
from typing import Any

from uringsync import api


def result_json(res: api.Result) -> dict[str, Any]:
    """The object ``cp --json`` prints (README.md lists the keys).

    Error paths are bytes on disk: ``path`` is them decoded as UTF-8 with
    ``\\xNN`` escapes for other bytes (as in the messages), ``path_b64`` the
    exact bytes in base64.
    """
    secs = res.seconds
    entries = res.files + res.dirs + res.symlinks + res.links + res.specials
    return {
        "files": res.files,
        "dirs": res.dirs,
        "symlinks": res.symlinks,
        "links": res.links,
        "specials": res.specials,
        "entries": entries,
        "bytes": res.bytes,
        "seconds": round(secs, 6),
        "throughput_bytes_per_s": round(res.bytes / secs, 1) if secs > 0 else 0.0,
        "files_per_s": round(res.files / secs, 1) if secs > 0 else 0.0,
        "workers": res.workers,
        "engine": res.engine,
        "notice": res.notice,
        "peak_rss": res.peak_rss,
        "exit_code": res.exit_code,
        "errors": [
            {
                "path": e.path.decode("utf-8", "backslashreplace"),
                "path_b64": base64.b64encode(e.path).decode("ascii"),
                "op": e.op,
                "errno": e.errno,
                "error": os.strerror(e.errno) if e.errno else "",
                "message": e.message,
            }
            for e in res.errors
        ],
    }
