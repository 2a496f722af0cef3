"""The lease lifecycle rules of `mptcp-cpe dhcp-hook` and the option forms clients print."""

from __future__ import annotations

import json

import pytest

from mptcp_cpe import dhcp_hook
from mptcp_cpe.dhcp_hook import EVENTS, HookError, apply_event, option_bytes

NOW = "2026-11-22T10:00:00+00:00"
EMPTY = {"version": 1, "wans": {}}


def bind(state, interface="wan1", event="BOUND", client="dhclient", family="v4", mcps=(("192.0.2.1",),)):
    return apply_event(state, client=client, interface=interface, event=event, family=family,
                       mcps=[list(m) for m in mcps] if mcps is not None else None, now=NOW)


@pytest.mark.parametrize(("value", "octets"), [
    ("04c0000201", bytes([4, 192, 0, 2, 1])),                 # udhcpc, odhcp6c
    ("04C0000201", bytes([4, 192, 0, 2, 1])),
    ("4:c0:0:2:1", bytes([4, 192, 0, 2, 1])),                 # dhclient, %x per octet
    ("04:c0:00:02:01", bytes([4, 192, 0, 2, 1])),
    ("4,192,0,2,1", bytes([4, 192, 0, 2, 1])),                # dhclient, array of unsigned integer 8
    ("4 192 0 2 1", bytes([4, 192, 0, 2, 1])),
    ("  04c0000201\n", bytes([4, 192, 0, 2, 1])),
])
def test_option_bytes_reads_every_client_form(value, octets):
    assert option_bytes(value) == octets


@pytest.mark.parametrize("value", ["04c00002g1", "4,192,0,2,256", "4;192", "abc", "0x04"])
def test_option_bytes_rejects_what_no_client_prints(value):
    with pytest.raises(HookError, match=repr(value).strip("'")[:3]):
        option_bytes(value)


def test_bind_records_the_wans_mcps():
    state = bind(EMPTY, mcps=[["192.0.2.1"], ["198.51.100.7", "198.51.100.8"]])
    assert state == {"version": 1, "wans": {"wan1": {"v4": {
        "mcps": [["192.0.2.1"], ["198.51.100.7", "198.51.100.8"]],
        "client": "dhclient", "event": "BOUND", "learned": NOW}}}}


def test_renew_replaces_and_other_wans_and_families_are_kept():
    state = bind(EMPTY, "wan1")
    state = bind(state, "wan2", mcps=[["203.0.113.9"]])
    state = bind(state, "wan1", family="v6", event="BOUND6", mcps=[["2001:db8::1"]])
    state = bind(state, "wan1", event="RENEW", mcps=[["192.0.2.77"]])
    assert state["wans"]["wan1"]["v4"]["mcps"] == [["192.0.2.77"]]
    assert state["wans"]["wan1"]["v6"]["mcps"] == [["2001:db8::1"]]
    assert state["wans"]["wan2"]["v4"]["mcps"] == [["203.0.113.9"]]


@pytest.mark.parametrize(("client", "event"), [
    (c, e) for c, events in EVENTS.items() for e, action in events.items() if action == dhcp_hook.WITHDRAW
])
def test_every_ending_event_withdraws_only_its_family(client, event):
    family = dhcp_hook.family_of(client, event)
    other = "v6" if family == "v4" else "v4"
    state = bind(EMPTY, family=family, mcps=[["192.0.2.1"]])
    state = bind(state, family=other, mcps=[["192.0.2.2"]])
    after = apply_event(state, client=client, interface="wan1", event=event, family=family, mcps=None, now=NOW)
    assert family not in after["wans"]["wan1"] and other in after["wans"]["wan1"]
    # And the last family gone takes the WAN with it.
    gone = apply_event(bind(EMPTY, family=family), client=client, interface="wan1", event=event,
                       family=family, mcps=None, now=NOW)
    assert gone == EMPTY


def test_a_lease_without_the_option_means_no_mcps():
    assert bind(bind(EMPTY), event="RENEW", mcps=None) == EMPTY


@pytest.mark.parametrize(("client", "event"), [
    (c, e) for c, events in EVENTS.items() for e, action in events.items() if action == dhcp_hook.IGNORE
])
def test_ignored_events_change_nothing(client, event):
    state = bind(EMPTY)
    assert apply_event(state, client=client, interface="wan1", event=event, family="v4", mcps=None, now=NOW) is state


