"""bench/converter's measurements: the converter pair against kernel forwarding and
shadowsocks-libev (what and how: bench/README.md). Run by bench/converter, as root, from
the repository root."""
import contextlib, functools, json, math, os, re, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "netns"))  # netlab, shared with the tests
import netlab  # noqa: E402
from netlab import LabError, Procs, cpu_seconds, listening, namespaces, netstat, received, run_bench, tree, veth, watchdog  # noqa: E402

NS_LAN, NS_CPE, NS_ISP, NS_SRV, NS_DLY = "b-cv-lan", "b-cv-cpe", "b-cv-isp", "b-cv-srv", "b-cv-dly"
NAMESPACES = (NS_LAN, NS_CPE, NS_ISP, NS_SRV, NS_DLY)
SERVER, MCP = "198.18.1.1", "198.18.0.1"
WAN_ADDR = {"wan1": "198.51.100.2", "wan2": "203.0.113.2"}  # the CPE's address on each WAN (its source rules' key)
# Server ports, one per path: the converter intercepts what is not in its bypass.
IPERF_CONV, IPERF_KERNEL, IPERF_SS, IPERF_OMR = 5301, 5302, 5303, 5304
ECHO_CONV, ECHO_DIRECT = 5311, 5312
DOWNLOAD_CONV = 5321  # the stress row's download server, through the converter
SS_PORT, SS_REDIR_PORT, SS_KEY = 8388, 1080, "bench-converter"
# The OpenMPTCProuter-style peer: the same shadowsocks-libev pair, both ends MPTCP (mptcpize).
OMR_PORT, OMR_REDIR_PORT = 8389, 1081

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))                 # interleaved throughput rounds
SECONDS = int(os.environ.get("BENCH_SECONDS", "4"))               # each iperf3 run (after OMIT_S)
OMIT_S = int(os.environ.get("BENCH_OMIT_S", "1"))
AGG_SECONDS = int(os.environ.get("BENCH_AGG_SECONDS", "4"))       # each run on the lines (after AGG_OMIT_S)
AGG_OMIT_S = int(os.environ.get("BENCH_AGG_OMIT_S", "2"))
LINE_ROUNDS = int(os.environ.get("BENCH_LINE_ROUNDS", "5"))        # interleaved rounds per line row
CPU_QUOTA = float(os.environ.get("BENCH_CPU_QUOTA", "0.25"))         # the budget rows: share of one core
STRESS_N = int(os.environ.get("BENCH_STRESS_N", "50"))              # downloads per stress row
STRESS_CONC = int(os.environ.get("BENCH_STRESS_CONCURRENCY", "5"))  # of them at a time
STRESS_S = float(os.environ.get("BENCH_STRESS_S", "2"))             # each one's length
CONNS = int(os.environ.get("BENCH_CONNS", "2000"))                # short connections per burst
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
TTFB_N0 = int(os.environ.get("BENCH_TTFB_N0", "1000"))            # sequential connections per path, no delay
TTFB_N = int(os.environ.get("BENCH_TTFB_N", "300"))                # the same per path and row through the delay line
RTT_MS = float(os.environ.get("BENCH_RTT_MS", "20"))               # WAN round trip of the delay line (0: no delay rows)
SERVER_RTT_MS = float(os.environ.get("BENCH_SERVER_RTT_MS", "0"))  # also delay the ISP-server link by this much
DELAY_QUEUE = int(os.environ.get("BENCH_DELAY_QUEUE", "4096"))     # frames held per direction at most
FLOOD_S = float(os.environ.get("BENCH_FLOOD_S", "0.5"))            # UDP flood that measures the delay line's capacity
HOLD = int(os.environ.get("BENCH_HOLD", "1000"))                  # connections held for memory/CPU
HOLD_WINDOW_S = float(os.environ.get("BENCH_HOLD_WINDOW_S", "5"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))               # converter and MCP workers
SS_METHOD = os.environ.get("BENCH_SS_METHOD", "aes-256-gcm")
CPE_TFO = os.environ.get("BENCH_CPE_TFO", "3")                    # net.ipv4.tcp_fastopen in the CPE (1: client bit)
TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT_S", "2700"))      # watchdog for the whole bench
SEED = int(os.environ.get("BENCH_SEED", "1"))                       # the delay line's random loss
PARTS = os.environ.get("BENCH_PARTS", "single,lines,budget,stress,setup,memory").split(",")
HELPER_S = TIMEOUT_S + 30                                          # helpers end by themselves after this
MPTCP = str(Path(".venv/bin/mptcp-cpe").resolve())


def parse_lines(text):
    """BENCH_LINES: rows separated by commas, each two WANs joined by "+", each WAN
    RATE@RTT[~LOSS] (Mbit/s, round-trip ms, random loss in % of frames each way)."""
    rows = []
    for row in text.split(","):
        wans = []
        for wan in row.split("+"):
            m = re.fullmatch(r"(\d+(?:\.\d+)?)@(\d+(?:\.\d+)?)(?:~(\d+(?:\.\d+)?))?", wan.strip())
            if not m or float(m[1]) <= 0 or float(m[3] or 0) >= 100:
                sys.exit(f"bench/converter: BENCH_LINES: {wan.strip()!r} in row {row.strip()!r} is not RATE@RTT[~LOSS] "
                         f"(Mbit/s > 0, round trip in ms, loss in % below 100)")
            wans.append((float(m[1]), float(m[2]), float(m[3] or 0)))
        if len(wans) != 2:
            sys.exit(f"bench/converter: BENCH_LINES: row {row.strip()!r} has {len(wans)} WANs, not 2")
        rows.append(tuple(wans))
    return rows


# Equal delays (40+40 with none, 60+20 at 10 ms both), DSL beside LTE (20 and 60 ms), and the
# same with 0.1% random loss on the LTE line (reported only).
LINES = parse_lines(os.environ.get("BENCH_LINES", "40@0+40@0,60@10+20@10,40@20+20@60,40@20+20@60~0.1"))


def line_label(spec):
    return "+".join(f"{r:g}@{d:g}" + (f"~{l:g}%" if l else "") for r, d, l in spec)
PY = sys.executable

# --- helpers run in the namespaces with `python -c` ---

# Echo server (srv): every byte read is written back; a connection ends when its client's does.
ECHO_SERVER = r'''
import selectors, socket, sys, time
ports, deadline = [int(p) for p in sys.argv[1].split(",")], time.monotonic() + float(sys.argv[2])
sel = selectors.EpollSelector()
for p in ports:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", p))
    s.listen(4096)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, None)
print("ready", flush=True)
while time.monotonic() < deadline:
    for key, _ in sel.select(1.0):
        if key.data is None:
            for _ in range(64):
                try:
                    c, _ = key.fileobj.accept()
                except BlockingIOError:
                    break
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ, 1)
            continue
        c = key.fileobj
        try:
            d = c.recv(65536)
            if d:
                c.send(d)  # a few octets: the socket buffer takes them
        except OSError:
            d = b""
        if not d:
            sel.unregister(c)
            c.close()
'''

# Download server (srv): on each connection, after its first octets, sends zeros as fast as the
# connection takes them until the client closes; one thread per connection.
DOWNLOAD_SERVER = r'''
import socket, sys, threading, time
port, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
block = bytes(256 << 10)

def serve(c):
    try:
        c.settimeout(30)
        if c.recv(64):
            while time.monotonic() < deadline:
                c.sendall(block)
    except OSError:
        pass
    finally:
        c.close()

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(256)
s.settimeout(1.0)
print("ready", flush=True)
while time.monotonic() < deadline:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''

# Download client (lan): N downloads from HOST:PORT, C at a time, each SECONDS long from its
# connect(); "fast" reads as fast as it can all along, "slow" reads 16 KiB every 5 ms (about
# 26 Mbit/s, slower than the unshaped WANs: the receive windows fill) for the first half, then
# as fast as it can. Prints each one's Mbit/s over its last half (None: failed).
DOWNLOAD_CLIENT = r'''
import json, socket, sys, threading, time
host, port, n, conc, seconds, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
results = [None] * n
lock, nxt = threading.Lock(), [0]

def one(i):
    try:
        c = socket.create_connection((host, port), timeout=10)
        t0, got, half = time.monotonic(), 0, None
        c.sendall(b"GET\n")
        c.settimeout(0.2)
        while time.monotonic() - t0 < seconds:
            slow = mode == "slow" and time.monotonic() - t0 < seconds / 2
            if half is None and time.monotonic() - t0 >= seconds / 2:
                half, got = time.monotonic(), 0
            try:
                d = c.recv(16384 if slow else 262144)
            except socket.timeout:
                continue
            if not d:
                break
            got += len(d)
            if slow:
                time.sleep(0.005)
        results[i] = got * 8 / (time.monotonic() - (half or t0)) / 1e6
        c.close()
    except OSError:
        results[i] = None

def worker():
    while True:
        with lock:
            i = nxt[0]
            nxt[0] += 1
        if i >= n:
            return
        one(i)

