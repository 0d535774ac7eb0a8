"""rsync's command line for ``uringsync sync``: the options we take, with rsync's
meaning, and the operands ``SRC... DST``.  Pure: :func:`parse` reads only its
argument; :func:`check_operands` is the one place that looks at the disk.

Checked against rsync 3.x (``rsync -n`` on temporary directories; see
tests/test_syncargs.py, which runs it):

- no abbreviations (rsync's popt refuses ``--dele``); ``--opt=value`` and
  ``--opt value``; a short option that takes a value takes the rest of its
  bundle (``-j4``, ``-f'- x'``) or else the next argument; ``--`` ends options;
- the options rsync has but we do not take say "not supported", names rsync
  does not know say "unknown option" (as rsync does), so nothing is ignored;
- later options win: ``-a --no-o`` keeps everything but the owner, ``--no-r -a``
  recurses; ``--no-OPTION`` exists only where rsync has it (``--no-delete`` is
  an unknown option in rsync, so here too);
- ``--delete`` (and ``--delete-after``/``--delete-excluded``, which imply it)
  without ``-r``: rsync's own message and a usage error;
- ``--max-delete``: a non-integer is refused as rsync does.  rsync takes a
  negative N as 0 (no deletions); we refuse it instead (N >= 0 says the same);
- ``-c``, ``--size-only`` and ``-I`` together are no error in rsync: ``-c``
  wins over ``--size-only``, which wins over ``-I`` (kept as given; the engine
  applies that order); ``--existing`` with ``--ignore-existing`` is no error
  either (nothing is updated, only deletions happen);
- ``--acls`` implies ``--perms`` (rsync's manual says so).

Where we choose differently from rsync: one operand (rsync lists SRC) and no
operands (rsync prints its help) are usage errors here; remote paths
(``host:path``, ``host::module``, ``rsync://``) are refused, as is every
option rsync has that is not in the table below.
"""

from __future__ import annotations

import errno as E
import os
import stat as S
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "FILTER_OPTIONS",
    "Operand",
    "SyncArgs",
    "SyncArgsError",
    "check_operands",
    "is_remote",
    "parse",
]

PREFIX = "uringsync sync: "


class SyncArgsError(ValueError):
    """A usage error on ``uringsync sync``'s command line; ``str()`` is the
    message, ``code`` rsync's exit code for it (1: syntax; 23: a SRC that is
    not there; 11: DST cannot be made; 3: DST's parent is no directory)."""

    def __init__(self, msg: str, code: int = 1) -> None:
        super().__init__(msg)
        self.code = code


@dataclass(frozen=True)
class Operand:
    """One SRC of the command line."""

    path: bytes  # as given, trailing slash included
    contents: bool  # trailing slash: what is inside SRC, not SRC itself


@dataclass(frozen=True)
class SyncArgs:
    """The command line, with rsync's meaning (implications already applied)."""

    srcs: tuple[Operand, ...] = ()
    dst: bytes = b""  # as given; created if missing, its parents are not
    recursive: bool = False
    links: bool = False
    perms: bool = False
    times: bool = False
    group: bool = False
    owner: bool = False
    devices: bool = False
    specials: bool = False
    hard_links: bool = False
    acls: bool = False
    xattrs: bool = False
    one_file_system: bool = False
    verbose: int = 0
    dry_run: bool = False
    itemize: int = 0
    checksum: bool = False
    size_only: bool = False
    ignore_times: bool = False
    update: bool = False
    ignore_existing: bool = False
    existing: bool = False
    inplace: bool = False
    delta: bool = False  # --delta / --no-whole-file: only changed blocks of a changed file written
    block_size: int = 65536  # -B/--block-size: delta's unit of comparison
    watch: bool = False  # ours: after the first pass, follow SRC's changes until stopped
    watch_delay: float = 0.1  # ours: --watch-delay SECONDS, events gathered per directory
    delete: bool = False
    delete_after: bool = False
    delete_excluded: bool = False
    max_delete: int | None = None  # None: no limit
    # (long option name, value) in command-line order: --exclude, --include,
    # --exclude-from, --include-from, --filter (-f is recorded as --filter)
    filters: tuple[tuple[str, bytes], ...] = field(default=())
    files_from: bytes | None = None
    from0: bool = False  # --files-from, --exclude-from, --include-from: NUL-ended lines
    stats: bool = False
    fsync: bool = False  # every written file flushed (and, ours, the file systems at the end)
    verify: bool = False  # ours: every copied file read back from the disk and compared
    manifest: bytes | None = None  # ours: FILE gets the digest of every regular file name
    json: bool = False
    jobs: int | None = None  # None: the engine's default
    quiet: bool = False  # -q: no progress bar, no informational lines
    progress: bool = True  # --no-progress: no bar even on a terminal
    config: bytes | None = None  # ours: --config FILE
    no_config: bool = False  # ours: --no-config


