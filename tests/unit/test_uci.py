"""UCI planning (mptcp_cpe.uci, which the router's mptcp_cpe_uci module runs): `uci show`
read as OpenWrt prints it, plans that reach the want and then are empty, the operator's
sections and words kept, and the result read back by a UCI parser that is not ours
(uciparse)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mptcp_cpe.uci import UciError, apply, export, parse_show, plan, quote, show

uciparse = pytest.importorskip("uciparse.uci")

# `uci -q show network` on OpenWrt 24.10's default x86-64 config, plus an operator's reqopts.
NETWORK_SHOW = """\
network.loopback=interface
network.loopback.device='lo'
network.loopback.proto='static'
network.loopback.ipaddr='127.0.0.1'
network.loopback.netmask='255.0.0.0'
network.globals=globals
network.globals.ula_prefix='fd12:3456:789a::/48'
network.@device[0]=device
network.@device[0].name='br-lan'
network.@device[0].type='bridge'
network.@device[0].ports='eth0'
network.lan=interface
network.lan.device='br-lan'
network.lan.proto='static'
network.lan.ipaddr='192.0.2.1'
network.lan.netmask='255.255.255.0'
network.lan.ip6assign='60'
network.wan=interface
network.wan.device='eth1'
network.wan.proto='dhcp'
network.wan.reqopts='121'
network.wan6=interface
network.wan6.device='@wan'
network.wan6.proto='dhcpv6'
network.lan.dns='192.0.2.53' '198.51.100.53'
"""


def test_parse_show_reads_sections_options_and_lists():
    state = parse_show("network", NETWORK_SHOW)
    assert list(state)[:4] == ["loopback", "globals", "@device[0]", "lan"]
    assert state["wan"] == {".type": "interface", "device": "eth1", "proto": "dhcp", "reqopts": "121"}
    assert state["lan"]["dns"] == ["192.0.2.53", "198.51.100.53"]
    assert state["@device[0]"]["ports"] == "eth0"


def test_parse_show_reads_an_escaped_quote():
    assert parse_show("system", "system.x=y\nsystem.x.text='it'\\''s'\n")["x"]["text"] == "it's"


@pytest.mark.parametrize("line", ["network.wan", "firewall.x=rule", "network.wan.proto=dhcp", "network.wan.proto='dhcp",
                                  "network.a.b.c='d'", "network.wan.proto='a''b'"])
def test_parse_show_refuses_what_uci_never_prints(line):
    with pytest.raises(UciError, match=r"uci show"):
        parse_show("network", line + "\n")


def test_tokens_join_the_operators_words_once():
    state = parse_show("network", NETWORK_SHOW)
    want = [{"name": "wan", "tokens": {"reqopts": ["224"]}}, {"name": "wan6", "tokens": {"reqopts": ["65000"]}}]
    commands = plan("network", state, want)
    assert commands == ["set network.wan.reqopts='121 224'", "set network.wan6.reqopts='65000'"]
    after = apply("network", state, commands)
    assert after["wan"]["reqopts"] == "121 224" and after["wan"]["proto"] == "dhcp"
    assert plan("network", after, want) == []


def test_an_operators_section_must_exist():
    with pytest.raises(UciError, match=r"network\.wan2: no such section"):
        plan("network", parse_show("network", NETWORK_SHOW), [{"name": "wan2", "options": {"metric": "102"}}])


def test_an_operators_section_keeps_what_the_want_does_not_name():
    state = parse_show("network", NETWORK_SHOW)
    commands = plan("network", state, [{"name": "wan", "options": {"metric": 101}}])
    assert commands == ["set network.wan.metric='101'"]
    assert apply("network", state, commands)["wan"] == {**state["wan"], "metric": "101"}


def test_owned_sections_are_created_made_exact_and_removed_when_not_wanted():
    state = parse_show("firewall", "firewall.mptcp_cpe_old=rule\nfirewall.mptcp_cpe_old.name='old'\n"
                                   "firewall.mptcp_cpe_conv=rule\nfirewall.mptcp_cpe_conv.name='x'\n"
                                   "firewall.mptcp_cpe_conv.extra='1'\nfirewall.keep=rule\n")
    want = [{"name": "mptcp_cpe_conv", "type": "rule", "options": {"name": "converter", "proto": ["tcp"], "dest_port": "5125"}},
            {"name": "mptcp_cpe_new", "type": "zone", "options": {"network": ["wan", "wan6"]}}]
    commands = plan("firewall", state, want)
    assert commands == [
        "delete firewall.mptcp_cpe_old",
        "delete firewall.mptcp_cpe_conv.extra",
        "set firewall.mptcp_cpe_conv.name='converter'",
        "add_list firewall.mptcp_cpe_conv.proto='tcp'",
        "set firewall.mptcp_cpe_conv.dest_port='5125'",
        "set firewall.mptcp_cpe_new=zone",
        "add_list firewall.mptcp_cpe_new.network='wan'",
        "add_list firewall.mptcp_cpe_new.network='wan6'",
    ]
    after = apply("firewall", state, commands)
    assert set(after) == {"mptcp_cpe_conv", "keep", "mptcp_cpe_new"}
    assert plan("firewall", after, want) == []


def test_a_section_of_another_type_is_made_anew():
    state = parse_show("firewall", "firewall.mptcp_cpe_x=zone\nfirewall.mptcp_cpe_x.name='a'\n")
    commands = plan("firewall", state, [{"name": "mptcp_cpe_x", "type": "rule", "options": {"name": "a"}}])
    assert commands == ["delete firewall.mptcp_cpe_x", "set firewall.mptcp_cpe_x=rule", "set firewall.mptcp_cpe_x.name='a'"]


@pytest.mark.parametrize("want, message", [
    ([{"name": "wan-2", "options": {}}], r"'wan-2' is not a UCI name"),
    ([{"name": "wan"}, {"name": "wan"}], r"network\.wan: named twice"),
    ([{"name": "mptcp_cpe_x", "options": {}}], r"needs a type"),
    ([{"name": "wan", "options": {"bad-opt": "1"}}], r"option name 'bad-opt'"),
    ([{"name": "wan", "options": {"x": "a\nb"}}], r"not a one-line string"),
    ([{"name": "wan", "tokens": {"reqopts": "224"}}], r"tokens must be a list"),
    ([{"name": "wan", "tokens": {"reqopts": ["2 24"]}}], r"token '2 24' is not one word"),
])
def test_a_bad_want_is_refused_with_its_place(want, message):
    with pytest.raises(UciError, match=message):
        plan("network", parse_show("network", NETWORK_SHOW), want)


def test_show_of_the_touched_sections_is_what_diff_prints():
    state = parse_show("network", NETWORK_SHOW)
    assert show("network", state, {"wan"}) == ("network.wan=interface\nnetwork.wan.device='eth1'\n"
                                               "network.wan.proto='dhcp'\nnetwork.wan.reqopts='121'\n")
    assert parse_show("network", show("network", state)) == state


NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8)
OPTIONS = st.dictionaries(NAMES, st.one_of(VALUES, st.lists(VALUES, min_size=2, max_size=3)), max_size=4)


@st.composite
def states_and_wants(draw):
    names = draw(st.lists(NAMES, unique=True, max_size=5))
    current = {}
    for name in names:
        current[name] = {".type": draw(st.sampled_from(["rule", "zone"])), **draw(OPTIONS)}
    owned = draw(st.lists(NAMES.map(lambda n: "mptcp_cpe_" + n), unique=True, max_size=3))
    for name in owned:
        if draw(st.booleans()):
            current[name] = {".type": "rule", **draw(OPTIONS)}
    want = [{"name": n, "type": draw(st.sampled_from(["rule", "zone"])), "options": draw(OPTIONS)} for n in owned]
    for name in draw(st.lists(st.sampled_from(names), unique=True, max_size=3)) if names else []:
        want.append({"name": name, "options": draw(OPTIONS),
                     "tokens": {"words": draw(st.lists(st.from_regex(r"[0-9]{1,3}", fullmatch=True), max_size=3))}})
    return current, want


@settings(max_examples=300, deadline=None)
@given(states_and_wants())
def test_a_plan_reaches_the_want_and_survives_uci_show(case):
    current, want = case
    after = apply("firewall", current, plan("firewall", current, want))
    # What `uci show` would print of the result reads back the same and needs no more change.
    assert parse_show("firewall", show("firewall", after)) == after
    assert plan("firewall", after, want) == []
    for section in want:
        got = after[section["name"]]
        for option, value in section["options"].items():
            assert got[option] == (value[0] if isinstance(value, list) and len(value) == 1 else value)
        if section.get("type"):
            assert set(got) - {".type"} == set(section["options"])
        else:
            for option in set(current[section["name"]]) - set(section["options"]) - {"words"}:
                assert got[option] == current[section["name"]][option]


@settings(max_examples=100, deadline=None)
@given(states_and_wants())
def test_the_result_as_a_config_file_reads_the_same_with_uciparse(case):
    current, want = case
    after = apply("firewall", current, plan("firewall", current, want))
    # uciparse takes no escaped quote ('\'') and no backslash, which uci itself writes and
    # reads: such values are left out here.
    if any(c in str(v) for opts in after.values() for v in opts.values() for c in "'\\"):
        return
    parsed = uciparse.UciFile.from_lines(export("firewall", after).splitlines(keepends=True))
    read: dict = {}
    for line in parsed.lines:
        if isinstance(line, uciparse.UciConfigLine):
            section = read.setdefault(line.name, {".type": line.section})
        elif isinstance(line, uciparse.UciOptionLine):
            section[line.name] = line.value
        elif isinstance(line, uciparse.UciListLine):
            section.setdefault(line.name, []).append(line.value)
    assert read == after


def test_quote_is_what_uci_batch_reads():
    assert quote("a b") == "'a b'" and quote("it's") == "'it'\\''s'" and quote(224) == "'224'"


# `uci -q show firewall` of OpenWrt 24.10's default zones (anonymous sections), lte added by hand.
FIREWALL_SHOW = """\
firewall.@defaults[0]=defaults
firewall.@defaults[0].input='REJECT'
firewall.@zone[0]=zone
firewall.@zone[0].name='lan'
firewall.@zone[0].network='lan'
firewall.@zone[0].input='ACCEPT'
firewall.@zone[1]=zone
firewall.@zone[1].name='wan'
firewall.@zone[1].network='wan' 'wan6'
firewall.@zone[1].input='REJECT'
firewall.@zone[1].masq='1'
"""


def test_a_matched_zone_gets_the_missing_networks_only():
    state = parse_show("firewall", FIREWALL_SHOW)
    want = [{"match": {"type": "zone", "name": "wan"}, "items": {"network": ["wan", "lte", "wan6"]}}]
    commands = plan("firewall", state, want)
    assert commands == ["add_list firewall.@zone[1].network='lte'"]
    after = apply("firewall", state, commands)
    assert after["@zone[1]"]["network"] == ["wan", "wan6", "lte"] and after["@zone[1]"]["masq"] == "1"
    assert plan("firewall", after, want) == []


def test_items_join_an_old_style_option_as_words_and_a_single_value_as_a_list():
    state = parse_show("firewall", "firewall.@zone[0]=zone\nfirewall.@zone[0].name='wan'\n"
                                   "firewall.@zone[0].network='wan wan6'\nfirewall.@zone[1]=zone\n"
                                   "firewall.@zone[1].name='lan'\nfirewall.@zone[1].network='lan'\n")
    commands = plan("firewall", state, [{"match": {"type": "zone", "name": "wan"}, "items": {"network": ["lte"]}},
                                        {"match": {"type": "zone", "name": "lan"}, "items": {"network": ["guest"]}}])
    assert commands == ["set firewall.@zone[0].network='wan wan6 lte'", "add_list firewall.@zone[1].network='guest'"]
    assert apply("firewall", state, commands)["@zone[1]"]["network"] == ["lan", "guest"]


@pytest.mark.parametrize("show, message", [
    ("", r"firewall: the zone section with name 'wan': not found"),
    ("firewall.a=zone\nfirewall.a.name='wan'\nfirewall.b=zone\nfirewall.b.name='wan'\n",
     r"firewall: the zone section with name 'wan': 2 of them \(a, b\)"),
])
def test_a_match_must_find_exactly_one_section(show, message):
    with pytest.raises(UciError, match=message):
        plan("firewall", parse_show("firewall", show), [{"match": {"type": "zone", "name": "wan"}, "items": {"network": ["x"]}}])
