"""Health hysteresis and the status text: pure logic of the WAN daemon."""

from __future__ import annotations

from socket import AF_INET, AF_INET6

from mptcp_cpe.inventory import Probe
from mptcp_cpe.status import status_text
from mptcp_cpe.wand.probe import Health, Prober, _checksum


def test_up_after_up_count_good_rounds_and_down_after_down_count_bad():
    h = Health(down_count=3, up_count=2)
    assert (h.healthy, h.state) == (False, "probing")
    assert h.record(True, 1.0, 1) is False
    assert h.record(True, 1.5, 2) is True and h.healthy and h.state == "up" and h.since == 2
    assert h.rtt_ms == 1.5
    # Two losses then an answer: still up, and the bad count starts again.
    assert not h.record(False, None, 3) and not h.record(False, None, 4)
    assert not h.record(True, 1.0, 5) and h.healthy
    assert not h.record(False, None, 6) and not h.record(False, None, 7)
    assert h.record(False, None, 8) is True and not h.healthy and h.state == "down" and h.since == 8
    assert h.rtt_ms is None
    # One good round is not enough to come back.
    assert not h.record(True, 1.0, 9) and not h.healthy
    assert h.record(True, 1.0, 10) and h.healthy


def test_never_answering_wan_leaves_probing_for_down():
    h = Health(down_count=2, up_count=1)
    h.record(False, None, 1)
    assert h.state == "probing"
    h.record(False, None, 2)
    assert (h.state, h.healthy, h.since) == ("down", False, 2)


def test_unreachable_resets_and_reachable_again_probes_afresh():
    h = Health(down_count=3, up_count=1)
    h.record(True, 1.0, 1)
    assert h.unreachable("no-address", 2) is True
    assert (h.healthy, h.state, h.good, h.bad) == (False, "no-address", 0, 0)
    assert h.unreachable("no-address", 3) is False and h.since == 2
    h.reachable_again(4)
    assert (h.state, h.since) == ("probing", 4)


def test_icmp_checksum_rfc1071_example():
    # RFC 1071's worked example: the sum of 0001 f203 f4f5 f6f7 is 0xddf2, checksum its complement.
    assert _checksum(bytes.fromhex("0001f203f4f5f6f7")) == (~0xDDF2) & 0xFFFF
    assert _checksum(b"\x01") == (~0x0100) & 0xFFFF  # odd length is padded


def test_prober_targets_per_family():
    p = Prober((Probe("icmp", "gateway"), Probe("tcp", "203.0.113.1", 443), Probe("icmp", "2001:db8::1")), 1.0)
    src = {AF_INET: "192.0.2.10", AF_INET6: "2001:db8:0:1::10"}
    gws = {AF_INET: "192.0.2.1", AF_INET6: "fe80::1"}
    targets = [(t.kind, s, d) for t, s, d in p.targets(src, gws)]
    assert targets == [("icmp", "192.0.2.10", "192.0.2.1"), ("icmp", "2001:db8:0:1::10", "fe80::1"),
                       ("tcp", "192.0.2.10", "203.0.113.1"), ("icmp", "2001:db8:0:1::10", "2001:db8::1")]
    # Without an IPv6 address the IPv6 probes are not sent.
    assert [d for _, _, d in p.targets({AF_INET: "192.0.2.10"}, {AF_INET: "192.0.2.1"})] == ["192.0.2.1", "203.0.113.1"]


def test_status_text_lists_wans_and_mcps():
    wan = {"host": "cpe", "policy": "balance", "updated": "t", "wans": {
        "dsl": {"device": "wan1", "state": "up", "since": "s", "last_probe_rtt_ms": 1.25, "table": 101,
                "addresses": ["192.0.2.10/24"], "gateway": {"ipv4": "192.0.2.1", "ipv6": None},
                "in_default_route": True, "backup": False},
        "lte": {"device": "wan2", "state": "down", "since": "s", "last_probe_rtt_ms": None, "table": 102,
                "addresses": [], "gateway": {"ipv4": None, "ipv6": None}, "in_default_route": False, "backup": True}}}
    mcp = {"wans": {"wan1": {"v4": {"mcps": [["203.0.113.1"], ["203.0.113.2", "203.0.113.3"]]}}}}
    text = status_text(wan, mcp).splitlines()
    assert text[0] == "cpe: policy balance, updated t"
    assert status_text({**wan, "build": "c1f246f2d5000761"}).splitlines()[0] == \
        "cpe: policy balance, updated t, wand build c1f246f2d5000761"
    dsl = next(line for line in text if line.startswith("dsl"))
    assert "up" in dsl and "1.2" in dsl and "192.0.2.10/24 via 192.0.2.1" in dsl and "[default]" in dsl
    lte = next(line for line in text if line.startswith("lte"))
    assert "down" in lte and "[backup]" in lte and " - via -" in lte
    assert any("MCPs v4: 203.0.113.1; 203.0.113.2,203.0.113.3" in line for line in text)


