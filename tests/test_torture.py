"""Awkward trees: everything cp -a keeps, at once, in the nastiest shapes.

The torture tree holds hard links across directories, special files, xattrs
and ACLs, sparse files, unreadable/read-only directories with contents, names
of 255 bytes and names that are not UTF-8, times before 1970 and after 2100,
symlink loops and dangling symlinks.  It is copied with `uringsync cp -a` and
with `cp -a`; the copies must match each other and the source by snapshot,
rsync, getfacl/getfattr dumps, hard-link groups and block counts.
"""

from __future__ import annotations

import os
import shutil
import stat
import string
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.base import BLOCK, NEG_MTIME, ROOT, MiB, p, root_only
from tests.support.cli import check_cli, check_cp
from tests.support.compare import (
    assert_same_links,
    assert_same_meta,
    assert_same_tree,
    copy_both,
    data_map,
    link_groups,
    rsync_clean,
    snapshot,
)
from tests.support.system import run_ok
from tests.support.trees import make_socket, make_sparse, rand_bytes, set_tree_times, write_file
from tests.support.users import api_copy, as_user

NEG_SMALL = -1  # 1969-12-31 23:59:59.999999999
Y2100_MTIME = 4_102_444_800 * 10**9 + 1  # 2100-01-01 + 1 ns
Y2400_MTIME = 13_569_465_600 * 10**9 + 999_999_999  # 2400-01-01

NAME255 = b"n" * 250 + b".file"
NAME255_BAD = b"\xff\xfe" + b"\xe9" * 252 + b"\x80"
DIR255 = b"D" * 255
BAD = b"bad\xff\xfe\x80name"

SPARSE = (b"sparse/mid", b"sparse/allhole", b"sparse/endhole", b"sparse/starthole")


