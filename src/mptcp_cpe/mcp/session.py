"""One client connection: its Convert message checked, the destination connected, the answer, the hand-over."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from typing import TYPE_CHECKING

from .. import rfc8803
from ..relay import IN, OUT, abort
from .config import in_any

if TYPE_CHECKING:
    from .worker import McpWorker

log = logging.getLogger(__name__)

WOULD_BLOCK = frozenset({errno.EAGAIN, errno.EINPROGRESS, errno.EALREADY})
# TCP options a client may ask for in its Connect TLV: the kernel handles these on the
# MCP-to-server connection by itself (MSS, window scale, SACK, timestamps, Fast Open).
SUPPORTED_TCP_OPTIONS = frozenset({2, 3, 4, 8, 34})
ANNOUNCED_TCP_OPTIONS = (4, 8, 34)  # Supported TCP Extensions (§6.2.4 forbids 0-3 and 5, 29)
LINGER_S = 5.0  # after an Error: wait this long for the client's FIN, discarding what it sends
ICMP_NET_UNREACHABLE, ICMP_HOST_UNREACHABLE, ICMP_ADMIN_PROHIBITED = 0, 1, 13


def connect_error(err: int) -> bytes:
    """The Error message for a failed connection to the destination (errno of connect)."""
    code = rfc8803.ErrorCode
    if err == errno.ECONNREFUSED:
        return rfc8803.error_message(code.CONNECTION_RESET)
    icmp = {errno.ENETUNREACH: ICMP_NET_UNREACHABLE, errno.EHOSTUNREACH: ICMP_HOST_UNREACHABLE,
            errno.EHOSTDOWN: ICMP_HOST_UNREACHABLE, errno.EACCES: ICMP_ADMIN_PROHIBITED,
            errno.EPERM: ICMP_ADMIN_PROHIBITED,
            # No answer at all: the destination's doing, not the MCP's (Network Failure
            # would make clients leave a working MCP).
            errno.ETIMEDOUT: ICMP_HOST_UNREACHABLE}
    if err in icmp:
        return rfc8803.error_message(code.DESTINATION_UNREACHABLE, bytes([icmp[err]]))
    if err in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL):
        return rfc8803.error_message(code.RESOURCE_EXCEEDED, b"\0")
    return rfc8803.error_message(code.NETWORK_FAILURE, b"\0")



class Session:
    """One client connection: read the Convert message, check it, connect, answer, relay."""

    def __init__(self, worker: McpWorker, client: socket.socket, peer: str, slot: int):
        self.w, self.loop, self.client, self.peer = worker, worker.loop, client, peer
        self.slot = slot  # where the client's count is: McpWorker._admit
        self.buf = bytearray()
        self.server: socket.socket | None = None
        self.target: tuple[str, int] | None = None
        self.done = False
        client.setblocking(False)
        self.timer = self.loop.later(worker.cfg.handshake_timeout_s, self._handshake_timeout)
        self.loop.set(client.fileno(), IN, self._client_event)

    def __repr__(self) -> str:
        to = f" -> [{self.target[0]}]:{self.target[1]}" if self.target else ""
        return f"client {self.peer}{to}"

    def _client_event(self, fd: int, ev: int) -> None:
        try:
            data = self.client.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._end()
            return
        if not data:
            if self.server is None:
                self._end()  # the client left before asking anything
                return
            self.loop.set(fd, 0, self._client_event)  # EOF is spliced on once relaying
            return
        self.buf += data
        if self.server is not None:
            if len(self.buf) > (1 << 20):
                self.loop.set(fd, 0, self._client_event)  # enough early data until the server answers
            return
        try:
            tlvs, end = rfc8803.parse(self.buf)
        except rfc8803.Incomplete:
            return
        except rfc8803.ConvertError as exc:
            log.info("%r: %s", self, exc)
            reply = exc.reply(self.buf)
            self.w.stats["malformed"] += 1
            if reply is None:
                self._end(reset=True)
            else:
                self._refuse(reply)
            return
        self._request(tlvs, end)

    def _request(self, tlvs: list, end: int) -> None:
        code = rfc8803.ErrorCode
        message = bytes(self.buf[:end])
        unsupported = [t for t in tlvs if not isinstance(t, (rfc8803.Connect, rfc8803.Info, rfc8803.Cookie))]
        if unsupported:
            self._refuse(rfc8803.error_message(code.UNSUPPORTED_MESSAGE, rfc8803.echo_value(message)))
            return
        connect = next((t for t in tlvs if isinstance(t, rfc8803.Connect)), None)
        if connect is None:
            if any(isinstance(t, rfc8803.Info) for t in tlvs):
                self._refuse(rfc8803.supported_extensions_message(ANNOUNCED_TCP_OPTIONS), count=False)
            else:
                self._refuse(rfc8803.error_message(code.MALFORMED_MESSAGE, rfc8803.echo_value(message)))
            return
        host, port = connect.host, connect.port
        self.target = (host, port)
        bad_options = sorted({kind for kind in (kind for kind, _ in connect.options()) if kind not in SUPPORTED_TCP_OPTIONS})
        if bad_options:
            self._refuse(rfc8803.error_message(code.UNSUPPORTED_TCP_OPTION, bytes(bad_options)))
            return
        dest = ipaddress.ip_address(host)
        if in_any(dest, self.w.cfg.deny_destinations) or in_any(dest, self.w.cfg.clients) or port == 0:
            log.info("%r: destination refused (deny_destinations, a client prefix or port 0)", self)
            self._refuse(rfc8803.error_message(code.NOT_AUTHORIZED))
            return
        if self.w.cookie_needed:
            cookie = next((t.cookie for t in tlvs if isinstance(t, rfc8803.Cookie)), None)
            if cookie is None:
                self._refuse(rfc8803.error_message(code.MISSING_COOKIE, rfc8803.cookie_value(self.w.cookies.make(self.peer))))
                return
            if not self.w.cookies.valid(self.peer, cookie):
                self._refuse(rfc8803.error_message(code.NOT_AUTHORIZED))
                return
        del self.buf[:end]
        self._connect(host, port)

    def _connect(self, host: str, port: int) -> None:
        try:
            server = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            self._refuse(connect_error(exc.errno))
            return
        server.setblocking(False)
        self.server = server
        err = server.connect_ex((host, port))
        if err and err not in WOULD_BLOCK:
            self._connect_failed(err)
            return
        self.timer.cancel()
        self.timer = self.loop.later(self.w.cfg.connect_timeout_s, lambda: self._connect_failed(errno.ETIMEDOUT))
        self.loop.set(server.fileno(), OUT, self._server_event)

    def _server_event(self, fd: int, ev: int) -> None:
        err = self.server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._connect_failed(err)
            return
        self.timer.cancel()
        self.done = True
        self.w.stats["converted"] += 1
        server, self.server = self.server, None
        try:
            # Both fds stay registered: the relay takes their epoll entries over.
            self.w.relay(self, server, head_to_server=bytes(self.buf), head_to_client=rfc8803.build([]))
        except OSError as exc:
            log.warning("%r: cannot relay: %s", self, exc)
            self.loop.forget(server.fileno(), closing=True)
            abort(server)
            self._end(reset=True)

    def _connect_failed(self, err: int) -> None:
        if self.done:
            return
        log.info("%r: %s", self, os.strerror(err))
        self.w.stats["failed"] += 1
        if self.server is not None:
            self.loop.forget(self.server.fileno(), closing=True)
            abort(self.server)
            self.server = None
        self._refuse(connect_error(err))

    def _handshake_timeout(self) -> None:
        log.info("%r: no complete Convert message in %g s", self, self.w.cfg.handshake_timeout_s)
        self._end(reset=True)

    def _refuse(self, reply: bytes, count: bool = True) -> None:
        """Send ``reply`` (an Error TLV, or the answer to Info), close our side, discard what
        the client still sends until its FIN or LINGER_S: then the Error is not lost to a RST."""
        if count:
            self.w.stats["refused"] += 1
        self.timer.cancel()
        self.done = True
        try:
            self.client.send(reply)
            self.client.shutdown(socket.SHUT_WR)
        except OSError:
            self._end(reset=True)
            return
        self.timer = self.loop.later(LINGER_S, lambda: self._end(reset=True))
        self.loop.set(self.client.fileno(), IN, self._discard)

    def _discard(self, fd: int, ev: int) -> None:
        try:
            data = self.client.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._end()

    def _end(self, reset: bool = False) -> None:
        self.timer.cancel()
        self.done = True
        self.loop.forget(self.client.fileno(), closing=True)
        if reset:
            abort(self.client)
        else:
            self.client.close()
        self.w.forget(self)
