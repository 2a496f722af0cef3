"""bench/single_homed's measurements: a single-homed MPTCP host's native flow against the
converter and single-path TCP (what and how: bench/README.md). Run by bench/single_homed, as
root, from the repository root.

The host side (macvlan per extra WAN, source rules, `ip mptcp endpoint`) is set here by hand:
it is what the `mptcp-cpe host` daemon is to set.

CPU of the CPE: forwarding is softirq work, and on a veth it runs in the sender's context (the
peer's receive path is called from the sender's transmit), on whatever core: per-process
times miss it, and whole-core times mix it with the rest of this shared machine (an idle
baseline did not hold: the other work on a core yields to the bench's). So the CPE's receive
work runs in kernel threads of its own: each CPE veth has a NAPI instance (GRO on) polled by a
thread (`threaded` NAPI), and its neighbours send to it with TSO off (a veth hands frames to
its peer's NAPI only then), as 1514-octet frames that GRO merges, as from a NIC; the CPE sends
with TSO, and RPS has its neighbours process that on the other cores. The threads and the
converter are pinned to BENCH_CPE_CPU (1), everything else the bench starts to the other
cores. The CPE's CPU is the CPU time (utime+stime, /proc/<pid>/stat) of those threads plus the
converter's processes over the measured window: the same count for the native flow
(forwarding, nft, NAT) and the converted one (its sockets' receive side and ACK-clocked sends
in the threads, its system calls in the processes). Left out of both: timers that fire in
softirq on another task (TCP's delayed ACKs and retransmits of the converter's sockets).
"""
import json, os, re, subprocess, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "netns"))  # netlab, shared with the tests
import netlab  # noqa: E402
from netlab import LabError, Procs, cpu_seconds, listening, namespaces, netstat, received, run_bench, tree, veth, watchdog  # noqa: E402

NS_LAN, NS_CPE, NS_ISP, NS_SRV = "b-sh-lan", "b-sh-cpe", "b-sh-isp", "b-sh-srv"
NAMESPACES = (NS_LAN, NS_CPE, NS_ISP, NS_SRV)
SERVER, MCP = "198.18.1.1", "198.18.2.1"
HOST_PRIMARY, HOST_RANGE1, RANGE1 = "198.18.0.10", "198.18.0.130", "198.18.0.128/25"
WAN_ADDR = {"wan1": "198.51.100.2", "wan2": "203.0.113.2"}
# Server ports: native MPTCP (iperf3 under mptcpize), converted (intercepted), plain TCP (bypassed).
PORT_NATIVE, PORT_CONV, PORT_TCP = 5401, 5402, 5403

SHAPES = [tuple(float(x) for x in s.split("+")) for s in os.environ.get("BENCH_SHAPES", "40+40,60+20").split(",") if s]
AGG_SECONDS = int(os.environ.get("BENCH_AGG_SECONDS", "6"))       # each shaped flow (after AGG_OMIT_S)
AGG_OMIT_S = int(os.environ.get("BENCH_AGG_OMIT_S", "2"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "4"))               # each unshaped flow (after OMIT_S)
OMIT_S = int(os.environ.get("BENCH_OMIT_S", "1"))
CPU_ROUNDS = int(os.environ.get("BENCH_CPU_ROUNDS", "2"))         # unshaped rounds, interleaved; CPU and octets summed
TBF_BURST = os.environ.get("BENCH_TBF_BURST", "32kb")             # as bench/converter shapes
TBF_LATENCY = os.environ.get("BENCH_TBF_LATENCY", "50ms")
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))               # converter and MCP workers
# net.ipv4.tcp_fastopen in the CPE: 0, as bulk flows need no TFO and an MPTCP connection opened
# with data in its SYN often stalls at about 1 Mbit/s on unshaped downloads (bench/README.md).
CPE_TFO = os.environ.get("BENCH_CPE_TFO", "0")
CPE_CPU = int(os.environ.get("BENCH_CPE_CPU", "1"))               # the core of the CPE's NAPI threads and converter
TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT_S", "600"))       # watchdog for the whole bench
MPTCP_CPE = str(Path(".venv/bin/mptcp-cpe").resolve())
IPERF_MPTCP = ["mptcpize", "run", "iperf3"]                      # iperf3 3.12 has no --multipath

