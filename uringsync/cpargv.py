"""``uringsync cp``'s command line, parsed as GNU cp 9 parses its own
(getopt_long): the options cp has, with cp's meaning, and ours.  Pure: it
reads only its arguments and the environment (VERSION_CONTROL,
SIMPLE_BACKUP_SUFFIX, POSIXLY_CORRECT), so cpcli.py can run it before
importing anything heavy.

What GNU getopt does and this does too (tests/test_cp_flags.py runs cp):
- operands and options mix (``cp a b -v``) unless POSIXLY_CORRECT is set;
  ``--`` ends options;
- a long option may be abbreviated to any unambiguous prefix
  (``--recur``); an exact name wins;
- short options bundle (``-aTv``); ``-t DIR``, ``-tDIR``, ``-S SUF``;
- ``--opt=VALUE`` or ``--opt VALUE`` for a required value, only
  ``--opt=VALUE`` for an optional one (``--preserve``, ``--reflink``,
  ``--backup``): ``--reflink DST`` does not take ``DST`` as its value;
- a WHEN, CONTROL or attribute word may be abbreviated as cp's argmatch
  allows (``--sparse=al``); an ambiguous one is refused;
- later options win where cp's do: -P/-L/-H/-d/-a for dereferencing,
  -n/-i, --preserve/--no-preserve in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

Deref = Literal["auto", "never", "command-line", "always"]
When = Literal["auto", "always", "never"]
EngineName = Literal["auto", "io_uring", "threads"]

__all__ = ["OPTIONS", "CpArgs", "CpArgvError", "Opt", "parse"]

PRESERVE_WORDS = ("mode", "timestamps", "ownership", "links", "context", "xattr", "all")
ALL_ATTRS = frozenset(PRESERVE_WORDS[:-1])
DEFAULT_PRESERVE = frozenset({"mode", "ownership", "timestamps"})
WHEN_WORDS = ("never", "auto", "always")
BACKUP_WORDS = ("none", "off", "simple", "never", "existing", "nil", "numbered", "t")
BACKUP_MEANING = {
    "none": "none",
    "off": "none",
    "simple": "simple",
    "never": "simple",
    "existing": "existing",
    "nil": "existing",
    "numbered": "numbered",
    "t": "numbered",
}
ENGINE_WORDS = ("auto", "io_uring", "threads")


class CpArgvError(ValueError):
    """A usage error; ``str()`` is cp's message (without the program name),
    ``try_help``: whether cp adds "Try '... --help' for more information."."""

    def __init__(self, msg: str, try_help: bool = True) -> None:
        super().__init__(msg)
        self.try_help = try_help


@dataclass(repr=False, eq=False)
class CpArgs:
    """The command line, with cp's meaning (what cp derives applied by :func:`parse`)."""

    operands: list[bytes] = field(default_factory=list)
    recursive: bool = False
    dereference: Deref = "auto"  # never | command-line | always | auto (cp's rule)
    keep: set[str] = field(default_factory=set)  # attributes preserved
    # --no-preserve=mode not undone by a later --preserve of the mode: new
    # entries get the default permissions (cp's explicit_no_preserve_mode)
    no_mode: bool = False
    attributes_only: bool = False
    backup: str | None = None  # none | simple | existing | numbered
    suffix: str | None = None
    force: bool = False
    interactive: bool = False
    no_clobber: bool = False
    link: bool = False
    symbolic_link: bool = False
    parents: bool = False
    reflink: When = "auto"
    remove_destination: bool = False
    sparse: When = "auto"
    strip_trailing_slashes: bool = False
    target_directory: bytes | None = None
    no_target_directory: bool = False
    update: bool = False
    verbose: bool = False
    one_file_system: bool = False
    help: bool = False
    version: bool = False
    # ours
    queue_depth: int | None = None
    jobs: int | None = None
    direct: bool | None = None
    engine: EngineName | None = None
    fsync: bool = False
    verify: bool = False
    manifest: bytes | None = None
    json: bool = False
    quiet: bool = False
    progress: bool = True
    config: bytes | None = None
    no_config: bool = False
    given: set[str] = field(default_factory=set)  # options named on the command line


NONE, REQUIRED, OPTIONAL = 0, 1, 2


