"""The relay under both converters: an epoll loop per worker process, splice(2) between
two sockets through a pipe per direction, and the supervisor that runs one worker per core.

Python cannot move a byte stream fast enough by ``recv``/``send``; ``os.splice`` moves it
socket → pipe → socket inside the kernel, and works on MPTCP sockets. One process is one
core, so the supervisor forks workers, each with its own SO_REUSEPORT listeners: the
kernel spreads new connections over them, and a worker never shares state with another.

A direction ends when its source says EOF and the pipe is drained: its destination then
gets ``shutdown(SHUT_WR)`` (a half-close travels on as a FIN). A reset on either side
resets the other (SO_LINGER 0). The pair is closed when both directions have ended.

The supervisor says the service runs (its log line, and READY=1 to systemd for a
``Type=notify`` unit) once every worker has its listeners in its loop, not when it forked
them: a connection that comes right after start finds a worker that answers it.

Signals (the supervisor): SIGHUP reloads (the caller checks the config first, then every
worker reloads), SIGTERM drains (workers stop accepting, finish live connections for at
most the drain time, then exit).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import heapq
import itertools
import logging
import os
import resource
import select
import signal
import socket
import struct
import time
from collections.abc import Callable

from .sdnotify import sd_notify

log = logging.getLogger(__name__)

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
IN, OUT = select.EPOLLIN, select.EPOLLOUT
ERR = select.EPOLLERR | select.EPOLLHUP | select.EPOLLRDHUP
# errnos that mean the peer is gone: the other side of the pair is reset.
PEER_GONE = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                       errno.ENETUNREACH, errno.ECONNABORTED, errno.ENOTCONN})
BURST = 8
PIPE_POOL = 128  # empty pipes a worker keeps: two pipe2 and two fcntl less per connection
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # splice rounds per event, then back to the loop so one flow cannot starve others


def abort(sock: socket.socket) -> None:
    """Close with RST: SO_LINGER on, time 0."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def set_rcvbuf(sock: socket.socket, octets: int) -> None:
    """A fixed receive buffer for an MPTCP socket read by splice. Reading by splice does not
    let MPTCP's receive-buffer autotuning grow the window; with two subflows reordering
    into a small window the sender's data falls outside it (MPTcpExtNoDSSInWindow) and
    waits for MPTCP-level retransmission: transfers stalled for seconds. SO_RCVBUFFORCE
    (CAP_NET_ADMIN) passes net.core.rmem_max; without the capability, SO_RCVBUF."""
    if not octets:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, octets)
    except PermissionError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, octets)


