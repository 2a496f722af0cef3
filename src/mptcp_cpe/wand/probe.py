"""WAN health: probes sent out of one WAN from its own address, and the up/down hysteresis.

A probe leaves by its WAN because its socket is bound to the WAN's address (wand's
``from <address>`` rule picks the WAN's table) and to the WAN's device. A TCP probe counts
a reset as an answer: it proves the path as well as an accepted connection does.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from dataclasses import dataclass

from ..inventory import Probe

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY = 128, 129
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


@dataclass
class Health:
    """One WAN's verdict from consecutive probe rounds: ``down_count`` failed rounds in a row
    take it down, ``up_count`` good rounds in a row bring it up. It starts down ("probing")
    and the first ``up_count`` good rounds make it healthy."""

    down_count: int
    up_count: int
    healthy: bool = False
    state: str = "probing"  # probing | up | down | no-address | no-device
    good: int = 0
    bad: int = 0
    since: float = 0.0  # wall-clock time of the last change of ``healthy`` or ``state``
    rtt_ms: float | None = None

    def record(self, ok: bool, rtt_ms: float | None, now: float) -> bool:
        """One probe round; True when ``healthy`` changed."""
        self.rtt_ms = rtt_ms if ok else None
        if ok:
            self.good, self.bad = self.good + 1, 0
            if not self.healthy and self.good >= self.up_count:
                self.healthy, self.state, self.since = True, "up", now
                return True
        else:
            self.good, self.bad = 0, self.bad + 1
            if self.healthy and self.bad >= self.down_count:
                self.healthy, self.state, self.since = False, "down", now
                return True
            if not self.healthy and self.state == "probing" and self.bad >= self.down_count:
                self.state, self.since = "down", now
        return False

    def unreachable(self, state: str, now: float) -> bool:
        """The WAN has no device, address or gateway: down at once, counters reset."""
        changed = self.healthy or self.state != state
        if changed:
            self.since = now
        self.healthy, self.state, self.good, self.bad, self.rtt_ms = False, state, 0, 0, None
        return changed

    def reachable_again(self, now: float) -> None:
        """Addressing is back: probe afresh."""
        if self.state in ("no-address", "no-device"):
            self.state, self.since = "probing", now


def _socket(family: int, kind: int, proto: int, source: str, device: str) -> socket.socket:
    s = socket.socket(family, kind, proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, device.encode())
        s.bind((source, 0))
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp_echo(source: str, device: str, target: str, timeout: float, ident: int, seq: int) -> float | None:
    """RTT in ms of one echo from ``source`` on ``device``, or None."""
    v6 = ":" in target
    family = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    request, reply = (ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY) if v6 else (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)
    payload = b"mptcp-cpe wand probe"
    header = struct.pack("!BBHHH", request, 0, 0, ident, seq)
    packet = header + payload
    if not v6:  # the kernel fills in the ICMPv6 checksum itself
        packet = struct.pack("!BBHHH", request, 0, _checksum(packet), ident, seq) + payload
    with _socket(family, socket.SOCK_RAW, proto, source, device) as s:
        start = time.monotonic()
        deadline = start + timeout
        # A link-local target (an IPv6 gateway from the RA) needs its scope: the device.
        s.sendto(packet, (target, 0, 0, socket.if_nametoindex(device)) if target.startswith("fe80:") else (target, 0))
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                break
            data, peer = s.recvfrom(2048)
            if not v6:
                data = data[(data[0] & 0x0F) * 4:]  # raw IPv4 sockets see the IP header
            if len(data) < 8 or peer[0].split("%")[0] != target:
                continue
            rtype, _, _, rid, rseq = struct.unpack("!BBHHH", data[:8])
            if rtype == reply and rid == ident and rseq == seq:
                return (time.monotonic() - start) * 1000
    return None


def tcp_connect(source: str, device: str, target: str, port: int, timeout: float) -> float | None:
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    with _socket(family, socket.SOCK_STREAM, 0, source, device) as s:
        start = time.monotonic()
        rc = s.connect_ex((target, port))
        if rc not in (0, errno.EINPROGRESS):
            return (time.monotonic() - start) * 1000 if rc == errno.ECONNREFUSED else None
        if not select.select([], [s], [], timeout)[1]:
            return None
        rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if rc in (0, errno.ECONNREFUSED):
            return (time.monotonic() - start) * 1000
    return None


class Prober:
    """Runs a WAN's probes: one round = every probe it can send; the round is good when any
    answered. ``sources`` maps family to the WAN's address, ``gateways`` to its gateway."""

    def __init__(self, probes: tuple[Probe, ...], timeout: float) -> None:
        self.probes = probes
        self.timeout = timeout
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0

    def targets(self, sources: dict[int, str], gateways: dict[int, str]) -> list[tuple[Probe, str, str]]:
        out = []
        for p in self.probes:
            if p.target == "gateway":
                out += [(p, sources[f], gateways[f]) for f in (socket.AF_INET, socket.AF_INET6)
                        if f in sources and f in gateways]
            else:
                f = socket.AF_INET6 if ":" in p.target else socket.AF_INET
                if f in sources:
                    out.append((p, sources[f], p.target))
        return out

    def round(self, device: str, sources: dict[int, str], gateways: dict[int, str]) -> tuple[bool, float | None]:
        """(answered, best RTT in ms). Errors (no route, address gone) count as no answer."""
        best = None
        self.seq = (self.seq + 1) & 0xFFFF
        for probe, source, target in self.targets(sources, gateways):
            try:
                if probe.kind == "tcp":
                    rtt = tcp_connect(source, device, target, probe.port, self.timeout)
                else:
                    rtt = icmp_echo(source, device, target, self.timeout, self.ident, self.seq)
            except OSError:
                rtt = None
            if rtt is not None:
                best = rtt if best is None else min(best, rtt)
                break  # one answer is enough for this round
        return best is not None, best
