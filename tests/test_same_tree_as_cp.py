"""uringsync cp must leave the same tree on disk as GNU cp (bit for bit, stat for stat)."""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
import sys

import pytest

import uringsync
from tests.support.base import NEG_MTIME, NOBODY, Y2200_MTIME, MiB, root_only
from tests.support.cli import assert_error_lines, check_cli, check_cp, run_cli, run_cp
from tests.support.compare import (
    FIELDS_ALL,
    FIELDS_CONTENT,
    assert_same_tree,
    copy_both,
    rsync_clean,
    snapshot,
)
from tests.support.system import mount_tmpfs, umount
from tests.support.trees import rand_bytes, set_tree_times, write_file
from tests.support.users import as_user

# every test here runs with both engines (conftest.engine_name)
pytestmark = pytest.mark.usefixtures("engine_name")

SIZES = [
    0, 1, 4095, 4096, 4097,
    65535, 65536, 65537,
    131071, 131072, 131073,
    262143, 262144, 262145,
    MiB - 1, MiB, MiB + 1,
    8 * MiB + 3,
    3 * MiB + 12345,
    5 * MiB + 7,
]  # fmt: skip

BAD_NAME = b"bad\xff\xfename\x80"


def build_varied_tree(root: bytes, seed: int = 1, big: bool = True) -> dict[bytes, int]:
    """Build the standard varied tree under `root` (created); times set last."""
    rng = random.Random(seed)
    os.mkdir(root)
    p = lambda rel: os.path.join(root, rel)  # noqa: E731
    mtimes: dict[bytes, int] = {}

    # sizes straddling page, 64 KiB and 128 KiB (buffer) boundaries, and big files
    os.mkdir(p(b"sizes"))
    for n in SIZES:
        if not big and n > 2 * MiB:
            continue
        write_file(p(b"sizes/s_%d" % n), rand_bytes(n, f"{seed}-{n}"))
    # a file of all zeros (sparse-friendly content must still be copied exactly)
    write_file(p(b"sizes/zeros_300k"), bytes(300_000))

    # modes
    os.mkdir(p(b"modes"))
    for m in (0o600, 0o755, 0o444, 0o000, 0o4755, 0o2755, 0o6711, 0o640):
        write_file(p(b"modes/f%04o" % m), b"mode %o\n" % m, m)
    os.mkdir(p(b"modes/sticky"))
    write_file(p(b"modes/sticky/inside"), b"in sticky dir\n", 0o666)
    os.chmod(p(b"modes/sticky"), 0o1777)
    os.mkdir(p(b"modes/setgid_dir"))
    write_file(p(b"modes/setgid_dir/x"), b"x")
    os.chmod(p(b"modes/setgid_dir"), 0o2775)
    os.mkdir(p(b"modes/ro_dir"))
    os.mkdir(p(b"modes/ro_dir/sub"))
    write_file(p(b"modes/ro_dir/sub/deep"), rand_bytes(5000, "deep"))
    write_file(p(b"modes/ro_dir/file"), rand_bytes(200_000, "ro"), 0o444)
    os.chmod(p(b"modes/ro_dir/sub"), 0o500)
    os.chmod(p(b"modes/ro_dir"), 0o555)
    os.mkdir(p(b"modes/d700"), 0o700)
    os.chmod(p(b"modes/d700"), 0o700)

    # ownership
    os.mkdir(p(b"owners"))
    write_file(p(b"owners/f1234"), b"owned by 1234:5678\n", 0o644)
    os.chown(p(b"owners/f1234"), 1234, 5678)
    write_file(p(b"owners/suid_owned"), b"setuid, other owner\n")
    os.chown(p(b"owners/suid_owned"), 1234, 5678)
    os.chmod(p(b"owners/suid_owned"), 0o4755)  # after chown: chown clears set-id bits
    os.mkdir(p(b"owners/d4321"))
    write_file(p(b"owners/d4321/in"), b"in\n")
    os.chown(p(b"owners/d4321"), 4321, 8765)
    os.symlink(b"f1234", p(b"owners/link_owned"))
    os.lchown(p(b"owners/link_owned"), 2222, 3333)
    write_file(p(b"owners/gid_only"), b"g\n")
    os.chown(p(b"owners/gid_only"), 0, 100)

    # symlinks
    os.mkdir(p(b"links"))
    os.symlink(b"/etc/hostname", p(b"links/abs"))
    os.symlink(b"/nonexistent/abs/target", p(b"links/abs_dangling"))
    os.symlink(b"../sizes/s_4096", p(b"links/rel"))
    os.symlink(b"no/such/thing", p(b"links/dangling"))
    os.symlink(b"../sizes", p(b"links/to_dir"))
    os.symlink(b"/etc", p(b"links/to_abs_dir"))
    os.symlink(b"x" * 1000, p(b"links/long_target"))
    os.symlink(b"tgt\xff\xfe", p(b"links/nonutf8_target"))
    os.symlink(b"self", p(b"links/self"))

    # nesting and empties
    os.makedirs(p(b"nested/a/b/c/d/e"))
    write_file(p(b"nested/a/b/c/d/e/leaf"), b"leaf\n")
    os.makedirs(p(b"nested/a/empty"))
    os.mkdir(p(b"empty_dir"))
    write_file(p(b"empty_file"), b"")
    write_file(p(BAD_NAME), b"non-utf8 name\n")
    os.mkdir(p(b"dir \xe9\xff"))
    write_file(p(b"dir \xe9\xff/f\x01\x7f\n"), b"ctrl chars\n")
    write_file(p(b"-leading-dash"), b"dash\n")
    write_file(p(b" spaces "), b"spaces\n")
    many = p(b"many")
    os.mkdir(many)
    for i in range(300):
        write_file(os.path.join(many, b"m%03d" % i), rand_bytes(i * 37, i))

    # times: ns precision, before 1970, after 2100
    os.mkdir(p(b"times"))
    write_file(p(b"times/neg"), b"1930\n")
    write_file(p(b"times/y2200"), b"2200\n")
    write_file(p(b"times/exact_sec"), b"no ns\n")
    os.mkdir(p(b"times/neg_dir"))
    write_file(p(b"times/neg_dir/x"), b"x\n")
    os.symlink(b"neg", p(b"times/link_neg"))
    mtimes[b"times/neg"] = NEG_MTIME
    mtimes[b"times/y2200"] = Y2200_MTIME
    mtimes[b"times/exact_sec"] = 1_600_000_000 * 10**9
    mtimes[b"times/neg_dir"] = NEG_MTIME - 17
    mtimes[b"times/link_neg"] = NEG_MTIME + 5
    mtimes[b"times"] = Y2200_MTIME + 3

    _ = rng
    set_tree_times(root, mtimes, seed=seed, keep_mtime=False)
    return mtimes


