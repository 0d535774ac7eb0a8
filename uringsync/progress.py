"""The progress bar of ``uringsync cp`` on a terminal (stderr), with rich.

    with ProgressBar() as bar:
        api.copy(srcs, dst, progress=bar.progress, on_error=bar.error)

The walker reports events (:class:`uringsync.walker.Event`): ``scanned`` when
a source directory was listed (its entries and the bytes of its regular files
join the totals, which grow as the walk goes on, as with rsync's incremental
recursion) and ``batch`` when a batch of jobs finished.  The callback only adds
to counters and rich's speed samples; rich's own thread redraws the bar a few
times a second, so thousands of events a second cost next to nothing.

The line shows: entries done / entries found, a bar (bytes when the walker
reports the sizes of what it found, else entries), bytes copied (/ found),
the rate, and the time left (estimated from rich's recent speed, the slower of
the bytes and the entries estimates); once finished, the time taken.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task
from rich.progress_bar import ProgressBar as _RichBar
from rich.text import Text

from uringsync.walker import Event, FileError

__all__ = ["ProgressBar"]


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _elapsed(seconds: float) -> str:
    """The time taken, to the tenth of a second: ``0.4s``, ``1:02.3``."""
    tenths = round(seconds * 10)
    s, t = divmod(tenths, 10)
    if s < 60:
        return f"{s}.{t}s"
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}.{t}"
        if s >= 3600
        else (f"{s // 60}:{s % 60:02d}.{t}")
    )


IEC_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def iec(n: float, precision: int = 1) -> str:
    """``n`` bytes in IEC units (powers of 1024): ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    value = float(n)
    for unit in IEC_UNITS:
        if abs(value) < 1023.95 or unit == IEC_UNITS[-1]:
            break
        value /= 1024
    return f"{value:.0f} B" if unit == "B" else f"{value:,.{precision}f} {unit}"


def _iec_unit(n: float) -> tuple[int, str]:
    unit = 1
    for suffix in IEC_UNITS:
        if n < unit * 1024 or suffix == IEC_UNITS[-1]:
            return unit, suffix
        unit *= 1024
    raise AssertionError(n)  # pragma: no cover


class ProgressBar:
    """A one-line progress display on ``console`` (default: stderr).

    A context manager; the display starts with the first event (so a usage
    error refused before copying prints no bar) and is stopped on exit, also
    when the copy raised.
    """

    def __init__(self, console: Console | None = None, *, refresh_per_second: float = 4) -> None:
        self.console = console if console is not None else Console(stderr=True)
        # what was found (grows as directories are listed) and what is done
        self.entries_found = 0
        self.bytes_found = 0
        self.sizes_known = False  # the walker reports the bytes of what it lists
        self.dirs_listed = 0
        self.dirs_found = 0  # directories among the entries found
        self.done_items = 0  # files, links, symlinks and specials copied
        self.bytes_done = 0
        self.failed = 0
        self.finished = False
        self._started = False
        self._progress = Progress(
            _EntriesColumn(self),
            _BarColumn(self, bar_width=30),
            _BytesColumn(self),
            _RateColumn(self),
            _EtaColumn(self),
            console=self.console,
            refresh_per_second=refresh_per_second,
            redirect_stdout=False,  # stdout may carry --json; nothing else writes to it
            redirect_stderr=True,  # a stray write to stderr goes above the bar
        )
        # rich tasks without totals: rich keeps the speed samples, the totals
        # are ours (a rich task whose completed reaches its total is marked
        # finished for good, but here the totals grow)
        self._bytes = self._progress.add_task("bytes", total=None)
        self._items = self._progress.add_task("entries", total=None, visible=False)
        self.bytes_task, self.items_task = self._progress.tasks

    # ------------------------------------------------------------ counters
    @property
    def entries_done(self) -> int:
        """Entries done: copied or failed, and directories listed."""
        return self.done_items + self.failed + self.dirs_listed

    @property
    def files_done(self) -> int:
        """Non-directory entries done: copied or failed."""
        return self.done_items + self.failed

    @property
    def files_total(self) -> int:
        # the entries found less the directories among them, when the
        # walker tells them apart; else every entry not yet listed as a dir
        found = self.entries_found - max(self.dirs_found, self.dirs_listed - 1, 0)
        return max(found, self.files_done)

    @property
    def dirs_total(self) -> int:
        return max(self.dirs_found + 1, self.dirs_listed)

    @property
    def fraction(self) -> float | None:
        """Done / found (bytes when sizes are known, else entries); None before any event."""
        if self.finished:
            return 1.0
        if self.sizes_known and self.bytes_found:
            return min(1.0, self.bytes_done / self.bytes_found)
        if self.entries_total:
            return min(1.0, self.entries_done / self.entries_total)
        return None

    @property
    def entries_total(self) -> int:
        # a command-line directory is listed but is no entry of a listed one
        return max(self.entries_found, self.entries_done)

    # ----------------------------------------------------------- callbacks
    def progress(self, ev: Event) -> None:
        """The ``progress`` callback for :func:`uringsync.api.copy`."""
        if ev.kind == "batch":
            self.done_items += ev.files
            self.bytes_done += ev.bytes
            self._progress.update(self._items, advance=ev.files)
            self._progress.update(self._bytes, advance=ev.bytes)
        elif ev.kind == "scanned":
            self.dirs_listed += 1
            self.entries_found += ev.entries
            self.dirs_found += getattr(ev, "dirs", 0) or 0
            if ev.bytes:
                self.bytes_found += ev.bytes
                self.sizes_known = True
            self._progress.update(self._items, advance=1)
        if not self._started:
            self._start()

    def error(self, e: FileError) -> None:
        """The ``on_error`` callback: one line on stderr, above the bar."""
        self.failed += 1
        self.print(f"uringsync: {e.message}")

    def print(self, line: str) -> None:
        """Print a line on the console without disturbing the bar."""
        self.console.print(
            line, markup=False, highlight=False, emoji=False, soft_wrap=True, style=None
        )

    # ------------------------------------------------------- start / stop
    def _start(self) -> None:
        self._started = True
        self._progress.start()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(completed=exc_type is None)

    def close(self, completed: bool = True) -> None:
        """Draw the last state (with the time taken if ``completed``) and stop."""
        if not self._started:
            return
        self._started = False
        self.finished = completed
        self._progress.stop()  # draws once more, then restores the cursor


