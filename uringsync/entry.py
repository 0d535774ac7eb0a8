"""The ``uringsync`` console entry point.  ``cp`` and ``sync`` parse their
own options (GNU cp's in cpargv.py, rsync's in syncargs.py) and start
without importing typer, whose start-up (it builds a pydantic adapter per
option) would cost more than copying a small file; ``--version`` imports
nothing.  Everything else, ``sync --help`` included, is the typer app in
cli.py."""

from __future__ import annotations

import signal
import sys


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    argv = sys.argv[1:]
    if argv == ["--version"]:
        from uringsync._version import __version__

        sys.stdout.write(f"uringsync {__version__}\n")
        sys.exit(0)
    command = argv[:1]
    if command == ["cp"] or (command == ["sync"] and "--help" not in argv[1:]):
        signal.signal(signal.SIGTERM, _terminate)
        try:
            if command == ["cp"]:
                from uringsync import cpcli

                code = cpcli.main(argv[1:])
            else:
                from uringsync import synccli

                code = synccli.run(argv[1:])
        except KeyboardInterrupt:
            code = 130
        sys.exit(code)
    from uringsync.cli import main as typer_main

    typer_main()