HZ = os.sysconf("SC_CLK_TCK")
CPE_VETHS = ("lan0", "wan1", "wan2")
OTHERS = []  # the cores for everything but the CPE's work: set by main
sh = netlab.sh


def note(msg):
    print(f"bench/single_homed: {msg}", file=sys.stderr, flush=True)


def ip(ns, line):
    sh("ip", "-n", ns, *line.split(), timeout=30)


def topology():
    """Links, addresses, routes, rules, MPTCP endpoints and limits, NAT, sysctls."""
    for dev, (a, b) in {"lan0": (NS_LAN, NS_CPE), "wan1": (NS_CPE, NS_ISP), "wan2": (NS_CPE, NS_ISP), "srv0": (NS_ISP, NS_SRV)}.items():
        veth(a, dev, b, dev)
    script = {
        # The single-homed host: the primary address, and range 1's on a macvlan with its own
        # table and source rule, an MPTCP subflow endpoint (what `mptcp-cpe host` sets). It
        # accepts no announced address: the server's one address is all it needs.
        NS_LAN: [f"addr add {HOST_PRIMARY}/24 dev lan0", "route add default via 198.18.0.1",
                 "link add mv1 link lan0 type macvlan mode bridge", "link set mv1 up",
                 f"addr add {HOST_RANGE1}/24 dev mv1", "route add default via 198.18.0.1 dev mv1 table 201",
                 f"route add 198.18.0.0/24 dev mv1 src {HOST_RANGE1} table 201", f"rule add from {HOST_RANGE1} table 201 prio 100",
                 "mptcp limits set subflows 2 add_addr_accepted 0", f"mptcp endpoint add {HOST_RANGE1} dev mv1 subflow"],
        # The CPE: a table per WAN; its own WAN addresses by source (the converter's subflows),
        # the LAN's range 1 by source after the main table without its default route.
        NS_CPE: ["addr add 198.18.0.1/24 dev lan0", f"addr add {WAN_ADDR['wan1']}/24 dev wan1",
                 f"addr add {WAN_ADDR['wan2']}/24 dev wan2", "route add default via 198.51.100.1",
                 "route add default via 198.51.100.1 dev wan1 table 101", f"rule add from {WAN_ADDR['wan1']} table 101 prio 100",
                 "route add default via 203.0.113.1 dev wan2 table 102", f"rule add from {WAN_ADDR['wan2']} table 102 prio 101",
                 "rule add lookup main suppress_prefixlength 0 prio 200", f"rule add from {RANGE1} lookup 102 prio 201",
                 "mptcp limits set subflows 2 add_addr_accepted 2", f"mptcp endpoint add {WAN_ADDR['wan2']} dev wan2 subflow"],
        NS_ISP: ["addr add 198.51.100.1/24 dev wan1", "addr add 203.0.113.1/24 dev wan2", "addr add 198.18.1.254/24 dev srv0",
                 f"addr add {MCP}/32 dev lo", "mptcp limits set subflows 2 add_addr_accepted 0"],
        # The server: no endpoint, so it announces nothing; joins to its one address accepted.
        NS_SRV: [f"addr add {SERVER}/24 dev srv0", "route add default via 198.18.1.254",
                 "mptcp limits set subflows 2 add_addr_accepted 0"],
    }
    for ns, lines in script.items():
        for line in lines:
            ip(ns, line)
    sh("nft", 'add table ip b_sh_nat; add chain ip b_sh_nat post { type nat hook postrouting priority srcnat; }; '
              'add rule ip b_sh_nat post oifname "wan1" masquerade; add rule ip b_sh_nat post oifname "wan2" masquerade',
       ns=NS_CPE, timeout=30)
    sysctls = {
        # arp_ignore/arp_announce: each of the host's addresses answers and asks on its own interface.
        NS_LAN: ["net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.all.rp_filter=2",
                 "net.ipv4.conf.default.rp_filter=2", "net.mptcp.enabled=1"],
        NS_CPE: ["net.ipv4.ip_forward=1", "net.mptcp.enabled=1", f"net.ipv4.tcp_fastopen={CPE_TFO}",
                 "net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.default.rp_filter=2"],
        NS_ISP: ["net.ipv4.ip_forward=1", "net.mptcp.enabled=1", "net.ipv4.tcp_fastopen=3"],
        NS_SRV: ["net.mptcp.enabled=1"],
    }
    for ns, items in sysctls.items():
        sh("sysctl", "-qw", *items, ns=ns, timeout=30)


