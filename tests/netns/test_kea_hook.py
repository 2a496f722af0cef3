"""The Kea hook (hooks/kea) inside real kea-dhcp4 / kea-dhcp6, with real clients.

The MCP option goes out only when the client asks for it; each client class or subnet gets
its own lists; a DHCPv4 option over 255 octets is split on the wire and joined again by
the clients; an FQDN becomes one MCP with all its addresses; DHCPv6 carries one instance
per MCP; bad parameters make Kea refuse the configuration, with the entry named, and
kea-mptcp-check says the same.

DHCPv4 without client classes is served by Kea itself from the options the hook put into
its configuration (no pkt4_send callout is registered then); with classes, by the callout.
The same answers are expected either way; the log says which path served them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
from pathlib import Path

import pytest
from netlab import add_addresses, link_pair, namespaces, needs_root, procs, sh, start_kea4, veth, wait_for  # noqa: F401 - procs is a fixture

from helpers import TOP, VENV_BIN
from mptcp_cpe import options
from mptcp_cpe.dhcp_hook import option_bytes

pytestmark = [pytest.mark.root, needs_root,
              pytest.mark.skipif(not (shutil.which("kea-dhcp4") and shutil.which("kea-dhcp6") and shutil.which("make")),
                                 reason="kea-dhcp4, kea-dhcp6 or make is not installed")]

KEA = TOP / "hooks" / "kea"
HOOK = KEA / "build" / "libdhcp_mptcp.so"
CHECK = KEA / "build" / "kea-mptcp-check"
PY = str(VENV_BIN / "python")

LISTS = [["203.0.113.1"], ["203.0.113.2", "203.0.113.3"]]
NATIVE = "mptcp-cpe hook: DHCPv4 option 224 sent by Kea from its own configuration (no per-packet callout): "
PER_PACKET = "mptcp-cpe hook: DHCPv4 option 224 added per packet (pkt4_send)"
# Over 255 octets: one full list (63 addresses, list-len 252) and one of 3.
BIG = [[f"198.51.100.{i}" for i in range(10, 73)], ["203.0.113.7", "203.0.113.8", "203.0.113.9"]]


@pytest.fixture(scope="module", autouse=True)
def built_hook():
    proc = subprocess.run(["make", "-C", str(KEA)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return HOOK


def kea4_config(params: dict, subnets=None, classes=None, interfaces=("a0",)) -> dict:
    cfg = {"Dhcp4": {
        "interfaces-config": {"interfaces": list(interfaces)},
        "valid-lifetime": 600,
        "hooks-libraries": [{"library": str(HOOK), "parameters": params}],
        "subnet4": subnets or [{"id": 1, "subnet": "192.0.2.0/24", "interface": "a0",
                                "pools": [{"pool": "192.0.2.100 - 192.0.2.110"}]}],
    }}
    if classes:
        cfg["Dhcp4"]["client-classes"] = classes
    return cfg


def udhcpc_env(tmp_path: Path, ns: str, *extra: str) -> dict:
    """Run busybox udhcpc once (-q) and return the environment its script saw at bound."""
    dump = tmp_path / "udhcpc-env.json"
    script = tmp_path / "udhcpc-dump.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && {PY} -c '
                      f'"import json,os; json.dump(dict(os.environ), open(\'{dump}\', \'w\'))"\nexit 0\n')
    script.chmod(0o755)
    dump.unlink(missing_ok=True)
    proc = sh("udhcpc", "-f", "-q", "-n", "-i", "b0", "-s", str(script), "-t", "5", "-T", "1", *extra,
              ns=ns, timeout=60, check=False)
    assert dump.exists(), proc.stdout + proc.stderr
    return json.loads(dump.read_text())


def dhclient_value(procs, tmp_path: Path, ns: str, code: int = 224) -> str:
    """ISC dhclient with the declaration roles/cpe_dhcp_client uses (decimal octets: unlike
    `= string`, never printed as text when every octet happens to be printable)."""
    conf = tmp_path / "dhclient.conf"
    conf.write_text(f"option mptcp-mcp code {code} = array of unsigned integer 8;\nalso request mptcp-mcp;\n")
    dump = tmp_path / "dhclient-mcp.txt"
    dump.unlink(missing_ok=True)
    script = tmp_path / "dhclient-script"
    script.write_text(f'#!/bin/sh\ncase "$reason" in BOUND|REBOOT) echo "$new_mptcp_mcp" > {dump}.tmp && '
                      f'mv {dump}.tmp {dump} ;; esac\nexit 0\n')
    script.chmod(0o755)
    # In the foreground (-d), so the fixture kills it whatever happens.
    client = procs.start("dhclient", "dhclient", "-4", "-d", "-1", "-sf", str(script), "-cf", str(conf),
                         "-pf", str(tmp_path / "dhclient.pid"), "-lf", str(tmp_path / "dhclient.leases"), "b0", ns=ns)
    try:
        wait_for("dhclient to bind", lambda: dump.exists() or client.poll() is not None, timeout=30)
        assert dump.exists(), procs.log("dhclient")[-3000:]
        return dump.read_text().strip()
    finally:
        procs.stop(client)


SNIFFER = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind(("b0", 0)); s.settimeout(30)
print("ready", flush=True)
while True:
    frame = s.recv(65535)
    ip = frame[14:]
    if len(ip) < 20 or ip[9] != 17:
        continue
    udp = ip[(ip[0] & 15) * 4:]
    if udp[0:2] == bytes([0, 67]) and len(udp) > 8 and udp[8] == 2:   # from port 67, BOOTREPLY
        print("reply", frame.hex(), flush=True)
        break
"""


