"""bench/fleet's measurement: site.yml on the SSH-managed lab (inventories/fleet) with 1, 5
and 20 CPEs, a first run and a no-change run each, forks 20 (what and how: bench/README.md).
The controller's CPU is every process the run started, the ssh masters ControlPersist
detaches included: this process is their subreaper, so each is reaped here and counted in
RUSAGE_CHILDREN. Run by bench/fleet, as root, from the repository root."""
import ctypes, json, os, resource, signal, subprocess, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "netns"))  # netlab, shared with the tests
from netlab import run_bench, watchdog  # noqa: E402

TOP = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INVENTORY = TOP / "inventories" / "fleet"
PREFIX = os.environ.get("BENCH_PREFIX", "bench-fleet")
SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "1,5,20").split(",")]
FORKS = int(os.environ.get("BENCH_FORKS", "20"))
RUN_TIMEOUT_S = float(os.environ.get("BENCH_RUN_TIMEOUT_S", "3600"))
# The rollback must outlast a whole batch's play (it is armed first): twenty first installs
# at once on a two-core controller take longer than the default 300 s.
ROLLBACK_TIMEOUT_S = int(os.environ.get("BENCH_ROLLBACK_TIMEOUT_S", "1800"))
PR_SET_CHILD_SUBREAPER = 36


def labctl(*args: str) -> None:
    proc = subprocess.run([sys.executable, str(TOP / "lab" / "labctl.py"), *args, "--prefix", PREFIX],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"bench/fleet: labctl {args[0]}: {proc.stderr.strip()}")


def reap_orphans() -> None:
    """End the processes the run left to this subreaper (ssh ControlPersist masters) and reap
    them, so that their CPU is counted."""
    me = str(os.getpid())
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(line.split()[1] for line in status.read_text().splitlines() if line.startswith("PPid:"))
        except (OSError, StopIteration):
            continue
        if ppid == me:
            os.kill(int(status.parent.name), signal.SIGTERM)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def site(hosts: list[str], tmp: Path, label: str) -> dict:
    """One site.yml run on the isp and these CPEs: wall time, controller CPU, the rollout's summary."""
    summary = tmp / f"{label}.json"
    env = {**os.environ, "MPTCP_LAB_PREFIX": PREFIX, "MPTCP_CPE_ROLLOUT_SUMMARY": str(summary),
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp / "cp"), "ANSIBLE_FORCE_COLOR": "0"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    log = tmp / f"{label}.log"
    with log.open("w") as out:
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(INVENTORY), "site.yml", "--forks", str(FORKS),
                               "--limit", ",".join(["isp", *hosts]), "-e", f"cpe_rollback_timeout_s={ROLLBACK_TIMEOUT_S}"],
                              cwd=TOP, env=env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)
    wall = time.monotonic() - start
    reap_orphans()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"bench/fleet: {label}: site.yml failed (exit {proc.returncode}); its log:\n"
                         + "\n".join(log.read_text().splitlines()[-40:]))
    s = json.loads(summary.read_text())
    return {"wall_s": wall, "cpu_s": cpu, "changed": len(s["confirmed"]), "unchanged": len(s["unchanged"]),
            "summary": s}


def main() -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit("bench/fleet: prctl(PR_SET_CHILD_SUBREAPER) failed")
    rows = []
    with watchdog(RUN_TIMEOUT_S * 2 * len(SIZES) + 600), tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        try:
            for n in SIZES:
                hosts = [f"cpe{i:02d}" for i in range(1, n + 1)]
                labctl("down")
                labctl("up", "--inventory", str(INVENTORY), "--hosts", ",".join(["isp", *hosts]))
                for run in ("first", "no-change"):
                    r = site(hosts, tmp, f"n{n}-{run}")
                    want = (n, 0) if run == "first" else (0, n)
                    if (r["changed"], r["unchanged"]) != want:
                        raise SystemExit(f"bench/fleet: n={n} {run}: expected {want[0]} CPEs changed and {want[1]} "
                                         f"unchanged, confirmed; got {r['summary']}")
                    rows.append({"n": n, "run": run, **r})
                    print(f"n={n:<3} {run:<10} wall {r['wall_s']:7.1f} s  controller CPU {r['cpu_s']:7.1f} s  "
                          f"{r['cpu_s'] / n:6.2f} s/CPE  changed {r['changed']}, unchanged {r['unchanged']}", flush=True)
        finally:
            labctl("down")
    nochange = {r["n"]: r for r in rows if r["run"] == "no-change"}
    lo, hi = min(nochange), max(nochange)
    print()
    print(f"{'CPEs':>5} {'run':<10} {'wall s':>8} {'CPU s':>8} {'CPU s/CPE':>10} {'wall / n=' + str(lo):>12}")
    for r in rows:
        base = next(x["wall_s"] for x in rows if x["n"] == lo and x["run"] == r["run"])
        print(f"{r['n']:>5} {r['run']:<10} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} {r['cpu_s'] / r['n']:10.2f} "
              f"{r['wall_s'] / base:12.2f}")
    print(f"targets: n{hi}_over_n{lo}_nochange <= 3.0, controller_cpu_s_per_cpe <= 4.0 "
          f"(the no-change run of {hi}, the isp's plays included)")
    print(f"n{hi}_over_n{lo}_nochange={nochange[hi]['wall_s'] / nochange[lo]['wall_s']:.2f} "
          f"controller_cpu_s_per_cpe={nochange[hi]['cpu_s'] / hi:.2f}")


if __name__ == "__main__":
    run_bench("bench/fleet", main)
