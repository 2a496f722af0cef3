"""Each role's documented interface: argument_specs.yml lists exactly the keys of defaults/main.yml."""

from __future__ import annotations

import re

import pytest
import yaml

from helpers import TOP

ROLES = sorted(p.name for p in (TOP / "roles").iterdir() if (p / "defaults" / "main.yml").exists())


def test_there_are_roles():
    assert "cpe_base" in ROLES


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_match_defaults(role):
    defaults = yaml.safe_load((TOP / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((TOP / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert set(options) == set(defaults), f"{role}: only in specs {set(options) - set(defaults)}, only in defaults {set(defaults) - set(options)}"
    for key, spec in options.items():
        assert spec.get("default") == defaults[key], f"{role}: {key}: argument_specs default differs from defaults/main.yml"
        assert spec.get("description"), f"{role}: {key} has no description"


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_commented_and_prefixed(role):
    lines = (TOP / "roles" / role / "defaults" / "main.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*):", line)
        if not m:
            continue
        assert m.group(1).startswith(f"{role}_"), f"{role}: {m.group(1)} lacks the role prefix"
        assert i > 0 and lines[i - 1].startswith("#"), f"{role}: {m.group(1)} has no comment above it"


@pytest.mark.parametrize("role", ROLES)
def test_readme_lists_every_variable(role):
    readme = (TOP / "roles" / role / "README.md").read_text()
    defaults = yaml.safe_load((TOP / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    missing = [k for k in defaults if f"`{k}`" not in readme]
    assert not missing, f"{role}/README.md does not document {missing}"
