"""``mptcp-cpe mcp``: the network side of RFC 8803, the MPTCP Conversion Point.

An MPTCP listener (TCP Fast Open on, so the client's Convert message rides in its SYN).
For each connection: the client's address must lie in ``clients`` (otherwise Error Not
Authorized: an MCP is never an open proxy); the Convert message is read and checked
(malformed → its Error code, echoing the message); the Connect TLV's destination must not
be in ``deny_destinations`` nor one of the client prefixes (hairpinning → Not
Authorized); then a TCP connection to the destination within ``connect_timeout_s``. On
success the MCP answers with a Convert message of its own (the fixed header, no TLV),
sends on whatever the client had already sent, and relays both ways with splice. On
failure it answers with the Error TLV for what happened and closes (FIN, never RST at
once, so the Error reaches the client).

Limits: ``max_connections`` and ``max_connections_per_client`` (each worker enforces its
share, the kernel spreading connections over workers) answer Resource Exceeded with
``retry_after_s``; ``max_subflows`` is the kernel's per-connection subflow limit, set at
start. When more than ``cookie_syn_rate`` connections a second arrive (per worker's
share), a connection without a valid Cookie TLV gets Missing Cookie with a cookie bound to
the client's address, valid two minutes.

::

    {"host": "mcp-1", "listen": "::", "port": 5124, "clients": ["198.51.100.0/24"],
     "deny_destinations": [], "max_connections": 20000, "max_connections_per_client": 2000,
     "max_subflows": 8, "connect_timeout_s": 10, "handshake_timeout_s": 10,
     "cookie_syn_rate": 0, "retry_after_s": 30, "workers": 0, "pipe_size": 262144,
     "mptcp_rcvbuf": 4194304, "drain_timeout_s": 30}

Signals: SIGHUP re-reads the config (bad: refused with one line, the running one kept;
the START_ONLY settings change only with a restart), SIGTERM stops accepting and drains.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import hmac
import ipaddress
import logging
import math
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import convert
from .inventory import InventoryError
from .relay import IN, OUT, Loop, Pair, Supervisor, WorkerSignals, abort, raise_fd_limit, set_rcvbuf, worker_count
from .settings import (
    ConfigError,
    add_daemon_parser,
    check_keys,
    config_host,
    integer,
    load_or_say,
    number,
    prefixes,
    read_config,
    setup_logging,
)

log = logging.getLogger(__name__)

IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)
TCP_FASTOPEN = getattr(socket, "TCP_FASTOPEN", 23)
WOULD_BLOCK = frozenset({errno.EAGAIN, errno.EINPROGRESS, errno.EALREADY})
TOP_KEYS = frozenset({"host", "listen", "port", "clients", "deny_destinations", "max_connections",
                      "max_connections_per_client", "max_subflows", "connect_timeout_s", "handshake_timeout_s",
                      "cookie_syn_rate", "retry_after_s", "workers", "pipe_size", "mptcp_rcvbuf", "drain_timeout_s"})
# TCP options a client may ask for in its Connect TLV: the kernel handles these on the
# MCP-to-server connection by itself (MSS, window scale, SACK, timestamps, Fast Open).
SUPPORTED_TCP_OPTIONS = frozenset({2, 3, 4, 8, 34})
ANNOUNCED_TCP_OPTIONS = (4, 8, 34)  # Supported TCP Extensions (§6.2.4 forbids 0-3 and 5, 29)
START_ONLY = ("listen", "port", "workers", "drain_timeout_s", "mptcp_rcvbuf")  # a reload changing one is refused
COOKIE_PERIOD_S = 60  # a cookie is valid in its minute and the next
LINGER_S = 5.0  # after an Error: wait this long for the client's FIN, discarding what it sends
ICMP_NET_UNREACHABLE, ICMP_HOST_UNREACHABLE, ICMP_ADMIN_PROHIBITED = 0, 1, 13


@dataclass(frozen=True)
class McpConfig:
    host: str
    clients: tuple
    listen: str = "::"
    port: int = 5124
    deny_destinations: tuple = ()
    max_connections: int = 20000
    max_connections_per_client: int = 2000
    max_subflows: int | None = 8
    connect_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    cookie_syn_rate: int = 0
    retry_after_s: int = 30
    workers: int = 0
    pipe_size: int = 262144
    mptcp_rcvbuf: int = 4194304  # fixed receive buffer of client sockets (0: autotuning), see relay.set_rcvbuf
    drain_timeout_s: float = 30.0


def from_dict(raw: Any, host: str = "localhost") -> McpConfig:
    host = config_host(raw, host)
    check_keys(host, "(config)", raw, TOP_KEYS)
    d = McpConfig(host=host, clients=())
    if "clients" not in raw:
        raise ConfigError(host, "clients", "missing: an MCP accepts only the client prefixes it is given", show_value=False)
    clients = prefixes(host, "clients", raw["clients"])
    if not clients:
        raise ConfigError(host, "clients", "empty: the MCP would refuse everyone", raw["clients"])
    for i, p in enumerate(clients):
        if p.prefixlen == 0:
            raise ConfigError(host, f"clients[{i}]", "a default prefix would make the MCP an open proxy", str(p))
    listen = raw.get("listen", d.listen)
    try:
        if not isinstance(listen, str):
            raise ValueError
        ipaddress.ip_address(listen)
    except ValueError:
        raise ConfigError(host, "listen", "not an IP address", listen) from None
    max_subflows = raw.get("max_subflows", d.max_subflows)
    cfg = McpConfig(
        host=host,
        clients=clients,
        listen=listen,
        port=integer(host, "port", raw.get("port", d.port), 1, 65535),
        deny_destinations=prefixes(host, "deny_destinations", raw.get("deny_destinations", [])),
        max_connections=integer(host, "max_connections", raw.get("max_connections", d.max_connections), 1, 10**7),
        max_connections_per_client=integer(host, "max_connections_per_client",
                                           raw.get("max_connections_per_client", d.max_connections_per_client), 1, 10**7),
        max_subflows=None if max_subflows is None else integer(host, "max_subflows", max_subflows, 0, 8),
        connect_timeout_s=number(host, "connect_timeout_s", raw.get("connect_timeout_s", d.connect_timeout_s), 0.1, 300),
        handshake_timeout_s=number(host, "handshake_timeout_s", raw.get("handshake_timeout_s", d.handshake_timeout_s), 0.1, 300),
        cookie_syn_rate=integer(host, "cookie_syn_rate", raw.get("cookie_syn_rate", d.cookie_syn_rate), 0, 10**7),
        retry_after_s=integer(host, "retry_after_s", raw.get("retry_after_s", d.retry_after_s), 1, 255),
        workers=integer(host, "workers", raw.get("workers", d.workers), 0, 256),
        pipe_size=integer(host, "pipe_size", raw.get("pipe_size", d.pipe_size), 4096, 1 << 20),
        mptcp_rcvbuf=integer(host, "mptcp_rcvbuf", raw.get("mptcp_rcvbuf", d.mptcp_rcvbuf), 0, 1 << 30),
        drain_timeout_s=number(host, "drain_timeout_s", raw.get("drain_timeout_s", d.drain_timeout_s), 0, 3600),
    )
    if cfg.max_connections_per_client > cfg.max_connections:
        raise ConfigError(host, "max_connections_per_client", f"above max_connections ({cfg.max_connections})",
                          cfg.max_connections_per_client)
    return cfg


def load(path: Path, host: str = "localhost") -> McpConfig:
    return from_dict(read_config(path, host), host)


def _plain(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    a = ipaddress.ip_address(address.split("%")[0])
    return a.ipv4_mapped or a if a.version == 6 else a


def in_any(address, nets) -> bool:
    return any(address.version == n.version and address in n for n in nets)


def connect_error(err: int) -> bytes:
    """The Error message for a failed connection to the destination (errno of connect)."""
    code = convert.ErrorCode
    if err == errno.ECONNREFUSED:
        return convert.error_message(code.CONNECTION_RESET)
    icmp = {errno.ENETUNREACH: ICMP_NET_UNREACHABLE, errno.EHOSTUNREACH: ICMP_HOST_UNREACHABLE,
            errno.EHOSTDOWN: ICMP_HOST_UNREACHABLE, errno.EACCES: ICMP_ADMIN_PROHIBITED,
            errno.EPERM: ICMP_ADMIN_PROHIBITED,
            # No answer at all: the destination's doing, not the MCP's (Network Failure
            # would make clients leave a working MCP).
            errno.ETIMEDOUT: ICMP_HOST_UNREACHABLE}
    if err in icmp:
        return convert.error_message(code.DESTINATION_UNREACHABLE, bytes([icmp[err]]))
    if err in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL):
        return convert.error_message(code.RESOURCE_EXCEEDED, b"\0")
    return convert.error_message(code.NETWORK_FAILURE, b"\0")


class Cookies:
    """Stateless cookies: HMAC of the client's address and the minute, under a secret made
    at start (shared by the workers, forked from the same parent)."""

    def __init__(self, secret: bytes):
        self.secret = secret

    def make(self, client: str, period: int | None = None) -> bytes:
        period = int(time.time() // COOKIE_PERIOD_S) if period is None else period
        return hmac.new(self.secret, f"{client}|{period}".encode(), hashlib.sha256).digest()[:12]

    def valid(self, client: str, cookie: bytes) -> bool:
        now = int(time.time() // COOKIE_PERIOD_S)
        return any(hmac.compare_digest(self.make(client, p), bytes(cookie[:12])) for p in (now, now - 1)) and len(cookie) >= 12


class RateMeter:
    """Connections in the last second (a sliding one-second window)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def tick(self) -> int:
        now = time.monotonic()
        self.stamps.append(now)
        cut = 0
        while cut < len(self.stamps) and self.stamps[cut] < now - 1.0:
            cut += 1
        del self.stamps[:cut]
        return len(self.stamps)


