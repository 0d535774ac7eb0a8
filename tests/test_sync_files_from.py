"""`uringsync sync --files-from=LIST` against rsync, the oracle: the same list,
options and destination copies must give the same exit code, the same set of
-i lines and equal trees (tests/test_sync.py's compare_runs).  What the lists
exercise (rsync 3's send_file_list): listed files and the directories above
them (implied, with their source attributes), a listed directory with and
without -r (-a does not imply -r here), ``dir/`` and ``.`` (their entries
too), a leading ``./`` (SRC itself), a path missing in SRC (rsync's error
line, exit 23, the rest synced), comments, blank lines, CR LF, leading ``/``
and ``..``, --from0, standard input, the user's filters, and deletion only
inside the directories whose contents are sent (--delete, --delete-excluded)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.base import root_only
from tests.support.synctrees import (
    RSYNC,
    SEC,
    T0,
    Tree,
    build,
    d,
    f,
    ln,
    rsync,
    rsync_check,
    set_diff,
)
from tests.test_sync import compare_runs, outside_dir, scratch, sync
from uringsync.filters import FilesFrom, FilterError, Listed, Rules, clean_listed

pytestmark = [pytest.mark.skipif(RSYNC is None, reason="rsync is the oracle"), root_only]


def _src() -> Tree:
    return {
        b"a": d(mode=0o750, mtime_ns=T0 - 7 * SEC),
        b"a/b": d(mode=0o700),
        b"a/b/f": f(b"listed"),
        b"a/x": f(b"not listed"),
        b"c": d(),
        b"c/y": f(b"y"),
        b"c/y.o": f(b"object"),
        b"c/e": d(mode=0o711),
        b"c/e/z": f(b"z"),
        b"c/e/deep": d(),
        b"c/e/deep/w": f(b"w"),
        b"g": d(),
        b"g/h": f(b"h"),
        b"sp ace": f(b"a space"),
        b"top": f(b"top"),
        b"lnk": ln(b"top"),
    }


def _dst() -> Tree:
    return {
        b"a": d(mtime_ns=T0 + 3 * SEC),
        b"a/extra": f(b"only here"),
        b"a/b": d(),
        b"a/b/old": f(b"old"),
        b"c": d(),
        b"c/old": f(b"old"),
        b"c/y.o": f(b"old object"),
        b"c/e": d(),
        b"c/e/old2": f(b"old"),
        b"c/olddir": d(),
        b"c/olddir/q": f(b"q"),
        b"c/olddir/q.o": f(b"q"),
        b"missing": f(b"listed, not in src"),
        b"topextra": f(b"extra"),
    }


BASIC = b"a/b/f\n# a comment\n\n; another\nc\nmissing\n/top\nsp ace\r\nlnk\n"
CASES: list[tuple[str, bytes, list[bytes]]] = [
    ("files, implied dirs, dir without -r, missing, comments", BASIC, []),
    ("the same with -r", BASIC, [b"-r"]),
    ("--delete without -r: nothing is deleted", BASIC, [b"--delete"]),
    ("--delete with -r: inside the listed directory only", BASIC, [b"-r", b"--delete"]),
    (
        "--delete-excluded: still only inside the listed directory",
        BASIC,
        [b"-r", b"--delete-excluded", b"--exclude=*.o", b"--exclude=y"],
    ),
    ("dir/ sends its entries (not deeper), and deletes there", b"c/\n", [b"--delete"]),
    ("dir/ with -r", b"c/\n", [b"-r", b"--delete"]),
    (". sends SRC itself and its entries", b".\n", [b"--delete"]),
    (". with -r is a whole sync", b".\n", [b"-r", b"--delete"]),
    ("./ prefix: SRC as an implied dir", b"./a/x\nc/e/z\n", [b"--delete"]),
    ("leading slashes and .. resolved", b"//a/../../c/e/..\n../top\n", [b"--delete"]),
    ("a file named with a slash after it", b"top/\n", []),
    ("a listed path the user's rules exclude", b"c\ntop\n", [b"-r", b"--exclude=top"]),
    (
        "an implied dir is not excluded, the walk below a listed one is",
        b"a/b/f\nc\nc/e/z\n",
        [b"-r", b"--exclude=a", b"--exclude=b", b"--exclude=e", b"--delete"],
    ),
    ("listed twice, as dir and dir/", b"c\nc/\nc/e\n", [b"--delete"]),
    ("only missing paths", b"nothing\nnot/here\n", [b"--delete"]),
    ("a path below a file", b"top/x\na/b/f\n", [b"--delete", b"-r"]),
    ("-n", BASIC, [b"-r", b"--delete", b"-n"]),
]


@pytest.mark.parametrize(("what", "listing", "opts"), CASES, ids=[c[0] for c in CASES])
def test_same_as_rsync(tmp: bytes, what: str, listing: bytes, opts: list[bytes]) -> None:
    with scratch(tmp, "ff") as w:
        outside_dir(w)
        lst = w + b"/list"
        with open(lst, "wb") as fh:
            fh.write(listing)
        compare_runs(w, _src(), _dst(), [b"-aHAX", b"-i", *opts, b"--files-from=" + lst], what)


def test_from0(tmp: bytes) -> None:
    with scratch(tmp, "ff0") as w:
        outside_dir(w)
        lst = w + b"/list"
        with open(lst, "wb") as fh:
            fh.write(b"a/b/f\0#c\0c/e\0sp ace\0\0")
        compare_runs(w, _src(), _dst(), [b"-ai", b"-0", b"--delete", b"--files-from=" + lst])
    with scratch(tmp, "ff0-excl") as w:
        outside_dir(w)
        lst = w + b"/list"
        with open(lst, "wb") as fh:
            fh.write(b"a/b/f\0c\0")
        excl = w + b"/excl"
        with open(excl, "wb") as fh:
            fh.write(b"*.o\0y\0")
        compare_runs(
            w,
            _src(),
            _dst(),
            [b"-ai", b"--from0", b"-r", b"--exclude-from=" + excl, b"--files-from=" + lst],
        )


def _run(argv: list[bytes], stdin: bytes) -> tuple[int, bytes, bytes]:
    p = subprocess.run(argv, input=stdin, capture_output=True, timeout=120, check=False)
    return p.returncode, p.stdout, p.stderr


def test_stdin_list_stats_and_error_line(tmp: bytes) -> None:
    """``--files-from=-``: the list on standard input; the --stats counts and
    the missing path's error line are rsync's."""
    listing = b"a/b/f\nc\nmissing\n"
    src = build(tmp + b"/src", _src())
    a = build(tmp + b"/dstA", _dst())
    bb = build(tmp + b"/dstB", _dst())
    opts = [b"-ai", b"--stats", b"--files-from=-"]
    rc_us, out_us, err_us = _run(
        [os.fsencode(sys.executable), b"-m", b"uringsync", b"sync", *opts, src + b"/", a], listing
    )
    rc_rs, out_rs, err_rs = _run([os.fsencode(RSYNC or "rsync"), *opts, src + b"/", bb], listing)
    assert rc_us == rc_rs == 23, (err_us, err_rs)
    need = b'link_stat "' + src + b'/missing" failed: No such file or directory (2)'
    assert need in err_us and need in err_rs

    def items(out: bytes) -> set[bytes]:
        return {ln for ln in out.splitlines() if ln[:1] in b".>ch*" and ln[11:12] == b" "}

    assert items(out_us) == items(out_rs), set_diff("-i lines", items(out_us), items(out_rs))

    def counts(out: bytes) -> dict[bytes, bytes]:
        keys = (b"Number of files", b"Number of created files", b"Number of deleted files")
        got = {}
        for line in out.splitlines():
            k, _, v = line.partition(b": ")
            if k in keys or k == b"Number of regular files transferred":
                got[k] = v.split(b" (")[0]
        return got

    assert counts(out_us) == counts(out_rs)
    assert rsync_check(src, a) == rsync_check(src, bb)


def test_empty_list_makes_no_dst(tmp: bytes) -> None:
    """rsync sends an empty file list and makes no DST."""
    src = build(tmp + b"/src", _src())
    lst = tmp + b"/list"
    with open(lst, "wb") as fh:
        fh.write(b"# nothing\n\n")
    rc, out, err = sync(b"-ai", b"--files-from=" + lst, src + b"/", tmp + b"/new")
    rc_rs, out_rs, _ = rsync(b"-ai", b"--files-from=" + lst, src + b"/", tmp + b"/newB")
    assert rc == rc_rs == 0, err
    assert out == out_rs == b""
    assert not os.path.exists(tmp + b"/new") and not os.path.exists(tmp + b"/newB")


def test_refusals(tmp: bytes) -> None:
    """What rsync does and we refuse: a '/./' (a per-line base directory)."""
    src = build(tmp + b"/src", _src())
    lst = tmp + b"/list"
    with open(lst, "wb") as fh:
        fh.write(b"a/./b/f\n")
    rc, _, err = sync(b"-a", b"--files-from=" + lst, src + b"/", tmp + b"/d")
    assert rc != 0 and b"'/./'" in err
    assert not os.path.exists(tmp + b"/d")
    rc, _, err = sync(b"-a", b"--files-from=" + tmp + b"/nope", src + b"/", tmp + b"/d")
    assert rc != 0 and b"failed to open files-from file" in err


# ---------------------------------------------------------------- the rule set


@pytest.mark.parametrize(
    ("line", "want"),
    [
        (b"a/b/f", Listed(b"a/b/f", False, False)),
        (b"/top", Listed(b"top", False, False)),
        (b"a/../../x/../top", Listed(b"top", False, False)),
        (b"../foo", Listed(b"foo", False, False)),
        (b"./a/x", Listed(b"a/x", False, True)),
        (b"//c///e//", Listed(b"c/e", True, False)),
        (b".", Listed(b"", True, False)),
        (b"./", Listed(b"", True, False)),
        (b"..", Listed(b"", True, False)),
        (b"a/.", Listed(b"a", True, False)),
        (b"a/b/..", Listed(b"a", True, False)),
        (b"sp ace ", Listed(b"sp ace ", False, False)),
    ],
)
def test_clean_listed(line: bytes, want: Listed) -> None:
    assert clean_listed(line) == want


def test_clean_listed_refuses_a_base_change() -> None:
    with pytest.raises(FilterError, match=r"/\./"):
        clean_listed(b"a/./b")


def test_files_from_rules() -> None:
    user = Rules([("exclude", "*.o"), ("exclude", "skip/")])
    r = FilesFrom({b"a/b/f": False, b"c": True}, recursive=True, user=user)
    assert not r.excluded(b"a", True) and not r.excluded(b"a/b", True)
    assert not r.excluded(b"a/b/f", False)
    assert r.excluded(b"a/x", False) and r.excluded(b"zz", False)
    assert not r.excluded(b"c/y", False) and r.excluded(b"c/y.o", False)
    assert not r.excluded(b"c/e/deep/w", False)
    assert r.excluded(b"c/skip", True) and r.excluded(b"c/skip/in", False)
    # deletion: only where contents are sent
    assert r.protected(b"a/extra", False, True)
    assert r.protected(b"c/y.o", False, False) and not r.protected(b"c/y.o", False, True)
    assert not r.protected(b"c/old", False, False)
    assert r.protected_below(b"c/old/q.o", False, False)
    assert not r.protected_below(b"c/old/q", False, False)
    flat = FilesFrom({b"c": True, b"d": False}, recursive=False)
    assert not flat.excluded(b"c/y", False) and flat.excluded(b"c/e/z", False)
    assert flat.excluded(b"d/x", False) and flat.protected(b"d/x", False, True)
