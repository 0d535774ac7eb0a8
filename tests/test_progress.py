"""The progress bar's text (a rich Console standing in for the terminal) and
the options that turn it off (sync on a pseudo-terminal)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from tests.test_cli_output import frames, make_tree, run_on_pty
from uringsync.progress import ProgressBar, SyncProgressBar, iec
from uringsync.walker import Event


def _console() -> tuple[io.StringIO, Console]:
    buf = io.StringIO()
    return buf, Console(file=buf, force_terminal=True, width=120, color_system=None)


def test_percentage_dirs_and_iec_units_while_copying() -> None:
    buf, console = _console()
    bar = ProgressBar(console, refresh_per_second=100)
    bar.progress(Event("scanned", b"top", entries=4, bytes=4 * 1024 * 1024))  # 3 files, 1 dir
    bar.progress(Event("scanned", b"top/d", entries=2, bytes=2 * 1024 * 1024))
    bar.progress(Event("batch", files=3, bytes=3 * 1024 * 1024))
    bar._progress.refresh()
    line = frames(buf.getvalue().encode())[-1].decode()
    assert line.startswith(" 50% 3/5 files 2 dirs"), line
    assert "3.0/6.0 MiB" in line, line
    assert "MB" not in line and "kB" not in line
    bar.close(completed=False)


def test_finished_shows_100_percent_and_tenths_of_a_second() -> None:
    buf, console = _console()
    with ProgressBar(console) as bar:
        bar.progress(Event("scanned", b"top", entries=2, bytes=1536))
        bar.progress(Event("batch", files=2, bytes=1536))
    line = frames(buf.getvalue().encode())[-1].decode()
    assert "100% 2/2 files 1 dirs" in line, line
    assert "1.5/1.5 KiB" in line, line
    assert "took 0." in line and line.rstrip().endswith("s"), line


def test_iec() -> None:
    assert iec(512) == "512 B"
    assert iec(1536) == "1.5 KiB"
    assert iec(5 * 1024**3) == "5.0 GiB"


def test_sync_bar_units() -> None:
    buf, console = _console()
    with SyncProgressBar(console) as bar:
        bar.progress(Event("scanned", b"top", entries=1, bytes=2048))
        bar.progress(Event("batch", files=1, bytes=2048))
        bar.progress(Event("walked"))
    line = frames(buf.getvalue().encode())[-1].decode()
    assert "2.0/2.0 KiB" in line, line


def test_sync_bar_on_a_terminal_and_quiet_options(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    rc, _out, term = run_on_pty("sync", "-a", "--no-config", f"{src}/", tmp_path / "d1")
    assert rc == 0, term
    assert b"checked" in term and b"iB" in term, term
    for opt in ("--no-progress", "-q", "--quiet"):
        dst = tmp_path / f"d{opt}"
        rc, _out, term = run_on_pty("sync", "-a", "--no-config", opt, f"{src}/", dst)
        assert rc == 0, term
        assert term == b"", (opt, term)
        assert (dst / "sub" / "deep" / "c").exists()
