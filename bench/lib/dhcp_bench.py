"""bench/dhcp's measurement: perfdhcp against kea-dhcp4 with and without the MCP hook
(what and how: bench/README.md). Run by bench/dhcp, as root, from the repository root."""
import json, os, re, statistics, subprocess, sys, tempfile, time
from pathlib import Path

from mptcp_cpe.options import encode_v4

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "netns"))  # netlab, shared with the tests
from netlab import Procs, add_addresses, cpu_seconds, namespaces, run_bench, sh, veth  # noqa: E402

HOOK = Path("hooks/kea/build/libdhcp_mptcp.so").resolve()
NS_SRV, NS_CLI = "b-dhcp-srv", "b-dhcp-cli"
PERIOD_S = int(os.environ.get("BENCH_PERIOD_S", "10"))   # each run is bounded by this
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))        # baseline, hook, baseline, hook ...
RATE = int(os.environ.get("BENCH_RATE", "20000"))        # offered DORA/s, above what Kea sustains here
MCPS = [["203.0.113.1"], ["203.0.113.2", "203.0.113.3"]]
MODES = ("baseline", "hook", "per-packet")


def topology():
    """Kea's a0 in NS_SRV, perfdhcp's b0 in NS_CLI (both made for it), one veth."""
    veth(NS_SRV, "a0", NS_CLI, "b0")
    add_addresses(NS_SRV, "a0", ["198.18.0.1/15"])
    add_addresses(NS_CLI, "b0", ["198.18.0.2/15"])


def kea_config(tmp, mode):
    cfg = {"Dhcp4": {
        "interfaces-config": {"interfaces": ["a0"], "dhcp-socket-type": "udp"},
        "lease-database": {"type": "memfile", "persist": False},
        "valid-lifetime": 3600,
        # perfdhcp acts as a relay (giaddr 198.18.0.2): the subnet is chosen by it. The subnet
        # has the shape roles/isp_dhcp renders: a pool and the routers option.
        "subnet4": [{"id": 1, "subnet": "198.18.0.0/15", "pools": [{"pool": "198.18.1.0 - 198.19.254.255"}],
                     "option-data": [{"name": "routers", "data": "198.18.0.1"}]}],
        "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": str(tmp / "kea.log")}], "severity": "WARN"}],
    }}
    if mode == "hook":
        cfg["Dhcp4"]["hooks-libraries"] = [{"library": str(HOOK), "parameters": {
            "v4": {"subnets": [{"id": 1, "mcps": MCPS}]}}}]
    elif mode == "per-packet":
        cfg["Dhcp4"]["hooks-libraries"] = [{"library": str(HOOK), "parameters": {
            "v4": {"classes": [{"name": "ALL", "mcps": MCPS}]}}}]
    path = tmp / f"{mode}.json"
    path.write_text(json.dumps(cfg))
    return path


# One relayed DISCOVER (as perfdhcp sends them: from the relay's port 67, giaddr set) with
# 224 in its PRL; prints the OFFER's option 224 as hex, its parts joined (RFC 3396).
PROBE = r"""
import os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.0.2", 67)); s.settimeout(3)
xid = os.urandom(4)
pkt = bytes([1, 1, 6, 1]) + xid + bytes(4) + bytes(4) + bytes(8) + socket.inet_aton("198.18.0.2")
pkt += bytes.fromhex("02aabbccddee") + bytes(10) + bytes(192) + bytes.fromhex("63825363")
pkt += bytes([53, 1, 1, 55, 3, 1, 3, 224, 255])
s.sendto(pkt, ("198.18.0.1", 67))
while True:
    data = s.recv(4096)
    if data[4:8] == xid:
        break
opts, i, found = data[240:], 0, b""
while i < len(opts) and opts[i] != 255:
    if opts[i] == 0:
        i += 1
        continue
    if opts[i] == 224:
        found += opts[i + 2: i + 2 + opts[i + 1]]
    i += 2 + opts[i + 1]
print(found.hex())
"""


def offer_option():
    proc = sh(sys.executable, "-c", PROBE, ns=NS_CLI, check=False)
    if proc.returncode:
        sys.exit(f"bench/dhcp: no OFFER to the check DISCOVER: {proc.stderr[-1000:]}")
    return bytes.fromhex(proc.stdout.strip())


