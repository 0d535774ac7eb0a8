"""``uringsync cp``: GNU cp's command line (parsed by cpargv.py) run on the
engine.  It starts without typer, rich or the bench: entry.py calls
:func:`main` directly, so a copy of one small file costs about what Python's
own start costs (docs/benchmarks.md, "Start-up")."""

from __future__ import annotations

import os
import sys
from typing import Any

from uringsync import cpargv
from uringsync.cpargv import CpArgs, CpArgvError

EXIT_FATAL = 1
EXIT_STOPPED = 130
PROG = "uringsync cp"

USAGE = f"""Usage: {PROG} [OPTION]... [-T] SOURCE DEST
  or:  {PROG} [OPTION]... SOURCE... DIRECTORY
  or:  {PROG} [OPTION]... -t DIRECTORY SOURCE...
Copy SOURCE to DEST, or multiple SOURCE(s) to DIRECTORY, as GNU cp does, with
many files in flight on io_uring (or threads where io_uring cannot be used)."""

NOTES = """One deliberate difference from cp: a symbolic link met inside DEST during a
recursive copy is never written through (it is replaced, or the entry is
reported); the DEST operand itself, and a symlink given as DEST for a file, are
followed as cp follows them.

The backup suffix is '~', unless set with --suffix or SIMPLE_BACKUP_SUFFIX.
The version control method may be selected via the --backup option or through
the VERSION_CONTROL environment variable: none, off (never make backups);
numbered, t (numbered backups); existing, nil (numbered if numbered backups
exist, simple otherwise); simple, never (always simple backups).

Defaults for these options may be set in the [cp] table of
$XDG_CONFIG_HOME/uringsync/config.toml or /etc/uringsync.toml (keys: jobs,
queue_depth, engine, sparse, reflink, direct, fsync, verify, preserve,
one_file_system, quiet, progress); the command line wins.

When standard error is a terminal (and without -v, -q or --no-progress), a
progress bar shows there.

Exit codes: 0 all copied; 1 usage or fatal error (nothing written); 23 some
files failed (each reported on standard error as path, operation and reason);
24 only vanished source files; 130 stopped by Ctrl-C or SIGTERM (workers
stopped, partial files removed).

Examples:
  uringsync cp -a /srv/data /mnt/new/          copy a tree with all cp -a keeps
  uringsync cp -a --verify photos /mnt/usb/    ... and read every file back
  uringsync cp -t /backup -r etc home          several SOURCEs into DIRECTORY
  uringsync cp -au src/. dst                   only what is newer than in dst"""


def _label(o: cpargv.Opt) -> str:
    value = ""
    if o.arg == cpargv.REQUIRED:
        value = "=" + o.metavar
    elif o.arg == cpargv.OPTIONAL:
        value = f"[={o.metavar}]"
    short = f"-{o.short}" if o.short else ""
    if o.long is None:
        return f"  {short}"
    lead = f"  {short}, " if short else "      "
    return f"{lead}--{o.long}{value}"


def _width() -> int:
    """The terminal's width when standard output is one; 80 otherwise (a
    pipe, a pager): lines are wrapped at word boundaries, never cut."""
    if sys.stdout.isatty():
        import shutil

        return max(40, shutil.get_terminal_size((80, 24)).columns)
    return 80


def help_text(width: int | None = None) -> str:
    """cp --help's text for uringsync cp, wrapped to ``width`` columns."""
    import textwrap

    w = width or _width()
    col = 30 if w >= 70 else 8
    out = [USAGE, "", "Mandatory arguments to long options are mandatory for short options too."]

    def opt_lines(opts: list[cpargv.Opt]) -> None:
        for o in opts:
            label = _label(o)
            body = textwrap.wrap(
                o.help, max(20, w - col), break_long_words=False, break_on_hyphens=False
            )
            if len(label) + 2 <= col:
                out.append(label.ljust(col) + body[0])
            else:
                out.append(label)
                out.append(" " * col + body[0])
            out.extend(" " * col + line for line in body[1:])

    opt_lines([o for o in cpargv.OPTIONS if not o.ours])
    out += ["", "uringsync's own options:"]
    opt_lines([o for o in cpargv.OPTIONS if o.ours])
    for para in NOTES.split("\n\n"):
        out.append("")
        if para.startswith("Examples:"):
            out.append(para)
        else:
            out.extend(
                textwrap.wrap(
                    " ".join(para.split()), w, break_long_words=False, break_on_hyphens=False
                )
            )
    return "\n".join(out)