def option_parts(frame: bytes, code: int) -> list[bytes]:
    """The data of every option `code` in a DHCPv4 reply frame, in order."""
    ip = frame[14:]
    bootp = ip[(ip[0] & 15) * 4 + 8:]
    opts, i, parts = bootp[240:], 0, []
    while i < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        t, n = opts[i], opts[i + 1]
        if t == code:
            parts.append(bytes(opts[i + 2: i + 2 + n]))
        i += 2 + n
    return parts


@contextlib.contextmanager
def star(name: str, server_addrs: list[str]):
    """Namespace <name>-s with a0, a1, ... each joined by a veth to b0 in <name>-c0, -c1, ..."""
    server, clients = f"{name}-s", [f"{name}-c{i}" for i in range(len(server_addrs))]
    with namespaces(server, *clients):
        for i, (client, addr) in enumerate(zip(clients, server_addrs)):
            veth(server, f"a{i}", client, "b0")
            add_addresses(server, f"a{i}", [addr])
        yield server, clients


@contextlib.contextmanager
def netns_hosts(ns: str, text: str):
    """/etc/hosts as processes in `ns` see it (ip netns exec bind-mounts /etc/netns/NS/*)."""
    root = Path("/etc/netns")
    made_root = not root.exists()
    d = root / ns
    d.mkdir(parents=True, exist_ok=True)
    try:
        (d / "hosts").write_text(text)
        yield
    finally:
        shutil.rmtree(d, ignore_errors=True)
        if made_root:
            with contextlib.suppress(OSError):
                root.rmdir()


# ---------------------------------------------------------------- DHCPv4


def test_option_only_when_requested_udhcpc_and_dhclient(tmp_path, procs):
    data = options.encode_v4(LISTS)
    with link_pair("t-kea-1", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea4_config({"v4": {"mcps": LISTS}}))
        env = udhcpc_env(tmp_path, cli, "-O", "224")
        assert env["opt224"] == data.hex()
        assert options.decode_v4(bytes.fromhex(env["opt224"])) == LISTS
        assert "opt224" not in udhcpc_env(tmp_path, cli)
        assert option_bytes(dhclient_value(procs, tmp_path, cli)) == data
        log = procs.log("kea4")
        assert "mptcp-cpe hook: loaded" in log
        assert NATIVE + "default (global), 0 subnet(s), 0 pool(s)" in log
        assert PER_PACKET not in log


