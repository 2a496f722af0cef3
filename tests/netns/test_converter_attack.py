"""The converter's port against connections that were not diverted from the LAN, on the
topology of test_converter.py (its namespaces, daemons and helpers):

    tcv-lan (192.0.2.10) ── lan0 ── tcv-cpe ══ wan1 198.51.100.0/24 ══ tcv-isp ── srv0 ── tcv-srv
                                            ══ wan2 203.0.113.0/24 ══  MCP 198.18.0.1   198.18.1.1

The CPE's own addresses: 192.0.2.1 and 2001:db8:1::1 (lan0), 198.51.100.2 and
2001:db8:a::2 (wan1), 203.0.113.2 (wan2). The attacker of the issue sits in the isp (to
the CPE's WAN address) or on the LAN (to the CPE's LAN address); the CPE itself may
connect to its loopback. Each layer is tested alone: the nftables input chain (the
converter never sees the connection), then the converter's own check with that chain
deleted (reset at once, no MCP asked). A test server also listens on port 5125 so that a
diverted connection to that port shows it is still converted (its packets carry the
fwmark at the input hook).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
from netlab import needs_root, sh, wait_for
from test_converter import FLOW, MCP_SEEN, NS, PORT, SERVER, daemons, lab, subflows_at_mcp, who  # noqa: F401 - fixtures

pytestmark = [pytest.mark.root, needs_root]

LISTEN = 5125
TABLE = "mptcp_cpe_converter"
# From where, to which of the CPE's addresses (or its loopback): none of them is diverted.
NOT_DIVERTED = [("isp", "198.51.100.2"), ("isp", "2001:db8:a::2"), ("isp", "203.0.113.2"),
                ("lan", "192.0.2.1"), ("lan", "2001:db8:1::1"), ("cpe", "127.0.0.1"), ("cpe", "::1"),
                ("cpe", "198.51.100.2")]

# Connection attempts in batches of non-blocking connects, each given `per` seconds to say
# what it met; the whole bounded by a count and a time. One JSON line: outcomes counted.
ATTEMPTS = r"""
import errno, json, select, socket, sys, time
host, port, n, batch, per, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
out = {"reset": 0, "closed": 0, "open": 0, "timeout": 0, "refused": 0, "other": 0}
end, tried = time.monotonic() + budget, 0
while tried < n and time.monotonic() < end:
    state = {}
    for _ in range(min(batch, n - tried)):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((host, port))
        state[s] = "connecting"
    tried += len(state)
    deadline = time.monotonic() + per
    while any(v in ("connecting", "connected") for v in state.values()) and time.monotonic() < deadline:
        connecting = [s for s, v in state.items() if v == "connecting"]
        connected = [s for s, v in state.items() if v == "connected"]
        r, w, _ = select.select(connected, connecting, [], max(0.0, deadline - time.monotonic()))
        for s in w:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            state[s] = {0: "connected", errno.ECONNRESET: "reset", errno.ECONNREFUSED: "refused"}.get(err, "other")
        for s in r:
            try:
                state[s] = "open" if s.recv(1) else "closed"
            except ConnectionResetError:
                state[s] = "reset"
            except OSError:
                state[s] = "other"
    for s, v in state.items():
        out[{"connecting": "timeout", "connected": "open"}.get(v, v)] += 1
        s.close()
out["attempts"] = tried
print(json.dumps(out))
"""


def attempts(side: str, host: str, n: int = 1, *, batch: int = 1, per: float = 2.0, budget: float = 55.0) -> dict:
    proc = sh("timeout", str(budget + per + 10), sys.executable, "-c", ATTEMPTS, host, str(LISTEN), str(n), str(batch),
              str(per), str(budget), ns=NS[side], check=False)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"attempts from {side} to {host}: {proc.stdout} {proc.stderr}") from None


def attempt_in_background(side: str, host: str, n: int, **kw) -> subprocess.Popen:
    per, batch, budget = kw.get("per", 2.0), kw.get("batch", 50), kw.get("budget", 55.0)
    return subprocess.Popen(["ip", "netns", "exec", NS[side], "timeout", str(budget + per + 10), sys.executable, "-c",
                             ATTEMPTS, host, str(LISTEN), str(n), str(batch), str(per), str(budget)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def drop_counter() -> int:
    """Packets the converter's input chain dropped (its two rules)."""
    out = sh("nft", "list", "chain", "inet", TABLE, "input", ns=NS["cpe"]).stdout
    counts = [int(n) for n in re.findall(r"tcp dport 5125 .* counter packets (\d+)", out)]
    assert len(counts) == 2, out
    return sum(counts)