threads = [threading.Thread(target=worker) for _ in range(conc)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
'''

# Load client (lan). `burst PORTS N C`: N connections, C at a time, the ports in turn; each
# connects, sends 16 octets, reads their echo, closes; the time to first byte is from the
# connect() call to the first octet of the echo. `hold PORT N C WINDOW`: N connections kept
# open after their first echo; on "ping" from stdin each sends once more, spread over WINDOW
# seconds; on "close" all close.
CLIENT = r'''
import errno, json, select, selectors, socket, sys, time
SERVER, REQ = sys.argv[1], b"0123456789abcdef"
mode, deadline = sys.argv[2], time.monotonic() + float(sys.argv[3])
EV_R, EV_W = selectors.EVENT_READ, selectors.EVENT_WRITE

def connect_all(ports, n, conc, keep):
    """Open n connections (conc at a time), one echo each; keep: leave them open."""
    sel = selectors.EpollSelector()
    res = {p: {"ok": 0, "failed": 0, "ttfb": []} for p in ports}
    held, started, active = [], 0, 0
    t_start = time.perf_counter()

    def end(s, st, ok):
        nonlocal active
        sel.unregister(s)
        active -= 1
        r = res[st["port"]]
        if ok:
            r["ok"] += 1
            r["ttfb"].append(st["ttfb"])
            if keep:
                held.append(s)
                return
        else:
            r["failed"] += 1
        s.close()

    while (started < n or active) and time.monotonic() < deadline:
        while started < n and active < conc:
            port = ports[started % len(ports)]
            started += 1
            s = socket.socket()
            s.setblocking(False)
            st = {"port": port, "t0": time.perf_counter(), "got": 0, "ttfb": None}
            err = s.connect_ex((SERVER, port))
            if err not in (0, errno.EINPROGRESS):
                res[port]["failed"] += 1
                s.close()
                continue
            sel.register(s, EV_W, st)
            active += 1
        for key, ev in sel.select(0.5):
            s, st = key.fileobj, key.data
            if st["got"] == 0 and st["ttfb"] is None and ev & EV_W:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    end(s, st, False)
                    continue
                try:
                    s.send(REQ)
                except OSError:
                    end(s, st, False)
                    continue
                st["ttfb"] = 0.0  # sent: waiting for the first byte
                sel.modify(s, EV_R, st)
                continue
            try:
                d = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if not d:
                end(s, st, False)
                continue
            if st["got"] == 0:
                st["ttfb"] = time.perf_counter() - st["t0"]
            st["got"] += len(d)
            if st["got"] >= len(REQ):
                end(s, st, True)
    elapsed = time.perf_counter() - t_start
    for key in list(sel.get_map().values()):  # out of time
        res[key.data["port"]]["failed"] += 1
        sel.unregister(key.fileobj)
        key.fileobj.close()
    sel.close()
    return res, elapsed, held

def command():
    r, _, _ = select.select([sys.stdin], [], [], max(0.0, deadline - time.monotonic()))
    return sys.stdin.readline().split() if r else ["close"]

if mode == "burst":
    ports, n, conc = [int(p) for p in sys.argv[4].split(",")], int(sys.argv[5]), int(sys.argv[6])
    res, elapsed, _ = connect_all(ports, n, conc, False)
    print(json.dumps({"elapsed": elapsed, "ports": res}))
else:
    port, n, conc, window = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
    res, elapsed, held = connect_all([port], n, conc, True)
    print(json.dumps({"held": len(held), "failed": res[port]["failed"], "open_s": elapsed}), flush=True)
    while True:
        cmd = command()
        if not cmd or cmd[0] == "close":
            break
        # ping: one echo per connection, spread over the window
        sel = selectors.EpollSelector()
        got = {}
        for s in held:
            sel.register(s, EV_R)
            got[s] = 0
        t0, sent, echoed, broken = time.monotonic(), 0, 0, 0
        stop = min(deadline, t0 + window + 10)
        while (sent < len(held) or echoed + broken < sent) and time.monotonic() < stop:
            now = time.monotonic()
            while sent < len(held) and now >= t0 + sent * window / len(held):
                try:
                    held[sent].send(REQ)
                except OSError:
                    broken += 1
                sent += 1
            wait = min(0.05, max(0.0, t0 + sent * window / len(held) - now)) if sent < len(held) else 0.2
            for key, _ in sel.select(wait):
                s = key.fileobj
                try:
                    d = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    d = b""
                if not d:
                    broken += 1
                    sel.unregister(s)
                    continue
                got[s] += len(d)
                if got[s] >= len(REQ):
                    echoed += 1
                    got[s] = -10**9
        for s in list(sel.get_map().values()):
            sel.unregister(s.fileobj)
        sel.close()
        print(json.dumps({"pinged": sent, "echoed": echoed, "broken": broken, "ping_s": time.monotonic() - t0}), flush=True)
    for s in held:
        s.close()
'''

# Delay line (dly): for each link "A,B,SECONDS[,LOSS]", every frame that comes in on A leaves
# on B SECONDS later and the other way round, in order (one FIFO per direction, at most QMAX
# frames: more are dropped and counted); with LOSS (a fraction) each frame is also dropped at
# random with that probability, both ways, and counted as "lost" (seeded: BENCH_SEED). AF_PACKET with the virtio-net header, so GSO frames
# and offloaded checksums pass through as they came. On stdin "stats" prints the counters
# (frames forwarded, dropped by the queue bound or by the kernel when the socket buffer
# overflowed, how late frames left in total and at most since the last "stats", CPU
# seconds, whether it runs with real-time priority); "rt" and "shared" also switch it to
# SCHED_FIFO or back to time-sharing first; anything else or EOF prints them and ends.
# SCHED_FIFO: on a busy machine a time-shared forwarder is now and then not scheduled for
# 10-20 ms, and then holds frames longer than a wire would (the kernel's RT throttling still
# leaves 5% of each core to the others). Time-shared for the flood, which would otherwise
# measure how often the forwarder preempts the flood's sender.
DELAY_LINE = r'''
import collections, json, os, random, select, socket, struct, sys, time
SOL_PACKET, ETH_P_ALL, PACKET_STATISTICS, PACKET_VNET_HDR, PACKET_IGNORE_OUTGOING = 263, 3, 6, 15, 23
links, qmax, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
rt = False

def schedule(fifo):
    global rt
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO if fifo else os.SCHED_OTHER, os.sched_param(10 if fifo else 0))
        rt = fifo
    except OSError:
        rt = False

schedule(True)

def port(dev):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing before bind
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # not the frames this program sends
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((dev, ETH_P_ALL))
    s.setblocking(False)
    return s

class Way:
    def __init__(self, name, src, dst, delay, loss):
        self.name, self.src, self.dst, self.delay, self.loss, self.q = name, src, dst, delay, loss, collections.deque()
        self.fwd = self.qdrop = self.txerr = self.kdrop = self.maxq = self.lost = 0
        self.late_sum = self.late_max = self.last = 0.0

ways, by_fd = [], {}
for spec in links.split(";"):
    a, b, d, *loss = spec.split(",")
    pa, pb, loss = port(a), port(b), float(loss[0]) if loss else 0.0
    for w in (Way(f"{a}>{b}", pa, pb, float(d), loss), Way(f"{b}>{a}", pb, pa, float(d), loss)):
        ways.append(w)
        by_fd[w.src.fileno()] = w
fds = list(by_fd) + [sys.stdin.fileno()]
buf = bytearray(262144)
view = memoryview(buf)
print("ready", flush=True)

def stats():
    for w in ways:
        w.kdrop += struct.unpack("II", w.src.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1]  # read and reset
    t = os.times()
    out = {"cpu_s": t.user + t.system, "rt": rt, "ways": {w.name: {
        "fwd": w.fwd, "qdrop": w.qdrop, "txerr": w.txerr, "kdrop": w.kdrop, "maxq": w.maxq, "lost": w.lost,
        "late_sum_s": w.late_sum, "late_max_s": w.late_max, "last_fwd": w.last} for w in ways}}
    for w in ways:
        w.late_max = 0.0
    return out

while time.monotonic() < deadline:
    now = time.monotonic()
    heads = []
    for w in ways:
        q = w.q
        while q and q[0][0] <= now:
            due, frame = q.popleft()
            try:
                w.dst.send(frame)
            except OSError:
                w.txerr += 1
                continue
            w.fwd += 1
            w.last = time.monotonic()
            late = w.last - due
            w.late_sum += late
            w.late_max = max(w.late_max, late)
        if q:
            heads.append(q[0][0])
    wait = min(min(heads) - time.monotonic(), 0.5) if heads else 0.5
    ready, _, _ = select.select(fds, [], [], max(0.0, wait))  # select() sleeps to the microsecond, epoll to the ms
    for fd in ready:
        w = by_fd.get(fd)
        if w is None:
            cmd = sys.stdin.readline().strip()
            if cmd in ("rt", "shared"):
                schedule(cmd == "rt")
            print(json.dumps(stats()), flush=True)
            if cmd not in ("stats", "rt", "shared"):
                sys.exit(0)
            continue
        q = w.q
        for _ in range(256):
            try:
                n = w.src.recv_into(buf)
            except BlockingIOError:
                break
            if len(q) >= qmax:
                w.qdrop += 1
            elif w.loss and rng.random() < w.loss:
                w.lost += 1
            else:
                q.append((time.monotonic() + w.delay, bytes(view[:n])))
        w.maxq = max(w.maxq, len(q))
'''

# Connect probe (cpe): N plain TCP connects to HOST:PORT from SOURCE (which picks the WAN by
# the CPE's source rules), each closed at once; prints the connect() times in seconds.
CONNECT_PROBE = r'''
import json, socket, sys, time
host, port, source, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
out = []
for _ in range(n):
    s = socket.socket()
    s.settimeout(3)
    s.bind((source, 0))
    t0 = time.perf_counter()
    try:
        s.connect((host, port))
        out.append(time.perf_counter() - t0)
    except OSError:
        pass
    s.close()
    time.sleep(0.005)
print(json.dumps(out))
'''

# UDP flood (cpe): small datagrams to HOST:9 as fast as this loop goes for SECONDS; prints
# how many were sent, and when it started (CLOCK_MONOTONIC, the same in every namespace).
FLOOD = r'''
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
dst, seconds, payload, sent, refused = (sys.argv[1], 9), float(sys.argv[2]), b"x" * 18, 0, 0
t0 = time.monotonic()
while time.monotonic() < t0 + seconds:
    for _ in range(100):
        try:
            s.sendto(payload, dst)
            sent += 1
        except OSError:
            refused += 1
