"""Generated trees: uringsync cp -a vs GNU cp -a, and a tree deeper than PATH_MAX."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.base import O_DIR, root_only
from tests.support.cli import check_cli
from tests.support.compare import assert_same_tree, copy_both, rsync_clean, snapshot
from tests.support.trees import rand_bytes, set_tree_times, write_at

# every test here runs with both engines (conftest.engine_name)
pytestmark = pytest.mark.usefixtures("engine_name")

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# ------------------------------------------------------------ strategies


def _clean_name(n: bytes) -> bytes:
    return n.replace(b"/", b"_").replace(b"\0", b"_")


names = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12).map(
        str.encode
    ),
    st.binary(min_size=1, max_size=40).map(_clean_name),  # mostly not UTF-8
    st.binary(min_size=200, max_size=255).map(_clean_name),  # near NAME_MAX
    st.text(min_size=1, max_size=20).map(
        lambda s: _clean_name(s.encode("utf-8", "surrogateescape"))
    ),
).filter(lambda n: 1 <= len(n) <= 255 and n not in (b".", b".."))

boundaries = [
    0,
    1,
    4095,
    4096,
    4097,
    65535,
    65536,
    65537,
    131071,
    131072,
    131073,
    262143,
    262144,
    262145,
]
sizes = st.one_of(st.sampled_from(boundaries), st.integers(0, 300_000))
file_modes = st.sampled_from([0o644, 0o600, 0o755, 0o444, 0o000, 0o4755, 0o2711, 0o640])
dir_modes = st.sampled_from([0o755, 0o700, 0o555, 0o1777, 0o2755, 0o500])
# whole seconds from 1902 to 2446 (ext4's range), plus nanoseconds
mtimes = st.builds(
    lambda s, ns: s * 10**9 + ns,
    st.integers(-(2**31) + 1, 15_000_000_000),
    st.integers(0, 999_999_999),
)
targets = st.binary(min_size=1, max_size=300).map(lambda t: t.replace(b"\0", b"x"))

files = st.builds(
    lambda size, mode, seed, mt: ("f", size, mode, seed, mt),
    sizes,
    file_modes,
    st.integers(0, 2**32),
    mtimes,
)
links = st.builds(lambda t, mt: ("l", t, mt), targets, mtimes)


def _dirs(children: Any) -> Any:
    return st.builds(
        lambda kids, mode, mt: ("d", kids, mode, mt),
        st.dictionaries(names, children, max_size=6),
        dir_modes,
        mtimes,
    )


nodes = st.recursive(st.one_of(files, links), _dirs, max_leaves=25)
trees = st.builds(
    lambda kids, mode, mt: ("d", kids, mode, mt),
    st.dictionaries(names, nodes, max_size=8),
    dir_modes,
    mtimes,
)


def build(root: bytes, tree: Any) -> dict[bytes, int]:
    """Create `tree` at `root`; returns the wanted mtimes by relpath."""
    times: dict[bytes, int] = {}

    def rec(path: bytes, rel: bytes, node: Any) -> None:
        kind = node[0]
        if kind == "f":
            _, size, mode, seed, mt = node
            with open(path, "wb") as f:
                f.write(rand_bytes(size, seed))
            os.chmod(path, mode)
        elif kind == "l":
            _, target, mt = node
            os.symlink(target, path)
        else:
            _, kids, mode, mt = node
            os.mkdir(path)
            for name, child in kids.items():
                rec(os.path.join(path, name), rel + b"/" + name if rel else name, child)
            os.chmod(path, mode)
        times[rel] = mt

    rec(root, b"", tree)
    return times


@root_only
@settings(SETTINGS, max_examples=15)  # a GNU cp and a CLI copy per example: CI's time
@given(tree=trees)
def test_generated_tree_matches_cp(tree: Any) -> None:
    base = tempfile.mkdtemp(prefix="us-hyp-").encode()
    try:
        src = base + b"/src"
        times = build(src, tree)
        set_tree_times(src, times, seed=len(times))
        before = snapshot(src)
        copy_both([src], base + b"/us", base + b"/cp")
        assert_same_tree(base + b"/cp", base + b"/us")
        assert_same_tree(before, base + b"/us")
        if max(len(p) for p in before) + len(base) < 3800:  # rsync needs paths < PATH_MAX
            rsync_clean(src, base + b"/us")
    finally:
        shutil.rmtree(base)


@root_only
@settings(SETTINGS, max_examples=10)  # two CLI copies per example: CI's time
@given(tree=trees)
def test_generated_tree_recopy_is_idempotent(tree: Any) -> None:
    """Copying again into the parent of an existing copy leaves it identical."""
    base = tempfile.mkdtemp(prefix="us-hyp-").encode()
    try:
        src = base + b"/src"
        times = build(src, tree)
        set_tree_times(src, times, seed=1)
        os.mkdir(base + b"/out")
        check_cli(b"cp", b"-a", src, base + b"/out")
        check_cli(b"cp", b"-a", src, base + b"/out")
        assert_same_tree(src, base + b"/out/src")
    finally:
        shutil.rmtree(base)


# ------------------------------------------------------ deeper than PATH_MAX


def build_deep(root: bytes, levels: int = 30, name_len: int = 200) -> int:
    """Chain of `levels` dirs of `name_len`-byte names, files at every level.

    Returns the length of the deepest path, which is well past PATH_MAX.
    """
    os.mkdir(root)
    fd = os.open(root, O_DIR)
    depth_len = len(root)
    try:
        for i in range(levels):
            name = (b"%02d\xff" % i) + b"d" * (name_len - 3)
            write_at(
                fd,
                b"file",
                rand_bytes([0, 1, 4097, 131073, 262145][i % 5], i),
                0o640 if i % 2 else 0o644,
            )
            os.symlink(b"../" * (i % 3) + b"file", b"link", dir_fd=fd)
            os.mkdir(name, 0o755, dir_fd=fd)
            nfd = os.open(name, O_DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
            depth_len += 1 + len(name)
        write_at(fd, b"bottom", b"the bottom\n")
        os.mkdir(b"empty_bottom", dir_fd=fd)
    finally:
        os.close(fd)
    return depth_len


@root_only
def test_deeper_than_path_max(tmp: bytes) -> None:
    src = tmp + b"/src"
    deepest = build_deep(src)
    assert deepest > os.pathconf(b"/", "PC_PATH_MAX")
    set_tree_times(src, seed=5, keep_mtime=False)
    want = snapshot(src)
    assert len(want) == 30 * 3 + 3
    try:
        check_cli(b"cp", b"-a", src, tmp + b"/dst")
        assert_same_tree(want, tmp + b"/dst")
        # into an existing directory, twice: the second run overwrites the first
        os.mkdir(tmp + b"/out")
        check_cli(b"cp", b"-a", src, tmp + b"/out")
        check_cli(b"cp", b"-a", src, tmp + b"/out/")
        assert os.listdir(tmp + b"/out") == [b"src"]
        assert_same_tree(want, tmp + b"/out/src")
    finally:
        for d in (b"/src", b"/dst", b"/out"):
            shutil.rmtree(tmp + d, ignore_errors=True)
