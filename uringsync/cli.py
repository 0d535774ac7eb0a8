"""``uringsync`` command line: thin typer commands over uringsync.api.

Exit codes (rsync's conventions):
  0   everything was copied
  1   usage or fatal error (nothing was copied)
  23  some files could not be copied (each one is reported on stderr)
  24  the only failures were source files that vanished during the copy
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, Any

import typer

from uringsync import api, cpcli
from uringsync.walker import FileError

EXIT_STOPPED = 130  # SIGINT or SIGTERM, as a shell reports a Ctrl-C

EXIT_HELP = """Exit codes: 0 all copied; 1 usage or fatal error; 23 some files failed
(each reported on stderr as path, operation and reason); 24 only vanished source files;
130 stopped by Ctrl-C or SIGTERM (workers stopped, partial files removed)."""

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    # click's plain help: wrapped at word boundaries to the terminal (80
    # columns through a pipe), never cut; types as cp's help shows them
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="Copy trees like cp -a, with many files in flight on io_uring.\n\n" + EXIT_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from uringsync._version import __version__

        print(f"uringsync {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_version,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Copy trees like cp -a, with many files in flight on io_uring."""


def err(message: str) -> None:
    print(f"uringsync: {message}", file=sys.stderr, flush=True)


def _report(e: FileError) -> None:
    err(e.message)


JobsOption = Annotated[
    int | None,
    typer.Option(
        "-j",
        "--jobs",
        min=0,
        metavar="N",
        show_default=False,
        help="Worker processes (default: one per usable CPU; 0: none).",
    ),
]
EngineOption = Annotated[
    str | None,
    typer.Option(
        "--engine",
        metavar="auto|io_uring|threads",
        show_default=False,
        help="How files are read and written: io_uring, or plain syscalls on a few threads "
        "per worker; auto is io_uring, or threads (with a notice) where io_uring cannot be "
        "used: seccomp, kernel.io_uring_disabled, an old kernel. "
        "Default: $URINGSYNC_ENGINE, else auto.",
    ),
]


@app.command(
    "cp",
    help=cpcli.help_text(80),
    short_help="Copy SOURCE to DEST, or SOURCEs into DIRECTORY, as GNU cp does.",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def cp(ctx: typer.Context) -> None:
    """cp's options are GNU cp's, parsed by cpargv.py (entry.py runs this
    without typer; ``uringsync cp --help`` prints cpcli's help)."""
    raise typer.Exit(cpcli.main(ctx.args))


SYNC_HELP = """Make DST like SRC, as rsync does: uringsync sync [OPTIONS] SRC... DST.

A trailing slash on SRC means its contents; DST is made if missing (not its
parents).  Options, with rsync's meaning: -a (-rlptgoD), -r -l -p -t -g -o -D
-H -A -X -x -v -n/--dry-run -i/--itemize-changes -c/--checksum --size-only
-I/--ignore-times -u/--update --ignore-existing --existing --inplace --delete
--delete-after --delete-excluded --max-delete=N --exclude --include
--exclude-from --include-from --filter ('-' and '+' rules) --files-from=FILE
-0/--from0 --fsync --stats -q/--quiet --progress/--no-progress (the bar on a
terminal's stderr), --no-whole-file/--no-W (as --delta), -W/--whole-file,
-B/--block-size=SIZE; ours: --delta (a changed file's blocks compared with
the old version's and only those that differ written: into a clone of the
old file on btrfs/xfs, renamed into place; with --inplace into the file
itself; --stats says Literal and Matched data), --watch (after the first
pass, keep DST in step with SRC until Ctrl-C or SIGTERM), --watch-delay=SECS
(events gathered per directory, default 0.1), --verify (each copied file
read back from the disk and compared), --manifest FILE (the xxh128sum line
of every regular file, checked by xxh128sum -c in DST), --json, -j N,
--config FILE, --no-config.  Any other rsync option is refused by name.

Defaults may be set in the [sync] table of $XDG_CONFIG_HOME/uringsync/config.toml
(~/.config when unset), else /etc/uringsync.toml (the first found is read):
jobs, exclude, include, filter (lists of patterns or rules, matched after the
command line's), verify, delete, checksum, quiet, progress; the command line
wins.

Exit codes: 0 done; 1 usage or fatal error; 23 some entries failed (each
reported on stderr); 24 only vanished source files; 25 --max-delete stopped
deletions; 130 stopped by Ctrl-C or SIGTERM.

Examples:

\b
  uringsync sync -aHAX src/ /mnt/new/            a catch-up pass
  uringsync sync -aHAX --delete -i src/ /mnt/new/  the final pass, itemized
  uringsync sync -naHAXci src/ /mnt/new/         what differs, by content
  uringsync sync -a --inplace --delta vm/ /backup/vm/  only changed blocks
  uringsync sync -aHAX --delete --watch src/ /mnt/new/  mirror until cutover"""


@app.command(
    "sync",
    help=SYNC_HELP,
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": ["--help"],
    },
    add_help_option=True,
)
def sync(ctx: typer.Context) -> None:
    from uringsync import synccli

    raise typer.Exit(synccli.run(ctx.args))


