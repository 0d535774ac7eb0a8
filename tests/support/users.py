"""Running as another user or in a forked child, and a directory that user
nobody can use."""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from tests.support.base import NOBODY


class ChildError(Exception):
    """An exception raised in an as_user child that could not be pickled."""


_warmed = False


def _warm_imports() -> None:
    """Import, before forking, everything the child may need.

    The interpreter's library lives under /root (mode 700), so a module that is
    first imported in the child (as nobody) cannot be read: do it here.
    """
    global _warmed
    if _warmed:
        return
    import traceback  # noqa: F401

    import psutil  # noqa: F401  (uringsync.pool imports it when a copy starts)

    import uringsync

    with contextlib.suppress(ImportError):
        from typer.testing import CliRunner

        import uringsync.cli

        # runs the lazy imports of typer/click (help option, formatting, ...)
        CliRunner().invoke(uringsync.cli.app, ["cp", "--help"])
        CliRunner().invoke(uringsync.cli.app, ["cp", "--bogus-option"])
    _warmed = True


def as_user(fn: Callable[[], Any], uid: int = NOBODY, gid: int = NOBODY) -> Any:
    """Run fn() in a forked child as uid/gid (default nobody); return its result.

    No exec: the child uses the modules already imported in this process
    (/root is mode 700, so a fresh interpreter as nobody could not start).
    The child's exception is re-raised here.
    """

    def become() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return in_child(fn, setup=become)


def in_child(fn: Callable[[], Any], setup: Callable[[], None] | None = None) -> Any:
    """Run setup() then fn() in a forked child; return fn's (picklable) result
    or re-raise its exception.  For tests that change process-wide state
    (rlimits, signals, credentials)."""
    _warm_imports()
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            try:
                if setup is not None:
                    setup()
                res: tuple[str, Any] = ("ok", fn())
            except BaseException as e:
                import traceback

                tb = traceback.format_exc()
                try:
                    pickle.dumps(e)
                    res = ("err", (e, tb))
                except Exception:
                    res = ("err", (ChildError(f"{type(e).__name__}: {e}"), tb))
            try:
                data = pickle.dumps(res)
            except Exception as e:
                data = pickle.dumps(("err", (ChildError(f"unpicklable result: {e!r}"), "")))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise ChildError(f"child died without a result (wait status {status})")
    kind, val = pickle.loads(data)
    if kind == "ok":
        return val
    exc, tb = val
    raise exc from ChildError("in the child process:\n" + tb)


@contextlib.contextmanager
def world_tmpdir() -> Iterator[bytes]:
    """A 0777 directory under /tmp (pytest's tmp_path is 0700: nobody can't enter)."""
    d = tempfile.mkdtemp(dir="/tmp", prefix="uringsync-test-").encode()
    os.chmod(d, 0o777)
    try:
        yield d
    finally:
        _force_rmtree(d)


def _force_rmtree(d: bytes) -> None:
    def onexc(func: Any, path: Any, exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        with contextlib.suppress(OSError):
            func(path)

    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(d, onexc=onexc) if sys.version_info >= (3, 12) else shutil.rmtree(
            d, onerror=onexc
        )


def api_copy(srcs: list[bytes], dst: bytes, **kw: Any) -> Any:
    """uringsync.copy(...) in a forked child (a crash there can't take pytest down)."""

    def run() -> Any:
        import uringsync

        return uringsync.copy(srcs, dst, archive=True, **kw)

    return in_child(run)
