"""The Kea hook (hooks/kea) inside real kea-dhcp4 / kea-dhcp6, with real clients.

The MCP option goes out only when the client asks for it; each subnet or client class
gets its own lists; a DHCPv4 option over 255 octets is split on the wire and joined again
by the client; DHCPv6 carries one instance per MCP; bad parameters make Kea refuse the
configuration, with the entry named, and kea-mptcp-check says the same.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import time

import pytest
from netlab import link_pair, needs_root, procs, sh, start_kea4, wait_for  # noqa: F401 - procs is a fixture

from helpers import TOP, VENV_BIN
from mptcp_cpe import options
from mptcp_cpe.dhcp_hook import option_bytes

pytestmark = [pytest.mark.root, needs_root,
              pytest.mark.skipif(not shutil.which("kea-dhcp4") or not shutil.which("make"),
                                 reason="kea-dhcp4 or make is not installed")]

KEA = TOP / "hooks" / "kea"
HOOK = KEA / "build" / "libdhcp_mptcp.so"
CHECK = KEA / "build" / "kea-mptcp-check"


@pytest.fixture(scope="module", autouse=True)
def built_hook():
    proc = subprocess.run(["make", "-C", str(KEA)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Kea runs hooks as whatever user it runs as; these tests run it as root.
    return HOOK


def kea4_config(params: dict, subnets=None, classes=None) -> dict:
    cfg = {"Dhcp4": {
        "interfaces-config": {"interfaces": ["a0"]},
        "valid-lifetime": 600,
        "hooks-libraries": [{"library": str(HOOK), "parameters": params}],
        "subnet4": subnets or [{"id": 1, "subnet": "192.0.2.0/24", "interface": "a0",
                                "pools": [{"pool": "192.0.2.100 - 192.0.2.110"}]}],
    }}
    if classes:
        cfg["Dhcp4"]["client-classes"] = classes
    return cfg


def udhcpc_env(tmp_path, ns, *extra) -> dict:
    """Run busybox udhcpc once (-q) and return the environment its script saw at bound."""
    dump = tmp_path / "env.json"
    script = tmp_path / "dump.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && {VENV_BIN}/python -c '
                      f'"import json,os; json.dump(dict(os.environ), open(\'{dump}\', \'w\'))"\nexit 0\n')
    script.chmod(0o755)
    dump.unlink(missing_ok=True)
    proc = sh("udhcpc", "-f", "-q", "-i", "b0", "-s", str(script), "-t", "10", "-T", "1", *extra, ns=ns, timeout=60)
    assert dump.exists(), proc.stdout + proc.stderr
    return json.loads(dump.read_text())


LISTS = [["203.0.113.1"], ["203.0.113.2", "203.0.113.3"]]


def test_option_only_when_requested(tmp_path, procs):
    with link_pair("t-kh1", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea4_config({"v4": {"mcps": LISTS}}))
        env = udhcpc_env(tmp_path, cli, "-O", "224")
        assert env["opt224"] == options.encode_v4(LISTS).hex()
        assert options.decode_v4(bytes.fromhex(env["opt224"])) == LISTS
        assert "opt224" not in udhcpc_env(tmp_path, cli)
        assert "mptcp-cpe hook: loaded" in procs.log("kea4")


def test_other_option_code(tmp_path, procs):
    with link_pair("t-kh2", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea4_config({"v4-option-code": 230, "v4": {"mcps": LISTS}}))
        env = udhcpc_env(tmp_path, cli, "-O", "230")
        assert options.decode_v4(bytes.fromhex(env["opt230"])) == LISTS
        assert "opt224" not in udhcpc_env(tmp_path, cli, "-O", "224")


def test_subnet_and_class_selection(tmp_path, procs):
    params = {"v4": {"mcps": [["198.51.100.99"]],
                     "subnets": [{"prefix": "192.0.2.0/24", "mcps": LISTS}],
                     "classes": [{"name": "WEST", "mcps": [["203.0.113.77"]]}]}}
    classes = [{"name": "WEST", "test": "substring(option[60].hex,0,4) == 'west'"}]
    with link_pair("t-kh3", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea4_config(params, classes=classes))
        by_subnet = udhcpc_env(tmp_path, cli, "-O", "224")
        by_class = udhcpc_env(tmp_path, cli, "-O", "224", "-V", "west-cpe")
        assert options.decode_v4(bytes.fromhex(by_subnet["opt224"])) == LISTS
        assert options.decode_v4(bytes.fromhex(by_class["opt224"])) == [["203.0.113.77"]]


def test_default_when_no_subnet_matches(tmp_path, procs):
    params = {"v4": {"mcps": [["198.51.100.99"]], "subnets": [{"prefix": "198.51.100.0/24", "mcps": LISTS}]}}
    with link_pair("t-kh4", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea4_config(params))
        env = udhcpc_env(tmp_path, cli, "-O", "224")
        assert options.decode_v4(bytes.fromhex(env["opt224"])) == [["198.51.100.99"]]


def test_over_255_octets_is_split_on_the_wire_and_joined_by_dhclient(tmp_path, procs):
    big = [[f"198.18.{i // 250}.{i % 250 + 1}" for i in range(63)], ["203.0.113.7", "203.0.113.8", "203.0.113.9"]]
    data = options.encode_v4(big)
    assert len(data) > 255
    with link_pair("t-kh5", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea4_config({"v4": {"mcps": big}}))
        # The raw reply: two options 224 in a row, their data joined in order is the whole.
        cap = procs.start("tcpdump", "tcpdump", "-i", "b0", "-n", "-c", "2", "-w", str(tmp_path / "dhcp.pcap"),
                          "udp port 68", ns=cli)
        time.sleep(1)
        conf = tmp_path / "dhclient.conf"
        conf.write_text("option mptcp-mcp code 224 = array of unsigned integer 8;\nalso request mptcp-mcp;\n")
        script = tmp_path / "script"
        dump = tmp_path / "mcp.txt"
        script.write_text(f'#!/bin/sh\ncase "$reason" in BOUND|REBOOT) echo "$new_mptcp_mcp" > {dump} ;; esac\n')
        script.chmod(0o755)
        sh("dhclient", "-4", "-1", "-sf", str(script), "-cf", str(conf), "-pf", str(tmp_path / "pid"),
           "-lf", str(tmp_path / "leases"), "b0", ns=cli, timeout=60)
        sh("dhclient", "-4", "-x", "-sf", str(script), "-cf", str(conf), "-pf", str(tmp_path / "pid"),
           "-lf", str(tmp_path / "leases"), "b0", ns=cli, check=False, timeout=30)
        joined = option_bytes(dump.read_text())
        assert options.decode_v4(joined) == big
        procs.stop(cap)
        parts = option_parts(tmp_path / "dhcp.pcap", 224)
        assert len(parts) == 2 and all(len(p) <= 255 for p in parts) and b"".join(parts) == data


def option_parts(pcap, code) -> list[bytes]:
    """The data of every option `code` in the first DHCP reply of a pcap file."""
    raw = pcap.read_bytes()
    off = 24  # global header
    while off + 16 <= len(raw):
        incl = struct.unpack_from("<I", raw, off + 8)[0]
        frame = raw[off + 16: off + 16 + incl]
        off += 16 + incl
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        bootp = ip[ihl + 8:]
        if len(bootp) < 240 or bootp[0] != 2:
            continue
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
    raise AssertionError("no DHCP reply captured")


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


def v6_exchange(ns: str, oro: list[int]) -> bytes:
    """Send a Solicit from b0's link-local address to All_DHCP_Relay_Agents_and_Servers; the Advertise."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,b'b0')\n"
        "s.bind(('::',546)); s.settimeout(5)\n"
        "idx=socket.if_nametoindex('b0')\n"
        "s.sendto(bytes.fromhex(sys.argv[1]),('ff02::1:2',547,0,idx))\n"
        "print(s.recvfrom(4096)[0].hex())\n"
    )
    proc = sh(str(VENV_BIN / "python"), "-c", code, solicit(oro).hex(), ns=ns, timeout=30)
    return bytes.fromhex(proc.stdout.strip())


