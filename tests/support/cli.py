"""Running `python -m uringsync` and GNU cp, and checking what they print."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from tests.support.base import PathLike, b


def run_cli(
    *args: PathLike,
    cwd: PathLike | None = None,
    preexec_fn: Callable[[], None] | None = None,
    nofile: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 240,
    module: str = "uringsync",
    wrap: Callable[[list[bytes]], list[bytes]] | None = None,
) -> tuple[int, bytes, bytes]:
    """Run `python -m uringsync ARGS...`; bytes args are passed through as is.

    `wrap` turns that argv into the one to run (e.g. under a seccomp filter:
    `wrap=lambda argv: seccomp_argv(rules, argv)`, see support/sandbox.py)."""

    def pre() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        if preexec_fn is not None:
            preexec_fn()

    argv: list[bytes] = [b(sys.executable), b"-m", module.encode(), *[b(a) for a in args]]
    if wrap is not None:
        argv = wrap(argv)
    e = dict(os.environ)
    e.pop("PYTHONWARNINGS", None)
    if env:
        e.update(env)
    p = subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        preexec_fn=pre if (nofile is not None or preexec_fn is not None) else None,
        env=e,
        timeout=timeout,
        check=False,
    )
    return p.returncode, p.stdout, p.stderr


def run_cp(*args: PathLike, cwd: PathLike | None = None) -> tuple[int, bytes, bytes]:
    p = subprocess.run(["cp", *[b(a) for a in args]], cwd=cwd, capture_output=True, check=False)
    return p.returncode, p.stdout, p.stderr


def check_cp(*args: PathLike, cwd: PathLike | None = None) -> None:
    rc, _out, err = run_cp(*args, cwd=cwd)
    assert rc == 0, f"cp {args!r} failed: {err!r}"


def check_cli(*args: PathLike, **kw: Any) -> tuple[bytes, bytes]:
    rc, out, err = run_cli(*args, **kw)
    assert rc == 0, f"uringsync {args!r} exited {rc}: stdout={out!r} stderr={err!r}"
    assert b"Traceback" not in err, err
    return out, err


TRY_HELP = b"Try 'uringsync cp --help' for more information."


def stderr_lines(err: bytes) -> list[bytes]:
    """The messages on stderr (cp's usage hint after a usage error left out)."""
    return [ln for ln in err.splitlines() if ln.strip() and ln != TRY_HELP]


def assert_error_lines(err: bytes, n: int | None = None) -> list[bytes]:
    """Every stderr line is a `uringsync: ...` message; no traceback."""
    assert b"Traceback" not in err, "python traceback on stderr:\n" + err.decode(errors="replace")
    lines = stderr_lines(err)
    for ln in lines:
        assert ln.startswith(b"uringsync: "), f"stderr line not a uringsync message: {ln!r}"
    if n is not None:
        assert len(lines) == n, f"expected {n} stderr line(s), got {len(lines)}: {err!r}"
    return lines
