"""Every Molecule scenario, in full: create, converge, idempotence, verify, destroy."""

from __future__ import annotations

import re

import pytest
import yaml

from helpers import TOP, needs_root_docker, run

SCENARIOS = sorted(p.parent.name for p in (TOP / "molecule").glob("*/molecule.yml"))

pytestmark = [pytest.mark.molecule, needs_root_docker]


def test_every_role_is_converged_by_a_scenario():
    # Scenarios are per topology (cpe_base: the CPE alone; wan: isp + CPE), not per role.
    roles = {p.name for p in (TOP / "roles").iterdir() if p.is_dir()}
    included = re.compile(r"^\s*(?:ansible\.builtin\.)?(?:include|import)_role:\s*\n\s*name:\s*(\S+)", re.M)

    def plays(path):
        for play in yaml.safe_load(path.read_text()):
            target = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
            if target:
                yield from plays((path.parent / target).resolve())
            else:
                yield play

    converged = set()
    for converge in (TOP / "molecule").glob("*/converge.yml"):
        for play in plays(converge):
            converged |= {r["role"] if isinstance(r, dict) else r for r in play.get("roles", [])}
            # Roles a play includes in its own tasks (cpe_rollback in pre_tasks and post_tasks).
            for section in ("pre_tasks", "tasks", "post_tasks"):
                for task in play.get(section) or []:
                    inc = next((task[k] for k in ("ansible.builtin.include_role", "ansible.builtin.import_role",
                                                  "include_role", "import_role") if k in task), None)
                    if isinstance(inc, dict):
                        converged.add(inc["name"])
    # firmware.yml's roles (cpe_firmware and the CPE roles it applies) run in the scenario
    # whose create.yml builds an image with it.
    for create in (TOP / "molecule").glob("*/create.yml"):
        if "firmware.yml" in create.read_text():
            converged |= set(included.findall((TOP / "firmware.yml").read_text()))
    # A role that only other roles include (mptcp_cpe_common) is converged through them.
    while True:
        more = {name for role in converged for f in (TOP / "roles" / role).glob("tasks/*.yml")
                for name in included.findall(f.read_text())} - converged
        if not more:
            break
        converged |= more
    assert roles <= converged, f"roles no scenario converges: {roles - converged}"


# Scenarios that need what these machines may not have: a command that exits 0 when it can
# be had, or says in one line why not (the test is then skipped with that line).
GATES = {"openwrt": [str(TOP / "lab" / "openwrt" / "build"), "--check"]}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario, tmp_path):
    if scenario in GATES:
        gate = run(*GATES[scenario], timeout=300)
        if gate.returncode != 0:
            pytest.skip(f"{(gate.stderr or gate.stdout).strip().splitlines()[-1]}; run it where one can be had: "
                        f"MPTCP_CPE_OPENWRT_IMAGE=<rootfs .tar.gz or docker image> molecule test -s {scenario}")
    proc = run("molecule", "test", "-s", scenario, timeout=1800)
    log = tmp_path / "molecule.log"
    log.write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"molecule test -s {scenario} failed (full log {log}):\n" + (proc.stdout + proc.stderr)[-6000:]
