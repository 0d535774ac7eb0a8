"""``uringsync sync``'s command line, run without typer: its options are
rsync's (uringsync/syncargs.py parses them), so typer has nothing to add
but its start-up time, which a nothing-changed sync of a big tree would
feel.  ``uringsync sync --help`` still goes through typer (cli.py)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from uringsync import api, syncapi, syncargs
from uringsync.jsonout import result_json
from uringsync.walker import FileError

EXIT_STOPPED = 130  # SIGINT or SIGTERM, as a shell reports a Ctrl-C


def err(message: str) -> None:
    print(f"uringsync: {message}", file=sys.stderr, flush=True)


def _report(e: FileError) -> None:
    err(e.message)


def run(argv: list[str]) -> int:
    """``uringsync sync ARGS...``: the exit code."""
    try:
        a = syncargs.parse(argv)
        syncargs.check_operands(a)
    except syncargs.SyncArgsError as e:
        err(str(e).removeprefix(syncargs.PREFIX))
        return e.code
    out = sys.stdout.buffer
    json_out = a.json
    lines = a.itemize > 0 and not json_out
    names = a.verbose > 0 and not a.itemize and not json_out

    def on_itemize(line: bytes) -> None:
        if lines:
            out.write(line + b"\n")
        elif names:
            if line.startswith(b"*deleting"):
                out.write(b"deleting " + line[12:] + b"\n")
            elif line[:1] in (b">", b"c", b"h") or line[2:3] == b"+":
                out.write(line[12:] + b"\n")

    def on_info(msg: str) -> None:
        if not json_out and not a.quiet:
            out.write(msg.encode("utf-8", "surrogateescape") + b"\n")

    bar = None
    if (
        a.progress
        and not a.quiet
        and sys.stderr.isatty()
        and not (a.verbose or a.itemize or json_out)
    ):
        from uringsync.progress import SyncProgressBar  # rich only when it is needed

        bar = SyncProgressBar()
    try:
        with bar if bar is not None else contextlib.nullcontext():
            res = syncapi.run_args(
                a,
                on_itemize=on_itemize if (lines or names) else None,
                on_info=on_info,
                on_error=bar.error if bar is not None else _report,
                on_notice=err,
                progress=bar.progress if bar is not None else None,
            )
    except api.CopyError as e:
        out.flush()
        err(str(e))
        return api.EXIT_FATAL
    except KeyboardInterrupt:
        out.flush()
        err("stopped: the sync is incomplete (no partial file is left under its final name)")
        return EXIT_STOPPED
    except OSError as e:
        out.flush()
        err(f"{e.strerror}" + (f": {e.filename!r}" if e.filename else ""))
        return api.EXIT_FATAL
    out.flush()
    if json_out:
        import json  # only --json needs it: a plain sync's start-up skips it

        print(json.dumps(sync_json(res)), flush=True)
    elif a.stats:
        print(sync_stats(res), flush=True)
    return res.exit_code


def sync_json(res: api.Result) -> dict[str, Any]:
    """The object ``sync --json`` prints: cp's keys, and entries by outcome."""
    out = result_json(res)
    out.update(
        created=res.created,
        updated=res.updated,
        metadata_only=res.meta,
        unchanged=res.unchanged,
        deleted=res.deleted,
        transferred_bytes=res.bytes,
        literal_bytes=res.literal_bytes,
        matched_bytes=res.matched_bytes,
    )
    return out


def sync_stats(res: api.Result) -> str:
    """A summary in the shape of rsync's --stats (the lines that apply to a
    local sync)."""
    seen = res.created + res.updated + res.meta + res.unchanged
    return "\n".join(
        [
            "",
            f"Number of files: {seen:,}",
            f"Number of created files: {res.created:,}",
            f"Number of deleted files: {res.deleted:,}",
            f"Number of regular files transferred: {res.files:,}",
            f"Number of files with only metadata changed: {res.meta:,}",
            f"Total transferred file size: {res.bytes:,} bytes",
            f"Literal data: {res.literal_bytes:,} bytes",
            f"Matched data: {res.matched_bytes:,} bytes",
            f"Errors: {len(res.errors):,}",
            f"Time: {res.seconds:.3f} seconds ({res.workers} workers, {res.engine})",
        ]
    )
