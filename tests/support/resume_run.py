"""A sync of SRC into DST with small ranges, run as a process of its own so
that tests can kill it (tests/test_resume.py):

    python tests/support/resume_run.py SRC DST JOBS ENGINE RANGE OUT

``sync -a`` (uringsync.run_sync) with files of 1 MiB and more split into
RANGE-byte ranges.  OUT gets a JSON object: ``exit`` (the exit code; 20 when
stopped), ``range_bytes`` (bytes the ranges wrote), ``resumed`` (an earlier
run's record was taken up), ``errors`` and ``info`` (the informational lines).
A killed run writes no OUT.
"""

from __future__ import annotations

import json
import sys

from uringsync.options import SyncOptions
from uringsync.syncapi import run_sync
from uringsync.walker import Tuning, Walker
from uringsync.walker.errors import Stopped, Trace

EXIT_STOPPED = 20  # rsync's code for a run stopped by a signal


def main() -> None:
    src, dst, jobs, engine, rng, out = sys.argv[1:]
    state: dict[str, object] = {"range_bytes": 0, "resumed": False, "info": [], "errors": []}

    def trace(_w: Walker, t: Trace) -> None:
        if t.kind == "range_done":
            state["range_bytes"] = int(state["range_bytes"]) + t.bytes  # type: ignore[call-overload]
        elif t.kind == "big_resume":
            state["resumed"] = t.split

    so = SyncOptions(
        perms=True, times=True, owner=True, group=True, symlinks=True, devices=True, specials=True
    )
    info: list[str] = []
    try:
        res = run_sync(
            [src.encode() + b"/"],
            dst.encode(),
            so,
            jobs=int(jobs),
            engine_name=engine,
            on_info=info.append,
            _tuning=Tuning(split_min=1 << 20, range_size=int(rng), on_trace=trace),
        )
        state["exit"] = res.exit_code
        state["errors"] = [[e.op, e.errno, e.path.decode()] for e in res.errors]
    except (Stopped, KeyboardInterrupt):
        state["exit"] = EXIT_STOPPED
    state["info"] = info
    with open(out, "w") as f:
        json.dump(state, f)


if __name__ == "__main__":
    main()
