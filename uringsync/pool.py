"""Worker processes: one per usable CPU, pinned to it, each with its own ring.

The walker (the parent) fills batches of jobs in shared memory and sends
each to a worker over a SOCK_SEQPACKET socket, with the directory fds the
jobs use (SCM_RIGHTS): a worker receives its own copies, so the walker may
close or re-open its directories meanwhile.  The worker binds those fds into
the jobs, runs the batch (``us_run``), closes them and answers with the
batch's index.  Each worker holds at most ``PER_WORKER`` batches, so memory
stays flat however big the tree.

Stopping: SIGINT/SIGTERM set a flag in C (``us_catch_stop``); a worker's
``us_run`` then fails its jobs in flight (unlinking partial copies) and the
worker exits.  A worker also dies with the walker (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import select
import signal
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from uringsync import engine
from uringsync.engine import Batch, Ring

if TYPE_CHECKING:
    import socket  # imported where the workers are forked and fed: a sync that forks none skips it

PER_WORKER = 2  # batches a worker holds: one running, one waiting
SCM_MAX_FD = 253  # fds in one message (kernel limit)
_RUN = struct.Struct("=cII")  # b"R", batch index, number of fds
_MORE = struct.Struct("=cI")  # b"F", batch index: more of its fds
_DONE = struct.Struct("=cIq")  # b"D", batch index, us_run's result
_BYE = struct.Struct("=cq")  # b"B", peak RSS in bytes
STOP_GRACE = 1.5  # seconds a stopping worker gets before SIGKILL
CLOSE_GRACE = 5.0  # seconds finishing workers get to say goodbye
REAP_POLL = 0.01  # seconds between checks of a worker being reaped
MSG_MAX = 64  # bytes of the longest message
UNLIMITED_FD = 1 << 30  # closerange's upper end: every fd
KIB = 1024
# a worker's exit status
EXIT_ORPHAN = 1  # the walker died before the worker could ask to die with it
EXIT_OUT_OF_STEP = 1  # a message it did not expect
EXIT_CRASHED = 70  # an exception (EX_SOFTWARE)
EXIT_BROKEN_RING = 71  # us_run failed as a whole
EXIT_STOPPED = 130  # SIGINT or SIGTERM
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def usable_cpus() -> list[int]:
    """CPUs this process may run on (its affinity mask)."""
    import psutil

    cpus = psutil.Process().cpu_affinity()
    return sorted(cpus) if cpus else list(range(os.cpu_count() or 1))


def peak_rss_self() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB  # ru_maxrss: KiB


@dataclass
class Worker:
    index: int
    pid: int
    cpu: int
    sock: socket.socket
    held: deque[int] = field(default_factory=deque)  # batch indices, in order
    alive: bool = True
    peak_rss: int = 0


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"killed by {signal.Signals(sig).name}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"wait status {status}"


class Pool:
    """The worker processes and the batches they share with the walker."""

    def __init__(
        self,
        n: int,
        queue_depth: int,
        max_inflight: int,
        batch_size: int,
        engine: str = "auto",
        lazy: bool = False,
    ) -> None:
        """``lazy``: the workers are forked when the first batch is sent (a
        sync that finds nothing to do never starts them)."""
        self.batches = [Batch(batch_size) for _ in range(n * PER_WORKER + 1)]
        self.free: list[int] = list(range(len(self.batches)))
        self.workers: list[Worker] = []
        self.dead: list[tuple[Worker, str]] = []
        self.n = n
        self.started = False
        self._args = (queue_depth, max_inflight, engine)
        if not lazy:
            self.start()

    def start(self) -> None:
        """Fork the workers (once)."""
        if self.started:
            return
        import socket

        self.started = True
        queue_depth, max_inflight, engine = self._args
        cpus = usable_cpus()
        n = self.n
        for k in range(n):
            parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            cpu = cpus[k % len(cpus)]
            # a stop that comes while the child is still Python's (its
            # after-fork hooks) would print a traceback there: the signals
            # wait, blocked, until the worker has its own handler
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            pid = -1
            try:
                pid = os.fork()
                if pid == 0:  # the worker: never returns
                    parent.close()
                    for w in self.workers:
                        w.sock.close()
                    # forked late (lazy), it would keep the walker's
                    # directory fds open for nothing: only its socket stays
                    keep = child.fileno()
                    os.closerange(3, keep)
                    os.closerange(keep + 1, UNLIMITED_FD)
                    _worker_main(
                        child, self.batches, cpu, queue_depth, max_inflight, engine, old_mask
                    )
            finally:
                if pid != 0:  # the parent, whether fork worked or not
                    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            child.close()
            self.workers.append(Worker(k, pid, cpu, parent))

    # ------------------------------------------------------------ sending
    def idle(self) -> bool:
        """Some live worker holds nothing (or none is started yet)."""
        return not self.started or any(w.alive and not w.held for w in self.workers)

    def can_send(self) -> bool:
        self.start()
        return any(w.alive and len(w.held) < PER_WORKER for w in self.workers)

    def alive(self) -> int:
        if not self.started:
            return self.n
        return sum(w.alive for w in self.workers)

    def send(self, idx: int) -> int:
        """Give batch ``idx`` to the least busy live worker (one has room);
        returns its index.  Its jobs' fds become indices; the fds travel
        with the message."""
        import socket

        self.start()
        b = self.batches[idx]
        w = min(
            (w for w in self.workers if w.alive and len(w.held) < PER_WORKER),
            key=lambda w: len(w.held),
        )
        fd_list = b.pack_fds()
        n = len(fd_list)
        w.held.append(idx)
        try:
            socket.send_fds(w.sock, [_RUN.pack(b"R", idx, n)], fd_list[:SCM_MAX_FD])
            for k in range(SCM_MAX_FD, n, SCM_MAX_FD):
                socket.send_fds(w.sock, [_MORE.pack(b"F", idx)], fd_list[k : k + SCM_MAX_FD])
        except OSError:
            # Gone, or alive but unable to take the batch whole (say
            # ETOOMANYREFS): either way it must not run half of it.  Killed,
            # it is reaped by wait(), which hands its batches back.
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGKILL)
        return w.index

    # ---------------------------------------------------------- receiving
    def wait(self, wake_fd: int, timeout: float | None) -> tuple[list[int], list[Worker]]:
        """Wait for finished batches.  Returns their indices, and workers
        that died (their ``held`` batches are still theirs to hand back)."""
        socks = {w.sock.fileno(): w for w in self.workers if w.alive}
        rfds = list(socks) + ([wake_fd] if wake_fd >= 0 else [])
        ready = _readable(rfds, timeout)
        done: list[int] = []
        died: list[Worker] = []
        for fd in ready:
            w = socks.get(fd)
            if w is None:
                continue
            try:
                msg = w.sock.recv(MSG_MAX)
            except OSError:
                msg = b""
            if msg[:1] == b"D":
                _, idx, _ = _DONE.unpack(msg)
                w.held.remove(idx)
                done.append(idx)
            elif msg[:1] == b"B":
                w.peak_rss = _BYE.unpack(msg)[1]
            else:  # EOF: the worker is gone
                w.alive = False
                w.sock.close()
                _, status = os.waitpid(w.pid, 0)
                self.dead.append((w, describe_status(status)))
                died.append(w)
        return done, died

    # ------------------------------------------------------------- ending
    def close(self) -> None:
        """Ask every worker to finish (they are idle) and reap them."""
        for w in self.workers:
            if w.alive:
                with contextlib.suppress(OSError):
                    w.sock.send(b"Q")
        deadline = time.monotonic() + CLOSE_GRACE
        for w in self.workers:
            if not w.alive:
                continue
            w.sock.settimeout(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(OSError):
                msg = w.sock.recv(MSG_MAX)
                if msg[:1] == b"B":
                    w.peak_rss = _BYE.unpack(msg)[1]
            w.sock.close()
            w.alive = False
            self._reap(w, deadline)

    def stop(self) -> None:
        """Stop now: SIGTERM every worker, SIGKILL what is left after
        STOP_GRACE seconds, and reap them all."""
        for w in self.workers:
            if w.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for w in self.workers:
            if w.alive:
                w.alive = False
                self._reap(w, deadline)
                w.sock.close()

    @staticmethod
    def _reap(w: Worker, deadline: float) -> None:
        while True:
            pid, _ = os.waitpid(w.pid, os.WNOHANG)
            if pid:
                return
            if time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signal.SIGKILL)
                os.waitpid(w.pid, 0)
                return
            time.sleep(REAP_POLL)

    def peak_rss(self) -> int:
        return sum(w.peak_rss for w in self.workers)


def _worker_main(
    sock: socket.socket,
    batches: list[Batch],
    cpu: int,
    queue_depth: int,
    max_inflight: int,
    engine_name: str,
    mask: set[int | signal.Signals],
) -> None:
    """A worker's whole life; ends the process.  SIGINT and SIGTERM come
    blocked (Pool.__init__); ``mask`` is the mask to restore once the C
    handler is in place."""
    code = 0
    try:
        engine.die_with_parent()
        if os.getppid() == 1:  # the parent died before prctl
            os._exit(EXIT_ORPHAN)
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        engine.clear_stop()
        engine.catch_stop(wake_w)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        with contextlib.suppress(OSError):  # pinning is an optimisation
            os.sched_setaffinity(0, {cpu})
        ring = Ring(queue_depth=queue_depth, engine=engine_name)
        ring.set_max_inflight(max_inflight)
        code = _serve(sock, batches, ring, wake_r)
        rss = peak_rss_self()
        with contextlib.suppress(OSError):
            sock.send(_BYE.pack(b"B", rss))
    except BaseException:  # a worker must never return into the parent's code
        code = EXIT_CRASHED
    finally:
        os._exit(code)


def _readable(fds: list[int], timeout: float | None) -> list[int]:
    """The fds of ``fds`` ready to read (or at EOF) within ``timeout``
    seconds (None: until one is).  poll, not select: the walker may hold
    more than 1,024 directories open when a worker is started, so its
    socket's number can be beyond what select takes."""
    p = select.poll()
    for fd in fds:
        p.register(fd, select.POLLIN)
    ms = -1 if timeout is None else max(0, int(timeout * 1000))
    return [fd for fd, _ in p.poll(ms)]


