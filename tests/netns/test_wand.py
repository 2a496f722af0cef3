"""wand against the real kernel: a CPE namespace with two WANs to two "ISP" namespaces.

What is checked is what the kernel holds (rules, tables, NAT, MPTCP endpoints), read back with
``ip -j`` and ``nft``, never wand's own view of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab import Procs, add_addresses, namespaces, needs_root, procs, sh, veth, wait_for  # noqa: F401 - procs is a fixture

pytestmark = [pytest.mark.root, needs_root]

CPE, ISP1, ISP2 = "t-wand-cpe", "t-wand-isp1", "t-wand-isp2"
WAND = [sys.executable, "-m", "mptcp_cpe.cli", "wand"]
INTERVAL, DOWN, UP = 0.3, 3, 2
PROTO = "201"


@contextlib.contextmanager
def topology() -> Iterator[None]:
    with namespaces(CPE, ISP1, ISP2):
        for dev, isp, addr4, addr6 in (("wan1", ISP1, "192.0.2.1/24", "2001:db8:0:1::1/64"),
                                       ("wan2", ISP2, "198.51.100.1/24", "2001:db8:0:2::1/64")):
            veth(CPE, dev, isp, "isp0")
            add_addresses(isp, "isp0", [addr4, addr6])
        yield


@pytest.fixture
def topo():
    with topology():
        yield


def static(name, dev, v4, gw4, **extra):
    return {"name": name, "device": dev, "kind": "ethernet", "ipv4": {"address": v4, "gateway": gw4}, **extra}


DSL = static("dsl", "wan1", "192.0.2.10/24", "192.0.2.1",
             ipv6={"address": "2001:db8:0:1::10/64", "gateway": "2001:db8:0:1::1"})
LTE = static("lte", "wan2", "198.51.100.10/24", "198.51.100.1", weight=2)


def write_config(path: Path, wans: list[dict], **kw) -> Path:
    cfg = {"host": "t-cpe", "state_file": str(path.parent / "wan.json"),
           "probe": {"interval_s": INTERVAL, "down_count": DOWN, "up_count": UP}, "wans": wans, **kw}
    path.write_text(json.dumps(cfg))
    return path


def start_wand(procs: Procs, config: Path, name: str = "wand"):
    return procs.start(name, *WAND, "--config", str(config), ns=CPE)


def state(tmp_path: Path) -> dict:
    try:
        return json.loads((tmp_path / "wan.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def healthy(tmp_path: Path, *names: str) -> bool:
    wans = state(tmp_path).get("wans", {})
    return all(wans.get(n, {}).get("healthy") for n in names)


def ipj(*args: str, ns: str = CPE) -> list[dict]:
    out = sh("ip", "-j", *args, ns=ns).stdout.strip()
    return json.loads(out) if out else []


def rules(family: str = "-4") -> list[dict]:
    return [r for r in ipj(family, "rule", "show") if r.get("protocol") == PROTO]


def routes(table: str, family: str = "-4") -> list[dict]:
    return ipj(family, "route", "show", "table", table)


def endpoints() -> dict[int, dict]:
    return {e["id"]: e for e in ipj("mptcp", "endpoint", "show")}


def nexthop_devs(table: str = "200", family: str = "-4") -> list[str]:
    for r in routes(table, family):
        if r["dst"] == "default":
            return sorted(h["dev"] for h in r.get("nexthops", [])) or [r["dev"]]
    return []


def converged(tmp_path: Path) -> bool:
    return healthy(tmp_path, "dsl", "lte") and {100, 101, 102} <= set(endpoints())


def test_converges_then_removes_exactly_what_it_made(topo, procs, tmp_path):
    # State wand must not touch: a foreign rule in its band, a foreign route in a WAN table,
    # a foreign endpoint.
    sh("ip", "rule", "add", "priority", "10020", "from", "203.0.113.0/24", "lookup", "101", ns=CPE)
    # (Not through a WAN device: the kernel flushes those routes with the device's last address.)
    sh("ip", "route", "add", "blackhole", "198.18.99.0/24", "table", "101", ns=CPE)
    sh("ip", "mptcp", "endpoint", "add", "192.0.2.200", "id", "5", "signal", ns=CPE)
    wand = start_wand(procs, write_config(tmp_path / "wand.json", [DSL, LTE]))
    wait_for("both WANs healthy with endpoints", lambda: converged(tmp_path), timeout=10)

    got = {(r["priority"], r.get("src"), r.get("oif"), r["table"]) for r in rules()}
    assert got == {
        (10010, "192.0.2.10", None, "101"), (10011, "198.51.100.10", None, "102"),
        (10030, "all", "wan1", "101"), (10031, "all", "wan2", "102"),
        (10050, "all", None, "main"), (10060, "all", None, "200"),
    }
    assert [r.get("suppress_prefixlen") for r in rules() if r["priority"] == 10050] == [0]
    assert {(r["priority"], r.get("src")) for r in rules("-6")} >= {(10010, "2001:db8:0:1::10"), (10050, "all")}
    assert {r["dst"]: r.get("gateway") for r in routes("101")} == {"default": "192.0.2.1", "192.0.2.0/24": None, "198.18.99.0/24": None}
    assert routes("102", "-4")[0]["gateway"] in ("198.51.100.1", None)
    assert nexthop_devs() == ["wan1", "wan2"]
    weights = {h["dev"]: h.get("weight", 1) for h in routes("200")[0]["nexthops"]}
    assert weights == {"wan1": 1, "wan2": 2}
    eps = endpoints()
    assert eps[100]["address"] == "192.0.2.10" and eps[100]["dev"] == "wan1" and eps[100].get("subflow")
    assert not eps[100].get("backup")
    assert eps[101]["address"] == "2001:db8:0:1::10"
    assert eps[102]["address"] == "198.51.100.10" and eps[102]["dev"] == "wan2"
    nat = sh("nft", "list", "table", "inet", "mptcp_cpe_wand", ns=CPE).stdout
    assert 'oifname "wan1" masquerade' in nat and 'oifname "wan2" masquerade' in nat
    limits = sh("ip", "mptcp", "limits", "show", ns=CPE).stdout.split()
    assert int(limits[limits.index("subflows") + 1]) >= 2
    # Each source address leaves by its own WAN, whatever the default route would pick.
    for src, dev in (("198.51.100.10", "wan2"), ("192.0.2.10", "wan1")):
        (got_route,) = ipj("route", "get", "203.0.113.5", "from", src)
        assert got_route["dev"] == dev, got_route
    status = sh(*WAND[:-1], "status", "--state-file", str(tmp_path / "wan.json"), ns=CPE).stdout
    assert "dsl" in status and "lte" in status and " up " in status

    assert procs.stop(wand) == 0, procs.log("wand")[-2000:]
    assert rules() == [] and rules("-6") == []
    assert [r for r in ipj("route", "show", "table", "all") if r.get("protocol") == PROTO] == []
    assert set(endpoints()) == {5}
    assert sh("nft", "list", "table", "inet", "mptcp_cpe_wand", ns=CPE, check=False).returncode != 0
    assert not (tmp_path / "wan.json").exists()
    assert sh("ip", "-4", "addr", "show", "dev", "wan1", ns=CPE).stdout.count("192.0.2.10") == 0
    # The foreign state is still there.
    assert any(r["priority"] == 10020 for r in ipj("rule", "show"))
    assert [r["dst"] for r in routes("101")] == ["198.18.99.0/24"]


def test_gateway_stops_answering_then_comes_back(topo, procs, tmp_path):
    start_wand(procs, write_config(tmp_path / "wand.json", [DSL, LTE]))
    wait_for("both WANs healthy", lambda: converged(tmp_path), timeout=10)
    # ISP2 silently drops everything: the link stays up, only the probes can tell.
    sh("nft", "add table inet cut; add chain inet cut in { type filter hook input priority 0; policy drop; }", ns=ISP2)
    cut = time.monotonic()
    wait_for("wan2's endpoint to go", lambda: 102 not in endpoints(), timeout=INTERVAL * DOWN + 3)
    gone = time.monotonic() - cut
    assert nexthop_devs() == ["wan1"]
    wait_for("wan.json to say lte is down", lambda: state(tmp_path)["wans"]["lte"]["state"] == "down", timeout=1)
    assert {100, 101} <= set(endpoints())
    # Its own table stays, so its probes still leave by it.
    assert any(r["dst"] == "default" for r in routes("102"))
    sh("nft", "delete", "table", "inet", "cut", ns=ISP2)
    back = time.monotonic()
    wait_for("wan2's endpoint to return", lambda: 102 in endpoints(), timeout=INTERVAL * UP + 3)
    rejoin = time.monotonic() - back
    wait_for("wan2 back in the default route", lambda: nexthop_devs() == ["wan1", "wan2"], timeout=2)
    # Within interval x count plus the probe timeout and a round in flight.
    assert gone <= INTERVAL * (DOWN + 1) + INTERVAL + 1.0, gone
    assert rejoin <= INTERVAL * (UP + 1) + 1.0, rejoin


def test_dhcp_address_appears_changes_and_vanishes(topo, procs, tmp_path):
    # WAN1 as a DHCP client leaves it: an address and a default route in main, with a metric.
    dyn = {"name": "dsl", "device": "wan1", "kind": "dsl", "ipv4": "dhcp"}
    start_wand(procs, write_config(tmp_path / "wand.json", [dyn, LTE]))
    wait_for("lte healthy", lambda: healthy(tmp_path, "lte"), timeout=10)
    assert state(tmp_path)["wans"]["dsl"]["state"] == "no-address"

    def timed(what, check, limit=1.5):
        t0 = time.monotonic()
        wait_for(what, check, timeout=limit + 2, every=0.05)
        return time.monotonic() - t0

    sh("ip", "addr", "add", "192.0.2.50/24", "dev", "wan1", ns=CPE)
    sh("ip", "route", "add", "default", "via", "192.0.2.1", "dev", "wan1", "metric", "101", ns=CPE)
    # Rules follow within a second of the address (netlink event, no polling).
    t = timed("a rule from the new address", lambda: any(r.get("src") == "192.0.2.50" for r in rules()))
    assert t < 1.0, t
    wait_for("dsl healthy with its endpoint", lambda: endpoints().get(100, {}).get("address") == "192.0.2.50", timeout=5)
    assert state(tmp_path)["wans"]["dsl"]["gateway"]["ipv4"] == "192.0.2.1"

    # A renew with a new address, the way dhclient-script does it: the old address goes
    # (and the kernel flushes its routes with it), the new one and the route come.
    sh("ip", "addr", "del", "192.0.2.50/24", "dev", "wan1", ns=CPE)
    sh("ip", "addr", "add", "192.0.2.51/24", "dev", "wan1", ns=CPE)
    sh("ip", "route", "replace", "default", "via", "192.0.2.1", "dev", "wan1", "metric", "101", ns=CPE)
    t = timed("everything on the new address", lambda: endpoints().get(100, {}).get("address") == "192.0.2.51"
              and {r.get("src") for r in rules() if r["priority"] == 10010} == {"192.0.2.51"})
    assert t < 1.0, t
    assert any(r["dst"] == "192.0.2.0/24" and r.get("prefsrc") == "192.0.2.51" for r in routes("101"))

    # The lease ends: the address goes, and with it the WAN.
    sh("ip", "addr", "flush", "dev", "wan1", "scope", "global", ns=CPE)
    t = timed("the WAN to go", lambda: 100 not in endpoints() and nexthop_devs() == ["wan2"]
              and not any(r["priority"] == 10010 for r in rules()))
    assert t < 1.0, t
    wait_for("wan.json to say no-address", lambda: state(tmp_path)["wans"]["dsl"]["state"] == "no-address", timeout=2)


def test_restart_after_a_crash_converges_without_duplicates(topo, procs, tmp_path):
    config = write_config(tmp_path / "wand.json", [DSL, LTE])
    first = start_wand(procs, config, "wand1")
    wait_for("converged", lambda: converged(tmp_path), timeout=10)
    before = (sorted(json.dumps(r, sort_keys=True) for r in rules() + rules("-6")), nexthop_devs(), endpoints())
    procs.stop(first, sig=signal.SIGKILL)  # no cleanup at all
    (tmp_path / "wan.json").unlink()
    second = start_wand(procs, config, "wand2")
    wait_for("converged again", lambda: converged(tmp_path), timeout=10)
    time.sleep(INTERVAL * 2)
    after = (sorted(json.dumps(r, sort_keys=True) for r in rules() + rules("-6")), nexthop_devs(), endpoints())
    assert after == before
    log = procs.log("wand2")
    # Nothing was removed or re-added: the live subflows were never disturbed.
    assert "add rule" not in log and "endpoint" not in log.replace("endpoint left by", ""), log
    assert procs.stop(second) == 0


def test_sighup_reload_refuses_bad_config_and_applies_good_one(topo, procs, tmp_path):
    config = write_config(tmp_path / "wand.json", [DSL, LTE])
    wand = start_wand(procs, config)
    wait_for("converged", lambda: converged(tmp_path), timeout=10)
    before = (rules(), endpoints())
    config.write_text(json.dumps({"host": "t-cpe", "wans": [DSL, {**LTE, "device": "wan1"}]}))
    wand.send_signal(signal.SIGHUP)
    wait_for("the refusal in the log", lambda: "config refused" in procs.log("wand"), timeout=5)
    line = next(x for x in procs.log("wand").splitlines() if "config refused" in x)
    assert "wans[1] (lte).device" in line and "'wan1'" in line
    time.sleep(INTERVAL * 2)
    assert (rules(), endpoints()) == before and wand.poll() is None

    # lte becomes a backup: its endpoint changes flags in place, the default route drops it.
    write_config(config, [DSL, {**LTE, "backup": True}])
    wand.send_signal(signal.SIGHUP)
    wait_for("lte's endpoint marked backup", lambda: endpoints().get(102, {}).get("backup"), timeout=5)
    assert "set_flags endpoint id 102" in procs.log("wand")
    assert nexthop_devs() == ["wan1"]

    # A new rule band: the old band is emptied, the new one filled.
    write_config(config, [DSL, LTE], rule_priority=20000)
    wand.send_signal(signal.SIGHUP)
    wait_for("rules in the new band", lambda: {r["priority"] for r in rules()} == {20010, 20011, 20030, 20031, 20050, 20060}, timeout=5)
    assert procs.stop(wand) == 0
    assert rules() == []


def test_bad_config_at_start_is_one_line_and_exit_1(topo, tmp_path):
    config = tmp_path / "wand.json"
    config.write_text(json.dumps({"host": "t-cpe", "policy": "failover", "wans": [DSL, LTE]}))
    proc = sh(*WAND, "--config", str(config), check=False, ns=CPE)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "mptcp-cpe wand: t-cpe: wans: more than one primary WAN: with policy failover mark all but one backup: true (got ['dsl', 'lte'])"]
    assert rules() == []


# A TCP service on ISP1's "internet" address that writes down each peer it accepts.
LISTENER = textwrap.dedent("""
    import socket, sys
    s = socket.create_server(("203.0.113.1", 8080))
    with open(sys.argv[1], "a", buffering=1) as peers:
        while True:
            c, peer = s.accept()
            peers.write(peer[0] + "\\n")
            c.close()
