"""Health-gated rollouts: site.yml's batches and its gate (role cpe_rollback's batch.yml and
gate.yml, run for real by tests/rollout/rollout.yml on hosts that are the controller itself),
and the summary the mptcp_cpe_rollout callback prints and writes. A CPE cut off mid-play
stops the rollout after its batch, which Ansible's max_fail_percentage alone does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import TOP

PLAYBOOK = TOP / "tests" / "rollout" / "rollout.yml"
CALLBACK = TOP / "plugins" / "callback" / "mptcp_cpe_rollout.py"
HOSTS = ["cpe1", "cpe2", "cpe3", "cpe4", "cpe5"]


def rollout(tmp_path: Path, serial, **per_host) -> tuple[subprocess.CompletedProcess, dict]:
    hosts = {h: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 **per_host.get(h, {})} for h in HOSTS}
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"cpes": {"hosts": hosts}}}}))
    summary = tmp_path / "summary.json"
    env = {**os.environ, "MPTCP_CPE_ROLLOUT_SUMMARY": str(summary), "ANSIBLE_FORCE_COLOR": "0"}
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inv), str(PLAYBOOK),
                           "-e", json.dumps({"mptcp_cpe_serial": serial, **per_host.get("extra", {})})],
                          cwd=TOP, env=env, capture_output=True, text=True, timeout=300)
    return proc, json.loads(summary.read_text()) if summary.exists() else {}


def touched(proc: subprocess.CompletedProcess) -> set[str]:
    return {h for h in HOSTS if f"[{h}]" in proc.stdout}


def test_a_good_rollout_confirms_every_batch(tmp_path):
    proc, summary = rollout(tmp_path, [1, "50%", "100%"])
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert summary["confirmed"] == HOSTS and not summary["restoring"] and not summary["not_touched"]
    assert "ROLLOUT SUMMARY" in proc.stdout and "changed and confirmed (5): cpe1, cpe2, cpe3, cpe4, cpe5" in proc.stdout


def test_a_cpe_the_run_left_as_it_was_is_told_apart(tmp_path):
    proc, summary = rollout(tmp_path, ["100%"], cpe2={"unchanged": True}, cpe4={"unchanged": True})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert summary["confirmed"] == ["cpe1", "cpe3", "cpe5"] and summary["unchanged"] == ["cpe2", "cpe4"]
    assert "changed and confirmed (3): cpe1, cpe3, cpe5" in proc.stdout
    assert "healthy, nothing to change (2): cpe2, cpe4" in proc.stdout


def test_a_cpe_cut_off_stops_the_rollout_after_its_batch(tmp_path):
    proc, summary = rollout(tmp_path, [1, 2, "100%"], cpe2={"cut": True})
    assert proc.returncode != 0
    assert touched(proc) == {"cpe1", "cpe2", "cpe3"}, proc.stdout[-3000:]
    assert summary["confirmed"] == ["cpe1", "cpe3"]
    assert list(summary["restoring"]) == ["cpe2"] and summary["restoring"]["cpe2"].startswith(
        "cut off; restores itself at 2026-12-07T19:00:00Z (only disarms if nothing changed): Stand in for the roles:")
    assert summary["not_touched"] == ["cpe4", "cpe5"]
    assert "1 of its 2 CPEs not confirmed (cpe2)" in summary["stopped"]
    assert "restoring itself: cpe2: cut off" in proc.stdout and "not touched (2): cpe4, cpe5" in proc.stdout


def test_without_the_gate_ansible_rolls_on_past_an_unreachable_cpe(tmp_path):
    """Why the gate exists: max_fail_percentage 0 does not count the unreachable."""
    proc, summary = rollout(tmp_path, [1, 2, "100%"], cpe2={"cut": True}, extra={"skip_gate": True})
    assert touched(proc) == set(HOSTS), proc.stdout[-3000:]
    assert summary["not_touched"] == [] and list(summary["restoring"]) == ["cpe2"]


def test_an_unhealthy_cpe_stops_the_rollout_and_says_why(tmp_path):
    proc, summary = rollout(tmp_path, [1, 2, "100%"], cpe3={"unhealthy": True})
    assert proc.returncode != 0
    assert touched(proc) == {"cpe1", "cpe2", "cpe3"}, proc.stdout[-3000:]
    assert summary["confirmed"] == ["cpe1"] or summary["confirmed"] == ["cpe1", "cpe2"]
    assert "not healthy after the apply: convert: 203.0.113.1:5124: Connection refused" in summary["restoring"]["cpe3"]
    assert summary["restoring"]["cpe3"].startswith("not confirmed; restores itself at 2026-12-07T19:00:00Z (only")
    assert summary["not_touched"] == ["cpe4", "cpe5"]


def test_a_cpe_refused_at_its_checks_changed_nothing(tmp_path):
    proc, summary = rollout(tmp_path, ["100%"], cpe4={"fail_checks": True})
    assert proc.returncode != 0
    assert list(summary["not_changed"]) == ["cpe4"] and "cpe_wans[0].kind" in summary["not_changed"]["cpe4"]
    assert "cpe4" not in summary["restoring"]


def test_the_callback_follows_the_roles_task_names():
    """The names the summary keys on are the role's own: renaming one breaks this, not the summary."""
    text = CALLBACK.read_text()
    tasks = {t["name"] for f in ("batch.yml", "main.yml", "confirm.yml", "gate.yml")
             for t in _tasks(yaml.safe_load((TOP / "roles" / "cpe_rollback" / "tasks" / f).read_text()))}
    for const in ("BATCH", "ARM", "CONFIRM", "GATE", "REACH"):
        name = next(line for line in text.splitlines() if line.startswith(f"{const} = ")).split('"')[1]
        assert name.removeprefix("cpe_rollback : ") in tasks, name


def _tasks(items):
    for t in items or []:
        yield t
        yield from _tasks(t.get("block"))


@pytest.mark.parametrize("playbook", ["site.yml"])
def test_site_yml_gates_every_batch(playbook):
    play = next(p for p in yaml.safe_load((TOP / playbook).read_text()) if p.get("hosts") == "cpes")
    assert play["max_fail_percentage"] == 0 and "mptcp_cpe_serial" in play["serial"]
    roles = [(t["ansible.builtin.include_role"]["name"], t["ansible.builtin.include_role"].get("tasks_from"))
             for t in play["pre_tasks"] + play["post_tasks"]]
    assert roles == [("cpe_rollback", None), ("cpe_rollback", "confirm"), ("cpe_rollback", "gate")]