def tree_counts(root: bytes) -> dict[str, int]:
    snap = snapshot(root)
    c = {"reg": 0, "dir": 0, "lnk": 0, "bytes": 0}
    for r in snap.values():
        if r.type in c:
            c[r.type] += 1
        if r.type == "reg":
            c["bytes"] += r.size or 0
    return c


@pytest.fixture(scope="module")
def varied(tmp_path_factory) -> bytes:  # type: ignore[no-untyped-def]
    """One shared, read-only source tree (atimes in the future: reads don't change it)."""
    base = os.fsencode(tmp_path_factory.mktemp("varied"))
    src = os.path.join(base, b"src")
    build_varied_tree(src)
    return src


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> bytes:
    base = os.fsencode(tmp_path_factory.mktemp("small"))
    src = os.path.join(base, b"src")
    build_varied_tree(src, seed=7, big=False)
    return src


# ------------------------------------------------------------------ -a


@root_only
def test_archive_new_dst(varied: bytes, tmp: bytes) -> None:
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    copy_both([varied], d_us, d_cp)
    assert_same_tree(d_cp, d_us)
    assert_same_tree(varied, d_us)
    assert_same_tree(varied, d_cp)  # sanity: the source was not changed by reading it
    rsync_clean(varied, d_us)


@root_only
def test_archive_into_existing_dir(varied: bytes, tmp: bytes) -> None:
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    os.mkdir(d_us)
    os.mkdir(d_cp)
    copy_both([varied], d_us, d_cp)
    assert sorted(os.listdir(d_us)) == [b"src"]
    assert_same_tree(d_cp + b"/src", d_us + b"/src")
    assert_same_tree(varied, d_us + b"/src")
    rsync_clean(varied, d_us + b"/src")