def err(message: str) -> None:
    print(f"uringsync: {message}", file=sys.stderr, flush=True)


def _usage_error(e: CpArgvError) -> int:
    err(str(e))
    if e.try_help:
        print(f"Try '{PROG} --help' for more information.", file=sys.stderr, flush=True)
    return EXIT_FATAL


# config keys of [cp] -> how they set CpArgs (the command line applies after)
def _from_config(values: dict[str, Any]) -> CpArgs:
    a = CpArgs()
    for key, value in values.items():
        if key == "preserve":
            words = value if isinstance(value, str) else ",".join(value)
            a.keep = cpargv._attrs(words, "preserve") if words else set()
        elif key == "progress":
            a.progress = bool(value)
        else:
            setattr(a, key, value)
    return a


def _base(argv: list[str]) -> CpArgs:
    """The defaults from the configuration file (--config FILE, --no-config)."""
    path: str | None = None
    use = True
    for k, x in enumerate(argv):
        if x == "--":
            break
        if x == "--no-config":
            use = False
        elif x.startswith("--config="):
            path = x[len("--config=") :]
        elif x == "--config" and k + 1 < len(argv):
            path = argv[k + 1]
    if not use and path is None:
        return CpArgs()
    from uringsync import config

    return _from_config(config.defaults("cp", path, use))


def main(argv: list[str]) -> int:
    """``uringsync cp ARGS...``: the exit code."""
    try:
        a = cpargv.parse(argv, _base(argv))
    except CpArgvError as e:
        return _usage_error(e)
    except ValueError as e:  # config.ConfigError: file, line and key in its message
        err(str(e))
        return EXIT_FATAL
    if a.help:
        sys.stdout.write(help_text() + "\n")
        return 0
    if a.version:
        from uringsync._version import __version__

        print(f"uringsync {__version__}")
        return 0
    return run(a)


def _operands(a: CpArgs) -> tuple[list[bytes], bytes, bool | None]:
    """SOURCEs, DEST and whether DEST is a directory (None: as found), or
    CpArgvError as cp's main() refuses them."""
    ops = list(a.operands)
    if a.strip_trailing_slashes:
        ops = [o.rstrip(b"/") or b"/" for o in ops]
    if a.target_directory is not None:
        if not ops:
            raise CpArgvError("missing file operand")
        return ops, a.target_directory, True
    if not ops:
        raise CpArgvError("missing file operand")
    if len(ops) == 1:
        from uringsync.quote import quote

        raise CpArgvError(f"missing destination file operand after {quote(ops[0])}")
    if a.no_target_directory:
        if len(ops) > 2:
            from uringsync.quote import quote

            raise CpArgvError(f"extra operand {quote(ops[2])}")
        return ops[:1], ops[1], False
    if a.parents and len(ops) >= 2:
        import stat

        try:
            is_dir = stat.S_ISDIR(os.stat(ops[-1]).st_mode)
        except OSError:
            is_dir = False
        if not is_dir:
            raise CpArgvError("with --parents, the destination must be a directory")
    return ops[:-1], ops[-1], None


def _ask(path: bytes) -> bool:
    """cp -i's question, on standard error; yes is an answer starting with y."""
    from uringsync.quote import quote

    sys.stderr.write(f"uringsync: overwrite {quote(path)}? ")
    sys.stderr.flush()
    return sys.stdin.readline()[:1] in ("y", "Y")


