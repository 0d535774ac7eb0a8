"""uringsync/syncargs.py: rsync's command line, parsed with rsync's meaning.

Where we say rsync refuses something, the real rsync is run too (``rsync -n``
on temporary directories) to show it exits non-zero as well."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uringsync.syncargs import (
    RSYNC_UNSUPPORTED_LONG,
    Operand,
    SyncArgs,
    SyncArgsError,
    check_operands,
    parse,
)

OPS = ["s/", "d"]
ARCHIVE = dict(
    recursive=True,
    links=True,
    perms=True,
    times=True,
    group=True,
    owner=True,
    devices=True,
    specials=True,
)

need_rsync = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")


def fields(a: SyncArgs, **want: Any) -> None:
    """``a`` has ``want``'s values and the defaults elsewhere (operands aside)."""
    base = SyncArgs(srcs=a.srcs, dst=a.dst)
    for k, v in vars(base).items():
        assert getattr(a, k) == want.get(k, v), k


def rsync_rc(tmp_path: Path, *args: str) -> int:
    """The exit status of the real ``rsync -n ARGS s/ d`` on a small tree."""
    (tmp_path / "s" / "sub").mkdir(parents=True, exist_ok=True)
    (tmp_path / "s" / "f").write_bytes(b"x")
    r = subprocess.run(
        ["rsync", "-n", *args], cwd=tmp_path, capture_output=True, timeout=30, check=False
    )
    return r.returncode


# -- accepted options ------------------------------------------------------------------

