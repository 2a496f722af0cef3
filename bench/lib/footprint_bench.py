"""bench/footprint's measurement: the memory of the CPE's daemons (Pss) (wand, the
converter's supervisor and workers) with the compiled MCP codec and with the pure-Python one
that OpenWrt routers run, each against a bare interpreter (what and how: bench/README.md).
Run by bench/footprint, as root, from the repository root."""
import json, os, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "netns"))  # netlab, shared with the tests
from netlab import Procs, link_pair, run_bench, sh, wait_for, watchdog  # noqa: E402

BIN = str(Path(sys.executable).with_name("mptcp-cpe"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SETTLE_S = float(os.environ.get("BENCH_SETTLE_S", "2"))   # after ready, before reading the RSS
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))         # a router's converter: one worker


def rss_kb(pid: int) -> int:
    """The proportional set size (Pss) of a process and its children (the converter's workers,
    forked: the pages they share with the supervisor counted once between them)."""
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    total = 0
    for p in pids:
        for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


def measure(procs: Procs, tmp: Path, ns: str, codec: str) -> dict[str, int]:
    env = {**os.environ, "MPTCP_CPE_CODEC": codec}
    out = {}
    idle = procs.start(f"python-{codec}", sys.executable, "-c", "import time; time.sleep(60)", ns=ns, env=env)
    time.sleep(0.5)
    out["python"] = rss_kb(idle.pid)
    procs.stop(idle)
    wand_cfg = tmp / "wand.json"
    wand_cfg.write_text(json.dumps({"host": "bench", "state_file": str(tmp / f"wan-{codec}.json"), "wans": [
        {"name": "wan", "device": "b0", "kind": "fibre", "ipv4": {"address": "192.0.2.10/24", "gateway": "192.0.2.1"}}]}))
    wand = procs.start(f"wand-{codec}", BIN, "wand", "--config", str(wand_cfg), ns=ns, env=env)
    wait_for("wand's state file", lambda: (tmp / f"wan-{codec}.json").exists(), timeout=20)
    time.sleep(SETTLE_S)
    out["wand"] = rss_kb(wand.pid)
    procs.stop(wand)
    conv_cfg = tmp / "converter.json"
    conv_cfg.write_text(json.dumps({"host": "bench", "lan_interfaces": ["b0"], "mcps": [["198.51.100.1"]],
                                    "mcp_file": str(tmp / "mcp.json"), "workers": WORKERS}))
    conv = procs.start(f"converter-{codec}", BIN, "converter", "--config", str(conv_cfg), ns=ns, env=env)
    wait_for("the converter's workers", lambda: "worker(s) running" in procs.log(f"converter-{codec}"), timeout=20)
    time.sleep(SETTLE_S)
    out["converter"] = rss_kb(conv.pid)
    procs.stop(conv)
    return out


def main() -> None:
    with watchdog(60 + ROUNDS * 40), tempfile.TemporaryDirectory() as tmp_s, \
            link_pair("b-fp", ["192.0.2.1/24"], ["192.0.2.10/24"]) as (_, ns), Procs(Path(tmp_s), new_session=False) as procs:
        tmp = Path(tmp_s)
        sh("sysctl", "-qw", "net.mptcp.enabled=1", ns=ns)
        runs: dict[str, list[dict[str, int]]] = {"c": [], "python": []}
        for _ in range(ROUNDS):
            for codec in runs:
                runs[codec].append(measure(procs, tmp, ns, codec))
    med = {codec: {k: sorted(r[k] for r in rs)[len(rs) // 2] for k in rs[0]} for codec, rs in runs.items()}
    print(f"{'Pss, kB (median of ' + str(ROUNDS) + ')':<34}{'C codec':>10}{'pure codec':>12}")
    for key, what in (("python", "bare interpreter"), ("wand", "wand"), ("converter", f"converter ({WORKERS} worker)")):
        print(f"{what:<34}{med['c'][key]:>10}{med['python'][key]:>12}")
    total = {c: med[c]["wand"] + med[c]["converter"] for c in med}
    print(f"{'wand + converter':<34}{total['c']:>10}{total['python']:>12}")
    print(f"pure_over_c_pss={total['python'] / total['c']:.2f} pure_daemons_mb={total['python'] / 1024:.1f}")


if __name__ == "__main__":
    run_bench("bench/footprint", main)
