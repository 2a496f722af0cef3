"""``mptcp-cpe host`` against a real kea-dhcp4 that speaks draft-wr-mptcp-single-homed (root,
network namespaces): a "cpe" namespace serves the LAN with mp-avail and one pool per extra
range, a "host" namespace runs the daemon with its real busybox udhcpc clients.

The server's contract: mp-avail (225, one octet) goes to a client that asks for it; a
client that sends mp-range = k (226) gets a lease from range k's pool (a class on
``option[226].hex``), with 226 = k in the answer; the primary pool is for clients that send
no mp-range. Documentation addresses only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import sys

import pytest
from netlab import namespaces, needs_root, procs, sh, start_kea4, veth  # noqa: F401 - procs is a fixture

from helpers import TOP
from mptcp_cpe.host.plan import path_macs

pytestmark = [pytest.mark.root, needs_root,
              pytest.mark.skipif(not shutil.which("kea-dhcp4"), reason="kea-dhcp4 is not installed"),
              pytest.mark.skipif(not shutil.which("udhcpc"), reason="busybox udhcpc is not installed")]

CPE, HOST, SERVER = "t-hc", "t-hh", "t-hs"
TABLE_BASE, RULE_PRIORITY, ID_BASE, PROTO = 300, 5000, 200, 203
PRIMARY_POOL = ("192.0.2.100", "192.0.2.109")


def pool(k: int) -> tuple[str, str]:
    """Range k's addresses: 192.0.2.1k0 - 192.0.2.1k9."""
    return f"192.0.2.{100 + 10 * k}", f"192.0.2.{109 + 10 * k}"


def in_pool(address: str | None, bounds: tuple[str, str]) -> bool:
    if not address:
        return False
    ip = ipaddress.ip_interface(address).ip
    return ipaddress.ip_address(bounds[0]) <= ip <= ipaddress.ip_address(bounds[1])


def kea_config(mp_avail_hex: str = "02", ranges=(1, 2), answers: dict[int, int] | None = None) -> dict:
    """The contract; mp-avail as raw octets, so a test can make it malformed. ``ranges``:
    the ranges that have a pool (a range whose WAN is down has none); ``answers``: a range
    whose answer carries another mp-range (a broken server)."""
    classes = [{"name": "mp-primary", "test": "not option[226].exists"}]
    pools = [{"pool": " - ".join(PRIMARY_POOL), "client-class": "mp-primary"}]
    for k in (1, 2, 3):
        classes.append({"name": f"mp-range-{k}", "test": f"option[226].hex == 0x{k:02x}",
                        "option-data": [{"name": "mp-range", "data": str((answers or {}).get(k, k)), "always-send": True}]})
        if k in ranges:
            pools.append({"pool": " - ".join(pool(k)), "client-class": f"mp-range-{k}"})
    return {"Dhcp4": {
        "interfaces-config": {"interfaces": ["lan0"]},
        "valid-lifetime": 600,
        "option-def": [{"name": "mp-avail", "code": 225, "type": "binary", "space": "dhcp4"},
                       {"name": "mp-range", "code": 226, "type": "uint8", "space": "dhcp4"}],
        # Not always-send: only a client that lists 225 in its PRL gets it.
        "option-data": [{"name": "mp-avail", "code": 225, "csv-format": False, "data": mp_avail_hex}],
        "client-classes": classes,
        "subnet4": [{"id": 1, "subnet": "192.0.2.0/24", "interface": "lan0", "pools": pools,
                     "option-data": [{"name": "routers", "data": "192.0.2.1"}]}],
    }}


@pytest.fixture
def lab():
    with namespaces(CPE, HOST, SERVER, kill=True):
        veth(CPE, "lan0", HOST, "lan0")
        sh("ip", "addr", "add", "192.0.2.1/24", "dev", "lan0", ns=CPE)
        yield


def host_config(tmp_path) -> str:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"host": "lab-host", "interface": "lan0", "state_dir": str(tmp_path / "state"),
                                "resolv_conf": None, "ipv6_poll_s": 0.5, "table_base": TABLE_BASE,
                                "rule_priority": RULE_PRIORITY, "endpoint_id_base": ID_BASE,
                                "route_protocol": PROTO}))
    return str(path)