ACCEPTED: list[tuple[list[str], dict[str, Any]]] = [
    (["-a"], ARCHIVE),
    (["--archive"], ARCHIVE),
    (["-r"], dict(recursive=True)),
    (["--recursive"], dict(recursive=True)),
    (["-l"], dict(links=True)),
    (["--links"], dict(links=True)),
    (["-p"], dict(perms=True)),
    (["--perms"], dict(perms=True)),
    (["-t"], dict(times=True)),
    (["--times"], dict(times=True)),
    (["-g"], dict(group=True)),
    (["--group"], dict(group=True)),
    (["-o"], dict(owner=True)),
    (["--owner"], dict(owner=True)),
    (["-D"], dict(devices=True, specials=True)),
    (["--devices"], dict(devices=True)),
    (["--specials"], dict(specials=True)),
    (["-H"], dict(hard_links=True)),
    (["--hard-links"], dict(hard_links=True)),
    (["-A"], dict(acls=True, perms=True)),  # --acls implies --perms
    (["--acls"], dict(acls=True, perms=True)),
    (["-X"], dict(xattrs=True)),
    (["--xattrs"], dict(xattrs=True)),
    (["-x"], dict(one_file_system=True)),
    (["--one-file-system"], dict(one_file_system=True)),
    (["-v"], dict(verbose=1)),
    (["-vvv"], dict(verbose=3)),
    (["--verbose", "-v"], dict(verbose=2)),
    (["-n"], dict(dry_run=True)),
    (["--dry-run"], dict(dry_run=True)),
    (["-i"], dict(itemize=1)),
    (["-ii"], dict(itemize=2)),
    (["--itemize-changes"], dict(itemize=1)),
    (["-c"], dict(checksum=True)),
    (["--checksum"], dict(checksum=True)),
    (["--size-only"], dict(size_only=True)),
    (["-I"], dict(ignore_times=True)),
    (["--ignore-times"], dict(ignore_times=True)),
    (["-u"], dict(update=True)),
    (["--update"], dict(update=True)),
    (["--ignore-existing"], dict(ignore_existing=True)),
    (["--existing"], dict(existing=True)),
    (["--ignore-non-existing"], dict(existing=True)),
    (["--inplace"], dict(inplace=True)),
    (["-r", "--delete"], dict(recursive=True, delete=True)),
    (["-r", "--delete-after"], dict(recursive=True, delete=True, delete_after=True)),
    (["-r", "--delete-excluded"], dict(recursive=True, delete=True, delete_excluded=True)),
    (["--max-delete=5"], dict(max_delete=5)),
    (["--max-delete", "0"], dict(max_delete=0)),
    (["--files-from=list"], dict(files_from=b"list")),
    (["--files-from", "list"], dict(files_from=b"list")),
    # --files-from: -a does not imply -r (an -r as given does), -d is implied
    # so --delete needs no -r (rsync's options.c: recurse == 1 -> 0)
    (["-a", "--files-from=list"], {**ARCHIVE, "recursive": False, "files_from": b"list"}),
    (["--files-from=list", "-a"], {**ARCHIVE, "recursive": False, "files_from": b"list"}),
    (["-ar", "--files-from=list"], {**ARCHIVE, "files_from": b"list"}),
    (["-r", "-a", "--files-from=list"], {**ARCHIVE, "files_from": b"list"}),
    (
        ["-r", "--no-r", "-a", "--files-from=list"],
        {**ARCHIVE, "recursive": False, "files_from": b"list"},
    ),
    (["--files-from=list", "--delete"], dict(files_from=b"list", delete=True)),
    (
        ["-a", "--files-from=list", "--delete-excluded"],
        {
            **ARCHIVE,
            "recursive": False,
            "files_from": b"list",
            "delete": True,
            "delete_excluded": True,
        },
    ),
    (["-0"], dict(from0=True)),
    (["--from0"], dict(from0=True)),
    (["--from0", "--no-from0"], {}),
    (["-a0"], {**ARCHIVE, "from0": True}),
    (["--stats"], dict(stats=True)),
    (["--json"], dict(json=True)),
    (["-j", "4"], dict(jobs=4)),
    (["-j4"], dict(jobs=4)),
    (["--jobs=2"], dict(jobs=2)),
    (["--jobs", "2"], dict(jobs=2)),
    (["--exclude=*.o"], dict(filters=(("--exclude", b"*.o"),))),
    (["--exclude", "*.o"], dict(filters=(("--exclude", b"*.o"),))),
    (["--include=x"], dict(filters=(("--include", b"x"),))),
    (["--exclude-from=f"], dict(filters=(("--exclude-from", b"f"),))),
    (["--include-from", "f"], dict(filters=(("--include-from", b"f"),))),
    (["--filter=- x"], dict(filters=(("--filter", b"- x"),))),
    (["-f", "- x"], dict(filters=(("--filter", b"- x"),))),
    (["-f- x"], dict(filters=(("--filter", b"- x"),))),
    # bundles, a valued short option last taking the next argument
    (["-aHAXv"], {**ARCHIVE, "hard_links": True, "acls": True, "xattrs": True, "verbose": 1}),
    (["-ani"], {**ARCHIVE, "dry_run": True, "itemize": 1}),
    (["-vj", "3"], dict(verbose=1, jobs=3)),
    (["-rf", "+ y"], dict(recursive=True, filters=(("--filter", b"+ y"),))),
    # negations: later wins
    (["-a", "--no-o"], {**ARCHIVE, "owner": False}),
    (["-a", "--no-owner"], {**ARCHIVE, "owner": False}),
    (["-a", "--no-D"], {**ARCHIVE, "devices": False, "specials": False}),
    (["-a", "--no-devices"], {**ARCHIVE, "devices": False}),
    (["-a", "--no-r"], {**ARCHIVE, "recursive": False}),
    (["--no-r", "-a"], ARCHIVE),
    (
        ["-a", "--no-perms", "--no-t", "--no-g", "--no-l"],
        {
            **ARCHIVE,
            "perms": False,
            "times": False,
            "group": False,
            "links": False,
        },
    ),
    (["-HAX", "--no-H", "--no-xattrs"], dict(acls=True, perms=True)),
    (["-x", "--no-one-file-system"], {}),
    (["-vv", "--no-v"], {}),
    (["-ii", "--no-itemize-changes"], {}),
    (["-c", "--no-checksum"], {}),
    (["--inplace", "--no-inplace"], {}),
    # rsync keeps these and applies its own order (-c over --size-only over -I)
    (["-c", "--size-only", "-I"], dict(checksum=True, size_only=True, ignore_times=True)),
    (["--existing", "--ignore-existing"], dict(existing=True, ignore_existing=True)),
]


