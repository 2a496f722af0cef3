"""What the converter trusts: connections that were not diverted from the LAN (refused,
counted, logged once per period), static MCPs checked at load and learned ones filtered
(once per change), and the listen port closed to unmarked packets in the ruleset."""

from __future__ import annotations

import ipaddress
import logging
import socket

import pytest

from mptcp_cpe import converter as cv
from mptcp_cpe import localaddrs as la
from mptcp_cpe.inventory import InventoryError

MCP_NETS = (ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("2001:db8:a::/48"))
LAN = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8:1::/64"))


# ---------------------------------------------------------------- what reaches the listener

class Own:
    """The CPE's addresses as a worker sees them (a LocalAddresses without its socket)."""

    generation = 0

    def __init__(self, *addresses):
        self.addresses = {ipaddress.ip_address(a) for a in addresses}
        self.refreshed = 0

    def is_own(self, address):
        ip = ipaddress.ip_address(address)
        return la.never_convertible(ip) or ip in self.addresses

    def __contains__(self, ip):
        return ip in self.addresses

    def refresh(self):
        self.refreshed += 1


@pytest.mark.parametrize(("dst", "why"), [
    (("198.18.1.1", 8080), None),  # diverted: another host
    (("198.18.1.1", 5125), None),  # diverted, to a server that happens to use the listen port
    (("2001:db8:5::1", 443), None),
    (("198.51.100.2", 5125), "to the listen port on the CPE's own address"),  # from a WAN
    (("192.0.2.1", 5125), "to the listen port on the CPE's own address"),  # from the LAN, to the CPE
    (("192.0.2.1", 80), "to the CPE's own address"),
    (("127.0.0.1", 5125), "to the listen port on the CPE's own address"),  # from the CPE itself
    (("::1", 5125), "to the listen port on the CPE's own address"),
    (("224.0.0.9", 5125), "to the listen port on the CPE's own address"),
])
def test_not_diverted(dst, why):
    assert cv.not_diverted(dst, 5125, Own("198.51.100.2", "192.0.2.1", "2001:db8:1::1")) == why


def test_worker_resets_what_was_not_diverted_counts_it_and_says_it_once(caplog):
    # Loopback TCP, no root: a connection to 127.0.0.1 (the CPE itself) is never diverted.
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(16)
    port = lst.getsockname()[1]
    cfg = cv.from_dict({"lan_interfaces": ["lan0"], "listen_port": port, "mcps": [["198.51.100.1"]]})
    local = Own("192.0.2.1")
    worker = cv.ConverterWorker(cfg, None, [lst], local=local)
    asked = []
    worker.book.addresses = lambda: asked.append(1) or []  # an MCP asked would show here
    caplog.set_level(logging.INFO, logger="mptcp_cpe.converter")
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        lst.setblocking(False)
        worker._accept(lst.fileno(), 0)
        for c in clients:
            with pytest.raises(ConnectionResetError):
                c.recv(1)  # reset at once
    finally:
        for c in clients:
            c.close()
        lst.close()
    assert worker.stats["not_diverted"] == 3 and not worker.pending and not asked
    assert local.refreshed == 1  # the addresses were brought up to date before looking
    lines = [r.getMessage() for r in caplog.records if "not diverted" in r.getMessage()]
    assert len(lines) == 1, lines  # the first at once; the other two when the period ends
    assert lines[0].startswith("refused 1 connection(s)")
    assert f"-> [127.0.0.1]:{port} (to the listen port on the CPE's own address)" in lines[0]
    assert worker.refusal_timer is not None
    worker.refusals.next_line = 0.0  # as if the period had ended
    worker._refusals_due()
    lines = [r.getMessage() for r in caplog.records if "not diverted" in r.getMessage()]
    assert len(lines) == 2 and lines[1].startswith("refused 2 connection(s)")
    worker.loop.close()


def test_refusals_are_logged_once_per_period_with_a_count_and_an_example():
    log = cv.RefusalLog(every=10)
    assert log.note(100.0, "a") == ("refused 1 connection(s) to the converter's port not diverted from the LAN since "
                                    "the last such line, e.g. a")
    assert [log.note(100.0 + i, x) for i, x in ((1, "b"), (2, "c"), (9, "d"))] == [None, None, None]
    assert log.flush(105.0) is None  # not yet
    line = log.flush(110.0)
    assert line.startswith("refused 3 connection(s)") and line.endswith("e.g. b")
    assert log.flush(121.0) is None  # nothing since
    assert log.note(121.0, "e").startswith("refused 1 connection(s)")


def test_refusals_line_when_the_period_ends_on_a_refusal():
    log = cv.RefusalLog(every=10)
    log.note(0.0, "a")
    log.note(5.0, "b")
    line = log.note(10.0, "c")
    assert line is not None and line.startswith("refused 2 connection(s)") and line.endswith("e.g. b")