FILTER_OPTIONS = ("--exclude", "--include", "--exclude-from", "--include-from", "--filter")

# long name -> (SyncArgs field, value set), for the plain on/off options;
# "-D" and "-a" are handled apart because they set several fields
_FLAGS: dict[str, tuple[str, bool]] = {
    "recursive": ("recursive", True),
    "from0": ("from0", True),
    "links": ("links", True),
    "perms": ("perms", True),
    "times": ("times", True),
    "group": ("group", True),
    "owner": ("owner", True),
    "devices": ("devices", True),
    "specials": ("specials", True),
    "hard-links": ("hard_links", True),
    "acls": ("acls", True),
    "xattrs": ("xattrs", True),
    "one-file-system": ("one_file_system", True),
    "dry-run": ("dry_run", True),
    "checksum": ("checksum", True),
    "size-only": ("size_only", True),
    "ignore-times": ("ignore_times", True),
    "update": ("update", True),
    "ignore-existing": ("ignore_existing", True),
    "existing": ("existing", True),
    "ignore-non-existing": ("existing", True),  # rsync's alias
    "inplace": ("inplace", True),
    "delta": ("delta", True),  # ours: rsync's --no-whole-file
    "whole-file": ("delta", False),  # rsync's default between local paths
    "watch": ("watch", True),  # ours, not rsync's
    "delete": ("delete", True),
    "delete-after": ("delete_after", True),
    "delete-excluded": ("delete_excluded", True),
    "stats": ("stats", True),
    "fsync": ("fsync", True),
    "verify": ("verify", True),  # ours, not rsync's
    "json": ("json", True),  # ours, not rsync's
    "quiet": ("quiet", True),
    "progress": ("progress", True),
    "no-config": ("no_config", True),  # ours, not rsync's
}
_COUNTS = {"verbose": "verbose", "itemize-changes": "itemize"}
_SPECIAL = ("archive", "D")
_VALUED = (
    "max-delete",
    "files-from",
    "jobs",
    "manifest",
    "config",
    "block-size",
    "watch-delay",
    *(o[2:] for o in FILTER_OPTIONS),
)

_SHORT: dict[str, str] = {
    "a": "archive",
    "r": "recursive",
    "l": "links",
    "p": "perms",
    "t": "times",
    "g": "group",
    "o": "owner",
    "D": "D",
    "H": "hard-links",
    "A": "acls",
    "X": "xattrs",
    "x": "one-file-system",
    "v": "verbose",
    "n": "dry-run",
    "i": "itemize-changes",
    "c": "checksum",
    "I": "ignore-times",
    "u": "update",
    "f": "filter",
    "j": "jobs",  # ours, not rsync's
    "0": "from0",
    "q": "quiet",
    "W": "whole-file",
    "B": "block-size",
}

# the --no-OPTION forms rsync 3.x has among the options we take (checked one
# by one: --no-delete, --no-n, --no-a, --no-size-only, ... are unknown to it)
_NEGATABLE = {
    "recursive",
    "from0",
    "links",
    "perms",
    "times",
    "group",
    "owner",
    "D",
    "devices",
    "specials",
    "hard-links",
    "acls",
    "xattrs",
    "one-file-system",
    "verbose",
    "itemize-changes",
    "checksum",
    "inplace",
    "progress",
    "whole-file",
    "delta",
    "watch",
}