class Opt:
    """One option: its names, whether it takes a value, its help line.  (A
    plain class: dataclasses generate code at import, and cp's start-up
    counts.)"""

    __slots__ = ("apply", "arg", "help", "long", "metavar", "ours", "short")

    def __init__(
        self,
        long: str | None,
        short: str | None,
        arg: int,
        metavar: str,
        help: str,
        apply: Callable[[CpArgs, str | None], None],
        ours: bool = False,  # not GNU cp's
    ) -> None:
        self.long = long
        self.short = short
        self.arg = arg
        self.metavar = metavar
        self.help = help
        self.apply = apply
        self.ours = ours


def _set(name: str, value: object) -> Callable[[CpArgs, str | None], None]:
    def f(a: CpArgs, _v: str | None) -> None:
        setattr(a, name, value)
        a.given.add(name)

    return f


def _q(word: str) -> str:
    """argmatch's quotes: curly in a UTF-8 locale, as cp prints them."""
    from uringsync.quote import _utf8

    return f"\u2018{word}\u2019" if _utf8() else f"'{word}'"


def argmatch(value: str, words: Sequence[str], option: str) -> str:
    """cp's argmatch: an exact word, or a prefix of only one word (or of
    several that mean the same)."""
    if value in words:
        return value
    hits = [w for w in words if value and w.startswith(value)]
    if len({BACKUP_MEANING.get(h, h) for h in hits}) == 1:
        return hits[0]
    kind = "ambiguous" if hits else "invalid"
    groups: dict[str, list[str]] = {}
    for w in words:
        groups.setdefault(BACKUP_MEANING.get(w, w) if words is BACKUP_WORDS else w, []).append(w)
    valid = "; ".join(", ".join(_q(w) for w in g) for g in groups.values())
    # cp lists the valid arguments on lines of their own; one message is
    # one line here (logs), so they follow in parentheses
    raise CpArgvError(f"{kind} argument {_q(value)} for {_q(option)} (valid: {valid})")


def _attrs(value: str, option: str) -> set[str]:
    out: set[str] = set()
    for word in value.split(","):
        w = argmatch(word, PRESERVE_WORDS, option)
        out |= ALL_ATTRS if w == "all" else {w}
    return out


def _keep(a: CpArgs, attrs: set[str] | frozenset[str]) -> None:
    a.keep |= attrs
    a.no_mode = a.no_mode and "mode" not in attrs
    a.given.add("preserve")


def _archive(a: CpArgs, _v: str | None) -> None:
    a.dereference = "never"
    a.recursive = True
    _keep(a, ALL_ATTRS)
    a.given |= {"archive", "recursive", "preserve"}


def _d(a: CpArgs, _v: str | None) -> None:
    a.dereference = "never"
    a.keep.add("links")


def _p(a: CpArgs, _v: str | None) -> None:
    _keep(a, DEFAULT_PRESERVE)


def _preserve(a: CpArgs, v: str | None) -> None:
    _keep(a, DEFAULT_PRESERVE if v is None else _attrs(v, "--preserve"))


def _no_preserve(a: CpArgs, v: str | None) -> None:
    assert v is not None
    gone = _attrs(v, "--no-preserve")
    a.keep -= gone
    a.no_mode = a.no_mode or "mode" in gone
    a.given.add("preserve")


def _backup(a: CpArgs, v: str | None) -> None:
    if v is None:
        env = os.environ.get("VERSION_CONTROL")
        v = env if env else "existing"
    a.backup = BACKUP_MEANING[argmatch(v, BACKUP_WORDS, "backup type")]


def _b(a: CpArgs, _v: str | None) -> None:
    _backup(a, None)


def _suffix(a: CpArgs, v: str | None) -> None:
    a.suffix = v
    if a.backup is None:  # cp: -S makes backups too
        _backup(a, None)


def _i(a: CpArgs, _v: str | None) -> None:
    a.interactive, a.no_clobber = True, False


def _n(a: CpArgs, _v: str | None) -> None:
    a.interactive, a.no_clobber = False, True


def _when(name: str) -> Callable[[CpArgs, str | None], None]:
    def f(a: CpArgs, v: str | None) -> None:
        setattr(a, name, "always" if v is None else argmatch(v, WHEN_WORDS, "--" + name))
        a.given.add(name)

    return f


def _target(a: CpArgs, v: str | None) -> None:
    assert v is not None
    if a.target_directory is not None:
        raise CpArgvError("multiple target directories specified", try_help=False)
    a.target_directory = os.fsencode(v)


def _int(name: str, option: str, least: int, most: int | None = None) -> Callable[..., None]:
    def f(a: CpArgs, v: str | None) -> None:
        assert v is not None
        try:
            n = int(v, 10)
        except ValueError:
            raise CpArgvError(f"invalid number '{v}' for '{option}'") from None
        if n < least or (most is not None and n > most):
            top = f" to {most}" if most is not None else " or more"
            raise CpArgvError(f"invalid number '{v}' for '{option}': use {least}{top}")
        setattr(a, name, n)
        a.given.add(name)

    return f