def test_other_option_code(tmp_path, procs):
    with link_pair("t-kea-2", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea4_config({"v4-option-code": 230, "v4": {"mcps": LISTS}}))
        env = udhcpc_env(tmp_path, cli, "-O", "230")
        assert options.decode_v4(bytes.fromhex(env["opt230"])) == LISTS
        assert "opt224" not in udhcpc_env(tmp_path, cli, "-O", "224")


def test_over_255_octets_split_on_the_wire_and_joined_by_both_clients(tmp_path, procs):
    data = options.encode_v4(BIG)
    assert len(data) > 255
    with link_pair("t-kea-3", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea4_config({"v4": {"mcps": BIG}}))
        sniffer = procs.start("sniffer", PY, "-c", SNIFFER, ns=cli)
        wait_for("the sniffer", lambda: "ready" in procs.log("sniffer") or sniffer.poll() is not None)
        env = udhcpc_env(tmp_path, cli, "-O", "224")
        assert options.decode_v4(bytes.fromhex(env["opt224"])) == BIG
        wait_for("a captured reply", lambda: sniffer.poll() is not None)
        reply = [ln for ln in procs.log("sniffer").splitlines() if ln.startswith("reply ")]
        assert reply, procs.log("sniffer")
        # RFC 3396: several options 224, each at most 255 octets, joined in order: the whole.
        parts = option_parts(bytes.fromhex(reply[0].split()[1]), 224)
        assert len(parts) == 2 and all(len(p) <= 255 for p in parts) and b"".join(parts) == data
        assert options.decode_v4(option_bytes(dhclient_value(procs, tmp_path, cli))) == BIG


def test_class_then_subnet_id_then_default(tmp_path, procs):
    """Two subnets by id on two links, a class matched by the vendor class (option 60),
    and the default for a subnet the hook has no entry for."""
    west, sub1, sub2, default = [["203.0.113.77"]], [["203.0.113.1"]], LISTS, [["198.51.100.99"]]
    params = {"v4": {"mcps": default,
                     "subnets": [{"id": 2, "mcps": sub2}, {"id": 1, "mcps": sub1}],
                     "classes": [{"name": "WEST", "mcps": west}]}}
    subnets = [{"id": 1, "subnet": "192.0.2.0/24", "interface": "a0", "pools": [{"pool": "192.0.2.100 - 192.0.2.110"}]},
               {"id": 2, "subnet": "198.51.100.0/24", "interface": "a1",
                "pools": [{"pool": "198.51.100.100 - 198.51.100.110"}]},
               {"id": 3, "subnet": "203.0.113.0/24", "interface": "a2",
                "pools": [{"pool": "203.0.113.100 - 203.0.113.110"}]}]
    classes = [{"name": "WEST", "test": "substring(option[60].hex,0,4) == 'west'"}]
    cfg = kea4_config(params, subnets, classes, interfaces=("a0", "a1", "a2"))
    # Kea refuses multi-threading with a hook that is not multi_threading_compatible().
    cfg["Dhcp4"]["multi-threading"] = {"enable-multi-threading": True, "thread-pool-size": 2, "packet-queue-size": 16}
    with star("t-kea-4", ["192.0.2.1/24", "198.51.100.1/24", "203.0.113.1/24"]) as (srv, (c1, c2, c3)):
        start_kea4(procs, tmp_path, srv, cfg)
        got = {name: options.decode_v4(bytes.fromhex(udhcpc_env(tmp_path, ns, "-O", "224", *extra)["opt224"]))
               for name, ns, extra in [("sub1", c1, ()), ("sub2", c2, ()), ("none", c3, ()),
                                       ("west", c2, ("-V", "west-cpe"))]}
        assert got == {"sub1": sub1, "sub2": sub2, "none": default, "west": west}
        assert "mptcp-cpe hook: 2 subnet id(s) of v4 bound" in procs.log("kea4")
        assert PER_PACKET in procs.log("kea4") and NATIVE not in procs.log("kea4")
        assert "DHCP4_MULTI_THREADING_INFO enabled: yes" in procs.log("kea4")


