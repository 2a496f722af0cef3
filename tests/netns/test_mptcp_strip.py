"""A line that strips MPTCP options: wand against the real kernel, a CPE namespace with two WANs
to an "isp" namespace where the project's MCP listens.

The isp strips MPTCP options (nftables ``reset tcp option mptcp``) from what crosses wan2's
link only. wand's MPTCP test must call wan2 ``mptcp-blocked`` and withdraw its MPTCP endpoint
while wan1's stays and wan2 still carries direct traffic; once the stripping stops, wan2
passes again and gets its endpoint back. The MCP must not log the tests (they close
before any Convert message). What is checked is what the kernel holds (``ip -j``) and what
the sockets say, besides wan.json and ``mptcp-cpe status``.
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from netlab import Procs, add_addresses, namespaces, needs_root, procs, sh, veth, wait_for  # noqa: F401 - procs is a fixture

pytestmark = [pytest.mark.root, needs_root]

CPE, ISP = "strip-cpe", "strip-isp"
CLI = [sys.executable, "-m", "mptcp_cpe.cli"]
WAN1, WAN2 = "192.0.2.10", "198.51.100.10"
MCP = "203.0.113.1"
MCP_PORT, CHECK_PORT = 5124, 5999
# Health probes every 0.3 s; MPTCP tests every 2 s while passing, 1 s doubling to 4 s while
# blocked, two stripped results in a row to block.
INTERVAL, UP = 0.3, 2
MPTCP_PROBE = {"interval_s": 2, "backoff_min_s": 1, "backoff_max_s": 4, "stripped_count": 2, "timeout_s": 1}
STRIP = textwrap.dedent("""\
    table inet strip {
        chain in { type filter hook prerouting priority mangle; policy accept;
            iifname "isp2" tcp option mptcp exists reset tcp option mptcp
        }
        chain out { type filter hook output priority mangle; policy accept;
            oifname "isp2" tcp option mptcp exists reset tcp option mptcp
        }
    }
    """)

# In the isp: a listener on CHECK_PORT (MPTCP, so it takes plain TCP too) that prints, per
# connection, the peer and whether the accepted socket is MPTCP, and echoes what it gets.
LISTENER = textwrap.dedent(f"""\
    import json, socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("{MCP}", {CHECK_PORT}))
    s.listen(8)
    print("listening", flush=True)
    while True:
        c, peer = s.accept()
        print(json.dumps({{"peer": peer[0], "mptcp": c.getsockopt(socket.SOL_TCP, 43)}}), flush=True)
        c.settimeout(5)
        c.sendall(c.recv(64))
        c.close()
    """)

# In the CPE: one connection from a WAN's address and device to the listener, "ping" echoed;
# prints whether the socket is MPTCP once established (and what came back).
CLIENT = textwrap.dedent(f"""\
    import json, socket, sys
    source, device, proto = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    s.setsockopt(socket.SOL_SOCKET, 25, device.encode())
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("{MCP}", {CHECK_PORT}))
    mptcp = s.getsockopt(socket.SOL_TCP, 43)
    s.sendall(b"ping")
    print(json.dumps({{"mptcp": mptcp, "echo": s.recv(64).decode()}}))
    """)


@pytest.fixture
def lab(procs: Procs, tmp_path: Path):
    with namespaces(CPE, ISP, kill=True):
        for dev, isp_dev, isp_addr in (("wan1", "isp1", "192.0.2.1/24"), ("wan2", "isp2", "198.51.100.1/24")):
            veth(CPE, dev, ISP, isp_dev)
            add_addresses(ISP, isp_dev, [isp_addr])
        add_addresses(ISP, "lo", [f"{MCP}/32"])
        for ns in (CPE, ISP):
            sh("sysctl", "-qw", "net.mptcp.enabled=1", ns=ns)
        # The MCP, for the tests: the CPE's two WAN networks are its clients.
        mcp_cfg = tmp_path / "mcp.conf.json"
        mcp_cfg.write_text(json.dumps({"host": "isp", "listen": MCP, "port": MCP_PORT, "workers": 1, "drain_timeout_s": 1,
                                       "clients": ["192.0.2.0/24", "198.51.100.0/24"]}))
        mcp = procs.start("mcp", *CLI, "mcp", "--config", str(mcp_cfg), ns=ISP)
        procs.wait_for("the MCP to run", lambda: "worker(s) running" in procs.log("mcp"), names=["mcp"], timeout=15)
        procs.start("listener", sys.executable, "-c", LISTENER, ns=ISP)
        procs.wait_for("the check listener", lambda: "listening" in procs.log("listener"), names=["listener"], timeout=10)
        # What the DHCP hooks would have written: each WAN learned the MCP.
        (tmp_path / "mcp.json").write_text(json.dumps({"version": 1, "wans": {
            "wan1": {"v4": {"mcps": [[MCP]]}}, "wan2": {"v4": {"mcps": [[MCP]]}}}}))
        wand_cfg = tmp_path / "wand.json"
        wand_cfg.write_text(json.dumps({
            "host": "strip-cpe", "state_file": str(tmp_path / "wan.json"), "mcp_state": str(tmp_path / "mcp.json"),
            "probe": {"interval_s": INTERVAL, "up_count": UP},
            "mptcp_probe": {**MPTCP_PROBE, "port": MCP_PORT, "mcp_prefixes": ["203.0.113.0/24"]},
            "wans": [{"name": "dsl", "device": "wan1", "kind": "dsl", "ipv4": {"address": f"{WAN1}/24", "gateway": "192.0.2.1"}},
                     {"name": "lte", "device": "wan2", "kind": "lte", "ipv4": {"address": f"{WAN2}/24", "gateway": "198.51.100.1"}}],
        }))
        wand = procs.start("wand", *CLI, "wand", "--config", str(wand_cfg), ns=CPE)
        yield {"wand": wand, "mcp": mcp, "tmp": tmp_path}
        procs.close()


def wans(tmp: Path) -> dict:
    try:
        return json.loads((tmp / "wan.json").read_text()).get("wans", {})
    except (FileNotFoundError, ValueError):
        return {}


def mptcp(tmp: Path, name: str) -> str | None:
    return wans(tmp).get(name, {}).get("mptcp")


def endpoints() -> dict[str, int]:
    """The CPE's MPTCP endpoints by device."""
    out = sh("ip", "-j", "mptcp", "endpoint", "show", ns=CPE).stdout.strip()
    return {e["dev"]: e["id"] for e in (json.loads(out) if out else [])}


