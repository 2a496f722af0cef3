#!/usr/bin/env python3
"""What a single-homed MPTCP host holds, from its kernel (molecule/single_homed/verify.yml).

    host_paths.py POOL_PREFIX RANGE_PREFIX... [--lan64 PREFIX...]

Prints one JSON line: the host's IPv4 address from the pool (on which device), each MPTCP
endpoint with its address, device and flags, which endpoint lies in which range, and the
IPv6 endpoints inside the LAN's /64s. Read with ``ip -j``, never the daemon's own view.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import sys


def ipj(*args: str) -> list:
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout.strip()
    return json.loads(out) if out else []


def limits() -> dict:
    """``ip mptcp limits show`` (no JSON form): {"subflows": n, "add_addr_accepted": m}."""
    words = subprocess.run(["ip", "mptcp", "limits", "show"], capture_output=True, text=True, check=True).stdout.split()
    return {k: int(v) for k, v in zip(words[::2], words[1::2])}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("pool")
    p.add_argument("ranges", nargs="+")
    p.add_argument("--lan64", nargs="*", default=[])
    a = p.parse_args()
    pool = ipaddress.ip_network(a.pool)
    ranges = [ipaddress.ip_network(r) for r in a.ranges]
    lan64 = [ipaddress.ip_network(n) for n in a.lan64]
    primary = [{"address": i["local"], "device": link["ifname"]}
               for link in ipj("addr", "show") for i in link.get("addr_info", [])
               if i.get("family") == "inet" and ipaddress.ip_address(i["local"]) in pool]
    # ip -j names each flag as a key of its own ("subflow": true).
    endpoints = [{"address": e["address"], "device": e.get("dev"), "id": e["id"],
                  "flags": [f for f in ("signal", "subflow", "backup", "fullmesh") if e.get(f)]}
                 for e in ipj("mptcp", "endpoint", "show")]
    by_range = {}
    for k, net in enumerate(ranges, start=1):
        inside = [e for e in endpoints if ipaddress.ip_address(e["address"]) in net]
        by_range[str(k)] = inside
    v6 = {str(net): [e["address"] for e in endpoints if ipaddress.ip_address(e["address"]) in net] for net in lan64}
    print(json.dumps({"primary": primary, "endpoints": endpoints, "ranges": by_range, "v6": v6,
                      "limits": limits()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
