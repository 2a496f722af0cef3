"""bench/failover's measurement: one MPTCP transfer while wand fails WAN1 over and back
(what and how: bench/README.md). Run by bench/failover, as root, from the repository root."""
import hashlib, json, os, random, subprocess, sys, tempfile, threading, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "netns"))  # netlab, shared with the tests
from netlab import LabError, Procs, namespaces, run_bench, sh, veth, wait_for, watchdog  # noqa: E402

from mptcp_cpe.state import StateFileError, read_wan_state  # noqa: E402

NS_CPE, NS_ISP1, NS_ISP2, NS_SRV = "b-fo-cpe", "b-fo-isp1", "b-fo-isp2", "b-fo-srv"
NAMESPACES = (NS_CPE, NS_ISP1, NS_ISP2, NS_SRV)
SERVER, PORT = "203.0.113.10", 5201
WAN1, WAN2 = "192.0.2.10", "198.51.100.10"

SIZE = int(os.environ.get("BENCH_BYTES", str(96 * 2**20)))        # bytes in the one transfer
RATE_MBIT = float(os.environ.get("BENCH_RATE_MBIT", "40"))        # tbf rate of each WAN, both ways
CUT_AT_S = float(os.environ.get("BENCH_CUT_AT_S", "4"))           # WAN1 cut this long after connect
CUT_S = float(os.environ.get("BENCH_CUT_S", "4"))                 # ... and restored this long after
INTERVAL_S = float(os.environ.get("BENCH_INTERVAL_S", "0.25"))    # wand probe.interval_s (= timeout_s)
DOWN_COUNT = int(os.environ.get("BENCH_DOWN_COUNT", "3"))
UP_COUNT = int(os.environ.get("BENCH_UP_COUNT", "2"))
# net.mptcp.stale_loss_cnt in the CPE ("" keeps the kernel's 4); see bench/README.md.
STALE_LOSS_CNT = os.environ.get("BENCH_STALE_LOSS_CNT", "")
BIND = os.environ.get("BENCH_BIND", "wan1")                       # initial subflow: wan1 | wan2 | route
SEED = int(os.environ.get("BENCH_SEED", "1"))
TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT_S", "60"))        # watchdog for the whole bench
TRACE = os.environ.get("BENCH_TRACE", "") not in ("", "0")         # also print subflow changes and 100 ms bins
CHUNK = 64 * 1024
ESTABLISHED = 1
TCP_STATES = {1: "ESTAB", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2", 7: "CLOSE", 8: "CLOSE-WAIT", 9: "LAST-ACK", 11: "CLOSING"}
SAMPLE_S = 0.02
RATE = f"{RATE_MBIT:g}mbit"

# --- the two ends, run with `ip netns exec ... python -c` ---

COMMON = r'''
import ctypes, hashlib, json, random, socket, struct, sys, threading, time
IPPROTO_MPTCP, SOL_MPTCP = 262, 284
MPTCP_TCPINFO, MPTCP_SUBFLOW_ADDRS = 2, 3
libc = ctypes.CDLL(None, use_errno=True)

def subflow_data(fd, opt, entry, n=8):
    """MPTCP_TCPINFO / MPTCP_SUBFLOW_ADDRS: the request header goes in, so libc's getsockopt."""
    size = 16 + entry * n
    buf = ctypes.create_string_buffer(size)
    struct.pack_into("IIII", buf, 0, 16, 0, 0, entry)
    ln = ctypes.c_int(size)
    if libc.getsockopt(fd, SOL_MPTCP, opt, buf, ctypes.byref(ln)) != 0:
        raise OSError(ctypes.get_errno(), "getsockopt SOL_MPTCP")
    _, num, _, stride = struct.unpack_from("IIII", buf, 0)
    return [buf.raw[16 + i * stride:16 + (i + 1) * stride] for i in range(min(num, n))]

def subflows(fd):
    """[(local address, local port, tcpi_bytes_acked, tcpi_state)] of every subflow."""
    addrs = subflow_data(fd, MPTCP_SUBFLOW_ADDRS, 256)
    infos = subflow_data(fd, MPTCP_TCPINFO, 232)
    if len(addrs) != len(infos):  # a subflow came or went between the two calls
        return None
    out = []
    for a, ti in zip(addrs, infos):
        if struct.unpack_from("=H", a, 0)[0] != socket.AF_INET:
            continue
        port = struct.unpack_from("!H", a, 2)[0]
        out.append((socket.inet_ntoa(a[4:8]), port, struct.unpack_from("=Q", ti, 120)[0], ti[0]))
    return out

def mib(names):
    """This namespace's MPTcpExt counters (/proc/net/netstat)."""
    lines = [l.split() for l in open("/proc/net/netstat") if l.startswith("MPTcpExt:")]
    values = dict(zip(lines[0][1:], map(int, lines[1][1:])))
    return [values.get(n, 0) for n in names]
'''

SENDER = COMMON + r'''
server, port, size, seed, bind, chunk, period, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), float(sys.argv[7]), sys.argv[8]
MIB = ["MPTCPRetrans", "SubflowStale", "SubflowRecover", "RmSubflow", "MPJoinSynTx"]
mib0 = mib(MIB)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
if bind:
    s.bind((bind, 0))
s.settimeout(30)
s.connect((server, port))
t_connect = time.monotonic()
print(json.dumps({"connected": t_connect}), flush=True)
samples, stop = [], threading.Event()

def sample():
    while not stop.is_set():
        t = time.monotonic()
        try:
            sf = subflows(s.fileno())
        except OSError:
            sf = None
        samples.append((t, sf, mib(MIB)))
        stop.wait(period)

threading.Thread(target=sample, daemon=True).start()
rng, h, sent = random.Random(seed), hashlib.sha256(), 0
error = None
try:
    while sent < size:
        buf = rng.randbytes(min(chunk, size - sent))
        h.update(buf)
        s.sendall(buf)
        sent += len(buf)
    t_sent = time.monotonic()
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # the receiver closes once it has read everything
except OSError as exc:
    error, t_sent = repr(exc), time.monotonic()
t_end = time.monotonic()
stop.set()
time.sleep(period)
json.dump({"mib0": mib0, "sent": sent, "sha256": h.hexdigest(), "t_connect": t_connect, "t_sent": t_sent, "t_end": t_end,
           "error": error, "samples": samples}, open(out, "w"))
'''

RECEIVER = COMMON + r'''
addr, port, devs, period, timeout, out = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((addr, port))
ls.listen(1)
ls.settimeout(timeout)
print("ready", flush=True)
c, _ = ls.accept()
c.settimeout(timeout)
counters, stop = [], threading.Event()

def rx_bytes():
    """rx bytes of the links from isp1 and isp2, then MPTCP's count of duplicate data."""
    return [int(open(f"/sys/class/net/{d}/statistics/rx_bytes").read()) for d in devs] + mib(["DuplicateData"])

def sample():
    while not stop.is_set():
        counters.append((time.monotonic(), rx_bytes()))
        stop.wait(period)

threading.Thread(target=sample, daemon=True).start()
h, n, arrivals, error = hashlib.sha256(), 0, [], None
buf = bytearray(1 << 20)
mv = memoryview(buf)
try:
    while True:
        k = c.recv_into(buf)
        if not k:
            break
        arrivals.append((time.monotonic(), k))
        h.update(mv[:k])
        n += k
except OSError as exc:
    error = repr(exc)
c.close()
stop.set()
time.sleep(period)
counters.append((time.monotonic(), rx_bytes()))
json.dump({"received": n, "sha256": h.hexdigest(), "error": error, "arrivals": arrivals, "counters": counters}, open(out, "w"))
'''

def topology():
    """cpe wan1 -- c1 isp1 s1 -- i1 server (203.0.113.10 on lo) i2 -- s2 isp2 c2 -- wan2 cpe,
    in the namespaces (NAMESPACES) made for it."""
    links = ((NS_CPE, "wan1", NS_ISP1, "c1"), (NS_CPE, "wan2", NS_ISP2, "c2"),
             (NS_ISP1, "s1", NS_SRV, "i1"), (NS_ISP2, "s2", NS_SRV, "i2"))
    for link in links:
        veth(*link)
    # The CPE's WAN addresses are wand's to add (static in its config).
    for ns, dev, addr in ((NS_ISP1, "c1", "192.0.2.1/24"), (NS_ISP2, "c2", "198.51.100.1/24"),
                          (NS_ISP1, "s1", "203.0.113.1/30"), (NS_SRV, "i1", "203.0.113.2/30"),
                          (NS_ISP2, "s2", "203.0.113.5/30"), (NS_SRV, "i2", "203.0.113.6/30"),
                          (NS_SRV, "lo", f"{SERVER}/32")):
        sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
    for ns in (NS_ISP1, NS_ISP2):
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns)
    sh("ip", "-n", NS_ISP1, "route", "add", f"{SERVER}/32", "via", "203.0.113.2")
    sh("ip", "-n", NS_ISP2, "route", "add", f"{SERVER}/32", "via", "203.0.113.6")
    # Each subflow comes back by the ISP it came in by.
    sh("ip", "-n", NS_SRV, "route", "add", "192.0.2.0/24", "via", "203.0.113.1")
    sh("ip", "-n", NS_SRV, "route", "add", "198.51.100.0/24", "via", "203.0.113.5")
    sh("ip", "-n", NS_SRV, "mptcp", "limits", "set", "subflows", "8", "add_addr_accepted", "8")
    # tbf on each WAN's two egresses: the CPE's (the data) and the ISP's towards the CPE.
    for ns, dev in ((NS_CPE, "wan1"), (NS_CPE, "wan2"), (NS_ISP1, "c1"), (NS_ISP2, "c2")):
        sh("tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", RATE, "burst", "32kb", "latency", "50ms")
    if STALE_LOSS_CNT:
        sh("sysctl", "-qw", f"net.mptcp.stale_loss_cnt={STALE_LOSS_CNT}", ns=NS_CPE)