def _engine(a: CpArgs, v: str | None) -> None:
    assert v is not None
    a.engine = cast(EngineName, argmatch(v, ENGINE_WORDS, "--engine"))
    a.given.add("engine")


def _bytes_field(name: str) -> Callable[[CpArgs, str | None], None]:
    def f(a: CpArgs, v: str | None) -> None:
        assert v is not None
        setattr(a, name, os.fsencode(v))
        a.given.add(name)

    return f


def _refuse(what: str) -> Callable[[CpArgs, str | None], None]:
    def f(a: CpArgs, _v: str | None) -> None:
        raise CpArgvError(what, try_help=False)

    return f


def _context(a: CpArgs, v: str | None) -> None:
    if v is not None:
        raise CpArgvError("--context=CTX is not supported: no SELinux or SMACK here", False)


# In cp --help's order; ``ours`` ones after.
OPTIONS: tuple[Opt, ...] = (
    Opt("archive", "a", NONE, "", "same as -dR --preserve=all", _archive),
    Opt(
        "attributes-only",
        None,
        NONE,
        "",
        "don't copy the file data, just the attributes",
        _set("attributes_only", True),
    ),
    Opt(
        "backup",
        None,
        OPTIONAL,
        "CONTROL",
        "make a backup of each existing destination file",
        _backup,
    ),
    Opt(None, "b", NONE, "", "like --backup but does not accept an argument", _b),
    Opt(
        "copy-contents",
        None,
        NONE,
        "",
        "not supported: special files are copied as what they are",
        _refuse("--copy-contents is not supported: special files are copied as what they are"),
    ),
    Opt(None, "d", NONE, "", "same as --no-dereference --preserve=links", _d),
    Opt(
        "force",
        "f",
        NONE,
        "",
        "if an existing destination file cannot be opened, remove it and try again "
        "(this option is ignored when the -n option is also used)",
        _set("force", True),
    ),
    Opt(
        "interactive",
        "i",
        NONE,
        "",
        "prompt before overwrite (overrides a previous -n option); "
        "refused when standard input is not a terminal",
        _i,
    ),
    Opt(
        None,
        "H",
        NONE,
        "",
        "follow command-line symbolic links in SOURCE",
        _set("dereference", "command-line"),
    ),
    Opt("link", "l", NONE, "", "hard link files instead of copying", _set("link", True)),
    Opt(
        "dereference",
        "L",
        NONE,
        "",
        "always follow symbolic links in SOURCE",
        _set("dereference", "always"),
    ),
    Opt(
        "no-clobber",
        "n",
        NONE,
        "",
        "do not overwrite an existing file (overrides a previous -i option)",
        _n,
    ),
    Opt(
        "no-dereference",
        "P",
        NONE,
        "",
        "never follow symbolic links in SOURCE",
        _set("dereference", "never"),
    ),
    Opt(None, "p", NONE, "", "same as --preserve=mode,ownership,timestamps", _p),
    Opt(
        "preserve",
        None,
        OPTIONAL,
        "ATTR_LIST",
        "preserve the specified attributes (default: mode,ownership,timestamps), "
        "if possible; additional attributes: context, links, xattr, all",
        _preserve,
    ),
    Opt(
        "no-preserve",
        None,
        REQUIRED,
        "ATTR_LIST",
        "don't preserve the specified attributes",
        _no_preserve,
    ),
    Opt(
        "parents",
        None,
        NONE,
        "",
        "use full source file name under DIRECTORY",
        _set("parents", True),
    ),
    Opt("recursive", "R", NONE, "", "copy directories recursively", _set("recursive", True)),
    Opt(None, "r", NONE, "", "same as -R", _set("recursive", True)),
    Opt(
        "reflink",
        None,
        OPTIONAL,
        "WHEN",
        "control clone/CoW copies: auto, always (the default of a bare --reflink), never",
        _when("reflink"),
    ),
    Opt(
        "remove-destination",
        None,
        NONE,
        "",
        "remove each existing destination file before attempting to open it "
        "(contrast with --force)",
        _set("remove_destination", True),
    ),
    Opt(
        "sparse",
        None,
        REQUIRED,
        "WHEN",
        "control creation of sparse files: auto (holes of the source), always "
        "(also runs of zeros), never",
        _when("sparse"),
    ),
    Opt(
        "strip-trailing-slashes",
        None,
        NONE,
        "",
        "remove any trailing slashes from each SOURCE argument",
        _set("strip_trailing_slashes", True),
    ),
    Opt(
        "symbolic-link",
        "s",
        NONE,
        "",
        "make symbolic links instead of copying",
        _set("symbolic_link", True),
    ),
    Opt("suffix", "S", REQUIRED, "SUFFIX", "override the usual backup suffix", _suffix),
    Opt(
        "target-directory",
        "t",
        REQUIRED,
        "DIRECTORY",
        "copy all SOURCE arguments into DIRECTORY",
        _target,
    ),
    Opt(
        "no-target-directory",
        "T",
        NONE,
        "",
        "treat DEST as a normal file",
        _set("no_target_directory", True),
    ),
    Opt(
        "update",
        "u",
        NONE,
        "",
        "copy only when the SOURCE file is newer than the destination file or when "
        "the destination file is missing",
        _set("update", True),
    ),
    Opt("verbose", "v", NONE, "", "explain what is being done", _set("verbose", True)),
    Opt(
        "one-file-system", "x", NONE, "", "stay on this file system", _set("one_file_system", True)
    ),
    Opt(
        None,
        "Z",
        NONE,
        "",
        "no effect: no SELinux here (as cp on a system without it)",
        lambda a, v: None,
    ),
    Opt("context", None, OPTIONAL, "CTX", "like -Z; a CTX is refused", _context),
    Opt("help", None, NONE, "", "display this help and exit", _set("help", True)),
    Opt("version", None, NONE, "", "output version information and exit", _set("version", True)),
    # ours
    Opt(
        "jobs",
        "j",
        REQUIRED,
        "N",
        "worker processes, each pinned to a CPU with its own io_uring (default: one "
        "per usable CPU, started only once the walk has found enough work; 0: none)",
        _int("jobs", "--jobs", 0),
        ours=True,
    ),
    Opt(
        "queue-depth",
        None,
        REQUIRED,
        "N",
        "files in flight at once per worker, 1 to 1024 (default 64)",
        _int("queue_depth", "--queue-depth", 1, 1024),
        ours=True,
    ),
    Opt(
        "engine",
        None,
        REQUIRED,
        "ENGINE",
        "how files are read and written: io_uring; threads (plain syscalls on a few "
        "threads per worker); auto (the default, or $URINGSYNC_ENGINE): io_uring, or "
        "threads with a notice where io_uring cannot be used (seccomp, "
        "kernel.io_uring_disabled, an old kernel)",
        _engine,
        ours=True,
    ),
    Opt(
        "direct",
        None,
        NONE,
        "",
        "O_DIRECT for big files split across workers (default: only with --fsync or "
        "--verify, see docs/benchmarks.md)",
        _set("direct", True),
        ours=True,
    ),
    Opt("no-direct", None, NONE, "", "never O_DIRECT", _set("direct", False), ours=True),
    Opt(
        "fsync",
        None,
        NONE,
        "",
        "when the copy returns, everything it wrote is on stable storage: each file "
        "flushed after its metadata, each destination file system once at the end",
        _set("fsync", True),
        ours=True,
    ),
    Opt(
        "verify",
        None,
        NONE,
        "",
        "hash each file's data (XXH3-128) as it is read, read it back from the disk "
        "once written, and compare: a file that differs is an error (exit 23) and is "
        "removed; no reflinks or copy_file_range then",
        _set("verify", True),
        ours=True,
    ),
    Opt(
        "manifest",
        None,
        REQUIRED,
        "FILE",
        "write FILE: an xxh128sum line (XXH3-128 digest, path relative to DEST) per "
        "regular file copied; xxh128sum -c FILE in DEST or uringsync verify --manifest "
        "checks the copy",
        _bytes_field("manifest"),
        ours=True,
    ),
    Opt(
        "json",
        None,
        NONE,
        "",
        "at the end, print one JSON object with counts, rates and errors on standard "
        "output (errors are still reported on standard error as they happen)",
        _set("json", True),
        ours=True,
    ),
    Opt(
        "quiet",
        "q",
        NONE,
        "",
        "no progress bar and no notices; errors are still reported",
        _set("quiet", True),
        ours=True,
    ),
    Opt(
        "no-progress",
        None,
        NONE,
        "",
        "no progress bar (shown by default when standard error is a terminal)",
        _set("progress", False),
        ours=True,
    ),
    Opt(
        "config",
        None,
        REQUIRED,
        "FILE",
        "read defaults from FILE's [cp] table instead of $XDG_CONFIG_HOME/uringsync/"
        "config.toml or /etc/uringsync.toml",
        _bytes_field("config"),
        ours=True,
    ),
    Opt(
        "no-config",
        None,
        NONE,
        "",
        "read no configuration file",
        _set("no_config", True),
        ours=True,
    ),
)

