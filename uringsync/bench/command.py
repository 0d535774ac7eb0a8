"""``uringsync bench`` on the command line: :func:`cli` turns the options
uringsync/cli.py parsed into :class:`~uringsync.bench.session.Options`, runs
the session (or only redraws the plot) and prints the tables."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from uringsync.bench.base import BenchError, parse_size, say_stderr
from uringsync.bench.report import plot_only, print_table
from uringsync.bench.session import Options, run


def cli(
    *,
    workloads: str,
    entries: int,
    big_size: str,
    mixed_files: int,
    mixed_big: str,
    rounds: int,
    cold: bool,
    warm: bool,
    jobs_sweep: bool,
    workdir: str,
    loop: bool,
    image_size: str | None,
    keep: bool,
    settle: float,
    verify: str,
    rss_entries: int,
    seed: int,
    json_out: str | None,
    plot_path: str | None,
    plot_only_json: str | None,
    uringsync_args: str = "",
    sync_rss_entries: int = 1_000_000,
    sync_stand_in: str = "",
) -> int:
    """``uringsync bench``: parse the options, run, print the table; exit code."""
    try:
        if plot_only_json is not None:
            src = Path(plot_only_json)
            out = plot_only(src, Path(plot_path) if plot_path else None)
            say_stderr(f"plot: {out}")
            print_table(json.loads(src.read_text()))
            return 0
        names = tuple(w.strip() for w in workloads.split(",") if w.strip() not in ("", "none"))
        opts = Options(
            workloads=names,
            entries=entries,
            big_size=parse_size(big_size),
            mixed_files=mixed_files,
            mixed_big=parse_size(mixed_big),
            rounds=rounds,
            cold=cold,
            warm=warm,
            jobs_sweep=jobs_sweep,
            workdir=Path(workdir),
            loop=loop,
            image_size=parse_size(image_size) if image_size else None,
            keep=keep,
            settle=settle,
            verify=verify,
            rss_entries=rss_entries,
            seed=seed,
            json_out=Path(json_out) if json_out else None,
            plot=Path(plot_path) if plot_path else None,
            uringsync_args=tuple(shlex.split(uringsync_args)),
            sync_rss_entries=sync_rss_entries,
            sync_stand_in=tuple(shlex.split(sync_stand_in)),
        )
        if not names and not rss_entries:
            raise BenchError("no workloads and no --rss-entries: nothing to do")
        code, data = run(opts)
        print_table(data)
        return code
    except BenchError as e:
        say_stderr(f"uringsync bench: {e}")
        return 1
