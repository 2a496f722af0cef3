"""The CPE's own addresses from rtnetlink: the parser of RTM_NEWADDR/RTM_DELADDR with byte
vectors built here (and one written out octet by octet), the dump and the notifications
kept in order through a fake socket, and one dump of the real kernel (no privilege needed)."""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mptcp_cpe import localaddrs as la

little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="the literal vectors are in little-endian host order")


# ---------------------------------------------------------------- rtnetlink vectors

# RTM_NEWADDR for 192.0.2.1/24 on ifindex 2, as `ip monitor` would receive it: nlmsghdr
# (len 52, type 20, flags 0, seq 0, port 0), ifaddrmsg (AF_INET, /24, IFA_F_PERMANENT,
# scope universe, index 2), IFA_ADDRESS, IFA_LOCAL, IFA_LABEL "lan0" padded to 4 octets.
NEWADDR_V4 = bytes.fromhex(
    "34000000" "1400" "0000" "00000000" "00000000"
    "02" "18" "80" "00" "02000000"
    "0800" "0100" "c0000201"
    "0800" "0200" "c0000201"
    "0900" "0300" "6c616e3000" "000000"
)


def attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + bytes(-len(raw) % 4)


def addr_msg(kind: int, family: int, attrs: list[tuple[int, bytes]], *, index: int = 3, prefixlen: int = 64,
             seq: int = 0, port: int = 0, flags: int = 0, ifa_flags: int = 0) -> bytes:
    body = struct.pack("=BBBBI", family, prefixlen, ifa_flags, 0, index) + b"".join(attr(k, v) for k, v in attrs)
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, port) + body


def v4(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, text)


def v6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


@little_endian
def test_newaddr_vector_is_parsed():
    [msg] = la.parse_messages(NEWADDR_V4)
    assert (msg.type, msg.flags, msg.seq, msg.port) == (la.RTM_NEWADDR, 0, 0, 0)
    assert la.address_event(msg) == (True, ipaddress.IPv4Address("192.0.2.1"), 2)
    assert la.parse_attributes(msg.payload[8:])[3] == b"lan0\x00"


@little_endian
def test_the_builder_here_matches_the_literal_vector():
    built = addr_msg(la.RTM_NEWADDR, socket.AF_INET, [(1, v4("192.0.2.1")), (2, v4("192.0.2.1")), (3, b"lan0\x00")],
                     index=2, prefixlen=24, ifa_flags=0x80)
    assert built == NEWADDR_V4


def test_point_to_point_ipv4_uses_ifa_local_not_the_peer():
    raw = addr_msg(la.RTM_NEWADDR, socket.AF_INET, [(la.IFA_ADDRESS, v4("198.51.100.1")), (la.IFA_LOCAL, v4("198.51.100.2"))])
    assert la.address_event(la.parse_messages(raw)[0])[1] == ipaddress.IPv4Address("198.51.100.2")


def test_ipv6_address_and_its_removal():
    new = addr_msg(la.RTM_NEWADDR, socket.AF_INET6, [(la.IFA_ADDRESS, v6("2001:db8:1::1"))])
    gone = addr_msg(la.RTM_DELADDR, socket.AF_INET6, [(la.IFA_ADDRESS, v6("2001:db8:1::1"))], index=7)
    msgs = la.parse_messages(new + gone)  # two messages in one datagram
    assert [la.address_event(m) for m in msgs] == [(True, ipaddress.IPv6Address("2001:db8:1::1"), 3),
                                                   (False, ipaddress.IPv6Address("2001:db8:1::1"), 7)]


def test_other_messages_and_families_are_not_address_events():
    done = struct.pack("=IHHII", 20, la.NLMSG_DONE, la.NLM_F_MULTI, 5, 9) + bytes(4)
    assert la.address_event(la.parse_messages(done)[0]) is None
    bridge = addr_msg(la.RTM_NEWADDR, socket.AF_BRIDGE if hasattr(socket, "AF_BRIDGE") else 7, [(1, b"\x00" * 6)])
    assert la.address_event(la.parse_messages(bridge)[0]) is None
    no_address = addr_msg(la.RTM_NEWADDR, socket.AF_INET, [(3, b"lan0\x00")])
    assert la.address_event(la.parse_messages(no_address)[0]) is None


def test_error_message_carries_the_errno():
    ack = struct.pack("=IHHII", 36, la.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -1) + bytes(16)
    assert la.error_code(la.parse_messages(ack)[0]) == 1


@little_endian
@pytest.mark.parametrize("cut", range(1, len(NEWADDR_V4)))
def test_every_truncation_is_refused(cut):
    with pytest.raises(la.NetlinkError):
        la.parse_messages(NEWADDR_V4[:cut])


def test_an_address_of_the_wrong_length_is_refused():
    raw = addr_msg(la.RTM_NEWADDR, socket.AF_INET, [(la.IFA_LOCAL, v6("2001:db8::1"))])
    with pytest.raises(la.NetlinkError):
        la.address_event(la.parse_messages(raw)[0])
    overlong = addr_msg(la.RTM_NEWADDR, socket.AF_INET, [(la.IFA_LOCAL, v4("192.0.2.1"))])
    overlong = overlong[:24] + struct.pack("=HH", 40, la.IFA_LOCAL) + overlong[28:]
    with pytest.raises(la.NetlinkError):
        la.address_event(la.parse_messages(overlong)[0])


