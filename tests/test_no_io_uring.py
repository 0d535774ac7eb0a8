"""Where io_uring cannot be used, uringsync copies with threads, exactly as
cp -a does, and says so in one line.

Each case is made real on this kernel: a seccomp filter that fails
io_uring_setup as Docker's default profile does (EPERM) or as a kernel
without io_uring does (ENOSYS), and the kernel.io_uring_disabled sysctl
(restored afterwards, whatever happens).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterator

import pytest

import uringsync
from tests.support.base import root_only
from tests.support.cli import assert_error_lines, check_cp, run_cli
from tests.support.compare import assert_same_links, assert_same_tree, rsync_clean
from tests.support.sandbox import seccomp_argv
from uringsync import engine

# real system trees: many small files, symlinks, hard links, odd modes
SYSTEM_TREES = [b"/etc", b"/usr/share/doc"]
NOTICE_EPERM = (
    b"uringsync: io_uring unavailable (Operation not permitted: "
    b"seccomp or kernel.io_uring_disabled); copying with threads"
)
NOTICE_ENOSYS = (
    b"uringsync: io_uring unavailable (Function not implemented: "
    b"the kernel has no io_uring); copying with threads"
)
SYSCTL = "/proc/sys/kernel/io_uring_disabled"


def no_uring(err: int) -> Callable[[list[bytes]], list[bytes]]:
    """run_cli's wrap: io_uring_setup fails with `err` in the whole command."""
    return lambda argv: seccomp_argv({"io_uring_setup": err}, argv)


def check_like_cp(srcs: list[bytes], us: bytes, cp: bytes) -> None:
    """Each SRC's copy in US equals cp -a's in CP and the source, stat for
    stat but atimes (reading a system tree moves them: the copy made
    second sees newer ones) and rsync -naHAXc finds nothing to do."""
    check_cp(b"-a", *srcs, cp)
    for s in srcs:
        base = os.path.basename(s.rstrip(b"/"))
        u, c = os.path.join(us, base), os.path.join(cp, base)
        assert_same_tree(c, u, atime=False)
        assert_same_links(c, u)
        rsync_clean(s, u)


@root_only
@pytest.mark.parametrize("jobs", ["0", "2"])
def test_seccomp_eperm_copies_system_trees_with_threads(tmp: bytes, jobs: str) -> None:
    """Docker's profile: io_uring_setup is EPERM.  cp -a of real system
    trees gives cp -a's result, the one-line notice, and --json says threads."""
    us = tmp + b"/us"
    os.mkdir(us)
    rc, out, err = run_cli(
        "cp", "-a", "--json", "-j", jobs, *SYSTEM_TREES, us, wrap=no_uring(errno.EPERM)
    )
    assert rc == 0, err
    assert assert_error_lines(err) == [NOTICE_EPERM]
    res = json.loads(out)
    assert res["engine"] == "threads"
    assert "uringsync: " + res["notice"] == NOTICE_EPERM.decode()
    assert res["exit_code"] == 0
    os.mkdir(tmp + b"/cp")
    check_like_cp(SYSTEM_TREES, us, tmp + b"/cp")


@root_only
def test_seccomp_without_openat2(tmp: bytes) -> None:
    """A profile that predates openat2 (EPERM): the threads engine's cached
    opens fall back to openat, nothing fails."""
    src = b"/usr/share/doc"
    rules = {"io_uring_setup": errno.EPERM, "openat2": errno.EPERM}
    rc, _out, err = run_cli(
        "cp", "-a", src, tmp + b"/us", wrap=lambda argv: seccomp_argv(rules, argv)
    )
    assert rc == 0, err
    assert assert_error_lines(err) == [NOTICE_EPERM]
    rsync_clean(src, tmp + b"/us")


