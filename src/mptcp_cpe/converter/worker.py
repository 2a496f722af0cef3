"""A converter worker process: its listeners, the connections it accepts or refuses, its reload."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

from ..daemon import reload_config, run_worker
from ..localaddrs import LocalAddresses
from ..relay import IN, Loop, Pair, WorkerSignals, abort
from .config import START_ONLY, ConverterConfig, load
from .conversion import Conversion
from .mcps import McpBook, SharedHolds

log = logging.getLogger(__name__)

IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)
REFUSAL_LOG_S = 10.0


def not_diverted(dst: tuple, listen_port: int, local: Any) -> str | None:
    """Why a connection the listener accepted is not one TPROXY diverted from the LAN, or
    None. Diverted connections keep their destination, another host's; anything to one of
    the CPE's own addresses (or loopback, multicast, unspecified) came straight to the port:
    from a WAN, from the LAN to the CPE, from the CPE itself. ``local``: a LocalAddresses."""
    address, port = dst[0], dst[1]
    if not local.is_own(address):
        return None
    if port == listen_port:
        return "to the listen port on the CPE's own address"
    return "to the CPE's own address"


class RefusalLog:
    """The lines saying connections were refused: one line at most per ``every`` seconds,
    with how many since the line before and one of them as an example. ``note`` returns
    the line to log now, if any; ``flush`` the one owed when the period ends."""

    def __init__(self, every: float = REFUSAL_LOG_S):
        self.every = every
        self.next_line = float("-inf")  # when a line may be written again
        self.count = 0  # refused since the last line
        self.example = ""

    def _line(self, now: float) -> str:
        line = (f"refused {self.count} connection(s) to the converter's port not diverted from the LAN "
                f"since the last such line, e.g. {self.example}")
        self.count, self.example, self.next_line = 0, "", now + self.every
        return line

    def note(self, now: float, example: str) -> str | None:
        self.count += 1
        self.example = self.example or example
        return self._line(now) if now >= self.next_line else None

    def flush(self, now: float) -> str | None:
        return self._line(now) if self.count and now >= self.next_line else None



class ConverterWorker:
    def __init__(self, cfg: ConverterConfig, config_path: Path | None, listeners: list[socket.socket],
                 holds: SharedHolds | None = None, local: Any = None, kernel_fast_open: bool = True):
        self.cfg, self.config_path, self.listeners = cfg, config_path, listeners
        # The kernel takes TCP_FASTOPEN_CONNECT on MPTCP sockets (kernelcaps, probed once at start).
        self.kernel_fast_open = kernel_fast_open
        self.loop = Loop()
        self.local = local if local is not None else LocalAddresses()
        self.book = McpBook(cfg, holds or SharedHolds(), local=self.local)
        self.pending: set[Conversion] = set()
        self.pairs: set[Pair] = set()
        self.stats = {"converted": 0, "direct": 0, "refused": 0, "not_diverted": 0}
        self.refusals = RefusalLog()
        self.refusal_timer = None
        self.proto = IPPROTO_MPTCP

    @property
    def fast_open(self) -> bool:
        """The Convert message rides in the SYN (TCP Fast Open): the config allows it and the kernel can."""
        return self.cfg.fast_open == "auto" and self.kernel_fast_open

    def done(self, conv: Conversion) -> None:
        self.pending.discard(conv)

    def relay(self, lan: socket.socket, up: socket.socket, to_up: bytes, to_lan: bytes) -> None:
        pair = Pair(self.loop, lan, up, pipe_size=self.cfg.pipe_size, on_close=lambda p, why: self.pairs.discard(p),
                    head_ab=to_up, head_ba=to_lan)
        if not pair.closed:
            self.pairs.add(pair)

    def _accept(self, fd: int, ev: int) -> None:
        sock = next(s for s in self.listeners if s.fileno() == fd)
        self.local.refresh()  # an address the kernel added before these connections came is known
        for _ in range(64):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept: %s", exc)
                return
            try:
                dst, src = conn.getsockname()[:2], conn.getpeername()[:2]
                why = not_diverted(dst, self.cfg.listen_port, self.local)
                if why is not None:
                    self._refuse(conn, src, dst, why)
                    continue
                self.pending.add(Conversion(self, conn))
            except OSError as exc:
                log.info("LAN connection gone before it could be converted: %s", exc)
                abort(conn)

    def _refuse(self, conn: socket.socket, src: tuple, dst: tuple, why: str) -> None:
        """Closed at once with RST, before any MCP is asked; counted, and told at most once per period."""
        abort(conn)
        self.stats["not_diverted"] += 1
        line = self.refusals.note(time.monotonic(), f"[{src[0]}]:{src[1]} -> [{dst[0]}]:{dst[1]} ({why})")
        if line:
            log.warning("%s", line)
        elif self.refusal_timer is None:
            self.refusal_timer = self.loop.later(max(0.0, self.refusals.next_line - time.monotonic()), self._refusals_due)

    def _refusals_due(self) -> None:
        self.refusal_timer = None
        line = self.refusals.flush(time.monotonic())
        if line:
            log.warning("%s", line)

    def _reload(self) -> None:
        cfg = reload_config(load, self.config_path, self.cfg, START_ONLY)
        if cfg is None:
            return
        self.cfg = cfg
        held, cookies = self.book.held, self.book.cookies
        self.book = McpBook(self.cfg, held, cookies, local=self.local)

    def run(self, signals: WorkerSignals) -> int:
        for s in self.listeners:
            s.setblocking(False)
            self.loop.set(s.fileno(), IN, self._accept)
        self.loop.set(self.local.fileno(), IN, self.local.on_readable)
        return run_worker(self.loop, signals, self.listeners, self._reload if self.config_path is not None else None,
                          lambda: self.cfg.drain_timeout_s, lambda: not self.pairs and not self.pending)


def listeners(cfg: ConverterConfig) -> list[socket.socket]:
    """The TPROXY listeners (IPv4 and IPv6) of one worker, SO_REUSEPORT so each worker has its own."""
    out = []
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.setsockopt(socket.IPPROTO_IPV6, 75, 1)  # IPV6_TRANSPARENT
        else:
            s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT
        s.bind((addr, cfg.listen_port))
        s.listen(4096)
        out.append(s)
    return out

