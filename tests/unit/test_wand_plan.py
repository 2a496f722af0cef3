"""The planner: desired kernel state from config + observed links + health, and the changes
from what wand owns to it. Pure: no kernel involved."""

from __future__ import annotations

from socket import AF_INET, AF_INET6

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mptcp_cpe.wand.config import from_dict
from mptcp_cpe.wand.plan import (
    Address,
    Change,
    Desired,
    Endpoint,
    Link,
    Owned,
    Route,
    Rule,
    changes,
    default_route_wans,
    desired,
    nft_ruleset,
    teardown,
)

DSL = {"name": "dsl", "device": "wan1", "kind": "dsl", "ipv6": "slaac"}
LTE = {"name": "lte", "device": "wan2", "kind": "lte", "weight": 3}
SAT = {"name": "sat", "device": "wan3", "kind": "satellite", "backup": True}


def config(*wans, **kw):
    return from_dict({"host": "h", "wans": list(wans or (DSL, LTE)), **kw})


def link(index, v4=None, gw4=None, v6=None, gw6=None, up=True):
    return Link(index=index, up=up,
                addresses={AF_INET: tuple(v4 or ()), AF_INET6: tuple(v6 or ())},
                gateways={k: v for k, v in ((AF_INET, gw4), (AF_INET6, gw6)) if v})


LINKS = {
    "wan1": link(2, ["192.0.2.10/24"], "192.0.2.1", ["2001:db8:0:1::10/64"], "fe80::1"),
    "wan2": link(3, ["198.51.100.10/24"], "198.51.100.1"),
    "wan3": link(4, ["203.0.113.10/24"], "203.0.113.1"),
}
ALL_UP = {"dsl": True, "lte": True, "sat": True}


def test_tables_rules_and_endpoints_for_two_healthy_wans():
    d = desired(config(), LINKS, ALL_UP)
    assert d.routes[(AF_INET, 101, "default")] == Route(AF_INET, 101, "default", device="wan1", gateway="192.0.2.1")
    assert d.routes[(AF_INET, 101, "192.0.2.0/24")] == Route(AF_INET, 101, "192.0.2.0/24", device="wan1", prefsrc="192.0.2.10")
    assert d.routes[(AF_INET6, 101, "default")].gateway == "fe80::1"
    assert d.routes[(AF_INET, 102, "default")].gateway == "198.51.100.1"
    # Weighted multipath over both in the default table (IPv6: only the DSL has it).
    assert d.routes[(AF_INET, 200, "default")].nexthops == (("192.0.2.1", "wan1", 1), ("198.51.100.1", "wan2", 3))
    assert d.routes[(AF_INET6, 200, "default")] == Route(AF_INET6, 200, "default", device="wan1", gateway="fe80::1")
    assert Rule(AF_INET, 10010, 101, src="192.0.2.10/32") in d.rules
    assert Rule(AF_INET, 10011, 102, src="198.51.100.10/32") in d.rules
    assert Rule(AF_INET6, 10010, 101, src="2001:db8:0:1::10/128") in d.rules
    assert Rule(AF_INET, 10030, 101, oif="wan1") in d.rules
    assert Rule(AF_INET, 10050, 254, suppress_prefixlength=0) in d.rules
    assert Rule(AF_INET6, 10060, 200) in d.rules
    assert d.endpoints == {
        100: Endpoint(100, "192.0.2.10", "wan1", False),
        101: Endpoint(101, "2001:db8:0:1::10", "wan1", False),
        102: Endpoint(102, "198.51.100.10", "wan2", False),
    }
    assert d.limits == (2, 2)  # one per WAN, whatever its families


def test_unhealthy_wan_loses_endpoint_and_default_share_but_keeps_its_table():
    d = desired(config(), LINKS, {"dsl": True, "lte": False})
    assert 102 not in d.endpoints
    assert d.routes[(AF_INET, 200, "default")] == Route(AF_INET, 200, "default", device="wan1", gateway="192.0.2.1")
    # Its table and rules stay: the probes leave by them and must see it come back.
    assert (AF_INET, 102, "default") in d.routes
    assert Rule(AF_INET, 10011, 102, src="198.51.100.10/32") in d.rules


