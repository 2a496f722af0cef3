"""The state files' one owner (``mptcp_cpe.state``): wan.json as WanState, mcp.json's MCP
lists, and the atomic writes."""

from __future__ import annotations

import json

from mptcp_cpe.state import (
    EMPTY_MCP_STATE,
    WanRecord,
    WanState,
    dhcp_mcps,
    learned_mcps,
    read_wan_state,
    with_learned,
    write_wan_state,
)

# wan.json as wand writes it (every key of a WAN).
WAN_JSON = {"version": 1, "host": "cpe", "policy": "balance", "build": "c1f246f2d5000761", "updated": "t",
            "wans": {"dsl": {"device": "wan1", "kind": "dsl", "table": 101, "backup": False, "weight": 1,
                             "addresses": ["192.0.2.10/24"], "gateway": {"ipv4": "192.0.2.1", "ipv6": None},
                             "healthy": True, "state": "up", "since": "s", "last_probe_rtt_ms": 1.25,
                             "in_default_route": True, "endpoints": [100], "delegated": ["2001:db8:1000::/56"],
                             "mptcp": "passes", "mptcp_since": "s", "mptcp_next_test": "n", "mptcp_mcp": "203.0.113.1"},
                     "lte": {"device": "wan2", "kind": "lte", "table": 102, "backup": True, "weight": 1,
                             "addresses": [], "gateway": {"ipv4": None, "ipv6": None}, "healthy": False,
                             "state": "down", "since": None, "last_probe_rtt_ms": None,
                             "in_default_route": False, "endpoints": [], "delegated": None,
                             "mptcp": "blocked", "mptcp_since": "s", "mptcp_next_test": "n", "mptcp_mcp": "203.0.113.1"}},
            "lan_prefixes": [{"device": "lan0", "prefix": "2001:db8:1000::/64", "lan": "lan", "wan": "dsl",
                              "delegated": "2001:db8:1000::/56", "state": "preferred", "since": "s"}]}


def test_wan_state_reads_and_writes_the_same_layout(tmp_path):
    state = WanState.from_json(WAN_JSON)
    assert [w.name for w in state.wans] == ["dsl", "lte"]
    assert state.wan("dsl").addresses == ("192.0.2.10/24",) and state.wan("lte").backup
    assert state.wan("lte").mptcp_blocked and not state.wan("dsl").mptcp_blocked
    assert state.as_json() == WAN_JSON
    path = tmp_path / "wan.json"
    write_wan_state(state, path)
    assert json.loads(path.read_text()) == WAN_JSON
    assert read_wan_state(path) == state


def test_wan_state_without_a_file_or_with_another_layout(tmp_path):
    assert read_wan_state(tmp_path / "none.json") is None
    assert WanState.from_json({"wans": "x"}) == WanState()
    assert WanState.from_json({"wans": {"dsl": 5}}).wans == (WanRecord("dsl"),)
    # Unstamped: no "updated" key, as wand compares states before it stamps them.
    assert "updated" not in WanState(host="cpe").as_json()


MCP_JSON = {"version": 1, "wans": {
    "wan2": {"v6": {"mcps": [["2001:db8::1"]]}, "v4": {"mcps": [["198.51.100.9"]]}},
    "wan1": {"v4": {"mcps": [["192.0.2.1", "192.0.2.2"], "x"]}, "v6": {"mcps": "x"}},
    "wan3": "x",
}}


def test_learned_mcps_in_device_and_family_order_skipping_other_layouts():
    assert list(learned_mcps(MCP_JSON)) == [
        ("wan1", "v4", [["192.0.2.1", "192.0.2.2"]]),
        ("wan2", "v4", [["198.51.100.9"]]),
        ("wan2", "v6", [["2001:db8::1"]]),
    ]
    assert dhcp_mcps(MCP_JSON) == (("192.0.2.1", "192.0.2.2"), ("198.51.100.9",), ("2001:db8::1",))
    assert list(learned_mcps(None)) == [] and list(learned_mcps({"wans": []})) == []


def test_with_learned_puts_in_and_takes_out():
    entry = {"mcps": [["192.0.2.1"]], "client": "udhcpc", "event": "bound", "learned": "t"}
    one = with_learned(EMPTY_MCP_STATE, "wan1", "v4", entry)
    assert one == {"version": 1, "wans": {"wan1": {"v4": entry}}}
    assert EMPTY_MCP_STATE == {"version": 1, "wans": {}}  # not changed in place
    assert with_learned(one, "wan1", "v4", None) == EMPTY_MCP_STATE
    assert with_learned(one, "wan2", "v6", None) == one


def test_the_labs_summary_reads_mcp_json_through_the_state_module():
    import importlib.util
    import sys

    from helpers import TOP

    spec = importlib.util.spec_from_file_location("labctl_for_state", TOP / "lab" / "labctl.py")
    labctl = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = labctl  # its dataclasses look their module up there
    spec.loader.exec_module(labctl)
    state = {"version": 1, "wans": {"wan2": {"v4": {"mcps": [["203.0.113.1"], ["203.0.113.2", "203.0.113.3"]]}},
                                    "wan1": {"v4": {"mcps": [["203.0.113.1"]]},
                                             "v6": {"mcps": [["2001:db8::1"]], "prefixes": ["2001:db8:1000::/56"]}},
                                    "wan3": {"v6": {"mcps": [], "prefixes": ["2001:db8:3000::/56"]}}}}
    assert labctl.mcp_summary(state) == ("wan1 v4 [203.0.113.1] v6 [2001:db8::1] delegated 2001:db8:1000::/56; "
                                         "wan2 v4 [203.0.113.1] [203.0.113.2, 203.0.113.3]; "
                                         "wan3 v6 none delegated 2001:db8:3000::/56")
    assert labctl.mcp_summary({}) == "none yet"
