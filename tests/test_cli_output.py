"""What `uringsync cp` prints: nothing but errors without a terminal, a progress
bar on a terminal's stderr, and one JSON object on stdout with --json."""

from __future__ import annotations

import base64
import errno
import fcntl
import io
import json
import os
import pty
import re
import select
import stat
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from rich.console import Console
from typer.testing import CliRunner

from tests.support.base import REPO_DIR
from tests.support.cli import assert_error_lines, run_cli
from tests.support.compare import snapshot
from tests.support.trees import rand_bytes
from uringsync.cli import app
from uringsync.progress import ProgressBar
from uringsync.quote import quote
from uringsync.walker import Event, FileError

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


class Counts(NamedTuple):
    files: int
    dirs: int
    symlinks: int
    links: int
    specials: int
    bytes: int
    regular: list[bytes]  # every name of a regular file, relative to the root

    @property
    def entries(self) -> int:
        return self.files + self.dirs + self.symlinks + self.links + self.specials


def make_tree(root: Path) -> Path:
    """A small tree with every kind of entry, a hard link and a non-UTF-8 name."""
    src = root / "src"
    (src / "sub" / "deep").mkdir(parents=True)
    (src / "emptydir").mkdir()
    (src / "a").write_bytes(rand_bytes(1000, 1))
    (src / "empty").write_bytes(b"")
    (src / "big").write_bytes(rand_bytes(300_000, 2))
    (src / "sub" / "b").write_bytes(rand_bytes(5000, 3))
    (src / "sub" / "deep" / "c").write_bytes(rand_bytes(123, 4))
    os.link(src / "a", src / "sub" / "h")
    os.symlink("a", src / "s")
    os.mkfifo(src / "fifo")
    with open(os.fsencode(src) + b"/n\xffame", "wb") as f:
        f.write(rand_bytes(77, 5))
    return src


def count(root: Path) -> Counts:
    """What a copy of ``root`` (a directory) must report, from the tree itself."""
    files = dirs = symlinks = links = specials = nbytes = 0
    seen: set[tuple[int, int]] = set()
    regular: list[bytes] = []
    broot = os.fsencode(root)
    for top, dnames, fnames in os.walk(broot):
        dirs += 1
        for name in dnames + fnames:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                continue
            if stat.S_ISLNK(st.st_mode):
                symlinks += 1
            elif stat.S_ISREG(st.st_mode):
                regular.append(os.path.relpath(path, broot))
                if (st.st_dev, st.st_ino) in seen:
                    links += 1
                else:
                    seen.add((st.st_dev, st.st_ino))
                    files += 1
                    nbytes += st.st_size
            else:
                specials += 1
    return Counts(files, dirs, symlinks, links, specials, nbytes, regular)


def invoke(*args: str) -> Any:
    """Run the typer app in this process (stdout and stderr are not terminals)."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def reflink_refused(tmp_path: Path) -> bool:
    """Whether this file system refuses clones (ext4, tmpfs): then every file of
    a ``--reflink=always`` copy fails, as root too."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "f").write_bytes(b"x")
    rc, _out, _err = run_cli("cp", "--reflink=always", probe / "f", probe / "g")
    return rc != 0


def check_json(out: str, c: Counts) -> dict[str, Any]:
    doc = json.loads(out)  # exactly one object: json.loads refuses trailing data
    assert isinstance(doc, dict)
    for key in ("files", "dirs", "symlinks", "links", "specials", "bytes", "entries"):
        want = c.entries if key == "entries" else getattr(c, key)
        assert doc[key] == want, (key, doc[key], want)
    assert doc["entries"] == sum(doc[k] for k in ("files", "dirs", "symlinks", "links", "specials"))
    assert doc["seconds"] > 0
    # both are rounded to 0.1: on a loaded machine few files/s make that more than 1e-3
    rate = {"rel": 1e-3, "abs": 0.05}
    assert doc["throughput_bytes_per_s"] == pytest.approx(doc["bytes"] / doc["seconds"], **rate)
    assert doc["files_per_s"] == pytest.approx(doc["files"] / doc["seconds"], **rate)
    assert isinstance(doc["workers"], int) and doc["workers"] >= 0
    assert isinstance(doc["peak_rss"], int) and doc["peak_rss"] >= 0
    # io_uring works here: it ran, with no notice
    assert (doc["engine"], doc["notice"]) == ("io_uring", None)
    return doc


# ---------------------------------------------------------------- --json


@pytest.mark.parametrize("jobs", [["-j", "0"], []], ids=["j0", "default"])
def test_json_counts_match_the_tree(tmp_path: Path, jobs: list[str]) -> None:
    src = make_tree(tmp_path)
    c = count(src)
    r = invoke("cp", "-a", "--json", *jobs, str(src), str(tmp_path / "dst"))
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""
    doc = check_json(r.stdout, c)
    assert doc["exit_code"] == 0
    assert doc["errors"] == []
    if jobs == ["-j", "0"]:
        assert doc["workers"] == 0
    # the counts describe a copy that happened
    assert snapshot(tmp_path / "dst").keys() == snapshot(src).keys()
    assert c.files == 6 and c.links == 1 and c.symlinks == 1 and c.specials == 1