def _serve(sock: socket.socket, batches: list[Batch], ring: Ring, wake_r: int) -> int:
    import socket

    while True:
        if engine.stop_requested():
            return EXIT_STOPPED
        ready = _readable([sock.fileno(), wake_r], None)
        if engine.stop_requested():
            return EXIT_STOPPED
        if sock.fileno() not in ready:
            continue
        msg, fds, _, _ = socket.recv_fds(sock, MSG_MAX, SCM_MAX_FD, socket.MSG_CMSG_CLOEXEC)
        if not msg or msg[:1] == b"Q":
            return 0
        _, idx, nfds = _RUN.unpack(msg)
        while len(fds) < nfds:
            cont, more, _, _ = socket.recv_fds(sock, MSG_MAX, SCM_MAX_FD, socket.MSG_CMSG_CLOEXEC)
            fds.extend(more)
            if len(cont) != _MORE.size or _MORE.unpack(cont) != (b"F", idx) or not more:
                for fd in fds:
                    os.close(fd)
                return EXIT_OUT_OF_STEP  # die: the walker hands the batch on
        b = batches[idx]
        try:
            ret = b.bind_fds(fds)
            if ret == 0:
                ring.set_copy_range_min(int(b.c.copy_range_min))
                ret = ring.run_raw(b)
            b.c.result = ret
        finally:
            for fd in fds:
                os.close(fd)
        if ret < 0 and not engine.stop_requested():
            return EXIT_BROKEN_RING  # die, so the walker hands the batch on
        sock.send(_DONE.pack(b"D", idx, ret))
        if ret == -errno.EINTR and engine.stop_requested():  # stopped
            return EXIT_STOPPED