def raise_fd_limit() -> int:
    """Every relayed connection costs two sockets and two pipes (six fds): take the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Timer:
    __slots__ = ("when", "fn", "cancelled")

    def __init__(self, when: float, fn: Callable[[], None]):
        self.when, self.fn, self.cancelled = when, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """Level-triggered epoll, one handler per fd, and one-shot timers."""

    def __init__(self) -> None:
        self.ep = select.epoll()
        self.handlers: dict[int, Callable[[int, int], None]] = {}
        self.masks: dict[int, int] = {}
        self.timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self.stopping = False
        self.pipes: list[tuple[int, int]] = []  # empty pipes kept for the next relays

    def set(self, fd: int, mask: int, handler: Callable[[int, int], None]) -> None:
        """Watch ``fd`` for ``mask`` (0: watch nothing but keep it known)."""
        old = self.masks.get(fd)
        self.handlers[fd] = handler
        if old is None:
            self.ep.register(fd, mask)
        elif old != mask:
            self.ep.modify(fd, mask)
        self.masks[fd] = mask

    def forget(self, fd: int, closing: bool = False) -> None:
        """Stop watching ``fd``. ``closing``: it is closed right after, which removes it
        from the epoll set by itself (no dup of it exists): no syscall."""
        if self.masks.pop(fd, None) is not None and not closing:
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(fd)
        self.handlers.pop(fd, None)

    def pipe(self, size: int) -> tuple[int, int]:
        """An empty non-blocking pipe, from the pool when one is there."""
        if self.pipes:
            return self.pipes.pop()
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(wfd, F_SETPIPE_SZ, size)
        return rfd, wfd

    def give_back(self, pipe: tuple[int, int], empty: bool) -> None:
        """A pipe a relay is done with: kept for the next one when it is empty, else closed."""
        if empty and len(self.pipes) < PIPE_POOL:
            self.pipes.append(pipe)
            return
        for fd in pipe:
            with contextlib.suppress(OSError):
                os.close(fd)

    def later(self, delay: float, fn: Callable[[], None]) -> Timer:
        t = Timer(time.monotonic() + delay, fn)
        heapq.heappush(self.timers, (t.when, next(self._seq), t))
        return t

    def _run_timers(self) -> float:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, t = heapq.heappop(self.timers)
            if not t.cancelled:
                try:
                    t.fn()
                except Exception:
                    log.exception("timer failed")
        while self.timers and self.timers[0][2].cancelled:
            heapq.heappop(self.timers)
        return max(0.0, self.timers[0][0] - now) if self.timers else 1.0

    def run(self, done: Callable[[], bool]) -> None:
        while not done():
            timeout = min(self._run_timers(), 1.0)
            try:
                events = self.ep.poll(timeout)
            except InterruptedError:
                continue
            for fd, ev in events:
                handler = self.handlers.get(fd)
                if handler is None:
                    continue
                try:
                    handler(fd, ev)
                except Exception:
                    log.exception("handler for fd %d failed", fd)

    def close(self) -> None:
        self.ep.close()
        for pipe in self.pipes:
            for fd in pipe:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.pipes.clear()


class _Direction:
    __slots__ = ("src", "dst", "rfd", "wfd", "pending", "eof", "done", "sent", "head")

    def __init__(self, src: socket.socket, dst: socket.socket, pipe: tuple[int, int], head: bytes = b""):
        self.src, self.dst = src, dst
        self.head = head  # octets to send before what is spliced (read before the relay began)
        self.rfd, self.wfd = pipe
        self.pending = 0  # octets in the pipe, not yet in dst
        self.eof = False  # src said EOF
        self.done = False  # EOF passed on to dst (SHUT_WR)
        self.sent = 0

    def pump(self, chunk: int) -> None:
        """Move what can move now; raises OSError with errno in PEER_GONE when a side is gone."""
        src, dst = self.src.fileno(), self.dst.fileno()
        while self.head:
            try:
                n = self.dst.send(self.head)
            except BlockingIOError:
                return
            self.head = self.head[n:]
            self.sent += n
        for _ in range(BURST):
            if self.pending:
                try:
                    n = os.splice(self.rfd, dst, self.pending, flags=SPLICE_FLAGS)
                except BlockingIOError:
                    return
                self.pending -= n
                self.sent += n
                if self.pending:
                    continue
            if self.eof:
                break
            try:
                n = os.splice(src, self.wfd, chunk, flags=SPLICE_FLAGS)
            except BlockingIOError:
                return
            if n == 0:
                self.eof = True
            else:
                self.pending += n
        # Here, not in the next round: an EOF read by the burst's last splice leaves neither
        # socket watched for this direction, and no event may ever come to finish it.
        if self.eof and not self.pending and not self.done:
            self.done = True
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)

    def close(self, loop: Loop) -> None:
        loop.give_back((self.rfd, self.wfd), empty=not self.pending)


class Pair:
    """Two connected sockets relayed both ways until both directions end or one side resets.

    ``on_close(pair, reason)`` runs once when the pair is gone; ``reason`` is "done" or
    "reset". Both sockets are non-blocking and owned by the pair from now on."""

    def __init__(self, loop: Loop, a: socket.socket, b: socket.socket, *, pipe_size: int = 1 << 18,
                 on_close: Callable[[Pair, str], None] | None = None, head_ab: bytes = b"", head_ba: bytes = b""):
        self.loop, self.a, self.b = loop, a, b
        self.chunk = pipe_size
        self.on_close = on_close
        self.closed = False
        for sock in (a, b):
            if sock.gettimeout() != 0.0:
                sock.setblocking(False)
            # A relay passes on writes as they come; Nagle would hold a small one (the MCP's
            # Convert answer, then the first relayed bytes) for the peer's ACK: a round trip.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ab = _Direction(a, b, loop.pipe(pipe_size), head_ab)
        try:
            self.ba = _Direction(b, a, loop.pipe(pipe_size), head_ba)
        except OSError:
            self.ab.close(loop)
            raise
        self._event(-1, 0)

    def _mask(self, sock: socket.socket) -> int:
        mask = 0
        for d in (self.ab, self.ba):
            if d.src is sock and not d.eof and not d.pending and not d.head:
                mask |= IN
            if d.dst is sock and (d.pending or d.head):
                mask |= OUT
        return mask

    def _finished(self, sock: socket.socket) -> bool:
        """Nothing more will be read from or written to ``sock``."""
        read_end, write_end = (self.ab, self.ba) if sock is self.a else (self.ba, self.ab)
        return read_end.eof and write_end.done

    def _update(self) -> None:
        if self.ab.done and self.ba.done:
            self.close("done")
            return
        for sock in (self.a, self.b):
            if self._finished(sock):
                # A closed socket reports EPOLLHUP whatever its mask: stop watching it.
                self.loop.forget(sock.fileno())
            else:
                self.loop.set(sock.fileno(), self._mask(sock), self._event)

    def _event(self, fd: int, ev: int) -> None:
        if self.closed:
            return
        try:
            # Each direction is pumped whichever of its sockets woke: cheap when idle.
            self.ab.pump(self.chunk)
            self.ba.pump(self.chunk)
        except OSError as exc:
            if exc.errno not in PEER_GONE:
                log.warning("relay: %s", exc)
            self.close("reset")
            return
        if ev & (select.EPOLLERR | select.EPOLLHUP) and fd >= 0:
            sock = self.a if fd == self.a.fileno() else self.b
            write_end = self.ba if sock is self.a else self.ab
            # HUP needs our side shut too: before we shut it (done), it can only be a reset.
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) or (ev & select.EPOLLHUP and not write_end.done):
                self.close("reset")
                return
        self._update()

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.a, self.b):
            self.loop.forget(sock.fileno(), closing=True)
        self.ab.close(self.loop)
        self.ba.close(self.loop)
        if reason == "reset":
            abort(self.a)
            abort(self.b)
        else:
            # Unread data makes close() send RST: both directions ended, so there is none.
            self.a.close()
            self.b.close()
        if self.on_close:
            self.on_close(self, reason)

    @property
    def octets(self) -> tuple[int, int]:
        return self.ab.sent, self.ba.sent


READY_WAIT_S = 10.0  # how long the supervisor waits for its workers to say they serve
_ready: tuple[int, int] | None = None  # in a worker: the supervisor's ready pipe, its index


def worker_ready() -> None:
    """A worker's word that its listeners are in its loop (the supervisor waits for it)."""
    global _ready
    if _ready is None:
        return
    fd, index = _ready
    _ready = None
    with contextlib.suppress(OSError):
        os.write(fd, struct.pack("!I", index))  # 4 octets: one atomic pipe write
    os.close(fd)