@pytest.mark.parametrize(("other", "expected", "placed"), [
    # holds the address: the default (global)
    ({"id": 3, "subnet": "192.0.2.0/25"}, [["198.51.100.99"]], "0 subnet(s), 0 pool(s)"),
    # does not: subnet 1's, on subnet 1's pool (its upper half's addresses get them, its lower half's not)
    ({"id": 3, "subnet": "192.0.2.128/25"}, [["203.0.113.1"]], "0 subnet(s), 1 pool(s)"),
])
def test_most_specific_server_subnet_decides(tmp_path, procs, other, expected, placed):
    """An address is matched to the most specific of the server's subnets that holds it:
    inside a narrower subnet without an entry of its own, the client gets the default.
    Served by Kea: a subnet whose addresses get different MCPs carries them per pool."""
    params = {"v4": {"mcps": [["198.51.100.99"]], "subnets": [{"id": 1, "mcps": [["203.0.113.1"]]}]}}
    subnets = [{"id": 1, "subnet": "192.0.2.0/24", "interface": "a0", "pools": [{"pool": "192.0.2.100 - 192.0.2.110"}]},
               other]
    with link_pair("t-kea-8", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea4_config(params, subnets))
        assert options.decode_v4(bytes.fromhex(udhcpc_env(tmp_path, cli, "-O", "224")["opt224"])) == expected
        assert NATIVE + "default (global), " + placed in procs.log("kea4")


def test_subnet_written_with_host_bits(tmp_path, procs):
    """Kea keeps "192.0.2.5/24" as written; the hook finds it by its network all the same."""
    subnets = [{"id": 1, "subnet": "192.0.2.5/24", "interface": "a0", "pools": [{"pool": "192.0.2.100 - 192.0.2.110"}]}]
    with link_pair("t-kea-10", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea4_config({"v4": {"subnets": [{"id": 1, "mcps": LISTS}]}}, subnets))
        assert options.decode_v4(bytes.fromhex(udhcpc_env(tmp_path, cli, "-O", "224")["opt224"])) == LISTS
        assert NATIVE + "1 subnet(s), 0 pool(s)" in procs.log("kea4")


def test_reload_serves_the_new_lists_once(tmp_path, procs):
    """Kea rereads its configuration on SIGHUP (how roles/isp_dhcp applies one): the hook
    puts the new lists into the new configuration; the old ones are gone with the old one.
    Multi-threaded: Kea's packet threads read the options the hook put in."""
    first, second = [["203.0.113.1"]], [["203.0.113.9"], ["198.51.100.9"]]
    params = {"v4": {"mcps": [["198.51.100.99"]], "subnets": [{"id": 1, "mcps": first}]}}
    cfg = kea4_config(params)
    cfg["Dhcp4"]["multi-threading"] = {"enable-multi-threading": True, "thread-pool-size": 2, "packet-queue-size": 16}
    with link_pair("t-kea-9", ["192.0.2.1/24"], []) as (srv, cli):
        kea = start_kea4(procs, tmp_path, srv, cfg)
        assert options.decode_v4(bytes.fromhex(udhcpc_env(tmp_path, cli, "-O", "224")["opt224"])) == first
        path = tmp_path / "kea4.json"
        cfg = json.loads(path.read_text())
        cfg["Dhcp4"]["hooks-libraries"][0]["parameters"]["v4"]["subnets"][0]["mcps"] = second
        path.write_text(json.dumps(cfg))
        kea.send_signal(signal.SIGHUP)
        wait_for("the reloaded configuration", lambda: procs.log("kea4").count(NATIVE) == 2 or kea.poll() is not None)
        assert kea.poll() is None, procs.log("kea4")[-3000:]
        # The client's lease from before the reload is still Kea's: it is given again, with the new lists.
        for _ in range(2):
            assert options.decode_v4(bytes.fromhex(udhcpc_env(tmp_path, cli, "-O", "224")["opt224"])) == second