def _interactive(a: CpArgs, srcs: list[bytes], dst: bytes, target_is_dir: bool | None) -> Any:
    """cp -i on a terminal: ask before each existing destination file is
    overwritten, before the copy starts (the engine then runs without
    stopping to ask).  Returns the SOURCEs left and an ``ignore`` callable
    (shutil's signature) that leaves out the files declined in directories."""
    import stat

    into = target_is_dir if target_is_dir is not None else os.path.isdir(dst)
    declined: dict[str, set[str]] = {}
    kept = []
    for src in srcs:
        target = os.path.join(dst, os.path.basename(src.rstrip(b"/"))) if into else dst
        try:
            st = os.stat(src, follow_symlinks=a.dereference != "never" or src.endswith(b"/"))
        except OSError:
            kept.append(src)  # the copy reports it
            continue
        if not stat.S_ISDIR(st.st_mode):
            if os.path.lexists(target) and not os.path.isdir(target) and not _ask(target):
                continue
            kept.append(src)
            continue
        kept.append(src)
        if not a.recursive:
            continue
        for dirpath, dirnames, filenames in os.walk(src):
            rel = os.path.relpath(dirpath, src)
            twin = os.path.normpath(os.path.join(target, rel))
            for name in filenames + [
                d for d in dirnames if os.path.islink(os.path.join(dirpath, d))
            ]:
                t = os.path.join(twin, name)
                if os.path.lexists(t) and not os.path.isdir(t) and not _ask(t):
                    declined.setdefault(os.fsdecode(dirpath), set()).add(os.fsdecode(name))

    def ignore(directory: str, names: list[str]) -> set[str]:
        return declined.get(directory, set()) & set(names)

    return kept, (ignore if declined else None)


def run(a: CpArgs) -> int:
    """Copy as the parsed command line says; the exit code."""
    try:
        srcs, dst, target_is_dir = _operands(a)
    except CpArgvError as e:
        return _usage_error(e)
    if a.interactive and not sys.stdin.isatty():
        err(
            "-i asks before each overwrite, and standard input is not a terminal: "
            "use -n to keep existing files, or leave -i out to overwrite them"
        )
        return EXIT_FATAL
    json_out = a.json
    bar = None
    if a.progress and not a.quiet and not a.verbose and sys.stderr.isatty():
        from uringsync.progress import ProgressBar  # rich only when it is needed

        bar = ProgressBar()
    from uringsync import api, engine  # not for --help, --version or a usage error

    on_verbose = _to_stderr if json_out else None
    kw: dict[str, Any] = {}
    if a.backup is not None:
        kw["backup"] = a.backup
        kw["suffix"] = a.suffix
    if a.interactive:
        srcs, ignore = _interactive(a, srcs, dst, target_is_dir)
        if not srcs:
            return 0
        if ignore is not None:
            kw["ignore"] = ignore
    if target_is_dir is not None:
        kw["target_is_dir"] = target_is_dir
    if a.no_mode:
        kw["no_preserve"] = "mode"
    notice = (lambda m: None) if a.quiet else err
    try:
        import contextlib

        with bar if bar is not None else contextlib.nullcontext():
            res = api.copy(
                srcs,
                dst,
                recursive=a.recursive,
                preserve=",".join(sorted(a.keep)),
                dereference=a.dereference,
                one_file_system=a.one_file_system,
                verbose=a.verbose,
                sparse=a.sparse,
                reflink=a.reflink,
                queue_depth=a.queue_depth or engine.DEFAULT_QUEUE_DEPTH,
                jobs=a.jobs,
                direct=a.direct,
                progress=bar.progress if bar is not None else None,
                on_error=bar.error if bar is not None else _report,
                on_verbose=on_verbose,
                engine=a.engine,
                on_notice=(lambda m: bar.print(f"uringsync: {m}"))
                if bar is not None and not a.quiet
                else notice,
                fsync=a.fsync,
                verify=a.verify,
                manifest_file=a.manifest,
                no_clobber=a.no_clobber,
                update=a.update,
                force=a.force,
                remove_destination=a.remove_destination,
                link=a.link,
                symbolic_link=a.symbolic_link,
                attributes_only=a.attributes_only,
                parents=a.parents,
                **kw,
            )
    except api.CopyError as e:
        err(str(e))
        return EXIT_FATAL
    except KeyboardInterrupt:  # api.Stopped: SIGINT or SIGTERM, workers stopped
        err("stopped: the copy is incomplete (partial files were removed)")
        return EXIT_STOPPED
    if json_out:
        import json

        from uringsync.jsonout import result_json

        print(json.dumps(result_json(res)), flush=True)
    return res.exit_code


def _report(e: Any) -> None:
    err(e.message)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