def send_all_now(sock: socket.socket, data: bytes | bytearray | memoryview) -> int:
    """Send what the socket takes without blocking; the count sent (0 when it would block)."""
    try:
        return sock.send(data)
    except BlockingIOError:
        return 0


class Supervisor:
    """Forks ``workers`` children running ``work(index)`` and keeps them running.

    ``reload()`` (in the parent, on SIGHUP) returns True when the new config is good; only
    then do the workers get SIGHUP. SIGTERM and SIGINT drain: workers get SIGTERM, the
    parent waits ``drain_s`` plus a margin, then kills what is left."""

    def __init__(self, name: str, workers: int, work: Callable[[int], int], reload: Callable[[], bool],
                 drain_s: float, on_drain: Callable[[], None] | None = None, on_exit: Callable[[], None] | None = None):
        self.name, self.n, self.work, self.reload, self.drain_s = name, workers, work, reload, drain_s
        self.on_drain, self.on_exit = on_drain, on_exit
        self.children: dict[int, int] = {}  # pid -> index
        self.stopping = False
        self._hup = False
        self._respawn_at: dict[int, float] = {}
        self._ready_r = self._ready_w = -1

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                global _ready
                os.close(self._ready_r)
                _ready = (self._ready_w, index)
                for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(s, signal.SIG_DFL)
                code = self.work(index)
            except BaseException:
                log.exception("%s worker %d failed", self.name, index)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = index

    def run(self) -> int:
        def on_term(signum, frame):
            self.stopping = True

        def on_hup(signum, frame):
            self._hup = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)
        signal.signal(signal.SIGCHLD, lambda *a: None)
        self._ready_r, self._ready_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            for i in range(self.n):
                self._spawn(i)
            self._await_ready()
            while not self.stopping:
                if self._hup:
                    self._hup = False
                    if self.reload():
                        for pid in self.children:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(pid, signal.SIGHUP)
                self._tend()
                self._read_ready()  # respawned workers say so too: keep the pipe empty
                with contextlib.suppress(InterruptedError):
                    time.sleep(0.2)
            sd_notify("STOPPING=1")
            return self._drain()
        finally:
            os.close(self._ready_r)
            os.close(self._ready_w)
            if self.on_exit:
                self.on_exit()

    def _tend(self) -> None:
        """Reap ended workers and start again those whose second has come."""
        self._reap()
        now = time.monotonic()
        for index, when in list(self._respawn_at.items()):
            if when <= now:
                del self._respawn_at[index]
                self._spawn(index)

    def _read_ready(self) -> set[int]:
        try:
            data = os.read(self._ready_r, 4096)  # whole 4-octet records: every write is one
        except BlockingIOError:
            return set()
        return {i for (i,) in struct.iter_unpack("!I", data[: len(data) // 4 * 4])}

    def _await_ready(self) -> None:
        """Wait (at most READY_WAIT_S) until every worker serves, then say the service runs."""
        ready: set[int] = set()
        deadline = time.monotonic() + READY_WAIT_S
        while len(ready) < self.n and not self.stopping and time.monotonic() < deadline:
            with contextlib.suppress(InterruptedError):
                select.select([self._ready_r], [], [], 0.1)
            ready |= self._read_ready()
            self._tend()
        if self.stopping:
            return  # told to stop while starting: the drain says so, nothing runs to announce
        if len(ready) < self.n:
            silent = ", ".join(str(i) for i in sorted(set(range(self.n)) - ready))
            log.warning("%s: %d of %d worker(s) serving after %g s (not yet: worker %s); going on, the others as they come",
                        self.name, len(ready), self.n, READY_WAIT_S, silent)
        else:
            log.info("%s: %d worker(s) running", self.name, self.n)
        sd_notify(f"READY=1\nSTATUS={len(ready)} of {self.n} worker(s) serving")

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self.children.pop(pid, None)
            if index is None:
                continue
            if not self.stopping:
                log.error("%s worker %d (pid %d) ended (%s); starting it again in 1 s", self.name, index, pid,
                          _status_text(status))
                self._respawn_at[index] = time.monotonic() + 1.0

    def _drain(self) -> int:
        log.info("%s: draining (at most %g s)", self.name, self.drain_s)
        if self.on_drain:
            try:
                self.on_drain()
            except Exception:
                log.exception("%s: cleaning up before the drain failed", self.name)
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.drain_s + 2
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in list(self.children):
            log.warning("%s: worker pid %d still running after the drain time: killed", self.name, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()
        return 0


def _status_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.waitstatus_to_exitcode(status)}"


class WorkerSignals:
    """A worker's view of its signals: flags the loop checks between events."""

    def __init__(self) -> None:
        self.reload = False
        self.drain = False
        signal.signal(signal.SIGHUP, self._hup)
        signal.signal(signal.SIGTERM, self._term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides
        # A signal wakes the loop's epoll at once (Python retries an interrupted poll).
        self.rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd)

    def watch(self, loop: Loop) -> None:
        def drain_pipe(fd: int, ev: int) -> None:
            with contextlib.suppress(BlockingIOError):
                os.read(fd, 512)

        loop.set(self.rfd, IN, drain_pipe)

    def _hup(self, signum, frame) -> None:
        self.reload = True

    def _term(self, signum, frame) -> None:
        self.drain = True


def worker_count(configured: int) -> int:
    return configured if configured > 0 else max(1, len(os.sched_getaffinity(0)))
