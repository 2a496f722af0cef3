"""The CPE firewall against the real kernel, applied by the real ``mptcp-cpe firewall --config``.

Namespaces: the isp with two links to the cpe (like two WANs: isp1-wan1 on 192.0.2.0/24,
isp2-wan2 on 198.51.100.0/24), the cpe routing (a table per WAN with its default route via
the isp, as wand makes them; main's default via wan1), and a LAN host behind lan0
(198.18.1.0/24 and 2001:db8:0:100::/64). The isp also holds a management address
(203.0.113.5, 2001:db8:ff::5) and an outsider's (203.0.113.100, 2001:db8:ee::100).

What is checked is what peers see (connections made or not, replies) and what the kernel
counts (nft counters of the firewall's table, and of a counting table in the isp), never
the firewall's own view of itself.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator

import pytest

from netlab import Procs, add_addresses, namespaces, needs_root, sh, start_kea4, veth, wait_for

pytestmark = [pytest.mark.root, needs_root]

ISP, CPE, LAN = "tfw-isp", "tfw-cpe", "tfw-lan"
FIREWALL = [sys.executable, "-m", "mptcp_cpe.cli", "firewall"]
LAN_HOST4, LAN_HOST6 = "198.18.1.10", "2001:db8:0:100::10"
WAN1_4, WAN1_6, WAN2_4 = "192.0.2.10", "2001:db8:0:1::10", "198.51.100.10"
MGMT4, MGMT6, OUTSIDER4, OUTSIDER6 = "203.0.113.5", "2001:db8:ff::5", "203.0.113.100", "2001:db8:ee::100"

CONFIG = {
    "host": "tfw-cpe",
    "wans": [{"name": "dsl", "device": "wan1", "kind": "dsl"}, {"name": "lte", "device": "wan2", "kind": "lte"}],
    "lans": [{"name": "home", "device": "lan0", "ipv4": "198.18.1.1/24", "ipv6": ["2001:db8:0:100::1/64"]}],
    "management_prefixes": ["203.0.113.0/28", "2001:db8:ff::/64"],
    "port_forwards": [{"name": "game", "port": 2223, "to": LAN_HOST4, "wans": ["lte"]},
                      {"name": "game6", "port": 2223, "to": LAN_HOST6, "wans": ["lte"]}],
    "reserved_ports": [{"proto": "tcp", "port": 5125, "what": "converter's listen port"}],
}

# Listeners and a client, run inside the namespaces. A TCP or MPTCP listener answers each
# connection with "hello from <its address>"; a UDP one echoes. The client prints what it got
# or "failed: <why>" and exits 1.
PEER = r'''
import socket, sys, threading
IPPROTO_MPTCP = 262


def serve_tcp(host, port, proto):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port))
    s.listen(16)
    while True:
        c, peer = s.accept()
        def talk(c=c):
            c.sendall(f"hello from {host}:{port}".encode())
            if proto == IPPROTO_MPTCP:
                c.recv(100)  # the client says when it has seen its subflows
            c.close()
        threading.Thread(target=talk, daemon=True).start()


def serve_udp(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(b"echo " + data, peer)


def client(kind, dst, port, src, sport=0):
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    proto = IPPROTO_MPTCP if kind == "mptcp" else 0
    s = socket.socket(fam, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM, proto)
    s.settimeout(1.5)
    if src or sport:
        s.bind((src or "", sport))
    try:
        if kind == "udp":
            s.sendto(b"ping", (dst, port))
            print(s.recvfrom(2048)[0].decode())
            return 0
        s.connect((dst, port))
        data = s.recv(100).decode()
        if kind == "mptcp":
            # Wait (bounded) for the subflow the path manager opens over the other WAN.
            import time
            for _ in range(50):
                info = s.getsockopt(284, 1, 8)  # SOL_MPTCP, MPTCP_INFO: mptcpi_subflows first
                if info[0] >= 1:
                    break
                time.sleep(0.1)
            data += f" subflows {info[0]}"
            s.sendall(b"bye")
        print(data)
        return 0
    except OSError as exc:
        print(f"failed: {exc}")
        return 1


if __name__ == "__main__":
    what = sys.argv[1]
    if what in ("tcp", "mptcp") and sys.argv[2] == "serve":
        hosts = sys.argv[4:]
        for h in hosts:
            threading.Thread(target=serve_tcp, args=(h, int(sys.argv[3]), IPPROTO_MPTCP if what == "mptcp" else 0),
                             daemon=True).start()
        threading.Event().wait()
    elif what == "udp" and sys.argv[2] == "serve":
        for h in sys.argv[4:]:
            threading.Thread(target=serve_udp, args=(h, int(sys.argv[3])), daemon=True).start()
        threading.Event().wait()
    else:
        sys.exit(client(what, sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "",
                        int(sys.argv[5]) if len(sys.argv) > 5 else 0))
'''

# The isp counts what it gets from the CPE's forwarded service, per link.
ISP_COUNTERS = """
table inet tfw_count {
    counter from_wan1 { }
    counter from_wan2 { }
    chain in {
        type filter hook prerouting priority -300; policy accept;
        iifname "isp1" tcp sport 2223 counter name from_wan1
        iifname "isp2" tcp sport 2223 counter name from_wan2
    }
}
"""


@contextlib.contextmanager
def topology() -> Iterator[None]:
    with namespaces(ISP, CPE, LAN):
        for wan, isp_dev, isp4, isp6, cpe4, cpe6, table in (
                ("wan1", "isp1", "192.0.2.1/24", "2001:db8:0:1::1/64", f"{WAN1_4}/24", f"{WAN1_6}/64", "101"),
                ("wan2", "isp2", "198.51.100.1/24", "2001:db8:0:2::1/64", f"{WAN2_4}/24", "2001:db8:0:2::10/64", "102")):
            veth(CPE, wan, ISP, isp_dev)
            add_addresses(ISP, isp_dev, [isp4, isp6])
            add_addresses(CPE, wan, [cpe4, cpe6])
            # A table per WAN with its default route via the isp side, as wand makes them.
            gw4, gw6 = isp4.split("/")[0], isp6.split("/")[0]
            sh("ip", "route", "add", "default", "via", gw4, "dev", wan, "table", table, ns=CPE)
            sh("ip", "-6", "route", "add", "default", "via", gw6, "dev", wan, "table", table, ns=CPE)
            sh("ip", "rule", "add", "from", cpe4.split("/")[0], "lookup", table, "pref", "10010", ns=CPE)
        # Main's default route points at wan1, whatever a forward on wan2 needs.
        sh("ip", "route", "add", "default", "via", "192.0.2.1", "dev", "wan1", ns=CPE)
        sh("ip", "-6", "route", "add", "default", "via", "2001:db8:0:1::1", "dev", "wan1", ns=CPE)
        veth(CPE, "lan0", LAN, "host0")
        add_addresses(CPE, "lan0", ["198.18.1.1/24", "2001:db8:0:100::1/64"])
        # Forwarding on; loose reverse-path filtering on the WANs, as cpe_base sets it (a
        # forward's first packet arrives by wan2 from a source main routes by wan1).
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.ipv4.conf.all.rp_filter=2",
           "net.ipv4.conf.wan1.rp_filter=2", "net.ipv4.conf.wan2.rp_filter=2", ns=CPE)
        add_addresses(LAN, "host0", [f"{LAN_HOST4}/24", f"{LAN_HOST6}/64"])
        sh("ip", "route", "add", "default", "via", "198.18.1.1", ns=LAN)
        sh("ip", "-6", "route", "add", "default", "via", "2001:db8:0:100::1", ns=LAN)
        # The isp: the management and outsider addresses, and routes to the LAN through the
        # CPE (no NAT here: IPv4 reaches the LAN host directly if the firewall lets it).
        for addr in (f"{MGMT4}/32", f"{OUTSIDER4}/32", f"{MGMT6}/128", f"{OUTSIDER6}/128"):
            sh("ip", "addr", "add", addr, "dev", "lo", ns=ISP)
        sh("ip", "route", "add", "198.18.1.0/24", "via", WAN1_4, ns=ISP)
        sh("ip", "-6", "route", "add", "2001:db8:0:100::/64", "via", WAN1_6, ns=ISP)
        sh("nft", "-f", "-", ns=ISP, input=ISP_COUNTERS)
        yield


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[dict]:
    """The topology, listeners everywhere, and the firewall applied on the cpe."""
    tmp = tmp_path_factory.mktemp("firewall")
    peer = tmp / "peer.py"
    peer.write_text(PEER)
    procs = Procs(tmp)
    config = tmp / "firewall.json"
    config.write_text(json.dumps(CONFIG))
    with topology():
        try:
            py = [sys.executable, str(peer)]
            procs.start("lan-tcp", *py, "tcp", "serve", "2223", LAN_HOST4, LAN_HOST6, ns=LAN)
            procs.start("lan-tcp-other", *py, "tcp", "serve", "8080", LAN_HOST4, LAN_HOST6, ns=LAN)
            procs.start("lan-udp", *py, "udp", "serve", "8081", LAN_HOST4, LAN_HOST6, ns=LAN)
            procs.start("cpe-ssh", *py, "tcp", "serve", "22", "0.0.0.0", "::", ns=CPE)
            procs.start("cpe-tcp", *py, "tcp", "serve", "8022", "0.0.0.0", "::", ns=CPE)
            procs.start("cpe-dhcp-client-port", *py, "udp", "serve", "68", "0.0.0.0", ns=CPE)
            procs.start("isp-tcp", *py, "tcp", "serve", "9000", "192.0.2.1", "2001:db8:0:1::1", ns=ISP)
            procs.start("isp-udp", *py, "udp", "serve", "9001", "192.0.2.1", "2001:db8:0:1::1", ns=ISP)
            procs.start("isp-mptcp", *py, "mptcp", "serve", "9002", "192.0.2.1", ns=ISP)
            for ns, port in ((LAN, ":2223"), (LAN, ":8080"), (CPE, ":22"), (CPE, ":8022"), (ISP, ":9000"), (ISP, ":9002")):
                wait_for(f"a listener on {port} in {ns}",
                         lambda ns=ns, port=port: port in sh("ss", "-Hltn", ns=ns).stdout)
            apply = sh(*FIREWALL, "--config", str(config), ns=CPE)
            yield {"tmp": tmp, "py": py, "procs": procs, "config": config, "applied": apply.stdout}
        finally:
            procs.close()


def connect(lab, ns: str, kind: str, dst: str, port: int, src: str = "", sport: int = 0) -> tuple[bool, str]:
    args = [kind, dst, str(port)] + ([src] if src or sport else []) + ([str(sport)] if sport else [])
    proc = sh(*lab["py"], *args, ns=ns, check=False)
    return proc.returncode == 0, proc.stdout.strip()


def counter(name: str, ns: str = CPE, table: str = "inet mptcp_cpe_firewall") -> int:
    out = json.loads(sh("nft", "-j", "list", "counter", *table.split(), name, ns=ns).stdout)
    return next(o["counter"]["packets"] for o in out["nftables"] if "counter" in o)


def test_applied_table_and_rules(lab):
    assert "applied table inet mptcp_cpe_firewall: 2 WANs, 1 LANs, 2 port forwards, 2 management prefixes" in lab["applied"]
    sh("nft", "list", "table", "inet", "mptcp_cpe_firewall", ns=CPE)
    for family in ("-4", "-6"):
        ours = [r for r in json.loads(sh("ip", "-j", family, "rule", "show", ns=CPE).stdout) if r.get("protocol") == "203"]
        assert [(r["priority"], r["fwmark"], r["fwmask"], r["table"]) for r in ours] == [
            (9900, "0x10000", "0xff0000", "101"), (9901, "0x20000", "0xff0000", "102")]


def test_nothing_new_gets_in_from_the_isp_to_the_lan(lab):
    before = counter("forward_dropped")
    # IPv4 via the route through the CPE, IPv6 directly: TCP and UDP.
    for dst in (LAN_HOST4, LAN_HOST6):
        ok, out = connect(lab, ISP, "tcp", dst, 8080)
        assert not ok, out
        ok, out = connect(lab, ISP, "udp", dst, 8081)
        assert not ok, out
    assert counter("forward_dropped") > before


def test_the_lan_reaches_the_isp_and_replies_come_back(lab):
    for dst in ("192.0.2.1", "2001:db8:0:1::1"):
        assert connect(lab, LAN, "tcp", dst, 9000) == (True, f"hello from {dst}:9000")
        assert connect(lab, LAN, "udp", dst, 9001) == (True, "echo ping")


def test_the_cpes_own_ports_are_closed_to_the_wans_but_ssh_from_management(lab):
    before = counter("input_wan_dropped")
    for dst in (WAN1_4, WAN2_4, WAN1_6):
        ok, out = connect(lab, ISP, "tcp", dst, 8022)
        assert not ok, f"{dst}:8022 {out}"
    # SSH: from the management prefix yes, from anywhere else no.
    assert connect(lab, ISP, "tcp", WAN1_4, 22, MGMT4) == (True, "hello from 0.0.0.0:22")
    assert connect(lab, ISP, "tcp", WAN1_6, 22, MGMT6) == (True, "hello from :::22")
    for src, dst in ((OUTSIDER4, WAN1_4), ("192.0.2.1", WAN1_4), (OUTSIDER6, WAN1_6)):
        ok, out = connect(lab, ISP, "tcp", dst, 22, src)
        assert not ok, f"{src} -> {dst}:22 {out}"
    assert counter("input_wan_dropped") > before
    # From the LAN, the CPE's other ports are refused (rejected at once, counted).
    before = counter("input_lan_rejected")
    ok, out = connect(lab, LAN, "tcp", "198.18.1.1", 8022)
    assert not ok and ("No route to host" in out or "refused" in out), out
    assert counter("input_lan_rejected") > before


def test_a_port_forward_works_and_answers_by_the_wan_it_came_in_on(lab):
    w1, w2 = counter("from_wan1", ISP, "inet tfw_count"), counter("from_wan2", ISP, "inet tfw_count")
    # The isp reaches the CPE's wan2 address; the LAN host answers; main's default is wan1.
    assert connect(lab, ISP, "tcp", WAN2_4, 2223, OUTSIDER4) == (True, f"hello from {LAN_HOST4}:2223")
    # IPv6: opened to the LAN host's own address (the isp routes it by wan1: open on lte only).
    ok, out = connect(lab, ISP, "tcp", LAN_HOST6, 2223, OUTSIDER6)
    assert not ok, out
    assert counter("from_wan2", ISP, "inet tfw_count") > w2
    assert counter("from_wan1", ISP, "inet tfw_count") == w1
    # Not forwarded by the other WAN (the forward names lte only).
    ok, out = connect(lab, ISP, "tcp", WAN1_4, 2223, OUTSIDER4)
    assert not ok, out


def test_a_forwards_mark_keeps_the_other_mark_bits(lab):
    # Another user of the packet mark (as the converter is) marks the LAN's packets first;
    # the firewall sets only its own bits, and the reply still leaves by wan2.
    sh("nft", "-f", "-", ns=CPE, input="""