def build_torture(src: bytes, privileged: bool) -> tuple[int, int]:
    """Build the torture tree; returns (extra hard-link names, special files).

    privileged: also device nodes, foreign owners, trusted.* xattrs and a
    directory of mode 0000 with contents (root reads it anyway)."""
    os.mkdir(src)
    extra = specials = 0

    # --- directories with hard modes, and contents
    os.makedirs(p(src, b"ro/inner"))
    write_file(p(src, b"ro/inner/f"), rand_bytes(70_000, "ro"), 0o444)
    write_file(p(src, b"ro/g"), b"g\n")
    if privileged:
        os.makedirs(p(src, b"closed/deeper"))
        write_file(p(src, b"closed/deeper/secret"), rand_bytes(5000, "secret"), 0o600)
        write_file(p(src, b"closed/visible"), b"v\n")
        os.mkdir(p(src, b"closed_empty"))
        os.mkdir(p(src, b"x_only"))
        write_file(p(src, b"x_only/known"), b"known\n")
    # (their modes are set at the end, once everything inside is made)

    # --- names: 255 bytes, not UTF-8, a 255-byte dir holding a 255-byte name
    os.mkdir(p(src, b"names"))
    write_file(p(src, b"names", NAME255), b"255\n")
    write_file(p(src, b"names", NAME255_BAD), rand_bytes(4097, "bad255"), 0o600)
    os.mkdir(p(src, b"names", DIR255))
    write_file(p(src, b"names", DIR255, NAME255), b"deep 255\n")
    os.symlink(NAME255_BAD, p(src, b"names", DIR255, b"L" * 255))
    write_file(p(src, b"names", BAD), b"bad\n")
    os.mkdir(p(src, b"names", b"dir\xc3\x28"))
    write_file(p(src, b"names", b"dir\xc3\x28", b"\x01\x7f\n"), b"ctl\n")

    # --- symlinks: loops, dangling, to dirs
    os.mkdir(p(src, b"links"))
    os.symlink(b"b", p(src, b"links/a"))
    os.symlink(b"a", p(src, b"links/b"))
    os.symlink(b"self", p(src, b"links/self"))
    os.symlink(b".", p(src, b"links/dot"))
    os.symlink(b"..", p(src, b"links/up"))
    os.symlink(b"no/such/file", p(src, b"links/dangling"))
    os.symlink(b"/nonexistent\xff", p(src, b"links/abs_dangling"))

    # --- hard links spread across directories (some in the hard-mode dirs)
    os.makedirs(p(src, b"hl/one/two/three"))
    os.mkdir(p(src, b"hl/other"))
    write_file(p(src, b"hl/one/two/three/deep"), rand_bytes(300_000, "hl"), 0o640)
    for n in (b"hl/top", b"hl/other/x", b"names/" + DIR255 + b"/link_of_deep", b"hl/one/y"):
        os.link(p(src, b"hl/one/two/three/deep"), p(src, n))
        extra += 1
    write_file(p(src, b"hl/pair"), b"pair\n", 0o4755)
    os.link(p(src, b"hl/pair"), p(src, b"ro/inner/pair"))  # inside a 0555 dir
    extra += 1
    if privileged:
        os.chown(p(src, b"hl/pair"), 1234, 5678)
        os.chmod(p(src, b"hl/pair"), 0o4755)
        os.link(p(src, b"closed/visible"), p(src, b"hl/visible"))  # from a 0000 dir
        extra += 1

    # --- special files
    os.mkdir(p(src, b"special"))
    os.mkfifo(p(src, b"special/fifo"), 0o640)
    os.chmod(p(src, b"special/fifo"), 0o640)
    make_socket(p(src, b"special/sock"))
    specials += 2
    if privileged:
        os.mknod(p(src, b"special/chr"), 0o604 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(p(src, b"special/blk"), 0o640 | stat.S_IFBLK, os.makedev(7, 200))
        os.chown(p(src, b"special/chr"), 1234, 5678)
        os.chmod(p(src, b"special/chr"), 0o604)
        os.link(p(src, b"special/fifo"), p(src, b"hl/fifo_link"))  # a linked FIFO
        extra += 1
        specials += 2

    # --- sparse files
    os.mkdir(p(src, b"sparse"))
    make_sparse(p(src, b"sparse/mid"), [(0, rand_bytes(MiB, 1)), (51 * MiB, rand_bytes(MiB, 2))],
                52 * MiB)  # fmt: skip
    make_sparse(p(src, b"sparse/allhole"), [], 30 * MiB)
    make_sparse(p(src, b"sparse/endhole"), [(0, rand_bytes(MiB + 17, 3))], 20 * MiB)
    make_sparse(p(src, b"sparse/starthole"), [(10 * MiB, rand_bytes(MiB, 4))], 11 * MiB + 3)
    os.link(p(src, b"sparse/mid"), p(src, b"hl/sparse_link"))
    extra += 1

    # --- xattrs and ACLs
    os.mkdir(p(src, b"attrs"))
    write_file(p(src, b"attrs/f"), rand_bytes(1000, "xf"))
    os.setxattr(p(src, b"attrs/f"), b"user.bin", b"\0\x01\0\xff" * 100)
    os.setxattr(p(src, b"attrs/f"), b"user.empty", b"")
    for i in range(20):
        os.setxattr(p(src, b"attrs/f"), b"user.k%02d" % i, b"%d\0" % i)
    os.setxattr(p(src, b"attrs"), b"user.dir", rand_bytes(2000, "xd"))
    os.setxattr(p(src, b"ro/inner"), b"user.in_ro", b"ro\0")
    os.setxattr(p(src, b"sparse/mid"), b"user.on_sparse", b"s")
    write_file(p(src, b"attrs/acl"), b"acl\n", 0o640)
    run_ok("setfacl", "-m", "u:1234:rwx,g:5678:r-x,m::rwx", p(src, b"attrs/acl"))
    os.mkdir(p(src, b"attrs/defacl"))
    write_file(p(src, b"attrs/defacl/before"), b"before\n")
    run_ok("setfacl", "-d", "-m", "u:1234:rwx,g:5678:r-x,m::rwx", p(src, b"attrs/defacl"))
    write_file(p(src, b"attrs/defacl/inherits"), b"inherits\n")
    os.mkdir(p(src, b"attrs/defacl/subdir"))
    write_file(p(src, b"attrs/defacl/stripped"), b"stripped\n")
    run_ok("setfacl", "-b", p(src, b"attrs/defacl/stripped"))
    os.link(p(src, b"attrs/acl"), p(src, b"hl/acl_link"))
    extra += 1
    if privileged:
        os.setxattr(p(src, b"attrs/f"), b"trusted.t", b"\0t\0")
        os.setxattr(p(src, b"links/dangling"), b"trusted.l", b"on a link", follow_symlinks=False)
        os.setxattr(p(src, b"special/fifo"), b"trusted.f", b"fifo\0")
        os.setxattr(p(src, b"special/chr"), b"trusted.c", b"")
        os.setxattr(p(src, b"names", NAME255_BAD), b"trusted.bad", b"\xff")
        os.setxattr(p(src, b"closed"), b"trusted.closed", b"c")
    # --- hard directory modes, now that their contents exist
    os.chmod(p(src, b"ro/inner"), 0o555)
    os.chmod(p(src, b"ro"), 0o555)
    if privileged:
        os.chmod(p(src, b"closed/deeper"), 0o000)
        os.chmod(p(src, b"closed"), 0o000)
        os.chmod(p(src, b"closed_empty"), 0o000)
        os.chmod(p(src, b"x_only"), 0o111)

    # --- times: before 1970, after 2100, ns precision; set last, bottom-up
    mtimes = {
        b"names/" + NAME255: NEG_MTIME,
        b"names/" + NAME255_BAD: Y2400_MTIME,
        b"names/" + DIR255: NEG_SMALL,
        b"names": Y2100_MTIME,
        b"links/a": NEG_MTIME + 3,
        b"links/dangling": Y2100_MTIME + 5,
        b"special/fifo": NEG_MTIME + 7,
        b"special/sock": Y2400_MTIME - 9,
        b"sparse/endhole": NEG_SMALL,
        b"ro/inner": NEG_MTIME + 11,
        b"ro": Y2400_MTIME + 13,
        b"attrs/defacl": 1_000_000_000 * 10**9 + 123_456_789,
    }
    if privileged:
        mtimes[b"closed"] = NEG_MTIME + 15
        mtimes[b"closed/deeper"] = Y2100_MTIME + 17
        mtimes[b"special/chr"] = Y2400_MTIME
    set_tree_times(src, mtimes, seed=41, keep_mtime=False)
    return extra, specials


def check_torture(src: bytes, us: bytes, cp: bytes, before: dict[bytes, Any]) -> None:
    assert_same_tree(cp, us)
    assert_same_tree(before, us)
    assert_same_tree(before, snapshot(src))  # sanity: copying did not change the source
    assert_same_links(src, cp)
    assert_same_links(src, us)
    assert_same_meta(src, cp, us)
    rsync_clean(src, us)
    for rel in SPARSE:
        u, c = os.lstat(p(us, rel)).st_blocks, os.lstat(p(cp, rel)).st_blocks
        s = os.lstat(p(src, rel)).st_blocks
        assert abs(u - c) <= BLOCK, f"{rel!r}: st_blocks us={u} cp={c} src={s}"
        assert data_map(p(us, rel)) == data_map(p(src, rel)), rel


@root_only
def test_torture_tree_as_root(tmp: bytes) -> None:
    src = tmp + b"/src"
    extra, specials = build_torture(src, privileged=True)
    before = snapshot(src)
    # sanity: the tree holds what it claims to
    assert before[b"closed"].mode & 0o7777 == 0
    assert before[b"closed/deeper/secret"].type == "reg"
    assert {before[b"special/" + k].type for k in (b"fifo", b"sock", b"chr", b"blk")} == {
        "fifo", "sock", "chr", "blk",
    }  # fmt: skip
    copy_both([src], tmp + b"/us", tmp + b"/cp")
    check_torture(src, tmp + b"/us", tmp + b"/cp", before)

    # the Python API, same tree: counts of links and special files
    res = api_copy([src], tmp + b"/api")
    assert res.exit_code == 0, res.errors
    assert res.links == extra
    assert res.specials == specials
    assert_same_tree(tmp + b"/cp", tmp + b"/api")
    assert_same_links(src, tmp + b"/api")


@root_only
def test_torture_tree_into_existing_dir_twice(tmp: bytes) -> None:
    """Copying again over a complete copy leaves it identical (links, ACLs, times)."""
    src = tmp + b"/src"
    build_torture(src, privileged=True)
    before = snapshot(src)
    os.mkdir(tmp + b"/out")
    os.mkdir(tmp + b"/cpout")
    check_cli(b"cp", b"-a", src, tmp + b"/out")
    check_cli(b"cp", b"-a", src, tmp + b"/out")
    check_cp(b"-a", src, tmp + b"/cpout")
    check_torture(src, tmp + b"/out/src", tmp + b"/cpout/src", before)


def test_torture_tree_unprivileged(world: bytes) -> None:
    """The parts a plain user can make (no devices, owners, trusted.*, 0000
    dirs), copied by the Python API in a child running as nobody."""

    def body() -> tuple[int, int]:
        import uringsync

        src = world + b"/src"
        extra, specials = build_torture(src, privileged=False)
        before = snapshot(src)
        res = uringsync.copy([src], world + b"/us", archive=True)
        assert res.exit_code == 0, res.errors
        assert res.links == extra, (res.links, extra)
        assert res.specials == specials, (res.specials, specials)
        check_cp(b"-a", src, world + b"/cp")
        check_torture(src, world + b"/us", world + b"/cp", before)
        return res.links, os.getuid()

    links, uid = as_user(body) if ROOT else body()
    assert links > 0
    assert uid != 0 or not ROOT


# ------------------------------------------------------------- hypothesis

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

ascii_names = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1,
                      max_size=12).filter(lambda s: s not in (".", ".."))  # fmt: skip