""")


def test_tcp_probes_leave_by_their_own_wan(topo, procs, tmp_path):
    # 203.0.113.1 is on both ISPs (a target both WANs reach): ISP1 accepts on port 8080,
    # ISP2 answers with a reset (no listener), which counts as an answer too.
    for isp in (ISP1, ISP2):
        sh("ip", "addr", "add", "203.0.113.1/32", "dev", "lo", ns=isp)
    peers = tmp_path / "peers"
    procs.start("listener", sys.executable, "-c", LISTENER, str(peers), ns=ISP1)
    tcp = [{"kind": "tcp", "target": "203.0.113.1", "port": 8080}]
    start_wand(procs, write_config(tmp_path / "wand.json", [{**DSL, "probes": tcp}, {**LTE, "probes": tcp}]))
    wait_for("both WANs healthy by TCP probes", lambda: converged(tmp_path), timeout=10)
    assert all(state(tmp_path)["wans"][n]["last_probe_rtt_ms"] is not None for n in ("dsl", "lte"))

    # ISP2 drops the probe's port only: its gateway still answers pings, so only a TCP
    # probe can call lte down; dsl's probes, bound to wan1, are not affected.
    sh("nft", "add table inet cut; add chain inet cut in { type filter hook input priority 0; };"
       " add rule inet cut in tcp dport 8080 drop", ns=ISP2)
    echo = "from mptcp_cpe.wand.probe import icmp_echo; print(icmp_echo('198.51.100.10', 'wan2', '198.51.100.1', 2, 7, 1))"
    assert sh(sys.executable, "-c", echo, ns=CPE).stdout.strip() != "None"  # the gateway still answers pings
    wait_for("lte down by its TCP probe", lambda: state(tmp_path)["wans"]["lte"]["state"] == "down",
             timeout=INTERVAL * (DOWN + 2) + 3)
    assert 102 not in endpoints() and nexthop_devs() == ["wan1"]
    assert state(tmp_path)["wans"]["dsl"]["healthy"] and 100 in endpoints()
    sh("nft", "delete", "table", "inet", "cut", ns=ISP2)
    wait_for("lte back", lambda: 102 in endpoints() and nexthop_devs() == ["wan1", "wan2"],
             timeout=INTERVAL * (UP + 1) + 3)
    # Every connection ISP1 accepted came from dsl's address: lte's probes never went by wan1.
    got = set(peers.read_text().split())
    assert got == {"192.0.2.10"}, got


def test_icmpv6_probe_keeps_a_wan_whose_ipv4_gateway_is_silent(topo, procs, tmp_path):
    # dsl is dual-stack with the default probe (ICMP echo to its gateway, each family):
    # ISP1 stops answering IPv4 pings; its IPv6 gateway still answers, so dsl stays up.
    start_wand(procs, write_config(tmp_path / "wand.json", [DSL, LTE]))
    wait_for("converged", lambda: converged(tmp_path), timeout=10)
    sh("nft", "add table ip cut; add chain ip cut in { type filter hook input priority 0; };"
       " add rule ip cut in icmp type echo-request drop", ns=ISP1)
    time.sleep(INTERVAL * (DOWN + 3))
    dsl = state(tmp_path)["wans"]["dsl"]
    assert dsl["healthy"] and dsl["state"] == "up", dsl
    assert {100, 101} <= set(endpoints())
    # With IPv6 silent too, it goes down.
    sh("nft", "add table ip6 cut; add chain ip6 cut in { type filter hook input priority 0; };"
       " add rule ip6 cut in icmpv6 type echo-request drop", ns=ISP1)
    wait_for("dsl down", lambda: state(tmp_path)["wans"]["dsl"]["state"] == "down", timeout=INTERVAL * (DOWN + 2) * 2 + 3)
    assert not {100, 101} & set(endpoints()) and nexthop_devs() == ["wan2"]


def test_tells_systemd_ready_status_and_stopping(topo, procs, tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    config = write_config(tmp_path / "wand.json", [DSL, LTE])
    wand = procs.start("wand", *WAND, "--config", str(config), ns=CPE,
                       env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")})
    messages = []

    def until(prefix: str) -> str:
        while True:
            msg = notify.recv(4096).decode()
            messages.append(msg)
            if msg.startswith(prefix):
                return msg

    ready = until("READY=1")
    # Ready means routed: the rules, the WAN tables and the NAT table are in place and
    # wan.json is written (the WANs are still being probed).
    assert {r["priority"] for r in rules()} == {10010, 10011, 10030, 10031, 10050, 10060}
    assert nexthop_devs() == ["wan1", "wan2"]
    assert sh("nft", "list", "table", "inet", "mptcp_cpe_wand", ns=CPE, check=False).returncode == 0
    assert state(tmp_path)["wans"]["dsl"]["state"] == "probing"
    assert "STATUS=0 of 2 WANs up: dsl probing, lte probing; default route: dsl, lte" in ready
    assert until("STATUS=2 of 2") == "STATUS=2 of 2 WANs up: dsl up, lte up; default route: dsl, lte"
    sh("nft", "add table inet cut; add chain inet cut in { type filter hook input priority 0; policy drop; }", ns=ISP2)
    assert until("STATUS=1 of 2") == "STATUS=1 of 2 WANs up: dsl up, lte down; default route: dsl"
    wand.send_signal(signal.SIGTERM)
    assert until("STOPPING=1") == "STOPPING=1"
    assert wand.wait(10) == 0
    assert [m for m in messages if "READY=1" in m] == [ready], messages
    assert messages[0] == ready, messages  # nothing before READY=1


def test_slaac_wan_routes_and_probes_by_its_link_local_gateway(topo, procs, tmp_path):
    # An IPv6 WAN the way SLAAC leaves it: a global address from the prefix and a default
    # route via the router's link-local address (proto ra) in the main table.
    gw6 = next(a["local"] for a in ipj("-6", "addr", "show", "dev", "isp0", ns=ISP2)[0]["addr_info"]
               if a["local"].startswith("fe80:"))
    sh("ip", "-6", "addr", "add", "2001:db8:0:2::10/64", "dev", "wan2", "nodad", ns=CPE)
    sh("ip", "-6", "route", "add", "default", "via", gw6, "dev", "wan2", "proto", "ra", "metric", "1024", ns=CPE)
    lte6 = {**LTE, "ipv4": "none", "ipv6": "slaac"}
    start_wand(procs, write_config(tmp_path / "wand.json", [DSL, lte6]))
    wait_for("lte healthy by ICMPv6 to its link-local gateway", lambda: healthy(tmp_path, "dsl", "lte"), timeout=10)
    lte = state(tmp_path)["wans"]["lte"]
    assert lte["gateway"] == {"ipv4": None, "ipv6": gw6} and lte["addresses"] == ["2001:db8:0:2::10/64"]
    assert lte["last_probe_rtt_ms"] is not None
    assert [(r["dst"], r.get("gateway"), r["dev"]) for r in routes("102", "-6") if r["dst"] == "default"] == [("default", gw6, "wan2")]
    eps = endpoints()
    assert eps[103]["address"] == "2001:db8:0:2::10" and eps[103]["dev"] == "wan2"
    # IPv6's default route balances over both WANs (once DAD has finished on dsl's static
    # address, which wand adds: a tentative address is not used); IPv4's is dsl's alone.
    wait_for("IPv6 default route over both WANs", lambda: nexthop_devs("200", "-6") == ["wan1", "wan2"], timeout=5)
    assert nexthop_devs() == ["wan1"]
    (got_route,) = ipj("-6", "route", "get", "2001:db8:ffff::1", "from", "2001:db8:0:2::10")
    assert got_route["dev"] == "wan2" and got_route.get("gateway") == gw6, got_route


def test_live_upgrade_reexecutes_in_place_and_changes_nothing(topo, procs, tmp_path):
    config = write_config(tmp_path / "wand.json", [DSL, LTE])
    wand = start_wand(procs, config)
    wait_for("converged", lambda: converged(tmp_path), timeout=10)
    before = state(tmp_path)
    kernel_before = (rules(), rules("-6"), routes("200"), routes("101"), endpoints())
    build = sh(*WAND[:-1], "--build-id").stdout.strip()
    assert before["build"] == build

    # A config the installed code refuses: no re-exec, the running wand goes on.
    good = config.read_text()
    config.write_text(json.dumps({"host": "t-cpe", "wans": [DSL, {**LTE, "weight": 0}]}))
    wand.send_signal(signal.SIGUSR2)
    wait_for("the refusal", lambda: "live upgrade refused" in procs.log("wand"), timeout=10)
    line = next(x for x in procs.log("wand").splitlines() if "live upgrade refused" in x)
    assert "wans[1] (lte).weight" in line and "(got 0)" in line, line
    assert "re-executing" not in procs.log("wand") and wand.poll() is None

    config.write_text(good)
    time.sleep(1.1)  # wan.json's `since` has whole seconds: a fresh one would differ now
    lines_before = len(procs.log("wand").splitlines())
    wand.send_signal(signal.SIGUSR2)
    wait_for("the new image to run", lambda: f"live upgrade: build {build} now runs" in procs.log("wand"), timeout=10)
    # Its first reconcile done (and wan.json written), it says it is ready.
    wait_for("the new image to be ready", lambda: any(x.startswith("mptcp-cpe wand: INFO ready: ")
                                                      for x in procs.log("wand").splitlines()[lines_before:]), timeout=10)
    time.sleep(INTERVAL * (UP + 2))
    assert wand.poll() is None  # the same process (PID) runs on
    after_log = procs.log("wand").splitlines()[lines_before:]
    assert sum("started:" in x for x in after_log) == 1, after_log
    # Nothing was removed, added or replaced: the kernel state is as it was. (A starting wand
    # replaces its NAT table once, in one transaction, with the same ruleset: it cannot tell
    # its own table from an edited one by reading it.)
    changed = [x for x in after_log if any(f" {op} " in f" {x.split(' INFO ')[-1]}" for op in ("add", "delete", "replace", "set_flags"))]
    assert changed == [], changed
    assert (rules(), rules("-6"), routes("200"), routes("101"), endpoints()) == kernel_before
    after = state(tmp_path)
    for name in ("dsl", "lte"):
        assert after["wans"][name]["state"] == "up"
        assert after["wans"][name]["since"] == before["wans"][name]["since"]
    assert procs.stop(wand) == 0
    assert rules() == []


HOST = "t-wand-host"


def host_addrs(prefix: str) -> list[dict]:
    """The LAN host's global addresses in ``prefix`` (its first 4 groups), with their flags."""
    out = []
    for link in ipj("-6", "addr", "show", "dev", "h0", "scope", "global", ns=HOST):
        out += [a for a in link.get("addr_info", []) if "local" in a and a["local"].startswith(prefix)]
    return out


