#!/usr/bin/env python3
"""Watch one transfer through the MCP, from the MCP's own host (molecule/e2e/checks.yml).

    mcp_watch.py --mcp-port 5124 --server-port 8080 [--timeout 60] [--cut ADDR] WAN_ADDR...

Samples ``ss`` every 20 ms until, at one moment, the MCP holds an established subflow from
each WAN_ADDR (the CPE's WAN addresses) while the test server holds a connection; a
transfer of a few seconds is too short for Ansible to poll. Prints one JSON line with that
sample (or, if it never came, the one with the most WAN addresses while the server had a
connection): the peers of the MCP's subflows and of the server's connections, and the
octets the server had sent and received by then. Stops early once the server's connection
is gone again.

``--cut ADDR`` breaks that WAN's line right at that moment, in the middle of the transfer:
the isp drops everything from and to ADDR (the nftables table molecule/wan uses; verify.yml
deletes it), and a second sample, ``after_cut``, shows the server's connection still open.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time

CUT_TABLE = "mptcp_cpe_test_cut"


def _address(column: str) -> str:
    """``[::ffff:192.0.2.100]:39041`` or ``203.0.113.1:41840`` → the bare IP (IPv4-mapped unmapped)."""
    host = column.rsplit(":", 1)[0].strip("[]")
    return host.removeprefix("::ffff:")


def _sockets(port_filter: str) -> list[dict]:
    """Established TCP sockets matching ``port_filter``, with their peer and octet counters."""
    out = subprocess.run(["ss", "-tinH", "state", "established", port_filter],
                         capture_output=True, text=True, check=True).stdout
    socks: list[dict] = []
    for line in out.splitlines():
        if not line.strip():
            continue
        if line[0].isspace():  # the info line (-i) of the socket above
            if socks:
                for key in ("bytes_sent", "bytes_received", "bytes_acked"):
                    m = re.search(rf"\b{key}:(\d+)", line)
                    if m:
                        socks[-1][key] = int(m.group(1))
            continue
        cols = line.split()
        socks.append({"local": _address(cols[2]), "peer": _address(cols[3])})
    return socks


def sample(mcp_port: int, server_port: int) -> dict:
    subflows = _sockets(f"( sport = :{mcp_port} )")
    server = _sockets(f"( sport = :{server_port} )")
    return {
        "t": round(time.monotonic(), 3),
        "subflow_peers": sorted(s["peer"] for s in subflows),
        "server_peers": sorted(s["peer"] for s in server),
        "server_octets_sent": sum(s.get("bytes_sent", 0) for s in server),
        "server_octets_acked": sum(s.get("bytes_acked", 0) for s in server),
        "server_octets_received": sum(s.get("bytes_received", 0) for s in server),
    }


def cut(address: str) -> None:
    ruleset = f"""table inet {CUT_TABLE} {{
  chain input {{ type filter hook input priority filter; ip saddr {address} drop; }}
  chain forward {{ type filter hook forward priority filter; ip saddr {address} drop; ip daddr {address} drop; }}
  chain output {{ type filter hook output priority filter; ip daddr {address} drop; }}
}}
"""
    subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, check=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--mcp-port", type=int, required=True)
    p.add_argument("--server-port", type=int, required=True)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--cut", help="a WAN address whose traffic to drop once both subflows carry the transfer")
    p.add_argument("wan_addrs", nargs="+")
    a = p.parse_args()
    want = set(a.wan_addrs)
    deadline = time.monotonic() + a.timeout
    best: dict | None = None
    seen_server = False
    result: dict = {"seen": False, "started": round(time.monotonic(), 3)}
    while time.monotonic() < deadline:
        s = sample(a.mcp_port, a.server_port)
        if s["server_peers"]:
            seen_server = True
            if best is None or len(want & set(s["subflow_peers"])) > len(want & set(best["subflow_peers"])):
                best = s
            if want <= set(s["subflow_peers"]):
                result.update(seen=True, sample=s)
                break
        elif seen_server:
            break  # the transfer ended without ever using every WAN at once
        time.sleep(0.02)
    else:
        result["timed_out"] = True
    if not result["seen"]:
        result["sample"] = best
        print(json.dumps(result))
        return 1
    if a.cut:
        cut(a.cut)
        result["cut"] = {"address": a.cut, "t": round(time.monotonic(), 3)}
        time.sleep(0.2)
        result["after_cut"] = sample(a.mcp_port, a.server_port)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
