"""The LANs' /64s from the WANs' delegated prefixes (``wand.lanprefix``), the rules and
addresses wand makes for them (``plan.desired``), and radvd's configuration."""

from __future__ import annotations

import shutil
import subprocess
from socket import AF_INET6

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mptcp_cpe.checks import InventoryError
from mptcp_cpe.inventory import parse_lans, parse_wans
from mptcp_cpe.wand import config as wand_config
from mptcp_cpe.wand.lanprefix import (
    DEPRECATED,
    PREFERRED,
    RETIRED,
    LanPrefix,
    RaSettings,
    numbered,
    radvd_conf,
    retire,
    with_states,
)
from mptcp_cpe.wand.plan import LAN_FROM_OFFSET, Link, Rule, desired

HOST = "cpe"
WANS = parse_wans(HOST, [{"name": "dsl", "device": "wan1", "kind": "dsl", "ipv6": "dhcp"},
                         {"name": "lte", "device": "wan2", "kind": "lte", "ipv6": "dhcp", "pd_length": 60}])
LANS = parse_lans(HOST, [{"name": "lan", "device": "lan0", "ipv4": "198.18.1.1/24"},
                         {"name": "guest", "device": "lan1", "ipv4": "198.18.2.1/24", "pd_subnet": 5},
                         {"name": "mgmt", "device": "lan2", "ipv4": "198.18.3.1/24", "pd_subnet": "none"}], WANS)
DELEGATED = {"wan1": ["2001:db8:1000::/56"], "wan2": ["2001:db8:2000:10::/60", "2001:db8:2000:20::/60"]}


def test_each_lan_gets_its_numbered_64_of_each_wans_first_prefix():
    got, problems = numbered(LANS, WANS, DELEGATED)
    assert problems == []
    assert [(p.lan, p.wan, p.prefix, p.address) for p in got] == [
        ("lan", "dsl", "2001:db8:1000::/64", "2001:db8:1000::1/64"),
        ("guest", "dsl", "2001:db8:1000:5::/64", "2001:db8:1000:5::1/64"),
        ("lan", "lte", "2001:db8:2000:10::/64", "2001:db8:2000:10::1/64"),
        ("guest", "lte", "2001:db8:2000:15::/64", "2001:db8:2000:15::1/64"),
    ]
    assert all(p.state == PREFERRED and p.delegated in ("2001:db8:1000::/56", "2001:db8:2000:10::/60") for p in got)


def test_a_wan_without_prefix_gives_nothing_and_a_short_prefix_is_a_problem_line():
    got, problems = numbered(LANS, WANS, {"wan2": ["2001:db8:2000:10::/63"]})
    assert [(p.lan, p.prefix) for p in got] == [("lan", "2001:db8:2000:10::/64")]
    assert problems == ["WAN lte's delegated 2001:db8:2000:10::/63 holds 2 /64s (0-1): none numbered 5 for LAN guest"]


@given(st.integers(48, 64), st.integers(0, 2 ** 16 - 1))
def test_property_the_64_lies_inside_the_delegated_prefix(length, subnet):
    import ipaddress
    wans = parse_wans(HOST, [{"name": "dsl", "device": "wan1", "kind": "dsl", "ipv6": "dhcp", "pd_length": length}])
    lans = parse_lans(HOST, [{"name": "lan", "device": "lan0", "ipv4": "198.18.1.1/24",
                              "pd_subnet": subnet % 2 ** (64 - length)}], wans)
    pd = ipaddress.IPv6Network(("2001:db8::", length))
    got, problems = numbered(lans, wans, {"wan1": [str(pd)]})
    assert problems == [] and len(got) == 1
    net = ipaddress.IPv6Network(got[0].prefix)
    assert net.prefixlen == 64 and net.subnet_of(pd)


def test_states_follow_the_wan_and_gone_prefixes_retire_for_a_while():
    current, _ = numbered(LANS[:1], WANS, DELEGATED)
    states = with_states(current, {"lte"})
    assert [(p.wan, p.state) for p in states] == [("dsl", DEPRECATED), ("lte", PREFERRED)]
    before = {(p.device, p.prefix): p for p in states}
    # wan1's lease ends: its /64 retires until now + retire_s, then is forgotten.
    after, _ = numbered(LANS[:1], WANS, {"wan2": DELEGATED["wan2"]})
    retired = retire(before, {}, after, now=100.0, retire_s=60)
    assert [(k, p.state, until) for k, (p, until) in retired.items()] == [(("lan0", "2001:db8:1000::/64"), RETIRED, 160.0)]
    assert retire({}, retired, after, now=150.0, retire_s=60) == retired
    assert retire({}, retired, after, now=161.0, retire_s=60) == {}
    # The prefix comes back: no longer retired.
    assert retire({}, retired, current, now=120.0, retire_s=60) == {}
    # retire_s 0: a gone /64 is forgotten at once.
    assert retire(before, {}, after, now=100.0, retire_s=0) == {}