class _EntriesColumn(ProgressColumn):
    def __init__(self, bar: ProgressBar) -> None:
        self.bar = bar
        super().__init__()

    def render(self, task: Task) -> Text:
        b = self.bar
        frac = b.fraction
        pct = "  ?%" if frac is None else f"{frac * 100:3.0f}%"
        return Text(
            f"{pct} {b.files_done:,}/{b.files_total:,} files {b.dirs_listed:,}"
            + (f"/{b.dirs_total:,}" if b.dirs_found else "")
            + " dirs",
            style="progress.download",
        )


class _BarColumn(BarColumn):
    def __init__(self, bar: ProgressBar, bar_width: int) -> None:
        self.bar = bar
        super().__init__(bar_width=bar_width)

    def render(self, task: Task) -> _RichBar:
        b = self.bar
        if b.sizes_known and b.bytes_found:
            total, done = b.bytes_found, b.bytes_done
        elif b.entries_total:
            total, done = b.entries_total, b.entries_done
        else:
            total, done = 0, 0
        if b.finished:
            total = done = max(done, 1)  # everything there was to do is done
        return _RichBar(
            total=max(done, total) if total else None,
            completed=done,
            width=self.bar_width,
            pulse=not total,
            animation_time=task.get_time(),
            style=self.style,
            complete_style=self.complete_style,
            finished_style=self.finished_style,
            pulse_style=self.pulse_style,
        )


class _BytesColumn(ProgressColumn):
    """``12.3/45.6 MiB``, or ``12.3 MiB`` while sizes are not known (IEC units)."""

    def __init__(self, bar: ProgressBar) -> None:
        self.bar = bar
        super().__init__()

    def render(self, task: Task) -> Text:
        b = self.bar
        done = b.bytes_done
        total = max(b.bytes_found, done) if b.sizes_known else None
        unit, suffix = _iec_unit(done if total is None else total)
        precision = 0 if unit == 1 else 1
        text = f"{done / unit:,.{precision}f}"
        if total is not None:
            text += f"/{total / unit:,.{precision}f}"
        return Text(f"{text} {suffix}", style="progress.download")


class _RateColumn(ProgressColumn):
    """Bytes per second over rich's recent samples; the average over the
    whole run until there are two samples, and once finished."""

    def __init__(self, bar: ProgressBar) -> None:
        self.bar = bar
        super().__init__()

    def render(self, task: Task) -> Text:
        speed = None if self.bar.finished else task.speed
        if speed is None:
            elapsed = task.elapsed or 0.0
            if elapsed <= 0:
                return Text("? B/s", style="progress.data.speed")
            speed = self.bar.bytes_done / elapsed
        return Text(f"{iec(float(speed))}/s", style="progress.data.speed")


class _EtaColumn(ProgressColumn):
    """``eta 0:01:23`` (``eta -:--:--`` until there is a rate), then ``took 5.2s``."""

    def __init__(self, bar: ProgressBar) -> None:
        self.bar = bar
        super().__init__()

    def render(self, task: Task) -> Text:
        b = self.bar
        if b.finished:
            return Text(f"took {_elapsed(task.elapsed or 0.0)}", style="progress.elapsed")
        estimates: list[float] = []
        items = b.items_task
        if items.speed:
            estimates.append(max(0, b.entries_total - b.entries_done) / items.speed)
        if b.sizes_known and task.speed:
            estimates.append(max(0, b.bytes_found - b.bytes_done) / task.speed)
        if not estimates:
            return Text("eta -:--:--", style="progress.remaining")
        return Text(f"eta {_hms(max(estimates))}", style="progress.remaining")


class SyncProgressBar(ProgressBar):
    """``uringsync sync``'s line: entries checked, data transferred and
    entries deleted so far; the totals are provisional (``ir-chk``, as
    rsync's incremental recursion says) until the walk has seen everything
    (``to-chk``), then final."""

    def __init__(self, console: Console | None = None, *, refresh_per_second: float = 4) -> None:
        super().__init__(console, refresh_per_second=refresh_per_second)
        self.deleted = 0
        self.walked = False  # the walk is over: the totals are final
        self._progress.columns = (
            _SyncColumn(self),
            _BytesColumn(self),
            _RateColumn(self),
        )

    def progress(self, ev: Event) -> None:
        if ev.kind == "deleted":
            self.deleted += ev.entries
        elif ev.kind == "walked":
            self.walked = True
        super().progress(ev)


class _SyncColumn(ProgressColumn):
    def __init__(self, bar: SyncProgressBar) -> None:
        self.bar = bar
        super().__init__()

    def render(self, task: Task) -> Text:
        b = self.bar
        state = "to-chk" if b.walked else "ir-chk"
        return Text(
            f"checked {b.entries_found:,}{'' if b.walked else '+'} ({state}) "
            f"transferred {b.done_items:,} deleted {b.deleted:,}",
            style="progress.download",
        )
