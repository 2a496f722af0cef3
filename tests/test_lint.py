"""ansible-lint with the production profile, and syntax checks of the entry points."""

from __future__ import annotations

import pytest

from helpers import TOP, run

pytestmark = pytest.mark.lint


def test_ansible_lint_production():
    proc = run("ansible-lint", "--profile", "production", "--nocolor")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


@pytest.mark.parametrize("inventory", ["lab", "example"])
@pytest.mark.parametrize("playbook", ["site.yml", "validate.yml"])
def test_syntax_check(inventory, playbook):
    proc = run("ansible-playbook", "--syntax-check", "-i", TOP / "inventories" / inventory, playbook)
    assert proc.returncode == 0, proc.stdout + proc.stderr
