"""wand's config: defaults, numbering of tables, and every refusal naming host, field, value."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mptcp_cpe.inventory import InventoryError
from mptcp_cpe.wand.config import ConfigError, WandConfig, from_dict, load

HOST = "cpe-t"
DSL = {"name": "dsl", "device": "wan1", "kind": "dsl"}
LTE = {"name": "lte", "device": "wan2", "kind": "lte"}


def cfg(**kw) -> dict:
    return {"host": HOST, "wans": [DSL, LTE], **kw}


def test_defaults_and_table_numbering():
    c = from_dict(cfg())
    assert isinstance(c, WandConfig)
    assert c.policy == "balance"
    assert [w.table for w in c.wans] == [101, 102]
    assert (c.probe.interval_s, c.probe.timeout_s, c.probe.down_count, c.probe.up_count) == (1.0, 1.0, 3, 2)
    assert (c.route_protocol, c.rule_priority, c.default_table, c.endpoint_id_base) == (201, 10000, 200, 100)
    assert str(c.state_file) == "/run/mptcp-cpe/wan.json"
    mp = c.mptcp_probe
    assert (mp.enabled, mp.interval_s, mp.backoff_min_s, mp.backoff_max_s, mp.stripped_count, mp.timeout_s, mp.port,
            mp.mcps, mp.mcp_prefixes) == (True, 300.0, 30.0, 900.0, 2, 3.0, 5124, (), ())
    # as_dict is the normal form: loading it again gives the same config.
    assert from_dict(json.loads(json.dumps(c.as_dict()))) == c


def test_explicit_tables_and_base():
    c = from_dict(cfg(table_base=300, wans=[{**DSL, "table": 1000}, LTE]))
    assert [w.table for w in c.wans] == [1000, 302]


def test_timeout_defaults_to_interval_when_shorter():
    assert from_dict(cfg(probe={"interval_s": 0.5})).probe.timeout_s == 0.5


@pytest.mark.parametrize(
    "raw, field, value",
    [
        pytest.param(cfg(policy="roundrobin"), "policy", "roundrobin", id="policy"),
        pytest.param(cfg(policy="failover"), "wans", ["dsl", "lte"], id="failover-two-primaries"),
        pytest.param(cfg(route_protocol=16), "route_protocol", 16, id="proto-dhcp"),
        pytest.param(cfg(route_protocol=256), "route_protocol", 256, id="proto-range"),
        pytest.param(cfg(rule_priority=32700), "rule_priority", 32700, id="band-past-main"),
        pytest.param(cfg(default_table=254), "default_table", 254, id="default-main"),
        pytest.param(cfg(default_table=101), "wans[0] (dsl).table", 101, id="default-is-wan-table"),
        pytest.param(cfg(wans=[{**DSL, "table": 102}, LTE]), "wans[1] (lte).table", 102, id="numbered-collides"),
        pytest.param(cfg(table_base=252), "table_base", 252, id="numbered-into-kernel-table"),
        pytest.param(cfg(endpoint_id_base=250), "endpoint_id_base", 250, id="endpoint-ids"),
        pytest.param(cfg(nft_table="1bad"), "nft_table", "1bad", id="nft-name"),
        pytest.param(cfg(state_file="wan.json"), "state_file", "wan.json", id="relative-state"),
        pytest.param(cfg(probe={"interval_s": 0}), "probe.interval_s", 0, id="interval-zero"),
        pytest.param(cfg(probe={"interval_s": True}), "probe.interval_s", True, id="interval-bool"),
        pytest.param(cfg(probe={"interval_s": 1, "timeout_s": 2}), "probe.timeout_s", 2, id="timeout-over-interval"),
        pytest.param(cfg(probe={"down_count": 0}), "probe.down_count", 0, id="down-count"),
        pytest.param(cfg(probe={"every": 1}), "probe", None, id="probe-unknown-key"),
        pytest.param(cfg(probe=[1]), "probe", [1], id="probe-list"),
        pytest.param(cfg(mptcp_probe={"enabled": "yes"}), "mptcp_probe.enabled", "yes", id="mptcp-enabled"),
        pytest.param(cfg(mptcp_probe={"interval_s": 0.5}), "mptcp_probe.interval_s", 0.5, id="mptcp-interval"),
        pytest.param(cfg(mptcp_probe={"backoff_min_s": 0}), "mptcp_probe.backoff_min_s", 0, id="mptcp-backoff-min"),
        pytest.param(cfg(mptcp_probe={"backoff_min_s": 60, "backoff_max_s": 30}), "mptcp_probe.backoff_max_s", 30,
                     id="mptcp-backoff-max-under-min"),
        pytest.param(cfg(mptcp_probe={"backoff_max_s": 10}), "mptcp_probe.backoff_max_s", 10, id="mptcp-backoff-max-under-default-min"),
        pytest.param(cfg(mptcp_probe={"stripped_count": 0}), "mptcp_probe.stripped_count", 0, id="mptcp-stripped-count"),
        pytest.param(cfg(mptcp_probe={"stripped_count": 2.0}), "mptcp_probe.stripped_count", 2.0, id="mptcp-stripped-float"),
        pytest.param(cfg(mptcp_probe={"timeout_s": 120}), "mptcp_probe.timeout_s", 120, id="mptcp-timeout"),
        pytest.param(cfg(mptcp_probe={"port": 0}), "mptcp_probe.port", 0, id="mptcp-port"),
        pytest.param(cfg(mptcp_probe={"mcps": ["203.0.113.1"]}), "mptcp_probe.mcps[0]", "203.0.113.1", id="mptcp-mcps-flat"),
        pytest.param(cfg(mptcp_probe={"mcps": [["203.0.113.1", "224.0.0.1"]]}), "mptcp_probe.mcps[0][1]", "224.0.0.1",
                     id="mptcp-mcps-multicast"),
        pytest.param(cfg(mptcp_probe={"mcp_prefixes": ["203.0.113.1/24"]}), "mptcp_probe.mcp_prefixes[0]", "203.0.113.1/24",
                     id="mptcp-prefix-host-bits"),
        pytest.param(cfg(mptcp_probe={"mcps": [["198.51.100.1"]], "mcp_prefixes": ["203.0.113.0/24"]}),
                     "mptcp_probe.mcps[0][0]", "198.51.100.1", id="mptcp-static-mcp-outside-prefixes"),
        pytest.param(cfg(mptcp_probe={"every": 1}), "mptcp_probe", None, id="mptcp-unknown-key"),
        pytest.param(cfg(mptcp_probe=True), "mptcp_probe", True, id="mptcp-not-a-mapping"),
        pytest.param(cfg(tables=1), "(config)", None, id="unknown-top-key"),
        pytest.param({"host": HOST}, "wans", None, id="no-wans"),
        pytest.param(cfg(wans=[{**DSL, "ipv4": {"address": "192.0.2.10/24", "gateway": "198.51.100.1"}}]),
                     "wans[0] (dsl).ipv4.gateway", "198.51.100.1", id="gateway-outside-prefix"),
        pytest.param(cfg(wans=[DSL, {**LTE, "device": "wan1"}]), "wans[1] (lte).device", "wan1", id="duplicate-device"),
        pytest.param(cfg(wans=[DSL, {**LTE, "name": "dsl"}]), "wans[1] (dsl).name", "dsl", id="duplicate-name"),
        pytest.param(cfg(wans=[{**DSL, "ipv4": {"address": "192.0.2.10", "gateway": "192.0.2.1"}}]),
                     "wans[0] (dsl).ipv4.address", "192.0.2.10", id="no-prefix-length"),
    ],
)
def test_refusals_name_host_field_value(raw, field, value):
    with pytest.raises(InventoryError) as exc:
        from_dict(raw)
    assert exc.value.host == HOST
    assert exc.value.field == field
    if value is not None:
        assert exc.value.value == value
    assert str(exc.value).startswith(f"{HOST}: {field}: ")


def test_failover_with_one_primary():
    c = from_dict(cfg(policy="failover", wans=[DSL, {**LTE, "backup": True}]))
    assert [w.backup for w in c.wans] == [False, True]


def test_load_names_the_file(tmp_path):
    bad = tmp_path / "wand.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError) as exc:
        load(bad, "h")
    assert str(bad) in str(exc.value) and "not JSON" in str(exc.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.json", "h")
    bad.write_text(json.dumps(cfg()))
    assert load(bad).host == HOST


json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@given(key=st.sampled_from(["policy", "probe", "mptcp_probe", "route_protocol", "rule_priority", "default_table", "table_base",
                            "endpoint_id_base", "nft_table", "state_file", "wans"]), value=json_like)
def test_property_junk_is_refused_or_accepted(key, value):
    try:
        c = from_dict(cfg(**{key: value}))
    except InventoryError as exc:
        assert str(exc).startswith(f"{HOST}: ")
        return
    assert from_dict(c.as_dict()) == c


def test_every_fields_mistake_at_once():
    with pytest.raises(InventoryError) as exc:
        from_dict(cfg(policy="random", rule_priority=0, wans=[DSL, {**LTE, "weight": 0}]))
    assert [e.field for e in exc.value.errors] == ["policy", "rule_priority", "wans[1] (lte).weight"]
    assert len(str(exc.value).splitlines()) == 3


def test_lan_dhcp_settings_round_trip_and_refusals():
    lan = {"name": "lan", "device": "lan0", "ipv4": "198.18.1.1/24",
           "dhcp": {"pool": "198.18.1.128 - 198.18.1.191", "ranges": {"lte": "198.18.1.192 - 198.18.1.223"}}}
    raw = cfg(lans=[lan], lan_dhcp={"state_dir": "/var/lib/mptcp-cpe/lan-dhcp", "reload": ["systemctl", "reload", "kea"]})
    c = from_dict(raw)
    assert c.lan_dhcp.reload == ("systemctl", "reload", "kea")
    assert from_dict(json.loads(json.dumps(c.as_dict()))) == c
    for bad, field in (({"state_dir": "x", "reload": ["true"]}, "lan_dhcp.state_dir"),
                       ({"state_dir": "/x", "reload": []}, "lan_dhcp.reload"),
                       ({"reload": ["true"]}, "lan_dhcp.state_dir"),
                       ({"state_dir": "/x", "reload": ["true"], "socket": "/s"}, "lan_dhcp")):
        with pytest.raises(ConfigError) as exc:
            from_dict(cfg(lan_dhcp=bad))
        assert exc.value.field == field, str(exc.value)


def test_mptcp_probe_settings_round_trip():
    raw = cfg(mptcp_probe={"enabled": False, "interval_s": 10, "backoff_min_s": 2, "backoff_max_s": 8,
                           "stripped_count": 3, "timeout_s": 0.5, "port": 8803,
                           "mcps": [["203.0.113.1", "2001:db8::1"], ["198.51.100.1"]],
                           "mcp_prefixes": ["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"]})
    c = from_dict(raw)
    assert c.mptcp_probe.mcps == (("203.0.113.1", "2001:db8::1"), ("198.51.100.1",))
    assert c.as_dict()["mptcp_probe"] == {**raw["mptcp_probe"], "interval_s": 10.0, "backoff_min_s": 2.0,
                                          "backoff_max_s": 8.0}
    assert from_dict(json.loads(json.dumps(c.as_dict()))) == c


def test_mptcp_probe_mistakes_at_once():
    with pytest.raises(InventoryError) as exc:
        from_dict(cfg(mptcp_probe={"interval_s": 0, "stripped_count": -1, "port": "5124"}))
    assert [(e.field, e.value) for e in exc.value.errors] == [
        ("mptcp_probe.interval_s", 0), ("mptcp_probe.stripped_count", -1), ("mptcp_probe.port", "5124")]
    assert str(exc.value).splitlines()[0] == f"{HOST}: mptcp_probe.interval_s: must be a number from 1 to 86400 (got 0)"