table inet tfw_other {
    counter kept { }
    chain pre { type filter hook prerouting priority -200; policy accept; iifname "lan0" meta mark set meta mark or 0x5; }
    chain post { type filter hook postrouting priority 0; policy accept;
                 oifname "wan2" tcp sport 2223 meta mark 0x00020005 counter name kept; }
}
""")
    try:
        w2 = counter("from_wan2", ISP, "inet tfw_count")
        assert connect(lab, ISP, "tcp", WAN2_4, 2223, OUTSIDER4) == (True, f"hello from {LAN_HOST4}:2223")
        assert counter("from_wan2", ISP, "inet tfw_count") > w2
        assert counter("kept", CPE, "inet tfw_other") > 0
    finally:
        sh("nft", "delete", "table", "inet", "tfw_other", ns=CPE)


def test_the_converters_diverted_connections_are_let_in_from_the_lan(lab):
    # What the converter's TPROXY rule does to a new LAN connection: the diverted mark.
    sh("nft", "-f", "-", ns=CPE, input="""
table inet tfw_divert {
    chain pre { type filter hook prerouting priority mangle; policy accept;
                iifname "lan0" tcp dport 8022 meta mark set 8803; }
}
""")
    try:
        assert connect(lab, LAN, "tcp", "198.18.1.1", 8022) == (True, "hello from 0.0.0.0:8022")
    finally:
        sh("nft", "delete", "table", "inet", "tfw_divert", ns=CPE)
    ok, out = connect(lab, LAN, "tcp", "198.18.1.1", 8022)
    assert not ok, out


def test_ipv6_forward_opens_the_lan_host_on_its_wan_and_replies_leave_by_it(lab):
    # Route the LAN prefix by wan2 at the isp for this one: the forward is open from lte.
    sh("ip", "-6", "route", "replace", "2001:db8:0:100::/64", "via", "2001:db8:0:2::10", ns=ISP)
    try:
        w1, w2 = counter("from_wan1", ISP, "inet tfw_count"), counter("from_wan2", ISP, "inet tfw_count")
        assert connect(lab, ISP, "tcp", LAN_HOST6, 2223, OUTSIDER6) == (True, f"hello from {LAN_HOST6}:2223")
        assert counter("from_wan2", ISP, "inet tfw_count") > w2
        assert counter("from_wan1", ISP, "inet tfw_count") == w1
        ok, out = connect(lab, ISP, "tcp", LAN_HOST6, 8080, OUTSIDER6)  # only the forwarded port
        assert not ok, out
    finally:
        sh("ip", "-6", "route", "replace", "2001:db8:0:100::/64", "via", WAN1_6, ns=ISP)


def test_dhcp_replies_get_through(lab):
    # An unsolicited server reply (udp 67 -> 68) reaches the client port; from another port not.
    assert connect(lab, ISP, "udp", WAN1_4, 68, "192.0.2.1", 67) == (True, "echo ping")
    ok, out = connect(lab, ISP, "udp", WAN1_4, 68, "192.0.2.1", 66)
    assert not ok, out
    # A real client and server: udhcpc on wan1 gets a lease from Kea in the isp.
    kea = {"Dhcp4": {"interfaces-config": {"interfaces": ["isp1"]}, "valid-lifetime": 600,
                     "subnet4": [{"id": 1, "subnet": "192.0.2.0/24", "interface": "isp1",
                                  "pools": [{"pool": "192.0.2.100 - 192.0.2.110"}]}]}}
    procs = lab["procs"]
    start_kea4(procs, lab["tmp"], ISP, kea)
    proc = sh("udhcpc", "-f", "-q", "-n", "-i", "wan1", "-s", "/bin/true", "-t", "5", "-T", "1", ns=CPE, check=False,
              timeout=30)
    assert proc.returncode == 0 and "obtained" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_neighbour_discovery_and_pings(lab):
    for ns, dev, dst in ((CPE, "wan1", "2001:db8:0:1::1"), (ISP, "isp1", WAN1_6)):
        sh("ip", "-6", "neigh", "flush", "dev", dev, ns=ns)
        proc = sh("busybox", "ping6", "-c", "1", "-W", "3", dst, ns=ns, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert sh("ip", "-6", "neigh", "show", "dev", dev, dst, ns=ns).stdout.strip(), f"no neighbour entry for {dst}"
    assert sh("busybox", "ping", "-c", "1", "-W", "3", WAN1_4, ns=ISP, check=False).returncode == 0


def test_mptcp_subflows_the_cpe_opens_get_through(lab):
    # An endpoint on wan2: the CPE's path manager opens a second subflow from it.
    sh("ip", "mptcp", "limits", "set", "subflows", "2", "add_addr_accepted", "2", ns=CPE)
    sh("ip", "mptcp", "limits", "set", "subflows", "2", "add_addr_accepted", "2", ns=ISP)
    sh("ip", "mptcp", "endpoint", "add", WAN2_4, "dev", "wan2", "subflow", ns=CPE)
    before = counter("input_invalid")
    ok, out = connect(lab, CPE, "mptcp", "192.0.2.1", 9002)
    assert ok and out == "hello from 192.0.2.1:9002 subflows 1", out
    assert counter("input_invalid") == before


def test_reapply_is_idempotent_and_remove_takes_exactly_ours(lab):
    # A foreign rule inside the band (another protocol) must survive.
    sh("ip", "rule", "add", "fwmark", "0x30000/0xff0000", "lookup", "102", "pref", "9902", "proto", "99", ns=CPE)
    sh(*FIREWALL, "--config", str(lab["config"]), ns=CPE)
    ours = [r for r in json.loads(sh("ip", "-j", "rule", "show", ns=CPE).stdout) if r.get("protocol") == "203"]
    assert len(ours) == 2
    removed = sh(*FIREWALL, "--config", str(lab["config"]), "--remove", ns=CPE).stdout
    assert "delete table inet mptcp_cpe_firewall" in removed
    left = json.loads(sh("ip", "-j", "rule", "show", ns=CPE).stdout)
    assert not [r for r in left if r.get("protocol") == "203"]
    assert [r["priority"] for r in left if 9900 <= r["priority"] < 9908] == [9902]
    assert sh("nft", "list", "table", "inet", "mptcp_cpe_firewall", ns=CPE, check=False).returncode != 0
    # Without the firewall the LAN host is reachable from the isp again (the test's own control).
    assert connect(lab, ISP, "tcp", LAN_HOST4, 8080) == (True, f"hello from {LAN_HOST4}:8080")