VERIFY_HELP = """Check that DST holds what SRC does, from the disk.

uringsync verify SRC DST compares the two directory trees by everything
-a keeps (-aHAX: type, mode, owner, times, symlinks, hard links, xattrs, ACLs)
and by content: every file of the same size on both sides is hashed
(XXH3-128) on the engine, many at once, DST's data read from the device, not
the page cache.  Each difference is printed as rsync's -i line (what
rsync -naHAXci --delete SRC/ DST/ prints; *deleting: only DST has it); nothing
is printed when the trees are the same.  Nothing is written in either tree.

--manifest FILE with SRC DST: also write FILE, one line per regular file name
of DST found equal to SRC's (xxh128sum's format, paths relative to DST), so
that xxh128sum -c FILE run in DST checks it later.  With DST alone: check DST
against FILE as xxh128sum -c does, but from the device and many files at once;
a file that differs is printed as PATH: FAILED.

Exit codes: 0 identical; 1 a difference, or a usage or fatal error (its
message on stderr); 23 some files could not be read (each reported on
stderr); 130 stopped by Ctrl-C or SIGTERM.

Examples:

\b
  uringsync verify /srv/data /mnt/new/data        does the copy hold the source?
  uringsync verify --manifest d.xxh128 src dst    ... and keep the digests
  uringsync verify --manifest d.xxh128 dst        later: check dst against them"""


ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE",
        show_default=False,
        help="Defaults from this TOML file, not $XDG_CONFIG_HOME/uringsync/config.toml "
        "or /etc/uringsync.toml (the command line wins).",
    ),
]
NoConfigOption = Annotated[
    bool, typer.Option("--no-config", help="Read no configuration file.", show_default=False)
]


def _config(ctx: Any, command: str, path: str | None, no_config: bool) -> dict[str, Any]:
    """The configuration file's [command] values for the options the command
    line did not give (uringsync/config.py); a bad file exits 1."""
    from uringsync import config

    try:
        values = config.defaults(command, path, not no_config)
    except config.ConfigError as e:
        err(str(e))
        raise typer.Exit(api.EXIT_FATAL) from None
    params = config.PARAMS.get(command, {})
    return {k: v for k, v in values.items() if config.unset(ctx, params.get(k, k))}


@app.command("verify", help=VERIFY_HELP)
def verify(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(metavar="[SRC] DST", show_default=False),
    ],
    manifest: Annotated[
        str | None,
        typer.Option(
            "--manifest",
            metavar="FILE",
            show_default=False,
            help="With SRC DST: write the digests of DST's files to FILE. "
            "With DST alone: check DST against FILE.",
        ),
    ] = None,
    jobs: JobsOption = None,
    engine_name: EngineOption = None,
    config_file: ConfigOption = None,
    no_config: NoConfigOption = False,
) -> None:
    from uringsync import verifyapi

    cfg = _config(ctx, "verify", config_file, no_config)
    jobs = cfg.get("jobs", jobs)
    engine_name = cfg.get("engine", engine_name)

    def line(b: bytes) -> None:
        sys.stdout.buffer.write(b + b"\n")
        sys.stdout.buffer.flush()

    try:
        if len(paths) == 2:
            src, dst = (os.fsencode(p) for p in paths)
            res = verifyapi.verify(
                src,
                dst,
                manifest_file=manifest,
                jobs=jobs,
                engine=engine_name,  # the API checks it
                on_itemize=line,
                on_error=_report,
                on_notice=err,
            )
        elif len(paths) == 1 and manifest is not None:
            res = verifyapi.check_manifest(
                manifest,
                os.fsencode(paths[0]),
                engine_name=engine_name,  # the API checks it
                on_failed=line,
                on_error=_report,
                on_notice=err,
            )
        else:
            err("verify takes SRC DST, or --manifest FILE and DST")
            raise typer.Exit(api.EXIT_FATAL)
    except api.CopyError as e:
        err(str(e))
        raise typer.Exit(api.EXIT_FATAL) from None
    except KeyboardInterrupt:
        err("stopped: the check is incomplete")
        raise typer.Exit(EXIT_STOPPED) from None
    if res.exit_code == verifyapi.EXIT_DIFFER:
        err(f"{len(res.changes)} difference{'s' if len(res.changes) != 1 else ''}")
    raise typer.Exit(res.exit_code)


