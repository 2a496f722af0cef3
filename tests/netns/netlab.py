"""Network namespaces and processes for the root-only tests and the benches: made by the
caller, always removed. The one copy of these helpers: tests/netns/*.py import it as
`netlab` (pytest puts this folder on sys.path), bench/lib/*.py add this folder to sys.path.

Addresses are documentation ranges only; nothing here routes anywhere but between the
namespaces a test or a bench made. pytest is imported only for the test-only names
(`needs_root`, the `procs` fixture): the benches run without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path

try:
    import pytest
except ImportError:  # a bench, run by a Python without the dev extra
    pytest = None


class LabError(AssertionError):
    """A command failed or a wait timed out: a failed assertion in a test, a bench's exit
    message (the benches catch it)."""


class ProcessExited(LabError):
    """A process that a wait depended on ended."""


def sh(*cmd: str, check: bool = True, ns: str | None = None, **kw) -> subprocess.CompletedProcess:
    """Run cmd (in namespace ns), output captured as text; kw goes to subprocess.run (timeout=)."""
    argv = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    proc = subprocess.run(argv, text=True, capture_output=True, **kw)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def wait_for(what: str, check: Callable[[], object], timeout: float = 20.0, every: float = 0.2,
             explain: Callable[[], str] | None = None):
    """Poll until check() returns something true; fail naming what was awaited (and, with
    ``explain``, what it returns: the evidence a failure on another machine needs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    detail = f"\n{explain()}" if explain else ""
    raise LabError(f"timed out after {timeout:g} s waiting for {what}{detail}")


# --- namespaces and links


def kill_namespace_processes(*names: str) -> None:
    """SIGKILL whatever runs in these namespaces (only for namespaces nobody but their maker uses)."""
    for ns in names:
        for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


def delete_namespaces(*names: str, kill: bool = False) -> None:
    """Remove the namespaces (those missing are fine); kill: their processes first."""
    if kill:
        kill_namespace_processes(*names)
    for ns in names:
        sh("ip", "netns", "del", ns, check=False)


def add_namespaces(*names: str, kill: bool = False) -> None:
    """Fresh namespaces with lo up; any left by an earlier run are removed first."""
    delete_namespaces(*names, kill=kill)
    for ns in names:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)


@contextlib.contextmanager
def namespaces(*names: str, kill: bool = False) -> Iterator[tuple[str, ...]]:
    """Fresh namespaces for the block, removed after it whatever happened. kill: also SIGKILL
    what still runs in them, before making them (a run killed hard) and after."""
    add_namespaces(*names, kill=kill)
    try:
        yield names
    finally:
        delete_namespaces(*names, kill=kill)