@root_only
def test_archive_trailing_slashes(small: bytes, tmp: bytes) -> None:
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    copy_both([small + b"/"], d_us + b"/", d_cp + b"/")
    assert_same_tree(d_cp, d_us)
    assert_same_tree(small, d_us)


@root_only
def test_several_sources_into_dir(varied: bytes, tmp: bytes) -> None:
    srcs = [
        varied + b"/sizes",
        varied + b"/links",
        varied + b"/modes/f4755",
        varied + b"/links/abs",  # a symlink SRC: copied as a link
        varied + b"/" + BAD_NAME,
        varied + b"/times",
        varied + b"/empty_dir",
    ]
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    os.mkdir(d_us)
    os.mkdir(d_cp)
    copy_both(srcs, d_us, d_cp)
    names = sorted(os.path.basename(s) for s in srcs)
    assert sorted(os.listdir(d_us)) == names
    for n in names:
        assert_same_tree(d_cp + b"/" + n, d_us + b"/" + n)
    for s in srcs:
        assert_same_tree(s, d_us + b"/" + os.path.basename(s))


@root_only
def test_single_file(varied: bytes, tmp: bytes) -> None:
    for rel in (
        b"sizes/s_131073",
        b"sizes/s_0",
        b"modes/f2755",
        b"owners/suid_owned",
        b"times/neg",
        b"times/y2200",
    ):
        src = varied + b"/" + rel
        d_us, d_cp = (
            tmp + b"/us_" + rel.replace(b"/", b"_"),
            tmp + b"/cp_" + rel.replace(b"/", b"_"),
        )
        copy_both([src], d_us, d_cp)
        assert_same_tree(d_cp, d_us)
        assert_same_tree(src, d_us)


@root_only
def test_single_file_into_dir(varied: bytes, tmp: bytes) -> None:
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    os.mkdir(d_us)
    os.mkdir(d_cp)
    src = varied + b"/sizes/s_262145"
    copy_both([src], d_us, d_cp)
    assert os.listdir(d_us) == [b"s_262145"]
    assert_same_tree(d_cp + b"/s_262145", d_us + b"/s_262145")
    assert_same_tree(src, d_us + b"/s_262145")


@root_only
@pytest.mark.parametrize(
    "link",
    [b"links/abs", b"links/dangling", b"links/to_dir", b"owners/link_owned", b"times/link_neg"],
)
def test_symlink_source_copied_as_link(varied: bytes, tmp: bytes, link: bytes) -> None:
    src = varied + b"/" + link
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    copy_both([src], d_us, d_cp)
    assert os.path.islink(d_us)
    assert_same_tree(d_cp, d_us)
    assert_same_tree(src, d_us)


def _stale_the_copy(d: bytes) -> None:
    """Make an existing copy out of date in several ways."""
    with open(d + b"/sizes/s_131073", "r+b") as f:
        f.truncate(10)
    with open(d + b"/sizes/s_4097", "r+b") as f:
        f.write(b"garbage" * 10)
    with open(d + b"/sizes/s_1", "ab") as f:
        f.write(rand_bytes(300_000, "grow"))
    os.chmod(d + b"/modes/f0600", 0o777)
    os.utime(d + b"/times/neg", ns=(0, 0))
    os.unlink(d + b"/empty_file")
    os.unlink(d + b"/links/rel")
    os.symlink(b"elsewhere", d + b"/links/rel")
    shutil.rmtree(d + b"/nested/a/b/c")


@root_only
def test_recopy_onto_existing_copy(varied: bytes, tmp: bytes) -> None:
    p_us, p_cp = tmp + b"/us", tmp + b"/cp"
    os.mkdir(p_us)
    os.mkdir(p_cp)
    copy_both([varied], p_us, p_cp)
    # an unchanged re-run
    copy_both([varied], p_us, p_cp)
    assert_same_tree(varied, p_us + b"/src")
    # a re-run over a stale copy
    _stale_the_copy(p_us + b"/src")
    _stale_the_copy(p_cp + b"/src")
    copy_both([varied], p_us, p_cp)
    assert_same_tree(p_cp + b"/src", p_us + b"/src")
    assert_same_tree(varied, p_us + b"/src")
    rsync_clean(varied, p_us + b"/src")