class Session:
    """One client connection: read the Convert message, check it, connect, answer, relay."""

    def __init__(self, worker: McpWorker, client: socket.socket, peer: str):
        self.w, self.loop, self.client, self.peer = worker, worker.loop, client, peer
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
            tlvs, end = convert.parse(self.buf)
        except convert.Incomplete:
            return
        except convert.ConvertError as exc:
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
        code = convert.ErrorCode
        message = bytes(self.buf[:end])
        unsupported = [t for t in tlvs if not isinstance(t, (convert.Connect, convert.Info, convert.Cookie))]
        if unsupported:
            self._refuse(convert.error_message(code.UNSUPPORTED_MESSAGE, convert.echo_value(message)))
            return
        connect = next((t for t in tlvs if isinstance(t, convert.Connect)), None)
        if connect is None:
            if any(isinstance(t, convert.Info) for t in tlvs):
                self._refuse(convert.supported_extensions_message(ANNOUNCED_TCP_OPTIONS), count=False)
            else:
                self._refuse(convert.error_message(code.MALFORMED_MESSAGE, convert.echo_value(message)))
            return
        host, port = connect.host, connect.port
        self.target = (host, port)
        bad_options = sorted({kind for kind in (kind for kind, _ in connect.options()) if kind not in SUPPORTED_TCP_OPTIONS})
        if bad_options:
            self._refuse(convert.error_message(code.UNSUPPORTED_TCP_OPTION, bytes(bad_options)))
            return
        dest = ipaddress.ip_address(host)
        if in_any(dest, self.w.cfg.deny_destinations) or in_any(dest, self.w.cfg.clients) or port == 0:
            log.info("%r: destination refused (deny_destinations, a client prefix or port 0)", self)
            self._refuse(convert.error_message(code.NOT_AUTHORIZED))
            return
        if self.w.cookie_needed:
            cookie = next((t.cookie for t in tlvs if isinstance(t, convert.Cookie)), None)
            if cookie is None:
                self._refuse(convert.error_message(code.MISSING_COOKIE, convert.cookie_value(self.w.cookies.make(self.peer))))
                return
            if not self.w.cookies.valid(self.peer, cookie):
                self._refuse(convert.error_message(code.NOT_AUTHORIZED))
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
            self.w.relay(self, server, head_to_server=bytes(self.buf), head_to_client=convert.build([]))
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