def test_prefix_entries_and_nothing_when_nothing_applies(tmp_path, procs):
    params = {"v4": {"subnets": [{"prefix": "198.51.100.0/24", "mcps": LISTS}]}}
    with link_pair("t-kea-5", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea4_config(params))
        assert "opt224" not in udhcpc_env(tmp_path, cli, "-O", "224")
    params = {"v4": {"subnets": [{"prefix": "192.0.2.0/24", "mcps": LISTS}]}}
    with link_pair("t-kea-5", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea4_config(params), name="kea4b")
        assert options.decode_v4(bytes.fromhex(udhcpc_env(tmp_path, cli, "-O", "224")["opt224"])) == LISTS


def test_fqdn_is_one_mcp_with_all_its_addresses(tmp_path, procs):
    params = {"v4": {"mcps": [["mcp-a.example.net"], ["203.0.113.9"]]}}
    with link_pair("t-kea-6", ["192.0.2.1/24"], []) as (srv, cli), \
            netns_hosts(srv, "203.0.113.50 mcp-a.example.net\n203.0.113.51 mcp-a.example.net\n"):
        cfg = kea4_config(params)
        start_kea4(procs, tmp_path, srv, cfg)
        env = udhcpc_env(tmp_path, cli, "-O", "224")
        assert options.decode_v4(bytes.fromhex(env["opt224"])) == [["203.0.113.50", "203.0.113.51"], ["203.0.113.9"]]
        check = sh(str(CHECK), str(tmp_path / "kea4.json"), ns=srv, check=False)
        assert (check.returncode, check.stdout.strip()) == (0, "ok")


# ---------------------------------------------------------------- DHCPv6


def solicit(oro: list[int]) -> bytes:
    duid = struct.pack("!HH", 3, 1) + bytes.fromhex("020000000b01")        # DUID-LL
    ia_na = struct.pack("!III", 1, 0, 0)
    opts = struct.pack("!HH", 1, len(duid)) + duid                            # Client ID
    opts += struct.pack("!HH", 3, len(ia_na)) + ia_na                         # IA_NA
    opts += struct.pack("!HH", 6, 2 * len(oro)) + b"".join(struct.pack("!H", c) for c in oro)  # ORO
    opts += struct.pack("!HHH", 8, 2, 0)                                      # Elapsed Time
    return bytes([1]) + b"\x00\x12\x34" + opts                                # SOLICIT


def v6_instances(reply: bytes, code: int) -> list[list[str]]:
    assert reply[0] == 2, f"not an ADVERTISE: {reply[:1].hex()}"
    out, i = [], 4
    while i + 4 <= len(reply):
        t, n = struct.unpack_from("!HH", reply, i)
        if t == code:
            out.append(options.decode_v6(reply[i + 4: i + 4 + n]))
        i += 4 + n
    return out


V6_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"b0")
s.bind(("::", 546)); s.settimeout(5)
s.sendto(bytes.fromhex(sys.argv[1]), ("ff02::1:2", 547, 0, socket.if_nametoindex("b0")))
print(s.recvfrom(4096)[0].hex())
"""


def v6_exchange(ns: str, oro: list[int]) -> bytes:
    """A Solicit from b0's link-local address to All_DHCP_Relay_Agents_and_Servers; the Advertise."""
    proc = sh(PY, "-c", V6_CLIENT, solicit(oro).hex(), ns=ns, timeout=30)
    return bytes.fromhex(proc.stdout.strip())