def wand_config(tmp):
    cfg = {"host": "bench-failover-cpe", "policy": "balance",
           "probe": {"interval_s": INTERVAL_S, "timeout_s": INTERVAL_S, "down_count": DOWN_COUNT, "up_count": UP_COUNT},
           "state_file": str(tmp / "wan.json"),
           "wans": [{"name": "isp1", "device": "wan1", "kind": "dsl", "ipv4": {"address": f"{WAN1}/24", "gateway": "192.0.2.1"}, "ipv6": "none"},
                    {"name": "isp2", "device": "wan2", "kind": "lte", "ipv4": {"address": f"{WAN2}/24", "gateway": "198.51.100.1"}, "ipv6": "none"}]}
    path = tmp / "wand.json"
    path.write_text(json.dumps(cfg))
    return path


def start_wand(procs, tmp, log):
    """wand in the CPE, its stderr lines timestamped into log; returns once both WANs are up
    with endpoints, with how many of them wand's NAT masquerades."""
    p = procs.start("wand", str(Path(".venv/bin/mptcp-cpe").resolve()), "wand", "--config", str(wand_config(tmp)), ns=NS_CPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def read():
        for line in p.stderr:
            log.append((time.monotonic(), line.rstrip()))

    threading.Thread(target=read, daemon=True).start()

    def both_up():
        if p.poll() is not None:
            sys.exit("bench/failover: wand exited: " + "\n".join(l for _, l in log[-20:]))
        try:
            state = read_wan_state(tmp / "wan.json")
        except StateFileError:
            return False
        return state is not None and all(w.healthy and w.endpoints for w in state.wans)

    try:
        wait_for("wand to bring both WANs up", both_up, timeout=10, every=0.05)
    except LabError:
        sys.exit("bench/failover: wand did not bring both WANs up within 10 s: " + "\n".join(l for _, l in log[-20:]))
    nat = sh("nft", "list", "table", "inet", "mptcp_cpe_wand", ns=NS_CPE, check=False).stdout
    return sum(f'oifname "{d}" masquerade' in nat for d in ("wan1", "wan2"))


def cut(on):
    if on:
        sh("nft", "add table inet bench_cut; "
            "add chain inet bench_cut pre { type filter hook prerouting priority -300; policy accept; }; "
            "add rule inet bench_cut pre iifname c1 drop; "
            "add chain inet bench_cut post { type filter hook postrouting priority 300; policy accept; }; "
            "add rule inet bench_cut post oifname c1 drop", ns=NS_ISP1)
    else:
        sh("nft", "delete table inet bench_cut", ns=NS_ISP1)
    return time.monotonic()


def stream_sha256(nbytes):
    """sha256 of the sender's first nbytes (same seed, same chunking)."""
    rng, h, done = random.Random(SEED), hashlib.sha256(), 0
    while done < nbytes:
        n = min(CHUNK, SIZE - done)
        buf = rng.randbytes(n)
        h.update(buf[:nbytes - done])
        done += n
    return h.hexdigest()


def longest_gap(times, start, end):
    """(longest time without a delivery in [start, end], the time it ended)."""
    points = [start] + [t for t in times if start < t < end] + [end]
    return max(((b - a, b) for a, b in zip(points, points[1:])), default=(0.0, start))


def main():
    wand_log: list[tuple[float, str]] = []
    bind = {"wan1": WAN1, "wan2": WAN2, "route": ""}[BIND]
    # Left in reverse: the watchdog off, the processes stopped, the namespaces removed.
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as d, namespaces(*NAMESPACES), \
            Procs(Path(d), new_session=False) as procs, watchdog(TIMEOUT_S):
        tmp = Path(d)
        topology()
        nat = start_wand(procs, tmp, wand_log)
        py = sys.executable
        # stderr: the bench's own, as the ends' tracebacks should be seen
        recv = procs.start("receiver", py, "-c", RECEIVER, SERVER, str(PORT), "i1,i2", str(SAMPLE_S), str(TIMEOUT_S),
                           str(tmp / "recv.json"), ns=NS_SRV, stdout=subprocess.PIPE, stderr=None)
        if recv.stdout.readline().strip() != "ready":
            sys.exit("bench/failover: the receiver did not start")
        send = procs.start("sender", py, "-c", SENDER, SERVER, str(PORT), str(SIZE), str(SEED), bind, str(CHUNK), str(SAMPLE_S),
                           str(tmp / "send.json"), ns=NS_CPE, stdout=subprocess.PIPE, stderr=None)
        line = send.stdout.readline()
        if not line:
            send.wait()
            sys.exit("bench/failover: the sender could not connect to the server through wand's routes")
        t0 = json.loads(line)["connected"]
        time.sleep(max(0.0, t0 + CUT_AT_S - time.monotonic()))
        t_cut = cut(True)
        time.sleep(max(0.0, t_cut + CUT_S - time.monotonic()))
        t_restore = cut(False)
        send.wait()
        recv.wait()
        for p in (send, recv):
            procs.forget(p)
        if not (tmp / "send.json").exists() or not (tmp / "recv.json").exists():
            sys.exit(f"bench/failover: the sender (exit {send.returncode}) or the receiver (exit {recv.returncode}) failed")
        sres = json.loads((tmp / "send.json").read_text())
        rres = json.loads((tmp / "recv.json").read_text())
    report(sres, rres, wand_log, t0, t_cut, t_restore, nat)


def trace(sres, rres, rel):
    """Every change of the connection's subflows, then 100 ms bins of delivery and per-WAN rx."""
    print("trace: subflows (local address:port tcpi_state tcpi_bytes_acked) whenever the set changes")
    last = None
    samples = [(t, sf) for t, sf, _ in sres["samples"] if sf is not None]
    for t, sf in samples:
        key = sorted((s[0], s[1], s[3]) for s in sf)
        if key != last:
            print(f"  {rel(t):7.3f} s  " + ", ".join(f"{a}:{p} {TCP_STATES.get(st, st)} {k}" for a, p, k, st in sorted(sf)))
            last = key
    t, sf = samples[-1]
    print(f"  {rel(t):7.3f} s  (last) " + ", ".join(f"{a}:{p} {TCP_STATES.get(st, st)} {k}" for a, p, k, st in sorted(sf)))
    print("trace: 100 ms bins    goodput  wan1 rx  wan2 rx (Mbit/s)  duplicate segments at the receiver")
    arrivals, counters = rres["arrivals"], rres["counters"]
    t, end = counters[0][0], counters[-1][0]
    while t < end:
        got = sum(k for a, k in arrivals if t < a <= t + 0.1)
        c0 = [c for c in counters if c[0] <= t][-1][1]
        c1 = [c for c in counters if c[0] <= t + 0.1][-1][1]
        print(f"  {rel(t):7.2f} s {got * 80 / 1e6:17.1f}{(c1[0] - c0[0]) * 80 / 1e6:9.1f}{(c1[1] - c0[1]) * 80 / 1e6:9.1f}{c1[2] - c0[2]:10d}")
        t += 0.1


def at(series, t):
    """The last sample of a [(time, values...)] series taken at or before t (else the first)."""
    before = [x for x in series if x[0] <= t]
    return before[-1] if before else series[0]


def report(sres, rres, wand_log, t0, t_cut, t_restore, nat):
    arrivals, counters = rres["arrivals"], rres["counters"]
    times = [t for t, _ in arrivals]
    t_end = times[-1] if times else sres["t_end"]
    rel = lambda t: t - t0

    # Lost: what did not arrive intact. A clean prefix loses the rest; a corrupt one, all.
    sent, received = sres["sent"], rres["received"]
    if received > sent:
        intact = False
    else:
        intact = rres["sha256"] == (sres["sha256"] if received == sent else stream_sha256(received))
    lost = SIZE - received if intact else SIZE

    def established(sf, addr=None):
        """Established subflows (of one address): one the kernel shut stays in FIN-WAIT-1 on a
        dead path and retransmits its old data once the path is back; it carries no flow."""
        return [s for s in sf if s[3] == ESTABLISHED and addr in (None, s[0])]

    samples = [(t, sf) for t, sf, _ in sres["samples"] if sf is not None]
    gone = next((t for t, sf in samples if t > t_cut and not established(sf, WAN1)), None)
    acked = {}  # WAN1 subflows' bytes acked at the restore
    for t, sf in samples:
        if t <= t_restore:
            acked = {(s[0], s[1]): s[2] for s in established(sf, WAN1)}
    rejoin_t = next((t for t, sf in samples if t > t_restore
                     and any(s[2] > acked.get((s[0], s[1]), 0) for s in established(sf, WAN1))), None)
    down_t = next((t for t, line in wand_log if t > t_cut and "WAN isp1 is down" in line), None)
    stall, resumed = longest_gap(times, t_cut, t_end)

    def subflow_span(a, b):
        counts, wans = [], set()
        for t, sf in samples:
            if a <= t <= b:
                sf = established(sf)
                counts.append(len(sf))
                wans |= {"wan1" if s[0] == WAN1 else "wan2" for s in sf}
        if not counts:
            return "-"
        span = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
        return f"{span} ({'+'.join(sorted(wans))})"

    phases = [("both WANs", t0, t_cut), ("cut", t_cut, down_t or t_restore), ("WAN1 down", down_t, t_restore),
              ("restored", t_restore, rejoin_t or t_end), ("rejoined", rejoin_t, t_end)]
    print(f"{'phase':<11}{'from s':>7}{'to s':>7}{'wan1 Mbit/s':>12}{'wan2 Mbit/s':>12}{'goodput':>9}{'max gap s':>10}{'dup segs':>9}  subflows")
    pre_ok = False
    for name, a, b in phases:
        if a is None:
            continue
        if b <= a:
            print(f"{name:<11}{rel(a):>7.2f}{rel(b):>7.2f}  (empty)")
            continue
        c0, c1 = at(counters, a)[1], at(counters, b)[1]
        wan = [(y - x) * 8 / (b - a) / 1e6 for x, y in zip(c0[:2], c1[:2])]
        good = sum(k for t, k in arrivals if a < t <= b) * 8 / (b - a) / 1e6
        span = subflow_span(a, b)
        print(f"{name:<11}{rel(a):>7.2f}{rel(b):>7.2f}{wan[0]:>12.1f}{wan[1]:>12.1f}{good:>9.1f}"
              f"{longest_gap(times, a, b)[0]:>10.3f}{c1[2] - c0[2]:>9d}  {span}")
        if name == "both WANs":
            pre_ok = min(wan) > RATE_MBIT * 0.2 and "wan1+wan2" in span

    events = [(t_cut, "isp1 drops everything on its CPE-facing link"), (t_restore, "isp1 forwards again"),
              (sres["t_sent"], "the sender has written its last byte")]
    for t, line in wand_log:
        if t_cut < t <= t_end and ("WAN isp1 is" in line or ("endpoint" in line and WAN1 in line)):
            events.append((t, "wand: " + line.split(" ", 3)[-1]))
    if gone:
        events.append((gone, "no established WAN1 subflow left in the connection"))
    if resumed:
        events.append((resumed, f"delivery resumes after the longest gap since the cut ({stall:.3f} s)"))
    names = ("MPTCPRetrans", "SubflowStale", "SubflowRecover", "RmSubflow", "MPJoinSynTx")
    for (_, _, m0), (t, _, m1) in zip(sres["samples"], sres["samples"][1:]):
        for name, x, y in zip(names, m0, m1):
            if y > x and t > t_cut:
                events.append((t, f"kernel (cpe): MPTcpExt{name} +{y - x}"))
    if rejoin_t:
        events.append((rejoin_t, "a WAN1 subflow carries data again (its tcpi_bytes_acked grows)"))
    for t, what in sorted(events):
        print(f"  {rel(t):7.3f} s  {what}")
    if TRACE:
        trace(sres, rres, rel)
    m0, m1 = sres["mib0"], sres["samples"][-1][2]
    cpe = dict(zip(names, (y - x for x, y in zip(m0, m1))))
    print("kernel counters over the transfer, cpe: " + " ".join(f"{k}={v}" for k, v in cpe.items())
          + f"; server: DuplicateData={counters[-1][1][2] - counters[0][1][2]}")
    if sres["error"] or rres["error"]:
        print(f"errors: sender {sres['error']}, receiver {rres['error']}")
    if sres["t_sent"] < t_restore:
        print("WARNING: the transfer ended before WAN1 was restored: raise BENCH_BYTES")
    if not pre_ok:
        print("WARNING: before the cut the flow did not use both WANs: these numbers do not measure a failover")
    rejoin = (rejoin_t - t_restore) if rejoin_t else float("nan")
    print(f"{sent} bytes sent, {received} received, {'sha256 equal' if intact and received == SIZE else 'an intact prefix' if intact else 'sha256 DIFFERENT'}; tbf {RATE} per WAN; "
          f"wand interval_s {INTERVAL_S:g} down_count {DOWN_COUNT} up_count {UP_COUNT}; "
          f"stale_loss_cnt {STALE_LOSS_CNT or 'kernel default'}; initial subflow {BIND}; wand's NAT masquerades {nat} of 2 WANs")
    print(f"targets: bytes_lost=0 stall_s<=2 rejoin_s<={INTERVAL_S * UP_COUNT + 1:g}")
    print(f"bytes_lost={lost} stall_s={stall:.3f} rejoin_s={rejoin:.3f}")
    if not pre_ok:
        sys.exit(1)


if __name__ == "__main__":
    run_bench("bench/failover", main)
