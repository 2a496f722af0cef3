"""The commit-confirmed apply's agent on a router's tree under a temporary root: the
snapshot, arm and confirm, the restore (files back, new ones gone, modes and links kept),
a restore killed midway and finished by ``recover``, and the refusals."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mptcp_cpe import rollback
from mptcp_cpe.rollback import Agent, Init, RollbackError

OWNED = ("/etc/mptcp-cpe", "/etc/systemd/system/mptcp-cpe-*", "/etc/systemd/system/*.wants/mptcp-cpe-*",
         "/etc/sysctl.d/90-mptcp-cpe.conf", "/usr/local/bin/mptcp-cpe")
SCRIPT = Path(rollback.__file__)


def tree(root: Path) -> dict[str, tuple]:
    """Every path under root with its kind, mode and content (or link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if rel.startswith("var/lib/mptcp-cpe"):
                continue
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out


def router(root: Path, files: int = 3) -> None:
    etc = root / "etc"
    (etc / "mptcp-cpe").mkdir(parents=True)
    for i in range(files):
        (etc / "mptcp-cpe" / f"c{i}.json").write_text(json.dumps({"i": i}))
    (etc / "mptcp-cpe" / "secret").write_text("k")
    (etc / "mptcp-cpe" / "secret").chmod(0o600)
    units = etc / "systemd" / "system"
    (units / "multi-user.target.wants").mkdir(parents=True)
    (units / "mptcp-cpe-wand.service").write_text("[Service]\nExecStart=/bin/true\n")
    (units / "mptcp-cpe-wand.service.d").mkdir()
    (units / "mptcp-cpe-wand.service.d" / "hardening.conf").write_text("[Service]\nNoNewPrivileges=yes\n")
    os.symlink("/etc/systemd/system/mptcp-cpe-wand.service", units / "multi-user.target.wants" / "mptcp-cpe-wand.service")
    (units / "ssh.service").write_text("not ours\n")
    (etc / "sysctl.d").mkdir()
    (etc / "sysctl.d" / "90-mptcp-cpe.conf").write_text("net.mptcp.enabled=1\n")
    (root / "usr/local/bin").mkdir(parents=True)
    os.symlink("/opt/mptcp-cpe/venv/bin/mptcp-cpe", root / "usr/local/bin/mptcp-cpe")


def agent(root: Path) -> Agent:
    return Agent(root=root, owned=OWNED, init=Init("none"), nft=False, host="cpe-r")


def change(root: Path) -> None:
    """What a bad apply does: a config rewritten, one added, one removed, a unit and its
    enablement added, a mode changed, the command's link moved, a directory replaced."""
    etc = root / "etc"
    (etc / "mptcp-cpe" / "c0.json").write_text("{broken")
    (etc / "mptcp-cpe" / "new.json").write_text("{}")
    (etc / "mptcp-cpe" / "c1.json").unlink()
    (etc / "mptcp-cpe" / "secret").chmod(0o644)
    units = etc / "systemd" / "system"
    (units / "mptcp-cpe-converter.service").write_text("[Service]\n")
    os.symlink("/etc/systemd/system/mptcp-cpe-converter.service",
               units / "multi-user.target.wants" / "mptcp-cpe-converter.service")
    (units / "mptcp-cpe-wand.service.d" / "hardening.conf").unlink()
    (units / "mptcp-cpe-wand.service.d").rmdir()
    (units / "mptcp-cpe-wand.service.d").write_text("now a file")
    (root / "usr/local/bin/mptcp-cpe").unlink()
    os.symlink("/elsewhere", root / "usr/local/bin/mptcp-cpe")
    (etc / "sysctl.d" / "90-mptcp-cpe.conf").unlink()
    (units / "ssh.service").write_text("changed by someone else\n")


def test_restore_puts_back_exactly_what_was_owned(tmp_path):
    router(tmp_path)
    a = agent(tmp_path)
    a.arm(300, "test")
    before = tree(tmp_path)
    change(tmp_path)
    assert tree(tmp_path) != before
    assert a.restore("test") == []
    after = tree(tmp_path)
    # Everything owned is back; what is not owned (ssh.service) keeps its change.
    before["etc/systemd/system/ssh.service"] = ("file", 0o644, b"changed by someone else\n")
    assert after == before
    assert a.armed() is None and not (a.state / rollback.RESTORING).exists()
    assert "restored the snapshot" in a.last_log() and "(6 paths)" in a.last_log()


def test_the_snapshot_is_readable_by_root_alone(tmp_path):
    """It holds the configs' 0600 files: a local user must not read them from the tar."""
    router(tmp_path)
    a = agent(tmp_path)
    a.arm(300, "test")
    assert stat.S_IMODE(a.state.stat().st_mode) == 0o700
    assert stat.S_IMODE((a.state / rollback.SNAPSHOT).stat().st_mode) == 0o600
    assert stat.S_IMODE((a.state / rollback.ARMED).stat().st_mode) == 0o600


def test_arm_confirm_and_a_second_arm_keeps_the_confirmed_snapshot(tmp_path):
    router(tmp_path)
    a = agent(tmp_path)
    first = a.arm(300, "run 1")
    assert not first["kept_snapshot"] and first["snapshot"]["paths"] == 6
    status = a.status()
    assert status["armed"] and 295 <= status["remaining_s"] <= 300 and status["reason"] == "run 1"
    original = tree(tmp_path)
    change(tmp_path)
    # A second apply before the first is confirmed: the snapshot stays the confirmed state.
    second = a.arm(600, "run 2")
    assert second["kept_snapshot"] and second["snapshot"] == first["snapshot"] and second["timeout_s"] == 600
    a.restore("test")
    assert tree(tmp_path)["etc/mptcp-cpe/c0.json"] == original["etc/mptcp-cpe/c0.json"]
    a.arm(300, "run 3")
    assert a.confirm("healthy")["reason"] == "run 3"
    assert a.armed() is None and a.status()["armed"] is False
    with pytest.raises(RollbackError, match=r"cpe-r: nothing armed to confirm \(the last event: .*confirmed"):
        a.confirm("again")


def test_expire_waits_for_the_deadline_then_restores(tmp_path):
    router(tmp_path)
    a = agent(tmp_path)
    a.arm(60, "test")
    change(tmp_path)
    assert a.expire().startswith("not yet")
    assert tree(tmp_path)["etc/mptcp-cpe/c0.json"][2] == b"{broken"
    armed = json.loads((a.state / rollback.ARMED).read_text())
    (a.state / rollback.ARMED).write_text(json.dumps({**armed, "deadline": time.time() - 1}))
    assert a.expire() == "restored"
    assert tree(tmp_path)["etc/mptcp-cpe/c0.json"][2] == b'{"i": 0}'
    assert "not confirmed within 60 s" in a.last_log()
    assert a.expire() == "nothing armed: the apply was confirmed"


def test_an_apply_that_changed_nothing_expires_without_a_restore(tmp_path):
    router(tmp_path)
    a = agent(tmp_path)
    a.arm(60, "refused at its checks")
    armed = json.loads((a.state / rollback.ARMED).read_text())
    (a.state / rollback.ARMED).write_text(json.dumps({**armed, "deadline": time.time() - 1}))
    assert a.unchanged()
    assert a.expire() == "disarmed: nothing changed"
    assert "nothing restored" in a.last_log() and a.armed() is None
    # One octet or one mode changed is a change.
    a.arm(60, "again")
    (tmp_path / "etc/mptcp-cpe/secret").chmod(0o640)
    assert not a.unchanged()
    (tmp_path / "etc/mptcp-cpe/secret").chmod(0o600)
    (tmp_path / "etc/mptcp-cpe/c2.json").write_text('{"i": 3}')
    assert not a.unchanged()


@pytest.mark.parametrize("timeout", [59, 3601, True, float("nan")])
def test_timeout_out_of_range_names_host_field_value(tmp_path, timeout):
    router(tmp_path)
    with pytest.raises(RollbackError, match=r"cpe-r: cpe_rollback_timeout_s: must be a number of seconds from 60 to 3600"):
        agent(tmp_path).arm(timeout, "test")
    assert not (tmp_path / "var/lib/mptcp-cpe/rollback/snapshot.tar").exists()


@pytest.mark.parametrize("pattern", ["etc/mptcp-cpe", "/etc", "/", "/etc/../root"])
def test_owned_paths_must_be_mptcp_cpes_own(tmp_path, pattern):
    with pytest.raises(RollbackError, match="owned: must be an absolute path"):
        Agent(root=tmp_path, owned=(pattern,), init=Init("none"), host="cpe-r")


def test_no_snapshot_and_an_unfinished_restore_are_refused(tmp_path):
    router(tmp_path)
    a = agent(tmp_path)
    with pytest.raises(RollbackError, match="no snapshot to restore"):
        a.restore("test")
    a.arm(300, "test")
    (a.state / rollback.RESTORING).write_text("{}")
    with pytest.raises(RollbackError, match="a restore is unfinished"):
        a.arm(300, "again")


def test_a_restore_broken_off_midway_is_finished_by_recover(tmp_path, monkeypatch):
    router(tmp_path)
    a = agent(tmp_path)
    a.arm(300, "test")
    before = tree(tmp_path)
    change(tmp_path)
    calls = []
    real = Agent._swap

    def swap_then_die(self, tar, members, rel):
        if len(calls) == 2:
            raise KeyboardInterrupt("power cut")
        calls.append(rel)
        real(self, tar, members, rel)

    monkeypatch.setattr(Agent, "_swap", swap_then_die)
    with pytest.raises(KeyboardInterrupt):
        a.restore("test")
    monkeypatch.setattr(Agent, "_swap", real)
    assert (a.state / rollback.RESTORING).exists() and a.status()["restoring"]
    assert tree(tmp_path) != {**before, "etc/systemd/system/ssh.service": ("file", 0o644, b"changed by someone else\n")}
    assert a.recover() == "finished an interrupted restore"
    assert tree(tmp_path) == {**before, "etc/systemd/system/ssh.service": ("file", 0o644, b"changed by someone else\n")}
    # The log keeps why the restore began, and says who finished it.
    assert re.search(r"restored the snapshot of \S+ \(\d+ paths\): test "
                     r"\[interrupted at \S+Z; finished at boot\]$", a.last_log()), a.last_log()
    assert a.recover() == "no restore to finish"


def test_restores_killed_at_random_moments_always_finish_whole(tmp_path):
    """SIGKILL to a real restore at 5 moments (seeded): each time, recover makes the tree the
    snapshot's, never a mix."""
    rng = random.Random(19)
    router(tmp_path, files=3000)
    owned = [a for o in OWNED for a in ("--owned", o)]
    base = [sys.executable, str(SCRIPT), "--root", str(tmp_path), *owned]
    assert subprocess.run(base[:2] + ["arm", "--timeout", "300"] + base[2:], capture_output=True).returncode == 0
    before = tree(tmp_path)
    before["etc/systemd/system/ssh.service"] = ("file", 0o644, b"changed by someone else\n")
    killed = 0
    for _ in range(5):
        change(tmp_path)
        proc = subprocess.Popen(base[:2] + ["now"] + base[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.returncode == -signal.SIGKILL:
            killed += 1
        got = subprocess.run(base[:2] + ["recover"] + base[2:], capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        assert tree(tmp_path) == before
        # A new apply to kill the next restore of: armed again on the restored tree.
        assert subprocess.run(base[:2] + ["arm", "--timeout", "300"] + base[2:], capture_output=True).returncode == 0
    assert killed >= 1  # at least one kill landed midway (the others after the restore ended)


def test_status_and_the_command_line(tmp_path, capsys):
    router(tmp_path)
    args = [sys.executable, str(SCRIPT), "{}", "--root", str(tmp_path)] + [a for o in OWNED for a in ("--owned", o)]

    def run(action, *extra):
        argv = [a.replace("{}", action) for a in args] + list(extra)
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    got = run("status")
    assert got.returncode == 0 and json.loads(got.stdout)["armed"] is False
    got = run("arm", "--timeout", "30")
    assert got.returncode == 1 and "cpe_rollback_timeout_s: must be a number of seconds from 60 to 3600 (got 30.0)" in got.stderr
    assert run("arm", "--timeout", "120", "--reason", "site.yml").returncode == 0
    st = json.loads(run("status").stdout)
    assert st["armed"] and st["reason"] == "site.yml" and st["snapshot"]["paths"] == 6
    assert run("confirm", "--reason", "healthy").returncode == 0
    assert json.loads(run("status").stdout)["armed"] is False


def test_timer_units_fire_at_the_deadline_even_after_a_power_cut():
    units = rollback.timer_units("/usr/local/lib/mptcp-cpe/rollback.py", 1_800_000_000)
    timer = units["mptcp-cpe-rollback.timer"]
    assert "OnCalendar=2027-01-15 08:00:00 UTC" in timer and "Persistent=true" in timer
    assert "rollback.py expire" in units["mptcp-cpe-rollback.service"]
    assert "Restart=on-failure" in units["mptcp-cpe-rollback.service"]
    assert "rollback.py recover" in units["mptcp-cpe-rollback-recover.service"]
    # The rollback's own units are never owned: a restore does not remove its own timer.
    assert rollback._own("/etc/systemd/system/mptcp-cpe-rollback.timer")