@pytest.mark.parametrize(("opts", "want"), ACCEPTED, ids=[" ".join(o) for o, _ in ACCEPTED])
def test_accepted(opts: list[str], want: dict[str, Any]) -> None:
    a = parse([*opts, *OPS])
    assert a.srcs == (Operand(b"s/", True),)
    assert a.dst == b"d"
    fields(a, **want)


@need_rsync
@pytest.mark.parametrize(("opts", "want"), ACCEPTED, ids=[" ".join(o) for o, _ in ACCEPTED])
def test_rsync_accepts_them_too(tmp_path: Path, opts: list[str], want: dict[str, Any]) -> None:
    if any(o in ("--json", "--jobs", "-vj") or o.startswith(("-j", "--jobs=")) for o in opts):
        pytest.skip("--json and -j/--jobs are ours, not rsync's")
    (tmp_path / "list").write_bytes(b"f\n")
    if any("from" in o for o in opts):
        (tmp_path / "f").write_bytes(b"")
    assert rsync_rc(tmp_path, *opts, *OPS) == 0


def test_is_frozen() -> None:
    a = parse(OPS)
    with pytest.raises(AttributeError):
        a.dry_run = True  # type: ignore[misc]


def test_filter_order_kept() -> None:
    a = parse(
        [
            *("--exclude=a", "-f", "+ b", "--include-from", "c", "--include=d", "-r"),
            *("--exclude-from=e", "--filter=- f", *OPS),
        ]
    )
    assert a.filters == (
        ("--exclude", b"a"),
        ("--filter", b"+ b"),
        ("--include-from", b"c"),
        ("--include", b"d"),
        ("--exclude-from", b"e"),
        ("--filter", b"- f"),
    )


# -- operands --------------------------------------------------------------------------


def test_trailing_slash_means_contents() -> None:
    a = parse(["-r", "a/", "b", "c//", "/", "dst/"])
    assert a.srcs == (
        Operand(b"a/", True),
        Operand(b"b", False),
        Operand(b"c//", True),
        Operand(b"/", True),
    )
    assert a.dst == b"dst/"


def test_names_are_bytes() -> None:
    odd = b"caf\xe9"  # not UTF-8: reaches us from sys.argv as a surrogate escape
    a = parse([os.fsdecode(odd) + "/", os.fsdecode(odd + b".bak")])
    assert a.srcs == (Operand(odd + b"/", True),)
    assert a.dst == odd + b".bak"
    a = parse([b"--exclude=" + odd, odd, b"d"])
    assert a.filters == (("--exclude", odd),)


def test_double_dash_ends_options() -> None:
    a = parse(["-r", "--", "-a", "--delete", "d"])
    assert a.srcs == (Operand(b"-a", False), Operand(b"--delete", False))
    fields(a, recursive=True)


def test_dash_alone_is_an_operand() -> None:
    assert parse(["-", "d"]).srcs == (Operand(b"-", False),)


@pytest.mark.parametrize(
    "path",
    ["host:x", "host:", "user@host:dir/", "host::module", "rsync://host/m", "RSYNC://h/m"],
)
@pytest.mark.parametrize("where", ["src", "dst"])
def test_remote_paths_refused(path: str, where: str) -> None:
    argv = [path, "d"] if where == "src" else ["s", path]
    with pytest.raises(SyncArgsError, match=r"remote path .* is not supported"):
        parse(argv)


@pytest.mark.parametrize("path", ["./host:x", "/abs/a:b", "dir/x:y"])
def test_colon_after_a_slash_is_local(path: str) -> None:
    assert parse([path, "d"]).srcs == (Operand(path.encode(), False),)


@pytest.mark.parametrize(
    ("argv", "msg"),
    [([], "missing SRC and DST"), (["-a"], "missing SRC and DST"), (["s/"], "missing DST")],
)
def test_operand_count(argv: list[str], msg: str) -> None:
    """rsync lists SRC when given one operand; we refuse (no listing mode)."""
    with pytest.raises(SyncArgsError, match=msg):
        parse(argv)


# -- refused options -------------------------------------------------------------------