def test_json_lists_each_error_and_stderr_still_has_them(tmp_path: Path) -> None:
    if not reflink_refused(tmp_path):
        pytest.skip("this file system clones files: --reflink=always cannot fail here")
    src = make_tree(tmp_path)
    c = count(src)
    dst = tmp_path / "dst"
    r = invoke("cp", "-a", "-j", "0", "--json", "--reflink=always", str(src), str(dst))
    assert r.exit_code == 23
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == 23
    # every regular file failed (a hard link's second name is then copied on
    # its own, and fails too); the rest was copied
    assert (
        doc["files"] == 0
        and doc["links"] == 0
        and doc["bytes"] == 0
        and doc["throughput_bytes_per_s"] == 0
    )
    assert doc["dirs"] == c.dirs and doc["symlinks"] == c.symlinks
    errs = doc["errors"]
    want = sorted(os.fsencode(dst) + b"/" + rel for rel in c.regular)
    assert sorted(base64.b64decode(e["path_b64"]) for e in errs) == want
    for e in errs:
        raw = base64.b64decode(e["path_b64"])
        assert e["path"] == raw.decode("utf-8", "backslashreplace")
        assert e["op"] == "clone"
        assert e["errno"] in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY)
        assert e["error"] == os.strerror(e["errno"])
        # the message quotes the name as cp does: one line whatever its bytes
        assert quote(raw) in e["message"] and e["error"] in e["message"]
    assert any("\\xff" in e["path"] for e in errs)  # the non-UTF-8 name, readable
    # stderr: the same failures, one line each, as without --json
    lines = assert_error_lines(r.stderr.encode("utf-8", "surrogateescape"), n=len(errs))
    assert sorted(ln.decode() for ln in lines) == sorted("uringsync: " + e["message"] for e in errs)