def test_no_healthy_wan_routes_over_all_rather_than_blackholing():
    d = desired(config(), LINKS, {})
    assert d.endpoints == {}
    assert len(d.routes[(AF_INET, 200, "default")].nexthops) == 2


def test_backup_used_only_when_primaries_are_down():
    cfg = config(DSL, LTE, SAT)
    names = lambda h: [w.name for w in default_route_wans(cfg, LINKS, h, AF_INET)]  # noqa: E731
    assert names(ALL_UP) == ["dsl", "lte"]
    assert names({"sat": True}) == ["sat"]
    assert names({"dsl": True, "sat": True}) == ["dsl"]
    assert names({}) == ["dsl", "lte"]  # nothing healthy: every non-backup usable WAN
    d = desired(cfg, LINKS, ALL_UP)
    assert d.endpoints[104] == Endpoint(104, "203.0.113.10", "wan3", True)


def test_failover_uses_primary_then_first_healthy_backup():
    lte_backup = {**LTE, "backup": True}
    cfg = config(DSL, lte_backup, SAT, policy="failover")
    names = lambda h: [w.name for w in default_route_wans(cfg, LINKS, h, AF_INET)]  # noqa: E731
    assert names(ALL_UP) == ["dsl"]
    assert names({"lte": True, "sat": True}) == ["lte"]
    assert names({"sat": True}) == ["sat"]
    assert names({}) == ["dsl"]


def test_wan_without_address_gateway_or_carrier_is_not_used():
    for wan1 in (link(2, [], "192.0.2.1"), link(2, ["192.0.2.10/24"], None), link(2, ["192.0.2.10/24"], "192.0.2.1", up=False)):
        d = desired(config(), {**LINKS, "wan1": wan1}, ALL_UP)
        assert (AF_INET, 101, "default") not in d.routes
        assert 100 not in d.endpoints
        assert d.routes[(AF_INET, 200, "default")].device == "wan2"
    d = desired(config(), {"wan2": LINKS["wan2"]}, ALL_UP)  # wan1 missing altogether
    assert set(d.endpoints) == {102}


def test_static_addressing_comes_from_config():
    static = {**DSL, "ipv4": {"address": "192.0.2.10/24", "gateway": "192.0.2.1"}, "ipv6": "none"}
    cfg = config(static, LTE)
    # The kernel shows the address (wand added it) but no foreign gateway: the config's is used.
    d = desired(cfg, {**LINKS, "wan1": link(2, ["192.0.2.10/24"])}, ALL_UP)
    assert Address("wan1", "192.0.2.10/24") in d.addresses
    assert d.routes[(AF_INET, 101, "default")].gateway == "192.0.2.1"
    # IPv6 "none": an address the kernel shows on the device is ignored.
    d = desired(cfg, LINKS, ALL_UP)
    assert (AF_INET6, 101, "default") not in d.routes


def test_point_to_point_address_has_no_prefix_route():
    d = desired(config(), {**LINKS, "wan1": link(2, ["192.0.2.10/32"], "192.0.2.1")}, ALL_UP)
    assert not any(k[1] == 101 and k[2] != "default" for k in d.routes if k[0] == AF_INET)


def test_nft_ruleset_replaces_atomically_and_honours_nat():
    text = nft_ruleset(config(DSL, {**LTE, "nat": False}, nft_table="t1"))
    first = text.splitlines()[:3]
    assert first == ["table inet t1", "delete table inet t1", "table inet t1 {"]
    assert 'oifname "wan1" masquerade' in text and "wan2" not in text


def test_changes_from_nothing_add_everything_in_a_safe_order():
    d = desired(config(), LINKS, ALL_UP)
    out = changes(d, Owned())
    kinds = [(c.op, c.kind) for c in out]
    # Routes before rules, rules before endpoints, the NAT table applied once.
    assert kinds.index(("replace", "route")) < kinds.index(("add", "rule")) < kinds.index(("add", "endpoint"))
    assert kinds.count(("apply", "nft")) == 1
    # Per-WAN tables go in before the default table that points at them.
    routes = [c.item for c in out if c.kind == "route"]
    assert routes.index(d.routes[(AF_INET, 101, "default")]) < routes.index(d.routes[(AF_INET, 200, "default")])


def owned_from(d: Desired) -> Owned:
    return Owned(routes=dict(d.routes), rules=set(d.rules), endpoints=dict(d.endpoints),
                 addresses=set(d.addresses), nft=d.nft)


