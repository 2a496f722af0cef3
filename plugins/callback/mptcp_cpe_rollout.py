"""The rollout's summary at the end of a site.yml run: which CPEs got the change (confirmed),
which restore themselves and why, which were refused before any change, and which the
rollout never touched. Enabled in ansible.cfg (callbacks_enabled); with
MPTCP_CPE_ROLLOUT_SUMMARY=<path> also written there as JSON."""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: mptcp_cpe_rollout
type: aggregate
short_description: which CPEs a site.yml run changed and confirmed, which restore themselves and why
description:
  - Follows role cpe_rollback's arm and confirm tasks and the rollout gate in site.yml.
  - At the end of the run, prints one line per outcome, naming the CPEs and why.
  - With the environment variable MPTCP_CPE_ROLLOUT_SUMMARY set to a path, writes the same as JSON there.
requirements:
  - enabled in ansible.cfg (callbacks_enabled = mptcp_cpe_rollout)
"""

# The tasks it follows, by name (tests/test_rollout.py checks that they exist). The first
# marks the play that rolls out (it runs before anything can fail).
BATCH = "cpe_rollback : Note the CPEs of this batch (the rollout gate looks for those that dropped out)"
ARM = "cpe_rollback : Take the snapshot and arm the timer"
CONFIRM = "cpe_rollback : Confirm, which disarms the rollback"
GATE = "cpe_rollback : Stop the rollout when a CPE of this batch was not confirmed"
# A CPE the controller cannot reach again after the play: cut off, as much as one that
# dropped mid-play (unreachable).
REACH = "cpe_rollback : Reach the CPE again over the management path"


def _why(result: dict) -> str:
    msg = result.get("msg") or result.get("stderr") or result.get("reason") or "failed"
    return " ".join(str(msg).split())


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "mptcp_cpe_rollout"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.play = None
        self.play_hosts: list[str] = []
        self.rollout_hosts: list[str] | None = None  # the hosts of the play that arms
        self.seen: set[str] = set()  # hosts of that play with any result
        self.armed: dict[str, str] = {}  # host -> the deadline of its restore
        self.confirmed: list[str] = []
        self.changed: set[str] = set()  # hosts a task of the rollout changed (arm aside)
        self.failed: dict[str, str] = {}
        self.unreachable: dict[str, str] = {}
        self.stopped_by: str | None = None

    def v2_playbook_on_play_start(self, play) -> None:
        self.play = play
        try:
            inventory = play.get_variable_manager()._inventory
            # Every host of the play, not only this batch's (serial restricts the inventory to
            # the batch while it runs); --limit still applies.
            self.play_hosts = [h.name for h in inventory.get_hosts(play.hosts, ignore_restrictions=True)]
        except Exception:  # an inventory this plugin cannot read: the untouched hosts are not listed
            self.play_hosts = []

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        if task.get_name() == BATCH and self.rollout_hosts is None:
            self.rollout_hosts = list(self.play_hosts)

    def _note(self, result) -> str | None:
        host = result.host.get_name()
        if self.rollout_hosts is not None and host in self.rollout_hosts:
            self.seen.add(host)
            return host
        return None

    def v2_runner_on_ok(self, result) -> None:
        host = self._note(result)
        name = result.task.get_name()
        if host is None:
            return
        if result.is_changed() and name != ARM:
            self.changed.add(host)
        if name == ARM:
            try:
                self.armed[host] = json.loads(result.result.get("stdout") or "{}").get("deadline_iso", "?")
            except ValueError:
                self.armed[host] = "?"
        elif name == CONFIRM and host not in self.confirmed:
            self.confirmed.append(host)

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        host = self._note(result)
        if host is None or ignore_errors:
            return
        name = result.task.get_name()
        if name == GATE:
            self.stopped_by = _why(result.result)
            return
        self.failed.setdefault(host, f"{name}: {_why(result.result)}")

    def v2_runner_on_unreachable(self, result) -> None:
        host = self._note(result)
        if host is not None:
            self.unreachable.setdefault(host, f"{result.task.get_name()}: {_why(result.result)}")

    def summary(self) -> dict:
        hosts = self.rollout_hosts or []
        restoring = {}
        for host in self.armed:
            if host in self.confirmed:
                continue
            why = self.unreachable.get(host) or self.failed.get(host) or "the run ended before its confirm"
            cut = host in self.unreachable or self.failed.get(host, "").startswith(REACH + ":")
            kind = "cut off" if cut else "not confirmed"
            restoring[host] = f"{kind}; restores itself at {self.armed[host]} (only disarms if nothing changed): {why}"
        not_changed = {h: why for h, why in {**self.failed, **self.unreachable}.items() if h not in self.armed}
        untouched = [h for h in hosts if h not in self.seen]
        return {"confirmed": sorted(h for h in self.confirmed if h in self.changed),
                "unchanged": sorted(h for h in self.confirmed if h not in self.changed),
                "restoring": restoring, "not_changed": not_changed,
                "not_touched": untouched, "stopped": self.stopped_by}

    def v2_playbook_on_stats(self, stats) -> None:
        if self.rollout_hosts is None:
            return
        s = self.summary()
        lines = [f"changed and confirmed ({len(s['confirmed'])}): {', '.join(s['confirmed']) or 'none'}"]
        if s["unchanged"]:
            lines.append(f"healthy, nothing to change ({len(s['unchanged'])}): {', '.join(s['unchanged'])}")
        lines += [f"restoring itself: {h}: {why}" for h, why in s["restoring"].items()]
        lines += [f"not changed (failed before arming): {h}: {why}" for h, why in s["not_changed"].items()]
        if s["not_touched"]:
            lines.append(f"not touched ({len(s['not_touched'])}): {', '.join(s['not_touched'])}")
        if s["stopped"]:
            lines.append(f"rollout stopped: {s['stopped']}")
        self._display.banner("ROLLOUT SUMMARY")
        bad = s["restoring"] or s["not_changed"] or s["stopped"]
        for line in lines:
            self._display.display(line, color="red" if bad and not line.startswith(("changed", "healthy")) else "green")
        path = os.environ.get("MPTCP_CPE_ROLLOUT_SUMMARY")
        if path:
            with open(path, "w") as f:
                json.dump(s, f, indent=1, sort_keys=True)