def start_host(procs, tmp_path, name="host"):
    env = dict(os.environ, PYTHONPATH=str(TOP / "src"))
    return procs.start(name, sys.executable, "-m", "mptcp_cpe.cli", "host", "-v", "--config", host_config(tmp_path),
                       ns=HOST, env=env)


def status(tmp_path) -> dict:
    path = tmp_path / "state" / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def addresses(dev: str) -> list[str]:
    out = sh("ip", "-j", "-4", "addr", "show", "dev", dev, ns=HOST, check=False).stdout
    return [f"{a['local']}/{a['prefixlen']}" for info in json.loads(out or "[]") for a in info["addr_info"]]


def links() -> dict[str, str]:
    return {i["ifname"]: i.get("address") for i in json.loads(sh("ip", "-j", "link", "show", ns=HOST).stdout)}


def rules() -> list[dict]:
    return [r for r in json.loads(sh("ip", "-j", "-4", "rule", "show", ns=HOST).stdout)
            if RULE_PRIORITY <= r["priority"] < RULE_PRIORITY + 100]


def endpoints() -> dict[int, dict]:
    out = sh("ip", "-j", "mptcp", "endpoint", "show", ns=HOST).stdout
    return {e["id"]: e for e in json.loads(out or "[]")}


def table(k: int) -> list[str]:
    return sh("ip", "-4", "route", "show", "table", str(TABLE_BASE + k), ns=HOST, check=False).stdout.splitlines()


def paths_up(tmp_path, ks):
    def check():
        s = status(tmp_path)
        paths = s.get("paths", {})
        if set(paths) != {str(k) for k in ks} or not in_pool(s["primary"]["address"], PRIMARY_POOL):
            return None
        return s if all(in_pool(paths[str(k)]["address"], pool(k)) and paths[str(k)]["endpoint_id"] for k in ks) else None
    return check


def assert_path_configured(k: int, address: str) -> None:
    dev = f"lan0.mp{k}"
    ip = address.split("/")[0]
    assert addresses(dev) == [address]
    assert {"priority": RULE_PRIORITY + k, "src": ip, "table": str(TABLE_BASE + k)}.items() <= next(
        r for r in rules() if r["priority"] == RULE_PRIORITY + k).items()
    assert f"default via 192.0.2.1 dev {dev} proto {PROTO} onlink" in table(k) or any(
        line.startswith(f"default via 192.0.2.1 dev {dev}") for line in table(k)), table(k)
    ep = endpoints()[ID_BASE + k - 1]
    assert (ep["address"], ep["dev"], ep.get("subflow")) == (ip, dev, True)
    # No second route to the LAN in main: the primary keeps it.
    main = sh("ip", "-4", "route", "show", "table", "main", ns=HOST).stdout
    assert dev not in main, main


def stop(daemon, sig=signal.SIGTERM) -> int:
    """Signal the daemon alone, as systemd does (KillMode=mixed): its clients are its to stop."""
    daemon.send_signal(sig)
    return daemon.wait(30)


def assert_nothing_left() -> None:
    assert not [n for n in links() if ".mp" in n], links()
    assert rules() == []
    assert not [i for i in endpoints() if ID_BASE <= i < ID_BASE + 16], endpoints()
    assert addresses("lan0") == []
    assert sh("ip", "-4", "route", "show", "table", "all", "proto", str(PROTO), ns=HOST).stdout == ""


