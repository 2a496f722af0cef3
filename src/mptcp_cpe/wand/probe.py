"""WAN health: probes sent out of one WAN from its own address, and the up/down hysteresis;
and whether MPTCP survives the WAN's path to the MCPs.

A probe leaves by its WAN because its socket is bound to the WAN's address (wand's
``from <address>`` rule picks the WAN's table) and to the WAN's device. A TCP probe counts
a reset as an answer: it proves the path as well as an accepted connection does.

The MPTCP test (`mptcp_test`) opens an MPTCP connection the same way to an MCP and, once
the handshake is done, asks the kernel whether the connection is still MPTCP
(``TCP_IS_MPTCP``: the kernel answers for the one TCP subflow left after a fallback, 0). A
middlebox that strips MPTCP options from the SYN or the SYN/ACK makes it fall back: the
result is "stripped". It closes at once, sending nothing (the MCP ends such a connection
without a word). A reset or no answer says nothing about MPTCP: the health probes judge
reachability. `MptcpVerdict` turns the results into a WAN's verdict and its test schedule.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..inventory import Probe
from ..kernelcaps import IPPROTO_MPTCP
from ..mcptrust import address_problem

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY = 128, 129
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
# getsockopt(SOL_TCP) on an MPTCP socket: 1 while it is MPTCP, 0 once it fell back to TCP
# (the kernel then answers for its one subflow). MPTCP_INFO (SOL_MPTCP 284) would refuse
# with EOPNOTSUPP after a fallback instead (Linux 6.18).
TCP_IS_MPTCP = 43
# MPTCP test results, and verdicts.
PASSES, STRIPPED, NO_VERDICT = "passes", "stripped", "none"
UNKNOWN, BLOCKED = "unknown", "blocked"
MPTCP_TRIES = 3  # MCP addresses one test tries at most, until one gives a verdict


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


def mptcp_test(source: str, device: str, target: str, port: int, timeout: float) -> str:
    """One MPTCP handshake from ``source`` on ``device`` to ``target``: PASSES when the
    connection is still MPTCP once established, STRIPPED when it fell back to TCP, NO_VERDICT
    when it was refused, reset or not answered within ``timeout``. Closed at once, nothing sent."""
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    with _socket(family, socket.SOCK_STREAM, IPPROTO_MPTCP, source, device) as s:
        rc = s.connect_ex((target, port))
        if rc not in (0, errno.EINPROGRESS):
            return NO_VERDICT
        if not select.select([], [s], [], timeout)[1]:
            return NO_VERDICT
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return NO_VERDICT
        return PASSES if s.getsockopt(socket.SOL_TCP, TCP_IS_MPTCP) else STRIPPED


def plain_mcp(address: str) -> str:
    """An MCP address as the socket takes it: an IPv4-mapped IPv6 one (DHCPv6) as IPv4."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped or ip)


def mptcp_targets(sources: dict[int, str], own: Iterable[Iterable[str]], others: Iterable[Iterable[str]]) -> tuple[tuple[str, str], ...]:
    """The (source, MCP address) pairs a WAN's MPTCP test tries, in order: the MCPs the WAN
    learned (``own``, mcp.json), or when it learned none, ``others`` (the MCPs the other WANs
    learned, then the static ones: the converter's order); each MCP's first address of a
    family the WAN has an address of. Never a loopback, link-local or multicast address."""
    out: list[tuple[str, str]] = []
    for mcps in (own, others):
        for mcp in mcps:
            for address in mcp:
                address = plain_mcp(address)
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                if family in sources and address_problem(address) is None:
                    pair = (sources[family], address)
                    if pair not in out:
                        out.append(pair)
                    break
        if out:
            break
    return tuple(out[:MPTCP_TRIES])


def mptcp_round(device: str, targets: tuple[tuple[str, str], ...], port: int, timeout: float) -> tuple[str, str | None]:
    """One MPTCP test of a WAN: its targets in order until one gives a verdict; (result, the
    MCP address that gave it, or the last tried)."""
    tried = None
    for source, mcp in targets:
        tried = mcp
        try:
            result = mptcp_test(source, device, mcp, port, timeout)
        except OSError:  # the address went, no route, or no MPTCP in this kernel: nothing to say
            result = NO_VERDICT
        if result != NO_VERDICT:
            return result, mcp
    return NO_VERDICT, tried


@dataclass
class MptcpVerdict:
    """Whether MPTCP survives one WAN's path to the MCPs, and when to test it next.

    ``stripped_count`` stripped results in a row make the WAN ``blocked`` (its MPTCP endpoint
    is withdrawn; routes and NAT stay); one result that passes makes it ``passes``. A WAN
    that passes is tested every ``interval_s``; a blocked one after ``backoff_min_s``,
    doubling while it is still stripped, up to ``backoff_max_s``; a stripped result short of
    the count is checked again after ``backoff_min_s``. A test without a verdict (reset,
    timeout) changes nothing and the next comes when the state would have it. Times are the
    caller's clock (wand: wall-clock seconds, shown in wan.json)."""

    interval_s: float
    backoff_min_s: float
    backoff_max_s: float
    stripped_count: int
    verdict: str = UNKNOWN  # unknown | passes | blocked
    since: float = 0.0  # time of the last change of ``verdict``
    stripped: int = 0  # stripped results in a row
    backoff_s: float = 0.0  # the wait after the last stripped result while blocked; 0: none yet
    next_test: float = 0.0  # a test is due from then (0: as soon as the WAN can be tested)
    mcp: str | None = None  # the MCP address of the last test

    @property
    def blocked(self) -> bool:
        return self.verdict == BLOCKED

    def _wait(self) -> float:
        if self.verdict == PASSES and not self.stripped:
            return self.interval_s
        if self.verdict == BLOCKED and self.backoff_s:
            return self.backoff_s
        return self.backoff_min_s

    def record(self, result: str, now: float, mcp: str | None = None) -> bool:
        """One test's result (PASSES, STRIPPED, NO_VERDICT); True when ``verdict`` changed."""
        before = self.verdict
        self.mcp = mcp if mcp is not None else self.mcp
        if result == PASSES:
            self.verdict, self.stripped, self.backoff_s = PASSES, 0, 0.0
        elif result == STRIPPED:
            self.stripped += 1
            if self.stripped >= self.stripped_count:
                if before == BLOCKED and self.backoff_s:
                    self.backoff_s = min(self.backoff_s * 2, self.backoff_max_s)
                else:
                    self.backoff_s = self.backoff_min_s
                self.verdict = BLOCKED
        self.next_test = now + self._wait()
        if self.verdict != before:
            self.since = now
            return True
        return False

    def retest(self, now: float) -> None:
        """The WAN came up, or its address or MCPs changed: a new path, tested now; its
        stripped results start again and so does the backoff (the verdict stays until then)."""
        self.next_test, self.stripped, self.backoff_s = now, 0, 0.0

    def due(self, now: float) -> bool:
        # A next test further away than any wait: the clock went back; test now.
        return now >= self.next_test or self.next_test - now > max(self.interval_s, self.backoff_max_s)
