"""The ``uringsync`` console entry point: ``sync`` (its options are rsync's,
parsed by syncargs) starts without importing typer; everything else,
``sync --help`` included, is the typer app in cli.py."""

from __future__ import annotations

import signal
import sys


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["sync"] and "--help" not in argv[1:]:
        signal.signal(signal.SIGTERM, _terminate)
        from uringsync import synccli

        try:
            code = synccli.run(argv[1:])
        except KeyboardInterrupt:
            code = synccli.EXIT_STOPPED
        sys.exit(code)
    from uringsync.cli import main as typer_main

    typer_main()
