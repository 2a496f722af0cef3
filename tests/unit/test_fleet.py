"""Role cpe_rollback's settings: defaults accepted, every mistake found at once, each naming
host, variable and value."""

from __future__ import annotations

import pytest

from mptcp_cpe.checks import InventoryError, error_list
from mptcp_cpe.fleet import rollback_settings

GOOD = {"enabled": True, "timeout_s": 300, "reconnect_timeout_s": 60, "health_wait_s": 120, "health_expect": []}
WANS = ["dsl", "lte"]


def test_defaults_and_expectations_pass():
    assert rollback_settings(GOOD, "cpe", WANS)["timeout_s"] == 300.0
    got = rollback_settings({**GOOD, "timeout_s": 60, "health_expect": ["lte=any", "dsl=down"]}, "cpe", WANS)
    assert got["health_expect"] == ["lte=any", "dsl=down"] and got["timeout_s"] == 60.0
    assert rollback_settings({**GOOD, "timeout_s": 3600.0}, "cpe", WANS)["timeout_s"] == 3600.0


def test_values_given_on_the_command_line_are_taken_as_they_spell():
    # -e cpe_rollback_timeout_s=120 -e cpe_rollback_enabled=false: strings, as Ansible passes them.
    got = rollback_settings({**GOOD, "timeout_s": "120", "health_wait_s": "30", "enabled": "False"}, "cpe", WANS)
    assert got["timeout_s"] == 120.0 and got["health_wait_s"] == 30 and got["enabled"] is False


@pytest.mark.parametrize("change, line", [
    ({"timeout_s": 59}, "cpe: cpe_rollback_timeout_s: must be a number from 60 to 3600 (got 59)"),
    ({"timeout_s": 3601}, "cpe: cpe_rollback_timeout_s: must be a number from 60 to 3600 (got 3601)"),
    ({"timeout_s": "300s"}, "cpe: cpe_rollback_timeout_s: must be a number from 60 to 3600 (got '300s')"),
    ({"timeout_s": "59"}, "cpe: cpe_rollback_timeout_s: must be a number from 60 to 3600 (got 59)"),
    ({"timeout_s": True}, "cpe: cpe_rollback_timeout_s: must be a number from 60 to 3600 (got True)"),
    ({"enabled": "yes"}, "cpe: cpe_rollback_enabled: must be true or false (got 'yes')"),
    ({"reconnect_timeout_s": 0}, "cpe: cpe_rollback_reconnect_timeout_s: must be an integer from 5 to 3600 (got 0)"),
    ({"health_wait_s": -1}, "cpe: cpe_rollback_health_wait_s: must be an integer from 0 to 3600 (got -1)"),
    ({"health_expect": "lte=any"}, "cpe: cpe_rollback_health_expect: must be a list of NAME=up|down|any (got 'lte=any')"),
    ({"health_expect": ["lte"]}, "cpe: cpe_rollback_health_expect[0]: must be NAME=up, NAME=down or NAME=any (got 'lte')"),
    ({"health_expect": ["lte=gone"]}, "cpe: cpe_rollback_health_expect[0]: must be NAME=up, NAME=down or NAME=any (got 'lte=gone')"),
    ({"health_expect": ["wan9=up"]}, "cpe: cpe_rollback_health_expect[0]: wan9 is not a WAN of cpe_wans (dsl, lte) (got 'wan9=up')"),
    ({"health_expect": ["lte=up", "lte=any"]}, "cpe: cpe_rollback_health_expect[1]: lte is named twice (got 'lte=any')"),
], ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_each_mistake_names_host_field_value(change, line):
    with pytest.raises(InventoryError) as exc:
        rollback_settings({**GOOD, **change}, "cpe", WANS)
    assert str(exc.value) == line


def test_every_mistake_at_once():
    with pytest.raises(InventoryError) as exc:
        rollback_settings({**GOOD, "timeout_s": 30, "enabled": None, "health_expect": ["x=up", 5]}, "cpe", WANS)
    fields = [e.field for e in error_list(exc.value)]
    assert fields == ["cpe_rollback_enabled", "cpe_rollback_timeout_s", "cpe_rollback_health_expect[0]",
                      "cpe_rollback_health_expect[1]"]