def default_devs() -> list[str]:
    for r in json.loads(sh("ip", "-j", "route", "show", "table", "200", ns=CPE).stdout):
        if r["dst"] == "default":
            return sorted(h["dev"] for h in r.get("nexthops", [])) or [r["dev"]]
    return []


def connect(source: str, device: str, proto: int) -> dict:
    """A connection from the CPE (``proto`` 262: MPTCP, 6: TCP) to the check listener."""
    return json.loads(sh(sys.executable, "-c", CLIENT, source, device, str(proto), ns=CPE, timeout=20).stdout)


def accepted(procs: Procs, peer: str) -> dict:
    """What the check listener said of the last connection from ``peer``."""
    lines = [json.loads(line) for line in procs.log("listener").splitlines() if line.startswith("{")]
    return [c for c in lines if c["peer"] == peer][-1]


def test_wan_that_strips_mptcp_is_blocked_keeps_direct_traffic_and_passes_again(lab, procs):
    tmp = lab["tmp"]
    procs.wait_for("both WANs to pass the MPTCP test, each with its endpoint",
                   lambda: mptcp(tmp, "dsl") == mptcp(tmp, "lte") == "passes" and set(endpoints()) == {"wan1", "wan2"},
                   names=["wand", "mcp"], timeout=15)
    assert wans(tmp)["lte"]["mptcp_mcp"] == MCP and wans(tmp)["lte"]["mptcp_next_test"]

    sh("nft", "-f", "-", ns=ISP, input=STRIP)
    # The stripping is real: over wan2 an MPTCP connection falls back on both ends; over wan1 it does not.
    assert connect(WAN2, "wan2", 262) == {"mptcp": 0, "echo": "ping"}
    assert accepted(procs, WAN2)["mptcp"] == 0
    assert connect(WAN1, "wan1", 262) == {"mptcp": 1, "echo": "ping"}
    assert accepted(procs, WAN1)["mptcp"] == 1

    cut = time.monotonic()
    # The next test comes within interval_s; then stripped_count results backoff_min_s apart.
    limit = MPTCP_PROBE["interval_s"] + MPTCP_PROBE["stripped_count"] * (MPTCP_PROBE["backoff_min_s"] + MPTCP_PROBE["timeout_s"]) + 3
    procs.wait_for("wan2 to be mptcp-blocked without its endpoint",
                   lambda: mptcp(tmp, "lte") == "blocked" and set(endpoints()) == {"wan1"},
                   names=["wand", "mcp"], timeout=limit)
    assert time.monotonic() - cut <= limit
    state = wans(tmp)
    assert state["dsl"]["mptcp"] == "passes" and state["dsl"]["endpoints"]
    assert state["lte"]["endpoints"] == [] and state["lte"]["mptcp_mcp"] == MCP
    # Direct traffic as before: wan2 healthy, in the default route, its own source leaves by it,
    # and a plain TCP connection from its address works.
    assert state["lte"]["healthy"] and state["lte"]["in_default_route"]
    assert default_devs() == ["wan1", "wan2"]
    (route,) = json.loads(sh("ip", "-j", "route", "get", MCP, "from", WAN2, ns=CPE).stdout)
    assert route["dev"] == "wan2"
    assert connect(WAN2, "wan2", 6) == {"mptcp": 0, "echo": "ping"}
    assert accepted(procs, WAN2)["mptcp"] == 0
    log = procs.log("wand")
    assert f"WAN lte ({WAN2}): MPTCP options stripped on the way to MCP {MCP}, 2 tests in a row: mptcp-blocked" in log
    status = sh(*CLI, "status", "--state-file", str(tmp / "wan.json"), "--mcp-file", str(tmp / "mcp.json"),
                "--converter-config", str(tmp / "none.json"), ns=CPE).stdout
    lte = next(line for line in status.splitlines() if line.startswith("lte "))
    assert "mptcp-blocked" in lte and "MPTCP blocked (mptcp-blocked" in status, status
    # Still blocked a few backoffs later (the tests go on, still stripped): no flapping.
    time.sleep(MPTCP_PROBE["backoff_max_s"])
    assert mptcp(tmp, "lte") == "blocked" and set(endpoints()) == {"wan1"}

    sh("nft", "delete", "table", "inet", "strip", ns=ISP)
    back = time.monotonic()
    limit = MPTCP_PROBE["backoff_max_s"] + MPTCP_PROBE["timeout_s"] + 3
    procs.wait_for("wan2 to pass again with its endpoint back",
                   lambda: mptcp(tmp, "lte") == "passes" and set(endpoints()) == {"wan1", "wan2"},
                   names=["wand", "mcp"], timeout=limit)
    assert time.monotonic() - back <= limit
    assert f"WAN lte ({WAN2}): MPTCP passes to MCP {MCP} again: its MPTCP endpoint is back" in procs.log("wand")
    # wan1 was never called stripped.
    assert not [line for line in procs.log("wand").splitlines() if "WAN dsl" in line and "stripped" in line]
    # The MCP saw every test (and the subflows the stripped path broke) and said nothing of them.
    mcp_log = procs.log("mcp")
    assert WAN1 not in mcp_log and WAN2 not in mcp_log, mcp_log