def test_run_writes_the_state_file_and_ignores_a_malformed_option(tmp_path, caplog):
    state_file = tmp_path / "mcp.json"
    assert dhcp_hook.run("udhcpc", "wan1", "bound", ["04c0000201"], state_file) == 0
    first = json.loads(state_file.read_text())
    assert first["wans"]["wan1"]["v4"]["mcps"] == [["192.0.2.1"]]
    # list-len 3 is not a multiple of 4: logged, and the WAN keeps what it had.
    assert dhcp_hook.run("udhcpc", "wan1", "renew", ["03c0000201"], state_file) == 0
    assert json.loads(state_file.read_text()) == first
    assert "MCP option ignored" in caplog.text and "octet 0" in caplog.text
    assert dhcp_hook.run("udhcpc", "wan1", "deconfig", [], state_file) == 0
    assert json.loads(state_file.read_text()) == EMPTY


def test_client_rule_applies_before_recording(tmp_path):
    state_file = tmp_path / "mcp.json"
    # Two lists: [127.0.0.1] (dropped: loopback, list left empty) and [224.0.0.1, 192.0.2.5].
    data = "047f000001" + "08e0000001c0000205"
    dhcp_hook.run("udhcpc", "wan1", "bound", [data], state_file)
    assert json.loads(state_file.read_text())["wans"]["wan1"]["v4"]["mcps"] == [["192.0.2.5"]]


def test_v6_instances_are_separate_mcps(tmp_path):
    state_file = tmp_path / "mcp.json"
    one = "20010db8000000000000000000000001"
    two = "00000000000000000000ffffcb007102" + "20010db8000000000000000000000002"
    dhcp_hook.run("dhclient", "wan1", "BOUND6", [one, two], state_file)
    assert json.loads(state_file.read_text())["wans"]["wan1"]["v6"]["mcps"] == [
        ["2001:db8::1"], ["::ffff:203.0.113.2", "2001:db8::2"]]


@pytest.mark.parametrize(("args", "message"), [
    (["--client", "udhcpc", "--interface", "bad/if", "--event", "bound"], "'bad/if' is not an interface name"),
])
def test_cli_errors_are_logged_and_the_client_never_fails(tmp_path, caplog, args, message):
    from mptcp_cpe import cli
    rc = cli.main(["dhcp-hook", "--state-file", str(tmp_path / "m.json"), *args, "04c0000201"])
    assert rc == 0
    assert message in caplog.text
    assert not (tmp_path / "m.json").exists()


# ---------------------------------------------------------------- dhcpcd (DHCPv6) and delegated prefixes

ONE = "20010db8000002000000000000000001"
TWO = "00000000000000000000ffffcb007102" + "20010db8000002000000000000000002"


def test_dhcpcd_lease_records_mcps_and_prefixes_and_release_withdraws_both(tmp_path):
    state_file = tmp_path / "mcp.json"
    dhcp_hook.run("dhcpcd", "wan2", "BOUND6", [ONE, TWO], state_file, ["2001:db8:2000::/56"])
    entry = json.loads(state_file.read_text())["wans"]["wan2"]["v6"]
    assert entry["mcps"] == [["2001:db8:0:200::1"], ["::ffff:203.0.113.2", "2001:db8:0:200::2"]]
    assert entry["prefixes"] == ["2001:db8:2000::/56"] and entry["client"] == "dhcpcd"
    # A renewal with another prefix replaces the old one; the MCPs stay.
    dhcp_hook.run("dhcpcd", "wan2", "RENEW6", [ONE, TWO], state_file, ["2001:db8:2000:100::/56"])
    assert dhcp_hook.delegated_prefixes(json.loads(state_file.read_text())) == {"wan2": ["2001:db8:2000:100::/56"]}
    for ending in ("RELEASE6", "EXPIRE6", "STOP6", "STOPPED", "DEPARTED"):
        dhcp_hook.run("dhcpcd", "wan2", "BOUND6", [ONE], state_file, ["2001:db8:2000::/56"])
        dhcp_hook.run("dhcpcd", "wan2", ending, [], state_file)
        assert json.loads(state_file.read_text()) == EMPTY, ending