xattr_names = ascii_names.map(lambda s: b"user." + s.encode())
# ext4 keeps all of a file's xattrs in one 4 KiB block: stay under it


def _fit(d: dict[bytes, bytes], budget: int = 3600) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for k, v in d.items():
        room = budget - len(k) - 24
        if room < 0:
            break
        out[k] = v[:room]
        budget = room - len(out[k])
    return out


xattrs = st.dictionaries(xattr_names, st.binary(max_size=2000), max_size=4).map(_fit)
segments = st.lists(st.tuples(st.integers(0, 6 * MiB), st.integers(1, 200_000)), max_size=5)
file_specs = st.tuples(
    st.integers(0, 3),  # directory index
    segments,
    st.integers(0, 8 * MiB),  # final size (truncate)
    xattrs,
    st.integers(0, 2**32),  # data seed
)
link_specs = st.tuples(st.integers(0, 100), st.integers(0, 3))  # (file, dir) for a new name
trees = st.tuples(
    st.lists(file_specs, min_size=1, max_size=6),
    st.lists(link_specs, max_size=6),
    xattrs,  # on a directory
)
DIRS = [b"", b"d1", b"d1/d2", b"e/f/g"]


def build_random(src: bytes, tree: Any) -> None:
    files, links, dir_attrs = tree
    for d in DIRS:
        os.makedirs(p(src, d) if d else src, exist_ok=True)
    names: list[bytes] = []
    for i, (di, segs, size, attrs, seed) in enumerate(files):
        rel = os.path.join(DIRS[di], b"f%d" % i) if DIRS[di] else b"f%d" % i
        make_sparse(
            p(src, rel),
            [(off, rand_bytes(n, seed + k)) for k, (off, n) in enumerate(segs)],
            size,
        )
        for k, v in attrs.items():
            os.setxattr(p(src, rel), k, v)
        names.append(rel)
    for j, (fi, di) in enumerate(links):
        target = names[fi % len(names)]
        rel = os.path.join(DIRS[di], b"l%d" % j) if DIRS[di] else b"l%d" % j
        os.link(p(src, target), p(src, rel))
    for k, v in dir_attrs.items():
        os.setxattr(p(src, b"d1/d2"), k, v)
    set_tree_times(src, seed=len(files))