def test_status_line_for_systemd_counts_healthy_wans_and_names_the_default_route():
    from mptcp_cpe.state import WanState
    from mptcp_cpe.wand.daemon import status_line

    state = {"wans": {"dsl": {"healthy": True, "state": "up", "in_default_route": True},
                      "lte": {"healthy": False, "state": "no-address", "in_default_route": False},
                      "fibre": {"healthy": False, "state": "down", "in_default_route": False}}}
    assert status_line(WanState.from_json(state)) == "1 of 3 WANs up: dsl up, lte no-address, fibre down; default route: dsl"


STATUS_WAN = {"host": "cpe", "policy": "balance", "updated": "t", "wans": {
    "dsl": {"device": "wan1", "state": "up", "since": "s", "last_probe_rtt_ms": 1.0, "table": 101,
            "addresses": ["203.0.113.2/24"], "gateway": {"ipv4": "203.0.113.1", "ipv6": None},
            "in_default_route": True, "backup": False}}}
STATUS_MCP = {"wans": {"wan1": {"v4": {"mcps": [["198.51.100.1"], ["192.0.2.66"]]},
                                "v6": {"mcps": [["2001:db8:a::1", "fe80::1"]]}}}}


def test_status_text_names_the_learned_mcps_the_converter_refuses():
    refused = {"wan1": {"v4": [{"address": "192.0.2.66", "reason": "outside mcp_prefixes (198.51.100.0/24)"}],
                        "v6": [{"address": "fe80::1", "reason": "a link-local address"}]}}
    text = status_text(STATUS_WAN, STATUS_MCP, refused).splitlines()
    assert text[3:] == [
        f"{'':<12} MCPs v4: 198.51.100.1; 192.0.2.66",
        f"{'':<12} MCPs v4: 192.0.2.66 not used by the converter: outside mcp_prefixes (198.51.100.0/24)",
        f"{'':<12} MCPs v6: 2001:db8:a::1,fe80::1",
        f"{'':<12} MCPs v6: fe80::1 not used by the converter: a link-local address",
    ]
    assert status_text(STATUS_WAN, STATUS_MCP) == status_text(STATUS_WAN, STATUS_MCP, {})  # no verdicts: as before


