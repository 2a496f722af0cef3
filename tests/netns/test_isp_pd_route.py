"""The operator's route to each prefix it delegates (role isp_dhcp): the role's isp-pd-route
script, run by Kea's run_script hook, routes a CPE's delegated prefix (IA_PD) via the CPE's
link-local address and removes the route when the lease ends. Root, network namespaces.

First the script alone, with the environment Kea 2.2 gives it (no PATH among it); then in a
real kea-dhcp6 (configured by mptcp_cpe.kea.render, as the role does) with Kea's own
libdhcp_run_script.so and dhcpcd asking for a prefix.
"""

from __future__ import annotations

import glob
import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml
from netlab import link_pair, namespaces, needs_root, procs, sh, veth, wait_for  # noqa: F401 - procs is a fixture

from helpers import TOP
from mptcp_cpe import kea

pytestmark = [pytest.mark.root, needs_root]

ROLE = TOP / "roles" / "isp_dhcp"
PROTO = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__isp_dhcp_pd_route_protocol"]
PREFIX, LENGTH = "2001:db8:1000:100::", 56
IP = shutil.which("ip") or "/usr/sbin/ip"


def route_script(tmp_path: Path) -> Path:
    """The role's template, rendered as the role renders it."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    path = tmp_path / "isp-pd-route"
    path.write_text(env.from_string((ROLE / "templates" / "isp-pd-route.j2").read_text()).render(
        ansible_managed="Managed by the test", __isp_dhcp_pd_route_protocol=PROTO))
    path.chmod(0o755)
    return path


def run(script: Path, ns: str, hook: str, env: dict) -> None:
    """The script as Kea runs it: the hook point as $1, the lease in the environment and
    nothing else (no PATH). It must never fail Kea."""
    proc = subprocess.run([IP, "netns", "exec", ns, str(script), hook], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{hook}: exit {proc.returncode}: {proc.stdout}{proc.stderr}"


def pd_routes(ns: str) -> list[dict]:
    """The routes tagged with the script's protocol: destination, next hop, device."""
    out = sh("ip", "-j", "-6", "route", "show", "proto", str(PROTO), ns=ns).stdout
    return [{"dst": r["dst"], "gateway": r.get("gateway"), "dev": r["dev"]} for r in json.loads(out or "[]")]


def link_local(ns: str, dev: str) -> str:
    for info in json.loads(sh("ip", "-j", "-6", "addr", "show", "dev", dev, "scope", "link", ns=ns).stdout):
        for a in info["addr_info"]:
            if not a.get("tentative"):
                return a["local"]
    return ""


def ready_link_locals(pairs) -> dict:
    """Link-local addresses without duplicate address detection, usable at once."""
    for ns, dev in pairs:
        sh("sysctl", "-qw", f"net.ipv6.conf.{dev}.accept_dad=0", ns=ns)
        sh("ip", "link", "set", dev, "down", ns=ns)
        sh("ip", "link", "set", dev, "up", ns=ns)
    return {dev: wait_for(f"a link-local address on {dev}", lambda ns=ns, dev=dev: link_local(ns, dev)) for ns, dev in pairs}


def query(remote: str, iface: str, kind: str) -> dict:
    return {"QUERY6_TYPE": kind, "QUERY6_TXID": "6199621", "QUERY6_LOCAL_ADDR": "ff02::1:2", "QUERY6_LOCAL_PORT": "0",
            "QUERY6_REMOTE_ADDR": remote, "QUERY6_REMOTE_PORT": "546", "QUERY6_IFACE_INDEX": "2",
            "QUERY6_IFACE_NAME": iface, "QUERY6_PROTO": "UDP", "QUERY6_CLIENT_ID": "00:01:00:01:32:a7:7f:f6:a6:a7:74:54:ef:9c"}


def lease(prefix: str, kind: str, address: str, length: int, iaid: int) -> dict:
    return {f"{prefix}_ADDRESS": address, f"{prefix}_PREFIX_LEN": str(length), f"{prefix}_TYPE": kind,
            f"{prefix}_IAID": str(iaid), f"{prefix}_SUBNET_ID": "1", f"{prefix}_STATE": "default",
            f"{prefix}_VALID_LIFETIME": "600", f"{prefix}_PREFERRED_LIFETIME": "300",
            f"{prefix}_DUID": "00:01:00:01:32:a7:7f:f6:a6:a7:74:54:ef:9c"}


