"""The host's config: defaults, the normal form, and every refusal naming host, field, value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mptcp_cpe.checks import InventoryError, InventoryErrors
from mptcp_cpe.host.config import ConfigError, HostConfig, from_dict, load

HOST = "laptop-t"


def test_defaults_and_normal_form():
    c = from_dict({"host": HOST, "interface": "eth0"})
    assert isinstance(c, HostConfig)
    assert (c.mp_avail_code, c.mp_range_code, c.dhcp_client) == (225, 226, ("udhcpc",))
    assert (c.table_base, c.rule_priority, c.endpoint_id_base, c.route_protocol) == (300, 5000, 200, 203)
    assert c.state_dir == Path("/run/mptcp-cpe/host") and c.resolv_conf == Path("/etc/resolv.conf")
    assert c.table(3) == 303
    assert from_dict(json.loads(json.dumps(c.as_dict()))) == c


@pytest.mark.parametrize("client", ["udhcpc", "/usr/sbin/udhcpc", "busybox udhcpc", "/bin/busybox udhcpc"])
def test_dhcp_client_is_busybox_udhcpc(client):
    assert " ".join(from_dict({"interface": "eth0", "dhcp_client": client}).dhcp_client) == client


def test_resolv_conf_null_leaves_name_resolution_alone():
    assert from_dict({"interface": "eth0", "resolv_conf": None}).resolv_conf is None


@pytest.mark.parametrize(("raw", "field", "value"), [
    ({}, "interface", None),
    ({"interface": "eth/0"}, "interface", "eth/0"),
    ({"interface": "a-name-too-long-0"}, "interface", "a-name-too-long-0"),
    ({"mp_avail_code": 0}, "mp_avail_code", 0),
    ({"mp_range_code": 255}, "mp_range_code", 255),
    ({"mp_range_code": "226"}, "mp_range_code", "226"),
    ({"mp_avail_code": 226}, "mp_range_code", 226),
    ({"dhcp_client": "dhclient"}, "dhcp_client", "dhclient"),
    ({"dhcp_client": "busybox"}, "dhcp_client", "busybox"),
    ({"dhcp_client": ["udhcpc"]}, "dhcp_client", ["udhcpc"]),
    ({"table_base": 250}, "table_base", 250),
    ({"table_base": 0}, "table_base", 0),
    ({"rule_priority": 32700}, "rule_priority", 32700),
    ({"endpoint_id_base": 250}, "endpoint_id_base", 250),
    ({"route_protocol": 2}, "route_protocol", 2),
    ({"route_protocol": True}, "route_protocol", True),
    ({"state_dir": "run/host"}, "state_dir", "run/host"),
    ({"resolv_conf": "resolv.conf"}, "resolv_conf", "resolv.conf"),
    ({"ipv6_poll_s": 0}, "ipv6_poll_s", 0),
])
def test_refusals_name_host_field_and_value(raw, field, value):
    # The loader's refusals are InventoryErrors (ConfigError is one): what --check catches.
    with pytest.raises(InventoryError) as info:
        from_dict({"host": HOST, "interface": "eth0", **raw} if field != "interface" or raw else {"host": HOST})
    exc = info.value
    assert (exc.host, exc.field) == (HOST, field)
    if value is not None:
        assert exc.value == value and repr(value) in str(exc)
    assert str(exc).startswith(f"{HOST}: {field}: ") and "\n" not in str(exc)


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match=r"laptop-t: \(config\): unknown keys \['mp_avial_code'\]"):
        from_dict({"host": HOST, "interface": "eth0", "mp_avial_code": 225})


def test_every_mistake_at_once_a_line_each():
    with pytest.raises(InventoryErrors) as info:
        from_dict({"host": HOST, "interface": "eth0", "table_base": -1, "route_protocol": 0})
    assert [e.field for e in info.value.errors] == ["table_base", "route_protocol"]
    assert len(str(info.value).splitlines()) == 2


def test_load_names_the_file_when_it_is_not_json(tmp_path):
    path = tmp_path / "host.json"
    path.write_text("{interface: eth0}")
    with pytest.raises(ConfigError, match=rf"^{HOST}: {path}: not JSON"):
        load(path, HOST)
