"""Every Molecule scenario, in full: create, converge, idempotence, verify, destroy."""

from __future__ import annotations

import pytest

from helpers import TOP, needs_root_docker, run

SCENARIOS = sorted(p.parent.name for p in (TOP / "molecule").glob("*/molecule.yml"))

pytestmark = [pytest.mark.molecule, needs_root_docker]


def test_every_role_has_a_scenario():
    roles = {p.name for p in (TOP / "roles").iterdir() if p.is_dir()}
    assert roles <= set(SCENARIOS), f"roles without a scenario: {roles - set(SCENARIOS)}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario, tmp_path):
    proc = run("molecule", "test", "-s", scenario, timeout=1800)
    log = tmp_path / "molecule.log"
    log.write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"molecule test -s {scenario} failed (full log {log}):\n" + (proc.stdout + proc.stderr)[-6000:]