# every long option of rsync 3.x (`rsync --help`, its aliases included) that
# we do not take: these say "not supported" rather than "unknown option"
_RSYNC_LONG_TEXT = """
    8-bit-output address append append-verify atimes backup backup-dir
    blocking-io bwlimit cc checksum-choice checksum-seed chmod chown
    compare-dest compress compress-choice compress-level compress-threads
    confine-root contimeout copy-as copy-dest copy-devices copy-dirlinks
    copy-links copy-unsafe-links crtimes cvs-exclude daemon debug del
    delay-updates delete-before delete-delay delete-during delete-missing-args
    dirs drop-D early-input executability fake-super force fuzzy
    groupmap help human-readable i-r iconv ignore-errors ignore-missing-args
    inc-recursive info insecure-links ipv4 ipv6 keep-dirlinks link-dest
    list-only log-file log-file-format max-alloc max-size min-size mkpath
    modify-window munge-links no-i-r no-implied-dirs no-inc-recursive no-motd
    numeric-ids old-args old-d old-dirs omit-dir-times
    omit-link-times only-write-batch open-noatime out-format outbuf partial
    partial-dir password-file port preallocate protect-args protocol
    prune-empty-dirs read-batch relative remote-option
    remove-source-files rsh rsync-path safe-links secluded-args skip-compress
    sockopts sparse stderr stop-after stop-at super suffix temp-dir timeout
    trust-sender usermap version write-batch write-devices
    zc zl zt
"""
RSYNC_UNSUPPORTED_LONG = frozenset(_RSYNC_LONG_TEXT.split())
# rsync's short options that we do not take
RSYNC_UNSUPPORTED_SHORT = frozenset("468@CEFJKLMNOPRSTUVbdehkmsyz")


def _fail(msg: str, code: int = 1) -> SyncArgsError:
    return SyncArgsError(PREFIX + msg, code)


def _unsupported(shown: str) -> SyncArgsError:
    return _fail(f"rsync option '{shown}' is not supported")


def _unknown(shown: str) -> SyncArgsError:
    return _fail(f"'{shown}': unknown option")


def _int(shown: str, value: bytes, least: int) -> int:
    try:
        n = int(value.decode("ascii"), 10)
    except (UnicodeDecodeError, ValueError):
        shown_value = value.decode("utf-8", "backslashreplace")
        raise _fail(f"{shown}={shown_value}: invalid numeric value") from None
    if n < least:
        raise _fail(f"{shown}={n}: must be at least {least}")
    return n


def _block_size(shown: str, value: bytes) -> int:
    """-B SIZE: a multiple of 4096 from 4 KiB to 1 MiB (the engine compares
    and writes whole blocks; a suffix K or M as in rsync's -B 64K)."""
    text = value.decode("ascii", "replace").strip()
    mult = {"k": 1024, "m": 1024 * 1024}.get(text[-1:].lower(), 1)
    digits = text[:-1] if mult > 1 else text
    try:
        n = int(digits, 10) * mult
    except ValueError:
        raise _fail(f"{shown}={text}: invalid block size") from None
    if n < 4096 or n > 1 << 20 or n % 4096:
        raise _fail(f"{shown}={text}: block size must be a multiple of 4096 from 4K to 1M")
    return n


def _seconds(shown: str, value: bytes) -> float:
    text = value.decode("ascii", "replace")
    try:
        t = float(text)
    except ValueError:
        raise _fail(f"{shown}={text}: invalid number of seconds") from None
    if not 0 <= t <= 3600:
        raise _fail(f"{shown}={text}: must be from 0 to 3600 seconds")
    return t


def _show(path: bytes) -> str:
    return "'" + path.decode("utf-8", "backslashreplace") + "'"


def is_remote(path: bytes) -> bool:
    """rsync's test: ``rsync://...``, or a colon before any slash (``host:p``, ``host::m``)."""
    if path.lower().startswith(b"rsync://"):
        return True
    colon = path.find(b":")
    if colon < 0:
        return False
    slash = path.find(b"/")
    return slash < 0 or colon < slash


class _State:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.filters: list[tuple[str, bytes]] = []

    def set(self, name: str, value: Any) -> None:
        self.values[name] = value

    def get_int(self, name: str) -> int:
        v = self.values.get(name, 0)
        assert isinstance(v, int)
        return v


def _apply(st: _State, name: str, value: bytes | None, shown: str) -> None:
    """One accepted option, by its long name (or ``D``); ``value`` for valued ones."""
    if name == "archive":  # -rlptgoD
        for f in ("recursive", "links", "perms", "times", "group", "owner", "devices", "specials"):
            st.set(f, True)
    elif name == "D":
        st.set("devices", True)
        st.set("specials", True)
    elif name in _FLAGS:
        fld, on = _FLAGS[name]
        st.set(fld, on)
        if name == "recursive":
            st.set("explicit_recursive", on)
    elif name in _COUNTS:
        st.set(_COUNTS[name], st.get_int(_COUNTS[name]) + 1)
    else:
        assert value is not None
        if "--" + name in FILTER_OPTIONS:
            st.filters.append(("--" + name, value))
        elif name == "files-from":
            st.set("files_from", value)
        elif name == "manifest":
            st.set("manifest", value)
        elif name == "config":
            st.set("config", value)
        elif name == "max-delete":
            st.set("max_delete", _int(shown, value, 0))
        elif name == "block-size":
            st.set("block_size", _block_size(shown, value))
        elif name == "watch-delay":
            st.set("watch_delay", _seconds(shown, value))
        elif name == "jobs":
            st.set("jobs", _int(shown, value, 0))  # 0: no worker processes, as cp -j 0
        else:  # pragma: no cover - the tables above cover every name
            raise AssertionError(name)