# ---------------------------------------------------------------- config and the MCP book

@pytest.mark.parametrize(("raw", "message"), [
    ({"mcp_prefixes": "198.51.100.0/24"}, "cpe: mcp_prefixes: must be a list of prefixes (got '198.51.100.0/24')"),
    ({"mcp_prefixes": ["198.51.100.1/24"]}, "cpe: mcp_prefixes[0]: not a prefix (host bits must be zero) (got '198.51.100.1/24')"),
    ({"lan_prefixes": [24]}, "cpe: lan_prefixes[0]: not a prefix (host bits must be zero) (got 24)"),
    ({"mcp_prefixes": ["198.51.100.0/24"], "mcps": [["198.51.100.1"], ["203.0.113.1"]]},
     "cpe: mcps[1][0]: cannot be an MCP: outside mcp_prefixes (198.51.100.0/24) (got '203.0.113.1')"),
    ({"lan_prefixes": ["192.0.2.0/24"], "mcps": [["198.51.100.1", "192.0.2.1"]]},
     "cpe: mcps[0][1]: cannot be an MCP: inside the LAN prefix 192.0.2.0/24 (got '192.0.2.1')"),
    ({"mcps": [["fe80::1"]]}, "cpe: mcps[0][0]: cannot be an MCP: a link-local address (got 'fe80::1')"),
])
def test_config_errors_for_the_trust_keys(raw, message):
    with pytest.raises(InventoryError) as exc:
        cv.from_dict({"host": "cpe", "lan_interfaces": ["lan0"], **raw})
    assert str(exc.value) == message


def test_config_keeps_the_trust_keys():
    cfg = cv.from_dict({"lan_interfaces": ["lan0"], "mcp_prefixes": ["198.51.100.0/24", "2001:DB8:A::/48"],
                        "lan_prefixes": ["192.0.2.0/24"], "mcps": [["198.51.100.1"]]})
    assert cfg.mcp_prefixes == MCP_NETS and cfg.lan_prefixes == (LAN[0],)
    assert cv.from_dict({"lan_interfaces": ["lan0"]}).mcp_prefixes == ()


def test_book_drops_refused_mcps_and_says_so_once_per_change(tmp_path, caplog):
    state = tmp_path / "mcp.json"
    cfg = cv.from_dict({"lan_interfaces": ["lan0"], "mcp_file": str(state), "mcp_prefixes": ["198.51.100.0/24"],
                        "lan_prefixes": ["192.0.2.0/24"], "mcps": [["198.51.100.200"]]})

    class Local(set):
        generation = 0

    local = Local({ipaddress.ip_address("198.51.100.200")})  # the static MCP became our own address
    book = cv.McpBook(cfg, local=local)
    state.write_text('{"wans": {"wan1": {"v4": {"mcps": [["203.0.113.66"], ["198.51.100.1", "192.0.2.5"]]}}}}')
    caplog.set_level(logging.INFO, logger="mptcp_cpe.converter")
    assert book.addresses() == ["198.51.100.1"]
    for _ in range(5):  # connections after connections: no more lines
        book._checked = -10
        assert book.addresses() == ["198.51.100.1"]
    said = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert said == ["MCP addresses not used: 203.0.113.66 (outside mcp_prefixes (198.51.100.0/24)); "
                    "192.0.2.5 (inside the LAN prefix 192.0.2.0/24); 198.51.100.200 (one of the CPE's own addresses)"]
    local.clear()
    local.generation += 1  # the address went away: the static MCP is used again
    assert book.addresses() == ["198.51.100.1", "198.51.100.200"]
    state.write_text('{"wans": {"wan1": {"v4": {"mcps": [["198.51.100.1"]]}}}}')
    book._checked = -10
    assert book.addresses() == ["198.51.100.1", "198.51.100.200"]
    assert "every MCP address known is used again" in caplog.text
    assert len([r for r in caplog.records if "not used" in r.getMessage()]) == 2


# ---------------------------------------------------------------- nftables

def test_ruleset_closes_the_listen_port_to_unmarked_packets():
    cfg = cv.from_dict({"lan_interfaces": ["lan0"], "listen_port": 6000, "fwmark": 77})
    for intercept in (True, False):  # kept while draining too
        text = cv.nft_ruleset(cfg, intercept)
        chain = text[text.index("  chain input {"):]
        assert chain.splitlines()[:5] == ["  chain input {", "    type filter hook input priority filter; policy accept;",
                                          "    tcp dport 6000 meta mark != 77 counter drop",
                                          "    tcp dport 6000 fib daddr type local counter drop", "  }"]
    # The mark the input chain wants is the one TPROXY's rules set.
    assert "tproxy ip to :6000 meta mark set 77 accept" in cv.nft_ruleset(cfg)