@root_only
@SETTINGS
@given(tree=trees)
def test_random_links_holes_xattrs(tree: Any) -> None:
    base = tempfile.mkdtemp(prefix="us-tort-").encode()
    try:
        src = base + b"/src"
        build_random(src, tree)
        before = snapshot(src)
        copy_both([src], base + b"/us", base + b"/cp")
        assert_same_tree(base + b"/cp", base + b"/us")
        assert_same_tree(before, base + b"/us")
        assert link_groups(base + b"/us") == link_groups(src)
        assert_same_links(src, base + b"/us")
        assert_same_meta(src, base + b"/cp", base + b"/us")
        rsync_clean(src, base + b"/us")
        for rel, rec in before.items():
            if rec.type != "reg":
                continue
            s = os.lstat(p(src, rel)).st_blocks
            u = os.lstat(p(base, b"us", rel)).st_blocks
            c = os.lstat(p(base, b"cp", rel)).st_blocks
            # holes kept: never more blocks than the source or cp (one block
            # of slack each for ext4's extent tree)
            assert u <= s + 2 * BLOCK, f"{rel!r}: st_blocks src={s} us={u} cp={c}"
            assert u <= c + 2 * BLOCK, f"{rel!r}: st_blocks src={s} us={u} cp={c}"
    finally:
        shutil.rmtree(base)
