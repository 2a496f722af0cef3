"""The CPE's LAN DHCP server (landhcp, role cpe_lan_dhcp): the inventory's `dhcp` section
of a LAN, checked, and Kea's configuration for it. Pure; Kea's own `-t` check of the
rendered text is in tests/netns/test_lan_dhcp.py."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mptcp_cpe import landhcp
from mptcp_cpe.checks import InventoryError
from mptcp_cpe.inventory import AddressRange, parse_lans, parse_wans

HOST = "cpe-test-01"
DSL = {"name": "dsl", "device": "wan1", "kind": "dsl"}
LTE = {"name": "lte", "device": "wan2", "kind": "lte"}
SAT = {"name": "sat", "device": "wan3", "kind": "satellite"}


def lan(dhcp, ipv4="198.18.1.1/24"):
    return {"name": "lan", "device": "lan0", "ipv4": ipv4, "dhcp": dhcp}


DHCP = {"pool": "198.18.1.128 - 198.18.1.191", "ranges": {"lte": "198.18.1.192 - 198.18.1.223"}}


def lans(dhcp=DHCP, wans=(DSL, LTE), **kw):
    return parse_lans(HOST, [lan(dhcp, **kw)], parse_wans(HOST, list(wans)))


def error(fn, *args, **kw) -> InventoryError:
    with pytest.raises(InventoryError) as exc:
        fn(*args, **kw)
    return exc.value


def test_ranges_are_ordered_as_the_wans_whatever_the_inventory_order():
    got = lans({"pool": "198.18.1.100 - 198.18.1.109",
                "ranges": {"sat": "198.18.1.120 - 198.18.1.129", "lte": "198.18.1.110 - 198.18.1.119"}},
               wans=(DSL, LTE, SAT))[0].dhcp
    assert [w for w, _ in got.ranges] == ["lte", "sat"]
    assert str(got.pool) == "198.18.1.100 - 198.18.1.109"


@pytest.mark.parametrize(("dhcp", "field", "words"), [
    ({"pool": "198.18.1.0 - 198.18.1.20"}, "dhcp.pool", "network and broadcast"),
    ({"pool": "198.18.1.200 - 198.18.1.255"}, "dhcp.pool", "network and broadcast"),
    ({"pool": "198.18.2.10 - 198.18.2.20"}, "dhcp.pool", "inside 198.18.1.0/24"),
    ({"pool": "198.18.1.20 - 198.18.1.10"}, "dhcp.pool", "after its last"),
    ({"pool": "198.18.1.1 - 198.18.1.10"}, "dhcp.pool", "CPE's own address"),
    ({"pool": "198.18.1.10"}, "dhcp.pool", "FIRST - LAST"),
    ({"pool": "a - b"}, "dhcp.pool", "two IPv4 addresses"),
    ({"ranges": {}}, "dhcp.pool", "missing"),
    ({"pool": "198.18.1.10 - 198.18.1.20", "lease": 5}, "dhcp", "unknown"),
    ({"pool": "198.18.1.10 - 198.18.1.20", "ranges": ["198.18.1.30 - 198.18.1.40"]}, "dhcp.ranges", "must map"),
    ({"pool": "198.18.1.10 - 198.18.1.20", "ranges": {"lte": "198.18.1.20 - 198.18.1.30"}}, "dhcp.ranges.lte", "overlaps the pool"),
    ({"pool": "198.18.1.10 - 198.18.1.20", "ranges": {"dsl": "198.18.1.30 - 198.18.1.40", "lte": "198.18.1.50 - 198.18.1.60"}},
     "dhcp.ranges.dsl", "first WAN"),
    ({"pool": "198.18.1.10 - 198.18.1.20", "ranges": {"lte": "198.18.1.30 - 198.18.1.40", "wifi": "198.18.1.50 - 198.18.1.60"}},
     "dhcp.ranges.wifi", "not a WAN"),
])
def test_bad_dhcp_sections_name_host_field_and_value(dhcp, field, words):
    e = error(lans, dhcp)
    assert e.host == HOST and e.field == f"cpe_lans[0] (lan).{field}" and words in e.problem, str(e)


def test_every_wan_after_the_first_needs_a_range_or_none_has_one():
    e = error(lans, {"pool": "198.18.1.10 - 198.18.1.20", "ranges": {"lte": "198.18.1.30 - 198.18.1.40"}}, wans=(DSL, LTE, SAT))
    assert e.field == "cpe_lans[0] (lan).dhcp.ranges" and "sat" in e.problem
    assert lans({"pool": "198.18.1.10 - 198.18.1.20"}, wans=(DSL, LTE, SAT))[0].dhcp.ranges == ()


def test_two_ranges_may_not_overlap():
    e = error(lans, {"pool": "198.18.1.10 - 198.18.1.20",
                     "ranges": {"lte": "198.18.1.30 - 198.18.1.40", "sat": "198.18.1.40 - 198.18.1.50"}}, wans=(DSL, LTE, SAT))
    assert e.field == "cpe_lans[0] (lan).dhcp.ranges.sat" and "range 198.18.1.30 - 198.18.1.40 of WAN lte" in e.problem


def test_a_lan_without_ipv4_has_nothing_to_lease():
    raw = {"name": "lan", "device": "lan0", "ipv6": ["2001:db8:0:100::1/64"], "dhcp": DHCP}
    e = error(parse_lans, HOST, [raw], parse_wans(HOST, [DSL, LTE]))
    assert e.field == "cpe_lans[0] (lan).dhcp" and "nothing to lease" in e.problem


@given(st.integers(1, 253), st.integers(1, 253))
def test_a_range_is_covered_exactly_by_its_prefixes(a, b):
    first, last = sorted((a, b))
    r = AddressRange(ipaddress.IPv4Address(f"198.18.1.{first}"), ipaddress.IPv4Address(f"198.18.1.{last}"))
    covered = {int(h) for net in r.prefixes for h in net}
    assert covered == set(range(int(r.first), int(r.last) + 1))


def conf(dhcp=DHCP, wans=(DSL, LTE), **settings):
    return landhcp.config(HOST, lans(dhcp, wans), landhcp.settings(HOST, settings))["Dhcp4"]


def test_kea_classes_pools_and_options():
    c = conf(mp_avail_code=230, mp_range_code=231)
    assert {d["code"]: d["type"] for d in c["option-def"]} == {230: "uint8", 231: "uint8"}
    classes = {k["name"]: k["test"] for k in c["client-classes"]}
    assert classes["mptcp_cpe_primary"] == "not option[231].exists"
    assert classes["mptcp_cpe_range_1"] == "option[231].hex == 0x01 and member('mptcp_cpe_wan_lte_up')"
    # A class used by member() is defined before the class that uses it.
    names = [k["name"] for k in c["client-classes"]]
    assert names.index("mptcp_cpe_wan_lte_up") < names.index("mptcp_cpe_range_1")
    (subnet,) = c["subnet4"]
    assert subnet["subnet"] == "198.18.1.0/24" and subnet["interface"] == "lan0"
    assert subnet["pools"][0] == {"pool": "198.18.1.128 - 198.18.1.191", "client-class": "mptcp_cpe_primary"}
    assert subnet["pools"][1]["client-class"] == "mptcp_cpe_range_1"
    assert subnet["pools"][1]["option-data"] == [{"name": "mp-range", "code": 231, "data": "1", "always-send": True}]
    opts = {o["name"]: o for o in subnet["option-data"]}
    # mp-avail: the count of WANs after the first, sent only when asked (no always-send).
    assert opts["mp-avail"]["data"] == "1" and "always-send" not in opts["mp-avail"]
    assert opts["routers"]["data"] == "198.18.1.1"


def test_mp_avail_counts_every_configured_extra_wan():
    c = conf({"pool": "198.18.1.100 - 198.18.1.109",
              "ranges": {"lte": "198.18.1.110 - 198.18.1.119", "sat": "198.18.1.120 - 198.18.1.129"}}, wans=(DSL, LTE, SAT))
    (subnet,) = c["subnet4"]
    assert {o["name"]: o["data"] for o in subnet["option-data"]}["mp-avail"] == "2"
    assert [p["option-data"][0]["data"] for p in subnet["pools"][1:]] == ["1", "2"]


def test_without_ranges_no_mp_avail_but_the_pool_is_still_guarded():
    (subnet,) = conf({"pool": "198.18.1.100 - 198.18.1.109"})["subnet4"]
    assert "mp-avail" not in {o["name"] for o in subnet["option-data"]}
    assert subnet["pools"] == [{"pool": "198.18.1.100 - 198.18.1.109", "client-class": "mptcp_cpe_primary"}]


def test_text_includes_each_wans_state_file(tmp_path):
    c = landhcp.config(HOST, lans(), landhcp.settings(HOST, {"state_dir": str(tmp_path)}))
    text = landhcp.text(c)
    assert f'"test": <?include "{tmp_path}/lte.test"?>' in text
    # Everything else is plain JSON: with the include replaced by its file, json reads it.
    assert landhcp.write_up(tmp_path, "lte", False) is True
    assert landhcp.write_up(tmp_path, "lte", False) is False
    inlined = re.sub(r'<\?include "([^"]+)"\?>', lambda m: Path(m.group(1)).read_text().strip(), text)
    classes = {k["name"]: k["test"] for k in json.loads(inlined)["Dhcp4"]["client-classes"]}
    assert classes["mptcp_cpe_wan_lte_up"] == landhcp.DOWN_TEST
    assert landhcp.write_up(tmp_path, "lte", True) is True
    assert json.loads((tmp_path / "lte.test").read_text()) == landhcp.UP_TEST


@pytest.mark.parametrize(("settings", "field"), [
    ({"mp_avail_code": 60}, "cpe_lan_dhcp_mp_avail_code"),
    ({"mp_range_code": 255}, "cpe_lan_dhcp_mp_range_code"),
    ({"mp_avail_code": 226}, "cpe_lan_dhcp_mp_range_code"),
    ({"lease_s": 10}, "cpe_lan_dhcp_lease_s"),
    ({"dns_servers": ["2001:db8::53"]}, "cpe_lan_dhcp_dns_servers[0]"),
    ({"dns_servers": "192.0.2.53"}, "cpe_lan_dhcp_dns_servers"),
    ({"state_dir": "relative"}, "cpe_lan_dhcp_state_dir"),
])
def test_bad_settings_name_the_variable(settings, field):
    e = error(landhcp.settings, HOST, settings)
    assert e.host == HOST and e.field == field, str(e)


def test_no_lan_with_dhcp_is_refused():
    e = error(landhcp.config, HOST, [], landhcp.settings(HOST, {}))
    assert e.field == "cpe_lans"