_LONG = {o.long: o for o in OPTIONS if o.long}
# cp.c's long_opts order: getopt lists an abbreviation's possibilities in it
_CP_ORDER = [
    "archive",
    "attributes-only",
    "backup",
    "copy-contents",
    "dereference",
    "force",
    "interactive",
    "link",
    "no-clobber",
    "no-dereference",
    "no-preserve",
    "no-target-directory",
    "one-file-system",
    "parents",
    "preserve",
    "recursive",
    "remove-destination",
    "sparse",
    "reflink",
    "strip-trailing-slashes",
    "suffix",
    "symbolic-link",
    "target-directory",
    "update",
    "verbose",
    "context",
    "help",
    "version",
]
_SHORT = {o.short: o for o in OPTIONS if o.short}


def _find_long(name: str) -> Opt:
    if name in _LONG:
        return _LONG[name]
    hits = [o for n, o in _LONG.items() if n.startswith(name)]
    hits.sort(key=lambda o: _CP_ORDER.index(o.long) if o.long in _CP_ORDER else len(_CP_ORDER))
    if len(hits) == 1:
        return hits[0]
    if hits:
        names = " ".join(f"'--{o.long}'" for o in hits)
        raise CpArgvError(f"option '--{name}' is ambiguous; possibilities: {names}")
    raise CpArgvError(f"unrecognized option '--{name}'")