def napi_threads():
    """{pid: name} of the kernel's NAPI poller threads (napi/<device>-<napi id>)."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                comm = (d / "comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith("napi/"):
                out[int(d.name)] = comm
    return out


def threaded_napi():
    """The CPE's receive work in kernel threads of its own, on core CPE_CPU; returns them
    ({pid: name}). Each CPE veth gets a NAPI instance (GRO on) polled by a thread (`threaded`),
    pinned to CPE_CPU. A veth hands a frame to its peer's NAPI only when the sending device
    has no TSO (veth_skb_is_eligible_for_gro; otherwise netif_rx, in the sender's context):
    so the CPE's neighbours (the host's lan0, the ISP's wan1 and wan2) send with TSO off, as
    frames of at most 1514 octets that the CPE's GRO merges, as from a NIC. The CPE's own
    devices keep TSO: what it sends goes out unsegmented by netif_rx, which RPS queues to the
    other cores (so the neighbours' receive work never runs in the CPE's threads)."""
    others = sum(1 << c for c in OTHERS)
    for ns, dev in ((NS_LAN, "lan0"), (NS_ISP, "wan1"), (NS_ISP, "wan2")):
        sh("ethtool", "-K", dev, "tso", "off", ns=ns, timeout=30)
        sh("sh", "-c", f"echo {others:x} > /sys/class/net/{dev}/queues/rx-0/rps_cpus", ns=ns, timeout=30)
    before = napi_threads()
    for dev in CPE_VETHS:
        sh("ethtool", "-K", dev, "gro", "on", ns=NS_CPE, timeout=30)
        sh("sh", "-c", f"echo 1 > /sys/class/net/{dev}/threaded", ns=NS_CPE, timeout=30)
    cpe = {p: c for p, c in napi_threads().items() if p not in before and c[5:].rsplit("-", 1)[0] in CPE_VETHS}
    if {c[5:].rsplit("-", 1)[0] for c in cpe.values()} != set(CPE_VETHS):
        raise LabError(f"threaded NAPI: expected a thread for each of the CPE's {CPE_VETHS}, found {cpe}")
    for pid in cpe:
        os.sched_setaffinity(pid, {CPE_CPU})
    return cpe


def shape(rates):
    """tbf on both egresses of each WAN veth (the CPE's and the ISP's); None: unshaped."""
    for ns in (NS_CPE, NS_ISP):
        for dev, rate in zip(("wan1", "wan2"), rates or (None, None)):
            if rate is None:
                sh("tc", "-n", ns, "qdisc", "del", "dev", dev, "root", check=False, timeout=30)
            else:
                sh("tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{rate:g}mbit",
                   "burst", TBF_BURST, "latency", TBF_LATENCY, timeout=30)


def softirq_s():
    """Softirq time so far on the CPE's core (/proc/stat), in seconds."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{CPE_CPU} "):
            return int(line.split()[7]) / HZ
    raise LabError(f"no cpu{CPE_CPU} in /proc/stat")


def ip_packets(ns):
    """(IP packets as the stack saw them: one per GRO-merged skb, the segments in them) so far in ns."""
    snmp = sh("cat", "/proc/net/snmp", ns=ns, timeout=30).stdout.splitlines()
    head, vals = [line.split() for line in snmp if line.startswith("Ip:")][:2]
    ext = netstat(ns)
    segs = sum(ext.get(f"IpExt.{k}", 0) for k in ("InNoECTPkts", "InECT1Pkts", "InECT0Pkts", "InCEPkts"))
    return int(vals[head.index("InReceives")]), segs


def peer(addr):
    """ss's [::ffff:a.b.c.d]:port (a listener on ::) as a.b.c.d."""
    return addr.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:")


def subflows(ns, match):
    """{peer address: octets} of the established TCP sockets (MPTCP subflows too) that match:
    what each received (bytes_received) plus what each sent and had acknowledged (bytes_acked)."""
    out = sh("ss", "-Htni", "state", "established", match, ns=ns, timeout=30).stdout
    per = {}
    # ss prints a socket's addresses on one line and its info on the next.
    lines = out.splitlines()
    for head, info in zip(lines[::2], lines[1::2]):
        who = peer(head.split()[-1])
        n = sum(int(x) for x in re.findall(r"bytes_(?:received|acked):(\d+)", info))
        per[who] = per.get(who, 0) + n
    return per


def nft_counter(ns, table, name):
    out = sh("nft", "list", "counter", "inet", table, name, ns=ns, check=False, timeout=30).stdout
    m = re.search(r"packets (\d+)", out)
    return int(m.group(1)) if m else None


def delta(after, before, key):
    return after.get(key, 0) - before.get(key, 0)


class Bench:
    def __init__(self, tmp, procs, cpe_napi):
        self.tmp, self.procs, self.pids, self.problems, self.notes = tmp, procs, {}, [], []
        self.cpe_napi = sorted(cpe_napi)
        self.napi_names = [cpe_napi[p] for p in self.cpe_napi]

    def start_all(self):
        self.procs.start("iperf3-native", *IPERF_MPTCP, "-s", "-p", str(PORT_NATIVE), ns=NS_SRV)
        for port in (PORT_CONV, PORT_TCP):
            self.procs.start(f"iperf3-{port}", "iperf3", "-s", "-p", str(port), ns=NS_SRV)
        (self.tmp / "mcp.json").write_text(json.dumps({
            "host": "isp", "clients": ["198.51.100.0/24", "203.0.113.0/24"], "workers": WORKERS, "drain_timeout_s": 2}))
        self.pids["mcp"] = self.procs.start("mcp", MPTCP_CPE, "mcp", "--config", str(self.tmp / "mcp.json"), ns=NS_ISP).pid
        # The converter sees every LAN TCP connection; native MPTCP passes it by its own rule
        # (counted), plain TCP on PORT_TCP by the bypass.
        (self.tmp / "converter.json").write_text(json.dumps({
            "host": "cpe", "lan_interfaces": ["lan0"], "mcps": [[MCP]], "mcp_file": str(self.tmp / "mcp-state.json"),
            "workers": WORKERS, "drain_timeout_s": 2, "bypass": {"ports": [PORT_TCP]}}))
        self.pids["converter"] = self.procs.start("converter", "taskset", "-c", str(CPE_CPU), MPTCP_CPE, "converter",
                                                  "--config", str(self.tmp / "converter.json"), ns=NS_CPE).pid

        def wait_until(what, ready):
            self.procs.wait_for(what, ready, timeout=15, every=0.05)

        wait_until("iperf3 servers", lambda: all(listening(NS_SRV, p) for p in (PORT_NATIVE, PORT_CONV, PORT_TCP)))
        wait_until("the MCP", lambda: listening(NS_ISP, 5124) and len(tree(self.pids["mcp"])) > WORKERS)
        wait_until("the converter", lambda: nft_counter(NS_CPE, "mptcp_cpe_converter", "native_mptcp") is not None
                   and len(tree(self.pids["converter"])) > WORKERS)

    def flow(self, kind, reverse, seconds, omit, cpu=False):
        """One iperf3 flow (-R: the server sends): kind native (MPTCP from the host), converter
        (plain TCP, converted at the CPE), wan1 or wan2 (plain TCP from the address routed out of
        that WAN alone). Goodput is what the receiving sockets took in order (tcpi_bytes_received,
        the subflows' sum for MPTCP) over `seconds` from `omit` in, ending a second before the
        flow; with cpu, also the CPE's CPU over the same window (its NAPI threads, the converter)."""
        port = {"native": PORT_NATIVE, "converter": PORT_CONV}.get(kind, PORT_TCP)
        cmd = (IPERF_MPTCP if kind == "native" else ["iperf3"]) + ["-c", SERVER, "-p", str(port), "-t", str(omit + seconds + 1), "-J"]
        if kind in ("wan1", "wan2"):
            cmd += ["-B", HOST_PRIMARY if kind == "wan1" else HOST_RANGE1]
        cmd += ["-R"] if reverse else []
        receiver = (NS_LAN, f"dport = :{port}") if reverse else (NS_SRV, f"sport = :{port}")
        before = {ns: netstat(ns) for ns in (NS_SRV, NS_ISP, NS_LAN)}
        native0 = nft_counter(NS_CPE, "mptcp_cpe_converter", "native_mptcp") or 0
        t_start = time.monotonic()
        p = subprocess.Popen(["ip", "netns", "exec", NS_LAN, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        res = {"kind": kind, "reverse": reverse}
        try:
            time.sleep(max(0.0, t_start + omit - time.monotonic()))
            b0, t0 = received(*receiver)
            conv_pids = tree(self.pids["converter"])
            napi0, conv0, sq0, ipp0 = cpu_seconds(self.cpe_napi), cpu_seconds(conv_pids), softirq_s(), ip_packets(NS_CPE)
            sf0 = subflows(NS_SRV, f"sport = :{port}")
            time.sleep(max(0.0, t0 + seconds - time.monotonic()))
            b1, t1 = received(*receiver)
            napi1, conv1, sq1, ipp1 = cpu_seconds(self.cpe_napi), cpu_seconds(conv_pids), softirq_s(), ip_packets(NS_CPE)
            sf1 = subflows(NS_SRV, f"sport = :{port}")
            out, err = p.communicate(timeout=seconds + omit + 40)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        wall = t1 - t0
        res.update(octets=b1 - b0, wall=wall, mbit=(b1 - b0) * 8 / wall / 1e6,
                   subflows={a: sf1[a] - sf0.get(a, 0) for a in sf1},
                   napi_s=napi1 - napi0, conv_cpu_s=conv1 - conv0, cpe_cpu_s=napi1 - napi0 + conv1 - conv0, softirq_s=sq1 - sq0,
                   skbs=ipp1[0] - ipp0[0], segs=ipp1[1] - ipp0[1])
        after = {ns: netstat(ns) for ns in (NS_SRV, NS_ISP, NS_LAN)}
        res["mp_capable_srv"] = delta(after[NS_SRV], before[NS_SRV], "MPTcpExt.MPCapableSYNRX")
        res["mp_join_srv"] = delta(after[NS_SRV], before[NS_SRV], "MPTcpExt.MPJoinAckRx")
        res["mp_capable_mcp"] = delta(after[NS_ISP], before[NS_ISP], "MPTcpExt.MPCapableSYNRX")
        res["mp_join_mcp"] = delta(after[NS_ISP], before[NS_ISP], "MPTcpExt.MPJoinAckRx")
        res["native_passed"] = (nft_counter(NS_CPE, "mptcp_cpe_converter", "native_mptcp") or 0) - native0
        try:
            j = json.loads(out)
            if "error" in j:
                raise ValueError(j["error"])
            res["retrans"] = j["end"]["sum_sent"].get("retransmits")
        except (ValueError, KeyError, TypeError) as exc:
            self.problems.append(f"iperf3 {kind}{' -R' if reverse else ''} failed: {exc} {(err or '')[-300:]}")
            res["mbit"] = None
        self.check_path(res)
        return res

    def check_path(self, r):
        """The flow took the path it is named after."""
        what = f"{r['kind']} {'down' if r['reverse'] else 'up'}"
        if r["kind"] == "native":
            big = [a for a, n in r["subflows"].items() if n >= 0.05 * max(r["octets"], 1)]
            r["two_subflows"] = sorted(big) == sorted(WAN_ADDR.values())
            if r["mp_capable_srv"] < 1 or r["mp_join_srv"] < 1 or not r["two_subflows"]:
                self.problems.append(f"{what}: not one MPTCP flow over both WANs (MP_CAPABLE at the server "
                                     f"{r['mp_capable_srv']}, joins {r['mp_join_srv']}, octets by WAN address {r['subflows']})")
            if r["mp_capable_mcp"]:
                self.problems.append(f"{what}: {r['mp_capable_mcp']} connections reached the MCP: converted, not native")
        elif r["kind"] == "converter":
            if r["mp_capable_mcp"] < 1 or r["mp_capable_srv"]:
                self.problems.append(f"{what}: {r['mp_capable_mcp']} MPTCP connections reached the MCP, "
                                     f"{r['mp_capable_srv']} the server: not converted")
        else:
            peers = [a for a, n in r["subflows"].items() if n > 0]
            if peers != [WAN_ADDR[r["kind"]]] or r["mp_capable_srv"] or r["mp_capable_mcp"]:
                self.problems.append(f"{what}: plain TCP did not leave by {r['kind']} alone (octets by peer {r['subflows']}, "
                                     f"MPTCP at the server {r['mp_capable_srv']}, at the MCP {r['mp_capable_mcp']})")

    def shaped(self):
        out = []
        for rates in SHAPES:
            note(f"WANs shaped {rates[0]:g}+{rates[1]:g} Mbit/s")
            shape(rates)
            rows = {(k, rev): self.flow(k, rev, AGG_SECONDS, AGG_OMIT_S)
                    for rev in (False, True) for k in ("native", "converter", "wan1", "wan2")}
            out.append((rates, rows))
        shape(None)
        return out

    def unshaped(self):
        note("unshaped: the CPE's CPU per gigabyte, native and converted")
        out = {}
        for i in range(CPU_ROUNDS):
            note(f"unshaped, round {i + 1} of {CPU_ROUNDS}")
            for rev in (False, True):
                for k in ("native", "converter"):
                    r = self.flow(k, rev, SECONDS, OMIT_S, cpu=True)
                    r["runs"] = [r["mbit"]]
                    if (k, rev) in out:  # the rounds summed: octets, time, CPU
                        acc = out[(k, rev)]
                        for key in ("octets", "wall", "napi_s", "conv_cpu_s", "cpe_cpu_s", "softirq_s", "skbs", "segs"):
                            acc[key] += r[key]
                        acc["runs"].append(r["mbit"])
                        acc["mbit"] = acc["octets"] * 8 / acc["wall"] / 1e6 if None not in acc["runs"] else None
                    else:
                        out[(k, rev)] = r
        for rev in (False, True) if out else ():
            n = out[("native", rev)]["mbit"]
            for c in out[("converter", rev)]["runs"]:
                if n and c is not None and c < 0.05 * n:
                    self.notes.append(f"unshaped converter {'down' if rev else 'up'}: a run at {c:.1f} Mbit/s, under 5% of native "
                                      f"(downloads through the converter stall now and then: bench/README.md); its CPU per GB "
                                      f"is that of a slower flow")
        return out


def main():
    global OTHERS
    cpus = os.sched_getaffinity(0)
    OTHERS = sorted(cpus - {CPE_CPU})
    if CPE_CPU not in cpus or not OTHERS:
        sys.exit(f"bench/single_homed: needs core {CPE_CPU} (BENCH_CPE_CPU) and another; may use {sorted(cpus)}")
    os.sched_setaffinity(0, OTHERS)  # what the bench starts runs off the CPE's core; the converter is put on it
    t_begin = time.monotonic()
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-single-homed-") as d, namespaces(*NAMESPACES, kill=True), \
                Procs(Path(d), new_session=False) as procs, watchdog(TIMEOUT_S):
            topology()
            b = Bench(Path(d), procs, threaded_napi())
            b.start_all()
            sh_rows = b.shaped()
            cpu_rows = b.unshaped()
    except (RuntimeError, LabError) as exc:
        sys.exit(f"bench/single_homed: {exc}")
    report(b, sh_rows, cpu_rows, load0, time.monotonic() - t_begin)


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def report(b, sh_rows, cpu_rows, load0, runtime):
    print(f"bench/single_homed: {os.cpu_count()} cores, load average at start {' '.join(load0)}; "
          f"CPE's NAPI threads and converter on core {CPE_CPU}, the rest on {','.join(map(str, OTHERS))}; "
          f"converter and MCP {WORKERS} workers each, CPE net.ipv4.tcp_fastopen={CPE_TFO}; "
          f"host {HOST_PRIMARY} + {HOST_RANGE1} (range 1 {RANGE1} -> WAN2)")
    print(f"\nshaped: WAN1 and WAN2 tbf-shaped on both ends (burst {TBF_BURST}, latency {TBF_LATENCY}), one iperf3 flow each, "
          f"goodput in Mbit/s = in-order octets taken by the receiving sockets (an MPTCP flow's subflows summed) over "
          f"{AGG_SECONDS} s from {AGG_OMIT_S} s in. native = MPTCP from the host over both WANs, the CPE forwarding; converter = "
          f"the host's plain TCP through the converter pair; wan1/wan2 = plain TCP from the address routed out of that WAN alone. "
          f"native / sum TCP = native / (wan1 + wan2) of the same direction; per subflow: Mbit/s by the server's peer address")
    print(f"{'Mbit/s':<8}{'dir':<6}{'native':>8}{'converter':>11}{'wan1 TCP':>10}{'wan2 TCP':>10}{'nat/sumTCP':>12}{'conv/sumTCP':>13}"
          f"{'nat/rates':>11}   native subflows (WAN1 / WAN2 Mbit/s, joins)")
    ratios = []
    for rates, rows in sh_rows:
        for rev in (False, True):
            n, c, w1, w2 = (rows[(k, rev)] for k in ("native", "converter", "wan1", "wan2"))
            tcp = (w1["mbit"] or 0) + (w2["mbit"] or 0)
            r = n["mbit"] / tcp if n["mbit"] and tcp else float("nan")
            ratios.append(r)
            rc = c["mbit"] / tcp if c["mbit"] and tcp else float("nan")
            per = " / ".join(f"{n['subflows'].get(a, 0) * 8 / n['wall'] / 1e6:.1f}" for a in WAN_ADDR.values())
            label = f"{rates[0]:g}+{rates[1]:g}"
            print(f"{label:<8}{'down' if rev else 'up':<6}{fmt(n['mbit'], '.1f'):>8}{fmt(c['mbit'], '.1f'):>11}"
                  f"{fmt(w1['mbit'], '.1f'):>10}{fmt(w2['mbit'], '.1f'):>10}{r:>12.3f}{rc:>13.3f}"
                  f"{(n['mbit'] or float('nan')) / sum(rates):>11.3f}   {per}, {n['mp_join_srv']} join(s)"
                  f"{'' if n.get('two_subflows') else ' NOT TWO SUBFLOWS'}")
    passed = sum(r["native_passed"] for _, rows in sh_rows for (k, _), r in rows.items() if k == "native")
    print(f"the converter's native_mptcp counter (MPTCP SYNs it let pass unconverted) rose by {passed} over the native flows; "
          f"tbf counts frames: per 1514-octet frame TCP carries 1448 payload octets, MPTCP 1424 (DSS), so native can reach "
          f"0.983 of the TCP sum at most")
    native_min = min(ratios) if ratios else float("nan")

    print(f"\nunshaped: the CPE's CPU per gigabyte (10^9 octets of goodput) over {SECONDS} s from {OMIT_S} s in, {CPU_ROUNDS} "
          f"interleaved rounds summed (Mbit/s: each run) = CPU time of "
          f"the CPE's threaded-NAPI pollers (all it receives: forwarding, nft, NAT, the converter's sockets' receive side) + the "
          f"converter's processes (their system calls: the sending side); the CPE's threads: {', '.join(b.napi_names)}. "
          f"core softirq = core {CPE_CPU}'s softirq time in /proc/stat over the window, whoever's: timers and softirqs the "
          f"threads run on their way out (those also in their time); an upper bound of what the count leaves out")
    print(f"{'path':<11}{'dir':<6}{'Mbit/s':>8}{'NAPI s':>8}{'conv s':>8}{'CPE s':>8}{'NAPI s/GB':>11}{'conv s/GB':>11}"
          f"{'cpu s/GB':>10}{'segs/skb':>10}{'core softirq s':>16}   runs Mbit/s")
    per_gb = {}
    for rev in (False, True) if cpu_rows else ():
        for k in ("native", "converter"):
            r = cpu_rows[(k, rev)]
            gb = r["octets"] / 1e9
            per_gb[(k, rev)] = r["cpe_cpu_s"] / gb if gb > 0 else float("nan")
            print(f"{k:<11}{'down' if rev else 'up':<6}{fmt(r['mbit'], '.0f'):>8}{r['napi_s']:>8.2f}{r['conv_cpu_s']:>8.2f}"
                  f"{r['cpe_cpu_s']:>8.2f}{r['napi_s'] / gb if gb > 0 else float('nan'):>11.3f}"
                  f"{r['conv_cpu_s'] / gb if gb > 0 else float('nan'):>11.3f}{per_gb[(k, rev)]:>10.3f}"
                  f"{r['segs'] / max(r['skbs'], 1):>10.1f}{r['softirq_s']:>16.2f}   {' '.join(fmt(x, '.0f') for x in r['runs'])}")
    print("segs/skb: IP segments per packet the CPE's stack handled (IpExt In*Pkts over Ip InReceives): how much GRO merged")
    cpu_ratio = {rev: per_gb[("native", rev)] / per_gb[("converter", rev)] for rev in (False, True)} if cpu_rows else {}
    if cpu_rows:
        print(f"CPU per GB native / converter: up {cpu_ratio[False]:.3f} down {cpu_ratio[True]:.3f} (the key takes the higher)")
    cpu_key = max(cpu_ratio.values()) if cpu_ratio else float("nan")

    if b.notes:
        print("\nnotes:\n  " + "\n  ".join(b.notes))
    if b.problems:
        print("\nproblems:\n  " + "\n  ".join(b.problems))
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    print(f"\ntargets: native_over_sum_tcp>=0.95 ({met(native_min >= 0.95)}), cpe_cpu_native_over_converter<=0.5 "
          f"({met(cpu_key <= 0.5)}); runtime {runtime:.0f} s")
    print(f"native_over_sum_tcp={native_min:.3f} cpe_cpu_native_over_converter={cpu_key:.3f}")
    if b.problems:
        sys.exit(1)


if __name__ == "__main__":
    run_bench("bench/single_homed", main)
