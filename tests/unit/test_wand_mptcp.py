"""MPTCP through each WAN: the verdict and its test schedule (`probe.MptcpVerdict`), which MCPs a
WAN's test tries (`probe.mptcp_targets`), what the planner does with a blocked WAN, and how the
daemon's loop feeds and asks the tests (its methods, without threads or a kernel)."""

from __future__ import annotations

from socket import AF_INET, AF_INET6

from hypothesis import given
from pytest import approx
from hypothesis import strategies as st

from mptcp_cpe.wand.config import from_dict
from mptcp_cpe.wand.daemon import MptcpTarget, Wand
from mptcp_cpe.wand import probe
from mptcp_cpe.wand.plan import Link, desired
from mptcp_cpe.wand.probe import (
    BLOCKED,
    MPTCP_TRIES,
    NO_VERDICT,
    PASSES,
    STRIPPED,
    UNKNOWN,
    Health,
    MptcpVerdict,
    mptcp_round,
    mptcp_targets,
)

MIN, MAX, INTERVAL, COUNT = 30.0, 900.0, 300.0, 2


def verdict(**kw) -> MptcpVerdict:
    return MptcpVerdict(**{"interval_s": INTERVAL, "backoff_min_s": MIN, "backoff_max_s": MAX, "stripped_count": COUNT, **kw})


def test_blocked_after_stripped_count_in_a_row_and_passes_again_at_once():
    v = verdict()
    assert (v.verdict, v.blocked, v.due(0)) == (UNKNOWN, False, True)
    assert v.record(PASSES, 10, "203.0.113.1") is True and (v.verdict, v.since, v.next_test) == (PASSES, 10, 10 + INTERVAL)
    # One stripped result is not enough: checked again soon, not after a whole interval.
    assert v.record(STRIPPED, 310, "203.0.113.1") is False and v.verdict == PASSES and v.next_test == 310 + MIN
    assert v.record(STRIPPED, 340) is True and v.blocked and v.since == 340 and v.next_test == 340 + MIN
    assert v.mcp == "203.0.113.1"  # a result without an MCP keeps the last one
    # One pass is enough to come back; the interval again.
    assert v.record(PASSES, 370, "203.0.113.2") is True and v.verdict == PASSES and v.next_test == 370 + INTERVAL
    assert (v.since, v.mcp, v.stripped, v.backoff_s) == (370, "203.0.113.2", 0, 0)


def test_a_pass_between_stripped_results_starts_the_count_again():
    v = verdict(stripped_count=3)
    for t, result in enumerate([STRIPPED, STRIPPED, PASSES, STRIPPED, STRIPPED]):
        v.record(result, t)
    assert v.verdict == PASSES and v.stripped == 2
    assert v.record(STRIPPED, 9) and v.blocked


def test_backoff_doubles_while_blocked_up_to_the_maximum():
    v = verdict()
    v.record(STRIPPED, 0)
    v.record(STRIPPED, 0)
    waits = []
    now = 0.0
    for _ in range(8):
        waits.append(v.next_test - now)
        now = v.next_test
        assert v.due(now) and not v.due(now - 1)
        assert v.record(STRIPPED, now) is False
    assert waits == [30, 60, 120, 240, 480, 900, 900, 900]


def test_no_verdict_changes_nothing_and_waits_as_the_state_would():
    v = verdict()
    assert v.record(NO_VERDICT, 5) is False and v.verdict == UNKNOWN and v.next_test == 5 + MIN
    v.record(PASSES, 10)
    assert v.record(NO_VERDICT, 20) is False and v.verdict == PASSES and v.next_test == 20 + INTERVAL
    v.record(STRIPPED, 30)
    assert v.record(NO_VERDICT, 40) is False and v.stripped == 1 and v.next_test == 40 + MIN  # still confirming
    v.record(STRIPPED, 50)
    v.record(STRIPPED, 80)
    assert v.backoff_s == 60
    # A reset or a timeout neither unblocks nor doubles the wait.
    assert v.record(NO_VERDICT, 140) is False and v.blocked and v.next_test == 140 + 60 and v.backoff_s == 60


