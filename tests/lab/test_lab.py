"""The container lab of inventories/lab, under a test prefix so a running lab is left alone.

One lab is shared by the module (bringing it up is the slow part); each test leaves it as
it found it. Root and docker only.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import time

import pytest
import yaml

from helpers import TOP, needs_root_docker, run

pytestmark = [pytest.mark.lab, pytest.mark.root, needs_root_docker]

PREFIX = "t-lab"
LABCTL = TOP / "lab" / "labctl.py"


def labctl(*args, timeout=600):
    return run("python", LABCTL, *args, timeout=timeout)


def dexec(host, *cmd, prefix=PREFIX):
    return subprocess.run(["docker", "exec", f"{prefix}-{host}", *cmd], text=True, capture_output=True)


def addrs(host, prefix=PREFIX):
    out = dexec(host, "ip", "-j", "addr", prefix=prefix)
    assert out.returncode == 0, out.stderr
    return {i["ifname"]: sorted(f"{a['local']}/{a['prefixlen']}" for a in i["addr_info"] if a.get("scope") == "global")
            for i in json.loads(out.stdout)}


def inventory_links(host):
    data = yaml.safe_load((TOP / "inventories" / "lab" / "host_vars" / f"{host}.yml").read_text())
    return data["lab_links"]


def playbook(*args, timeout=900):
    return run("ansible-playbook", "-i", TOP / "inventories" / "lab", "-e", f"lab_prefix={PREFIX}", *args, timeout=timeout)


@pytest.fixture(scope="module")
def lab():
    labctl("down", "--prefix", PREFIX)
    proc = labctl("up", "--prefix", PREFIX, "--json")
    assert proc.returncode == 0, proc.stderr
    yield {i["instance"]: i["address"] for i in json.loads(proc.stdout)}
    labctl("down", "--prefix", PREFIX)


def test_every_host_boots_systemd(lab):
    assert set(lab) == {"isp", "cpe", "lanhost", "mphost"}
    for host in lab:
        state = dexec(host, "systemctl", "is-system-running").stdout.strip()
        failed = dexec(host, "systemctl", "--failed", "--no-legend").stdout.strip()
        assert state == "running", f"{host}: {state}; failed units: {failed}"


@pytest.mark.parametrize("host", ["isp", "cpe", "lanhost", "mphost"])
def test_links_are_cabled_as_the_inventory_says(lab, host):
    have = addrs(host)
    links = inventory_links(host)
    assert set(have) == {"lo"} | {link["device"] for link in links}
    for link in links:
        want = sorted(str(ipaddress.ip_interface(link[k])) for k in ("ipv4", "ipv6")
                      if link.get(k) not in (None, "dhcp"))
        assert have[link["device"]] == sorted(want), f"{host} {link['device']}"


def test_cpe_wans_carry_no_address_until_dhcp_gives_one(lab):
    have = addrs("cpe")
    assert have["wan1"] == [] and have["wan2"] == []
    # Yet the wire to the isp is there: an address the CPE takes (as a DHCP client would) works at once.
    assert dexec("cpe", "ip", "addr", "add", "192.0.2.100/24", "dev", "wan1").returncode == 0
    try:
        ping = dexec("cpe", "ping", "-c", "1", "-W", "2", "192.0.2.1")
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        dexec("cpe", "ip", "addr", "del", "192.0.2.100/24", "dev", "wan1")


def test_lanhost_routes_through_the_cpe(lab):
    route = dexec("lanhost", "ip", "-j", "route", "show", "default")
    assert json.loads(route.stdout)[0]["gateway"] == "198.18.1.1"
    for target in ("198.18.1.1", "2001:db8:0:100::1"):
        ping = dexec("lanhost", "ping", "-c", "1", "-W", "2", target)
        assert ping.returncode == 0, ping.stdout + ping.stderr


def test_up_again_changes_nothing(lab):
    def snapshot():
        ids = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"label=mptcp-cpe.lab={PREFIX}"],
                             capture_output=True, text=True).stdout.split()
        return sorted(ids), {h: addrs(h) for h in lab}
    before = snapshot()
    proc = labctl("up", "--prefix", PREFIX)
    assert proc.returncode == 0, proc.stderr
    assert snapshot() == before


def test_bad_lab_inventory_is_refused_before_anything_starts(tmp_path):
    inv = tmp_path / "lab"
    shutil.copytree(TOP / "inventories" / "lab", inv)
    hv = inv / "host_vars" / "lanhost.yml"
    hv.write_text(hv.read_text().replace("ipv4: 198.18.1.10/24", "ipv4: 198.18.2.10/24"))
    proc = labctl("up", "--prefix", "t-bad", "--inventory", inv)
    assert proc.returncode == 1
    assert "lanhost: lab_links[0].ipv4: must lie in the network's prefix 198.18.1.0/24 (got '198.18.2.10/24')" in proc.stderr
    left = subprocess.run(["docker", "ps", "-aq", "--filter", "label=mptcp-cpe.lab=t-bad"], capture_output=True, text=True)
    assert left.stdout.strip() == ""


def cpe_state():
    """What cpe_base touches on the CPE, to show a refused run changed none of it."""
    return dexec("cpe", "sh", "-c",
                 "cat /etc/sysctl.d/90-mptcp-cpe.conf 2>&1; ip mptcp limits show; "
                 "sysctl -n net.mptcp.enabled net.ipv4.conf.wan1.rp_filter; ls /opt/mptcp-cpe 2>&1").stdout


@pytest.mark.parametrize(
    ("wans", "expected"),
    [
        ([{"name": "dsl", "device": "wan9", "kind": "dsl"}],
         "cpe: cpe_wans: no such device on this router: wan9"),
        ([{"name": "dsl", "device": "wan1", "kind": "adsl"}],
         "cpe: cpe_wans[0] (dsl).kind: must be one of"),
        ([{"name": "dsl", "device": "wan1", "kind": "dsl", "ipv4": {"address": "192.0.2.10/24", "gateway": "198.51.100.1"}}],
         "cpe: cpe_wans[0] (dsl).ipv4.gateway: outside the WAN's prefix 192.0.2.0/24 (got '198.51.100.1')"),
    ],
)
def test_bad_wans_are_refused_and_nothing_is_applied(lab, wans, expected):
    before = cpe_state()
    proc = playbook("site.yml", "--limit", "cpe", "-e", json.dumps({"cpe_wans": wans}))
    assert proc.returncode != 0
    out = " ".join((proc.stdout + proc.stderr).split())
    assert expected in out, out[-3000:]
    assert cpe_state() == before


def test_unsupported_platform_is_named(lab):
    # Ansible reads /etc/alpine-release before Debian's files: the container now claims to be Alpine.
    assert dexec("lanhost", "sh", "-c", "echo 3.20.3 > /etc/alpine-release").returncode == 0
    try:
        proc = run("ansible", "-i", TOP / "inventories" / "lab", "-e", f"lab_prefix={PREFIX}", "lanhost",
                   "-m", "ansible.builtin.include_role", "-a", "name=cpe_base",
                   "-e", json.dumps({"cpe_wans": [{"name": "lan", "device": "lan0", "kind": "ethernet"}]}))
    finally:
        dexec("lanhost", "rm", "-f", "/etc/alpine-release")
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert "lanhost: ansible_facts.distribution: unsupported platform; mptcp-cpe runs on Debian or OpenWrt (got 'Alpine')" in out, out[-3000:]
    assert dexec("lanhost", "test", "-e", "/etc/sysctl.d/90-mptcp-cpe.conf").returncode != 0


def test_site_provisions_then_reports_no_change(lab):
    first = playbook("site.yml")
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-3000:]
    second = playbook("site.yml")
    assert second.returncode == 0, second.stdout[-5000:]
    for host in ("isp", "cpe", "mphost"):
        recap = [line for line in second.stdout.splitlines() if line.startswith(f"{host} ")]
        assert recap and "changed=0" in recap[0] and "failed=0" in recap[0], second.stdout[-3000:]
    # The CPE's WANs took their leases (DHCPv4 and DHCPv6), MCP lists and delegated
    # prefixes from the isp's Kea.
    state = wait_for_mcps()
    assert state["wans"]["wan1"]["v4"]["mcps"] == [["203.0.113.1"]]
    assert state["wans"]["wan2"]["v4"]["mcps"] == [["203.0.113.1"], ["203.0.113.2", "203.0.113.3"]]
    assert state["wans"]["wan2"]["v6"]["mcps"] == [["2001:db8:0:200::1"], ["::ffff:203.0.113.2"]]
    summary = labctl("summary", "--prefix", PREFIX)
    assert summary.returncode == 0
    assert "cpe: Debian, mptcp-cpe" in summary.stdout
    assert "MPTCP limits: subflows 2, add_addr_accepted 2" in summary.stdout
    assert re.search(r"MCPs by DHCP: wan1 v4 \[203\.0\.113\.1\] v6 \[2001:db8:0:200::1\] delegated 2001:db8:10[0-9a-f:]*/56; "
                     r"wan2 v4 \[203\.0\.113\.1\] \[203\.0\.113\.2, 203\.0\.113\.3\] "
                     r"v6 \[2001:db8:0:200::1\] \[::ffff:203\.0\.113\.2\] delegated 2001:db8:20[0-9a-f:]*/56", summary.stdout), \
        summary.stdout
    # The LAN host has an address in each WAN's /64 (SLAAC, from the CPE's announcements).
    deadline = time.monotonic() + 60
    while True:
        lan64 = [p["prefix"] for p in json.loads(dexec("cpe", "mptcp-cpe", "status", "--json").stdout)["wan"]["lan_prefixes"]
                 if p["state"] == "preferred"]
        have = [a.split("/")[0] for a in addrs("lanhost")["lan0"]]
        inside = [n for n in lan64 if any(ipaddress.ip_address(a) in ipaddress.ip_network(n) for a in have)]
        if len(inside) == 2 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(lan64) == 2 and len(inside) == 2, f"lanhost {have}; the LAN's /64s {lan64}"
    # The MPTCP host took a lease from the CPE's pool on lan0 and one from range 1 on its
    # macvlan (the CPE's Kea, mp-avail and mp-range: inventories/lab/host_vars/cpe.yml).
    deadline = time.monotonic() + 60
    while True:
        mp = addrs("mphost")
        v4 = {dev: [a for a in have if "." in a] for dev, have in mp.items()}
        if (v4.get("lan0") and v4.get("lan0.mp1")) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert [ipaddress.ip_interface(a).ip in ipaddress.ip_network("198.18.1.128/26") for a in v4.get("lan0", [])] == [True], mp
    assert [ipaddress.ip_interface(a).ip in ipaddress.ip_network("198.18.1.192/27") for a in v4.get("lan0.mp1", [])] == [True], mp


def recap(proc, host):
    line = next((line for line in proc.stdout.splitlines() if line.startswith(f"{host} ")), "")
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split(":", 1)[-1].split())} if line else {}


def test_check_mode_previews_exactly_what_would_change(lab):
    """The README's preview before a rollout: on the provisioned lab (after the test above),
    --check --diff fails nowhere and changes nothing; after an inventory edit it shows that
    edit and nothing else, and applies nothing."""
    proc = playbook("site.yml", "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    for host in ("isp", "cpe", "mphost"):
        assert recap(proc, host).get("changed") == 0 and recap(proc, host).get("failed") == 0, proc.stdout[-3000:]
    config = dexec("cpe", "cat", "/etc/mptcp-cpe/converter.json").stdout
    proc = playbook("site.yml", "--check", "--diff", "--limit", "cpe", "-e", json.dumps({"cpe_converter_connect_timeout_s": 2.5}))
    assert proc.returncode == 0, proc.stdout[-5000:]
    blocks = re.split(r"^(?:TASK|RUNNING HANDLER) \[", proc.stdout, flags=re.M)[1:]
    changed = [b.split("]", 1)[0] for b in blocks if re.search(r"^changed: \[cpe\]", b, re.M)]
    # The converter's tasks, and the reload its config notifies (the handler of the daemons'
    # shared service tasks, in mptcp_cpe_common; systemd's of the topic's two, this CPE being Debian).
    assert changed and all(t.startswith("cpe_converter : ") or t == "mptcp_cpe_common : Reload the mptcp-cpe daemon (systemd)"
                           for t in changed), changed
    assert any(t.startswith("cpe_converter : ") for t in changed), changed
    assert '+    "connect_timeout_s": 2.5,' in proc.stdout, proc.stdout[-3000:]
    assert dexec("cpe", "cat", "/etc/mptcp-cpe/converter.json").stdout == config


def wait_for_mcps(timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = dexec("cpe", "cat", "/run/mptcp-cpe/mcp.json")
        wans = json.loads(out.stdout)["wans"] if out.returncode == 0 else {}
        if set(wans) == {"wan1", "wan2"} and all({"v4", "v6"} <= set(w) and w["v6"].get("prefixes") for w in wans.values()):
            return json.loads(out.stdout)
        time.sleep(0.5)
    raise AssertionError(f"mcp.json never showed both WANs with both leases and a prefix: {dexec('cpe', 'cat', '/run/mptcp-cpe/mcp.json').stdout}")


def host_view():
    """The machine's own interfaces, addresses and routes: the lab must add none of them."""
    def ip(*args):
        return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True).stdout or "[]")
    links = sorted(i["ifname"] for i in ip("link"))
    addrs_ = sorted(f"{i['ifname']} {a['local']}/{a['prefixlen']}" for i in ip("addr") for a in i["addr_info"])
    routes = sorted(json.dumps(r, sort_keys=True) for r in ip("route", "show", "table", "all"))
    return links, addrs_, routes


def test_the_machine_joins_no_lab_network_and_down_leaves_nothing():
    # The machine may itself sit in a documentation range (its uplink can be 192.0.2.0/24):
    # the lab's copies of those networks live in switch namespaces and never touch it.
    prefix = "t-down"
    before = host_view()
    up = labctl("up", "--prefix", prefix, "--hosts", "lanhost,isp")
    assert up.returncode == 0, up.stderr
    assert dexec("isp", "ping", "-c", "1", "-W", "2", "192.0.2.1", prefix=prefix).returncode == 0
    assert host_view() == before, "bringing the lab up changed the machine's own links, addresses or routes"
    assert labctl("down", "--prefix", prefix).returncode == 0
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=mptcp-cpe.lab={prefix}"], capture_output=True, text=True)
    assert left.stdout.strip() == ""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{prefix}-" not in netns
    assert host_view() == before
