"""The converters' pure parts: config checks, the nftables ruleset, the MCP lists of
mcp.json, the shared hold-downs, cookies, errno → Error TLV; and the splice relay on
loopback TCP (no root needed): half-close, reset, data integrity, no fd left behind."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mptcp_cpe import rfc8803
from mptcp_cpe import converter as cv
from mptcp_cpe import mcp
from mptcp_cpe.inventory import InventoryError
from mptcp_cpe import relay
from mptcp_cpe.relay import Loop, Pair

# ---------------------------------------------------------------- configs


@pytest.mark.parametrize(("raw", "message"), [
    ({}, "cpe: lan_interfaces: missing"),
    ({"lan_interfaces": []}, "cpe: lan_interfaces: must be a list of at least 1 interface name(s) (got [])"),
    ({"lan_interfaces": ["lan0"], "mcps": [["224.0.0.1"]]}, "cpe: mcps[0][0]: must be a unicast address"),
    ({"lan_interfaces": ["lan0"], "mcps": [[]]}, "cpe: mcps[0]: must be a non-empty list of addresses (got [])"),
    ({"lan_interfaces": ["lan0"], "bypass": {"destinations": ["192.0.2.1/24"]}},
     "cpe: bypass.destinations[0]: not a prefix (host bits must be zero) (got '192.0.2.1/24')"),
    ({"lan_interfaces": ["lan0"], "bypass": {"ports": [0]}}, "cpe: bypass.ports[0]: must be an integer from 1 to 65535 (got 0)"),
    ({"lan_interfaces": ["lan0"], "bypass": {"hosts": []}}, "cpe: bypass: unknown keys ['hosts']"),
    ({"lan_interfaces": ["lan0"], "listen_port": 5124}, "cpe: listen_port: is the mcp_port"),
    ({"lan_interfaces": ["lan0"], "route_table": 254}, "cpe: route_table: is one of the kernel's own tables"),
    ({"lan_interfaces": ["lan0"], "route_protocol": 2}, "cpe: route_protocol: belongs to the kernel"),
    ({"lan_interfaces": ["lan0"], "connect_timeout_s": 5, "reply_timeout_s": 2}, "cpe: reply_timeout_s: shorter than connect_timeout_s"),
    ({"lan_interfaces": ["lan0"], "nft_table": "1bad"}, "cpe: nft_table: must be 1-32 letters"),
    ({"lan_interfaces": ["lan0"], "colour": "blue"}, "cpe: (config): unknown keys ['colour']"),
])
def test_converter_config_errors_name_host_field_value(raw, message):
    with pytest.raises(InventoryError) as exc:
        cv.from_dict({"host": "cpe", **raw})
    assert str(exc.value).startswith(message), str(exc.value)


@pytest.mark.parametrize(("raw", "message"), [
    ({}, "mcp-1: clients: missing"),
    ({"clients": []}, "mcp-1: clients: empty"),
    ({"clients": ["0.0.0.0/0"]}, "mcp-1: clients[0]: a default prefix would make the MCP an open proxy (got '0.0.0.0/0')"),
    ({"clients": ["198.51.100.0/24"], "listen": "mcp.example"}, "mcp-1: listen: not an IP address (got 'mcp.example')"),
    ({"clients": ["198.51.100.0/24"], "max_subflows": 9}, "mcp-1: max_subflows: must be an integer from 0 to 8 (got 9)"),
    ({"clients": ["198.51.100.0/24"], "max_connections": 10, "max_connections_per_client": 11},
     "mcp-1: max_connections_per_client: above max_connections (10) (got 11)"),
    ({"clients": ["198.51.100.0/24"], "retry_after_s": 256}, "mcp-1: retry_after_s: must be an integer from 1 to 255 (got 256)"),
])
def test_mcp_config_errors_name_host_field_value(raw, message):
    with pytest.raises(InventoryError) as exc:
        mcp.from_dict({"host": "mcp-1", **raw})
    assert str(exc.value).startswith(message), str(exc.value)


def test_load_refuses_a_file_that_is_not_json(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{")
    with pytest.raises(InventoryError, match=r"cpe-9: .*c.json: not JSON"):
        cv.load(bad, "cpe-9")


# ---------------------------------------------------------------- nftables


def test_ruleset_intercepts_lan_tcp_after_every_bypass():
    cfg = cv.from_dict({"lan_interfaces": ["lan0", "lan1"], "listen_port": 6000, "fwmark": 77,
                        "bypass": {"destinations": ["192.0.2.0/24", "2001:db8::/32"], "ports": [22, 443],
                                   "sources": ["198.18.5.0/24"]}})
    text = cv.nft_ruleset(cfg)
    assert text.startswith("table inet mptcp_cpe_converter\ndelete table inet mptcp_cpe_converter\n")
    rules = [line.strip() for line in text.splitlines() if line.startswith("    ") and "type filter" not in line]
    assert rules[0] == 'iifname != { "lan0", "lan1" } return'
    assert rules.index("socket transparent 1 meta mark set 77 accept") < rules.index("ct state != new return")
    tproxy = [i for i, r in enumerate(rules) if "tproxy" in r]
    assert [rules[i] for i in tproxy] == ["meta nfproto ipv4 meta l4proto tcp tproxy ip to :6000 meta mark set 77 accept",
                                          "meta nfproto ipv6 meta l4proto tcp tproxy ip6 to :6000 meta mark set 77 accept"]
    bypasses = [i for i, r in enumerate(rules) if r.endswith(" return")]
    assert max(bypasses) < min(tproxy)  # nothing is intercepted before every bypass was looked at
    assert "tcp dport 5124 return" in rules  # connections to MCPs are never converted
    # Native MPTCP (MP_CAPABLE or MP_JOIN in a new connection's SYN) is never converted, and counted.
    native = rules.index('tcp option mptcp exists counter name "native_mptcp" return')
    assert rules.index("ct state != new return") < native < min(tproxy)
    assert "counter native_mptcp { }" in text
    assert "elements = { 192.0.2.0/24 }" in text and "elements = { 2001:db8::/32 }" in text
    assert "elements = { 22, 443 }" in text and "elements = { 198.18.5.0/24 }" in text


def test_draining_ruleset_keeps_live_connections_only():
    cfg = cv.from_dict({"lan_interfaces": ["lan0"]})
    text = cv.nft_ruleset(cfg, intercept=False)
    assert "tproxy" not in text and "socket transparent 1 meta mark set 8803 accept" in text


# ---------------------------------------------------------------- MCP lists and hold-downs


def test_dhcp_mcps_in_wan_order_without_repeats():
    state = {"version": 1, "wans": {
        "wan2": {"v4": {"mcps": [["198.51.100.9"]]}},
        "wan1": {"v4": {"mcps": [["192.0.2.1", "192.0.2.2"], ["198.51.100.9"]]}, "v6": {"mcps": [["2001:db8::1"]]}},
        "wan3": "garbage",
    }}
    assert cv.dhcp_mcps(state) == (("192.0.2.1", "192.0.2.2"), ("198.51.100.9",), ("2001:db8::1",))
    assert cv.dhcp_mcps({}) == () and cv.dhcp_mcps(None) == ()


def test_book_follows_the_file_and_puts_static_mcps_last(tmp_path):
    state = tmp_path / "mcp.json"
    cfg = cv.from_dict({"lan_interfaces": ["lan0"], "mcps": [["203.0.113.5"]], "mcp_file": str(state)})
    book = cv.McpBook(cfg)
    assert book.addresses() == ["203.0.113.5"]
    state.write_text('{"wans": {"wan1": {"v4": {"mcps": [["198.51.100.1"]]}}}}')
    book._checked = -10  # as if a second had passed
    assert book.addresses() == ["198.51.100.1", "203.0.113.5"]
    state.write_text("{not json")
    book._checked = -10
    assert book.addresses() == ["198.51.100.1", "203.0.113.5"]  # a bad file keeps what was known


def test_holds_are_shared_across_a_fork():
    holds = cv.SharedHolds()
    pid = os.fork()
    if pid == 0:
        holds.set("198.51.100.1", time.monotonic() + 60)
        os._exit(0)
    os.waitpid(pid, 0)
    assert holds.get("198.51.100.1") is not None
    assert holds.get("2001:db8::1") is None
    holds.set("2001:db8::1", time.monotonic() - 1)  # already over
    assert holds.get("2001:db8::1") is None


def test_holds_never_run_out_of_slots():
    holds = cv.SharedHolds()
    for i in range(cv.SharedHolds.SLOTS + 10):
        holds.set(f"2001:db8::{i:x}", time.monotonic() + 60 + i)
    assert holds.get(f"2001:db8::{cv.SharedHolds.SLOTS + 9:x}") is not None


# ---------------------------------------------------------------- MCP helpers


def test_cookie_bound_to_client_and_time():
    c = mcp.Cookies(b"k" * 32)
    cookie = c.make("198.51.100.2")
    assert c.valid("198.51.100.2", cookie)
    assert not c.valid("198.51.100.3", cookie)
    assert not c.valid("198.51.100.2", bytes(12))
    old = c.make("198.51.100.2", period=int(time.time() // mcp.COOKIE_PERIOD_S) - 2)
    assert not c.valid("198.51.100.2", old)
    # The cookie survives the Cookie TLV's padding both ways.
    tlvs, _ = rfc8803.parse(rfc8803.connect_message("192.0.2.1", 80, cookie=cookie))
    assert c.valid("198.51.100.2", tlvs[1].cookie)


@pytest.mark.parametrize(("err", "code", "value"), [
    (errno.ECONNREFUSED, rfc8803.ErrorCode.CONNECTION_RESET, 0),
    (errno.ENETUNREACH, rfc8803.ErrorCode.DESTINATION_UNREACHABLE, 0),
    (errno.EHOSTUNREACH, rfc8803.ErrorCode.DESTINATION_UNREACHABLE, 1),
    (errno.ETIMEDOUT, rfc8803.ErrorCode.DESTINATION_UNREACHABLE, 1),
    (errno.EACCES, rfc8803.ErrorCode.DESTINATION_UNREACHABLE, 13),
    (errno.EMFILE, rfc8803.ErrorCode.RESOURCE_EXCEEDED, 0),
    (errno.ENETDOWN, rfc8803.ErrorCode.NETWORK_FAILURE, 0),
])
def test_connect_errors_map_to_error_tlvs(err, code, value):
    tlvs, _ = rfc8803.parse(mcp.connect_error(err))
    assert tlvs[0].code == code and tlvs[0].value[0] == value


def test_mapped_client_addresses_are_checked_as_ipv4():
    nets = mcp.from_dict({"clients": ["198.51.100.0/24"]}).clients
    assert mcp.in_any(mcp._plain("::ffff:198.51.100.7"), nets)
    assert not mcp.in_any(mcp._plain("::ffff:203.0.113.7"), nets)


# ---------------------------------------------------------------- the relay on loopback


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    lst = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(lst.getsockname())
    b, _ = lst.accept()
    lst.close()
    return a, b


class Relayed:
    """client ⇄ [x | relay | y] ⇄ server, the relay's loop in a thread."""

    def __init__(self, head_ab=b"", head_ba=b""):
        self.client, x = _tcp_pair()
        y, self.server = _tcp_pair()
        self.loop = Loop()
        self.closed: list[str] = []
        self.fds_before = len(os.listdir("/proc/self/fd"))
        self.pair = Pair(self.loop, x, y, pipe_size=65536, head_ab=head_ab, head_ba=head_ba,
                         on_close=lambda p, why: self.closed.append(why))
        self.thread = threading.Thread(target=self.loop.run, args=(lambda: bool(self.closed),), daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.loop.close()


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while (b := sock.recv(65536)):
        out += b
    return out


@settings(max_examples=15, deadline=None)
@given(up=st.binary(max_size=300_000), down=st.binary(max_size=300_000), head=st.binary(max_size=64))
def test_relay_moves_every_byte_both_ways_and_half_closes(up, down, head):
    r = Relayed(head_ab=head)
    got_down: list[bytes] = []
    reader = threading.Thread(target=lambda: got_down.append(_read_all(r.client)))
    reader.start()
    r.client.sendall(up)
    r.client.shutdown(socket.SHUT_WR)  # half-close: the other direction goes on
    r.server.sendall(down)
    assert _read_all(r.server) == head + up
    r.server.shutdown(socket.SHUT_WR)
    reader.join(10)
    assert got_down == [down]
    r.finish()
    assert r.closed == ["done"]
    r.client.close()
    r.server.close()


def test_relay_passes_a_reset_on():
    r = Relayed()
    r.client.sendall(b"x" * 1000)
    assert r.server.recv(1000)
    r.server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    r.server.close()  # RST
    r.finish()
    assert r.closed == ["reset"]
    with pytest.raises(ConnectionResetError):
        for _ in range(100):
            if not r.client.recv(1000):
                break
            time.sleep(0.01)
        r.client.send(b"y")
        time.sleep(0.1)
        r.client.recv(10)
    r.client.close()


def test_relay_leaves_no_fd_behind():
    base = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        r = Relayed()
        r.client.sendall(b"ping")
        r.client.shutdown(socket.SHUT_WR)
        assert _read_all(r.server) == b"ping"
        r.server.close()
        r.finish()
        r.client.close()
    assert len(os.listdir("/proc/self/fd")) == base


@pytest.mark.parametrize("burst", [1, 2, 8])
@pytest.mark.parametrize("octets", [0, 1, 200_000])
def test_relay_passes_eof_on_when_it_reads_it_last_in_a_burst(monkeypatch, burst, octets):
    # A PUT: the server answers only after the client's EOF, so nothing else wakes the relay.
    # The EOF read as the last splice of a burst (always, with a burst of 1) must still be
    # passed on: it once waited for a wakeup that never came (e2e uploads under load hung).
    monkeypatch.setattr(relay, "BURST", burst)
    r = Relayed()
    r.client.sendall(b"u" * octets)
    r.client.shutdown(socket.SHUT_WR)
    r.server.settimeout(5)
    assert _read_all(r.server) == b"u" * octets  # socket.timeout here: the EOF was kept back
    r.server.sendall(b"answer")
    r.server.shutdown(socket.SHUT_WR)
    r.client.settimeout(5)
    assert _read_all(r.client) == b"answer"
    r.finish()
    assert r.closed == ["done"]
    r.client.close()
    r.server.close()