def test_retest_now_restarts_the_count_and_the_backoff_but_keeps_the_verdict():
    v = verdict()
    for t in range(3):
        v.record(STRIPPED, t)
    assert v.blocked and v.backoff_s == 2 * MIN
    v.retest(100)
    assert v.due(100) and v.blocked and (v.stripped, v.backoff_s) == (0, 0)
    assert v.record(STRIPPED, 100) is False and v.blocked and v.next_test == 100 + MIN
    v.record(STRIPPED, 130)
    assert v.next_test == 130 + MIN  # the backoff starts again at its minimum


def test_due_when_the_clock_went_back():
    v = verdict()
    v.record(PASSES, 10_000)
    assert not v.due(10_001)
    assert v.due(10_000 - MAX - 1)  # a next test further than any wait: the clock jumped back


@given(st.lists(st.sampled_from([PASSES, STRIPPED, NO_VERDICT, "retest"]), max_size=40),
       st.integers(1, 5), st.floats(1, 100), st.floats(1, 10_000), st.floats(1, 3600))
def test_property_verdict_follows_the_results_and_waits_stay_in_bounds(steps, count, backoff_min, extra, interval):
    backoff_max = backoff_min + extra
    v = MptcpVerdict(interval, backoff_min, backoff_max, count)
    run, blocked, ever = 0, False, False  # the model: stripped results in a row since a pass or a retest
    now = 0.0
    last_blocked_wait = None
    for step in steps:
        if step == "retest":  # the WAN came up or its path changed: tested now, counted afresh
            v.retest(now)
            assert v.due(now)
            run, last_blocked_wait = 0, None
            continue
        before = v.verdict
        changed = v.record(step, now)
        if step == PASSES:
            run, blocked, ever = 0, False, True
        elif step == STRIPPED:
            run += 1
            if run >= count:
                blocked, ever = True, True
        # Blocked exactly after `count` stripped results in a row (no verdict skipped), until a pass.
        assert v.blocked == blocked
        assert v.verdict == (BLOCKED if blocked else PASSES if ever else UNKNOWN)
        assert changed == (v.verdict != before)
        wait = v.next_test - now
        assert wait == approx(interval) or backoff_min - 1e-9 <= wait <= backoff_max + 1e-9
        if blocked and step == STRIPPED and run > count and last_blocked_wait is not None:
            assert wait == approx(min(2 * last_blocked_wait, backoff_max))  # doubling, capped
        if step == STRIPPED and run <= count:
            assert wait == approx(backoff_min)  # confirming, or the backoff's first step
        if blocked and step == STRIPPED and run >= count:
            last_blocked_wait = wait
        elif not blocked:
            last_blocked_wait = None
        if v.verdict == PASSES and not v.stripped:
            assert wait == approx(interval)
        now = v.next_test


# --- which MCPs a WAN's test tries

SOURCES = {AF_INET: "198.51.100.10", AF_INET6: "2001:db8:0:2::10"}


def test_targets_are_the_wans_own_mcps_first_address_of_a_family_it_has():
    own = [["203.0.113.1", "2001:db8:a::1"], ["2001:db8:b::1", "203.0.113.2"]]
    assert mptcp_targets(SOURCES, own, [["192.0.2.99"]]) == (("198.51.100.10", "203.0.113.1"),
                                                             ("2001:db8:0:2::10", "2001:db8:b::1"))
    # An IPv4-only WAN tries each MCP's IPv4 address.
    assert mptcp_targets({AF_INET: "198.51.100.10"}, own, []) == (("198.51.100.10", "203.0.113.1"),
                                                                 ("198.51.100.10", "203.0.113.2"))


def test_targets_fall_back_to_the_others_mcps_only_when_the_wan_learned_none():
    others = [["203.0.113.5"], ["203.0.113.6"]]
    assert mptcp_targets(SOURCES, [], others) == (("198.51.100.10", "203.0.113.5"), ("198.51.100.10", "203.0.113.6"))
    # Learned MCPs it cannot reach from its families count as none.
    assert mptcp_targets({AF_INET: "198.51.100.10"}, [["2001:db8:a::1"]], others)[0] == ("198.51.100.10", "203.0.113.5")
    assert mptcp_targets(SOURCES, [], []) == ()


def test_targets_take_mapped_addresses_as_ipv4_and_never_link_local_or_loopback():
    own = [["::ffff:203.0.113.7"], ["fe80::1"], ["127.0.0.1"], ["224.0.0.1"], ["203.0.113.7"]]
    assert mptcp_targets(SOURCES, own, []) == (("198.51.100.10", "203.0.113.7"),)