@root_only
def test_recopy_single_file_over_existing(varied: bytes, tmp: bytes) -> None:
    src = varied + b"/sizes/s_65537"
    for d in (tmp + b"/us", tmp + b"/cp"):
        write_file(d, rand_bytes(1_000_000, "old"), 0o600)
    copy_both([src], tmp + b"/us", tmp + b"/cp")
    assert_same_tree(tmp + b"/cp", tmp + b"/us")
    assert_same_tree(src, tmp + b"/us")


@root_only
@pytest.mark.parametrize("qd", [b"1", b"2", b"7", b"256"])
def test_queue_depth(small: bytes, tmp: bytes, qd: bytes) -> None:
    d = tmp + b"/us"
    check_cli(b"cp", b"-a", b"--queue-depth", qd, small, d)
    assert_same_tree(small, d)
    rsync_clean(small, d)


# ------------------------------------------------------ other flag sets


CONTENT_AND_MODE = (*FIELDS_CONTENT, "mode", "uid", "gid")


@root_only
def test_recursive_without_preservation(small: bytes, tmp: bytes) -> None:
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    copy_both([small], d_us, d_cp, b"-r")
    assert_same_tree(d_cp, d_us, fields=CONTENT_AND_MODE)
    # content is the source's
    assert_same_tree(small, d_us, fields=FIELDS_CONTENT)


@root_only
def test_recursive_into_existing_files_keeps_their_mode(small: bytes, tmp: bytes) -> None:
    """cp -r onto existing files rewrites the data but keeps the existing inode's mode."""
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    for d in (d_us, d_cp):
        os.mkdir(d)
        write_file(d + b"/s_4097", b"old", 0o604)
    copy_both([small + b"/sizes/s_4097"], d_us, d_cp, b"-r")
    assert_same_tree(d_cp, d_us, fields=CONTENT_AND_MODE)
    assert stat.S_IMODE(os.stat(d_us + b"/s_4097").st_mode) == 0o604


@root_only
def test_p_files(varied: bytes, tmp: bytes) -> None:
    srcs = [
        varied + b"/owners/f1234",
        varied + b"/modes/f4755",
        varied + b"/times/neg",
        varied + b"/sizes/s_65536",
    ]
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    os.mkdir(d_us)
    os.mkdir(d_cp)
    copy_both(srcs, d_us, d_cp, b"-p")
    for s in srcs:
        n = os.path.basename(s)
        assert_same_tree(d_cp + b"/" + n, d_us + b"/" + n)
        assert_same_tree(s, d_us + b"/" + n)


@root_only
def test_r_p_tree(small: bytes, tmp: bytes) -> None:
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    copy_both([small], d_us, d_cp, b"-r", b"-p")
    assert_same_tree(d_cp, d_us)


@root_only
def test_preserve_mode_timestamps(small: bytes, tmp: bytes) -> None:
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    copy_both([small], d_us, d_cp, b"-r", b"--preserve=mode,timestamps")
    assert_same_tree(d_cp, d_us, fields=FIELDS_ALL)
    # not owners: everything belongs to root
    assert {r.uid for r in snapshot(d_us).values()} == {0}