NOT_SUPPORTED = [
    "--compress",
    "-z",
    "--partial",
    "-P",
    "--dirs",
    "-d",
    "--del",
    "--delete-before",
    "--mkpath",
    "--bwlimit=100",
    "--rsh=ssh",
    "-e",
    "--no-compress",
    "--relative",
    "-R",
    "-h",
    "--help",
    "--version",
    "-V",
    "--sparse",
    "-S",
    "--link-dest=x",
]
DELTA_FORMS = [
    (["--delta"], True, 65536),
    (["--no-whole-file"], True, 65536),
    (["--no-W"], True, 65536),
    (["--delta", "-W"], False, 65536),
    (["--no-whole-file", "--whole-file"], False, 65536),
    (["--delta", "-B", "128K"], True, 131072),
    (["--delta", "--block-size=8192"], True, 8192),
]


@pytest.mark.parametrize(("opts", "delta", "block"), DELTA_FORMS)
def test_delta_options(opts: list[str], delta: bool, block: int) -> None:
    """rsync's --no-whole-file (and ours, --delta) turn delta transfer on,
    -W/--whole-file off; -B takes rsync's K/M suffixes."""
    a = parse([*opts, "src/", "dst"])
    assert (a.delta, a.block_size) == (delta, block)


@pytest.mark.parametrize("bad", ["-B3000", "--block-size=2M", "--block-size=x", "--watch-delay=-1"])
def test_delta_watch_values_refused(bad: str) -> None:
    with pytest.raises(SyncArgsError):
        parse([bad, "src/", "dst"])


UNKNOWN = [
    "--frobnicate",
    "-Q",
    "--dele",  # no abbreviations: rsync says unknown too
    "--exc=x",
    "--no-delete",  # not negatable in rsync
    "--no-exclude",
    "--no-frob",
    "--no-dry-run",
    "--no-archive",
]


@pytest.mark.parametrize("opt", NOT_SUPPORTED)
def test_known_rsync_option_not_supported(opt: str) -> None:
    shown = opt.split("=")[0]
    with pytest.raises(SyncArgsError, match=f"rsync option '{shown}' is not supported"):
        parse(["-r", opt, *OPS])


@pytest.mark.parametrize("opt", NOT_SUPPORTED)
def test_in_a_bundle_too(opt: str) -> None:
    if opt.startswith("--"):
        return
    with pytest.raises(SyncArgsError, match=f"rsync option '{opt}' is not supported"):
        parse([f"-av{opt[1:]}", *OPS])


@pytest.mark.parametrize("opt", UNKNOWN)
def test_unknown_option(opt: str) -> None:
    with pytest.raises(SyncArgsError, match="unknown option"):
        parse(["-r", opt, *OPS])


@need_rsync
@pytest.mark.parametrize("opt", UNKNOWN)
def test_rsync_does_not_know_them_either(tmp_path: Path, opt: str) -> None:
    assert rsync_rc(tmp_path, "-r", opt, *OPS) == 1


@need_rsync
def test_unsupported_list_is_rsyncs(tmp_path: Path) -> None:
    """Every name in the table is a long option of the installed rsync (or an old alias)."""
    out = subprocess.run(["rsync", "--help"], capture_output=True, text=True, check=False).stdout
    missing = {n for n in RSYNC_UNSUPPORTED_LONG if f"--{n}" not in out}
    assert missing <= {"protect-args", "daemon"}  # pre-3.2.4 name; in `--daemon --help`


# -- errors that rsync also raises -----------------------------------------------------

RSYNC_ERRORS: list[tuple[list[str], str]] = [
    (["--delete"], "--delete does not work without --recursive"),
    (["--delete-after"], "--delete does not work without --recursive"),
    (["--delete-excluded"], "--delete does not work without --recursive"),
    (["-a", "--no-r", "--delete"], "--delete does not work without --recursive"),
    (["--files-from=list", "s/"], "--files-from takes exactly one SRC"),
    (["-r", "--max-delete=x"], "invalid numeric value"),
    (["-r", "--max-delete=1.5"], "invalid numeric value"),
    (["-r", "--max-delete"], "missing argument|invalid numeric value"),
    (["--perms=1"], "does not take an argument"),
    (["--no-perms=1"], "does not take an argument"),
]