def test_targets_are_at_most_mptcp_tries():
    own = [[f"203.0.113.{i}"] for i in range(1, 10)]
    assert len(mptcp_targets(SOURCES, own, [])) == MPTCP_TRIES


def test_a_round_tries_mcps_until_one_gives_a_verdict_and_takes_errors_for_none(monkeypatch):
    answers = {"203.0.113.1": OSError(101, "Network is unreachable"), "203.0.113.2": NO_VERDICT,
               "203.0.113.3": STRIPPED, "203.0.113.4": PASSES}
    tried = []

    def fake_test(source, device, target, port, timeout):
        tried.append((source, device, target, port, timeout))
        answer = answers[target]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(probe, "mptcp_test", fake_test)
    pairs = tuple(("198.51.100.10", f"203.0.113.{i}") for i in range(1, 5))
    assert mptcp_round("wan2", pairs, 5124, 1.5) == (STRIPPED, "203.0.113.3")
    assert tried == [("198.51.100.10", "wan2", f"203.0.113.{i}", 5124, 1.5) for i in (1, 2, 3)]
    # Nothing but silence and errors: no verdict, naming the last MCP tried.
    assert mptcp_round("wan2", pairs[:2], 5124, 1.5) == (NO_VERDICT, "203.0.113.2")
    assert mptcp_round("wan2", (), 5124, 1.5) == (NO_VERDICT, None)


# --- the planner: a blocked WAN loses its endpoint, nothing else

DSL = {"name": "dsl", "device": "wan1", "kind": "dsl", "ipv6": "slaac"}
LTE = {"name": "lte", "device": "wan2", "kind": "lte", "weight": 3}
LINKS = {
    "wan1": Link(2, True, {AF_INET: ("192.0.2.10/24",), AF_INET6: ("2001:db8:0:1::10/64",)},
                 {AF_INET: "192.0.2.1", AF_INET6: "fe80::1"}),
    "wan2": Link(3, True, {AF_INET: ("198.51.100.10/24",), AF_INET6: ()}, {AF_INET: "198.51.100.1"}),
}


def test_a_blocked_wan_loses_only_its_endpoint():
    cfg = from_dict({"host": "h", "wans": [DSL, LTE]})
    up = {"dsl": True, "lte": True}
    free = desired(cfg, LINKS, up)
    blocked = desired(cfg, LINKS, up, mptcp_blocked=frozenset({"lte"}))
    assert sorted(free.endpoints) == [100, 101, 102] and sorted(blocked.endpoints) == [100, 101]
    assert blocked.endpoints == {k: e for k, e in free.endpoints.items() if e.device != "wan2"}
    # Direct traffic as before: its table, rules, NAT, share of the default route, LAN ranges.
    assert (blocked.routes, blocked.rules, blocked.nft, blocked.default_route, blocked.range_up, blocked.limits) == \
        (free.routes, free.rules, free.nft, free.default_route, free.range_up, free.limits)
    both = desired(cfg, LINKS, up, mptcp_blocked=frozenset({"dsl", "lte"}))
    assert both.endpoints == {} and both.routes == free.routes


# --- the daemon's side, without threads or a kernel


class FakeWorker:
    def __init__(self):
        self.asked = []

    def ask(self, target):
        self.asked.append(target)


def wand_with(mcp_doc, static=None, **probe):
    cfg = from_dict({"host": "h", "wans": [DSL, LTE],
                     "mptcp_probe": {"interval_s": 60, "backoff_min_s": 5, "backoff_max_s": 40, "mcps": static or [], **probe}})
    w = Wand(cfg, None, kernel=object())
    w.health = {n: Health(3, 2, healthy=True, state="up") for n in ("dsl", "lte")}
    w.mptcp = {n: MptcpVerdict(60, 5, 40, 2) for n in ("dsl", "lte")}
    w.mptcp_workers = {n: FakeWorker() for n in ("dsl", "lte")}
    w.mcp_doc = mcp_doc
    return w


TARGETS = {"dsl": ("wan1", {AF_INET: "192.0.2.10"}, {}), "lte": ("wan2", {AF_INET: "198.51.100.10"}, {})}