def test_a_prefix_without_mcps_is_kept_and_mcps_without_prefix_too(tmp_path):
    state_file = tmp_path / "mcp.json"
    dhcp_hook.run("dhcpcd", "wan1", "BOUND6", [], state_file, ["2001:db8:1000::/56"])
    entry = json.loads(state_file.read_text())["wans"]["wan1"]["v6"]
    assert entry["mcps"] == [] and entry["prefixes"] == ["2001:db8:1000::/56"]
    # The converter sees no MCP from it.
    from mptcp_cpe.state import dhcp_mcps
    assert dhcp_mcps(json.loads(state_file.read_text())) == ()
    dhcp_hook.run("dhcpcd", "wan1", "RENEW6", [ONE], state_file)
    entry = json.loads(state_file.read_text())["wans"]["wan1"]["v6"]
    assert entry["mcps"] == [["2001:db8:0:200::1"]] and entry["prefixes"] == []


def test_a_malformed_instance_is_dropped_alone(tmp_path, caplog):
    state_file = tmp_path / "mcp.json"
    # 15 octets: not a multiple of 16.
    dhcp_hook.run("dhcpcd", "wan2", "BOUND6", [ONE, "20010db800000200000000000000", TWO], state_file)
    assert json.loads(state_file.read_text())["wans"]["wan2"]["v6"]["mcps"] == [
        ["2001:db8:0:200::1"], ["::ffff:203.0.113.2", "2001:db8:0:200::2"]]
    assert "dhcpcd wan2 BOUND6: MCP option instance 2 dropped, the others kept" in caplog.text


@pytest.mark.parametrize(("prefix", "why"), [
    ("2001:db8:1000::1/56", "has host bits set"),
    ("2001:db8:1000::/72", "longer than /64"),
    ("192.0.2.0/24", "dropped"),
    ("nonsense", "dropped"),
])
def test_a_bad_delegated_prefix_is_dropped_alone(tmp_path, caplog, prefix, why):
    state_file = tmp_path / "mcp.json"
    dhcp_hook.run("dhcpcd", "wan1", "BOUND6", [ONE], state_file, [prefix, "2001:db8:1000:100::/56"])
    assert json.loads(state_file.read_text())["wans"]["wan1"]["v6"]["prefixes"] == ["2001:db8:1000:100::/56"]
    assert "delegated prefix" in caplog.text and why in caplog.text


def test_prefixes_on_a_v4_event_are_refused_and_logged(tmp_path, caplog):
    from mptcp_cpe import cli
    state_file = tmp_path / "m.json"
    rc = cli.main(["dhcp-hook", "--state-file", str(state_file), "--client", "udhcpc", "--interface", "wan1",
                   "--event", "bound", "--prefix", "2001:db8:1000::/56", "04c0000201"])
    assert rc == 0 and "--prefix is for DHCPv6 leases, not a v4 event" in caplog.text
    assert not state_file.exists()


def test_cli_passes_prefixes(tmp_path):
    from mptcp_cpe import cli
    state_file = tmp_path / "m.json"
    cli.main(["dhcp-hook", "--state-file", str(state_file), "--client", "dhcpcd", "--interface", "wan1",
              "--event", "BOUND6", "--prefix", "2001:db8:1000::/56", "--prefix", "2001:db8:1001::/56", ONE])
    assert dhcp_hook.delegated_prefixes(json.loads(state_file.read_text())) == {
        "wan1": ["2001:db8:1000::/56", "2001:db8:1001::/56"]}


def test_prune_withdraws_the_wans_that_are_no_dhcp_wan_any_more(tmp_path, capsys):
    from mptcp_cpe import cli
    state_file = tmp_path / "mcp.json"
    dhcp_hook.run("dhclient", "wan1", "BOUND", ["4,192,0,2,1"], state_file)
    dhcp_hook.run("dhclient", "wan2", "BOUND", ["4,192,0,2,2"], state_file)
    dhcp_hook.run("dhcpcd", "wan2", "BOUND6", [ONE], state_file, ["2001:db8:2000::/56"])
    assert cli.main(["dhcp-prune", "--state-file", str(state_file), "--keep", "wan1"]) == 0
    assert capsys.readouterr().out == "wan2\n"
    assert list(json.loads(state_file.read_text())["wans"]) == ["wan1"]
    # Nothing to withdraw: nothing printed, the file untouched.
    before = state_file.stat().st_mtime_ns
    assert cli.main(["dhcp-prune", "--state-file", str(state_file), "--keep", "wan1"]) == 0
    assert capsys.readouterr().out == "" and state_file.stat().st_mtime_ns == before
    assert cli.main(["dhcp-prune", "--state-file", str(state_file), "--keep", "bad/if"]) == 2
    assert cli.main(["dhcp-prune", "--state-file", str(state_file)]) == 0
    assert json.loads(state_file.read_text()) == EMPTY
