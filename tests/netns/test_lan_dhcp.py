"""The CPE's LAN DHCP server (role cpe_lan_dhcp) and wand's single-homed ranges, against the
real programs: kea-dhcp4 with the configuration `landhcp` renders (include directives and
all), wand in the CPE namespace with two WANs, and busybox udhcpc on the LAN host, one
macvlan per client (each its own MAC, as `mptcp-cpe host` makes them).

    t-ld-host ── lan0 ── t-ld-cpe ── wan1 ── t-ld-isp1 (192.0.2.1)
    (macvlans)  198.18.1.1   │
                             └── wan2 ── t-ld-isp2 (198.51.100.1)
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from mptcp_cpe import landhcp
from netlab import add_addresses, namespaces, needs_root, procs, sh, start_kea4, veth, wait_for  # noqa: F401 - procs is a fixture

pytestmark = [pytest.mark.root, needs_root,
              pytest.mark.skipif(not shutil.which("kea-dhcp4") or not shutil.which("udhcpc"),
                                 reason="kea-dhcp4 and udhcpc are needed")]

CPE, HOST, ISP1, ISP2 = "t-ld-cpe", "t-ld-host", "t-ld-isp1", "t-ld-isp2"
WAND = [sys.executable, "-m", "mptcp_cpe.cli", "wand"]
AVAIL, RANGE = 225, 226
WANS = [
    {"name": "dsl", "device": "wan1", "kind": "dsl", "ipv4": {"address": "192.0.2.10/24", "gateway": "192.0.2.1"}},
    {"name": "lte", "device": "wan2", "kind": "lte", "ipv4": {"address": "198.51.100.10/24", "gateway": "198.51.100.1"}},
]
LAN = {"name": "lan", "device": "lan0", "ipv4": "198.18.1.1/24",
       "dhcp": {"pool": "198.18.1.128 - 198.18.1.191", "ranges": {"lte": "198.18.1.192 - 198.18.1.223"}}}
POOL = range(128, 192)
RANGE1 = range(192, 224)


@contextlib.contextmanager
def topology():
    with namespaces(CPE, HOST, ISP1, ISP2):
        veth(HOST, "lan0", CPE, "lan0")
        add_addresses(CPE, "lan0", ["198.18.1.1/24"])
        for dev, isp, addr in (("wan1", ISP1, "192.0.2.1/24"), ("wan2", ISP2, "198.51.100.1/24")):
            veth(CPE, dev, isp, "isp0")
            add_addresses(isp, "isp0", [addr])
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=CPE)
        yield


def start(tmp_path: Path, procs, wans=WANS, lan=LAN):
    """Kea and wand on the CPE, wired as the roles wire them (wand reloads Kea by SIGHUP)."""
    state_dir = tmp_path / "lan-dhcp"
    settings = landhcp.settings("t-cpe", {"state_dir": str(state_dir), "leases_file": str(tmp_path / "leases.csv"),
                                          "control_socket": str(tmp_path / "kea.sock")})
    served, _ = landhcp.served_lans("t-cpe", [lan], wans)
    conf = landhcp.config("t-cpe", served, settings)
    del conf["Dhcp4"]["loggers"]  # start_kea4's: to its log file
    for wan in landhcp.wan_states(served):  # what the role writes before Kea's first start
        landhcp.write_up(state_dir, wan, True)
    kea = start_kea4(procs, tmp_path, CPE, conf, render=landhcp.text)
    wand_cfg = {"host": "t-cpe", "state_file": str(tmp_path / "wan.json"), "wans": wans, "lans": [lan],
                "probe": {"interval_s": 0.3, "down_count": 3, "up_count": 2},
                "lan_dhcp": {"state_dir": str(state_dir), "reload": ["kill", "-HUP", str(kea.pid)]}}
    (tmp_path / "wand.json").write_text(json.dumps(wand_cfg))
    procs.start("wand", *WAND, "--config", str(tmp_path / "wand.json"), ns=CPE)
    wait_for("both WANs healthy", lambda: all(w.get("healthy") for w in wan_state(tmp_path).values())
             and len(wan_state(tmp_path)) == len(wans), timeout=15)
    return kea


def wan_state(tmp_path: Path) -> dict:
    try:
        return json.loads((tmp_path / "wan.json").read_text()).get("wans", {})
    except (FileNotFoundError, ValueError):
        return {}


_n = 0


def client(tmp_path: Path, *args: str, expect_lease: bool = True) -> dict:
    """A fresh macvlan on the host's LAN (its own MAC), busybox udhcpc on it with ``args``;
    the environment its script saw at `bound` ({} when no lease came)."""
    global _n
    _n += 1
    dev = f"mv{_n}"
    sh("ip", "link", "add", dev, "link", "lan0", "type", "macvlan", "mode", "bridge", ns=HOST)
    sh("ip", "link", "set", dev, "up", ns=HOST)
    out = tmp_path / f"{dev}.env"
    script = tmp_path / "record"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && env > "{tmp_path}/$interface.env"\nexit 0\n')
    script.chmod(0o755)
    # -n: give up when no offer comes (3 discovers, 1 s apart); -q: quit once bound.
    proc = sh("udhcpc", "-f", "-q", "-n", "-i", dev, "-s", str(script), "-t", "3", "-T", "1", *args,
              ns=HOST, check=False, timeout=30)
    if not expect_lease:
        assert proc.returncode != 0 and not out.exists(), f"{dev} got a lease: {out.read_text() if out.exists() else proc.stdout}"
        return {}
    assert proc.returncode == 0 and out.exists(), proc.stdout + proc.stderr
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


def last_octet(env: dict) -> int:
    return int(env["ip"].rsplit(".", 1)[1])


def route_dev(src: str, *extra: str) -> str:
    """The CPE's device for a LAN packet from src to a server on none of the WANs' links."""
    got = json.loads(sh("ip", "-j", "route", "get", "198.18.99.5", "from", src, "iif", "lan0", *extra, ns=CPE).stdout)
    return got[0]["dev"]


def test_pool_ranges_options_and_routes(tmp_path, procs):
    with topology():
        start(tmp_path, procs)
        # No mp-avail in the PRL: an ordinary lease from the pool, nothing else.
        plain = client(tmp_path)
        assert last_octet(plain) in POOL and f"opt{AVAIL}" not in plain and plain["router"] == "198.18.1.1"
        # mp-avail asked for: one octet, the one WAN after the first.
        asked = client(tmp_path, "-O", str(AVAIL))
        assert last_octet(asked) in POOL and asked[f"opt{AVAIL}"] == "01"
        # mp-range = 1 sent: a lease from the range, and mp-range = 1 back.
        ranged = client(tmp_path, "-x", f"0x{RANGE:x}:01", "-O", str(RANGE))
        assert last_octet(ranged) in RANGE1 and ranged[f"opt{RANGE}"] == "01"
        # The CPE sends the range out of the second WAN, the pool's TCP out of the first,
        # the pool's other traffic by the balanced default route.
        assert route_dev(ranged["ip"]) == "wan2"
        assert route_dev(asked["ip"], "ipproto", "tcp") == "wan1"
        # LAN to LAN stays on the LAN, whatever the source.
        got = json.loads(sh("ip", "-j", "route", "get", "198.18.1.10", "from", ranged["ip"], "iif", "lan0", ns=CPE).stdout)
        assert got[0]["dev"] == "lan0"


def test_malformed_or_unknown_mp_range_gets_no_lease(tmp_path, procs):
    with topology():
        start(tmp_path, procs)
        for value in ("0101", "00", "02"):  # two octets; k = 0; k beyond the one range
            client(tmp_path, "-x", f"0x{RANGE:x}:{value}", expect_lease=False)
        # The server still serves everyone else.
        assert last_octet(client(tmp_path)) in POOL


def test_each_k_of_three_wans(tmp_path, procs):
    sat = {"name": "sat", "device": "wan3", "kind": "satellite", "ipv4": {"address": "203.0.113.10/24", "gateway": "203.0.113.1"}}
    lan = {**LAN, "dhcp": {"pool": "198.18.1.128 - 198.18.1.191",
                           "ranges": {"lte": "198.18.1.192 - 198.18.1.223", "sat": "198.18.1.224 - 198.18.1.239"}}}
    with topology(), namespaces("t-ld-isp3"):
        veth(CPE, "wan3", "t-ld-isp3", "isp0")
        add_addresses("t-ld-isp3", "isp0", ["203.0.113.1/24"])
        start(tmp_path, procs, wans=[*WANS, sat], lan=lan)
        assert client(tmp_path, "-O", str(AVAIL))[f"opt{AVAIL}"] == "02"
        for k, rng, dev in ((1, RANGE1, "wan2"), (2, range(224, 240), "wan3")):
            env = client(tmp_path, "-x", f"0x{RANGE:x}:{k:02x}", "-O", str(RANGE))
            assert last_octet(env) in rng and env[f"opt{RANGE}"] == f"{k:02x}"
            assert route_dev(env["ip"]) == dev


def test_a_range_whose_wan_is_down_leases_nothing_and_is_refused(tmp_path, procs):
    with topology():
        start(tmp_path, procs)
        before = client(tmp_path, "-x", f"0x{RANGE:x}:01")
        sh("ip", "addr", "add", f"{before['ip']}/24", "dev", before["interface"], ns=HOST)
        sh("ip", "route", "add", "default", "via", "198.18.1.1", ns=HOST)
        # ISP2 drops everything: only wand's probes can tell lte is down.
        sh("nft", "add table inet cut; add chain inet cut in { type filter hook input priority 0; policy drop; }", ns=ISP2)
        wait_for("lte down", lambda: wan_state(tmp_path)["lte"]["state"] == "down", timeout=10)
        state_file = tmp_path / "lan-dhcp" / "lte.test"
        wait_for("wand to write lte's state for Kea", lambda: json.loads(state_file.read_text()) == landhcp.DOWN_TEST)
        wait_for("Kea to read it again", lambda: "DHCP4_DYNRECONF" in procs.log("kea4")
                 or procs.log("kea4").count("DHCP4_CONFIG_COMPLETE") >= 2, timeout=10)
        client(tmp_path, "-x", f"0x{RANGE:x}:01", expect_lease=False)
        assert last_octet(client(tmp_path)) in POOL  # the pool still leases
        # What the range's host sends is refused at once (a TCP reset), not blackholed.
        t0 = time.monotonic()
        probe = sh("python3", "-c", "import socket,sys\ns=socket.socket()\ns.settimeout(5)\n"
                   f"s.bind(('{before['ip']}',0))\n"
                   "try:\n s.connect(('198.51.100.1',9))\nexcept ConnectionRefusedError:\n sys.exit(7)\n",
                   ns=HOST, check=False, timeout=20)
        assert probe.returncode == 7 and time.monotonic() - t0 < 3, probe.stderr
        # lte back: its range leases again.
        sh("nft", "delete table inet cut", ns=ISP2)
        wait_for("lte up", lambda: wan_state(tmp_path)["lte"]["state"] == "up", timeout=10)
        wait_for("wand to write lte's state for Kea", lambda: json.loads(state_file.read_text()) == landhcp.UP_TEST)
        time.sleep(0.5)  # Kea's reload
        assert last_octet(client(tmp_path, "-x", f"0x{RANGE:x}:01")) in RANGE1