def test_converged_state_needs_no_change():
    d = desired(config(), LINKS, ALL_UP)
    assert changes(d, owned_from(d)) == []


def test_backup_role_change_is_set_flags_in_place():
    before = owned_from(desired(config(), LINKS, ALL_UP))
    after = desired(config(DSL, {**LTE, "backup": True}), LINKS, ALL_UP)
    out = [c for c in changes(after, before) if c.kind == "endpoint"]
    assert out == [Change("set_flags", "endpoint", Endpoint(102, "198.51.100.10", "wan2", True))]


def test_address_change_follows():
    before = owned_from(desired(config(), LINKS, ALL_UP))
    moved = {**LINKS, "wan2": link(3, ["198.51.100.77/24"], "198.51.100.1")}
    out = changes(desired(config(), moved, ALL_UP), before)
    text = [str(c) for c in out]
    assert "delete endpoint id 102 198.51.100.10 dev wan2 subflow" in text
    assert "add endpoint id 102 198.51.100.77 dev wan2 subflow" in text
    assert "add rule -4 10011: from 198.51.100.77/32 lookup 102" in text
    assert "delete rule -4 10011: from 198.51.100.10/32 lookup 102" in text
    assert any(c.op == "replace" and c.item.key == (AF_INET, 102, "198.51.100.0/24") for c in out)
    # The new rule goes in before the old one goes.
    assert text.index("add rule -4 10011: from 198.51.100.77/32 lookup 102") < text.index("delete rule -4 10011: from 198.51.100.10/32 lookup 102")


def test_removed_wan_is_cleaned_up():
    before = owned_from(desired(config(), LINKS, ALL_UP))
    after = desired(config(DSL), LINKS, ALL_UP)
    out = changes(after, before)
    assert Change("delete", "endpoint", Endpoint(102, "198.51.100.10", "wan2", False)) in out
    assert any(c.op == "delete" and c.kind == "route" and c.item.table == 102 for c in out)
    assert any(c.op == "delete" and c.kind == "rule" and c.item.table == 102 for c in out)


def test_teardown_removes_everything_owned_endpoints_first():
    have = owned_from(desired(config(DSL, {**DSL, "name": "x", "device": "wan9", "ipv4": {"address": "192.0.2.99/24", "gateway": "192.0.2.1"}}), LINKS, ALL_UP))
    out = teardown(have, "mptcp_cpe_wand")
    assert out[0].kind == "endpoint" or not have.endpoints
    assert {c.kind for c in out} >= {"rule", "route", "nft", "address"}
    assert all(c.op in ("delete", "apply") for c in out)
    assert out[-1].kind == "address"


# Property: whatever links and health look like, applying the changes converges (the plan
# applied to its own result needs nothing more), and the default route is never empty while
# some WAN is usable.
addrs4 = st.sampled_from(["192.0.2.10/24", "192.0.2.11/24", "192.0.2.12/32"])
links_st = st.fixed_dictionaries({
    dev: st.one_of(st.none(), st.builds(
        lambda a, gw, up, i=i: link(i, a, gw, up=up),
        st.lists(addrs4, max_size=2, unique=True), st.sampled_from([None, "192.0.2.1"]), st.booleans()))
    for i, dev in enumerate(("wan1", "wan2", "wan3"), start=2)
})
health_st = st.fixed_dictionaries({n: st.booleans() for n in ("dsl", "lte", "sat")})


@given(links=links_st, health=health_st, prior=health_st, policy=st.sampled_from(["balance", "failover"]))
def test_property_converges_and_never_blackholes(links, health, prior, policy):
    wans = (DSL, {**LTE, "backup": policy == "failover"}, SAT)
    cfg = config(*wans, policy=policy)
    links = {k: v for k, v in links.items() if v is not None}
    start = owned_from(desired(cfg, links, prior))
    want = desired(cfg, links, health)
    out = changes(want, start)
    # Apply the changes to a model of the kernel.
    for c in out:
        if c.kind == "route":
            start.routes.pop(c.item.key, None) if c.op == "delete" else start.routes.__setitem__(c.item.key, c.item)
        elif c.kind == "rule":
            (start.rules.discard if c.op == "delete" else start.rules.add)(c.item)
        elif c.kind == "endpoint":
            start.endpoints.pop(c.item.id, None) if c.op == "delete" else start.endpoints.__setitem__(c.item.id, c.item)
    assert changes(want, start) == []
    usable_any = any(v.up and v.addresses[AF_INET] and v.gateways.get(AF_INET) for v in links.values())
    assert ((AF_INET, 200, "default") in want.routes) == usable_any
    # Endpoints only for healthy WANs, never twice the same address.
    addresses = [e.address for e in want.endpoints.values()]
    assert len(addresses) == len(set(addresses))
    names = {w.device: w.name for w in cfg.wans}
    assert all(health[names[e.device]] for e in want.endpoints.values())