def _status(tmp_path, capsys, *extra):
    import json

    from mptcp_cpe import cli

    (tmp_path / "wan.json").write_text(json.dumps(STATUS_WAN))
    (tmp_path / "mcp.json").write_text(json.dumps(STATUS_MCP))
    rc = cli.main(["status", "--state-file", str(tmp_path / "wan.json"), "--mcp-file", str(tmp_path / "mcp.json"),
                   "--converter-config", str(tmp_path / "converter.json"), *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def test_status_reads_the_converters_prefixes(tmp_path, capsys):
    import json

    # No converter config: no verdicts, as before it was read.
    rc, out, err = _status(tmp_path, capsys)
    assert rc == 0 and "not used" not in out and err == ""
    rc, out, _ = _status(tmp_path, capsys, "--json")
    assert json.loads(out)["mcp_refused"] == {}
    (tmp_path / "converter.json").write_text(json.dumps({"lan_interfaces": ["lan0"], "mcp_prefixes": ["198.51.100.0/24"],
                                                         "lan_prefixes": ["2001:db8:a::/64"]}))
    rc, out, err = _status(tmp_path, capsys)
    assert rc == 0 and err == ""
    assert "MCPs v4: 192.0.2.66 not used by the converter: outside mcp_prefixes (198.51.100.0/24)" in out
    assert "MCPs v6: 2001:db8:a::1 not used by the converter: inside the LAN prefix 2001:db8:a::/64" in out
    assert "MCPs v6: fe80::1 not used by the converter: a link-local address" in out
    rc, out, _ = _status(tmp_path, capsys, "--json")
    doc = json.loads(out)
    assert doc["mcp_refused"]["wan1"]["v4"] == [{"address": "192.0.2.66", "reason": "outside mcp_prefixes (198.51.100.0/24)"}]
    assert doc["wan"] == STATUS_WAN and doc["mcp"] == STATUS_MCP


def test_status_with_a_bad_converter_config_says_so_and_shows_the_rest(tmp_path, capsys):
    (tmp_path / "converter.json").write_text('{"lan_interfaces": ["lan0"], "mcp_prefixes": ["198.51.100.1/24"]}')
    rc, out, err = _status(tmp_path, capsys)
    assert rc == 0 and "MCPs v4: 198.51.100.1; 192.0.2.66" in out
    assert err.startswith("mptcp-cpe status: localhost: mcp_prefixes[0]: not a prefix (host bits must be zero) "
                          "(got '198.51.100.1/24')")


def test_status_build_prints_the_running_wands_build_or_nothing(tmp_path, capsys):
    import json

    from mptcp_cpe import cli

    state = tmp_path / "wan.json"
    # Before wand wrote wan.json: nothing, and no failure (cpe_multiwan then does not upgrade).
    assert cli.main(["status", "--build", "--state-file", str(state)]) == 0
    assert capsys.readouterr().out == "\n"
    state.write_text(json.dumps({**STATUS_WAN, "build": "0123abcd"}))
    assert cli.main(["status", "--build", "--state-file", str(state)]) == 0
    assert capsys.readouterr().out == "0123abcd\n"
    state.write_text("{not json")
    assert cli.main(["status", "--build", "--state-file", str(state)]) == 1
    assert str(state) in capsys.readouterr().err


def test_status_text_shows_delegated_prefixes_and_lan_prefixes():
    wan = {"host": "cpe", "policy": "balance", "updated": "t", "wans": {
        "dsl": {"device": "wan1", "state": "up", "addresses": [], "gateway": {}, "delegated": ["2001:db8:1000::/56"]},
        "lte": {"device": "wan2", "state": "up", "addresses": [], "gateway": {}, "delegated": []},
        "fibre": {"device": "wan3", "state": "up", "addresses": [], "gateway": {}}},
        "lan_prefixes": [{"device": "lan0", "prefix": "2001:db8:1000::/64", "lan": "lan", "wan": "dsl",
                          "delegated": "2001:db8:1000::/56", "state": "deprecated", "since": "s2"}]}
    text = status_text(wan)
    assert "delegated: 2001:db8:1000::/56" in text
    assert "delegated: none (the ISP delegated no prefix)" in text
    assert text.count("delegated:") == 2  # fibre asks for none: no line
    lan = next(line for line in text.splitlines() if line.startswith("lan "))
    assert lan.split()[:4] == ["lan", "lan0", "deprecated", "s2"]
    assert "2001:db8:1000::/64 (from dsl, 2001:db8:1000::/56)" in lan


MPTCP_WAN = {"host": "cpe", "policy": "balance", "updated": "t", "wans": {
    "dsl": {"device": "wan1", "state": "up", "healthy": True, "since": "s", "addresses": ["192.0.2.10/24"],
            "gateway": {"ipv4": "192.0.2.1"}, "in_default_route": True, "mptcp": "passes", "mptcp_since": "s1",
            "mptcp_next_test": "n1", "mptcp_mcp": "203.0.113.1"},
    "lte": {"device": "wan2", "state": "up", "healthy": True, "since": "s", "addresses": ["198.51.100.10/24"],
            "gateway": {"ipv4": "198.51.100.1"}, "in_default_route": True, "mptcp": "blocked", "mptcp_since": "s2",
            "mptcp_next_test": "n2", "mptcp_mcp": "203.0.113.1"},
    "sat": {"device": "wan3", "state": "down", "since": "s", "addresses": [], "gateway": {}, "mptcp": "unknown",
            "mptcp_since": None, "mptcp_next_test": None, "mptcp_mcp": None}}}


def test_status_text_shows_each_wans_mptcp_verdict():
    text = status_text(MPTCP_WAN).splitlines()
    lte = text.index(next(line for line in text if line.startswith("lte ")))
    assert text[lte].endswith("[default, mptcp-blocked]")
    assert text[lte + 1] == (f"{'':<12} MPTCP blocked (mptcp-blocked: MPTCP options stripped on the way to the MCP; "
                             "no MPTCP endpoint, direct traffic as before) since s2; MCP tried 203.0.113.1; next test n2")
    dsl = text.index(next(line for line in text if line.startswith("dsl ")))
    assert text[dsl].endswith("[default]")
    assert text[dsl + 1] == f"{'':<12} MPTCP passes since s1; MCP tried 203.0.113.1; next test n1"
    sat = text.index(next(line for line in text if line.startswith("sat ")))
    assert text[sat + 1] == f"{'':<12} MPTCP unknown; no test planned (no MCP known, or mptcp_probe off)"
    # A wan.json from a wand before the test: no line.
    old = {**MPTCP_WAN, "wans": {"dsl": {k: v for k, v in MPTCP_WAN["wans"]["dsl"].items() if not k.startswith("mptcp")}}}
    assert "MPTCP" not in status_text(old)


def test_status_line_for_systemd_names_a_blocked_wan():
    from mptcp_cpe.state import WanState
    from mptcp_cpe.wand.daemon import status_line

    assert status_line(WanState.from_json(MPTCP_WAN)) == \
        "2 of 3 WANs up: dsl up, lte up mptcp-blocked, sat down; default route: dsl, lte"


def test_status_json_carries_the_mptcp_fields(tmp_path, capsys):
    import json

    from mptcp_cpe import cli

    (tmp_path / "wan.json").write_text(json.dumps(MPTCP_WAN))
    assert cli.main(["status", "--json", "--state-file", str(tmp_path / "wan.json"), "--mcp-file", str(tmp_path / "mcp.json"),
                     "--converter-config", str(tmp_path / "converter.json")]) == 0
    lte = json.loads(capsys.readouterr().out)["wan"]["wans"]["lte"]
    assert (lte["mptcp"], lte["mptcp_since"], lte["mptcp_next_test"], lte["mptcp_mcp"]) == ("blocked", "s2", "n2", "203.0.113.1")
