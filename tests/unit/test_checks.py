"""The primitive checks every loader shares (``mptcp_cpe.checks``)."""

from __future__ import annotations

import ipaddress

import pytest

from mptcp_cpe.checks import ConfigError, InventoryError, address, ip_address, unicast_address

HOST = "h"


@pytest.mark.parametrize(("value", "version"), [("192.0.2.1", 4), ("2001:db8::1", 6), ("::ffff:203.0.113.1", 6)])
def test_ip_address_of_its_family(value, version):
    assert ip_address(HOST, "f", value, version) == ipaddress.ip_address(value)
    assert ip_address(HOST, "f", value) == ipaddress.ip_address(value)


@pytest.mark.parametrize(("value", "version", "message"), [
    ("2001:db8::1", 4, "h: f: not an IPv4 address (got '2001:db8::1')"),
    ("192.0.2.1", 6, "h: f: not an IPv6 address (got '192.0.2.1')"),
    ("192.0.2.300", 4, "h: f: not an IPv4 address (got '192.0.2.300')"),
    # ipaddress takes integers as addresses; no operator means one.
    (3221225985, 4, "h: f: not an IPv4 address (got 3221225985)"),
    ("nonsense", None, "h: f: not an IP address (got 'nonsense')"),
])
def test_ip_address_refuses(value, version, message):
    with pytest.raises(InventoryError) as exc:
        ip_address(HOST, "f", value, version)
    assert str(exc.value) == message


def test_config_address_checks_raise_config_errors():
    assert address(HOST, "listen", "::") == "::"
    for check in (address, unicast_address):
        with pytest.raises(ConfigError, match="not an IP address"):
            check(HOST, "listen", 5)
    with pytest.raises(ConfigError, match="must be a unicast address"):
        unicast_address(HOST, "mcps[0][0]", "::")