def _negate(st: _State, name: str) -> None:
    if name == "D":
        st.set("devices", False)
        st.set("specials", False)
    elif name in _COUNTS:
        st.set(_COUNTS[name], 0)
    elif name == "whole-file":  # --no-whole-file, --no-W: rsync's delta transfer
        st.set("delta", True)
    else:
        st.set(_FLAGS[name][0], False)
        if name == "recursive":
            st.set("explicit_recursive", False)


def _long(st: _State, arg: bytes, rest: list[bytes]) -> None:
    """``--name``, ``--name=value`` or ``--name value`` (``value`` popped from ``rest``)."""
    body, eq, attached = arg[2:].partition(b"=")
    name = body.decode("utf-8", "surrogateescape")
    shown = "--" + body.decode("utf-8", "backslashreplace")
    if name.startswith("no-") and name not in RSYNC_UNSUPPORTED_LONG and name not in _FLAGS:
        what = name[3:]
        what = _SHORT.get(what, what) if len(what) == 1 else what
        if what in _NEGATABLE:
            if eq:
                raise _fail(f"{shown}: option does not take an argument")
            _negate(st, what)
            return
        if what in RSYNC_UNSUPPORTED_LONG or (
            len(name) == 4 and name[3] in RSYNC_UNSUPPORTED_SHORT
        ):
            raise _unsupported(shown)
        raise _unknown(shown)
    if name in _VALUED:
        if eq:
            value = attached
        elif rest:
            value = rest.pop(0)
        else:
            raise _fail(f"{shown}: missing argument")
        _apply(st, name, value, shown)
    elif name in _FLAGS or name in _COUNTS or name == "archive":
        if eq:
            raise _fail(
                f"{shown}={attached.decode('utf-8', 'backslashreplace')}: "
                "option does not take an argument"
            )
        _apply(st, name, None, shown)
    elif name in RSYNC_UNSUPPORTED_LONG:
        raise _unsupported(shown)
    else:
        raise _unknown(arg.decode("utf-8", "backslashreplace"))


def _bundle(st: _State, arg: bytes, rest: list[bytes]) -> None:
    """``-aHAXv``, ``-j4``, ``-f'- x'``, ``-j 4``."""
    text = arg[1:].decode("utf-8", "surrogateescape")
    for k, ch in enumerate(text):
        name = _SHORT.get(ch)
        if name is None:
            shown = "-" + ch.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            if ch in RSYNC_UNSUPPORTED_SHORT:
                raise _unsupported(shown)
            raise _unknown(shown)
        if name in _VALUED:
            tail = text[k + 1 :]
            if tail:
                value = tail.encode("utf-8", "surrogateescape")
            elif rest:
                value = rest.pop(0)
            else:
                raise _fail(f"-{ch}: missing argument")
            _apply(st, name, value, "--" + name)
            return
        _apply(st, name, None, "-" + ch)


def parse(argv: Sequence[str | bytes]) -> SyncArgs:
    """The arguments after ``uringsync sync``; raise :class:`SyncArgsError` on any problem.

    ``str`` elements (``sys.argv``, surrogateescape) become bytes with os.fsencode.
    """
    rest = [os.fsencode(a) for a in argv]
    st = _State()
    operands: list[bytes] = []
    while rest:
        arg = rest.pop(0)
        if arg == b"--":
            operands += rest
            break
        if arg.startswith(b"--"):
            _long(st, arg, rest)
        elif arg.startswith(b"-") and arg != b"-":
            _bundle(st, arg, rest)
        else:
            operands.append(arg)
    if not operands:
        raise _fail("missing SRC and DST operands")
    if len(operands) == 1:
        raise _fail(f"missing DST operand after {_show(operands[0])}")
    for path in operands:
        if not path:
            raise _fail("empty path operand")
        if is_remote(path):
            raise _fail(
                f"remote path {_show(path)} is not supported (local paths only;"
                f" write ./{path.decode('utf-8', 'backslashreplace')} for a local name)"
            )
    # -r/--no-r as given, apart from -a: --files-from drops the -r that
    # only -a implied (rsync's options.c: recurse == 1)
    explicit_recursive = bool(st.values.pop("explicit_recursive", False))
    _config_defaults(st)
    args = SyncArgs(
        srcs=tuple(Operand(p, p.endswith(b"/")) for p in operands[:-1]),
        dst=operands[-1],
        filters=tuple(st.filters),
        **st.values,
    )
    return _implied(args, explicit_recursive)