def parse(argv: Sequence[str | bytes], base: CpArgs | None = None) -> CpArgs:
    """The arguments after ``uringsync cp``; ``base`` holds defaults (a
    config file's) that the command line overrides.  Raises
    :class:`CpArgvError`."""
    a = base if base is not None else CpArgs()
    rest = [os.fsencode(x) for x in argv]
    posix = "POSIXLY_CORRECT" in os.environ
    operands: list[bytes] = []
    while rest:
        raw = rest.pop(0)
        if raw == b"--":
            operands += rest
            break
        if not raw.startswith(b"-") or raw == b"-":
            operands.append(raw)
            if posix:
                operands += rest
                break
            continue
        text = os.fsdecode(raw)
        if text.startswith("--"):
            body, eq, value = text[2:].partition("=")
            opt = _find_long(body)
            if opt.arg == NONE and eq:
                raise CpArgvError(f"option '--{opt.long}' doesn't allow an argument")
            if opt.arg == REQUIRED and not eq:
                if not rest:
                    raise CpArgvError(f"option '--{opt.long}' requires an argument")
                value = os.fsdecode(rest.pop(0))
            opt.apply(a, value if eq or opt.arg == REQUIRED else None)
            continue
        k = 1
        while k < len(text):
            ch = text[k]
            o = _SHORT.get(ch)
            if o is None:
                raise CpArgvError(f"invalid option -- '{ch}'")
            if o.arg == NONE:
                o.apply(a, None)
                k += 1
                continue
            value = text[k + 1 :]
            if not value:
                if not rest:
                    raise CpArgvError(f"option requires an argument -- '{ch}'")
                value = os.fsdecode(rest.pop(0))
            o.apply(a, value)
            break
    a.operands = operands
    return _derived(a)


def _derived(a: CpArgs) -> CpArgs:
    """What cp's main() refuses and derives after reading its options."""
    if a.help or a.version:
        return a
    if a.link and a.symbolic_link:
        raise CpArgvError("cannot make both hard and symbolic links")
    if a.backup not in (None, "none") and a.no_clobber:
        raise CpArgvError("options --backup and --no-clobber are mutually exclusive")
    if a.reflink == "always" and a.sparse != "auto":
        raise CpArgvError("--reflink can be used only with --sparse=auto")
    if a.target_directory is not None and a.no_target_directory:
        raise CpArgvError(
            "cannot combine --target-directory (-t) and --no-target-directory (-T)",
            try_help=False,
        )
    if a.backup == "none":
        a.backup = None
    if a.backup is not None and a.suffix is None:
        a.suffix = os.environ.get("SIMPLE_BACKUP_SUFFIX") or "~"
    if a.dereference == "auto":
        # cp: recursive copies (but not -l's) never follow, others always
        a.dereference = "never" if a.recursive and not a.link else "always"
    return a