def committed(remote: str, iface: str) -> dict:
    """leases6_committed after a REQUEST for an address and a prefix (what Kea 2.2 gave, as seen)."""
    return {**query(remote, iface, "REQUEST"), "LEASES6_SIZE": "2", "DELETED_LEASES6_SIZE": "0",
            **lease("LEASES6_AT0", "IA_NA", "2001:db8:0:1::100", 128, 1),
            **lease("LEASES6_AT1", "IA_PD", PREFIX, LENGTH, 2)}


def test_committed_then_released(tmp_path):
    script = route_script(tmp_path)
    with link_pair("t-pd-1", ["2001:db8:0:1::1/64"], []) as (srv, cli):
        ll = ready_link_locals([(cli, "b0")])["b0"]
        want = [{"dst": f"{PREFIX}/{LENGTH}", "gateway": ll, "dev": "a0"}]
        # Someone else's route, to be left alone.
        sh("ip", "-6", "route", "add", "2001:db8:9::/48", "via", ll, "dev", "a0", "proto", "static", ns=srv)

        run(script, srv, "leases6_committed", committed(ll, "a0"))
        assert pd_routes(srv) == want  # the prefix only: IA_NA gets no route
        run(script, srv, "lease6_renew", {**query(ll, "a0", "RENEW"), **lease("LEASE6", "IA_PD", PREFIX, LENGTH, 2)})
        assert pd_routes(srv) == want  # replaced, not doubled

        run(script, srv, "lease6_release", {**query(ll, "a0", "RELEASE"), **lease("LEASE6", "IA_PD", PREFIX, LENGTH, 2)})
        assert pd_routes(srv) == []
        assert "2001:db8:9::/48" in sh("ip", "-6", "route", "show", ns=srv).stdout
        # The leases6_committed Kea sends after a release lists the lease as deleted: nothing left to do.
        run(script, srv, "leases6_committed", {**query(ll, "a0", "RELEASE"), "LEASES6_SIZE": "0", "DELETED_LEASES6_SIZE": "1",
                                               **lease("DELETED_LEASES6_AT0", "IA_PD", PREFIX, LENGTH, 2)})
        assert pd_routes(srv) == []


def test_expiry_removes_and_nothing_fails_kea(tmp_path):
    script = route_script(tmp_path)
    with link_pair("t-pd-2", ["2001:db8:0:1::1/64"], []) as (srv, cli):
        ll = ready_link_locals([(cli, "b0")])["b0"]
        run(script, srv, "leases6_committed", committed(ll, "a0"))
        assert len(pd_routes(srv)) == 1
        # lease6_expire carries the lease only, no query.
        run(script, srv, "lease6_expire", {**lease("LEASE6", "IA_PD", PREFIX, LENGTH, 2), "REMOVE_LEASE": "false"})
        assert pd_routes(srv) == []
        # Each of these is logged and exits 0, and changes nothing.
        run(script, srv, "lease6_recover", lease("LEASE6", "IA_PD", PREFIX, LENGTH, 2))  # no client address
        run(script, srv, "lease6_renew", {**query(ll, "nosuch0", "RENEW"), **lease("LEASE6", "IA_PD", PREFIX, LENGTH, 2)})
        run(script, srv, "lease6_renew", {**query(ll, "a0", "RENEW"), **lease("LEASE6", "IA_NA", "2001:db8:0:1::100", 128, 1)})
        run(script, srv, "lease6_release", {**query(ll, "a0", "RELEASE"), **lease("LEASE6", "IA_PD", PREFIX, LENGTH, 2)})
        run(script, srv, "lease6_renew", {**query(ll, "a0", "RENEW"), **lease("LEASE6", "IA_PD", PREFIX, "", 2)})
        run(script, srv, "leases6_committed", {**query(ll, "a0", "REQUEST"), "LEASES6_SIZE": "x"})
        run(script, srv, "lease4_renew", {})
        assert pd_routes(srv) == []


# ---------------------------------------------------------------- real Kea and dhcpcd

