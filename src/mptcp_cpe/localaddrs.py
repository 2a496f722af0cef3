"""The CPE's own addresses, kept current from the kernel over rtnetlink.

The converter must tell a connection TPROXY diverted from the LAN (its destination is some
other host) from one that merely reached its listener (its destination is one of the
CPE's own addresses: from a WAN, from the LAN to the CPE, from the CPE itself). Asking the
kernel per connection would cost a netlink round trip each; instead each worker keeps the
set of local addresses: one RTM_GETADDR dump at start, then the RTM_NEWADDR/RTM_DELADDR
notifications of the groups RTMGRP_IPV4_IFADDR and RTMGRP_IPV6_IFADDR, read from its epoll
loop (``fileno()``) and drained before each batch of accepts (``refresh()``), so an address
the kernel added before a connection arrived is known when that connection is looked at.
A lost notification (the socket's buffer overflowed: ENOBUFS) makes it dump again.

The wire format is parsed by pure functions (``parse_messages``, ``address_event``), tested
with byte vectors; ``LocalAddresses`` is the only part with a socket.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import select
import socket
import struct
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

NETLINK_ROUTE = 0
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP = 0x1, 0x2, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
RTATTR = struct.Struct("=HH")  # length, type
ADDRESS_OCTETS = {socket.AF_INET: 4, socket.AF_INET6: 16}
DUMP_TIMEOUT_S = 5.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class NetlinkError(Exception):
    """A netlink message that cannot be parsed, or a request the kernel refused."""


@dataclass(frozen=True)
class Message:
    type: int
    flags: int
    seq: int
    port: int
    payload: bytes


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_messages(data: bytes) -> list[Message]:
    """The netlink messages of one datagram; a truncated or overlong one is an error."""
    out = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < NLMSGHDR.size:
            raise NetlinkError(f"truncated netlink header at octet {offset}")
        length, mtype, flags, seq, port = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            raise NetlinkError(f"netlink message length {length} at octet {offset} does not fit {len(data)} octets")
        out.append(Message(mtype, flags, seq, port, bytes(data[offset + NLMSGHDR.size:offset + length])))
        offset += _align(length)
    return out


def parse_attributes(data: bytes) -> dict[int, bytes]:
    """Route attributes (type -> value); the last of a repeated type wins."""
    attrs = {}
    offset = 0
    while offset + RTATTR.size <= len(data):
        length, atype = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size or offset + length > len(data):
            raise NetlinkError(f"route attribute length {length} at octet {offset} does not fit {len(data)} octets")
        attrs[atype & 0x3FFF] = data[offset + RTATTR.size:offset + length]  # without NLA_F_NESTED/NET_BYTEORDER
        offset += _align(length)
    return attrs


def address_event(msg: Message) -> tuple[bool, Address, int] | None:
    """An RTM_NEWADDR (True) or RTM_DELADDR (False) message as (added, address, ifindex);
    None for any other message. The local address is IFA_LOCAL when present: for IPv4 and
    for point-to-point IPv6, IFA_ADDRESS is then the peer's; otherwise IFA_ADDRESS."""
    if msg.type not in (RTM_NEWADDR, RTM_DELADDR):
        return None
    if len(msg.payload) < IFADDRMSG.size:
        raise NetlinkError(f"ifaddrmsg truncated ({len(msg.payload)} octets)")
    family, _, _, _, index = IFADDRMSG.unpack_from(msg.payload)
    if family not in ADDRESS_OCTETS:
        return None
    attrs = parse_attributes(msg.payload[IFADDRMSG.size:])
    raw = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
    if raw is None:
        return None
    if len(raw) != ADDRESS_OCTETS[family]:
        raise NetlinkError(f"address of {len(raw)} octets in a family {family} message")
    return msg.type == RTM_NEWADDR, ipaddress.ip_address(raw), index


def error_code(msg: Message) -> int:
    """The errno of an NLMSG_ERROR message (0: an acknowledgement)."""
    if len(msg.payload) < 4:
        raise NetlinkError("NLMSG_ERROR truncated")
    return -struct.unpack_from("=i", msg.payload)[0]


def dump_request(seq: int) -> bytes:
    """RTM_GETADDR for every address of every family."""
    body = IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def never_convertible(address: Address) -> bool:
    """Addresses no diverted LAN connection can be for, whatever the interfaces hold."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address.is_loopback or address.is_unspecified or address.is_multicast
            or address == ipaddress.IPv4Address("255.255.255.255"))


class LocalAddresses:
    """The set of the CPE's own addresses (every interface, both families), kept current.

    ``fileno()`` goes into the worker's epoll loop with ``on_readable`` as its handler;
    ``refresh()`` reads what is queued without waiting (the converter calls it before it
    looks at accepted connections). ``generation`` changes whenever the set does."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self.sock.setblocking(False)
        self.sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        self.addresses: set[Address] = set()
        self.generation = 0
        self._seq = int(time.monotonic()) & 0xFFFF
        self.dump()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def __contains__(self, address: object) -> bool:
        if isinstance(address, str):
            try:
                address = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address in self.addresses

    def is_own(self, address: str | Address) -> bool:
        """True for one of the CPE's addresses, and for those that are never another host's."""
        if isinstance(address, str):
            try:
                address = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                return True  # not an address: nothing to convert to
        return never_convertible(address) or address in self

    def _apply(self, target: set[Address], msg: Message) -> bool:
        event = address_event(msg)
        if event is None:
            return False
        added, address, _ = event
        if added:
            target.add(address)
        else:
            target.discard(address)
        return True

    def dump(self) -> None:
        """Read the whole set again (at start, and after lost notifications). Notifications
        that arrive during the dump are applied to it in order, so none is lost."""
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        self.sock.send(dump_request(seq))
        port = self.sock.getsockname()[0]
        before = frozenset(self.addresses)
        fresh: set[Address] = set()
        deadline = time.monotonic() + DUMP_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NetlinkError(f"no end of the address dump in {DUMP_TIMEOUT_S:g} s")
            select.select([self.sock], [], [], left)
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # notifications lost: the dump still tells the truth
                    continue
                raise
            for msg in parse_messages(data):
                if (msg.seq, msg.port) != (seq, port) or msg.type not in (RTM_NEWADDR, NLMSG_DONE, NLMSG_ERROR):
                    # A notification (it carries the seq and port of whoever made the change):
                    # it holds for the set being built and the current one alike.
                    self._apply(fresh, msg)
                    self._apply(self.addresses, msg)
                    continue
                if msg.type == NLMSG_ERROR:
                    code = error_code(msg)
                    if code:
                        raise NetlinkError(f"address dump refused: {os.strerror(code)}")
                    continue
                if msg.type == NLMSG_DONE:
                    self.addresses = fresh
                    if fresh != before:
                        self.generation += 1
                    return
                self._apply(fresh, msg)

    def refresh(self) -> None:
        """Apply every notification queued, without waiting; dump again if some were lost."""
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                log.warning("local addresses: notifications lost (socket buffer full): reading them all again")
                self.dump()
                continue
            changed = False
            for msg in parse_messages(data):
                changed |= self._apply(self.addresses, msg)
            if changed:
                self.generation += 1

    def on_readable(self, fd: int, ev: int) -> None:
        self.refresh()
