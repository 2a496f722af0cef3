"""The MPTCP buffers a CPE's lines need, from what the inventory says of each WAN (its
``rate`` and ``rtt_ms``: README.md, "The inventory").

Across unequal paths the receiver of an MPTCP connection holds what the fast paths deliver
while it waits for the slow path's segments (head-of-line blocking at the data level), and
must keep room for the next round trip meanwhile: about

    2 × Σ rate_i × max RTT_i

octets of receive buffer (Raiciu et al., "How Hard Can It Be? Designing and Implementing a
Deployable Multipath TCP", NSDI 2012, §4.2). With less, the sender's window closes on the
slow path's hole and the second line adds nothing. The sender keeps the same amount until
the data is acknowledged at the MPTCP level.

A backup WAN carries data only when every other one is down, so it is counted with the
other backups, not beside the lines it stands in for: the need is the larger of the two
sets'. A WAN that declares no ``rate`` or no ``rtt_ms`` counts with its kind's typical line
(``KIND_LINES``); a CPE none of whose WANs declares either keeps ``FIXED``, the converter's
buffer before the WANs sized it, so an inventory that says nothing behaves as it did.

Pure: no sockets, no kernel; the filter ``mptcp_cpe_mptcp_buffers`` hands it to the roles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from .inventory import Wan

PAGE = 4096
# The floor: the fixed buffer the converter had before its WANs sized it, the one the lab's
# and Molecule's 200 MB transfers over two subflows are proven with (left to autotuning,
# they stalled on MPTCP retransmissions: relay.set_rcvbuf). The formula counts data in
# flight and nothing else; a small line's few hundred kB would be below what bursts and
# reordering take, and memory is only committed while data waits, so less saves little.
FLOOR = 4 << 20
# The ceiling: 64 MiB covers Σ rate × max RTT up to 268 Mbit (2 Gbit/s at 130 ms, or 447
# Mbit/s in all at a geostationary satellite's 600 ms), more than the lines a CPE bonds
# need. Past it, one connection whose LAN reader stops could hold a large share of a
# router's memory by itself (net.ipv4.tcp_mem bounds all connections together, not one).
CEILING = 64 << 20
FIXED = FLOOR


@dataclass(frozen=True)
class Line:
    """What a WAN's line carries each way (Mbit/s) and its round trip to the MCP (ms)."""

    down_mbit: float
    up_mbit: float
    rtt_ms: float


# The typical line of each WAN kind, for what a WAN does not declare; on the high side, as a
# buffer too large costs memory only while data waits, one too small costs the second line.
KIND_LINES = {
    "dsl": Line(100, 40, 25),  # VDSL2 vectoring; interleaving adds to the round trip
    "fibre": Line(1000, 500, 10),  # GPON/XGS-PON residential
    "cable": Line(500, 50, 20),  # DOCSIS 3.0/3.1
    "ethernet": Line(1000, 1000, 10),  # a business or building line
    "lte": Line(50, 20, 60),  # loaded: queues add to the idle 30-40 ms
    "5g": Line(300, 50, 40),  # non-standalone, loaded
    "satellite": Line(100, 10, 650),  # geostationary (low orbit: about 40 ms)
}


@dataclass(frozen=True)
class Buffers:
    """The MPTCP buffers of one CPE's connections, in octets: ``download``, the receive
    buffer of the converter's MPTCP socket (it receives what the MCP sends over every WAN);
    ``upload``, what the side receiving the CPE's uploads (the MCP) and the converter's send
    side need. ``declared``: some WAN declared its line (else both are FIXED)."""

    download: int
    upload: int
    declared: bool

    def as_dict(self) -> dict[str, int | bool]:
        return {"download": self.download, "upload": self.upload, "declared": self.declared}


def line(wan: Wan) -> Line:
    """The WAN's line: what it declares, its kind's typical line for the rest."""
    typical = KIND_LINES[wan.kind]
    rate = wan.rate
    return Line(rate.down_mbit if rate else typical.down_mbit, rate.up_mbit if rate else typical.up_mbit,
                wan.rtt_ms if wan.rtt_ms is not None else typical.rtt_ms)


def need(rates_mbit: Iterable[float], rtts_ms: Iterable[float]) -> Fraction:
    """2 × Σ rate × max RTT in octets, exact (a need on a page boundary stays on it): with
    rates in Mbit/s and round trips in ms, 2 × 10^6/8 × 10^-3 = 250 octets per Mbit/s·ms."""
    rates, rtts = [Fraction(r) for r in rates_mbit], [Fraction(t) for t in rtts_ms]
    if not rates:
        return Fraction(0)
    return 250 * sum(rates) * max(rtts)


def octets(need_octets: Fraction | int) -> int:
    """A need as a socket buffer: rounded up to a page, within [FLOOR, CEILING]."""
    pages = math.ceil(Fraction(need_octets) / PAGE)
    return min(CEILING, max(FLOOR, pages * PAGE))


def _need(lines: Sequence[Line], direction: str) -> Fraction:
    return need((getattr(ln, direction) for ln in lines), (ln.rtt_ms for ln in lines))


def mptcp_buffers(wans: Sequence[Wan]) -> Buffers:
    """The MPTCP buffers the CPE with these (checked) WANs needs."""
    if not any(w.rate is not None or w.rtt_ms is not None for w in wans):
        return Buffers(FIXED, FIXED, False)
    active = [line(w) for w in wans if not w.backup]
    backups = [line(w) for w in wans if w.backup]
    return Buffers(*(octets(max(_need(active, d), _need(backups, d))) for d in ("down_mbit", "up_mbit")), True)