@app.command(
    "demo",
    help="Build a sample tree, copy it with cp -a semantics, and check the copy against "
    "cp -a and with rsync -naHAXc --itemize-changes.\n\n"
    "Example:\n\n\b\n  uringsync demo --keep     keep the sample to look at",
)
def demo(
    keep: Annotated[bool, typer.Option(help="Keep the sample directory.")] = False,
) -> None:
    from uringsync.demo import run

    raise typer.Exit(run(keep=keep, say=print))


@app.command(
    "bench",
    help="Time uringsync cp -a against cp -a, rsync -aHAX and a tar pipe, cold and warm, "
    "on generated trees (--workloads sync: uringsync sync -aHAX against rsync -aHAX); "
    "print a table, write JSON and a PNG plot (docs/benchmarks.md). "
    "Cold runs and the loop file system need root. "
    "The default run takes about 15 minutes (10 to 20) and needs about 30 GiB free in "
    "--workdir (/var/tmp/uringsync-bench): it creates there a 27 GiB ext4 loop image holding "
    "the sources (about 6 GiB: a 50,000-entry tree, one 4 GiB file, a mixed tree) and "
    "their copies, and removes it at the end unless --keep; smaller: e.g. --workloads tree "
    "--entries 5000 --rounds 1 --no-cold --no-loop --workdir DIR. "
    "Exit 0 all rows met their targets; 1 a copy failed or failed its check (--verify); "
    "3 every copy was good but a row missed its target.\n\n"
    "Examples:\n\n\b\n"
    "  uringsync bench                                     the default run (root)\n"
    "  uringsync bench --workloads tree --entries 5000 --rounds 1 --no-cold --no-loop "
    "--workdir /tmp/b",
)
def bench(
    ctx: typer.Context,
    workloads: Annotated[
        str,
        typer.Option(
            help="Comma-separated: tree, bigfile, mixed; sync-unchanged, sync-1pct, sync-first "
            "(sync: those three; uringsync sync against rsync -aHAX on the tree), sync-rss-1m "
            "(uringsync sync's peak RSS, --sync-rss-entries), verify (uringsync verify against "
            "rsync -naHAXc --delete on the tree), cp-verify (uringsync cp -a --verify against "
            "cp -a && rsync -naHAXc), bigfile-fio (uringsync cp -a of one --big-size file, until "
            "synced, against fio reading and writing it at once, cold), hash (uringsync sync "
            "-naHAXc of that file and a copy against xxh128sum of both, warm); none: only "
            "--rss-entries."
        ),
    ] = "tree,bigfile,mixed",
    entries: Annotated[int, typer.Option(min=1, help="Entries of the tree workload.")] = 50_000,
    big_size: Annotated[
        str, typer.Option(metavar="SIZE", help="The bigfile workload's size (K, M, G).")
    ] = "4G",
    mixed_files: Annotated[
        int, typer.Option(min=1, help="Small files (and dirs, links) of the mixed workload.")
    ] = 5_000,
    mixed_big: Annotated[
        str,
        typer.Option(metavar="SIZE", help="Largest of mixed's 8 big files (others 1/8 to 3/4)."),
    ] = "512M",
    rounds: Annotated[int, typer.Option(min=1, help="Rounds; medians are reported.")] = 3,
    cold: Annotated[
        bool, typer.Option("--cold/--no-cold", help="Time with caches dropped (root).")
    ] = True,
    warm: Annotated[bool, typer.Option("--warm/--no-warm", help="Time with a warm cache.")] = True,
    jobs_sweep: Annotated[
        bool,
        typer.Option("--jobs-sweep/--no-jobs-sweep", help="Also uringsync -j 1..CPUs on tree."),
    ] = True,
    workdir: Annotated[
        str, typer.Option(metavar="DIR", help="Holds the loop image (or, --no-loop, the trees).")
    ] = "/var/tmp/uringsync-bench",
    loop: Annotated[
        bool,
        typer.Option(
            "--loop/--no-loop", help="Measure on a fresh loop-mounted ext4 (root), or in DIR."
        ),
    ] = True,
    image_size: Annotated[
        str | None, typer.Option(metavar="SIZE", help="Loop image size (default: computed).")
    ] = None,
    keep: Annotated[
        bool, typer.Option(help="Keep sources, copies and the mount; the next run reuses them.")
    ] = False,
    settle: Annotated[
        float, typer.Option(min=0, help="Seconds to wait after deleting copies.")
    ] = 10.0,
    verify: Annotated[
        str, typer.Option(help="Check each copy: count (names, bytes, links), rsync, none.")
    ] = "count",
    rss_entries: Annotated[
        int, typer.Option(min=0, help="Also copy a tree of N tiny entries once: peak RSS.")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the generated trees.")] = 1,
    json_out: Annotated[
        str | None,
        typer.Option(
            "--json-out",
            metavar="PATH",
            help="Results (default benchmarks/results/bench.json, or DIR/bench.json).",
        ),
    ] = None,
    plot: Annotated[
        str | None, typer.Option(metavar="PATH", help="PNG plot (default: beside the JSON).")
    ] = None,
    plot_only: Annotated[
        str | None,
        typer.Option("--plot-only", metavar="JSON", help="Only redraw the plot from a JSON."),
    ] = None,
    uringsync_args: Annotated[
        str,
        typer.Option(metavar="ARGS", help="More options for every uringsync cp, e.g. --direct."),
    ] = "",
    sync_rss_entries: Annotated[
        int, typer.Option(min=1, help="Entries on each side of the sync-rss-1m workload.")
    ] = 1_000_000,
    sync_stand_in: Annotated[
        str,
        typer.Option(
            metavar="CMD",
            help="Time CMD -aHAX in place of uringsync sync (e.g. rsync: to try the sync "
            "workloads where uringsync has no sync).",
        ),
    ] = "",
    config_file: ConfigOption = None,
    no_config: NoConfigOption = False,
) -> None:
    from uringsync.bench import cli as bench_cli

    cfg = _config(ctx, "bench", config_file, no_config)
    raise typer.Exit(
        bench_cli(
            workloads=cfg.get("workloads", workloads),
            entries=cfg.get("entries", entries),
            big_size=cfg.get("big_size", big_size),
            mixed_files=cfg.get("mixed_files", mixed_files),
            mixed_big=cfg.get("mixed_big", mixed_big),
            rounds=cfg.get("rounds", rounds),
            cold=cfg.get("cold", cold),
            warm=cfg.get("warm", warm),
            jobs_sweep=cfg.get("jobs_sweep", jobs_sweep),
            workdir=cfg.get("workdir", workdir),
            loop=cfg.get("loop", loop),
            image_size=cfg.get("image_size", image_size),
            keep=cfg.get("keep", keep),
            settle=cfg.get("settle", settle),
            verify=cfg.get("verify", verify),
            rss_entries=cfg.get("rss_entries", rss_entries),
            seed=cfg.get("seed", seed),
            json_out=json_out,
            plot_path=plot,
            plot_only_json=plot_only,
            uringsync_args=cfg.get("uringsync_args", uringsync_args),
            sync_rss_entries=sync_rss_entries,
            sync_stand_in=sync_stand_in,
        )
    )


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console entry point: usage errors exit 1 (not click's 2); Ctrl-C and
    SIGTERM 130.  While a copy runs, the engine catches both signals itself
    (api.copy): workers stop, partial files are removed, then Stopped (a
    KeyboardInterrupt) arrives here."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(EXIT_STOPPED)
    except typer.TyperException as e:  # usage errors: bad option, missing argument
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            err(str(e))
        sys.exit(api.EXIT_FATAL)
    sys.exit(code if isinstance(code, int) else 0)
