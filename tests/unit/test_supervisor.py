"""The relay's Supervisor says the service runs only once every worker serves: its log line
and READY=1 to systemd (Type=notify) wait for the workers' worker_ready(), and SIGTERM
sends STOPPING=1. Real forked workers, a real datagram socket standing in for systemd's."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# The supervisor in a child process: workers wait for a gate file before they say they
# serve (one of them never does when SILENT is set), then sleep until SIGTERM.
SCRIPT = textwrap.dedent("""
    import logging, os, sys, time
    from pathlib import Path
    from mptcp_cpe import relay

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    relay.READY_WAIT_S = float(os.environ["READY_WAIT_S"])
    gate = Path(os.environ["GATE"])
    silent = int(os.environ.get("SILENT", "-1"))

    def work(index):
        while not gate.exists():
            time.sleep(0.02)
        if index != silent:
            relay.worker_ready()
        while True:
            time.sleep(1)

    sys.exit(relay.Supervisor("test", 2, work, lambda: True, drain_s=0.5).run())
""")


@pytest.fixture
def notify(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(0.5)
    yield sock
    sock.close()


def _start(tmp_path: Path, wait_s: float, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "GATE": str(tmp_path / "gate"),
             "READY_WAIT_S": str(wait_s), **env})


def _recv(sock: socket.socket, within: float) -> str | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            return sock.recv(4096).decode()
        except TimeoutError:
            continue
    return None


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    return err


def test_ready_only_once_every_worker_serves(tmp_path, notify):
    proc = _start(tmp_path, wait_s=30)
    try:
        # Forked and running, but no worker serves yet: systemd hears nothing.
        assert _recv(notify, 1.0) is None
        (tmp_path / "gate").touch()
        assert _recv(notify, 10) == "READY=1\nSTATUS=2 of 2 worker(s) serving"
    finally:
        err = _stop(proc)
    assert proc.returncode == 0, err
    assert _recv(notify, 2) == "STOPPING=1"
    assert "INFO test: 2 worker(s) running" in err
    assert "WARNING" not in err


def test_a_worker_that_never_serves_is_named_after_the_wait(tmp_path, notify):
    (tmp_path / "gate").touch()
    proc = _start(tmp_path, wait_s=1.0, SILENT="1")
    try:
        assert _recv(notify, 10) == "READY=1\nSTATUS=1 of 2 worker(s) serving"
    finally:
        err = _stop(proc)
    assert "WARNING test: 1 of 2 worker(s) serving after 1 s (not yet: worker 1); going on, the others as they come" in err
    assert "worker(s) running" not in err


def test_no_notify_socket_is_no_error(monkeypatch):
    from mptcp_cpe.sdnotify import sd_notify

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False