def test_dhcpv6_one_instance_per_mcp_only_when_asked(tmp_path, procs):
    mcps6 = [["2001:db8:0:200::1"], ["::ffff:203.0.113.2", "2001:db8:0:200::2"]]
    cfg = {"Dhcp6": {
        "interfaces-config": {"interfaces": ["a0"]},
        "preferred-lifetime": 300, "valid-lifetime": 600,
        "server-id": {"type": "LLT", "persist": False},
        "lease-database": {"type": "memfile", "persist": True, "name": str(tmp_path / "leases6.csv")},
        "hooks-libraries": [{"library": str(HOOK), "parameters": {"v6": {
            "subnets": [{"prefix": "2001:db8:0:1::/64", "mcps": mcps6}]}}}],
        "subnet6": [{"id": 1, "subnet": "2001:db8:0:1::/64", "interface": "a0",
                     "pools": [{"pool": "2001:db8:0:1::100 - 2001:db8:0:1::1ff"}]}],
        "loggers": [{"name": "kea-dhcp6", "output_options": [{"output": "stdout"}], "severity": "DEBUG", "debuglevel": 15}],
    }}
    path = tmp_path / "kea6.json"
    path.write_text(json.dumps(cfg))
    with link_pair("t-kh6", ["2001:db8:0:1::1/64"], []) as (srv, cli):
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
        assert v6_instances(v6_exchange(cli, [23, 65000]), 65000) == mcps6
        assert v6_instances(v6_exchange(cli, [23]), 65000) == []


