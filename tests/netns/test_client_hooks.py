"""The CPE side of the MCP option: the hooks of hooks/dhcp-client and mcp.json following
the lease. busybox udhcpc and ISC dhclient run them against a real kea-dhcp4 (root, network
namespaces); the odhcp6c hook is driven as OpenWrt's dhcpv6.script sources it (no root:
odhcp6c itself is not packaged for Debian).

Kea sends the option here from plain option-data (only to clients that ask for it), so
these tests need nothing of the Kea hook; tests/netns/test_kea_hook.py covers that.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
from netlab import link_pair, needs_root, procs, sh, start_kea4, wait_for  # noqa: F401 - procs is a fixture

from helpers import TOP, VENV_BIN

# The tests with real clients and Kea; the odhcp6c ones at the end need neither.
REAL_CLIENTS = (pytest.mark.root, needs_root,
                pytest.mark.skipif(not shutil.which("kea-dhcp4"), reason="kea-dhcp4 is not installed"))


def real_clients(test):
    for mark in REAL_CLIENTS:
        test = mark(test)
    return test


CODE = 224
METRIC = 101  # b0's default route metric (cpe_dhcp_client_route_metric_base 100, first WAN)
# Two MCPs: [203.0.113.1] and [203.0.113.2, 203.0.113.3] (list-len 4, then list-len 8).
MCP_HEX = "04cb007101" + "08cb007102cb007103"
MCP_LISTS = [["203.0.113.1"], ["203.0.113.2", "203.0.113.3"]]
TEMPLATES = TOP / "hooks" / "dhcp-client"


def kea_config(option_hex: str) -> dict:
    return {"Dhcp4": {
        "interfaces-config": {"interfaces": ["a0"]},
        "valid-lifetime": 600,
        "option-def": [{"name": "mptcp-mcp", "code": CODE, "type": "binary", "space": "dhcp4"}],
        # Not always-send: Kea answers with it only when the client's PRL asks for it.
        "option-data": [{"name": "mptcp-mcp", "code": CODE, "csv-format": False, "data": option_hex}],
        "subnet4": [{"id": 1, "subnet": "192.0.2.0/24", "interface": "a0",
                     "pools": [{"pool": "192.0.2.100 - 192.0.2.110"}],
                     "option-data": [{"name": "routers", "data": "192.0.2.1"}]}],
    }}


def render(name: str, dest: Path, **values) -> Path:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    dest.write_text(env.from_string((TEMPLATES / name).read_text()).render(**values))
    dest.chmod(0o755)
    return dest


def hook_command(tmp_path: Path) -> Path:
    """mptcp-cpe as the hooks call it, with the state file kept in tmp_path."""
    state = tmp_path / "mcp.json"
    wrapper = tmp_path / "mptcp-cpe"
    wrapper.write_text(f'#!/bin/sh\nsub=$1; shift\nexec {VENV_BIN}/mptcp-cpe "$sub" --state-file {state} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def read_state(tmp_path: Path) -> dict:
    path = tmp_path / "mcp.json"
    return json.loads(path.read_text()) if path.exists() else {}


# The system part of a client script: address and default route as the distributions'
# scripts set them (udhcpc's at metric 0, dhclient's at $IF_METRIC), never the host's
# /etc/resolv.conf, which those scripts rewrite and which these namespaces share.
UDHCPC_SYSTEM = """#!/bin/sh
case "$1" in
bound|renew)
    ip addr replace "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip -4 route add default via "${router%% *}" dev "$interface"
    ;;
deconfig) ip addr flush dev "$interface" ;;
esac
"""
DHCLIENT_SCRIPT = """#!/bin/sh
. {enter_hook}
case "$reason" in
BOUND|REBOOT)
    ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"
    [ -n "$new_routers" ] && ip -4 route add default via "${{new_routers%% *}}" dev "$interface" ${{IF_METRIC:+metric $IF_METRIC}}
    ;;