# [sync] keys of the configuration file that are SyncArgs fields as they are
_CONFIG_FIELDS = ("jobs", "verify", "delete", "checksum", "quiet", "progress")


def _config_defaults(st: _State) -> None:
    """The [sync] table of the configuration file (uringsync/config.py):
    defaults for what the command line did not set.  Its exclude, include
    and filter rules come after the command line's, so that the command
    line's rules match first (rsync's first match wins)."""
    from uringsync import config

    path = st.values.get("config")
    try:
        values = config.defaults(
            "sync",
            os.fsdecode(path) if path is not None else None,
            not st.values.get("no_config", False),
        )
    except config.ConfigError as e:
        raise _fail(str(e)) from None
    for key, value in values.items():
        if key in ("exclude", "include", "filter"):
            st.filters += [("--" + key, os.fsencode(v)) for v in value]
        elif key in _CONFIG_FIELDS and key not in st.values:
            st.set(key, value)


def _implied(a: SyncArgs, explicit_recursive: bool = False) -> SyncArgs:
    """rsync's implications and the combinations it refuses."""
    delete = a.delete or a.delete_after or a.delete_excluded
    if a.manifest is not None and a.dry_run:
        raise _fail("--manifest lists the files written to DST: not with --dry-run (-n)")
    if a.files_from is not None:
        # rsync: -a does not imply -r here, -d (--dirs) is implied, and the
        # list names paths in one SRC
        if len(a.srcs) != 1:
            raise _fail("--files-from takes exactly one SRC (the list's paths are relative to it)")
        return replace(a, recursive=explicit_recursive, delete=delete, perms=a.perms or a.acls)
    if delete and not a.recursive:
        raise _fail("--delete does not work without --recursive (-r).")
    return replace(a, delete=delete, perms=a.perms or a.acls)


def check_operands(args: SyncArgs) -> None:
    """What rsync finds on the disk before it copies: every SRC exists, DST's parent
    is a directory (rsync makes DST, not its parents: ``mkdir ... failed``), and
    several SRCs need DST to be a directory if it exists.

    rsync goes on past a missing SRC (exit 23) and with -n does not check DST's
    parent; we refuse both up front, as cp's rules do."""
    for src in args.srcs:
        try:
            # SRC/ names the directory a symlink points to; SRC the link itself
            st = os.stat(src.path, follow_symlinks=src.contents or args.files_from is not None)
        except OSError as e:
            reason = os.strerror(e.errno or 0)
            if args.files_from is not None:  # rsync changes into SRC first
                err = _fail(f"change_dir {_show(src.path)} failed: {reason}", 3)
            else:
                err = _fail(f"link_stat {_show(src.path)} failed: {reason}")
                err.code = 23  # rsync: some files could not be transferred
            raise err from None
        if args.files_from is not None and not S.S_ISDIR(st.st_mode):
            reason = os.strerror(E.ENOTDIR)
            raise _fail(f"change_dir {_show(src.path)} failed: {reason}", 3)
    dst = args.dst
    try:
        dst_st: os.stat_result | None = os.stat(dst)
    except OSError:
        dst_st = None
    if dst_st is None:
        parent = os.path.dirname(dst.rstrip(b"/")) or b"."
        try:
            pst = os.stat(parent)
        except OSError as e:
            err = _fail(f"mkdir {_show(dst)} failed: {os.strerror(e.errno or 0)}")
            err.code = 3 if e.errno == E.ENOTDIR else 11  # rsync's RERR_FILESELECT / FILEIO
            raise err from None
        if not S.S_ISDIR(pst.st_mode):
            err = _fail(f"mkdir {_show(dst)} failed: {os.strerror(E.ENOTDIR)}")
            err.code = 3
            raise err
    elif len(args.srcs) > 1 and not S.S_ISDIR(dst_st.st_mode):
        raise _fail("destination must be a directory when copying more than 1 file")
    elif args.files_from is not None and not S.S_ISDIR(dst_st.st_mode):
        raise _fail("destination must be a directory when copying more than 1 file", 3)
