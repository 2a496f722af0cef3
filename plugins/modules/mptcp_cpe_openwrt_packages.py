#!/usr/bin/python
"""Ansible module: OpenWrt packages present, through whichever package manager the router
has: apk (OpenWrt 25.x) or opkg (24.10). Standard library and Ansible only: it runs under
the router's python3 before mptcp-cpe is installed."""

from __future__ import annotations

DOCUMENTATION = r"""
module: mptcp_cpe_openwrt_packages
short_description: Install OpenWrt packages with apk or opkg, whichever the router has
description:
  - Finds the package manager (apk first, as OpenWrt 25.x has it; else opkg), never assumes it.
  - Updates the package lists (kept in /tmp on OpenWrt) only when a package is missing, installs
    the missing ones in one command, and checks that each is installed afterwards.
options:
  name:
    description: The packages, by their OpenWrt names.
    type: list
    elements: str
    required: true
  host:
    description: The inventory name, for messages.
    type: str
    default: ""
author: mptcp-cpe
"""

RETURN = r"""
manager:
  description: apk or opkg.
  type: str
  returned: always
installed:
  description: The packages this run installed (or, in check mode, would install).
  type: list
  returned: always
"""

import re

from ansible.module_utils.basic import AnsibleModule

PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._-]*")


def opkg_installed(list_installed):
    """The names in `opkg list-installed` output (`name - version` per line)."""
    return {line.split(" - ", 1)[0] for line in list_installed.splitlines() if " - " in line}


def main():
    module = AnsibleModule(
        argument_spec={"name": {"type": "list", "elements": "str", "required": True},
                       "host": {"type": "str", "default": ""}},
        supports_check_mode=True,
    )
    who = f"{module.params['host']}: " if module.params["host"] else ""
    names = module.params["name"]
    bad = [n for n in names if not PACKAGE_NAME.fullmatch(n)]
    if bad:
        module.fail_json(msg=f"{who}not package names: {', '.join(map(repr, bad))}")
    apk, opkg = module.get_bin_path("apk"), module.get_bin_path("opkg")
    if apk:
        manager = "apk"

        def missing():
            return [n for n in names if module.run_command([apk, "info", "-e", n])[0] != 0]
        update, install = [apk, "update"], [apk, "add"]
    elif opkg:
        manager = "opkg"

        def missing():
            rc, out, err = module.run_command([opkg, "list-installed"])
            if rc != 0:
                module.fail_json(msg=f"{who}opkg list-installed failed: {err.strip()}")
            have = opkg_installed(out)
            return [n for n in names if n not in have]
        update, install = [opkg, "update"], [opkg, "install"]
    else:
        module.fail_json(msg=f"{who}neither apk nor opkg on this OpenWrt: cannot install {', '.join(names)}")

    todo = missing()
    if not todo or module.check_mode:
        module.exit_json(changed=bool(todo), manager=manager, installed=todo)
    rc, _, err = module.run_command(update)
    if rc != 0:
        module.fail_json(msg=f"{who}{' '.join(update)} failed (does the router reach its package feeds?): {err.strip()}",
                         manager=manager)
    rc, out, err = module.run_command(install + todo)
    left = missing()
    if rc != 0 or left:
        module.fail_json(msg=f"{who}{manager} could not install {', '.join(left or todo)}: {(err or out).strip()}",
                         manager=manager)
    module.exit_json(changed=True, manager=manager, installed=todo)


if __name__ == "__main__":
    main()