def test_paths_from_their_ranges_same_after_restart_and_gone_after_sigterm(tmp_path, procs, lab):
    start_kea4(procs, tmp_path, CPE, kea_config())
    daemon = start_host(procs, tmp_path)
    s = procs.wait_for("the primary lease and two paths", paths_up(tmp_path, (1, 2)), timeout=60)
    assert s["mp_avail"] == 2
    assert addresses("lan0") == [s["primary"]["address"]]
    macs = path_macs(links()["lan0"])
    assert macs == path_macs(links()["lan0"].upper())
    for k in (1, 2):
        p = s["paths"][str(k)]
        assert p["macvlan"] == f"lan0.mp{k}" and p["mac"] == macs[k] == links()[f"lan0.mp{k}"]
        assert p["endpoint_id"] == ID_BASE + k - 1
        assert_path_configured(k, p["address"])
    limits = sh("ip", "mptcp", "limits", "show", ns=HOST).stdout.split()
    assert int(limits[limits.index("subflows") + 1]) >= 2
    text = sh(sys.executable, "-m", "mptcp_cpe.cli", "host", "status", "--config", host_config(tmp_path),
              env=dict(os.environ, PYTHONPATH=str(TOP / "src"))).stdout
    assert f"path 2: lan0.mp2 {macs[2]} {s['paths']['2']['address']}" in text

    assert stop(daemon) == 0
    assert_nothing_left()
    # The clients released their leases and their scripts removed what they had made.
    log = procs.log("host")
    assert "path 2: lease 192.0.2.12" in log and "path 1: lease 192.0.2.11" in log and "primary: lease" in log, log
    kea = procs.log("kea4")
    assert kea.count("DHCP4_RELEASE") >= 3, kea[-3000:]

    procs.forget(daemon)
    start_host(procs, tmp_path, "host-again")
    again = procs.wait_for("the same leases after a restart", paths_up(tmp_path, (1, 2)), timeout=60)
    assert again["primary"]["address"] == s["primary"]["address"]
    assert {k: p["mac"] for k, p in again["paths"].items()} == {k: p["mac"] for k, p in s["paths"].items()}
    assert {k: p["address"] for k, p in again["paths"].items()} == {k: p["address"] for k, p in s["paths"].items()}


def mptcp_cpe(*args: str) -> str:
    return sh(sys.executable, "-m", "mptcp_cpe.cli", *args, env=dict(os.environ, PYTHONPATH=str(TOP / "src"))).stdout


def test_mp_avail_dropping_removes_the_last_path(tmp_path, procs, lab):
    kea = start_kea4(procs, tmp_path, CPE, kea_config())
    start_host(procs, tmp_path)
    s = procs.wait_for("two paths", paths_up(tmp_path, (1, 2)), timeout=60)
    # The gateway lost a WAN: Kea rereads its config, the primary renews.
    (tmp_path / "kea4.json").write_text(json.dumps({"Dhcp4": {**kea_config("01")["Dhcp4"], **{
        k: v for k, v in json.loads((tmp_path / "kea4.json").read_text())["Dhcp4"].items()
        if k in ("lease-database", "loggers")}}}))
    kea.send_signal(signal.SIGHUP)
    procs.wait_for("Kea to reload", lambda: procs.log("kea4").count("DHCP4_CONFIG_COMPLETE") >= 2, timeout=20)
    os.kill(s["primary"]["client_pid"], signal.SIGUSR1)
    after = procs.wait_for("path 2 to go", lambda: (st := status(tmp_path)).get("mp_avail") == 1
                           and set(st["paths"]) == {"1"} and st, timeout=30)
    assert "lan0.mp2" not in links()
    assert ID_BASE + 1 not in endpoints() and ID_BASE in endpoints()
    assert [r["priority"] for r in rules()] == [RULE_PRIORITY + 1]
    assert table(2) == []
    assert after["paths"]["1"]["address"] == s["paths"]["1"]["address"]
    assert_path_configured(1, after["paths"]["1"]["address"])


def test_sighup_refuses_a_bad_config_and_starts_over_with_a_good_one(tmp_path, procs, lab):
    start_kea4(procs, tmp_path, CPE, kea_config())
    daemon = start_host(procs, tmp_path)
    s = procs.wait_for("two paths", paths_up(tmp_path, (1, 2)), timeout=60)
    path = tmp_path / "host.json"
    good = json.loads(path.read_text())
    path.write_text(json.dumps({**good, "table_base": 250}))
    daemon.send_signal(signal.SIGHUP)
    procs.wait_for("the refusal", lambda: "config refused" in procs.log("host"), timeout=10)
    refused = [line for line in procs.log("host").splitlines() if "config refused" in line]
    assert refused == ["mptcp-cpe host: ERROR config refused, keeping the running state: lab-host: table_base: "
                       "tables table_base+1..+8 would take the kernel's table 253 (got 250)"]
    assert status(tmp_path)["paths"] == s["paths"] and daemon.poll() is None
    # A good new config: the paths start over in the new tables, with the same leases.
    path.write_text(json.dumps({**good, "table_base": 400}))
    daemon.send_signal(signal.SIGHUP)
    again = procs.wait_for("the paths in the new tables", lambda: (st := paths_up(tmp_path, (1, 2))())
                           and st["paths"]["1"]["table"] == 401 and st, timeout=60)
    assert {k: p["address"] for k, p in again["paths"].items()} == {k: p["address"] for k, p in s["paths"].items()}
    assert sh("ip", "-4", "route", "show", "table", str(TABLE_BASE + 1), ns=HOST).stdout == ""
    assert any(line.startswith("default via 192.0.2.1 dev lan0.mp1") for line in
               sh("ip", "-4", "route", "show", "table", "401", ns=HOST).stdout.splitlines())