class McpWorker:
    def __init__(self, cfg: McpConfig, config_path: Path | None, listener: socket.socket, cookies: Cookies, workers: int):
        self.cfg, self.config_path, self.listener, self.cookies, self.workers = cfg, config_path, listener, cookies, workers
        self.loop = Loop()
        self.sessions: set[Session] = set()
        self.pairs: set[Pair] = set()
        self.per_client: dict[str, int] = {}
        self.rate = RateMeter()
        self.cookie_needed = False
        self.stats = {"converted": 0, "refused": 0, "failed": 0, "malformed": 0}

    def _share(self, limit: int) -> int:
        return max(1, math.ceil(limit / self.workers))

    def connections(self) -> int:
        return len(self.sessions) + len(self.pairs)

    def forget(self, session: Session) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self._release(session.peer)

    def _release(self, peer: str) -> None:
        n = self.per_client.get(peer, 0) - 1
        if n > 0:
            self.per_client[peer] = n
        else:
            self.per_client.pop(peer, None)

    def relay(self, session: Session, server: socket.socket, head_to_server: bytes, head_to_client: bytes) -> None:
        self.sessions.discard(session)
        peer = session.peer

        def closed(pair: Pair, why: str) -> None:
            self.pairs.discard(pair)
            self._release(peer)

        pair = Pair(self.loop, session.client, server, pipe_size=self.cfg.pipe_size, on_close=closed,
                    head_ab=head_to_server, head_ba=head_to_client)
        if not pair.closed:
            self.pairs.add(pair)

    def _accept(self, fd: int, ev: int) -> None:
        for _ in range(64):
            try:
                conn, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept: %s", exc)
                return
            peer = str(_plain(addr[0]))
            if not in_any(ipaddress.ip_address(peer), self.cfg.clients):
                log.info("client %s: not in clients: Not Authorized", peer)
                self.stats["refused"] += 1
                self._refuse_now(conn, peer, convert.error_message(convert.ErrorCode.NOT_AUTHORIZED))
                continue
            if (self.connections() >= self._share(self.cfg.max_connections)
                    or self.per_client.get(peer, 0) >= self._share(self.cfg.max_connections_per_client)):
                log.warning("client %s: connection limit reached: Resource Exceeded", peer)
                self.stats["refused"] += 1
                self._refuse_now(conn, peer, convert.error_message(convert.ErrorCode.RESOURCE_EXCEEDED,
                                                                   bytes([self.cfg.retry_after_s])))
                continue
            if self.cfg.cookie_syn_rate:
                self.cookie_needed = self.rate.tick() > self._share(self.cfg.cookie_syn_rate)
            self.per_client[peer] = self.per_client.get(peer, 0) + 1
            try:
                self.sessions.add(Session(self, conn, peer))
            except OSError:
                self._release(peer)
                abort(conn)

    def _refuse_now(self, conn: socket.socket, peer: str, reply: bytes) -> None:
        # Refused before reading anything: still answer, then linger like any refusal.
        self.per_client[peer] = self.per_client.get(peer, 0) + 1
        session = Session(self, conn, peer)
        self.sessions.add(session)
        session._refuse(reply, count=False)

    def _reload(self) -> None:
        try:
            cfg = load(self.config_path, self.cfg.host)
        except InventoryError as exc:
            log.error("reload refused: %s", exc)
            return
        if any(getattr(cfg, key) != getattr(self.cfg, key) for key in START_ONLY):
            return  # the supervisor refused it and said why
        self.cfg = cfg

    def run(self, signals: WorkerSignals) -> int:
        self.listener.setblocking(False)
        self.loop.set(self.listener.fileno(), IN, self._accept)
        signals.watch(self.loop)
        deadline = None

        def done() -> bool:
            nonlocal deadline
            if signals.reload and self.config_path is not None:
                signals.reload = False
                self._reload()
            if signals.drain and deadline is None:
                deadline = time.monotonic() + self.cfg.drain_timeout_s
                self.loop.forget(self.listener.fileno())
                self.listener.close()
            if deadline is not None:
                return self.connections() == 0 or time.monotonic() >= deadline
            return False

        self.loop.run(done)
        return 0