def deprecated(prefix: str) -> bool:
    got = host_addrs(prefix)
    return bool(got) and all(a.get("deprecated") or a.get("preferred_life_time") == 0 for a in got)


def test_lan_64s_from_delegated_prefixes_routed_by_their_wan_and_announced(topo, procs, tmp_path):
    # Both WANs as dhcpcd leaves them: an address and a default route; the DHCPv6 hook's
    # mcp.json says which prefix each was delegated. wan2's ISP delegates none (at first).
    for dev, net, metric in (("wan1", "2001:db8:0:1", "101"), ("wan2", "2001:db8:0:2", "102")):
        sh("ip", "-6", "addr", "add", f"{net}::10/64", "dev", dev, "nodad", ns=CPE)
        sh("ip", "-6", "route", "add", "default", "via", f"{net}::1", "dev", dev, "metric", metric, ns=CPE)
    sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=CPE)
    mcp = tmp_path / "mcp.json"

    def delegate(**prefixes):
        mcp.write_text(json.dumps({"version": 1, "wans": {
            dev: {"v6": {"mcps": [], "prefixes": p, "client": "dhcpcd", "event": "BOUND6"}} for dev, p in prefixes.items()}}))

    delegate(wan1=["2001:db8:1000::/56"])
    with namespaces(HOST):
        veth(CPE, "lan0", HOST, "h0")
        sh("sysctl", "-qw", "net.ipv6.conf.h0.accept_dad=0", ns=HOST)
        add_addresses(CPE, "lan0", ["198.18.1.1/24"])
        wans = [{**DSL, "ipv6": "dhcp"}, {**LTE, "ipv6": "dhcp"}]
        ra = {"config": str(tmp_path / "radvd.conf"), "pid_file": str(tmp_path / "radvd.pid"), "interval_s": 4,
              "retire_s": 60}
        start_wand(procs, write_config(tmp_path / "wand.json", wans, mcp_state=str(mcp), ra=ra,
                                       lans=[{"name": "lan", "device": "lan0", "ipv4": "198.18.1.1/24", "pd_subnet": 1}]))
        wait_for("both WANs healthy", lambda: healthy(tmp_path, "dsl", "lte"), timeout=10)
        wait_for("wand to write radvd's configuration", lambda: (tmp_path / "radvd.conf").exists(), timeout=5)
        procs.start("radvd", "radvd", "--nodaemon", "-C", str(tmp_path / "radvd.conf"), "-p", str(tmp_path / "radvd.pid"),
                    "-m", "stderr", ns=CPE)

        # The CPE's address in the LAN's /64 (number 1 of wan1's /56), a rule into wan1's table.
        wait_for("lan0's address", lambda: any(a["local"] == "2001:db8:1000:1::1" for i in ipj("-6", "addr", "show", "dev", "lan0")
                                               for a in i.get("addr_info", []) if "local" in a), timeout=5)
        assert {(r["priority"], r.get("src"), r["table"]) for r in rules("-6") if r["priority"] == 10051} == {
            (10051, "2001:db8:1000:1::", "101")}
        s = state(tmp_path)
        assert s["wans"]["dsl"]["delegated"] == ["2001:db8:1000::/56"] and s["wans"]["lte"]["delegated"] == []
        assert [(p["prefix"], p["wan"], p["state"]) for p in s["lan_prefixes"]] == [("2001:db8:1000:1::/64", "dsl", "preferred")]
        assert procs.log("wand").count("WAN lte: its ISP delegated no prefix") == 1
        # The host autoconfigures an address in it from radvd's announcements.
        wait_for("the host's SLAAC address from wan1's prefix", lambda: host_addrs("2001:db8:1000:1:"), timeout=20)
        host1 = host_addrs("2001:db8:1000:1:")[0]["local"]
        assert not deprecated("2001:db8:1000:1:")
        # LAN traffic from it leaves by wan1, whatever the balanced default route would pick.
        (r,) = ipj("-6", "route", "get", "2001:db8:ffff::1", "from", host1, "iif", "lan0")
        assert r["dev"] == "wan1", r

        # wan2's ISP delegates a prefix now: a second /64, from wan2, announced too.
        delegate(wan1=["2001:db8:1000::/56"], wan2=["2001:db8:2000::/56"])
        wait_for("the host's address from wan2's prefix", lambda: host_addrs("2001:db8:2000:1:"), timeout=20)
        host2 = host_addrs("2001:db8:2000:1:")[0]["local"]
        (r,) = ipj("-6", "route", "get", "2001:db8:ffff::1", "from", host2, "iif", "lan0")
        assert r["dev"] == "wan2", r
        # LAN to LAN stays inside: the main table's LAN route wins over the WAN's table.
        (r,) = ipj("-6", "route", "get", "2001:db8:1000:1::99", "from", host2, "iif", "lan0")
        assert r["dev"] == "lan0", r

        # wan1 goes down: its /64 is deprecated on the LAN (preferred lifetime 0), not removed.
        sh("ip", "link", "set", "isp0", "down", ns=ISP1)
        wait_for("wan1's /64 deprecated on the host", lambda: deprecated("2001:db8:1000:1:"), timeout=30)
        assert not deprecated("2001:db8:2000:1:")
        assert [p["state"] for p in state(tmp_path)["lan_prefixes"] if p["wan"] == "dsl"] == ["deprecated"]
        sh("ip", "link", "set", "isp0", "up", ns=ISP1)
        sh("ip", "-6", "route", "replace", "default", "via", "2001:db8:0:1::1", "dev", "wan1", "metric", "101", ns=CPE)
        wait_for("wan1's /64 preferred again", lambda: host_addrs("2001:db8:1000:1:") and not deprecated("2001:db8:1000:1:"),
                 timeout=30)

        # wan1's lease ends (its prefix withdrawn): the /64 is retired: no address, no rule,
        # announced with lifetimes 0, so the host deprecates it.
        delegate(wan2=["2001:db8:2000::/56"])
        wait_for("wan1's /64 retired", lambda: [p["state"] for p in state(tmp_path)["lan_prefixes"] if p["wan"] == "dsl"]
                 == ["retired"], timeout=10)
        assert not any(r.get("src") == "2001:db8:1000:1::" for r in rules("-6"))
        assert not any(a["local"] == "2001:db8:1000:1::1" for i in ipj("-6", "addr", "show", "dev", "lan0")
                       for a in i.get("addr_info", []) if "local" in a)
        wait_for("wan1's /64 deprecated on the host", lambda: deprecated("2001:db8:1000:1:"), timeout=30)
        assert "AdvValidLifetime 0;" in (tmp_path / "radvd.conf").read_text()