RENEW|REBIND) ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
EXPIRE|RELEASE|STOP|FAIL) ip addr flush dev "$interface" ;;
esac
. {hook}
"""


def udhcpc_setup(tmp_path: Path) -> Path:
    system = tmp_path / "system.script"
    system.write_text(UDHCPC_SYSTEM)
    system.chmod(0o755)
    hook = render("udhcpc-hook.j2", tmp_path / "udhcpc-hook", wan_devices=["b0"], v4_option_code=CODE,
                  hook_timeout=10, mptcp_cpe_bin=hook_command(tmp_path))
    return render("udhcpc.script.j2", tmp_path / "udhcpc.script", udhcpc_system_script=system, udhcpc_hook_path=hook,
                  udhcpc_route_metrics={"b0": METRIC, "b1": METRIC + 1})


def dhclient_setup(tmp_path: Path, request: bool = True) -> tuple[Path, Path]:
    hook = render("dhclient-exit-hook.j2", tmp_path / "exit-hook", wan_devices=["b0"], mcp_option_name="mptcp-mcp",
                  hook_timeout=10, mptcp_cpe_bin=hook_command(tmp_path))
    enter_hook = render("dhclient-enter-hook.j2", tmp_path / "enter-hook", wan_route_metrics={"b0": METRIC, "b1": METRIC + 1})
    script = tmp_path / "dhclient-script"
    script.write_text(DHCLIENT_SCRIPT.format(hook=hook, enter_hook=enter_hook))
    script.chmod(0o755)
    conf = tmp_path / "dhclient.conf"
    if request:
        render("dhclient.conf.j2", conf, mcp_option_name="mptcp-mcp", v4_option_code=CODE)
    else:
        conf.write_text("")
    return script, conf


def dhclient(tmp_path: Path, script: Path, conf: Path, *flags: str) -> list[str]:
    return ["dhclient", "-4", *flags, "-sf", str(script), "-cf", str(conf), "-pf", str(tmp_path / "dhclient.pid"),
            "-lf", str(tmp_path / "dhclient.leases"), "b0"]


def b0_default_routes(ns: str) -> list[str]:
    return sh("ip", "-4", "route", "show", "exact", "0.0.0.0/0", "dev", "b0", ns=ns).stdout.split("\n")[:-1]


def b0_address(ns: str) -> str | None:
    for info in json.loads(sh("ip", "-j", "-4", "addr", "show", "b0", ns=ns).stdout):
        for a in info["addr_info"]:
            return a["local"]
    return None


@real_clients
def test_udhcpc_bound_then_release(tmp_path, procs):
    script = udhcpc_setup(tmp_path)
    with link_pair("t-chu", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea_config(MCP_HEX))
        client = procs.start("udhcpc", "udhcpc", "-f", "-R", "-i", "b0", "-O", str(CODE), "-s", str(script),
                             "-t", "10", "-T", "1", ns=cli)
        state = wait_for("mcp.json to show b0's MCPs", lambda: read_state(tmp_path).get("wans"), timeout=30)
        assert state["b0"]["v4"]["mcps"] == MCP_LISTS
        assert state["b0"]["v4"]["client"] == "udhcpc" and state["b0"]["v4"]["event"] == "bound"
        assert b0_address(cli).startswith("192.0.2.1")
        # The system script's metric-0 default route was replaced by the WAN's own metric.
        assert [r.split() for r in b0_default_routes(cli)] == [["default", "via", "192.0.2.1", "metric", str(METRIC)]]
        # SIGTERM with -R: udhcpc releases the lease and runs the script with deconfig.
        procs.stop(client)
        assert read_state(tmp_path) == {"version": 1, "wans": {}}
        assert b0_address(cli) is None
        assert "DHCPRELEASE" in procs.log("kea4") or "DHCP4_RELEASE" in procs.log("kea4")


@real_clients
def test_udhcpc_without_the_request_gets_no_mcps(tmp_path, procs):
    script = udhcpc_setup(tmp_path)
    with link_pair("t-chn", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea_config(MCP_HEX))
        proc = sh("udhcpc", "-f", "-q", "-i", "b0", "-s", str(script), "-t", "10", "-T", "1", ns=cli, timeout=60)
        assert b0_address(cli), proc.stdout + proc.stderr
        assert read_state(tmp_path).get("wans", {}) == {}


@real_clients
def test_udhcpc_malformed_option_is_ignored_and_the_lease_still_works(tmp_path, procs):
    script = udhcpc_setup(tmp_path)
    with link_pair("t-chm", ["192.0.2.1/24"], []) as (srv, cli):
        # list-len 3: not a multiple of 4.
        start_kea4(procs, tmp_path, srv, kea_config("03cb007101"))
        proc = sh("udhcpc", "-f", "-q", "-i", "b0", "-O", str(CODE), "-s", str(script), "-t", "10", "-T", "1",
                  ns=cli, timeout=60)
        assert proc.returncode == 0
        assert b0_address(cli), proc.stdout + proc.stderr
        assert read_state(tmp_path).get("wans", {}) == {}
        assert "MCP option ignored" in proc.stderr and "octet 0" in proc.stderr


def other_wan(ns: str) -> None:
    """A first WAN already up in the client's namespace, with its default route at metric 0."""
    sh("ip", "link", "add", "x0", "type", "veth", "peer", "name", "x1", ns=ns)
    for dev in ("x0", "x1"):
        sh("ip", "link", "set", dev, "up", ns=ns)
    sh("ip", "addr", "add", "198.51.100.100/24", "dev", "x0", ns=ns)
    sh("ip", "-4", "route", "add", "default", "via", "198.51.100.1", "dev", "x0", ns=ns)