def test_a_range_without_a_pool_leaves_its_macvlan_bare(tmp_path, procs, lab):
    start_kea4(procs, tmp_path, CPE, kea_config(ranges=(1,)))
    start_host(procs, tmp_path)
    procs.wait_for("path 1", paths_up_partly(tmp_path), timeout=60)
    procs.wait_for("path 2's client to give up a round", lambda: "path 2: no lease on lan0.mp2" in procs.log("host"),
                   timeout=30)
    st = status(tmp_path)
    assert st["paths"]["2"]["address"] is None and st["paths"]["2"]["endpoint_id"] is None
    assert "lan0.mp2" in links() and addresses("lan0.mp2") == []
    assert ID_BASE + 1 not in endpoints() and table(2) == []
    assert [r["priority"] for r in rules()] == [RULE_PRIORITY + 1]


def paths_up_partly(tmp_path):
    def check():
        paths = status(tmp_path).get("paths", {})
        return set(paths) == {"1", "2"} and in_pool(paths["1"]["address"], pool(1))
    return check


def test_a_malformed_mp_avail_is_refused_with_one_line(tmp_path, procs, lab):
    start_kea4(procs, tmp_path, CPE, kea_config("0102"))
    start_host(procs, tmp_path)
    s = procs.wait_for("the primary lease", lambda: in_pool(status(tmp_path).get("primary", {}).get("address"),
                                                             PRIMARY_POOL) and status(tmp_path), timeout=60)
    refused = [line for line in procs.log("host").splitlines() if "mp-avail" in line and "refused" in line]
    assert refused == ["mptcp-cpe host path 0: primary: mp-avail (option 225) must be one octet, not 2 (got '0102'): "
                       "refused, mp-avail stays 0"], procs.log("host")
    assert s["mp_avail"] == 0 and s["paths"] == {}
    assert not [n for n in links() if ".mp" in n]


def test_an_answer_for_another_range_is_refused(tmp_path, procs, lab):
    # A broken server answers range 2's request with mp-range 1.
    start_kea4(procs, tmp_path, CPE, kea_config(answers={2: 1}))
    start_host(procs, tmp_path)
    procs.wait_for("path 1", paths_up_partly(tmp_path), timeout=60)
    procs.wait_for("path 2's lease to be refused", lambda: "path 2: bound on lan0.mp2: mp-range (option 226) is 1 "
                   "in the answer to a request for range 2 (got '01'): lease refused, nothing changed" in procs.log("host"),
                   timeout=30)
    assert addresses("lan0.mp2") == [] and ID_BASE + 1 not in endpoints() and table(2) == []
    assert status(tmp_path)["paths"]["2"]["address"] is None


def test_one_ipv6_endpoint_per_prefix(tmp_path, procs, lab):
    # No DHCP server needed: the IPv6 paths are the LAN interface's SLAAC prefixes.
    start_host(procs, tmp_path)
    for a in ("2001:db8:1::10/64", "2001:db8:1::11/64", "2001:db8:2::10/64"):
        sh("ip", "addr", "add", a, "dev", "lan0", "nodad", ns=HOST)
    sh("ip", "addr", "add", "2001:db8:3::10/64", "dev", "lan0", "nodad", "preferred_lft", "0", ns=HOST)

    def v6():
        return {i: e["address"] for i, e in endpoints().items() if ID_BASE + 8 <= i < ID_BASE + 16}

    procs.wait_for("an endpoint per usable /64", lambda: v6() == {ID_BASE + 8: "2001:db8:1::10",
                                                                  ID_BASE + 9: "2001:db8:2::10"}, timeout=20)
    sh("ip", "addr", "del", "2001:db8:1::10/64", "dev", "lan0", ns=HOST)
    procs.wait_for("the /64's other address to take over", lambda: v6() == {ID_BASE + 9: "2001:db8:2::10",
                                                                            ID_BASE + 8: "2001:db8:1::11"}, timeout=20)
    sh("ip", "addr", "del", "2001:db8:2::10/64", "dev", "lan0", ns=HOST)
    procs.wait_for("the gone prefix's endpoint to go", lambda: v6() == {ID_BASE + 8: "2001:db8:1::11"}, timeout=20)
    assert json.loads(mptcp_cpe("host", "status", "--json", "--config", host_config(tmp_path)))["ipv6_endpoints"] == {
        str(ID_BASE + 8): "2001:db8:1::11"}