@pytest.mark.parametrize("policy", ["balance", "failover"])
def test_default_route_names_are_reported(policy):
    cfg = config(DSL, {**LTE, "backup": policy == "failover"}, policy=policy)
    d = desired(cfg, LINKS, ALL_UP)
    assert d.default_route[AF_INET] == (("dsl", "lte") if policy == "balance" else ("dsl",))


# --- single-homed MPTCP hosts: the LAN's DHCP ranges (role cpe_lan_dhcp) ---

SH_LAN = {"name": "lan", "device": "lan0", "ipv4": "198.18.1.1/24",
          "dhcp": {"pool": "198.18.1.128 - 198.18.1.191", "ranges": {"lte": "198.18.1.192 - 198.18.1.223"}}}


def test_each_range_leaves_by_its_wan_and_the_pools_tcp_by_the_first():
    cfg = config(lans=[SH_LAN])
    d = desired(cfg, LINKS, ALL_UP)
    # After the main table without defaults (10050): LAN to LAN stays inside.
    assert Rule(AF_INET, 10052, 102, src="198.18.1.192/27") in d.rules
    assert Rule(AF_INET, 10051, 101, src="198.18.1.128/26", ip_proto=6) in d.rules
    assert d.range_up == {"dsl": True, "lte": True}
    assert "reject" not in d.nft


def test_a_range_whose_wan_is_down_is_refused_fast_and_leases_nothing():
    cfg = config(lans=[SH_LAN])
    d = desired(cfg, LINKS, {"dsl": True, "lte": False})
    assert d.range_up["lte"] is False
    assert 'iifname "lan0" ip saddr 198.18.1.192-198.18.1.223 meta l4proto tcp counter reject with tcp reset' in d.nft
    assert 'iifname "lan0" ip saddr 198.18.1.192-198.18.1.223 counter reject with icmp type admin-prohibited' in d.nft
    # Its rule stays (the table is still the WAN's): what it sends is refused, not rerouted.
    assert Rule(AF_INET, 10052, 102, src="198.18.1.192/27") in d.rules
    # A WAN without its IPv4 address is down for its range too, whatever the probes said.
    no_v4 = {**LINKS, "wan2": link(3)}
    assert desired(cfg, no_v4, ALL_UP).range_up["lte"] is False


def test_the_pools_tcp_is_balanced_while_the_first_wan_is_down():
    cfg = config(lans=[SH_LAN])
    d = desired(cfg, LINKS, {"dsl": False, "lte": True})
    assert not [r for r in d.rules if r.ip_proto == 6]
    assert "reject" not in d.nft  # the pool is never refused: its hosts need a first subflow


def test_a_range_that_is_no_prefix_gets_a_rule_per_covering_prefix():
    lan = {**SH_LAN, "dhcp": {"pool": "198.18.1.100 - 198.18.1.149", "ranges": {"lte": "198.18.1.150 - 198.18.1.199"}}}
    d = desired(config(lans=[lan]), LINKS, ALL_UP)
    srcs = sorted(r.src for r in d.rules if r.family == AF_INET and r.table == 102 and r.priority == 10052)
    assert srcs == sorted(["198.18.1.150/31", "198.18.1.152/29", "198.18.1.160/27", "198.18.1.192/29"])


def test_lans_without_ranges_add_nothing():
    lan = {**SH_LAN, "dhcp": {"pool": "198.18.1.128 - 198.18.1.191"}}
    plain = desired(config(), LINKS, ALL_UP)
    d = desired(config(lans=[lan]), LINKS, ALL_UP)
    assert d.rules == plain.rules and d.nft == plain.nft
