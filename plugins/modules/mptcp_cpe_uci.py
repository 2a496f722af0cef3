#!/usr/bin/python
"""Ansible module: one UCI config on an OpenWrt router made what a role wants, in one
`uci batch` and one commit, with --check and --diff."""

from __future__ import annotations

DOCUMENTATION = r"""
module: mptcp_cpe_uci
short_description: Make one UCI config hold mptcp-cpe's sections and options
description:
  - Reads the config with C(uci -q show), plans the changes
    (the mptcp_cpe package's C(mptcp_cpe.uci)), and applies them with one C(uci batch) and one
    C(uci commit). Refuses to run over uncommitted changes of someone else in the same config.
  - Check mode plans only; diff mode shows the touched sections before and after.
options:
  config:
    description: The UCI config (network, firewall, ...).
    type: str
    required: true
  sections:
    description: The wanted sections (see the mptcp_cpe package's mptcp_cpe/uci.py for their shape).
    type: list
    elements: dict
    required: true
  owned_prefix:
    description: Sections whose name starts with this are mptcp-cpe's; those not wanted are deleted.
    type: str
    default: mptcp_cpe_
  host:
    description: The inventory name, for messages.
    type: str
    default: ""
author: mptcp-cpe
"""

RETURN = r"""
commands:
  description: The uci batch commands run (or, in check mode, that would run).
  type: list
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    # The mptcp_cpe package's own code (cpe_base installed it): the task runs this module with
    # the package's virtualenv as its interpreter, so nothing is written twice.
    from mptcp_cpe.uci import UciError, apply, parse_show, plan, show

    module = AnsibleModule(
        argument_spec={
            "config": {"type": "str", "required": True},
            "sections": {"type": "list", "elements": "dict", "required": True},
            "owned_prefix": {"type": "str", "default": "mptcp_cpe_"},
            "host": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    config, prefix = module.params["config"], module.params["owned_prefix"]
    who = f"{module.params['host']}: " if module.params["host"] else ""
    uci = module.get_bin_path("uci", required=True)

    def read():
        rc, out, err = module.run_command([uci, "-q", "show", config])
        if rc != 0:
            module.fail_json(msg=f"{who}uci show {config} failed: {err.strip() or 'no such config'} (is /etc/config/{config} there?)")
        try:
            return parse_show(config, out)
        except UciError as exc:
            module.fail_json(msg=f"{who}{exc}")

    rc, pending, _ = module.run_command([uci, "changes", config])
    if rc == 0 and pending.strip():
        module.fail_json(msg=f"{who}{config} has uncommitted UCI changes that are not mptcp-cpe's "
                             f"(`uci changes {config}`): commit or revert them first",
                         changes=pending.splitlines())
    current = read()
    try:
        commands = plan(config, current, module.params["sections"], prefix)
        after = apply(config, current, commands)
    except UciError as exc:
        module.fail_json(msg=f"{who}{exc}")
    touched = {c.split(" ", 1)[1].split("=", 1)[0].split(".")[1] for c in commands}
    result = {
        "changed": bool(commands),
        "commands": commands,
        "diff": {"before_header": f"uci show {config}", "after_header": f"uci show {config}",
                 "before": show(config, current, touched), "after": show(config, after, touched)},
    }
    if not commands or module.check_mode:
        module.exit_json(**result)

    rc, _, err = module.run_command([uci, "batch"], data="\n".join(commands) + "\n")
    # Nothing is committed unless the batch left exactly what was planned.
    left = plan(config, read(), module.params["sections"], prefix) if rc == 0 else None
    if rc != 0 or left:
        module.run_command([uci, "revert", config])
        module.fail_json(msg=f"{who}uci batch on {config} did not apply ({err.strip() or 'still to do: ' + '; '.join(left or [])}); reverted",
                         commands=commands)
    rc, _, err = module.run_command([uci, "commit", config])
    if rc != 0:
        module.run_command([uci, "revert", config])
        module.fail_json(msg=f"{who}uci commit {config} failed: {err.strip()}; reverted", commands=commands)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
