"""One LAN connection on its way to an MCP (or straight to its destination), until a relay takes it."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import time
from enum import Enum
from typing import TYPE_CHECKING

from .. import rfc8803
from ..relay import IN, OUT, abort, set_rcvbuf
from .mcps import NOT_AUTHORIZED_HOLD_S, family

if TYPE_CHECKING:
    from .worker import ConverterWorker

log = logging.getLogger(__name__)

TCP_FASTOPEN_CONNECT = getattr(socket, "TCP_FASTOPEN_CONNECT", 30)
WOULD_BLOCK = frozenset({errno.EAGAIN, errno.EINPROGRESS, errno.EALREADY})
# Error codes that say something about the MCP itself: skip it and try the next one.
# Connection Reset and Destination Unreachable are the destination's answer: passed on.
DESTINATION_ERRORS = frozenset({rfc8803.ErrorCode.CONNECTION_RESET, rfc8803.ErrorCode.DESTINATION_UNREACHABLE})


class State(Enum):
    NEW = "new"
    # With TCP Fast Open the SYN carries the Convert message and the client's first data;
    # without (fast_open off, or a kernel before 6.2), the first segment after the handshake.
    MCP_CONNECTING = "connecting to an MCP"
    MCP_WAITING = "waiting for the MCP's Convert message"
    DIRECT_CONNECTING = "connecting to the destination"
    RELAYING = "handed to a relay"
    CLOSED = "closed"


# What may follow what. An MCP that fails or refuses leads to the next MCP or direct; a
# cookie asked for, to the same MCP again. RELAYING and CLOSED are the end.
TRANSITIONS = {
    State.NEW: {State.MCP_CONNECTING, State.DIRECT_CONNECTING},
    State.MCP_CONNECTING: {State.MCP_CONNECTING, State.MCP_WAITING, State.DIRECT_CONNECTING, State.CLOSED},
    State.MCP_WAITING: {State.MCP_CONNECTING, State.DIRECT_CONNECTING, State.RELAYING, State.CLOSED},
    State.DIRECT_CONNECTING: {State.RELAYING, State.CLOSED},
    State.RELAYING: set(),
    State.CLOSED: set(),
}
ENDED = frozenset({State.RELAYING, State.CLOSED})


class Conversion:
    """A LAN connection on its way to an MCP (or, failing every MCP, to its destination).

    Its life is ``state`` (a State, moved only along TRANSITIONS): connecting to an MCP and
    waiting for its Convert message, MCP after MCP, or connecting straight to the
    destination; then a Pair relays (RELAYING) or the LAN connection is reset (CLOSED), and
    this object is done. ``address`` is the MCP being asked."""

    def __init__(self, worker: ConverterWorker, lan: socket.socket):
        self.w, self.loop, self.lan = worker, worker.loop, lan
        lan.setblocking(False)
        self.dst = lan.getsockname()[:2]  # TPROXY keeps the original destination
        self.src = lan.getpeername()[:2]
        self.early = bytearray()  # LAN data not yet confirmed by an MCP: replayed on a retry
        self.lan_eof = False
        self.up: socket.socket | None = None
        self.address: str | None = None
        self.out = bytearray()
        self.sent = 0
        self.reply = bytearray()
        self.state = State.NEW
        self.timer = None
        self.cookie_retries = 0  # a stale cookie costs one retry, a challenge another
        self.sent_cookie = False
        self.tried: list[str] = []
        self.candidates = iter(worker.book.addresses())
        self.budget_end = time.monotonic() + worker.cfg.connect_timeout_s  # for MCPs that do not answer
        self._next()

    def __repr__(self) -> str:
        return f"[{self.src[0]}]:{self.src[1]} -> [{self.dst[0]}]:{self.dst[1]}"

    def _to(self, state: State) -> None:
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"{self!r}: {self.state.name} cannot become {state.name}")
        self.state = state

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    # -- choosing where to go
    def _next(self) -> None:
        if time.monotonic() >= self.budget_end:
            self._connect_direct()
            return
        for address in self.candidates:
            if self.w.book.usable_for(address, self.dst[0]):
                self._connect_mcp(address)
                return
        self._connect_direct()

    def _connect_mcp(self, address: str, retry_with_cookie: bool = False) -> None:
        self._to(State.MCP_CONNECTING)
        self.address = address
        self.tried.append(address)
        self.reply.clear()
        try:
            up = socket.socket(family(address), socket.SOCK_STREAM, self.w.proto)
        except OSError as exc:
            log.error("cannot open an MPTCP socket (%s): is net.mptcp.enabled 1?", exc)
            self._connect_direct()
            return
        up.setblocking(False)
        if self.w.fast_open:
            with contextlib.suppress(OSError):
                up.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
        set_rcvbuf(up, self.w.cfg.mptcp_rcvbuf)
        self.up = up
        cookie = self.w.book.cookies.get(address)
        self.sent_cookie = cookie is not None
        self.out = bytearray(rfc8803.connect_message(self.dst[0], self.dst[1], cookie=cookie)) + self.early
        self.sent = 0
        err = up.connect_ex((address, self.w.cfg.mcp_port))
        if err and err not in WOULD_BLOCK:
            self._mcp_failed(f"connect: {os.strerror(err)}")
            return
        if err == 0:
            self._flush()  # TCP_FASTOPEN_CONNECT: this send carries the SYN (and the data if there is a cookie)
        left = self.budget_end - time.monotonic()
        if left >= 0.9 * self.w.cfg.connect_timeout_s:
            self._timer(left, lambda: self._mcp_failed("no answer", timeout=True))
        else:
            # What is left of this connection's wait is too short to judge the MCP: go direct,
            # and let a later connection give this address its full connect_timeout_s.
            self._timer(max(0.05, left), self._budget_spent)
        self._watch()

    def _connect_direct(self) -> None:
        self._to(State.DIRECT_CONNECTING)
        self.address = None
        if self.w.local.is_own(self.dst[0]):
            # The address became the CPE's after the accept: going there would loop back.
            log.info("%r: direct: the destination is now one of the CPE's own addresses", self)
            self.w.stats["not_diverted"] += 1
            self._abort()
            return
        try:
            up = socket.socket(family(self.dst[0]), socket.SOCK_STREAM)
        except OSError as exc:
            log.error("%r: cannot open a socket: %s", self, exc)
            self._abort()
            return
        up.setblocking(False)
        self.up = up
        self.out = bytearray(self.early)
        self.sent = 0
        err = up.connect_ex(self.dst)
        if err and err not in WOULD_BLOCK:
            log.info("%r: direct: %s", self, os.strerror(err))
            self._abort()
            return
        self.w.stats["direct"] += 1
        if self.tried:
            log.debug("%r: no MCP answered (%s): direct", self, ", ".join(self.tried))
        self._timer(60.0, lambda: self._direct_failed("no answer in 60 s"))
        self._watch()

    # -- events
    def _timer(self, seconds: float, fn) -> None:
        if self.timer:
            self.timer.cancel()
        self.timer = self.loop.later(seconds, fn)

    def _watch(self) -> None:
        if self.ended:
            return
        up_mask = IN
        if self.state is not State.MCP_WAITING or self.sent < len(self.out):
            up_mask |= OUT
        self.loop.set(self.up.fileno(), up_mask, self._up_event)
        lan_mask = IN if not self.lan_eof and len(self.early) < self.w.cfg.replay_limit else 0
        self.loop.set(self.lan.fileno(), lan_mask, self._lan_event)

    def _flush(self) -> None:
        while self.sent < len(self.out):
            try:
                n = self.up.send(memoryview(self.out)[self.sent:])
            except OSError as exc:
                if exc.errno in WOULD_BLOCK:
                    return
                raise
            self.sent += n

    def _lan_event(self, fd: int, ev: int) -> None:
        if self.ended:
            return
        try:
            data = self.lan.recv(self.w.cfg.replay_limit - len(self.early))
        except BlockingIOError:
            return
        except OSError:
            self._close_up()
            self._abort()
            return
        if not data:
            self.lan_eof = True
        else:
            self.early += data
            self.out += data
            if self.state is State.MCP_WAITING:
                self._up_send()
        self._watch()

    def _up_send(self) -> bool:
        try:
            self._flush()
            return True
        except OSError as exc:
            self._failed(os.strerror(exc.errno))
            return False

    def _up_event(self, fd: int, ev: int) -> None:
        if self.ended:
            return
        if self.state is not State.MCP_WAITING:
            err = self.up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._failed(os.strerror(err))
                return
            try:
                self.up.getpeername()
            except OSError:
                return  # not yet
            if self.state is State.DIRECT_CONNECTING:
                self._start_direct_relay()
                return
            self._to(State.MCP_WAITING)
            self._timer(self.w.cfg.reply_timeout_s, lambda: self._mcp_failed("no Convert answer", timeout=True))
        if not self._up_send():
            return
        if self.state is State.MCP_WAITING:
            try:
                data = self.up.recv(4096)
            except BlockingIOError:
                data = None
            except OSError as exc:
                self._mcp_failed(f"reset before answering ({os.strerror(exc.errno)})")
                return
            if data == b"":
                self._mcp_failed("closed before answering")
                return
            if data:
                self.reply += data
                if self._answer():
                    return
        self._watch()

    def _answer(self) -> bool:
        """True once the MCP's Convert message is complete and acted on."""
        try:
            tlvs, end = rfc8803.parse(self.reply)
        except rfc8803.Incomplete:
            return False
        except rfc8803.ConvertError as exc:
            self._mcp_failed(f"answered with a bad Convert message: {exc}")
            return True
        error = next((t for t in tlvs if isinstance(t, rfc8803.Error)), None)
        if error is None:
            self._start_relay(bytes(self.reply[end:]))
            return True
        code = error.code
        name = rfc8803.ErrorCode(code).name if code in rfc8803.ErrorCode._value2member_map_ else str(code)
        if code == rfc8803.ErrorCode.MISSING_COOKIE and self.cookie_retries < 2:
            self.cookie_retries += 1
            self.w.book.cookies[self.address] = error.cookie().cookie
            address = self.address
            self._close_up()
            log.info("%r: MCP %s asks for a cookie: asking again with it", self, address)
            self._connect_mcp(address)
            return True
        if code == rfc8803.ErrorCode.NOT_AUTHORIZED and self.sent_cookie and self.cookie_retries < 2:
            # Our cookie is stale (a cookie is bound to a time): ask again without it.
            self.cookie_retries += 1
            self.w.book.cookies.pop(self.address, None)
            address = self.address
            self._close_up()
            self._connect_mcp(address)
            return True
        if code in DESTINATION_ERRORS:
            log.info("%r: MCP %s: %s from the destination: resetting the LAN connection", self, self.address, name)
            self.w.stats["refused"] += 1
            self._close_up()
            self._abort()
            return True
        if code == rfc8803.ErrorCode.NOT_AUTHORIZED:
            if not self.w.book.refused(self.address, self.dst[0]):
                log.info("%r: MCP %s refuses this destination: not asked again for %g s", self, self.address,
                         NOT_AUTHORIZED_HOLD_S)
                self._close_up()
                self._next()
                return True
            hold = NOT_AUTHORIZED_HOLD_S
        elif code in (rfc8803.ErrorCode.RESOURCE_EXCEEDED, rfc8803.ErrorCode.NETWORK_FAILURE):
            hold = float(error.retry_after())
        else:
            hold = self.w.cfg.retry_after_s
        self._mcp_failed(f"Error {name}", hold=hold)
        return True

    # -- outcomes
    def _failed(self, why: str) -> None:
        if self.state is State.DIRECT_CONNECTING:
            self._direct_failed(why)
        else:
            self._mcp_failed(why)

    def _mcp_failed(self, why: str, *, timeout: bool = False, hold: float | None = None) -> None:
        if self.ended:
            return
        self.w.book.hold(self.address, hold if hold is not None else self.w.cfg.retry_after_s, why)
        self._close_up()
        self._next()

    def _budget_spent(self) -> None:
        if self.state is not State.MCP_CONNECTING:
            return
        self._close_up()
        self._connect_direct()

    def _direct_failed(self, why: str) -> None:
        log.info("%r: direct: %s", self, why)
        self._close_up()
        self._abort()

    def _close_up(self) -> None:
        if self.timer:
            self.timer.cancel()
            self.timer = None
        if self.up is not None:
            self.loop.forget(self.up.fileno(), closing=True)
            abort(self.up)
            self.up = None

    def _abort(self) -> None:
        self._to(State.CLOSED)
        if self.timer:
            self.timer.cancel()
        self.loop.forget(self.lan.fileno(), closing=True)
        abort(self.lan)
        self.w.done(self)

    def _start_relay(self, rest: bytes) -> None:
        self.w.stats["converted"] += 1
        log.debug("%r: via MCP %s", self, self.address)
        self._hand_over(bytes(self.out[self.sent:]), rest)

    def _start_direct_relay(self) -> None:
        self._hand_over(bytes(self.out[self.sent:]), b"")

    def _hand_over(self, to_up: bytes, to_lan: bytes) -> None:
        if self.timer:
            self.timer.cancel()
        self._to(State.RELAYING)
        up, self.up = self.up, None
        self.w.done(self)
        try:
            # Both fds stay registered: the relay takes their epoll entries over.
            self.w.relay(self.lan, up, to_up, to_lan)
        except OSError as exc:
            log.warning("%r: cannot relay: %s", self, exc)
            for sock in (self.lan, up):
                self.loop.forget(sock.fileno(), closing=True)
                abort(sock)