def test_desired_puts_the_cpe_address_on_the_lan_and_a_rule_into_the_wans_table():
    cfg = wand_config.from_dict({"host": HOST, "wans": [w.as_dict() for w in WANS],
                                 "lans": [lan.as_dict() for lan in LANS]})
    current, _ = numbered(LANS, WANS, DELEGATED)
    gone = LanPrefix("lan0", "2001:db8:3000::/64", "lan", "dsl", "2001:db8:3000::/56", RETIRED)
    d = desired(cfg, {}, {}, with_states(current, {"dsl"}) + [gone])
    assert {(a.device, a.interface) for a in d.addresses} == {
        ("lan0", "2001:db8:1000::1/64"), ("lan1", "2001:db8:1000:5::1/64"),
        ("lan0", "2001:db8:2000:10::1/64"), ("lan1", "2001:db8:2000:15::1/64")}
    lan_rules = {r for r in d.rules if r.src and r.src.endswith("/64")}
    assert lan_rules == {
        Rule(AF_INET6, 10000 + LAN_FROM_OFFSET, 101, src="2001:db8:1000::/64"),
        Rule(AF_INET6, 10000 + LAN_FROM_OFFSET, 101, src="2001:db8:1000:5::/64"),
        Rule(AF_INET6, 10000 + LAN_FROM_OFFSET + 1, 102, src="2001:db8:2000:10::/64"),
        Rule(AF_INET6, 10000 + LAN_FROM_OFFSET + 1, 102, src="2001:db8:2000:15::/64")}
    # After the main table without its default routes (LAN to LAN stays inside), before
    # the balanced default route.
    suppress = next(r for r in d.rules if r.suppress_prefixlength == 0)
    default = max(r.priority for r in d.rules if r.family == AF_INET6)
    assert all(suppress.priority < r.priority < default for r in lan_rules)
    assert desired(cfg, {"wan1": Link(1, True, {}, {})}, {}).addresses == set()


def test_radvd_conf_lifetimes_by_state_and_router_lifetime_by_default_route():
    ra = RaSettings(interval_s=30, preferred_s=1800, valid_s=3600)
    p = [LanPrefix("lan0", "2001:db8:1000::/64", "lan", "dsl", "2001:db8:1000::/56", PREFERRED),
         LanPrefix("lan0", "2001:db8:2000:10::/64", "lan", "lte", "2001:db8:2000:10::/60", DEPRECATED),
         LanPrefix("lan0", "2001:db8:3000::/64", "lan", "dsl", "2001:db8:3000::/56", RETIRED)]
    text = radvd_conf(LANS, p, ra, default_router=True)
    blocks = {b.split("\n")[0].strip(): b for b in text.split("    prefix ")[1:]}
    assert "AdvPreferredLifetime 1800;" in blocks["2001:db8:1000::/64"] and "AdvValidLifetime 3600;" in blocks["2001:db8:1000::/64"]
    assert "AdvPreferredLifetime 0;" in blocks["2001:db8:2000:10::/64"] and "AdvValidLifetime 3600;" in blocks["2001:db8:2000:10::/64"]
    assert "AdvPreferredLifetime 0;" in blocks["2001:db8:3000::/64"] and "AdvValidLifetime 0;" in blocks["2001:db8:3000::/64"]
    assert "interface lan0" in text and "interface lan1" in text and "lan2" not in text
    assert text.count("AdvDefaultLifetime 90;") == 2
    assert radvd_conf(LANS, p, ra, default_router=False).count("AdvDefaultLifetime 0;") == 2


@pytest.mark.skipif(not shutil.which("radvd"), reason="radvd is not installed")
def test_radvd_accepts_what_wand_writes(tmp_path):
    p = [LanPrefix("lan0", "2001:db8:1000::/64", "lan", "dsl", "2001:db8:1000::/56", PREFERRED),
         LanPrefix("lan0", "2001:db8:3000::/64", "lan", "dsl", "2001:db8:3000::/56", RETIRED)]
    for ra in (RaSettings(), RaSettings(interval_s=4), RaSettings(interval_s=1800)):
        for default_router in (True, False):
            conf = tmp_path / "radvd.conf"
            conf.write_text(radvd_conf(LANS, p, ra, default_router))
            proc = subprocess.run(["radvd", "--configtest", "--logmethod", "stderr", "--config", str(conf)],
                                  capture_output=True, text=True, timeout=30)
            assert proc.returncode == 0, proc.stderr


def test_config_reads_lans_and_ra_and_names_bad_fields():
    raw = {"host": HOST, "wans": [w.as_dict() for w in WANS], "lans": [lan.as_dict() for lan in LANS],
           "ra": {"interval_s": 10, "reload": ["kill", "-HUP", "1"]}}
    cfg = wand_config.from_dict(raw)
    assert [lan.pd_subnet for lan in cfg.lans] == [0, 5, None] and cfg.ra.interval_s == 10
    assert wand_config.from_dict(cfg.as_dict()) == cfg
    for ra, field in (({"interval_s": 3}, "ra.interval_s"), ({"reload": []}, "ra.reload"),
                      ({"preferred_s": 10, "valid_s": 5}, "ra.preferred_s"), ({"config": "radvd.conf"}, "ra.config"),
                      ({"colour": 1}, "ra")):
        with pytest.raises(InventoryError) as e:
            wand_config.from_dict({**raw, "ra": ra})
        assert e.value.field == field and str(e.value).startswith(f"{HOST}: {field}: ")
    with pytest.raises(InventoryError) as e:
        wand_config.from_dict({**raw, "lans": [{**LANS[0].as_dict(), "pd_subnet": 16}]})
    assert e.value.field == "lans[0] (lan).pd_subnet"