# ---------------------------------------------------------------- refused parameters

BAD = [
    ({"v4": {"mcps": [["192.0.2.1"], ["224.0.0.5"]]}}, "v4.mcps[1][0]: 224.0.0.5 is multicast, loopback or unspecified"),
    ({"v4": {"mcps": [[]]}}, "v4.mcps[0]: an MCP needs at least one address"),
    ({"v4-option-code": 300, "v4": {"mcps": [["192.0.2.1"]]}}, "v4-option-code: must be an integer from 1 to 254 (got 300)"),
    ({"v4": {"mcps": [["192.0.2.1"]]}, "colour": "blue"}, 'unknown parameter "colour"'),
    ({"v4": {"classes": [{"name": "WEST", "mcps": [["no-such-host.invalid"]]}]}},
     "v4.classes[0] (WEST).mcps[0][0]: no-such-host.invalid does not resolve"),
    ({"v4": {"subnets": [{"prefix": "192.0.2.0/33", "mcps": [["192.0.2.1"]]}]}}, "v4.subnets[0].prefix: 192.0.2.0/33 is not an IPv4 prefix"),
]


@pytest.mark.parametrize(("params", "message"), BAD)
def test_bad_parameters_are_refused_naming_the_entry(tmp_path, params, message):
    path = tmp_path / "kea4.json"
    cfg = kea4_config(params)
    cfg["Dhcp4"]["lease-database"] = {"type": "memfile", "persist": False}
    cfg["Dhcp4"]["loggers"] = [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "INFO"}]
    path.write_text(json.dumps(cfg))
    check = subprocess.run([str(CHECK), str(path)], capture_output=True, text=True)
    assert check.returncode == 1 and message in check.stdout, check.stdout
    env = dict(os.environ, KEA_PIDFILE_DIR=str(tmp_path), KEA_LOCKFILE_DIR=str(tmp_path))
    with link_pair("t-khb", ["192.0.2.1/24"], []) as (srv, _):
        kea = subprocess.run(["ip", "netns", "exec", srv, "kea-dhcp4", "-c", str(path)], capture_output=True,
                             text=True, env=env, timeout=30)
    assert kea.returncode != 0
    assert message in kea.stdout + kea.stderr, (kea.stdout + kea.stderr)[-3000:]


def test_check_accepts_a_good_config(tmp_path):
    path = tmp_path / "kea4.json"
    path.write_text("// a comment, as Kea allows\n" + json.dumps(kea4_config({"v4": {"mcps": LISTS}})))
    check = subprocess.run([str(CHECK), str(path)], capture_output=True, text=True)
    assert (check.returncode, check.stdout.strip()) == (0, "ok")

