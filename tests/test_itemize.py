"""uringsync.itemize against rsync itself: for each kind of difference between a
source and a destination tree, the Change stated here must give exactly the line
``rsync -aHAX --delete -ni`` prints for that entry (and with ``-c``, ``-ii``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

import pytest

from uringsync.itemize import Change, itemize, line, unchanged_line

RSYNC = shutil.which("rsync")
pytestmark = pytest.mark.skipif(RSYNC is None, reason="rsync is the oracle")
ROOT = os.geteuid() == 0
T0 = 1_600_000_000_000_000_000  # a fixed mtime, ns


def _rsync(src: bytes, dst: bytes, *flags: str, fmt: bool = True) -> list[bytes]:
    assert RSYNC is not None
    out_format = ["--out-format=%i %n%L"] if fmt else []
    argv = [RSYNC, "-aHAX", "--delete", "-n", *flags, *out_format]
    done = subprocess.run([*argv, src + b"/", dst + b"/"], capture_output=True, check=True)
    return done.stdout.splitlines()


def _write(path: bytes, data: bytes, mtime: int = T0) -> None:
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, ns=(mtime, mtime))


def _same_time(src: bytes, dst: bytes) -> None:
    st = os.lstat(src)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _has_user_xattrs(d: bytes) -> bool:
    probe = d + b"/.xattr-probe"
    _write(probe, b"")
    try:
        os.setxattr(probe, b"user.probe", b"1")
    except OSError:
        return False
    finally:
        os.unlink(probe)
    return True


Case = tuple[Callable[[bytes, bytes], None], list[Change], list[Change]]


def _cases(s: bytes, d: bytes) -> list[Case]:
    """(make it in s and d, what rsync -ni reports, what rsync -nic reports)."""
    cases: list[Case] = []

    def case(
        make: Callable[[bytes, bytes], None], plain: list[Change], c: list[Change] | None = None
    ) -> None:
        cases.append((make, plain, plain if c is None else c))

    def files(
        name: bytes, sdata: bytes, ddata: bytes, dtime: int = T0
    ) -> Callable[[bytes, bytes], None]:
        def make(s: bytes, d: bytes) -> None:
            _write(s + b"/" + name, sdata)
            _write(d + b"/" + name, ddata, dtime)

        return make

    case(lambda s, d: _write(s + b"/new file", b"new"), [Change("create", "f", b"new file")])
    # same size, same mtime: the quick check sees nothing; -c does
    case(files(b"same", b"aaaa", b"bbbb"), [], [Change("update", "f", b"same", checksum=True)])
    case(
        files(b"size", b"1", b"22"),
        [Change("update", "f", b"size", size=True)],
        [Change("update", "f", b"size", checksum=True, size=True)],
    )
    # mtime only: -a transfers the file (>f..t), -c only sets the time (.f..t)
    case(
        files(b"mtime", b"m", b"m", T0 + 10**9),
        [Change("update", "f", b"mtime", time=True)],
        [Change("meta", "f", b"mtime", time=True)],
    )

    def perms(s: bytes, d: bytes) -> None:
        files(b"perm", b"p", b"p")(s, d)
        os.chmod(d + b"/perm", 0o600)

    case(perms, [Change("meta", "f", b"perm", perms=True)])

    if ROOT:

        def owner(s: bytes, d: bytes) -> None:
            files(b"own", b"o", b"o")(s, d)
            os.chown(d + b"/own", 1234, -1)

        def group(s: bytes, d: bytes) -> None:
            files(b"grp", b"g", b"g")(s, d)
            os.chown(d + b"/grp", -1, 1234)

        def both(s: bytes, d: bytes) -> None:
            files(b"og", b"g", b"g")(s, d)
            os.chown(d + b"/og", 1234, 1234)

        case(owner, [Change("meta", "f", b"own", owner=True)])
        case(group, [Change("meta", "f", b"grp", group=True)])
        case(both, [Change("meta", "f", b"og", owner=True, group=True)])

    if _has_user_xattrs(s):

        def xattr(s: bytes, d: bytes) -> None:
            files(b"xa", b"x", b"x")(s, d)
            os.setxattr(s + b"/xa", b"user.k", b"v")

        case(xattr, [Change("meta", "f", b"xa", xattr=True)])

    if shutil.which("setfacl"):

        def acl(s: bytes, d: bytes) -> None:
            files(b"acl", b"a", b"a")(s, d)
            subprocess.run(["setfacl", "-m", "u:1234:r", s + b"/acl"], check=True)

        case(acl, [Change("meta", "f", b"acl", acl=True)])

    def symlinks(s: bytes, d: bytes) -> None:
        os.symlink(b"tgt", s + b"/newlink")
        os.symlink(b"one", s + b"/chlink")
        os.symlink(b"two", d + b"/chlink")
        os.symlink(b"a", s + b"/lt")
        os.symlink(b"a", d + b"/lt")
        for name in (b"/chlink", b"/lt"):
            os.utime(s + name, ns=(T0, T0), follow_symlinks=False)
            os.utime(d + name, ns=(T0, T0 + (name == b"/lt") * 10**9), follow_symlinks=False)
        os.symlink(b"b", s + b"/lct")  # target and time both differ
        os.symlink(b"c", d + b"/lct")
        os.utime(d + b"/lct", ns=(T0, T0), follow_symlinks=False)

    case(
        symlinks,
        [
            Change("create", "L", b"newlink", target=b"tgt"),
            Change("update", "L", b"chlink", target=b"one"),
            Change("meta", "L", b"lt", target=b"a", time=True),
            Change("update", "L", b"lct", target=b"b", time=True),
        ],
    )

    def dirs(s: bytes, d: bytes) -> None:
        os.mkdir(s + b"/newdir")
        _write(s + b"/newdir/in it", b"x")
        for name in (b"/tdir", b"/dperm"):
            os.mkdir(s + name)
            os.mkdir(d + name)
        os.chmod(d + b"/dperm", 0o700)
        os.utime(d + b"/tdir", ns=(T0, T0 + 10**9))  # the rest get their times last

    case(
        dirs,
        [
            Change("create", "d", b"newdir/"),
            Change("create", "f", b"newdir/in it"),
            Change("meta", "d", b"tdir/", time=True),
            Change("meta", "d", b"dperm/", perms=True),
        ],
    )

    def specials(s: bytes, d: bytes) -> None:
        os.mkfifo(s + b"/fifo")
        os.mkfifo(s + b"/fperm")
        os.mkfifo(d + b"/fperm", 0o600)
        os.utime(d + b"/fperm", ns=(T0, T0))
        os.utime(s + b"/fperm", ns=(T0, T0))
        if ROOT:
            os.mknod(s + b"/dev", 0o644 | 0o020000, os.makedev(1, 3))
            os.mknod(s + b"/dv", 0o644 | 0o020000, os.makedev(1, 3))
            os.mknod(d + b"/dv", 0o644 | 0o020000, os.makedev(1, 5))
            for p in (s + b"/dv", d + b"/dv"):
                os.utime(p, ns=(T0, T0))

    special_changes = [Change("create", "S", b"fifo"), Change("meta", "S", b"fperm", perms=True)]
    if ROOT:
        special_changes += [Change("create", "D", b"dev"), Change("update", "D", b"dv")]
    case(specials, special_changes)

    def hardlinks(s: bytes, d: bytes) -> None:
        _write(s + b"/h1", b"h")
        os.link(s + b"/h1", s + b"/h2")
        _write(s + b"/hA", b"H")
        os.link(s + b"/hA", s + b"/hB")
        _write(d + b"/hA", b"H")  # both names there, not linked
        _write(d + b"/hB", b"H")

    case(
        hardlinks,
        [
            Change("create", "f", b"h2"),
            Change("hardlink", "f", b"h1", target=b"h2"),
            Change("hardlink", "f", b"hB", target=b"hA", existed=True),
        ],
    )

    def deletions(s: bytes, d: bytes) -> None:
        _write(d + b"/gone", b"")
        os.mkdir(d + b"/gonedir")
        _write(d + b"/gonedir/z", b"")

    case(
        deletions,
        [
            Change("delete", "f", b"gone"),
            Change("delete", "d", b"gonedir/"),
            Change("delete", "f", b"gonedir/z"),
        ],
    )

    def type_changes(s: bytes, d: bytes) -> None:
        _write(s + b"/typ", b"t")  # a file where a directory was
        os.mkdir(d + b"/typ")
        _write(d + b"/typ/q", b"")
        os.symlink(b"y", s + b"/l2f")  # a symlink where a file was
        _write(d + b"/l2f", b"y")
        os.mkdir(s + b"/l2d")  # a directory where a symlink was
        os.symlink(b"w", d + b"/l2d")

    case(
        type_changes,
        [
            # the replaced entry gets no *deleting line, only a directory's contents
            Change("delete", "f", b"typ/q"),
            Change("create", "f", b"typ"),
            Change("create", "L", b"l2f", target=b"y"),
            Change("create", "d", b"l2d/"),
        ],
    )
    return cases


def _build(tmp: bytes) -> tuple[bytes, bytes, list[Case]]:
    s, d = tmp + b"/src", tmp + b"/dst"
    os.mkdir(s)
    os.mkdir(d)
    cases = _cases(s, d)
    for make, _, _ in cases:
        make(s, d)
    # directories last: making entries changed their mtimes
    for name in (b"", b"/tdir", b"/dperm", b"/newdir"):
        os.utime(s + name, ns=(T0, T0))
        if name not in (b"/tdir", b"/newdir"):
            os.utime(d + name, ns=(T0, T0))
    return s, d, cases


def test_lines_match_rsync(tmp: bytes) -> None:
    s, d, cases = _build(tmp)
    expected = sorted(line(c) for _, plain, _ in cases for c in plain)
    assert sorted(_rsync(s, d)) == expected


def test_lines_match_rsync_checksum(tmp: bytes) -> None:
    s, d, cases = _build(tmp)
    expected = sorted(line(c) for _, _, with_c in cases for c in with_c)
    assert sorted(_rsync(s, d, "-c")) == expected


def test_plain_i_is_the_same_format(tmp: bytes) -> None:
    """-i alone prints %i %n%L: the -> and => parts included, without -v."""
    s, d, _ = _build(tmp)
    assert _rsync(s, d, "-i", fmt=False) == _rsync(s, d)


def test_unchanged_entries_with_ii(tmp: bytes) -> None:
    s, d = tmp + b"/src", tmp + b"/dst"
    os.mkdir(s)
    _write(s + b"/f", b"f")
    os.symlink(b"f", s + b"/l")
    os.mkdir(s + b"/sub")
    os.mkfifo(s + b"/p")
    _write(s + b"/h1", b"h")
    os.link(s + b"/h1", s + b"/h2")
    subprocess.run(["cp", "-a", s, d], check=True)
    got = sorted(_rsync(s, d, "-ii"))
    assert got == sorted(
        [
            unchanged_line("d", b"./"),
            unchanged_line("f", b"f"),
            unchanged_line("L", b"l", b"f"),
            unchanged_line("d", b"sub/"),
            unchanged_line("S", b"p"),
            unchanged_line("f", b"h1"),
            # the second name of a pair already linked: h, and no "=> other"
            line(Change("hardlink", "f", b"h2", existed=True)),
        ]
    )


def test_root_and_transfer_time(tmp: bytes) -> None:
    """Without --times a differing mtime shows as T; the root is ./ ."""
    s, d = tmp + b"/src", tmp + b"/dst"
    os.mkdir(s)
    os.mkdir(d)
    _write(s + b"/f", b"a")
    _write(d + b"/f", b"a", T0 + 10**9)
    os.symlink(b"a", s + b"/l")
    os.symlink(b"b", d + b"/l")
    for p in (s + b"/l", d + b"/l"):
        os.utime(p, ns=(T0, T0), follow_symlinks=False)
    os.utime(d, ns=(T0, T0))
    assert RSYNC is not None
    argv = [RSYNC, "-rlpgoD", "-n", "--out-format=%i %n%L", s + b"/", d + b"/"]
    got = subprocess.run(argv, capture_output=True, check=True).stdout.splitlines()
    assert sorted(got) == sorted(
        [
            line(Change("update", "f", b"f", transfer_time=True)),
            line(Change("update", "L", b"l", target=b"a", transfer_time=True)),
        ]
    )
    assert sorted(_rsync(s, d)) == sorted(
        [
            line(Change("meta", "d", b"./", time=True)),
            line(Change("update", "f", b"f", time=True)),
            line(Change("update", "L", b"l", target=b"a")),
        ]
    )


def test_letters_without_rsync() -> None:
    assert line(Change("delete", "f", b"a b")) == b"*deleting   a b"
    assert itemize(Change("meta", "f", b"x", atime=True)) == b".f......u.."
    assert itemize(Change("meta", "f", b"x", crtime=True)) == b".f......n.."
    assert itemize(Change("meta", "f", b"x", atime=True, crtime=True)) == b".f......b.."
    assert itemize(Change("meta", "d", b"x/")) == b".d         "
    assert line(Change("update", "f", b"f", checksum=True, size=True)) == b">fcs....... f"
    for bad in (
        lambda: Change("update", "d", b"d/"),
        lambda: Change("create", "d", b"d"),
        lambda: Change("create", "f", b"f/"),
        lambda: Change("unchanged", "f", b"f", size=True),
        lambda: Change("delete", "f", b"f", perms=True),
        lambda: Change("create", "f", b"f", target=b"x"),
    ):
        with pytest.raises(ValueError):
            bad()