def test_dump_request_asks_every_address():
    req = la.dump_request(42)
    length, kind, flags, seq, port = struct.unpack_from("=IHHII", req)
    assert (length, kind, flags, seq, port) == (24, la.RTM_GETADDR, la.NLM_F_REQUEST | la.NLM_F_DUMP, 42, 0)
    assert req[16] == socket.AF_UNSPEC


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_garbage_is_refused_or_parsed_never_crashes(data):
    try:
        for msg in la.parse_messages(data):
            la.address_event(msg)
    except la.NetlinkError:
        pass


class FakeNetlink:
    """A NETLINK_ROUTE socket that answers the dump with ``dump`` (a function of the request's
    seq and our port id giving the datagrams), then gives ``later`` one per recv."""

    PORT = 4242

    def __init__(self, dump, later=()):
        self.dump, self.later = dump, list(later)
        self.queue: list[bytes] = []
        self.ready = socket.socketpair()  # always readable: select returns at once
        self.ready[1].send(b"x")

    def setblocking(self, flag):
        pass

    def bind(self, addr):
        self.groups = addr[1]

    def getsockname(self):
        return (self.PORT, self.groups)

    def fileno(self):
        return self.ready[0].fileno()

    def send(self, data):
        seq = struct.unpack_from("=IHHII", data)[3]
        self.queue += self.dump(seq, self.PORT)
        return len(data)

    def recv(self, n):
        if self.queue:
            return self.queue.pop(0)
        if self.later:
            return self.later.pop(0)
        raise BlockingIOError

    def close(self):
        for s in self.ready:
            s.close()


def test_dump_then_notifications_keep_the_set_current():
    def dump(seq, port):
        return [
            # A notification that came in before the dump's first part (another program's seq 1).
            addr_msg(la.RTM_NEWADDR, socket.AF_INET, [(la.IFA_LOCAL, v4("203.0.113.9"))], seq=seq, port=77),
            addr_msg(la.RTM_NEWADDR, socket.AF_INET, [(la.IFA_LOCAL, v4("192.0.2.1"))], seq=seq, port=port, flags=la.NLM_F_MULTI)
            + addr_msg(la.RTM_NEWADDR, socket.AF_INET6, [(la.IFA_ADDRESS, v6("2001:db8:1::1"))], seq=seq, port=port,
                       flags=la.NLM_F_MULTI),
            # Removed while the dump is read: it must not come back when the dump ends.
            addr_msg(la.RTM_DELADDR, socket.AF_INET, [(la.IFA_LOCAL, v4("192.0.2.1"))], seq=3, port=77),
            struct.pack("=IHHII", 20, la.NLMSG_DONE, la.NLM_F_MULTI, seq, port) + bytes(4),
        ]

    later = [addr_msg(la.RTM_NEWADDR, socket.AF_INET, [(la.IFA_LOCAL, v4("198.51.100.2"))]),
             addr_msg(la.RTM_DELADDR, socket.AF_INET6, [(la.IFA_ADDRESS, v6("2001:db8:1::1"))])]
    fake = FakeNetlink(dump, later)
    local = la.LocalAddresses(fake)
    assert fake.groups == la.RTMGRP_IPV4_IFADDR | la.RTMGRP_IPV6_IFADDR
    assert {str(a) for a in local.addresses} == {"203.0.113.9", "2001:db8:1::1"}
    gen = local.generation
    local.refresh()
    assert {str(a) for a in local.addresses} == {"203.0.113.9", "198.51.100.2"}
    assert local.generation > gen
    assert "198.51.100.2" in local and "::ffff:198.51.100.2" in local and "192.0.2.1" not in local
    assert local.is_own("127.0.0.1") and local.is_own("::") and local.is_own("224.0.0.1") and local.is_own("garbage")
    assert not local.is_own("198.18.1.1")
    local.close()


def test_a_refused_dump_is_an_error():
    def dump(seq, port):
        return [struct.pack("=IHHII", 36, la.NLMSG_ERROR, 0, seq, port) + struct.pack("=i", -1) + bytes(16)]

    with pytest.raises(la.NetlinkError, match="address dump refused"):
        la.LocalAddresses(FakeNetlink(dump))


def test_lost_notifications_mean_a_new_dump():
    dumps = []

    def dump(seq, port):
        dumps.append(seq)
        address = "192.0.2.1" if len(dumps) == 1 else "192.0.2.7"
        return [addr_msg(la.RTM_NEWADDR, socket.AF_INET, [(la.IFA_LOCAL, v4(address))], seq=seq, port=port, flags=la.NLM_F_MULTI),
                struct.pack("=IHHII", 20, la.NLMSG_DONE, la.NLM_F_MULTI, seq, port) + bytes(4)]

    class Overflowing(FakeNetlink):
        overflowed = False

        def recv(self, n):
            if not self.queue and not self.overflowed and dumps:
                self.overflowed = True
                raise OSError(105, "No buffer space available")  # ENOBUFS
            return super().recv(n)

    local = la.LocalAddresses(Overflowing(dump))
    assert "192.0.2.1" in local
    local.refresh()
    assert len(dumps) == 2 and "192.0.2.7" in local and "192.0.2.1" not in local


def test_the_kernel_dump_holds_loopback():
    local = la.LocalAddresses()  # a real NETLINK_ROUTE socket: no privilege needed
    try:
        assert ipaddress.IPv4Address("127.0.0.1") in local.addresses
        local.refresh()
    finally:
        local.close()