def test_daemon_plans_asks_and_records_tests():
    doc = {"wans": {"wan1": {"v4": {"mcps": [["203.0.113.1"]]}}}}
    w = wand_with(doc, static=[["203.0.113.9"]])
    w.plan_mptcp_tests(TARGETS, 100)
    # dsl learned its own MCP; lte none: the one dsl learned, then the static one.
    assert w.mptcp_targets == {"dsl": MptcpTarget("wan1", (("192.0.2.10", "203.0.113.1"),)),
                               "lte": MptcpTarget("wan2", (("198.51.100.10", "203.0.113.1"), ("198.51.100.10", "203.0.113.9")))}
    w.health["dsl"].healthy = False  # only healthy WANs are tested
    w.ask_mptcp_tests(100)
    assert w.mptcp_workers["dsl"].asked == [] and w.mptcp_workers["lte"].asked == [w.mptcp_targets["lte"]]
    w.ask_mptcp_tests(100)
    assert len(w.mptcp_workers["lte"].asked) == 1  # one test at a time
    lte = w.mptcp_targets["lte"]
    assert w.mptcp_result("lte", lte, STRIPPED, "203.0.113.1", 101) is False
    assert w.mptcp_wake_s(101) == 5  # the confirming test in backoff_min_s
    w.ask_mptcp_tests(106)
    assert w.mptcp_result("lte", lte, STRIPPED, "203.0.113.1", 106) is True and w.mptcp["lte"].blocked
    assert w.mptcp_fields("lte")["mptcp"] == BLOCKED and w.mptcp_fields("lte")["mptcp_mcp"] == "203.0.113.1"


def test_daemon_drops_a_result_for_a_path_that_changed_and_tests_the_new_one_at_once():
    w = wand_with({"wans": {"wan2": {"v4": {"mcps": [["203.0.113.1"]]}}}})
    w.plan_mptcp_tests(TARGETS, 100)
    w.ask_mptcp_tests(100)
    old = w.mptcp_targets["lte"]
    w.mptcp["lte"].record(PASSES, 100)
    # While the test runs, the WAN's address changes.
    w.plan_mptcp_tests({**TARGETS, "lte": ("wan2", {AF_INET: "198.51.100.11"}, {})}, 102)
    assert w.mptcp["lte"].due(102)
    assert w.mptcp_result("lte", old, STRIPPED, "203.0.113.1", 103) is False and w.mptcp["lte"].stripped == 0
    w.ask_mptcp_tests(103)
    assert w.mptcp_workers["lte"].asked[-1] == MptcpTarget("wan2", (("198.51.100.11", "203.0.113.1"),))


def test_daemon_never_tries_a_learned_mcp_outside_mcp_prefixes():
    # A rogue DHCP server on wan2 named its own MCP: the converter refuses it, wand tries it not.
    doc = {"wans": {"wan1": {"v4": {"mcps": [["203.0.113.1"]]}},
                    "wan2": {"v4": {"mcps": [["198.51.100.66"]]}, "v6": {"mcps": [["::ffff:198.51.100.67"]]}}}}
    w = wand_with(doc, mcp_prefixes=["203.0.113.0/24"])
    w.plan_mptcp_tests(TARGETS, 1)
    # wan2 learned no usable MCP: it is tested against the one wan1 learned.
    assert w.mptcp_targets["lte"] == MptcpTarget("wan2", (("198.51.100.10", "203.0.113.1"),))
    w = wand_with({"wans": {"wan2": {"v4": {"mcps": [["198.51.100.66"]]}}}}, mcp_prefixes=["203.0.113.0/24"])
    w.plan_mptcp_tests(TARGETS, 1)
    assert w.mptcp_targets == {}  # nothing to try: no test, no verdict
    w = wand_with({"wans": {"wan2": {"v4": {"mcps": [["198.51.100.66"]]}}}})
    w.plan_mptcp_tests(TARGETS, 1)
    assert w.mptcp_targets["lte"].pairs == (("198.51.100.10", "198.51.100.66"),)  # no prefixes: anywhere


def test_daemon_without_the_probe_blocks_nothing():
    cfg = from_dict({"host": "h", "wans": [DSL, LTE], "mptcp_probe": {"enabled": False}})
    w = Wand(cfg, None, kernel=object())
    w.start_mptcp_tests()
    assert w.mptcp == {} and w.mptcp_workers == {}
    w.plan_mptcp_tests(TARGETS, 1)
    assert w.mptcp_targets == {}
    assert w.mptcp_fields("lte") == {"mptcp": UNKNOWN, "mptcp_since": None, "mptcp_next_test": None, "mptcp_mcp": None}