def listener(cfg: McpConfig) -> socket.socket:
    v6 = ":" in cfg.listen
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if v6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # "::" takes IPv4 clients too
    with contextlib.suppress(OSError):
        s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 4096)
    set_rcvbuf(s, cfg.mptcp_rcvbuf)  # inherited by accepted sockets
    s.bind((cfg.listen, cfg.port))
    s.listen(4096)
    return s


def set_subflow_limit(cfg: McpConfig) -> None:
    if cfg.max_subflows is None:
        return
    from pyroute2 import MPTCP
    m = MPTCP()
    try:
        (msg,) = m.limits("show")
        if msg.get("MPTCP_PM_ATTR_SUBFLOWS", 0) != cfg.max_subflows:
            accepted = msg.get("MPTCP_PM_ATTR_RCV_ADD_ADDRS", 0)
            m.limits("set", subflows=cfg.max_subflows, add_addr_accepted=accepted)
            log.info("MPTCP subflows per connection: %d", cfg.max_subflows)
    finally:
        m.close()


def main(args: argparse.Namespace) -> int:
    cfg = load_or_say("mcp", load, args.config)
    if cfg is None:
        return 1
    if args.check:
        print(f"{args.config}: {len(cfg.clients)} client prefix(es), port {cfg.port}: OK")
        return 0
    setup_logging("mcp", args.verbose)
    raise_fd_limit()
    n = worker_count(cfg.workers)
    try:
        socks = [listener(cfg) for _ in range(n)]
    except OSError as exc:
        print(f"mptcp-cpe mcp: {cfg.host}: listen/port: cannot listen on [{cfg.listen}]:{cfg.port}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        set_subflow_limit(cfg)
    except Exception as exc:  # noqa: BLE001 - one clear line
        print(f"mptcp-cpe mcp: {cfg.host}: max_subflows: cannot set the kernel's MPTCP limits: {exc}", file=sys.stderr)
        return 1
    if not _sysctl_has("/proc/sys/net/ipv4/tcp_fastopen", 2):
        log.warning("net.ipv4.tcp_fastopen lacks the server bit (2): Convert messages will wait for the handshake")
    cookies = Cookies(os.urandom(32))
    state = {"cfg": cfg}

    def work(index: int) -> int:
        for i, s in enumerate(socks):
            if i != index:
                s.close()
        return McpWorker(state["cfg"], args.config, socks[index], cookies, n).run(WorkerSignals())

    def reload() -> bool:
        try:
            new = load(args.config, cfg.host)
        except InventoryError as exc:
            log.error("reload refused: %s", exc)
            return False
        for key in START_ONLY:
            if getattr(new, key) != getattr(state["cfg"], key):
                log.error("reload refused: %s: %s: changes only with a restart (got %r)", new.host, key, getattr(new, key))
                return False
        try:
            set_subflow_limit(new)
        except Exception as exc:  # noqa: BLE001
            log.error("reload refused: max_subflows: %s", exc)
            return False
        state["cfg"] = new
        log.info("config reloaded")
        return True

    def on_drain() -> None:
        # The workers close their listeners; the parent's copies would keep them listening,
        # and new clients would wait in a queue nobody accepts from.
        for s in socks:
            s.close()

    return Supervisor("mcp", n, work, reload, cfg.drain_timeout_s, on_drain=on_drain).run()


def _sysctl_has(path: str, bit: int) -> bool:
    try:
        return bool(int(Path(path).read_text().split()[0], 0) & bit)
    except (OSError, ValueError, IndexError):
        return False


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_daemon_parser(sub, "mcp", "the network-side converter (MCP, RFC 8803): MPTCP in, TCP out", "mcp_converter", main)
