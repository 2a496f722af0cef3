"""Network namespaces and processes for root-only tests: made by the test, always removed.

Addresses are documentation ranges only; nothing here routes anywhere but between the
namespaces a test made.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


def sh(*cmd: str, check: bool = True, ns: str | None = None, **kw) -> subprocess.CompletedProcess:
    argv = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    proc = subprocess.run(argv, text=True, capture_output=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


@contextlib.contextmanager
def link_pair(prefix: str, a_addr: list[str], b_addr: list[str]) -> Iterator[tuple[str, str]]:
    """Two namespaces <prefix>-a and <prefix>-b joined by a veth: a0 in a, b0 in b."""
    a, b = f"{prefix}-a", f"{prefix}-b"
    for ns in (a, b):
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", "a0", "netns", a, "type", "veth", "peer", "name", "b0", "netns", b)
        for ns, dev, addrs in ((a, "a0", a_addr), (b, "b0", b_addr)):
            sh("ip", "link", "set", "lo", "up", ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
            for addr in addrs:
                extra = ["nodad"] if ":" in addr else []
                sh("ip", "addr", "add", addr, "dev", dev, *extra, ns=ns)
        yield a, b
    finally:
        for ns in (a, b):
            sh("ip", "netns", "del", ns, check=False)


class Procs:
    """Background processes of one test; all killed at the end, whatever happened."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, *cmd: str, ns: str | None = None, env: dict | None = None) -> subprocess.Popen:
        argv = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
        log = open(self.logdir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return proc.returncode

    def close(self) -> None:
        for _, proc in reversed(self.procs):
            self.stop(proc, timeout=5)


@pytest.fixture
def procs(tmp_path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.close()


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
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")


def start_kea4(procs: Procs, tmp_path: Path, ns: str, config: dict, name: str = "kea4") -> subprocess.Popen:
    """kea-dhcp4 in a namespace with every file in tmp_path; returns once it serves."""
    cfg = dict(config)
    dhcp4 = dict(cfg["Dhcp4"])
    dhcp4.setdefault("lease-database", {"type": "memfile", "persist": True, "name": str(tmp_path / f"{name}-leases.csv")})
    dhcp4.setdefault("loggers", [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "DEBUG", "debuglevel": 15}])
    cfg["Dhcp4"] = dhcp4
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg, indent=2))
    env = dict(os.environ, KEA_PIDFILE_DIR=str(tmp_path), KEA_LOCKFILE_DIR=str(tmp_path))
    proc = procs.start(name, "kea-dhcp4", "-c", str(path), ns=ns, env=env)
    wait_for("kea-dhcp4 to open its sockets",
             lambda: proc.poll() is not None or "DHCP4_STARTED" in procs.log(name), timeout=20)
    assert proc.poll() is None, procs.log(name)[-3000:]
    return proc