def test_dhcpv6_one_instance_per_mcp_only_when_asked(tmp_path, procs):
    mcps6 = [["2001:db8:0:200::1"], ["::ffff:203.0.113.2", "2001:db8:0:200::2"]]
    cfg = {"Dhcp6": {
        "interfaces-config": {"interfaces": ["a0"]},
        "preferred-lifetime": 300, "valid-lifetime": 600,
        "server-id": {"type": "LLT", "persist": False},
        "lease-database": {"type": "memfile", "persist": True, "name": str(tmp_path / "leases6.csv")},
        "hooks-libraries": [{"library": str(HOOK), "parameters": {"v6": {
            "mcps": [["2001:db8:0:300::1"]], "subnets": [{"id": 1, "mcps": mcps6}]}}}],
        "subnet6": [{"id": 1, "subnet": "2001:db8:0:1::/64", "interface": "a0",
                     "pools": [{"pool": "2001:db8:0:1::100 - 2001:db8:0:1::1ff"}]}],
        "loggers": [{"name": "kea-dhcp6", "output_options": [{"output": "stdout"}], "severity": "DEBUG", "debuglevel": 15}],
    }}
    path = tmp_path / "kea6.json"
    path.write_text(json.dumps(cfg))
    with link_pair("t-kea-7", ["2001:db8:0:1::1/64"], []) as (srv, cli):
        # Link-local addresses without duplicate address detection, so both ends are ready at once.
        for ns, dev in ((srv, "a0"), (cli, "b0")):
            sh("sysctl", "-qw", f"net.ipv6.conf.{dev}.accept_dad=0", ns=ns)
            sh("ip", "link", "set", dev, "down", ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
        wait_for("link-local addresses", lambda: "fe80" in sh("ip", "-6", "addr", "show", "b0", ns=cli).stdout
                 and "fe80" in sh("ip", "-6", "addr", "show", "a0", ns=srv).stdout)
        env = dict(os.environ, KEA_PIDFILE_DIR=str(tmp_path), KEA_LOCKFILE_DIR=str(tmp_path))
        kea = procs.start("kea6", "kea-dhcp6", "-c", str(path), ns=srv, env=env)
        wait_for("kea-dhcp6 to start", lambda: kea.poll() is not None or "DHCP6_STARTED" in procs.log("kea6"))
        assert kea.poll() is None, procs.log("kea6")[-3000:]
        # The subnet's two MCPs (by the address in IA_NA), not the default.
        assert v6_instances(v6_exchange(cli, [23, 65000]), 65000) == mcps6
        assert v6_instances(v6_exchange(cli, [23]), 65000) == []


# ---------------------------------------------------------------- refused parameters

BAD = [
    ({"v4": {"mcps": [["192.0.2.1"], ["224.0.0.5"]]}}, "v4.mcps[1][0]: 224.0.0.5 is multicast"),
    ({"v4": {"classes": [{"name": "REGION_WEST", "mcps": [["192.0.2.1"], ["127.0.0.1"]]}]}},
     "v4.classes[0] (REGION_WEST).mcps[1][0]: 127.0.0.1 is loopback"),
    ({"v4": {"mcps": [[]]}}, "v4.mcps[0]: an MCP needs at least one address"),
    ({"v4": {"mcps": []}}, "v4.mcps: must hold at least one MCP"),
    ({"v4-option-code": 300, "v4": {"mcps": [["192.0.2.1"]]}}, "v4-option-code: must be an integer from 1 to 254 (got 300)"),
    ({"v4-option-code": "224"}, "v4-option-code: must be an integer from 1 to 254"),
    ({"v6-option-code": 0}, "v6-option-code: must be an integer from 1 to 65535 (got 0)"),
    ({"v4": {"mcps": [["192.0.2.1"]]}, "colour": "blue"}, 'unknown parameter "colour"'),
    ({"v4": {"mcps": [["192.0.2.1"]], "subnet": []}}, 'v4: unknown parameter "subnet"'),
    ({"v4": {"classes": [{"name": "WEST", "mcps": [["no-such-host.invalid"]]}]}},
     "v4.classes[0] (WEST).mcps[0][0]: no-such-host.invalid does not resolve"),
    ({"v4": {"mcps": [[f"198.51.100.{i}" for i in range(1, 65)]]}}, "v4.mcps[0]: 64 addresses, at most 63"),
    ({"v4": {"mcps": [["192.0.2.300"]]}}, "v4.mcps[0][0]: 192.0.2.300 is not an IPv4 address"),
    ({"v4": {"subnets": [{"id": 1, "mcps": [["192.0.2.1"]]}, {"id": 1, "mcps": [["192.0.2.2"]]}]}},
     "v4.subnets[1].id: 1 is also v4.subnets[0].id"),
    ({"v4": {"subnets": [{"id": 9, "mcps": [["192.0.2.1"]]}]}}, "v4.subnets[0].id: no subnet4 has the id 9"),
    ({"v4": {"subnets": [{"prefix": "192.0.2.0/33", "mcps": [["192.0.2.1"]]}]}},
     "v4.subnets[0].prefix: 192.0.2.0/33 is not an IPv4 prefix"),
    ({"v4": {"classes": [{"name": "A", "mcps": [["192.0.2.1"]]}, {"name": "A", "mcps": [["192.0.2.2"]]}]}},
     'v4.classes[1].name: "A" is also v4.classes[0].name'),
    ({"v6": {"mcps": [["2001:db8::1"], ["::ffff:127.0.0.1"]]}},
     "v6.mcps[1][0]: ::ffff:127.0.0.1 is an IPv4-mapped loopback address"),
    ({"v6": {"mcps": [["ff02::1"]]}}, "v6.mcps[0][0]: ff02::1 is multicast"),
]


def assert_refused(tmp_path, params, message, change=None):
    """kea-mptcp-check and kea-dhcp4 both refuse the configuration, with the same line."""
    path = tmp_path / "kea4.json"
    # No interfaces: a config Kea accepted would open no socket (and is a failure here).
    cfg = kea4_config(params, interfaces=())
    cfg["Dhcp4"]["subnet4"][0].pop("interface")
    cfg["Dhcp4"]["lease-database"] = {"type": "memfile", "persist": False}
    cfg["Dhcp4"]["loggers"] = [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "INFO"}]
    if change:
        change(cfg["Dhcp4"])
    path.write_text(json.dumps(cfg))
    check = subprocess.run([str(CHECK), str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 1 and message in check.stdout, check.stdout
    env = dict(os.environ, KEA_PIDFILE_DIR=str(tmp_path), KEA_LOCKFILE_DIR=str(tmp_path))
    kea = subprocess.run(["kea-dhcp4", "-c", str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert kea.returncode != 0
    log = kea.stdout + kea.stderr
    assert f"mptcp-cpe hook: parameters refused: {check.stdout.strip()}" in log, log[-3000:]


@pytest.mark.parametrize(("params", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_parameters_are_refused_naming_the_entry(tmp_path, params, message):
    assert_refused(tmp_path, params, message)


def _conflict_in_subnet(d4):
    d4["subnet4"][0]["option-data"] = [{"code": 224, "data": "04CB007101", "csv-format": False}]


def _conflict_by_name_in_class(d4):
    d4["option-def"] = [{"name": "mcp", "code": 224, "type": "binary"}]
    d4["client-classes"] = [{"name": "X", "test": "'a' == 'a'", "option-data": [{"name": "mcp", "data": "04CB007101"}]}]


def _prefix_splits_a_pool(d4):
    d4["hooks-libraries"][0]["parameters"] = {"v4": {"subnets": [{"prefix": "192.0.2.96/29", "mcps": LISTS}]}}


def _other_space_is_not_a_conflict(d4):
    d4["option-def"] = [{"name": "sub", "code": 224, "type": "uint8", "space": "vendor-x"}]
    d4["option-data"] = [{"name": "sub", "code": 224, "space": "vendor-x", "data": "1"}]


def _reservation_outside_the_pools_of_a_split_subnet(d4):
    # Subnet 1 (192.0.2.0/24) has its own MCPs, except in the nested subnet 3 (192.0.2.0/25):
    # the reservation at .200 should get subnet 1's, but outside every pool only the default
    # (global) reaches it. The one at .20 gets the default anyway, so it is fine.
    d4["hooks-libraries"][0]["parameters"] = {"v4": {"mcps": [["198.51.100.99"]], "subnets": [{"id": 1, "mcps": LISTS}]}}
    d4["subnet4"][0]["pools"] = [{"pool": "192.0.2.130 - 192.0.2.140"}]
    d4["subnet4"][0]["reservations"] = [{"hw-address": "02:00:00:00:00:01", "ip-address": "192.0.2.20"},
                                        {"hw-address": "02:00:00:00:00:02", "ip-address": "192.0.2.200"}]
    d4["subnet4"].append({"id": 3, "subnet": "192.0.2.0/25"})


BAD_SERVER = [
    (_reservation_outside_the_pools_of_a_split_subnet,
     "subnet4[0].reservations[1] (192.0.2.200) lies outside every pool of subnet4[0] (192.0.2.0/24), whose addresses get "
     "different MCPs (subnet4[1] (192.0.2.0/25, no MCPs of its own) holds part of it)"),
    (_conflict_in_subnet, "subnet4[0].option-data[0]: sets option 224, which the mptcp-cpe hook serves (v4-option-code)"),
    (_conflict_by_name_in_class, "client-classes[0].option-data[0]: sets option 224"),
    (_prefix_splits_a_pool, "v4.subnets[0].prefix (192.0.2.96/29) holds part of the pool 192.0.2.100 - 192.0.2.110 of "
                            "subnet4[0] (192.0.2.0/24): without client classes Kea itself sends the MCPs"),
]


@pytest.mark.parametrize(("change", "message"), BAD_SERVER, ids=[c.__name__.strip("_") for c, _ in BAD_SERVER])
def test_server_configs_the_hook_cannot_serve_are_refused(tmp_path, change, message):
    """Checked when Kea hands the hook its configuration (dhcp4_srv_configured), and by
    kea-mptcp-check before a configuration is used."""
    assert_refused(tmp_path, {"v4": {"mcps": LISTS}}, message, change)


def test_option_in_another_space_is_no_conflict(tmp_path):
    cfg = kea4_config({"v4": {"mcps": LISTS}})
    _other_space_is_not_a_conflict(cfg["Dhcp4"])
    path = tmp_path / "kea4.json"
    path.write_text(json.dumps(cfg))
    check = subprocess.run([str(CHECK), str(path)], capture_output=True, text=True, timeout=60)
    assert (check.returncode, check.stdout.strip()) == (0, "ok")


def test_reservations_a_pool_or_the_default_reaches_are_accepted(tmp_path):
    cfg = kea4_config({"v4": {"mcps": LISTS}})
    _reservation_outside_the_pools_of_a_split_subnet(cfg["Dhcp4"])
    cfg["Dhcp4"]["subnet4"][0]["reservations"][1]["ip-address"] = "192.0.2.135"   # in the pool
    path = tmp_path / "kea4.json"
    path.write_text(json.dumps(cfg))
    check = subprocess.run([str(CHECK), str(path)], capture_output=True, text=True, timeout=60)
    assert (check.returncode, check.stdout.strip()) == (0, "ok")


def test_check_accepts_a_good_config_with_kea_comments(tmp_path):
    cfg = json.dumps(kea4_config({"v4": {"mcps": LISTS, "subnets": [{"id": 1, "mcps": LISTS}]}}), indent=1)
    path = tmp_path / "kea4.json"
    path.write_text("# a comment, as Kea allows\n// another one\n/* and\n one more */\n"
                    + cfg.replace('"valid-lifetime"', '/* inline */ "valid-lifetime"', 1) + "  # trailing\n")
    check = subprocess.run([str(CHECK), str(path)], capture_output=True, text=True, timeout=60)
    assert (check.returncode, check.stdout.strip()) == (0, "ok")
    (tmp_path / "other.json").write_text('{"Dhcp4": {"hooks-libraries": []}}')
    check = subprocess.run([str(CHECK), str(tmp_path / "other.json")], capture_output=True, text=True, timeout=60)
    assert check.returncode == 1 and "no hooks-libraries entry for libdhcp_mptcp.so" in check.stdout


def test_make_install(tmp_path):
    proc = subprocess.run(["make", "-C", str(KEA), "install", f"DESTDIR={tmp_path}", "HOOKS_DIR=/hooks",
                           "SBIN_DIR=/sbin"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "hooks" / "libdhcp_mptcp.so").is_file()
    assert os.access(tmp_path / "sbin" / "kea-mptcp-check", os.X_OK)
