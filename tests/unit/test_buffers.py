"""Unit tests for the MPTCP buffers sized from a CPE's lines (``mptcp_cpe.buffers``): worked
examples with their numbers, the floor and the ceiling, backups, the kinds' typical lines,
and properties (always a page multiple within [floor, ceiling], monotone in every rate and
round trip)."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from mptcp_cpe.buffers import CEILING, FIXED, FLOOR, KIND_LINES, PAGE, Buffers, Line, line, mptcp_buffers, need, octets
from mptcp_cpe.inventory import WAN_KINDS, Rate, Wan, parse_wans

HOST = "cpe-test-01"
MiB = 1 << 20


def wan(name: str, kind: str, down: float | None = None, up: float | None = None, rtt: float | None = None,
        backup: bool = False) -> Wan:
    rate = Rate(float(down), float(up)) if down is not None else None
    return Wan(name=name, device=name, kind=kind, ipv4="dhcp", ipv6="none", weight=1, backup=backup, rate=rate,
               rtt_ms=None if rtt is None else float(rtt))


def test_the_floor_and_the_ceiling():
    assert FLOOR == FIXED == 4 * MiB == 4194304  # the converter's fixed buffer before its WANs sized it
    assert CEILING == 64 * MiB == 67108864
    assert FLOOR % PAGE == 0 and CEILING % PAGE == 0


def test_the_issues_lines_need_less_than_the_floor():
    # DSL 40 Mbit/s at 20 ms beside LTE 20 Mbit/s at 60 ms: 2 × (40 + 20) Mbit/s × 60 ms =
    # 7.2 Mbit = 900,000 octets, well under 4 MiB: the fixed 4 MiB was already enough for
    # them, and stays. Up: 2 × (10 + 5) Mbit/s × 60 ms = 1.8 Mbit = 225,000 octets.
    assert need([40, 20], [20, 60]) == 900_000
    assert need([10, 5], [20, 60]) == 225_000
    wans = [wan("dsl", "dsl", 40, 10, 20), wan("lte", "lte", 20, 5, 60)]
    assert mptcp_buffers(wans) == Buffers(download=4194304, upload=4194304, declared=True)


def test_fibre_beside_lte_needs_more_than_the_floor():
    # Fibre 1000/500 Mbit/s at 10 ms beside LTE 50/20 at 60 ms: down 2 × 1050 Mbit/s × 60 ms =
    # 126 Mbit = 15,750,000 octets, rounded up to 3846 pages = 15,753,216 (15.0 MiB); up
    # 2 × 520 × 60 ms = 7,800,000, 1905 pages = 7,802,880. The fixed 4 MiB held a quarter of it.
    wans = [wan("fibre", "fibre", 1000, 500, 10), wan("lte", "lte", 50, 20, 60)]
    assert need([1000, 50], [10, 60]) == 15_750_000
    assert mptcp_buffers(wans) == Buffers(download=3846 * PAGE, upload=1905 * PAGE, declared=True)
    assert (3846 * PAGE, 1905 * PAGE) == (15_753_216, 7_802_880)


def test_a_geostationary_line_reaches_the_ceiling():
    # 2 × 1100 Mbit/s × 650 ms = 178,750,000 octets: capped at 64 MiB.
    wans = [wan("fibre", "fibre", 1000, 500, 10), wan("sat", "satellite", 100, 10, 650)]
    assert need([1000, 100], [10, 650]) == 178_750_000
    assert mptcp_buffers(wans).download == CEILING
    # Up: 2 × 510 × 650 ms = 82,875,000: capped too.
    assert mptcp_buffers(wans).upload == CEILING


def test_a_need_on_a_page_boundary_stays_there():
    # 250 × 4096 Mbit/s × 8 ms = 8,192,000 = 2000 pages exactly; an octet more is a page more.
    assert octets(need([4096], [8])) == 8_192_000
    assert octets(8_192_001) == 8_192_000 + PAGE


def test_octets_rounds_up_and_clamps():
    assert octets(0) == FLOOR
    assert octets(FLOOR - 1) == FLOOR
    assert octets(FLOOR + 1) == FLOOR + PAGE
    assert octets(CEILING - PAGE + 1) == CEILING
    assert octets(CEILING + 1) == CEILING
    assert octets(Fraction(10**12)) == CEILING


def test_a_backup_counts_with_the_backups_not_beside_the_others():
    # Fibre at 20 ms, LTE held in reserve at 60 ms: while the fibre is up the LTE carries
    # nothing, so the fibre alone (2 × 1000 Mbit/s × 20 ms = 5,000,000: 1221 pages) sets it.
    fibre = wan("fibre", "fibre", 1000, 500, 20)
    assert mptcp_buffers([fibre, wan("lte", "lte", 50, 20, 60, backup=True)]).download == 1221 * PAGE
    # The same LTE in use beside it: 15,753,216 as above.
    assert mptcp_buffers([fibre, wan("lte", "lte", 50, 20, 60)]).download == 3846 * PAGE
    # Backups together, when they outweigh the line they stand in for: two satellite backups
    # at 2 × 400 Mbit/s × 600 ms = 60,000,000 octets (14,649 pages) against the DSL's own
    # 2 × 40 × 12.5 ms = 125,000.
    dsl = wan("dsl", "dsl", 40, 10, 12.5)
    sats = [wan(f"sat{i}", "satellite", 200, 10, 600, backup=True) for i in range(2)]
    assert mptcp_buffers([dsl, *sats]).download == 14649 * PAGE == 60_002_304


def test_without_any_declaration_the_fixed_buffer_whatever_the_kinds():
    # An inventory that says nothing keeps what the converter always had, satellites too.
    assert mptcp_buffers([wan("fibre", "fibre"), wan("sat", "satellite")]) == Buffers(FIXED, FIXED, False)


def test_an_undeclared_wan_counts_with_its_kinds_typical_line():
    # The fibre declares its round trip only, the LTE nothing: fibre 1000/500 at 10 ms, LTE
    # 50/20 at 60 ms, the same as declaring them.
    assert KIND_LINES["fibre"] == Line(1000, 500, 10) and KIND_LINES["lte"] == Line(50, 20, 60)
    partly = [wan("fibre", "fibre", rtt=10), wan("lte", "lte")]
    assert mptcp_buffers(partly) == mptcp_buffers([wan("fibre", "fibre", 1000, 500, 10), wan("lte", "lte", 50, 20, 60)])
    assert line(wan("x", "dsl", 40, 10)) == Line(40, 10, KIND_LINES["dsl"].rtt_ms)


def test_every_kind_has_a_typical_line():
    assert set(KIND_LINES) == set(WAN_KINDS)
    for kind, typical in KIND_LINES.items():
        assert 0.064 <= typical.up_mbit <= typical.down_mbit <= 100000, kind
        assert 1 <= typical.rtt_ms <= 2000, kind


def test_from_the_inventory():
    wans = parse_wans(HOST, [
        {"name": "dsl", "device": "eth0", "kind": "dsl", "rate": {"down_mbit": 40, "up_mbit": 10}, "rtt_ms": 20},
        {"name": "lte", "device": "wwan0", "kind": "lte", "rate": {"down_mbit": 20, "up_mbit": 5}, "rtt_ms": 60},
    ])
    assert mptcp_buffers(wans).as_dict() == {"download": 4194304, "upload": 4194304, "declared": True}


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

rates = st.one_of(st.integers(1, 100000), st.floats(0.064, 100000))
rtts = st.one_of(st.integers(1, 2000), st.floats(1, 2000))


@st.composite
def lines(draw):
    """1-8 WANs, not all backups, each declaring all, some or none of its line; at least one
    declares something (else the fixed buffer, tested above)."""
    n = draw(st.integers(1, 8))
    out = []
    for i in range(n):
        kind = draw(st.sampled_from(sorted(WAN_KINDS)))
        declared = draw(st.booleans()) or i == 0
        down, up = (draw(rates), draw(rates)) if declared and draw(st.booleans()) else (None, None)
        rtt = draw(rtts) if declared and (down is None or draw(st.booleans())) else None
        out.append(wan(f"w{i}", kind, down, up, rtt, backup=draw(st.booleans()) and i > 0))
    return out


def _with(wans, i, **change):
    w = wans[i]
    typical = line(w)
    down = change.get("down", typical.down_mbit)
    up = change.get("up", typical.up_mbit)
    rtt = change.get("rtt", typical.rtt_ms)
    return [*wans[:i], wan(w.name, w.kind, down, up, rtt, w.backup), *wans[i + 1:]]


@settings(max_examples=300, deadline=None)
@given(wans=lines())
def test_property_within_floor_and_ceiling_and_a_page_multiple(wans):
    result = mptcp_buffers(wans)
    assert result.declared
    for value in (result.download, result.upload):
        assert FLOOR <= value <= CEILING
        assert value % PAGE == 0
    # It holds what the lines in use need (when that fits under the ceiling).
    active = [line(w) for w in wans if not w.backup]
    want = need([ln.down_mbit for ln in active], [ln.rtt_ms for ln in active])
    assert result.download >= min(want, CEILING)


@settings(max_examples=300, deadline=None)
@given(wans=lines(), data=st.data())
def test_property_monotone_in_every_rate_and_round_trip(wans, data):
    """A faster line or a longer round trip never shrinks a buffer."""
    before = mptcp_buffers(wans)
    i = data.draw(st.integers(0, len(wans) - 1))
    typical = line(wans[i])
    factor = data.draw(st.floats(1, 50))
    for field, key, limit in (("down", "download", 100000), ("up", "upload", 100000), ("rtt", None, 2000)):
        old = {"down": typical.down_mbit, "up": typical.up_mbit, "rtt": typical.rtt_ms}[field]
        after = mptcp_buffers(_with(wans, i, **{field: min(limit, old * factor)}))
        keys = [key] if key else ["download", "upload"]
        for k in keys:
            assert getattr(after, k) >= getattr(before, k), (field, k)


@settings(max_examples=200, deadline=None)
@given(wans=lines())
def test_property_up_and_down_are_the_same_formula(wans):
    swapped = [wan(w.name, w.kind, line(w).up_mbit, line(w).down_mbit, line(w).rtt_ms, w.backup) for w in wans]
    assert (mptcp_buffers(swapped).download, mptcp_buffers(swapped).upload) == (
        mptcp_buffers(wans).upload, mptcp_buffers(wans).download)


def test_need_of_no_line_or_the_slowest():
    assert need([], []) == 0
    assert round(need([0.064], [1])) == 16  # 64 kbit/s for 1 ms, twice: 16 octets
    assert octets(need([0.064], [1])) == FLOOR