@real_clients
def test_udhcpc_second_wan_gets_its_default_route(tmp_path, procs):
    # The system script's metric-0 route is refused (the other WAN has that metric); the
    # WAN's own metric gets it in, and the other WAN's route stays as it was.
    script = udhcpc_setup(tmp_path)
    with link_pair("t-chw", ["192.0.2.1/24"], []) as (srv, cli):
        other_wan(cli)
        start_kea4(procs, tmp_path, srv, kea_config(MCP_HEX))
        proc = sh("udhcpc", "-f", "-q", "-i", "b0", "-O", str(CODE), "-s", str(script), "-t", "10", "-T", "1",
                  ns=cli, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert [r.split() for r in b0_default_routes(cli)] == [["default", "via", "192.0.2.1", "metric", str(METRIC)]]
        others = sh("ip", "-4", "route", "show", "exact", "0.0.0.0/0", "dev", "x0", ns=cli).stdout.split()
        assert others == ["default", "via", "198.51.100.1"]


@real_clients
def test_dhclient_second_wan_gets_its_default_route_and_a_given_metric_wins(tmp_path, procs):
    script, conf = dhclient_setup(tmp_path)
    with link_pair("t-chy", ["192.0.2.1/24"], []) as (srv, cli):
        other_wan(cli)
        start_kea4(procs, tmp_path, srv, kea_config(MCP_HEX))
        # ifupdown hands dhclient the interface's metric as -e IF_METRIC=N: the hook keeps it.
        proc = sh(*dhclient(tmp_path, script, conf, "-1", "-e", "IF_METRIC=55"), ns=cli, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert [r.split() for r in b0_default_routes(cli)] == [["default", "via", "192.0.2.1", "metric", "55"]]
        assert sh("ip", "-4", "route", "show", "exact", "0.0.0.0/0", "dev", "x0", ns=cli).stdout.split() == [
            "default", "via", "198.51.100.1"]
        sh(*dhclient(tmp_path, script, conf, "-x"), ns=cli, check=False, timeout=30)


@real_clients
def test_dhclient_bound_then_release(tmp_path, procs):
    script, conf = dhclient_setup(tmp_path)
    with link_pair("t-chd", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea_config(MCP_HEX))
        procs.start("dhclient", *dhclient(tmp_path, script, conf, "-d"), ns=cli)
        state = wait_for("mcp.json to show b0's MCPs", lambda: read_state(tmp_path).get("wans"), timeout=30)
        assert state["b0"]["v4"]["mcps"] == MCP_LISTS
        assert state["b0"]["v4"]["client"] == "dhclient" and state["b0"]["v4"]["event"] in ("BOUND", "REBOOT")
        assert [r.split() for r in b0_default_routes(cli)] == [["default", "via", "192.0.2.1", "metric", str(METRIC)]]
        # dhclient -r releases the lease it finds in the lease file: the running client writes
        # it only after its BOUND script (which wrote mcp.json) returns. Without it, -r stops
        # the client and sends nothing, and the script never sees RELEASE (CI saw this once).
        leases = tmp_path / "dhclient.leases"
        wait_for("dhclient to record its lease", lambda: leases.exists() and "192.0.2." in leases.read_text(), timeout=10)
        # dhclient -r: release the lease, stop the running client; the script runs with RELEASE.
        release = sh(*dhclient(tmp_path, script, conf, "-r"), ns=cli, timeout=30)
        assert release.returncode == 0, release.stderr
        # The release runs the script, but the client it stops may still be finishing its own
        # last write: wait (bounded) for the withdrawn state rather than race it.
        wait_for("the release to withdraw b0's MCPs", lambda: read_state(tmp_path) == {"version": 1, "wans": {}}, timeout=10)
        wait_for("the release to remove b0's address", lambda: b0_address(cli) is None, timeout=10)


@real_clients
def test_dhclient_without_the_request_gets_no_mcps(tmp_path, procs):
    script, conf = dhclient_setup(tmp_path, request=False)
    with link_pair("t-chx", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea_config(MCP_HEX))
        proc = sh(*dhclient(tmp_path, script, conf, "-1"), ns=cli, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert b0_address(cli)
        assert read_state(tmp_path).get("wans", {}) == {}
        sh(*dhclient(tmp_path, script, conf, "-x"), ns=cli, check=False, timeout=30)


# ---------------------------------------------------------------------------
# OpenWrt: netifd runs udhcpc with `-O <code>` for each word of the interface's reqopts
# and its dhcp.script sources each file of /etc/udhcpc.user.d/ with udhcpc's arguments.
# The network config is what the role's UCI want makes of OpenWrt's default one.
# ---------------------------------------------------------------------------

# The end of OpenWrt's /lib/netifd/dhcp.script, after netifd has been told of the lease
# (here: the address set as netifd would), with the user.d directory under tmp_path.
OPENWRT_DHCP_SCRIPT = """#!/bin/sh
[ -z "$1" ] && echo "Error: should be run by udhcpc" && exit 1
case "$1" in
bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
deconfig) ip addr flush dev "$interface" ;;
esac
for f in {user_d}/*; do
    [ -f "$f" ] && (. "$f" "$@")
done
exit 0
"""


def openwrt_reqopts(tmp_path: Path) -> list[str]:
    """udhcpc's -O flags as netifd's dhcp.sh derives them from the WAN's reqopts after the
    role's UCI want (the operator's 121 kept, 224 added)."""
    from mptcp_cpe import uci
    from mptcp_cpe.openwrt import network_want
    current = uci.parse_show("network", "network.wan=interface\nnetwork.wan.device='b0'\n"
                                        "network.wan.proto='dhcp'\nnetwork.wan.reqopts='121'\n")
    want = network_want("cpe", [{"name": "wan", "device": "b0", "kind": "fibre", "ipv4": "dhcp"}], CODE, 65000, 100)
    after = uci.apply("network", current, uci.plan("network", current, want))
    assert after["wan"]["metric"] == str(METRIC)
    return [flag for opt in after["wan"]["reqopts"].split() for flag in ("-O", opt)]


@real_clients
def test_udhcpc_as_netifd_runs_it_records_then_withdraws(tmp_path, procs):
    user_d = tmp_path / "udhcpc.user.d"
    user_d.mkdir()
    render("udhcpc-hook.j2", user_d / "50-mptcp-cpe", wan_devices=["b0"], v4_option_code=CODE, hook_timeout=10,
           mptcp_cpe_bin=hook_command(tmp_path)).chmod(0o644)
    script = tmp_path / "dhcp.script"
    script.write_text(OPENWRT_DHCP_SCRIPT.format(user_d=user_d))
    script.chmod(0o755)
    flags = openwrt_reqopts(tmp_path)
    assert flags == ["-O", "121", "-O", str(CODE)]
    with link_pair("t-cho", ["192.0.2.1/24"], []) as (srv, cli):
        start_kea4(procs, tmp_path, srv, kea_config(MCP_HEX))
        client = procs.start("udhcpc", "udhcpc", "-f", "-R", "-i", "b0", *flags, "-s", str(script),
                             "-t", "10", "-T", "1", ns=cli)
        state = wait_for("mcp.json to show b0's MCPs", lambda: read_state(tmp_path).get("wans"), timeout=30)
        assert state["b0"]["v4"]["mcps"] == MCP_LISTS and state["b0"]["v4"]["event"] == "bound"
        procs.stop(client)
        assert read_state(tmp_path) == {"version": 1, "wans": {}}


# ---------------------------------------------------------------------------
# odhcp6c: the hook as OpenWrt's dhcpv6.script sources it (`. hook "$@"`, $1 the device,
# $2 the state, OPTION_<code> one option instance as hex)
# ---------------------------------------------------------------------------

INSTANCE = "20010db8000002000000000000000001"  # 2001:db8:0:200::1


def run_odhcp6c_hook(tmp_path, device, state, option=None):
    hook = render("odhcp6c-hook.j2", tmp_path / "odhcp6c-hook", wan_devices=["wan1", "wan2"], v6_option_code=65000,
                  hook_timeout=10, mptcp_cpe_bin=hook_command(tmp_path))
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    if option is not None:
        env["OPTION_65000"] = option
    # What OpenWrt's dhcpv6.script does for each file of /etc/odhcp6c.user.d/.
    proc = subprocess.run(["sh", "-c", f'. {hook} "$@"', "dhcpv6.script", device, state],
                          env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    state_file = tmp_path / "mcp.json"
    return json.loads(state_file.read_text()) if state_file.exists() else None


def test_odhcp6c_bound_records_then_unbound_withdraws(tmp_path):
    state = run_odhcp6c_hook(tmp_path, "wan1", "bound", INSTANCE)
    assert state["wans"]["wan1"]["v6"] == {**state["wans"]["wan1"]["v6"], "mcps": [["2001:db8:0:200::1"]],
                                           "client": "odhcp6c", "event": "bound"}
    assert run_odhcp6c_hook(tmp_path, "wan1", "unbound") == {"version": 1, "wans": {}}


def test_odhcp6c_a_device_that_is_no_wan_is_left_alone(tmp_path):
    assert run_odhcp6c_hook(tmp_path, "br-lan", "bound", INSTANCE) is None


def test_odhcp6c_malformed_instance_keeps_what_the_wan_had(tmp_path):
    run_odhcp6c_hook(tmp_path, "wan2", "bound", INSTANCE)
    assert run_odhcp6c_hook(tmp_path, "wan2", "updated", "20010db8")["wans"]["wan2"]["v6"]["mcps"] == [["2001:db8:0:200::1"]]
