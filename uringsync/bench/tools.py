"""The tools timed and how: their commands, what this uringsync's ``cp``
takes, running a command (or a pipe) timed with its peak RSS, and one timed,
checked copy (:func:`run_one`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uringsync.bench.base import BenchError, KiB, run_quiet
from uringsync.bench.sources import Source
from uringsync.bench.verify import check_copy
from uringsync.bench.workspace import Workspace, drop_caches

# uringsync-threads: uringsync cp -a --engine threads (the backend for where
# io_uring is blocked), timed only when this uringsync's cp has --engine
THREADS_TOOL = "uringsync-threads"
TOOLS = ("uringsync", THREADS_TOOL, "cp", "rsync", "tar")
# the sync workloads' tool: uringsync sync -aHAX [--delete] SRC/ DST/ (or a stand-in)
SYNC_TOOL = "uringsync-sync"
CACHES = ("cold", "warm")
STDERR_KEPT = 2000  # bytes of a run's stderr kept in its record (the end)
ERRORS_KEPT = 10  # errors kept from uringsync's --json object
CLEAR_REFS_PEAK_RSS = "5"  # to /proc/self/clear_refs: reset the peak resident size
BIG_NAME = b"big.bin"  # the bigfile source's one file
# the device's own limit (bigfile-fio): global options of the two jobs
FIO_ARGS = ("--ioengine=io_uring", "--direct=1", "--bs=1M", "--iodepth=32", "--minimal")


@dataclass
class Caps:
    """What this uringsync's ``cp`` takes (other changes add --json, -j and --engine),
    and whether it has ``sync`` (with ``--json``)."""

    json: bool
    jobs: bool
    engine: bool = False
    sync: bool = False
    sync_json: bool = False


def probe_uringsync() -> Caps:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}  # plain, unwrapped
    p = subprocess.run(
        [sys.executable, "-m", "uringsync", "cp", "--help"],
        capture_output=True,
        check=False,
        env=env,
    )
    if p.returncode != 0:
        raise BenchError(
            f"`{sys.executable} -m uringsync cp --help` failed ({p.returncode}): "
            + p.stderr.decode(errors="replace").strip()
        )
    text = p.stdout.decode(errors="replace")
    q = subprocess.run(
        [sys.executable, "-m", "uringsync", "sync", "--help"],
        capture_output=True,
        check=False,
        env=env,
    )
    sync_text = q.stdout.decode(errors="replace") if q.returncode == 0 else ""
    return Caps(
        json="--json" in text,
        jobs="--jobs" in text,
        engine="--engine" in text,
        sync=q.returncode == 0,
        sync_json="--json" in sync_text,
    )


Argv = list[str | bytes]


def tool_commands(
    tool: str,
    src: Path,
    dst: Path,
    caps: Caps,
    jobs: int | None = None,
    extra: Sequence[str] = (),
) -> tuple[list[Argv], Path]:
    """The command(s) (several: a pipe) for one copy, and where the copy ends up.
    ``extra``: more options for uringsync cp (e.g. --direct)."""
    s, d = os.fsencode(src), os.fsencode(dst)
    if tool in ("uringsync", THREADS_TOOL):
        argv: Argv = [sys.executable, "-m", "uringsync", "cp", "-a", *extra]
        if tool == THREADS_TOOL:
            argv += ["--engine", "threads"]
        if caps.json:
            argv.append("--json")
        if jobs is not None:
            argv += ["-j", str(jobs)]
        return [[*argv, s, d]], dst
    if tool == "cp":
        return [["cp", "-a", s, d]], dst
    if tool == "rsync":
        return [["rsync", "-aHAX", s + b"/", d + b"/"]], dst
    if tool == "tar":
        name = os.fsencode(src.name)
        create: Argv = [
            "tar",
            "--xattrs",
            "--acls",
            "-C",
            os.fsencode(src.parent),
            "-cf",
            "-",
            name,
        ]
        extract: Argv = ["tar", "--xattrs", "--acls", "-C", d, "-xpf", "-"]
        return [create, extract], dst / src.name
    raise ValueError(f"unknown tool {tool!r}")


def sync_commands(
    tool: str,
    src: Path,
    dst: Path,
    caps: Caps,
    *,
    delete: bool = False,
    stand_in: Sequence[str] = (),
    check: str = "",
) -> list[Argv]:
    """The command of one run of a sync workload: ``uringsync sync -aHAX``
    (``stand_in`` -aHAX instead, e.g. rsync, where this uringsync has no sync),
    ``rsync -aHAX`` (both with ``--delete`` if asked and SRC/ DST/), or
    ``uringsync cp -a SRC DST``.  ``check``: "verify" (the verify workload):
    the sync tool is ``uringsync verify SRC DST``, rsync ``rsync -naHAXc
    --delete``; "cp-verify": ``uringsync cp -a --verify SRC DST``, and
    ``cp -a SRC DST`` followed by ``rsync -naHAXc --delete SRC/ DST/``;
    "bigfile-fio": ``uringsync cp -a SRC DST`` then ``sync``, and fio reading
    SRC's ``big.bin`` while it writes DST's (``FIO_ARGS``) then ``sync``;
    "hash": ``uringsync sync -naHAXc SRC/ DST/``, and ``xxh128sum`` of both
    ``big.bin``."""
    if tool == "uringsync":
        return tool_commands("uringsync", src, dst, caps)[0]
    s, d = os.fsencode(src) + b"/", os.fsencode(dst) + b"/"
    argv: Argv
    if check == "verify":
        if tool == SYNC_TOOL:
            return [[sys.executable, "-m", "uringsync", "verify", s, d]]
        return [["rsync", "-naHAXc", "--delete", s, d]]
    if check == "bigfile-fio":
        plain_s, plain_d = os.fsencode(src), os.fsencode(dst)
        if tool == SYNC_TOOL:
            script = '"$0" -m uringsync cp -a "$1" "$2" && sync'
            return [["sh", "-c", script, sys.executable, plain_s, plain_d]]
        size = os.stat(os.path.join(plain_s, BIG_NAME)).st_size
        fio: Argv = ["fio", *FIO_ARGS, f"--size={size}"]
        fio += ["--name=read", "--rw=read", b"--filename=" + os.path.join(plain_s, BIG_NAME)]
        fio += ["--name=write", "--rw=write", b"--filename=" + os.path.join(plain_d, BIG_NAME)]
        script = 'mkdir "$0" && "$@" >/dev/null && sync'
        return [["sh", "-c", script, plain_d, *fio]]
    if check == "hash":
        if tool == SYNC_TOOL:
            return [[sys.executable, "-m", "uringsync", "sync", "-naHAXc", s, d]]
        return [["xxh128sum", s + BIG_NAME, d + BIG_NAME]]
    if check == "cp-verify":
        plain_s, plain_d = os.fsencode(src), os.fsencode(dst)
        if tool == SYNC_TOOL:
            return [[sys.executable, "-m", "uringsync", "cp", "-a", "--verify", plain_s, plain_d]]
        script = 'cp -a "$1" "$2" && rsync -naHAXc --delete "$1/" "$2/"'
        return [["sh", "-c", script, "sh", plain_s, plain_d]]
    if tool == SYNC_TOOL and stand_in:
        argv = [*stand_in, "-aHAX"]
    elif tool == SYNC_TOOL:
        argv = [sys.executable, "-m", "uringsync", "sync", "-aHAX"]
        if caps.sync_json:
            argv.append("--json")
    elif tool == "rsync":
        argv = ["rsync", "-aHAX"]
    else:
        raise ValueError(f"unknown sync tool {tool!r}")
    if delete:
        argv.append("--delete")
    return [[*argv, s, d]]


def describe(cmds: list[Argv]) -> str:
    def word(a: str | bytes) -> str:
        return a if isinstance(a, str) else a.decode(errors="backslashreplace")

    return " | ".join(" ".join(word(a) for a in argv) for argv in cmds)


@dataclass
class Outcome:
    exit_codes: list[int]
    seconds: float
    maxrss: list[int]  # ru_maxrss of each process (with its children), bytes
    stdout: bytes
    stderr: bytes

    @property
    def exit_code(self) -> int:
        return next((c for c in self.exit_codes if c != 0), 0)


_gnu_time: list[str | None] = []


def gnu_time() -> str | None:
    """GNU time, if installed: it forks each tool from a 2 MB process, so the
    tool's ru_maxrss is its own (see ``execute``)."""
    if not _gnu_time:
        path = shutil.which("time")
        if path:
            p = run_quiet([path, "--version"])
            if b"GNU" not in p.stdout + p.stderr:
                path = None
        _gnu_time.append(path)
    return _gnu_time[0]