SERVER_ADDRESS, PORT = "198.18.0.1", 5201
# The CPE's WANs to the server: WAN 1 the primary's, WAN k+1 range k's.
WANS = {1: ("198.51.100.1/24", "198.51.100.2/24"), 2: ("203.0.113.1/24", "203.0.113.2/24"),
        3: ("198.18.1.1/24", "198.18.1.2/24")}
# Each range's pool as prefixes, for the CPE's source rules.
RANGE_PREFIXES = {1: ["192.0.2.110/31", "192.0.2.112/29"], 2: ["192.0.2.120/29", "192.0.2.128/31"]}
MPTCP_SERVER = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{SERVER_ADDRESS}", {PORT}))
s.listen()
print("listening", flush=True)
c, _ = s.accept()
while c.recv(65536):
    pass
"""
MPTCP_CLIENT = f"""
import socket, time
c = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
c.connect(("{SERVER_ADDRESS}", {PORT}))
end = time.monotonic() + 30
while time.monotonic() < end:
    c.sendall(b"x" * 16384)
    time.sleep(0.01)
"""


def gateway_with_wans() -> None:
    """The CPE's side of the contract: range k's addresses leave by WAN k+1, NATed."""
    for k, (cpe_addr, srv_addr) in WANS.items():
        veth(CPE, f"wan{k}", SERVER, f"w{k}")
        sh("ip", "addr", "add", cpe_addr, "dev", f"wan{k}", ns=CPE)
        sh("ip", "addr", "add", srv_addr, "dev", f"w{k}", ns=SERVER)
        via = srv_addr.split("/")[0]
        sh("ip", "route", "add", SERVER_ADDRESS, "via", via, "table", str(100 + k), ns=CPE)
    sh("ip", "route", "add", SERVER_ADDRESS, "via", WANS[1][1].split("/")[0], ns=CPE)
    for k, prefixes in RANGE_PREFIXES.items():
        for prefix in prefixes:
            sh("ip", "rule", "add", "from", prefix, "table", str(101 + k), "pref", str(1000 + k), ns=CPE)
    for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):
        sh("sysctl", "-qw", key, ns=CPE)
    sh("nft", "add table ip nat; add chain ip nat post { type nat hook postrouting priority 100; }; "
       "add rule ip nat post oifname wan* masquerade", ns=CPE)
    sh("ip", "addr", "add", f"{SERVER_ADDRESS}/32", "dev", "lo", ns=SERVER)
    sh("ip", "mptcp", "limits", "set", "subflows", "8", "add_addr_accepted", "8", ns=SERVER)


@pytest.mark.skipif(not shutil.which("nft"), reason="nft is not installed")
def test_one_mptcp_connection_leaves_by_every_wan(tmp_path, procs, lab):
    gateway_with_wans()
    start_kea4(procs, tmp_path, CPE, kea_config())
    start_host(procs, tmp_path)
    procs.wait_for("two paths", paths_up(tmp_path, (1, 2)), timeout=60)
    server = procs.start("server", sys.executable, "-c", MPTCP_SERVER, ns=SERVER)
    procs.wait_for("the server to listen", lambda: "listening" in procs.log("server"), names=["server"])
    procs.start("client", sys.executable, "-c", MPTCP_CLIENT, ns=HOST)

    def peers():
        out = sh("ss", "-tnH", "state", "established", f"( sport = :{PORT} )", ns=SERVER).stdout
        return {line.split()[-1].rsplit(":", 1)[0] for line in out.splitlines()}

    # One subflow per WAN: the server sees each WAN's NAT address.
    want = {a.split("/")[0] for a, _ in WANS.values()}
    procs.wait_for("a subflow by each WAN", lambda: peers() == want, names=["server", "client"], timeout=20)
    assert server.poll() is None
