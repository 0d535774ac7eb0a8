"""Running a command under a seccomp filter, as Docker does: chosen syscalls
fail with a chosen errno (ENOSYS as on an older kernel, EPERM as a container
profile answers), everything else is allowed.

libseccomp's Python binding is Debian's `python3-seccomp` (setup.sh installs
it), built for the system interpreter /usr/bin/python3, not for the one the
tests run on.  So the filter is loaded by a small launcher run with
/usr/bin/python3, which then execs the command: a seccomp filter survives
execve and is inherited by every child, so the whole command runs under it.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tests.support.base import PathLike, b

SYSTEM_PYTHON = "/usr/bin/python3"

# syscall (a name or this architecture's number) -> the errno it fails with
Rules = Mapping[str, int] | Mapping[int, int] | Mapping[str | int, int]

# Syscalls newer than Debian 12's libseccomp (2.5.4), which cannot resolve
# their names: their numbers, the same on every architecture but alpha since
# Linux 5.1 numbers new syscalls once for all.
NEWER_SYSCALLS = {
    "setxattrat": 463,
    "getxattrat": 464,
    "listxattrat": 465,
    "removexattrat": 466,
}

# argv: launcher, then SYSCALL=ERRNO rules (a name or a number), then "--",
# then the command
_LAUNCHER = r"""
import os, sys, seccomp
args = sys.argv[1:]
cut = args.index("--")
newer = NEWER_SYSCALLS
f = seccomp.SyscallFilter(seccomp.ALLOW)
for rule in args[:cut]:
    name, errno = rule.rsplit("=", 1)
    if name.isdigit():
        nr = int(name)
    elif seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) < 0 and name in newer:
        nr = newer[name]
    else:
        nr = name  # unknown to libseccomp: add_rule fails loudly
    f.add_rule(seccomp.ERRNO(int(errno)), nr)
f.load()
cmd = [os.fsencode(a) for a in args[cut + 1:]]
os.execvp(cmd[0], cmd)
""".replace("NEWER_SYSCALLS", repr(NEWER_SYSCALLS))


@functools.cache
def seccomp_missing() -> str | None:
    """Why no filter can be loaded here (None: it can)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing (the seccomp binding is built for it)"
    r = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True, text=True, check=False
    )
    if r.returncode != 0:
        return "libseccomp's Python binding is missing (apt-get install python3-seccomp)"
    return None


def require_seccomp() -> None:
    """Skip the calling test, with the reason printed, when no filter can be loaded."""
    why = seccomp_missing()
    if why:
        print("SKIP:", why)
        pytest.skip(why)


def seccomp_argv(rules: Rules, argv: Sequence[PathLike]) -> list[bytes]:
    """An argv that runs `argv` with each syscall in `rules` failing with its
    errno, e.g. {"io_uring_setup": errno.EPERM}: a name libseccomp knows, one
    of NEWER_SYSCALLS, or a number (this architecture's).

    Skips the calling test when the binding is missing.  Names libseccomp
    does not know make the launcher fail (exit 1, a traceback on stderr)."""
    require_seccomp()
    assert argv, "no command to run"
    spec = [f"{name}={int(err)}".encode() for name, err in rules.items()]
    return [b(SYSTEM_PYTHON), b"-I", b"-c", _LAUNCHER.encode(), *spec, b"--", *[b(a) for a in argv]]


def run_sandboxed(
    rules: Rules, argv: Sequence[PathLike], **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    """subprocess.run(seccomp_argv(rules, argv), **kwargs); output captured
    and no check unless kwargs say otherwise."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("check", False)
    return subprocess.run(seccomp_argv(rules, argv), **kwargs)