def one_run(procs, tmp, mode):
    env = dict(os.environ, KEA_PIDFILE_DIR=str(tmp), KEA_LOCKFILE_DIR=str(tmp))
    # Kea on one core, perfdhcp on the other: on two cores they would otherwise steal from
    # each other at random and the ratio would measure the scheduler.
    kea = procs.start(f"kea-{mode}", "taskset", "-c", "0", "ip", "netns", "exec", NS_SRV, "kea-dhcp4", "-c", str(kea_config(tmp, mode)),
                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.5)
        if kea.poll() is not None:
            sys.exit(f"bench/dhcp: kea-dhcp4 did not start: {(tmp / 'kea.log').read_text()[-2000:]}")
        got, want = offer_option(), (b"" if mode == "baseline" else encode_v4(MCPS))
        if got != want:
            sys.exit(f"bench/dhcp: {mode}: the OFFER's option 224 is {got.hex() or 'missing'}, not {want.hex() or 'absent'}")
        # The Kea process itself (ip netns exec execs it).
        cpu0 = cpu_seconds([kea.pid])
        perf = sh("taskset", "-c", "1", "ip", "netns", "exec", NS_CLI, "perfdhcp", "-4", "-l", "b0", "-r", str(RATE), "-R", "100000",
                  "-p", str(PERIOD_S), "-o", "55,0103e0", "198.18.0.1", check=False, timeout=PERIOD_S + 60)
        cpu1 = cpu_seconds([kea.pid])
        if kea.poll() is not None:
            sys.exit(f"bench/dhcp: {mode}: kea-dhcp4 exited during the run: {(tmp / 'kea.log').read_text()[-2000:]}")
    finally:
        procs.stop(kea)
        procs.forget(kea)
    out = perf.stdout
    m = re.search(r"Rate:\s*([\d.]+)\s*4-way exchanges/second", out)
    recv = re.findall(r"received packets:\s*(\d+)", out)
    if not m or len(recv) < 2:
        sys.exit(f"bench/dhcp: cannot read perfdhcp's output:\n{out[-3000:]}\n{perf.stderr[-1000:]}")
    rate = float(m.group(1))
    exchanges = int(recv[1])  # ACKs received: completed 4-way exchanges
    return rate, cpu1 - cpu0, exchanges


def main():
    if not HOOK.exists():
        sys.exit("bench/dhcp: hooks/kea/build/libdhcp_mptcp.so missing (make -C hooks/kea)")
    results = {mode: [] for mode in MODES}
    with namespaces(NS_SRV, NS_CLI), tempfile.TemporaryDirectory(prefix="bench-dhcp-") as d, \
            Procs(Path(d), new_session=False) as procs:
        topology()
        tmp = Path(d)
        for _ in range(ROUNDS):
            for mode in MODES:
                results[mode].append(one_run(procs, tmp, mode))
    print(f"{'run':<10}{'leases/s':>12}{'kea cpu s':>12}{'exchanges':>12}{'cpu us/exch':>14}")
    summary = {}
    for mode in MODES:
        for rate, cpu, n in results[mode]:
            print(f"{mode:<10}{rate:>12.1f}{cpu:>12.2f}{n:>12d}{cpu / max(n, 1) * 1e6:>14.1f}")
        summary[mode] = (statistics.median(r for r, _, _ in results[mode]),
                         statistics.median(c / max(n, 1) * 1e6 for _, c, n in results[mode]))
    print("medians: " + "; ".join(f"{mode} {summary[mode][0]:.1f} leases/s {summary[mode][1]:.1f} us/exch"
                                  for mode in MODES) + f" ({PERIOD_S} s runs, {ROUNDS} each, offered {RATE}/s)")
    print(f"per-packet callout (client classes): {summary['per-packet'][0] / summary['baseline'][0]:.3f} of baseline, "
          f"+{summary['per-packet'][1] - summary['baseline'][1]:.1f} us/exch")
    print(f"hook_over_baseline_leases={summary['hook'][0] / summary['baseline'][0]:.3f} "
          f"hook_cpu_overhead_us={summary['hook'][1] - summary['baseline'][1]:.1f}")


if __name__ == "__main__":
    run_bench("bench/dhcp", main)