def veth(ns_a: str, dev_a: str, ns_b: str, dev_b: str) -> None:
    """A veth from dev_a in ns_a to dev_b in ns_b, both ends up."""
    sh("ip", "link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b)
    sh("ip", "link", "set", dev_a, "up", ns=ns_a)
    sh("ip", "link", "set", dev_b, "up", ns=ns_b)


def add_addresses(ns: str, dev: str, addrs: Iterable[str]) -> None:
    """Addresses on dev; IPv6 ones without duplicate address detection (usable at once)."""
    for addr in addrs:
        extra = ["nodad"] if ":" in addr else []
        sh("ip", "addr", "add", addr, "dev", dev, *extra, ns=ns)


@contextlib.contextmanager
def link_pair(prefix: str, a_addr: list[str], b_addr: list[str]) -> Iterator[tuple[str, str]]:
    """Two namespaces <prefix>-a and <prefix>-b joined by a veth: a0 in a, b0 in b."""
    a, b = f"{prefix}-a", f"{prefix}-b"
    with namespaces(a, b):
        veth(a, "a0", b, "b0")
        add_addresses(a, "a0", a_addr)
        add_addresses(b, "b0", b_addr)
        yield a, b


# --- processes


# The converter's topology (tests/netns/test_converter.py, bench/converter): a LAN host, and a
# CPE with one routing table per WAN and an MPTCP subflow endpoint on wan2 (what wand would
# make), as ip(8) argument lines for each namespace.
CONVERTER_LAN = ["addr add 192.0.2.10/24 dev lan0", "route add default via 192.0.2.1",
                 "addr add 2001:db8:1::10/64 dev lan0 nodad", "-6 route add default via 2001:db8:1::1"]
CONVERTER_CPE = ["addr add 192.0.2.1/24 dev lan0", "addr add 2001:db8:1::1/64 dev lan0 nodad",
                 "addr add 198.51.100.2/24 dev wan1", "addr add 203.0.113.2/24 dev wan2",
                 "addr add 2001:db8:a::2/64 dev wan1 nodad", "route add default via 198.51.100.1",
                 "-6 route add default via 2001:db8:a::1",
                 "route add default via 198.51.100.1 table 101", "rule add from 198.51.100.2 table 101 prio 100",
                 "route add default via 203.0.113.1 table 102", "rule add from 203.0.113.2 table 102 prio 101",
                 "mptcp limits set subflows 2 add_addr_accepted 2", "mptcp endpoint add 203.0.113.2 dev wan2 subflow"]

LOG = "log"  # Procs.start's stdout/stderr: the process's own log file, <logdir>/<name>.log


class Procs:
    """Background processes of one test or bench, each leading a process group of its own (a
    signal reaches its children too); all stopped at the end, whatever happened.

    new_session: each also in a session of its own (the tests). The benches keep theirs in
    the caller's session: with autogroup scheduling a session is a CPU-share group, and a
    bench's peers must compete for the CPU as one group, as they were measured."""

    def __init__(self, logdir: Path, new_session: bool = True):
        self.logdir = logdir
        self.new_session = new_session
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, name: str, *cmd: str, ns: str | None = None, env: dict | None = None,
              stdin=None, stdout=LOG, stderr=LOG) -> subprocess.Popen:
        """Start cmd (in namespace ns). stdout and stderr go to the log by default (both:
        one stream); otherwise as for Popen (PIPE, DEVNULL, None to inherit). Pipes are text."""
        argv = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
        log = open(self.logdir / f"{name}.log", "w") if LOG in (stdout, stderr) else None  # noqa: SIM115 - closed with the process
        if stdout is LOG:
            stdout, stderr = log, subprocess.STDOUT if stderr is LOG else stderr
        elif stderr is LOG:
            stderr = log
        group = {"start_new_session": True} if self.new_session else {"process_group": 0}
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, env=env, text=True, **group)
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tail(self, name: str, n: int = 15) -> str:
        """The last n lines of the process's log."""
        return "\n".join(self.log(name).splitlines()[-n:])

    def wait_for(self, what: str, check: Callable[[], object], names: Collection[str] | None = None,
                 timeout: float = 20.0, every: float = 0.2):
        """wait_for, failing at once if one of the named processes (default: all) exits;
        the failure carries the tails of their logs."""
        watched = [(n, p) for n, p in self.procs if names is None or n in names]

        def alive_and_check():
            for name, proc in watched:
                if proc.poll() is not None:
                    raise ProcessExited(f"{name} exited ({proc.returncode}) while waiting for {what}:\n{self.tail(name)}")
            return check()

        try:
            return wait_for(what, alive_and_check, timeout=timeout, every=every)
        except ProcessExited:
            raise
        except LabError as exc:  # timed out
            raise LabError(f"{exc}:\n" + "\n".join(self.tail(n) for n, _ in watched)) from None

    def forget(self, proc: subprocess.Popen) -> None:
        """proc has ended (or its caller ends it): not ours to stop any more."""
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        return self._reap(proc, timeout)

    def close(self, timeout: float = 5) -> None:
        """SIGTERM to every process, the last started first (a converter drains before the
        servers it relays to go), and only then wait; SIGKILL what is left after timeout."""
        running = [p for _, p in reversed(self.procs) if p.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in running:
            self._reap(proc, timeout)
        self.procs.clear()

    @staticmethod
    def _reap(proc: subprocess.Popen, timeout: float) -> int:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        return proc.returncode


def cpu_seconds(pids: Iterable[int]) -> float:
    """User and system CPU time of the processes, summed; those gone count nothing."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


# --- what a namespace's kernel counts (the benches)


def listening(ns: str, port: int) -> bool:
    """Something in ns listens on TCP port."""
    return bool(sh("ss", "-Htln", f"sport = :{port}", ns=ns, check=False, timeout=30).stdout.strip())


def netstat(ns: str) -> dict[str, int]:
    """This namespace's TcpExt and MPTcpExt counters, as {"TcpExt.X": n, "MPTcpExt.Y": n}."""
    lines = sh("cat", "/proc/net/netstat", ns=ns, timeout=30).stdout.splitlines()
    out = {}
    for head, vals in zip(lines[::2], lines[1::2]):
        prefix = head.split(":")[0]
        out.update({f"{prefix}.{k}": int(v) for k, v in zip(head.split()[1:], vals.split()[1:])})
    return out


def received(ns: str, match: str) -> tuple[int, float]:
    """(in-order octets received by the TCP sockets of ns that match, when): tcpi_bytes_received.
    An MPTCP connection's subflows are TCP sockets here too: their sum."""
    a = time.monotonic()
    out = sh("ss", "-Htni", "state", "established", match, ns=ns, timeout=30).stdout
    b = time.monotonic()
    return sum(int(x) for x in re.findall(r"bytes_received:(\d+)", out)), (a + b) / 2


def tree(pid: int) -> list[int]:
    """pid and its children (a supervisor and its workers); [] once it is gone."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid] + [int(k) for k in kids]


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """TimeoutError in the main thread if the block takes more than seconds (the with blocks
    it breaks out of clean up); off again when the block ends, before they do."""

    def on_alarm(*_):
        raise TimeoutError(f"watchdog: the bench took more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_bench(name: str, main: Callable[[], None]) -> None:
    """Run a bench's main(). SIGTERM and SIGHUP end it as SIGINT does, by an exception that
    its with blocks clean up after; then one line naming the bench says why it stopped."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"{name}: terminated"))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(f"{name}: hung up"))
    try:
        main()
    except TimeoutError as exc:  # the watchdog
        sys.exit(f"{name}: {exc}; namespaces and processes removed")
    except KeyboardInterrupt:
        sys.exit(f"{name}: interrupted; namespaces and processes removed")


def start_kea4(procs: Procs, tmp_path: Path, ns: str, config: dict, name: str = "kea4",
               render: Callable[[dict], str] | None = None) -> subprocess.Popen:
    """kea-dhcp4 in a namespace with every file in tmp_path; returns once it serves.
    ``render``: the config's text (default JSON; the LAN's Kea has include directives)."""
    cfg = dict(config)
    dhcp4 = dict(cfg["Dhcp4"])
    dhcp4.setdefault("lease-database", {"type": "memfile", "persist": True, "name": str(tmp_path / f"{name}-leases.csv")})
    dhcp4.setdefault("loggers", [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "DEBUG", "debuglevel": 15}])
    cfg["Dhcp4"] = dhcp4
    path = tmp_path / f"{name}.json"
    path.write_text(render(cfg) if render else json.dumps(cfg, indent=2))
    env = dict(os.environ, KEA_PIDFILE_DIR=str(tmp_path), KEA_LOCKFILE_DIR=str(tmp_path))
    proc = procs.start(name, "kea-dhcp4", "-c", str(path), ns=ns, env=env)
    wait_for("kea-dhcp4 to open its sockets",
             lambda: proc.poll() is not None or "DHCP4_STARTED" in procs.log(name), timeout=20)
    assert proc.poll() is None, procs.log(name)[-3000:]
    return proc


# --- pytest only

if pytest is not None:
    needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

    @pytest.fixture
    def procs(tmp_path) -> Iterator[Procs]:
        with Procs(tmp_path) as p:
            yield p