def test_json_verbose_lines_go_to_stderr(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    c = count(src)
    r = invoke("cp", "-a", "-v", "--json", "-j", "0", str(src), str(tmp_path / "dst"))
    assert r.exit_code == 0
    check_json(r.stdout, c)  # stdout is nothing but the object
    verbose = r.stderr.splitlines()
    assert len(verbose) == c.entries, verbose  # one line per entry, as cp -v
    assert all(" -> " in ln for ln in verbose)


def test_fatal_error_prints_no_json(tmp_path: Path) -> None:
    r = invoke("cp", "-a", "--json", str(tmp_path / "missing"), str(tmp_path / "dst"))
    assert r.exit_code == 1
    assert r.stdout == ""
    assert r.stderr.startswith("uringsync: cannot stat")
    assert not (tmp_path / "dst").exists()


def test_jobs_must_not_be_negative(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    rc, out, err = run_cli("cp", "-a", "-j", "-1", src, tmp_path / "dst")
    assert rc == 1
    assert out == b""
    assert b"invalid number '-1' for '--jobs'" in err, err
    assert not (tmp_path / "dst").exists()


# ------------------------------------------------------- no terminal, no --json


def test_silent_on_success_without_a_terminal(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    rc, out, err = run_cli("cp", "-a", src, tmp_path / "dst")  # stdout, stderr: pipes
    assert (rc, out, err) == (0, b"", b"")
    assert (tmp_path / "dst" / "big").read_bytes() == (src / "big").read_bytes()


def test_only_error_lines_without_a_terminal(tmp_path: Path) -> None:
    if not reflink_refused(tmp_path):
        pytest.skip("this file system clones files: --reflink=always cannot fail here")
    src = make_tree(tmp_path)
    c = count(src)
    rc, out, err = run_cli("cp", "-a", "-j", "0", "--reflink=always", src, tmp_path / "dst")
    assert rc == 23
    assert out == b""
    lines = assert_error_lines(err, n=len(c.regular))
    assert all(ln.startswith(b"uringsync: failed to clone ") for ln in lines)
    assert b"\x1b" not in err and b"\r" not in err  # no bar, no control sequences


# ----------------------------------------------------------------- terminal


def run_on_pty(*args: str | Path, timeout: float = 20) -> tuple[int, bytes, bytes]:
    """Run `python -m uringsync ARGS` with stderr on a pseudo-terminal (120x40)
    and stdout on a pipe; returns (exit code, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
    for var in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "PYTHONWARNINGS"):
        env.pop(var, None)
    p = subprocess.Popen(
        [sys.executable, "-m", "uringsync", *(os.fsencode(a) for a in args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=REPO_DIR,
        env=env,
    )
    os.close(slave)
    assert p.stdout is not None
    term = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the slave
                break
            if not chunk:
                break
            term += chunk
        else:
            pytest.fail(f"no EOF on the terminal within {timeout} s: {term[-2000:]!r}")
        out = p.stdout.read()
        rc = p.wait(timeout=timeout)
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
    return rc, out, term


def frames(term: bytes) -> list[bytes]:
    """The lines the terminal showed, control sequences removed: each redraw of
    the bar starts with a carriage return."""
    plain = ANSI.sub(b"", term).replace(b"\r\n", b"\n")
    return [f for ln in plain.split(b"\n") for f in ln.split(b"\r") if f.strip()]


@pytest.mark.parametrize("jobs", [["-j", "0"], []], ids=["j0", "default"])
def test_progress_bar_on_a_terminal(tmp_path: Path, jobs: list[str]) -> None:
    src = make_tree(tmp_path)
    c = count(src)
    rc, out, term = run_on_pty("cp", "-a", *jobs, src, tmp_path / "dst")
    assert rc == 0, term
    assert out == b""
    shown = frames(term)
    assert shown, term
    last = shown[-1].decode()
    # percentage, files done/found, directories, bytes, rate, time: the final state
    n = c.entries - c.dirs
    assert f"100% {n:,}/{n:,} files {c.dirs:,} dirs" in last, last
    assert re.search(r"[\d.,]+ (B|[KMG]iB)/s", last), last  # IEC units
    assert re.search(r"took \d+\.\ds", last), last  # to a tenth of a second
    assert "━" in last  # the bar itself
    assert term.endswith(b"\x1b[?25h")  # the cursor is shown again
    assert (tmp_path / "dst" / "sub" / "deep" / "c").read_bytes() == (
        src / "sub" / "deep" / "c"
    ).read_bytes()


def test_error_lines_above_the_bar_stay_whole(tmp_path: Path) -> None:
    if not reflink_refused(tmp_path):
        pytest.skip("this file system clones files: --reflink=always cannot fail here")
    src = make_tree(tmp_path)
    c = count(src)
    rc, out, term = run_on_pty("cp", "-a", "--json", "--reflink=always", src, tmp_path / "dst")
    assert rc == 23
    doc = json.loads(out)  # stdout carries the JSON while the bar is on the terminal
    assert len(doc["errors"]) == len(c.regular)
    shown = frames(term)
    messages = [ln for ln in shown if ln.startswith(b"uringsync: ")]
    # each error is one whole line, not cut by or glued to a redraw of the bar
    want = sorted(("uringsync: " + e["message"]).encode() for e in doc["errors"])
    assert sorted(messages) == want, shown
    assert b"files" in shown[-1] and b"took" in shown[-1]


def test_no_bar_with_verbose(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    c = count(src)
    rc, out, term = run_on_pty("cp", "-a", "-v", "-j", "0", src, tmp_path / "dst")
    assert rc == 0
    assert term == b""
    assert len(out.splitlines()) == c.entries


# --------------------------------------------------------- ProgressBar itself


def test_bar_redraws_on_its_own_clock_not_per_event() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, color_system=None)
    n = 20_000
    started = time.perf_counter()
    with ProgressBar(console, refresh_per_second=4) as bar:
        for _ in range(n):
            bar.progress(Event("scanned", b"d", entries=3, bytes=300))
            bar.progress(Event("batch", files=2, bytes=200))
        bar.error(FileError(b"d/x", "open", errno.EACCES, "cannot open 'd/x': Permission denied"))
    elapsed = time.perf_counter() - started
    text = buf.getvalue()
    redraws = text.count("\r")
    assert redraws < 1 + 8 * (elapsed * 4 + 2), (redraws, elapsed)  # not one per event
    assert elapsed < 2.5, elapsed  # the callback only counts
    last = frames(text.encode())[-1].decode()
    # 2 files and 1 listed directory per round, and the failed file
    assert f"100% {2 * n + 1:,}/{2 * n + 1:,} files {n:,} dirs" in last, last
    assert "3.8/5.7 MiB" in last, last  # bytes copied / bytes found, IEC
    assert "took " in last
    assert "uringsync: cannot open 'd/x': Permission denied\n" in text


def test_bar_is_stopped_when_the_copy_raises() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, color_system=None)
    with pytest.raises(KeyboardInterrupt), ProgressBar(console) as bar:
        bar.progress(Event("scanned", b"d", entries=10))
        raise KeyboardInterrupt
    text = buf.getvalue()
    assert text.endswith("\x1b[?25h")  # stopped: the cursor is back
    assert "took" not in text  # an interrupted copy does not claim to be finished
    assert "0/10 files 1 dirs" in frames(text.encode())[-1].decode()


def test_no_bar_before_the_first_event() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with ProgressBar(console):
        pass
    assert buf.getvalue() == ""