@pytest.mark.parametrize(("opts", "msg"), RSYNC_ERRORS, ids=[" ".join(o) for o, _ in RSYNC_ERRORS])
def test_errors_as_rsync(tmp_path: Path, opts: list[str], msg: str) -> None:
    with pytest.raises(SyncArgsError, match=msg):
        parse([*opts, *OPS])
    if shutil.which("rsync"):
        assert rsync_rc(tmp_path, *opts, *OPS) == 1


@pytest.mark.parametrize(
    ("opts", "msg"),
    [
        (["--max-delete=-1"], "at least 0"),  # rsync takes it as 0: we say so
        (["-j-1"], "at least 0"),  # -j0: no worker processes, as cp -j 0
        (["--jobs=x"], "invalid numeric value"),
        (["-j"], "missing argument"),
        (["--json=1"], "does not take an argument"),
    ],
)
def test_our_own_errors(opts: list[str], msg: str) -> None:
    with pytest.raises(SyncArgsError, match=msg):
        parse(["-r", *OPS[:1], *opts] if opts == ["-j"] else ["-r", *opts, *OPS])


# -- bundles ---------------------------------------------------------------------------

FLAG_LETTERS = "arlptgoDHAXxvnicIu"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(FLAG_LETTERS), min_size=1, max_size=12))
def test_bundle_same_as_separate(letters: list[str]) -> None:
    if "r" not in letters and "a" not in letters:
        letters = [*letters, "r"]
    bundled = parse(["-" + "".join(letters), "--delete", *OPS])
    separate = parse([*("-" + c for c in letters), "--delete", *OPS])
    assert bundled == separate


# -- check_operands --------------------------------------------------------------------


def test_check_operands(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "f").write_bytes(b"")
    (tmp_path / "link").symlink_to("s")
    t = str(tmp_path)
    check_operands(parse([f"{t}/s/", f"{t}/new"]))  # DST made, its parent is there
    check_operands(parse([f"{t}/s", f"{t}/f", f"{t}/s"]))  # several into a directory
    check_operands(parse([f"{t}/link/", f"{t}/new"]))
    with pytest.raises(SyncArgsError, match=r"link_stat .* failed: No such file"):
        check_operands(parse([f"{t}/nope", f"{t}/new"]))
    with pytest.raises(SyncArgsError, match=r"mkdir .* failed: No such file"):
        check_operands(parse([f"{t}/s/", f"{t}/no/new"]))
    with pytest.raises(SyncArgsError, match=r"mkdir .* failed: Not a directory"):
        check_operands(parse([f"{t}/s/", f"{t}/f/new"]))
    with pytest.raises(SyncArgsError, match="destination must be a directory"):
        check_operands(parse([f"{t}/s", f"{t}/s", f"{t}/f"]))
    # --files-from: SRC is the directory the list is relative to (rsync changes
    # into it: exit 3), DST a directory
    check_operands(parse(["--files-from=x", f"{t}/link", f"{t}/new"]))
    for argv, msg in (
        ([f"{t}/f", f"{t}/new"], "change_dir .* failed: Not a directory"),
        ([f"{t}/nope", f"{t}/new"], "change_dir .* failed: No such file"),
        ([f"{t}/s/", f"{t}/f"], "destination must be a directory"),
    ):
        with pytest.raises(SyncArgsError, match=msg) as e:
            check_operands(parse(["--files-from=x", *argv]))
        assert e.value.code == 3


@need_rsync
def test_rsync_refuses_the_same_on_disk(tmp_path: Path) -> None:
    """Without -n: rsync fails on these too (exit 23, 11, 3)."""
    (tmp_path / "s").mkdir()
    (tmp_path / "f").write_bytes(b"")
    t = str(tmp_path)
    for argv in (
        [f"{t}/nope", f"{t}/new"],
        [f"{t}/s/", f"{t}/no/new"],
        [f"{t}/s", f"{t}/s", f"{t}/f"],
    ):
        r = subprocess.run(["rsync", "-r", *argv], capture_output=True, timeout=30, check=False)
        assert r.returncode != 0, argv


def test_no_workers() -> None:
    """-j 0: the sync runs in the calling process, as cp -j 0 does."""
    assert parse(["-a", "-j0", *OPS]).jobs == 0