RUN_SCRIPT = next(iter(sorted(glob.glob("/usr/lib/*/kea/hooks/libdhcp_run_script.so"))), None)
DHCPCD_LEASE = Path("/var/lib/dhcpcd/pdc0.lease6")  # dhcpcd keeps it there whatever the config says


@pytest.mark.skipif(not (shutil.which("kea-dhcp6") and shutil.which("dhcpcd") and RUN_SCRIPT),
                    reason="kea-dhcp6, dhcpcd or Kea's libdhcp_run_script.so is not installed")
def test_kea_routes_the_prefix_dhcpcd_gets(tmp_path, procs):
    script = route_script(tmp_path)
    subnet = {"id": 1, "subnet": "2001:db8:0:1::/64", "interface": "pds0", "pool": "2001:db8:0:1::100 - 2001:db8:0:1::1ff",
              "pd_pool": {"prefix": "2001:db8:1000::/40", "delegated_length": 56}}
    cfg = kea.render("isp", 6, subnets_raw=[subnet], classes_raw=[], mcps_raw=[], option_code_raw=65000,
                     hook_library="unused", lease_file=str(tmp_path / "leases6.csv"), socket=str(tmp_path / "kea6.sock"),
                     lease_lifetime=600, run_script_library=RUN_SCRIPT, pd_route_script=str(script))
    dhcp6 = cfg["Dhcp6"]
    # Only Kea's run_script here: the MCP hook has tests of its own (test_kea_hook.py).
    assert dhcp6["hooks-libraries"].pop(0)["library"] == "unused"
    dhcp6["server-id"] = {"type": "LLT", "persist": False}
    dhcp6["loggers"] = [{"name": "kea-dhcp6", "output_options": [{"output": "stdout"}], "severity": "DEBUG", "debuglevel": 15}]
    (tmp_path / "kea6.json").write_text(json.dumps(cfg, indent=2))
    conf = tmp_path / "dhcpcd.conf"
    conf.write_text("noipv6rs\nipv6only\nrelease\ninterface pdc0\n  ia_na 1\n  ia_pd 2\n")
    DHCPCD_LEASE.unlink(missing_ok=True)
    try:
        with namespaces("t-pd-s", "t-pd-c", kill=True) as (srv, cli):
            veth(srv, "pds0", cli, "pdc0")
            sh("ip", "addr", "add", "2001:db8:0:1::1/64", "dev", "pds0", "nodad", ns=srv)
            ll = ready_link_locals([(srv, "pds0"), (cli, "pdc0")])["pdc0"]
            env = dict(os.environ, KEA_PIDFILE_DIR=str(tmp_path), KEA_LOCKFILE_DIR=str(tmp_path))
            kea6 = procs.start("kea6", "kea-dhcp6", "-c", str(tmp_path / "kea6.json"), ns=srv, env=env)
            procs.wait_for("kea-dhcp6 to start", lambda: "DHCP6_STARTED" in procs.log("kea6"), names=["kea6"])

            # Foreground, no system hooks; `release`: a SIGTERM makes it release its leases.
            client = procs.start("dhcpcd", "dhcpcd", "-6", "-B", "-d", "-c", "/bin/true", "-f", str(conf), "pdc0", ns=cli)
            routes = procs.wait_for("the route to the delegated prefix", lambda: pd_routes(srv), timeout=40)
            assert len(routes) == 1 and routes[0]["gateway"] == ll and routes[0]["dev"] == "pds0", routes
            delegated = ipaddress.ip_network(routes[0]["dst"])
            assert delegated.prefixlen == 56 and delegated.subnet_of(ipaddress.ip_network("2001:db8:1000::/40"))
            assert f"delegated prefix {delegated}" in procs.log("dhcpcd")

            # Only the main process: its helpers must live to send the RELEASE.
            client.terminate()
            client.wait(20)
            procs.forget(client)
            procs.wait_for("the route to go with the release", lambda: pd_routes(srv) == [], names=["kea6"], timeout=20)
            assert "DHCP6_RELEASE_PD" in procs.log("kea6")
            assert kea6.poll() is None
    finally:
        DHCPCD_LEASE.unlink(missing_ok=True)