@root_only
def test_kernel_without_io_uring(tmp: bytes) -> None:
    """ENOSYS, as from a kernel built without io_uring: same copy, the
    notice names the reason."""
    src = b"/usr/share/doc"
    rc, _out, err = run_cli("cp", "-a", src, tmp + b"/us", wrap=no_uring(errno.ENOSYS))
    assert rc == 0, err
    assert assert_error_lines(err) == [NOTICE_ENOSYS]
    rsync_clean(src, tmp + b"/us")


@root_only
@pytest.mark.parametrize("jobs", ["0", "2"])
def test_forced_io_uring_fails_cleanly(tmp: bytes, jobs: str) -> None:
    """--engine=io_uring where it cannot run: one line saying why and what
    to do, exit 1, nothing copied, never a traceback (run several times:
    the workers must not be caught starting)."""
    for _ in range(6):
        rc, _out, err = run_cli(
            "cp",
            "-a",
            "--engine",
            "io_uring",
            "-j",
            jobs,
            "/usr/share/doc",
            tmp + b"/us",
            wrap=no_uring(errno.EPERM),
        )
        assert rc == 1
        assert assert_error_lines(err) == [
            b"uringsync: io_uring unavailable (Operation not permitted: seccomp or "
            b"kernel.io_uring_disabled); --engine=threads copies without it"
        ]
        assert not os.path.lexists(tmp + b"/us")


def test_unknown_engine_is_a_usage_error(tmp: bytes) -> None:
    rc, _out, err = run_cli("cp", "-a", "--engine", "uring", "/usr/share/doc", tmp + b"/us")
    assert rc == 1
    (line,) = assert_error_lines(err)
    assert line.startswith(b"uringsync: invalid argument "), line
    assert b"uring" in line and b"--engine" in line and b"io_uring" in line, line
    assert not os.path.lexists(tmp + b"/us")


@pytest.fixture
def uring_disabled() -> Iterator[None]:
    """kernel.io_uring_disabled=2 (io_uring_setup fails for everyone),
    restored afterwards even when the test fails."""
    if not os.path.exists(SYSCTL):
        pytest.skip("this kernel has no kernel.io_uring_disabled (before 6.6)")
    with open(SYSCTL) as f:
        old = f.read().strip()
    with open(SYSCTL, "w") as f:
        f.write("2")
    try:
        yield
    finally:
        with open(SYSCTL, "w") as f:
            f.write(old)


@root_only
def test_io_uring_disabled_sysctl_cli(tmp: bytes, uring_disabled: None) -> None:
    us = tmp + b"/us"
    os.mkdir(us)
    rc, out, err = run_cli("cp", "-a", "--json", *SYSTEM_TREES, us)
    assert rc == 0, err
    assert assert_error_lines(err) == [NOTICE_EPERM]
    assert json.loads(out)["engine"] == "threads"
    os.mkdir(tmp + b"/cp")
    check_like_cp(SYSTEM_TREES, us, tmp + b"/cp")


@root_only
def test_io_uring_disabled_sysctl_api(tmp: bytes, uring_disabled: None) -> None:
    """The Python API falls back the same way: no PermissionError from the
    ring set-up; the notice goes to on_notice and into the result."""
    with pytest.raises(OSError) as ei:
        engine.Ring(engine="io_uring")
    assert ei.value.errno == errno.EPERM  # the sysctl really bites
    notices: list[str] = []
    res = uringsync.copy("/usr/share/doc", tmp + b"/us", archive=True, on_notice=notices.append)
    assert res.exit_code == 0
    assert res.engine == "threads"
    want = NOTICE_EPERM.decode().removeprefix("uringsync: ")
    assert notices == [want]
    assert res.notice == want
    rsync_clean(b"/usr/share/doc", tmp + b"/us")
    with pytest.raises(uringsync.CopyError, match="--engine=threads copies without it"):
        uringsync.copy("/usr/share/doc", tmp + b"/us2", archive=True, engine="io_uring")
    assert not os.path.lexists(tmp + b"/us2")