def passive_opens(ns: str) -> int:
    """TCP passive opens in a namespace: in the isp, the MCP's (nothing else listens there)."""
    lines = [line.split() for line in sh("cat", "/proc/net/snmp", ns=ns).stdout.splitlines() if line.startswith("Tcp:")]
    return int(lines[1][lines[0].index("PassiveOpens")])


def all_fds(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except FileNotFoundError:
            pass
    return total


def who_at(port: int) -> str:
    return sh(sys.executable, FLOW, "who", SERVER, str(port), ns=NS["lan"], check=False).stdout.strip()


@pytest.fixture(scope="module")
def server_on_listen_port(lab):  # noqa: F811 - the fixture of test_converter
    """The test server on port 5125 too: a LAN client may well want that port of another host."""
    lab.start("server-5125", sys.executable, FLOW, "serve", SERVER, "--port", str(LISTEN), ns=NS["srv"])
    wait_for("the test server on port 5125", lambda: "serving" in lab.log("server-5125"), timeout=10)


REFUSAL = re.compile(r"refused (\d+) connection\(s\) to the converter's port not diverted from the LAN")


# ---------------------------------------------------------------- the tests

def test_local_addresses_follow_the_kernel(lab):  # noqa: F811
    code = ("import json, select, subprocess, time\n"
            "from mptcp_cpe.localaddrs import LocalAddresses\n"
            "local = LocalAddresses()\n"
            "def until(address, present):\n"
            "    end = time.monotonic() + 5\n"
            "    while (address in local) != present and time.monotonic() < end:\n"
            "        select.select([local], [], [], 0.5)\n"
            "        local.refresh()\n"
            "    return address in local\n"
            "seen = {'start': ['198.51.100.2' in local, '2001:db8:1::1' in local, '198.18.9.9' in local]}\n"
            "for a, plen in (('198.18.9.9', 32), ('2001:db8:9::9', 128)):\n"
            "    subprocess.run(['ip', 'addr', 'add', f'{a}/{plen}', 'dev', 'lo'], check=True)\n"
            "    added = until(a, True)\n"
            "    subprocess.run(['ip', 'addr', 'del', f'{a}/{plen}', 'dev', 'lo'], check=True)\n"
            "    seen[a] = [added, until(a, False)]\n"
            "print(json.dumps(seen))\n")
    out = sh("timeout", "30", sys.executable, "-c", code, ns=NS["cpe"]).stdout
    assert json.loads(out) == {"start": [True, True, False], "198.18.9.9": [True, False], "2001:db8:9::9": [True, False]}


def test_nftables_alone_keeps_what_was_not_diverted_from_the_converter(daemons, server_on_listen_port):  # noqa: F811
    daemons.mcp()
    daemons.converter()
    before = drop_counter()
    for side, host in NOT_DIVERTED:
        got = attempts(side, host, per=1.5)
        assert got["timeout"] == 1, (side, host, got)  # the SYN is dropped: no answer at all
    assert drop_counter() >= before + len(NOT_DIVERTED)
    # A LAN connection to another host's port 5125 is diverted: its packets carry the mark at
    # the input hook, so it is converted and the chain counts none of them.
    counted = drop_counter()
    assert who_at(LISTEN) == MCP_SEEN
    assert who() == MCP_SEEN
    assert drop_counter() == counted
    log = daemons.procs.log("converter")
    assert not REFUSAL.search(log), log  # the converter never saw them
    assert "not used for" not in log, log


def test_the_converter_alone_refuses_what_was_not_diverted(daemons, server_on_listen_port):  # noqa: F811
    daemons.mcp()
    daemons.converter()
    sh("nft", "delete", "chain", "inet", TABLE, "input", ns=NS["cpe"])
    t0 = time.monotonic()
    at_mcp = passive_opens(NS["isp"])
    for side, host in NOT_DIVERTED:
        got = attempts(side, host, per=5)
        assert got["reset"] == 1, (side, host, got)  # accepted by the kernel, reset by the converter at once
    assert passive_opens(NS["isp"]) == at_mcp  # no MCP was asked
    log = daemons.procs.log("converter")
    assert "not used for" not in log, log  # no MCP put on hold
    assert "-> [198.51.100.2]:5125 (to the listen port on the CPE's own address)" in log, log
    # One line per worker per 10 s at most, each counting what it refused.
    lines = REFUSAL.findall(log)
    assert lines and len(lines) <= 2 * (2 + int(time.monotonic() - t0) // 10), log
    assert sum(map(int, lines)) <= len(NOT_DIVERTED)
    # Diverted connections are converted as before, to port 5125 of another host as well.
    assert who() == MCP_SEEN
    assert who_at(LISTEN) == MCP_SEEN


@pytest.mark.parametrize("layer", ["nftables", "converter"])
def test_a_thousand_attempts_each_side_leave_a_download_and_the_mcp_alone(daemons, layer):  # noqa: F811
    """The issue's attack, from the internet and from the LAN, against each layer alone while
    the LAN host downloads 200 MB through the converter."""
    daemons.mcp()
    daemons.converter(workers=2)
    if layer == "converter":
        sh("nft", "delete", "chain", "inet", TABLE, "input", ns=NS["cpe"])
    assert who() == MCP_SEEN
    workers = daemons.pids("converter")[1:]
    time.sleep(0.5)
    idle = all_fds(workers)
    counted = drop_counter() if layer == "nftables" else 0
    at_mcp = passive_opens(NS["isp"])
    # Shaped so the download outlasts the start of the attack.
    for dev in ("wan1", "wan2"):
        sh("tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "100mbit", "burst", "64kb", "latency", "50ms", ns=NS["isp"])
    lan = subprocess.Popen(["ip", "netns", "exec", NS["lan"], sys.executable, FLOW, "get", SERVER, str(PORT), str(200 << 20),
                            "--seed", "12", "--timeout", "80"], stdout=subprocess.PIPE, text=True)
    peak, stop = [idle], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak.append(all_fds(workers))
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    attackers = []
    try:
        wait_for("the download to be relayed", lambda: len(subflows_at_mcp()) >= 1, timeout=10)
        watcher.start()
        per = 0.5 if layer == "nftables" else 2.0  # dropped SYNs only time out
        attackers = [attempt_in_background("isp", "198.51.100.2", 1000, per=per, budget=55),
                     attempt_in_background("lan", "192.0.2.1", 1000, per=per, budget=55)]
        results = [json.loads(a.communicate(timeout=75)[0].strip().splitlines()[-1]) for a in attackers]
        out, _ = lan.communicate(timeout=90)
    finally:
        stop.set()
        for proc in (*attackers, lan):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    got = json.loads(out)
    assert got["ok"], got  # every octet, sha256 matching
    for result in results:
        assert result["attempts"] == 1000, results
        if layer == "nftables":
            assert result["timeout"] == 1000, results  # none reached the listener
        else:
            assert result["reset"] == 1000, results  # each reset by the converter
    if layer == "nftables":
        assert drop_counter() >= counted + 2000
    assert max(peak) <= idle + 64, (idle, max(peak))
    # The MCP accepted the download's subflows, not one connection per attempt.
    assert passive_opens(NS["isp"]) - at_mcp <= 16
    log = daemons.procs.log("converter")
    assert "not used for" not in log, log  # no MCP put on hold
    assert "cannot" not in log and "Too many open files" not in log, log
    assert who() == MCP_SEEN  # converting as before