def rss_method() -> str:
    if gnu_time():
        return "GNU time -f %M: ru_maxrss of each process and its children, from wait4"
    return (
        "wait4 ru_maxrss of each child: an upper bound, since a child starts with the "
        "bench's own resident size (apt-get install time for exact numbers)"
    )


def _reset_peak_rss() -> None:
    """A child's ru_maxrss starts at this process's peak resident size (the
    kernel records it when the child execs): bring that peak down to now."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text(CLEAR_REFS_PEAK_RSS)


def execute(cmds: list[Argv]) -> Outcome:
    """Run the commands (each piped into the next), timed with perf_counter
    from the first start to the last exit; peak RSS of each from wait4.

    The peak RSS a child reports includes the resident size of the process
    that forked it (Linux keeps the larger at exec), so each command is started
    by GNU time when it is installed, which forks it from a small process and
    writes its ru_maxrss to a file; else by this process, after resetting its
    own peak."""
    timer = gnu_time()
    _reset_peak_rss()
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory(prefix="uringsync-bench-") as tmp,
    ):
        rss_files = [os.path.join(tmp, f"rss{i}") for i in range(len(cmds))]
        procs: list[subprocess.Popen[bytes]] = []
        t0 = time.perf_counter()
        try:
            stdin: Any = subprocess.DEVNULL
            for i, argv in enumerate(cmds):
                last = i == len(cmds) - 1
                if timer:
                    argv = [timer, "-f", "%M", "-o", rss_files[i], "--", *argv]
                p = subprocess.Popen(
                    argv, stdin=stdin, stdout=out if last else subprocess.PIPE, stderr=err
                )
                if p.stdout is not None:
                    stdin = p.stdout
                procs.append(p)
                if i > 0 and procs[i - 1].stdout is not None:
                    procs[i - 1].stdout.close()  # type: ignore[union-attr]
        except OSError as e:
            for p in procs:
                p.kill()
                p.wait()
            return Outcome([127], time.perf_counter() - t0, [0], b"", str(e).encode())
        codes, rss = [], []
        for p in procs:
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            codes.append(p.returncode)
            rss.append(ru.ru_maxrss * KiB)
        took = time.perf_counter() - t0
        if timer:
            for i, path in enumerate(rss_files):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    # "Command exited with non-zero status N" may come first
                    rss[i] = int(Path(path).read_text().split()[-1]) * KiB
        out.seek(0)
        err.seek(0)
        return Outcome(codes, took, rss, out.read(), err.read())


def prepare(cache: str) -> None:
    """Right before a timed run: write back what earlier runs left dirty; cold:
    also drop the caches."""
    if cache == "cold":
        drop_caches()
    else:
        os.sync()


@dataclass
class Run:
    workload: str
    cache: str
    round: int
    tool: str  # one of TOOLS, or "uringsync-jN"
    jobs: int | None
    command: str
    seconds: float
    sync_seconds: float  # the sync right after (not in ``seconds``)
    exit_code: int
    exit_codes: list[int]
    peak_rss: int | None  # uringsync: from --json (all processes); others: wait4
    peak_rss_source: str | None
    maxrss_wait4: list[int]
    verified: bool | None
    verify_error: str | None
    copy: str
    stderr: str
    result: dict[str, Any] | None  # uringsync's --json object (errors cut to ERRORS_KEPT)
    detail: dict[str, Any] | None = None  # sync workloads: the destination's changes, load

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.verified is not False


def uringsync_result(stdout: bytes) -> dict[str, Any] | None:
    """The object ``uringsync cp --json`` printed (its last JSON line)."""
    for line in reversed(stdout.splitlines()):
        if line.strip().startswith(b"{"):
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    return obj
    return None


def uringsync_peak_rss(stdout: bytes) -> int | None:
    """``peak_rss`` from ``uringsync cp --json``: bytes, summed over its processes."""
    res = uringsync_result(stdout)
    rss = res.get("peak_rss") if res else None
    return rss if isinstance(rss, int) else None


def run_one(
    ws: Workspace,
    source: Source,
    tool: str,
    cache: str,
    caps: Caps,
    *,
    round_no: int = 0,
    jobs: int | None = None,
    verify: str = "count",
    label: str | None = None,
    extra: Sequence[str] = (),
) -> Run:
    """One timed copy of ``source`` to a fresh destination, checked afterwards."""
    base = tool if tool in TOOLS else "uringsync"  # the -j sweep's uringsync-jN
    us = base.startswith("uringsync")
    dst = ws.destination(label or f"{source.name}-{cache}-r{round_no + 1}-{tool}")
    cmds, copy = tool_commands(base, source.path, dst, caps, jobs, extra)
    if base == "tar":
        dst.mkdir()
    prepare(cache)
    out = execute(cmds)
    if (
        us
        and caps.json
        and out.exit_code != 0
        and b"--json" in out.stderr
        and b"No such option" in out.stderr
    ):
        ws.say("uringsync cp has no --json: timing it without, peak RSS not reported")
        caps.json = False
        cmds, copy = tool_commands(base, source.path, dst, caps, jobs, extra)
        prepare(cache)
        out = execute(cmds)
    return finished_run(
        out,
        cmds,
        workload=source.name,
        cache=cache,
        round_no=round_no,
        tool=tool,
        jobs=jobs,
        source=source,
        copy=copy,
        verify=verify,
        json_out=us and caps.json,
        wait4_peak="sum" if not us else None,
    )


def finished_run(
    out: Outcome,
    cmds: list[Argv],
    *,
    workload: str,
    cache: str,
    round_no: int,
    tool: str,
    jobs: int | None,
    source: Source,
    copy: Path,
    verify: str,
    json_out: bool,
    wait4_peak: str | None,
    detail: dict[str, Any] | None = None,
) -> Run:
    """A timed command just finished: ``sync`` (timed apart), its ``--json``
    result and peak RSS when ``json_out``, else the peak wait4 saw
    (``wait4_peak``: "sum" of its processes, "max" the largest, None: not
    reported), the copy checked against the source."""
    t = time.perf_counter()
    os.sync()
    sync_seconds = time.perf_counter() - t
    result = uringsync_result(out.stdout) if json_out else None
    peak = uringsync_peak_rss(out.stdout) if json_out else None
    peak_src: str | None = "json" if peak is not None else None
    if peak is None and wait4_peak == "sum":
        peak, peak_src = sum(out.maxrss), "wait4"
    elif peak is None and wait4_peak == "max":
        peak, peak_src = max(out.maxrss), "wait4: largest process"
    if result and isinstance(result.get("errors"), list):
        result["errors"] = result["errors"][:ERRORS_KEPT]
    error = None
    if out.exit_code == 0:
        error = check_copy(source.path, copy, source.summary, verify)
    return Run(
        workload=workload,
        cache=cache,
        round=round_no + 1,
        tool=tool,
        jobs=jobs,
        command=describe(cmds),
        seconds=out.seconds,
        sync_seconds=sync_seconds,
        exit_code=out.exit_code,
        exit_codes=out.exit_codes,
        peak_rss=peak,
        peak_rss_source=peak_src,
        maxrss_wait4=out.maxrss,
        verified=None if verify == "none" or out.exit_code != 0 else error is None,
        verify_error=error,
        copy=str(copy),
        stderr=out.stderr[-STDERR_KEPT:].decode(errors="backslashreplace"),
        result=result,
        detail=detail,
    )