@root_only
def test_verbose_mentions_each_file(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    names = [b"alpha", b"beta_\xff", b"gamma"]
    for n in names:
        write_file(src + b"/" + n, n * 10)
    os.mkdir(src + b"/sub")
    write_file(src + b"/sub/delta", b"d")
    os.symlink(b"alpha", src + b"/lnk")
    set_tree_times(src)
    out, err = check_cli(b"cp", b"-a", b"-v", src, tmp + b"/dst")
    both = out + err
    for n in [b"alpha", b"gamma", b"sub/delta", b"lnk"]:
        assert n in both, f"-v output does not mention {n!r}: {both!r}"
    # a non-UTF-8 name may be shown raw or escaped (cp shell-quotes it)
    assert any(v in both for v in (b"beta_\xff", b"beta_\\xff", b"beta_'$'\\377'")), both
    assert_same_tree(src, tmp + b"/dst")


@root_only
def test_quiet_without_v(small: bytes, tmp: bytes) -> None:
    out, err = check_cli(b"cp", b"-a", small, tmp + b"/dst")
    assert out == b""
    assert err == b""


# ------------------------------------------------------------------ -x


@root_only
def test_one_file_system(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    write_file(src + b"/a", rand_bytes(70_000, "a"))
    os.mkdir(src + b"/sub")
    write_file(src + b"/sub/b", b"b")
    os.mkdir(src + b"/mnt")
    os.mkdir(src + b"/zz")
    write_file(src + b"/zz/c", b"after the mount point")
    reason = mount_tmpfs(src + b"/mnt", "4m")
    if reason:
        print(reason)
        pytest.skip(reason)
    try:
        write_file(src + b"/mnt/on_tmpfs", rand_bytes(10_000, "t"))
        os.mkdir(src + b"/mnt/d")
        write_file(src + b"/mnt/d/deeper", b"deeper")
        os.chmod(src + b"/mnt", 0o751)
        set_tree_times(src, seed=3, keep_mtime=False)

        # -x: the mount point is created, its contents are not copied
        d_us, d_cp = tmp + b"/us_x", tmp + b"/cp_x"
        copy_both([src], d_us, d_cp, b"-a", b"-x")
        assert_same_tree(d_cp, d_us)
        assert os.path.isdir(d_us + b"/mnt")
        assert os.listdir(d_us + b"/mnt") == []
        assert_same_tree(src, d_us, exclude=lambda p: p.startswith(b"mnt/"))

        # without -x the other file system is copied too
        d_us2, d_cp2 = tmp + b"/us", tmp + b"/cp"
        copy_both([src], d_us2, d_cp2, b"-a")
        assert_same_tree(d_cp2, d_us2)
        assert_same_tree(src, d_us2)
    finally:
        umount(src + b"/mnt")


# --------------------------------------------------- odd symlinks in src


@root_only
def test_symlink_loop_and_dangling(tmp: bytes) -> None:
    src = tmp + b"/src"
    os.mkdir(src)
    os.symlink(b"loop2", src + b"/loop1")
    os.symlink(b"loop1", src + b"/loop2")
    os.symlink(b"self", src + b"/self")
    os.symlink(b"does/not/exist", src + b"/dangling")
    os.symlink(b".", src + b"/dot")
    os.symlink(b"..", src + b"/dotdot")
    write_file(src + b"/f", b"f")
    set_tree_times(src)
    rc, _out, err = run_cli(b"cp", b"-a", src, tmp + b"/us")
    assert rc == 0, err
    assert err == b""
    check_cp(b"-a", src, tmp + b"/cp")
    assert_same_tree(tmp + b"/cp", tmp + b"/us")
    assert_same_tree(src, tmp + b"/us")


@root_only
def test_dangling_symlink_as_src(tmp: bytes) -> None:
    os.symlink(b"nowhere", tmp + b"/dangling")
    os.symlink(b"loop", tmp + b"/loop")
    set_tree_times(tmp)
    for n in (b"dangling", b"loop"):
        copy_both([n], n + b"_us", n + b"_cp", cwd=tmp)
        assert os.readlink(tmp + b"/" + n + b"_us") == os.readlink(tmp + b"/" + n)
        assert_same_tree(tmp + b"/" + n + b"_cp", tmp + b"/" + n + b"_us")


# ----------------------------------------------------- entry points / API


@root_only
def test_non_utf8_cli_argument(varied: bytes, tmp: bytes) -> None:
    src = varied + b"/" + BAD_NAME
    d_us, d_cp = tmp + b"/us\xfe", tmp + b"/cp\xfe"
    copy_both([src], d_us, d_cp)
    assert_same_tree(d_cp, d_us)
    assert_same_tree(src, d_us)


@root_only
def test_relative_paths_cwd(small: bytes, tmp: bytes) -> None:
    parent, base = os.path.split(small)
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    copy_both([base], d_us, d_cp, cwd=parent)
    assert_same_tree(d_cp, d_us)


@root_only
def test_console_script(small: bytes, tmp: bytes) -> None:
    exe = shutil.which("uringsync") or os.path.join(os.path.dirname(sys.executable), "uringsync")
    assert os.path.exists(exe), "console script `uringsync` is not installed"
    p = subprocess.run([exe, "cp", "-a", small, tmp + b"/dst"], capture_output=True, check=False)
    assert p.returncode == 0, p.stderr
    assert_same_tree(small, tmp + b"/dst")


@root_only
def test_api_copy_counts(small: bytes, tmp: bytes) -> None:

    dst = tmp + b"/dst"
    res = uringsync.copy([small], dst, archive=True, recursive=True)
    assert res.exit_code == 0
    assert res.errors == []
    assert_same_tree(small, dst)
    c = tree_counts(small)
    assert res.files == c["reg"]
    assert res.symlinks == c["lnk"]
    assert res.bytes == c["bytes"]
    assert res.dirs in (c["dir"], c["dir"] - 1)  # with or without the top directory


@root_only
def test_api_str_paths(small: bytes, tmp: bytes) -> None:

    dst = os.fsdecode(tmp) + "/dst"
    res = uringsync.copy([os.fsdecode(small) + "/sizes"], dst, archive=True, recursive=True)
    assert res.exit_code == 0, res.errors
    assert_same_tree(small + b"/sizes", os.fsencode(dst))


@root_only
@pytest.mark.parametrize("flags", [(b"-r",), (), (b"-p",)], ids=["r", "none", "p"])
@pytest.mark.parametrize("link", [b"links/rel", b"links/to_dir"])
def test_symlink_source_without_a(
    varied: bytes, tmp: bytes, flags: tuple[bytes, ...], link: bytes
) -> None:
    """Without -a a command-line symlink follows cp's rules (-r: copied as a link;
    otherwise dereferenced, and a link to a directory needs -r)."""
    src = varied + b"/" + link
    d_us, d_cp = tmp + b"/us", tmp + b"/cp"
    rc_cp, _, err_cp = run_cp(*flags, src, d_cp)
    rc_us, _, err_us = run_cli(b"cp", *flags, src, d_us)
    assert (rc_us != 0) == (rc_cp != 0), (rc_us, err_us, rc_cp, err_cp)
    if rc_cp == 0:
        fields = FIELDS_ALL if b"-p" in flags else CONTENT_AND_MODE
        assert_same_tree(d_cp, d_us, fields=fields)
    else:
        assert_error_lines(err_us, 1)
        assert not os.path.lexists(d_us)


@root_only
def test_dst_is_symlink_to_dir(small: bytes, tmp: bytes) -> None:
    """Like cp, a DST that is a symlink to a directory is a directory: copy into it."""
    for side in (b"us", b"cp"):
        os.mkdir(tmp + b"/real_" + side)
        os.symlink(b"real_" + side, tmp + b"/link_" + side)
    copy_both([small], tmp + b"/link_us", tmp + b"/link_cp")
    assert os.path.islink(tmp + b"/link_us")
    assert_same_tree(tmp + b"/real_cp/src", tmp + b"/real_us/src")
    assert_same_tree(small, tmp + b"/real_us/src")


@root_only
def test_archive_as_unprivileged_user_matches_cp(world: bytes) -> None:
    """cp -a run by a user: owners can't be kept, set-id bits are dropped
    when the owner/group can't be kept; uringsync must do the same."""
    src = world + b"/src"
    os.makedirs(src + b"/d")
    for m in (0o4755, 0o2755, 0o6755, 0o1755, 0o644, 0o600):
        write_file(src + b"/f%o" % m, b"m%o" % m, m)
    write_file(src + b"/nobody_setgid", b"x")
    os.chown(src + b"/nobody_setgid", NOBODY, NOBODY)
    os.chmod(src + b"/nobody_setgid", 0o2755)
    os.chmod(src + b"/f600", 0o604)  # readable by nobody
    os.chmod(src + b"/d", 0o2775)
    os.symlink(b"f644", src + b"/lnk")
    set_tree_times(src, keep_mtime=False)

    def child() -> tuple[int, int, bytes]:

        res = uringsync.copy([src], world + b"/us", archive=True)
        p = subprocess.run([b"cp", b"-a", src, world + b"/cp"], capture_output=True, check=False)
        return res.exit_code, p.returncode, p.stderr

    rc_us, rc_cp, err_cp = as_user(child)
    assert rc_cp == 0, err_cp
    assert rc_us == 0
    assert_same_tree(world + b"/cp", world + b"/us")