print(json.dumps({"sent": sent, "refused": refused, "t0": t0, "seconds": time.monotonic() - t0}))
'''

sh = functools.partial(netlab.sh, timeout=30)  # every command bounded; the long ones say how long


def note(msg):
    print(f"bench/converter: {msg}", file=sys.stderr, flush=True)


# Each veth, its two ends, and the addresses and routes of the end that the delay line's
# re-cabling replaces (see recable): kept here once for building and for re-cabling.
LINKS = {"lan0": (NS_LAN, NS_CPE), "wan1": (NS_CPE, NS_ISP), "wan2": (NS_CPE, NS_ISP), "srv0": (NS_ISP, NS_SRV)}
FAR_END = {
    "wan1": ["addr add 198.51.100.1/24 dev wan1", "addr add 2001:db8:a::1/64 dev wan1 nodad",
             "route add 192.0.2.0/24 via 198.51.100.2", "-6 route add 2001:db8:1::/64 via 2001:db8:a::2"],
    "wan2": ["addr add 203.0.113.1/24 dev wan2"],
    "srv0": [f"addr add {SERVER}/24 dev srv0", "route add default via 198.18.1.254"],
}


def topology():
    """The links, addresses, routes and sysctls, in the namespaces (NAMESPACES) made for them."""
    for dev, (a, b) in LINKS.items():
        veth(a, dev, b, dev)
    script = {
        NS_LAN: netlab.CONVERTER_LAN,
        NS_CPE: netlab.CONVERTER_CPE,
        NS_ISP: [f"addr add {MCP}/32 dev lo", "addr add 198.18.1.254/24 dev srv0", *FAR_END["wan1"], *FAR_END["wan2"]],
        NS_SRV: FAR_END["srv0"],
    }
    for ns, lines in script.items():
        for line in lines:
            sh("ip", "-n", ns, *line.split())
    sysctls = {
        NS_CPE: ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.mptcp.enabled=1", f"net.ipv4.tcp_fastopen={CPE_TFO}",
                 "net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.default.rp_filter=2"],
        NS_ISP: ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.mptcp.enabled=1", "net.ipv4.tcp_fastopen=3"],
        # The delay line's: no addresses, no IPv6, no forwarding; frames only pass its AF_PACKET sockets.
        NS_DLY: ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"],
    }
    for ns, items in sysctls.items():
        sh("sysctl", "-qw", *items, ns=ns)


def shape(rates):
    """tbf on both egresses of each WAN veth (the CPE's and the isp's); None: unshaped."""
    for ns in (NS_CPE, NS_ISP):
        for dev, rate in zip(("wan1", "wan2"), rates or (None, None)):
            if rate is None:
                sh("tc", "-n", ns, "qdisc", "del", "dev", dev, "root", check=False)
            else:
                sh("tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{rate:g}mbit",
                   "burst", "32kb", "latency", "50ms")


def offloads(on):
    """TSO and GSO on both ends of each WAN veth on or off (off: at most 1514-octet frames)."""
    for ns in (NS_CPE, NS_ISP):
        for dev in ("wan1", "wan2"):
            sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "on" if on else "off", "gso", "on" if on else "off")


def wan_octets():
    """{wan: octets sent and received} on the CPE's WAN veths."""
    links = json.loads(sh("ip", "-n", NS_CPE, "-j", "-s", "link", "show", ns=None).stdout)
    return {i["ifname"]: i["stats64"]["rx"]["bytes"] + i["stats64"]["tx"]["bytes"] for i in links if i["ifname"] in ("wan1", "wan2")}


@contextlib.contextmanager
def cpu_quota(name, pids, share):
    """The processes pids (all their threads, and children they fork later) confined to
    `share` of one core for the block: a cpu cgroup of their own, cgroup v1's
    cpu.cfs_quota_us where the cpu controller is mounted on its own (as here), v2's cpu.max
    otherwise. Back in the cgroups they came from after."""
    v1 = Path("/sys/fs/cgroup/cpu")
    period = 100000
    if (v1 / "cpu.cfs_quota_us").exists():
        group, controller = v1 / f"bench-cv-{name}", "cpu"
        group.mkdir(exist_ok=True)
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(int(share * period)))
    else:
        root = Path("/sys/fs/cgroup")
        if "cpu" not in (root / "cgroup.controllers").read_text().split():
            raise RuntimeError("no cpu cgroup controller (v1 /sys/fs/cgroup/cpu or v2 cpu in cgroup.controllers)")
        (root / "cgroup.subtree_control").write_text("+cpu")
        group, controller = root / f"bench-cv-{name}", ""
        group.mkdir(exist_ok=True)
        (group / "cpu.max").write_text(f"{int(share * period)} {period}")
    home = {}
    for pid in pids:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            if controller in ctrls.split(",") or (not controller and ctrls == ""):
                home[pid] = group.parent / path.lstrip("/")
        (group / "cgroup.procs").write_text(str(pid))
    try:
        yield
    finally:
        for pid in pids:
            try:
                (home.get(pid, group.parent) / "cgroup.procs").write_text(str(pid))
            except OSError:
                pass  # gone
        for pid in (group / "cgroup.procs").read_text().split():  # children forked in the meantime
            try:
                (group.parent / "cgroup.procs").write_text(pid)
            except OSError:
                pass
        group.rmdir()


def quiet(limit_s=10.0):
    """Wait until the WANs carry less than 1 Mbit/s for half a second (what the last run left
    in queues and relays has drained), at most limit_s."""
    deadline, last, calm = time.monotonic() + limit_s, wan_octets(), 0
    while time.monotonic() < deadline and calm < 2:
        time.sleep(0.25)
        now = wan_octets()
        calm = calm + 1 if sum(now.values()) - sum(last.values()) < 1e6 / 8 / 4 else 0
        last = now


def recable(delays, on):
    """Re-cable each link in delays ({dev: one-way seconds}) through the delay line's namespace,
    or back (on=False). The far end (FAR_END: the ISP's on the WANs, the server's on srv0)
    moves into b-cv-dly as DEV-o, a new veth DEV (far end) / DEV-n (b-cv-dly) takes its place
    and gets its addresses and routes again; the near end, with the CPE's addresses, rules
    and MPTCP endpoint, stays as it is. Back: DEV-n goes (and with it the new DEV), DEV-o
    returns. Neighbours are flushed on the near end: the far end's MAC address changes."""
    for dev in delays:
        near, far = LINKS[dev]
        if on:
            sh("ip", "-n", far, "link", "set", dev, "netns", NS_DLY)
            sh("ip", "-n", NS_DLY, "link", "set", dev, "name", f"{dev}-o")
            sh("ip", "link", "add", dev, "netns", far, "type", "veth", "peer", "name", f"{dev}-n", "netns", NS_DLY)
            for end in (f"{dev}-o", f"{dev}-n"):
                sh("ip", "-n", NS_DLY, "link", "set", end, "up")
        else:
            sh("ip", "-n", NS_DLY, "link", "del", f"{dev}-n")
            sh("ip", "-n", NS_DLY, "link", "set", f"{dev}-o", "down")
            sh("ip", "-n", NS_DLY, "link", "set", f"{dev}-o", "name", dev)
            sh("ip", "-n", NS_DLY, "link", "set", dev, "netns", far)
        sh("ip", "-n", far, "link", "set", dev, "up")
        for line in FAR_END[dev]:
            sh("ip", "-n", far, *line.split())
        sh("ip", "-n", near, "neigh", "flush", "dev", dev)


def delta(after, before, key):
    return after.get(key, 0) - before.get(key, 0)


def line_delta(after, before, keys, dev=None):
    """How much the delay line's counters `keys` grew between two of its "stats" answers, over
    both directions of link dev (None: every link)."""
    return sum(after["ways"][w][k] - before["ways"][w][k] for w in after["ways"]
               if dev is None or w.startswith(f"{dev}-") for k in keys)


DROPS = ("qdrop", "kdrop", "txerr")  # the delay line's own drops (its random loss is "lost")


def memory_kb(pids):
    """(sum of VmRSS, sum of Pss) in kB."""
    rss = pss = 0
    for pid in pids:
        try:
            rss += next(int(l.split()[1]) for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("VmRSS:"))
            pss += next(int(l.split()[1]) for l in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines() if l.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return rss, pss


def pct(values, q):
    """Nearest-rank percentile."""
    v = sorted(values)
    return v[max(0, math.ceil(q / 100 * len(v)) - 1)] if v else float("nan")


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


class Bench:
    def __init__(self, tmp, procs):
        self.tmp = tmp
        self.procs = procs  # each one's stderr in tmp/<name>.log
        self.pids = {}
        self.problems = []

    def start(self, name, ns, *cmd, stdout=subprocess.DEVNULL, stdin=None):
        return self.procs.start(name, *cmd, ns=ns, stdin=stdin, stdout=stdout)

    # -- set-up
    def start_all(self):
        tmp = self.tmp
        echo = self.start("echo", NS_SRV, PY, "-c", ECHO_SERVER, f"{ECHO_CONV},{ECHO_DIRECT}", str(HELPER_S), stdout=subprocess.PIPE)
        if echo.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the echo server did not start:\n{self.procs.tail('echo')}")
        for port in (IPERF_CONV, IPERF_KERNEL, IPERF_SS, IPERF_OMR):
            self.start(f"iperf3-{port}", NS_SRV, "iperf3", "-s", "-p", str(port))
        download = self.start("download", NS_SRV, PY, "-c", DOWNLOAD_SERVER, str(DOWNLOAD_CONV), str(HELPER_S), stdout=subprocess.PIPE)
        if download.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the download server did not start:\n{self.procs.tail('download')}")
        (tmp / "mcp.json").write_text(json.dumps({
            "host": "isp", "clients": ["198.51.100.0/24", "203.0.113.0/24", "2001:db8:a::/64"],
            "workers": WORKERS, "drain_timeout_s": 2}))
        self.pids["mcp"] = self.start("mcp", NS_ISP, MPTCP, "mcp", "--config", str(tmp / "mcp.json")).pid
        self.pids["ss-server"] = self.start("ss-server", NS_ISP, "ss-server", "-s", MCP, "-p", str(SS_PORT), "-k", SS_KEY,
                                            "-m", SS_METHOD).pid
        # OpenMPTCProuter's way: the same pair with every socket MPTCP (mptcpize: an LD_PRELOAD
        # that opens IPPROTO_MPTCP where the program asks for TCP), over the same endpoints.
        self.pids["omr-server"] = self.start("omr-server", NS_ISP, "mptcpize", "run", "ss-server", "-s", MCP, "-p", str(OMR_PORT),
                                             "-k", SS_KEY, "-m", SS_METHOD).pid
        (tmp / "converter.json").write_text(json.dumps({
            "host": "cpe", "lan_interfaces": ["lan0"], "mcps": [[MCP]], "mcp_file": str(tmp / "mcp-state.json"),
            "workers": WORKERS, "drain_timeout_s": 2, "bypass": {"ports": [IPERF_KERNEL, IPERF_SS, IPERF_OMR, ECHO_DIRECT]}}))
        self.pids["converter"] = self.start("converter", NS_CPE, MPTCP, "converter", "--config", str(tmp / "converter.json")).pid
        self.pids["ss-redir"] = self.start("ss-redir", NS_CPE, "ss-redir", "-s", MCP, "-p", str(SS_PORT), "-b", "0.0.0.0",
                                           "-l", str(SS_REDIR_PORT), "-k", SS_KEY, "-m", SS_METHOD).pid
        self.pids["omr-redir"] = self.start("omr-redir", NS_CPE, "mptcpize", "run", "ss-redir", "-s", MCP, "-p", str(OMR_PORT),
                                            "-b", "0.0.0.0", "-l", str(OMR_REDIR_PORT), "-k", SS_KEY, "-m", SS_METHOD).pid
        # ss-redir's share of the LAN: one port the converter bypasses, NATed to ss-redir; the
        # OMR-style pair's: another.
        sh("nft", f"add table ip b_cv_ss; add chain ip b_cv_ss pre {{ type nat hook prerouting priority dstnat; }}; "
                  f"add rule ip b_cv_ss pre iifname lan0 tcp dport {IPERF_SS} redirect to :{SS_REDIR_PORT}; "
                  f"add rule ip b_cv_ss pre iifname lan0 tcp dport {IPERF_OMR} redirect to :{OMR_REDIR_PORT}", ns=NS_CPE)

        def wait_until(what, ready):  # every process started so far must keep running
            self.procs.wait_for(what, ready, timeout=10, every=0.05)

        wait_until("iperf3 servers", lambda: all(listening(NS_SRV, p) for p in (IPERF_CONV, IPERF_KERNEL, IPERF_SS, IPERF_OMR)))
        wait_until("the MCP", lambda: listening(NS_ISP, 5124) and len(tree(self.pids["mcp"])) > WORKERS)
        wait_until("ss-server and ss-redir", lambda: listening(NS_ISP, SS_PORT) and listening(NS_CPE, SS_REDIR_PORT))
        wait_until("the OMR-style pair", lambda: listening(NS_ISP, OMR_PORT) and listening(NS_CPE, OMR_REDIR_PORT))
        wait_until("the converter", lambda: sh("nft", "list", "table", "inet", "mptcp_cpe_converter", ns=NS_CPE, check=False).returncode == 0
                   and len(tree(self.pids["converter"])) > WORKERS)

    def burst(self, ports, n, conc, timeout=120):
        r = sh(PY, "-c", CLIENT, SERVER, "burst", str(timeout), ",".join(map(str, ports)), str(n), str(conc), ns=NS_LAN,
               timeout=timeout + 30)
        out = json.loads(r.stdout)
        return out["elapsed"], {int(p): v for p, v in out["ports"].items()}

    def warm_up(self):
        """A few connections each way: the converter's first one has no TFO cookie for the MCP;
        also checks that the converter port goes through the MCP and the other one does not."""
        isp0 = netstat(NS_ISP)
        _, res = self.burst([ECHO_CONV], 5, 1, timeout=30)
        isp1 = netstat(NS_ISP)
        _, res2 = self.burst([ECHO_DIRECT], 5, 1, timeout=30)
        isp2 = netstat(NS_ISP)
        via = delta(isp1, isp0, "MPTcpExt.MPCapableSYNRX")
        if res[ECHO_CONV]["ok"] != 5 or via < 5:
            raise RuntimeError(f"warm-up through the converter: {res[ECHO_CONV]['ok']} of 5 echoed, {via} reached the MCP:\n"
                               f"{self.procs.tail('converter')}\n{self.procs.tail('mcp')}")
        if res2[ECHO_DIRECT]["ok"] != 5 or delta(isp2, isp1, "MPTcpExt.MPCapableSYNRX"):
            raise RuntimeError("warm-up of the direct path failed or was intercepted")

    # -- single flow
    def iperf(self, port, reverse, seconds, omit, client_ns=NS_LAN, bind=None, probe=None):
        """One iperf3 flow (-R: the server sends). Goodput is what the receiving socket took in
        order (tcpi_bytes_received) over a window of `seconds` that starts `omit` seconds in
        and ends a second before the flow does: no ramp-up, no queues filling or draining.
        probe: also called at both ends of that window, its two results left in self.window."""
        cmd = (["iperf3", "-c", SERVER, "-p", str(port), "-t", str(omit + seconds + 1), "-J"] + (["-R"] if reverse else [])
               + (["-B", bind] if bind else []))
        relay = {IPERF_CONV: ("converter", "mcp"), IPERF_SS: ("ss-redir", "ss-server"),
                 IPERF_OMR: ("omr-redir", "omr-server")}.get(port, ())
        pids = [tree(self.pids[n]) for n in relay]
        receiver = (client_ns, f"dport = :{port}") if reverse else (NS_SRV, f"sport = :{port}")
        isp0 = netstat(NS_ISP)
        t_start = time.monotonic()
        p = subprocess.Popen(["ip", "netns", "exec", client_ns, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(max(0.0, t_start + omit - time.monotonic()))
            b0, t0 = received(*receiver)
            cpu0 = [cpu_seconds(x) for x in pids]
            p0 = probe() if probe else None
            time.sleep(max(0.0, t0 + seconds - time.monotonic()))
            b1, t1 = received(*receiver)
            self.window = (p0, probe() if probe else None)
            cpu = [(cpu_seconds(x) - c) / (t1 - t0) * 100 for x, c in zip(pids, cpu0)]
            out, err = p.communicate(timeout=seconds + omit + 40)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        mp = delta(netstat(NS_ISP), isp0, "MPTcpExt.MPCapableSYNRX")
        try:
            j = json.loads(out)
            retr = j["end"]["sum_sent"].get("retransmits")
            if "error" in j:
                raise ValueError(j["error"])
        except (ValueError, KeyError, TypeError) as exc:
            self.problems.append(f"iperf3 to port {port}{' -R' if reverse else ''} failed: {exc} {(err or '')[-300:]}")
            return None, cpu, None
        expect_mptcp = port in (IPERF_CONV, IPERF_OMR)
        if expect_mptcp != (mp > 0):
            self.problems.append(f"iperf3 to port {port}: {mp} MPTCP connections reached the MCP "
                                 f"({'expected some' if expect_mptcp else 'expected none'}): the path is not the one measured")
        return (b1 - b0) * 8 / (t1 - t0) / 1e6, cpu, retr

    def throughput(self):
        shape(None)
        paths = ((IPERF_KERNEL, "kernel"), (IPERF_CONV, "converter"), (IPERF_SS, "shadowsocks"), (IPERF_OMR, "omr"))
        out = {(name, rev): [] for _, name in paths for rev in (False, True)}
        for i in range(ROUNDS):
            note(f"single flow, round {i + 1} of {ROUNDS}")
            for rev in (False, True):
                for port, name in paths:
                    out[(name, rev)].append(self.iperf(port, rev, SECONDS, OMIT_S))
        return out

    def lines(self):
        """Aggregation on access lines. Per BENCH_LINES row: wan1 and wan2 re-cabled through the
        delay line (each with its round trip and random loss), tbf-shaped at their rates on both
        ends, segmentation offloads off on both ends (the line then carries and drops frames of
        at most 1514 octets, as a wire does); then LINE_ROUNDS interleaved rounds of one flow
        each: through the converter, through the OMR-style peer, and plain TCP from the CPE over
        WAN1 alone and over WAN2 alone (bound to the WAN's address: the CPE's source rules),
        each up and down. Each run also counts the octets each WAN carried."""
        runs = (("converter", IPERF_CONV, NS_LAN, None), ("omr", IPERF_OMR, NS_LAN, None),
                ("tcp_wan1", IPERF_KERNEL, NS_CPE, "wan1"), ("tcp_wan2", IPERF_KERNEL, NS_CPE, "wan2"))
        other_wan = {"wan1": "wan2", "wan2": "wan1"}
        out = []
        for spec in LINES:
            label = line_label(spec)
            note(f"lines {label}: {LINE_ROUNDS} interleaved rounds")
            delays = {dev: (rtt / 2e3, loss / 100) for dev, (_, rtt, loss) in zip(("wan1", "wan2"), spec)}
            res = {(name, rev): [] for name, *_ in runs for rev in (False, True)}
            background = 0.0  # the most the other WAN carried of a single-WAN run's octets
            with self.delay_line(delays) as ask:
                shape(tuple(rate for rate, _, _ in spec))
                offloads(False)
                try:
                    for wan, addr in WAN_ADDR.items():  # the CPE's source rules put each single-WAN run on its WAN
                        got = sh("ip", "-j", "route", "get", SERVER, "from", addr, ns=NS_CPE).stdout
                        if json.loads(got)[0].get("dev") != wan:
                            raise RuntimeError(f"lines {label}: from {addr} the CPE routes to {got.strip()}, not by {wan}")
                    s0, t0 = ask(), time.monotonic()
                    for _ in range(LINE_ROUNDS):
                        for rev in (False, True):
                            for name, port, ns, wan in runs:
                                quiet()
                                goodput, _, retr = self.iperf(port, rev, AGG_SECONDS, AGG_OMIT_S, client_ns=ns,
                                                              bind=WAN_ADDR.get(wan), probe=wan_octets)
                                o0, o1 = self.window
                                carried = {w: o1[w] - o0[w] for w in o1}
                                res[(name, rev)].append((goodput, carried, retr))
                                if wan and goodput is not None:
                                    other = carried[other_wan[wan]] / max(sum(carried.values()), 1)
                                    background = max(background, other)
                                    if other > 0.5:
                                        self.problems.append(f"lines {label}: {name} {'down' if rev else 'up'}: "
                                                             f"{other_wan[wan]} carried {other:.0%} of the octets: not one WAN alone")
                    s1, wall = ask(), time.monotonic() - t0
                finally:
                    offloads(True)
                    shape(None)
            # background: what earlier flows left (relays and MPTCP connections closing)
            line = {"wall": wall, "rt": s1["rt"], "cpu_s": s1["cpu_s"] - s0["cpu_s"],
                    "late_max_s": max(v["late_max_s"] for v in s1["ways"].values()),
                    "lost": {d: line_delta(s1, s0, ("lost",), d) for d in delays},
                    "frames": {d: line_delta(s1, s0, ("fwd",), d) for d in delays},
                    "dropped": line_delta(s1, s0, DROPS), "background": background}
            if line["dropped"]:
                self.problems.append(f"lines {label}: the delay line dropped {line['dropped']} frames beside its random loss")
            for dev, (_, loss) in delays.items():
                if loss and not line["lost"][dev]:
                    self.problems.append(f"lines {label}: {dev} was to lose {loss:.2%} of its frames and lost none")
            out.append((spec, res, line))
        return out

    # -- a router's CPU budget
    def budget(self):
        """Unshaped WANs, the CPE side of the converter and of the OMR-style peer each confined
        to CPU_QUOTA of one core while it carries one flow (the ISP side unconfined), ROUNDS
        interleaved rounds, up and down."""
        note(f"budget: the CPE side confined to {CPU_QUOTA:.0%} of a core, {ROUNDS} rounds")
        shape(None)
        out = {(name, rev): [] for name in ("converter", "omr") for rev in (False, True)}
        for _ in range(ROUNDS):
            for rev in (False, True):
                for name, port, relay in (("converter", IPERF_CONV, "converter"), ("omr", IPERF_OMR, "omr-redir")):
                    with cpu_quota(name, tree(self.pids[relay]), CPU_QUOTA):
                        out[(name, rev)].append(self.iperf(port, rev, SECONDS, OMIT_S))
        return out

    # -- stalls
    def stress(self):
        """STRESS_N downloads through the converter, unshaped, STRESS_CONC at a time, with a
        fast LAN reader and then with a slow one; the kernel's counters of what they did."""
        out = {}
        for mode in ("fast", "slow"):
            note(f"stress: {STRESS_N} downloads through the converter, {STRESS_CONC} at a time, {mode} LAN reader")
            cpe0, isp0 = netstat(NS_CPE), netstat(NS_ISP)
            timeout = STRESS_N / max(STRESS_CONC, 1) * (STRESS_S + 12) + 60
            r = sh(PY, "-c", DOWNLOAD_CLIENT, SERVER, str(DOWNLOAD_CONV), str(STRESS_N), str(STRESS_CONC), str(STRESS_S), mode,
                   ns=NS_LAN, timeout=timeout)
            cpe1, isp1 = netstat(NS_CPE), netstat(NS_ISP)
            out[mode] = {"mbit": json.loads(r.stdout), "via_mcp": delta(isp1, isp0, "MPTcpExt.MPCapableSYNRX"),
                         "joins": delta(isp1, isp0, "MPTcpExt.MPJoinSynRx"),
                         "tfo_active": delta(cpe1, cpe0, "TcpExt.TCPFastOpenActive"),
                         "no_dss_in_window": delta(cpe1, cpe0, "MPTcpExt.NoDSSInWindow"),
                         "zero_window_drop": delta(cpe1, cpe0, "TcpExt.TCPZeroWindowDrop"),
                         "mcp_retrans": delta(isp1, isp0, "MPTcpExt.MPTCPRetrans")}
        return out

    # -- setup
    def setup(self):
        note(f"setup: {TTFB_N0} sequential connections per path, then bursts of {CONNS} ({CONCURRENCY} at a time)")
        cpe0, isp0 = netstat(NS_CPE), netstat(NS_ISP)
        _, seq = self.burst([ECHO_CONV, ECHO_DIRECT], 2 * TTFB_N0, 1)  # alternating: same background for both
        cpe1, isp1 = netstat(NS_CPE), netstat(NS_ISP)
        conv_pids, mcp_pids = tree(self.pids["converter"]), tree(self.pids["mcp"])
        cpu0 = cpu_seconds(conv_pids), cpu_seconds(mcp_pids)
        conv_s, conv = self.burst([ECHO_CONV], CONNS, CONCURRENCY)
        cpu1 = cpu_seconds(conv_pids), cpu_seconds(mcp_pids)
        cpe2, isp2 = netstat(NS_CPE), netstat(NS_ISP)
        direct_s, direct = self.burst([ECHO_DIRECT], CONNS, CONCURRENCY)
        kern = {
            "seq_via_mcp": delta(isp1, isp0, "MPTcpExt.MPCapableSYNRX"),
            "burst_via_mcp": delta(isp2, isp1, "MPTcpExt.MPCapableSYNRX"),
            "tfo_active": delta(cpe2, cpe0, "TcpExt.TCPFastOpenActive"),
            "tfo_active_fail": delta(cpe2, cpe0, "TcpExt.TCPFastOpenActiveFail"),
            "tfo_passive": delta(isp2, isp0, "TcpExt.TCPFastOpenPassive"),
            "tfo_passive_fail": delta(isp2, isp0, "TcpExt.TCPFastOpenPassiveFail"),
            "cpu_conv_s": cpu1[0] - cpu0[0], "cpu_mcp_s": cpu1[1] - cpu0[1],
        }
        return seq, (conv_s, conv[ECHO_CONV]), (direct_s, direct[ECHO_DIRECT]), kern, self.delayed() if RTT_MS > 0 else None

    def ttfb_row(self, n, rtt_s):
        """n sequential connections per path, converter and direct alternating, with the
        kernel's counters of what they did."""
        cpe0, isp0 = netstat(NS_CPE), netstat(NS_ISP)
        _, seq = self.burst([ECHO_CONV, ECHO_DIRECT], 2 * n, 1, timeout=60 + 2 * n * 4 * rtt_s)
        cpe1, isp1 = netstat(NS_CPE), netstat(NS_ISP)
        out = {"conv": seq[ECHO_CONV], "direct": seq[ECHO_DIRECT]}
        for key, (after, before, counter) in {
                "via_mcp": (isp1, isp0, "MPTcpExt.MPCapableSYNRX"), "joins": (isp1, isp0, "MPTcpExt.MPJoinSynRx"),
                "tfo_active": (cpe1, cpe0, "TcpExt.TCPFastOpenActive"), "tfo_active_fail": (cpe1, cpe0, "TcpExt.TCPFastOpenActiveFail"),
                "tfo_passive": (isp1, isp0, "TcpExt.TCPFastOpenPassive")}.items():
            out[key] = delta(after, before, counter)
        return out

    @contextlib.contextmanager
    def delay_line(self, delays):
        """delays: {dev: (one-way seconds, loss fraction)}. Re-cables those links through the
        delay line's namespace (recable) and runs the line for the block; yields ask(cmd),
        which sends it a command and returns its counters (DELAY_LINE). Back as before after."""
        line = None
        recable(delays, True)
        try:
            specs = ";".join(f"{d}-o,{d}-n,{sec},{loss}" for d, (sec, loss) in delays.items())
            line = self.start("delay-line", NS_DLY, PY, "-c", DELAY_LINE, specs, str(DELAY_QUEUE), str(HELPER_S), str(SEED),
                              stdout=subprocess.PIPE, stdin=subprocess.PIPE)
            if line.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the delay line did not start:\n{self.procs.tail('delay-line')}")

            def ask(cmd="stats"):
                line.stdin.write(f"{cmd}\n")
                line.stdin.flush()
                reply = line.stdout.readline()
                if not reply:
                    raise RuntimeError(f"the delay line ended:\n{self.procs.tail('delay-line')}")
                return json.loads(reply)

            yield ask
        finally:
            if line is not None:
                try:
                    line.stdin.close()  # EOF: it ends
                    line.wait(5)
                except (OSError, subprocess.TimeoutExpired):
                    line.kill()
                    line.wait()
                self.procs.forget(line)
            recable(delays, False)

    def delayed(self):
        """The sequential rows again with a WAN round trip: wan1 and wan2 (and srv0 with
        BENCH_SERVER_RTT_MS) re-cabled through the delay line, which runs only for this part.
        First checks the line itself: plain TCP connects from the CPE over each WAN, and its
        capacity under a UDP flood; then the rows with the CPE's TFO as set and with it off."""
        delays = {"wan1": RTT_MS / 2e3, "wan2": RTT_MS / 2e3}
        if SERVER_RTT_MS > 0:
            delays["srv0"] = SERVER_RTT_MS / 2e3
        rtt_s = (RTT_MS + SERVER_RTT_MS) / 1e3
        note(f"setup through the delay line ({', '.join(f'{d} {s * 2e3:g} ms' for d, s in delays.items())} round trip): "
             f"{TTFB_N} sequential connections per path and row")
        out = {"delays": delays}
        with self.delay_line({d: (sec, 0.0) for d, sec in delays.items()}) as ask:
            # The line itself: a plain TCP connect takes one round trip; the first one of each
            # WAN also waits for ARP through the line and is left out.
            out["probe"] = {}
            for wan, source in WAN_ADDR.items():
                s0 = ask()
                r = sh(PY, "-c", CONNECT_PROBE, SERVER, str(ECHO_DIRECT), source, "21", ns=NS_CPE, timeout=120)
                s1 = ask()
                out["probe"][wan] = (json.loads(r.stdout)[1:], line_delta(s1, s0, ("fwd",), wan))
            s0 = ask("shared")
            r = sh(PY, "-c", FLOOD, "198.51.100.1", str(FLOOD_S), ns=NS_CPE, timeout=FLOOD_S + 30)
            time.sleep(max(delays.values()) * 2 + 0.3)  # what the line still holds leaves
            s1 = ask("rt")
            w = s1["ways"]["wan1-o>wan1-n"], s0["ways"]["wan1-o>wan1-n"]
            fl = json.loads(r.stdout)
            # Every flood frame that went through left between t0 + delay and the last forward.
            busy = w[0]["last_fwd"] - fl["t0"] - delays["wan1"]
            out["flood"] = {**fl, "fwd": w[0]["fwd"] - w[1]["fwd"], "busy_s": busy,
                            "dropped": sum(w[0][k] - w[1][k] for k in DROPS),
                            "maxq": w[0]["maxq"]}
            # The rows.
            s0, t0 = ask(), time.monotonic()
            out["rows"] = {CPE_TFO: self.ttfb_row(TTFB_N, rtt_s)}
            if CPE_TFO != "0":
                sh("sysctl", "-qw", "net.ipv4.tcp_fastopen=0", ns=NS_CPE)
                try:
                    out["rows"]["0"] = self.ttfb_row(TTFB_N, rtt_s)
                finally:
                    sh("sysctl", "-qw", f"net.ipv4.tcp_fastopen={CPE_TFO}", ns=NS_CPE)
            s1, wall = ask(), time.monotonic() - t0
            n, late = line_delta(s1, s0, ("fwd",)), line_delta(s1, s0, ("late_sum_s",))
            out["line"] = {"wall": wall, "frames": n, "rt": s1["rt"], "per_dev": {d: line_delta(s1, s0, ("fwd",), d) for d in delays},
                           "cpu_s": s1["cpu_s"] - s0["cpu_s"], "late_avg_s": late / max(n, 1),
                           "late_max_s": max(v["late_max_s"] for v in s1["ways"].values()),
                           "dropped": line_delta(s1, s0, DROPS)}
        return out

    # -- memory and CPU with connections held open
    def hold(self):
        note(f"holding {HOLD} connections through the converter")
        conv_pids, mcp_pids = tree(self.pids["converter"]), tree(self.pids["mcp"])
        before = memory_kb(conv_pids)
        client = self.start("hold", NS_LAN, PY, "-c", CLIENT, SERVER, "hold", str(HELPER_S), str(ECHO_CONV), str(HOLD), "50",
                            str(HOLD_WINDOW_S), stdout=subprocess.PIPE, stdin=subprocess.PIPE)
        opened = json.loads(client.stdout.readline() or "{}")
        if not opened:
            raise RuntimeError(f"the hold client failed:\n{self.procs.tail('hold')}")
        held_at_mcp = len(sh("ss", "-Htn", "state", "established", f"dport = :{ECHO_CONV}", ns=NS_ISP).stdout.splitlines())
        conv_pids, mcp_pids = tree(self.pids["converter"]), tree(self.pids["mcp"])
        mem_held = memory_kb(conv_pids)
        c0, m0, t0 = cpu_seconds(conv_pids), cpu_seconds(mcp_pids), time.monotonic()
        client.stdin.write("ping\n")
        client.stdin.flush()
        pinged = json.loads(client.stdout.readline() or "{}")
        wall = time.monotonic() - t0
        cpu_conv, cpu_mcp = (cpu_seconds(conv_pids) - c0) / wall * 100, (cpu_seconds(mcp_pids) - m0) / wall * 100
        mem_after = memory_kb(conv_pids)
        mcp_mem = memory_kb(mcp_pids)
        client.stdin.write("close\n")
        client.stdin.flush()
        client.wait(30)
        return {"before": before, "held": max(mem_held, mem_after), "opened": opened, "pinged": pinged, "wall": wall,
                "held_at_mcp": held_at_mcp, "cpu_conv": cpu_conv, "cpu_mcp": cpu_mcp, "mcp_mem": mcp_mem,
                "processes": len(conv_pids)}


def main():
    unknown = set(PARTS) - {"single", "lines", "budget", "stress", "setup", "memory"}
    if unknown:
        sys.exit(f"bench/converter: BENCH_PARTS: {', '.join(sorted(unknown))} unknown (single, lines, budget, stress, setup, memory)")
    if not 0.01 <= CPU_QUOTA <= 1:
        sys.exit(f"bench/converter: BENCH_CPU_QUOTA: {CPU_QUOTA} is not a share of one core between 0.01 and 1")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the helpers and daemons inherit it
    if hard < 6 * HOLD + 1024:
        note(f"WARNING: the open-file limit is {hard}: {HOLD} relayed connections need about {6 * HOLD}")

    t_begin = time.monotonic()
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    try:
        # Left in reverse: the watchdog off, the processes stopped (the converter first: it
        # drains and removes its rules), what still runs in the namespaces killed, they removed.
        with tempfile.TemporaryDirectory(prefix="bench-converter-") as d, namespaces(*NAMESPACES, kill=True), \
                Procs(Path(d), new_session=False) as procs, watchdog(TIMEOUT_S):
            tmp = Path(d)
            topology()
            b = Bench(tmp, procs)
            b.start_all()
            b.warm_up()
            tp = b.throughput() if "single" in PARTS else None
            agg = b.lines() if "lines" in PARTS else None
            bg = b.budget() if "budget" in PARTS else None
            sx = b.stress() if "stress" in PARTS else None
            st = b.setup() if "setup" in PARTS else None
            hd = b.hold() if "memory" in PARTS else None
            conv_log = procs.tail("converter", 40)
    except (RuntimeError, LabError) as exc:
        sys.exit(f"bench/converter: {exc}")
    report(b, tp, agg, bg, sx, st, hd, conv_log, load0, time.monotonic() - t_begin)


def report(b, tp, agg, bg, sx, st, hd, conv_log, load0, runtime):
    cores = len(os.sched_getaffinity(0))
    print(f"bench/converter: {cores} cores, load average at start {' '.join(load0)}; converter and MCP {WORKERS} workers each; "
          f"shadowsocks-libev {SS_METHOD}; CPE net.ipv4.tcp_fastopen={CPE_TFO}")
    keys = {}
    if tp:
        print(f"\nsingle flow (iperf3), unshaped WANs: goodput in Mbit/s = in-order octets taken by the receiving socket over {SECONDS} s "
              f"from {OMIT_S} s into the flow; {ROUNDS} interleaved rounds, median and runs; relay CPU in % of one core (CPE side / ISP side)")
        print(f"{'path':<30}{'dir':<6}{'median':>9}  {'runs':<28}{'relay cpu %':>14}")
        names = {"kernel": "kernel forwarding", "converter": "converter + MCP (MPTCP)", "shadowsocks": "ss-redir + ss-server",
                 "omr": "OMR-style ss pair over MPTCP"}
        medians = {}
        for rev in (False, True):
            for name in ("kernel", "converter", "shadowsocks", "omr"):
                runs = tp[(name, rev)]
                m = med(r[0] for r in runs)
                medians[(name, rev)] = m
                cpu = ""
                if runs and runs[0][1]:
                    cpu = f"{med(r[1][0] for r in runs):.0f} / {med(r[1][1] for r in runs):.0f}"
                print(f"{names[name]:<30}{'down' if rev else 'up':<6}{m:>9.0f}  "
                      f"{' '.join('-' if r[0] is None else f'{r[0]:.0f}' for r in runs):<28}{cpu:>14}")
        for rev in (False, True):
            slow = [r[0] for r in tp[("converter", rev)] if r[0] is not None and r[0] < 0.05 * medians[("kernel", rev)]]
            if slow:
                print(f"note: {len(slow)} converter run(s) {'down' if rev else 'up'} below 5% of kernel forwarding "
                      f"({', '.join(f'{x:.0f}' for x in slow)} Mbit/s): the flow stalled")
        ratio = {}
        for rev in (False, True):
            ratio[("kernel", rev)] = medians[("converter", rev)] / medians[("kernel", rev)]
            ratio[("ss", rev)] = medians[("converter", rev)] / medians[("shadowsocks", rev)]
            ratio[("omr", rev)] = medians[("converter", rev)] / medians[("omr", rev)]
        print(f"converter / kernel: up {ratio[('kernel', False)]:.3f} down {ratio[('kernel', True)]:.3f}; "
              f"converter / shadowsocks: up {ratio[('ss', False)]:.3f} down {ratio[('ss', True)]:.3f}; converter / OMR-style: "
              f"up {ratio[('omr', False)]:.3f} down {ratio[('omr', True)]:.3f} (the keys take the lower direction)")
        keys["vs_kernel"] = min(ratio[("kernel", False)], ratio[("kernel", True)])
        keys["vs_shadowsocks"] = min(ratio[("ss", False)], ratio[("ss", True)])


    if agg:
        print(f"\naccess lines: both WANs through the delay line (round trip, random loss per frame each way) and tbf-shaped on "
              f"both ends, offloads off; one flow each over {AGG_SECONDS} s from {AGG_OMIT_S} s in, goodput in Mbit/s, "
              f"median of {LINE_ROUNDS} interleaved rounds: through the converter, the OMR-style peer, plain TCP from the CPE "
              f"over WAN1 alone and WAN2 alone. agg = goodput / (TCP WAN1 + TCP WAN2); /rates = goodput / (rate1 + rate2), "
              f"the old shaped-rate ratio; wan2 % = its share of the octets the converter's flow put on the WANs")
        print(f"{'row (Mbit/s@ms)':<22}{'dir':<5}{'conv':>7}{'omr':>7}{'tcp1':>7}{'tcp2':>7}{'agg':>7}{'agg omr':>8}"
              f"{'conv/omr':>9}{'/rates':>7}{'wan2 %':>7}  converter runs")
        groups = {"equal": [], "unequal": [], "rates": [], "omr": []}
        for spec, res, line in agg:
            label, lossy = line_label(spec), any(l for _, _, l in spec)
            equal = spec[0][1] == spec[1][1]
            for rev in (False, True):
                m = {name: med(r[0] for r in res[(name, rev)]) for name in ("converter", "omr", "tcp_wan1", "tcp_wan2")}
                tcp_sum = m["tcp_wan1"] + m["tcp_wan2"]
                agg_c, agg_o = m["converter"] / tcp_sum, m["omr"] / tcp_sum
                vs_omr, by_rates = m["converter"] / m["omr"], m["converter"] / (spec[0][0] + spec[1][0])
                carried = [r[1] for r in res[("converter", rev)] if r[0] is not None]
                wan2 = med(c["wan2"] / max(sum(c.values()), 1) for c in carried) * 100
                print(f"{label:<22}{'down' if rev else 'up':<5}{m['converter']:>7.1f}{m['omr']:>7.1f}{m['tcp_wan1']:>7.1f}"
                      f"{m['tcp_wan2']:>7.1f}{agg_c:>7.3f}{agg_o:>8.3f}{vs_omr:>9.3f}{by_rates:>7.3f}{wan2:>7.0f}  "
                      + " ".join("-" if r[0] is None else f"{r[0]:.1f}" for r in res[("converter", rev)])
                      + ("  (loss: reported only)" if lossy else ""))
                if lossy:
                    continue
                groups["equal" if equal else "unequal"].append(agg_c)
                groups["omr"].append(vs_omr)
                if spec[0][1] == 0 and spec[1][1] == 0:
                    groups["rates"].append(by_rates)
            per_dev = ", ".join(f"{d} {n} frames, {line['lost'][d]} lost" for d, n in line["frames"].items())
            print(f"{'':<22}line: {per_dev}; "
                  f"{line['dropped']} dropped beside that, frames late by {line['late_max_s'] * 1e3:.2f} ms at most, "
                  f"CPU {line['cpu_s'] / line['wall'] * 100:.0f}% of a core ({'SCHED_FIFO' if line['rt'] else 'time-shared'}); "
                  f"the other WAN carried up to {line['background']:.0%} of the octets of a single-WAN run")
        for key, group in (("aggregation_min", "rates"), ("agg_equal", "equal"), ("agg_unequal", "unequal"), ("vs_omr_peer", "omr")):
            if groups[group]:
                keys[key] = min(groups[group])

    if bg:
        print(f"\nCPU budget: unshaped WANs, the CPE side (converter supervisor and workers; the OMR-style peer's ss-redir) "
              f"in a cpu cgroup with a quota of {CPU_QUOTA:.0%} of one core, the ISP side unconfined; goodput in Mbit/s, "
              f"{ROUNDS} interleaved rounds, median; CPU in % of a core (CPE side / ISP side). Unconfined CPU per GB from the "
              f"single-flow rows (the relays' processes; kernel forwarding's is not a process's here: its receive runs in the "
              f"sender's softirq on a veth)")
        print(f"{'path':<30}{'dir':<6}{'median':>9}{'per core':>10}  {'runs':<34}{'cpu %':>10}{'s/GB free':>11}")
        med_bg = {}
        for rev in (False, True):
            for name, label in (("converter", "converter + MCP (MPTCP)"), ("omr", "OMR-style ss pair over MPTCP")):
                runs = bg[(name, rev)]
                m = med_bg[(name, rev)] = med(r[0] for r in runs)
                cpu = f"{med(r[1][0] for r in runs):.0f} / {med(r[1][1] for r in runs):.0f}" if runs and runs[0][1] else ""
                per_gb = ""
                if tp:
                    free = tp[(name, rev)]
                    g, c = med(r[0] for r in free), med(r[1][0] for r in free if r[1])
                    per_gb = f"{c / 100 * 8000 / g:.2f}" if g and g == g else ""
                print(f"{label:<30}{'down' if rev else 'up':<6}{m:>9.0f}{m / CPU_QUOTA:>10.0f}  "
                      f"{' '.join('-' if r[0] is None else f'{r[0]:.0f}' for r in runs):<34}{cpu:>10}{per_gb:>11}")
        ratios = [med_bg[("converter", rev)] / med_bg[("omr", rev)] for rev in (False, True)]
        print(f"converter / OMR-style under the budget: up {ratios[0]:.3f} down {ratios[1]:.3f} (the key takes the lower)")
        keys["per_cpu_vs_peer"] = min(ratios)

    if sx:
        print(f"\nstress: {STRESS_N} downloads through the converter per row, unshaped, {STRESS_CONC} at a time, each "
              f"{STRESS_S:g} s from connect(); the fast reader reads as fast as it can, the slow one 16 KiB every 5 ms for "
              f"the first half (the windows fill), then as fast as it can; Mbit/s per download over its last half (octets the "
              f"LAN client read); a download below 5% of its row's median stalled. Counters of the row: CPE MPTcpExtNoDSSInWindow and TcpExtTCPZeroWindowDrop, "
              f"the MCP's MPTcpExtMPTCPRetrans")
        print(f"{'LAN reader':<12}{'done':>6}{'failed':>7}{'median':>8}{'min':>8}{'stalled':>8}{'via MCP':>8}{'joins':>7}"
              f"{'TFO':>6}{'NoDSSinW':>9}{'0wnd drop':>10}{'MCP retr':>9}")
        stalls = 0
        for mode, r in sx.items():
            done = [x for x in r["mbit"] if x is not None]
            m = med(done)
            stalled = [x for x in done if x < 0.05 * m]
            stalls += len(stalled) + (len(r["mbit"]) - len(done))
            print(f"{mode:<12}{len(done):>6}{len(r['mbit']) - len(done):>7}{m:>8.1f}{min(done, default=float('nan')):>8.1f}"
                  f"{len(stalled):>8}{r['via_mcp']:>8}{r['joins']:>7}{r['tfo_active']:>6}{r['no_dss_in_window']:>9}"
                  f"{r['zero_window_drop']:>10}{r['mcp_retrans']:>9}")
            if stalled:
                print(f"{'':<12}stalled: {', '.join(f'{x:.2f}' for x in stalled)} Mbit/s")
            if r["via_mcp"] < len(r["mbit"]):
                b.problems.append(f"stress, {mode} reader: {r['via_mcp']} of {len(r['mbit'])} downloads reached the MCP")
        keys["download_stalls"] = stalls

    if st:
        seq, (conv_s, conv), (direct_s, direct), kern, dl = st
        sc, sd = seq[ECHO_CONV], seq[ECHO_DIRECT]
        ms = lambda v: v * 1e3
        unit = med(dl["probe"]["wan1"][0]) if dl else float("nan")  # the measured round trip, CPE to server
        print(f"\nsetup: connect, 16 octets echoed by the server, close; time to first byte (ttfb) from connect(). With the WANs as "
              f"they are (no delay): {TTFB_N0} sequential connections per path, converter and direct alternating, then {CONNS} "
              f"at {CONCURRENCY} concurrent per path" + ("" if not dl else
              f"; then wan1 and wan2 re-cabled through the delay line ({RTT_MS:g} ms round trip"
              + (f", and {SERVER_RTT_MS:g} ms on the ISP-server link" if SERVER_RTT_MS > 0 else "")
              + f"): {TTFB_N} sequential per path, alternating, with the CPE's net.ipv4.tcp_fastopen as set"
              + (" and again with it 0" if CPE_TFO != "0" else "") + f"; 'RTTs' is p50 over the measured round trip ({ms(unit):.2f} ms)"))
        print(f"{'run':<38}{'ok':>6}{'failed':>7}{'conn/s':>9}{'ttfb p50 ms':>13}{'p99 ms':>9}{'max ms':>9}{'RTTs':>6}")

        def row(label, r, rate=None, rtts=False):
            t = r["ttfb"]
            print(f"{label:<38}{r['ok']:>6}{r['failed']:>7}{('-' if rate is None else f'{rate:.0f}'):>9}"
                  f"{ms(med(t)):>13.3f}{ms(pct(t, 99)):>9.3f}{ms(max(t) if t else float('nan')):>9.3f}"
                  f"{(f'{med(t) / unit:.2f}' if rtts else '-'):>6}")

        row("sequential, converter, no delay", sc)
        row("sequential, direct, no delay", sd)
        row(f"{CONCURRENCY} concurrent, converter, no delay", conv, conv["ok"] / conv_s)
        row(f"{CONCURRENCY} concurrent, direct, no delay", direct, direct["ok"] / direct_s)
        ratios = {}
        rtt_label = f"{RTT_MS:g}" + (f"+{SERVER_RTT_MS:g}" if SERVER_RTT_MS > 0 else "")  # WAN + ISP-server
        if dl:
            for tfo, r in dl["rows"].items():
                row(f"RTT {rtt_label} ms, converter, CPE TFO {tfo}", r["conv"], rtts=True)
                row(f"RTT {rtt_label} ms, direct (beside TFO {tfo})", r["direct"], rtts=True)
                ratios[tfo] = (med(r["conv"]["ttfb"]) / med(r["direct"]["ttfb"]), pct(r["conv"]["ttfb"], 99) / pct(r["direct"]["ttfb"], 99))
        ratio0 = pct(sc["ttfb"], 99) / pct(sd["ttfb"], 99)
        print(f"no delay, ttfb converter / direct (sequential): p50 {med(sc['ttfb']) / med(sd['ttfb']):.2f}, p99 {ratio0:.2f}; "
              f"added p50 {ms(med(sc['ttfb']) - med(sd['ttfb'])):.3f} ms: the relays' processing alone, no round trip in it. "
              f"Reached the MCP: {kern['seq_via_mcp']} of {sc['ok']} sequential, "
              f"{kern['burst_via_mcp']} of {conv['ok']} concurrent. TFO: SYN data acked {kern['tfo_active']} "
              f"(active fail {kern['tfo_active_fail']}) at the CPE, accepted {kern['tfo_passive']} (fail {kern['tfo_passive_fail']}) at the MCP")
        n_conv = max(conv["ok"], 1)
        print(f"CPU per conversion in the concurrent burst (user+system of the processes): converter "
              f"{kern['cpu_conv_s'] / n_conv * 1e6:.0f} us, MCP {kern['cpu_mcp_s'] / n_conv * 1e6:.0f} us")
        if kern["seq_via_mcp"] < sc["ok"] or kern["burst_via_mcp"] < conv["ok"]:
            b.problems.append("some converter-port connections did not reach the MCP (direct fallback?)")
        keys["setup_ttfb_p99_ratio"] = ratio0
        if dl:
            for tfo, r in dl["rows"].items():
                p50, p99 = ratios[tfo]
                print(f"RTT {rtt_label} ms, CPE TFO {tfo}, ttfb converter / direct: p50 {p50:.3f}, p99 {p99:.3f}; added p50 "
                      f"{ms(med(r['conv']['ttfb']) - med(r['direct']['ttfb'])):.2f} ms. Reached the MCP {r['via_mcp']} of {r['conv']['ok']}, "
                      f"MP_JOINs (wan2) at the MCP {r['joins']}; TFO: SYN data acked {r['tfo_active']} (active fail "
                      f"{r['tfo_active_fail']}) at the CPE, accepted {r['tfo_passive']} at the MCP")
                if r["via_mcp"] < r["conv"]["ok"]:
                    b.problems.append(f"through the delay line (CPE TFO {tfo}) some converter-port connections did not reach the MCP")
                if int(tfo) & 1 and r["tfo_active"] < 0.9 * r["conv"]["ok"]:
                    b.problems.append(f"through the delay line (CPE TFO {tfo}) only {r['tfo_active']} of {r['conv']['ok']} "
                                      f"conversions had their SYN data acked: the row does not measure the Convert message in the SYN")
            if "0" in ratios and CPE_TFO != "0":
                a, z = dl["rows"][CPE_TFO], dl["rows"]["0"]
                print(f"TFO saves p50 {ms(med(z['conv']['ttfb']) - med(a['conv']['ttfb'])):.2f} ms "
                      f"({(med(z['conv']['ttfb']) - med(a['conv']['ttfb'])) / unit:.2f} RTT) per conversion here: "
                      f"p99 ratio {ratios[CPE_TFO][1]:.3f} with it, {ratios['0'][1]:.3f} without")
            keys["setup_ttfb_p99_ratio"] = ratios[CPE_TFO][1]
            # the delay line's own check
            pr, fl, ln = dl["probe"], dl["flood"], dl["line"]
            print(f"delay line (b-cv-dly, AF_PACKET, {DELAY_QUEUE} frames per direction at most, "
                  f"{'SCHED_FIFO' if ln['rt'] else 'time-shared: no real-time priority here'}): plain TCP connect from the CPE "
                  + ", ".join(f"over {wan} p50 {ms(med(t)):.2f} ms (min {ms(min(t)) if t else float('nan'):.2f}, "
                              f"max {ms(max(t)) if t else float('nan'):.2f}, {len(t)} connects, {n} frames on {wan})"
                              for wan, (t, n) in pr.items())
                  + f"; capacity {'' if fl['dropped'] else 'at least '}{fl['fwd'] / max(fl['busy_s'], 1e-3):.0f} frames/s one way, "
                  f"time-shared "
                  f"({fl['fwd']} frames of a UDP flood of {fl['sent'] / fl['seconds']:.0f}/s for {fl['seconds']:.2f} s forwarded "
                  f"in {fl['busy_s']:.2f} s, {fl['dropped']} dropped, {fl['maxq']} queued at most)")
            print(f"delay line during the rows: {ln['frames']} frames in {ln['wall']:.1f} s ({ln['frames'] / ln['wall']:.0f}/s; "
                  + ", ".join(f"{d} {n}" for d, n in ln["per_dev"].items()) + f"), {ln['dropped']} dropped, "
                  f"CPU {ln['cpu_s'] / ln['wall'] * 100:.1f}% of a core, frames left late by {ms(ln['late_avg_s']):.3f} ms "
                  f"on average, {ms(ln['late_max_s']):.2f} ms at most")
            for wan, (t, n) in pr.items():
                if not t or not 0.9 * RTT_MS <= ms(med(t)) - SERVER_RTT_MS <= 1.25 * RTT_MS + 1 or n == 0:
                    b.problems.append(f"the delay line on {wan}: connect p50 {ms(med(t)):.2f} ms over {n} frames, "
                                      f"expected about {RTT_MS + SERVER_RTT_MS:g} ms")
            if ln["dropped"]:
                b.problems.append(f"the delay line dropped {ln['dropped']} frames during the rows")


    if hd:
        kb = 1024
        o, p = hd["opened"], hd["pinged"]
        print(f"\nmemory and CPU: {o.get('held')} connections held through the converter ({o.get('failed')} failed to open, "
              f"{hd['held_at_mcp']} seen at the MCP's server side), then one 16-octet echo each spread over {HOLD_WINDOW_S:g} s "
              f"({p.get('echoed')} of {p.get('pinged')} echoed)")
        print(f"{'':<36}{'VmRSS MiB':>10}{'Pss MiB':>9}{'cpu %':>7}")
        print(f"{'converter, before (after the bursts)':<36}{hd['before'][0] / kb:>10.1f}{hd['before'][1] / kb:>9.1f}{'':>7}")
        print(f"{'converter, ' + str(o.get('held')) + ' held':<36}{hd['held'][0] / kb:>10.1f}{hd['held'][1] / kb:>9.1f}{hd['cpu_conv']:>7.1f}")
        print(f"{'MCP, ' + str(o.get('held')) + ' held':<36}{hd['mcp_mem'][0] / kb:>10.1f}{hd['mcp_mem'][1] / kb:>9.1f}{hd['cpu_mcp']:>7.1f}")
        print(f"(sums over {hd['processes']} converter processes: the supervisor and its workers; VmRSS counts shared pages once per process)")
        if o.get("held", 0) < HOLD or p.get("echoed", 0) < o.get("held", 0):
            b.problems.append(f"held {o.get('held')} of {HOLD} connections, {p.get('echoed')} echoed")
        keys["rss_mb_1000"] = hd["held"][0] / kb

    if b.problems:
        print("\nproblems:\n  " + "\n  ".join(b.problems))
        print("converter log (last lines):\n  " + "\n  ".join(conv_log.splitlines()[-10:]))
    print(f"\ntargets: vs_kernel>=0.35 (aim 0.5) vs_shadowsocks>=2.0 aggregation_min (old shaped-rate ratio, rows without "
          f"delay or loss, reported) agg_equal>=0.96 agg_unequal>=0.90 vs_omr_peer>=0.98 "
          f"per_cpu_vs_peer>=2.0 download_stalls=0 setup_ttfb_p99_ratio<=1.1 "
          f"({'at RTT ' + format(RTT_MS, 'g') + ' ms, CPE TFO ' + CPE_TFO if RTT_MS > 0 else 'no delay'}); parts "
          f"{','.join(PARTS)}; runtime {runtime:.0f} s")
    order = ("vs_kernel", "vs_shadowsocks", "aggregation_min", "agg_equal", "agg_unequal", "vs_omr_peer",
             "per_cpu_vs_peer", "download_stalls", "setup_ttfb_p99_ratio", "rss_mb_1000")
    print(" ".join(f"{k}={keys[k]}" if k == "download_stalls" else f"{k}={keys[k]:.{1 if k == 'rss_mb_1000' else 3}f}"
                   for k in order if k in keys))
    if b.problems:
        sys.exit(1)


if __name__ == "__main__":
    run_bench("bench/converter", main)
