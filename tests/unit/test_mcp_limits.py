"""The MCP's connection limits across workers: the shared ClientTable and the workers'
accounting on it (mcp.ClientTable, McpWorker._admit/_release), without sockets."""

from __future__ import annotations

import ipaddress
import logging
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mptcp_cpe import mcp
from mptcp_cpe.mcp import ClientTable, ClientTableBusy, ClientTableFull

CLIENTS = ["198.51.100.2", "198.51.100.3", "203.0.113.2", "2001:db8:a::2", "2001:db8:a::3", "198.51.100.4"]


@pytest.fixture
def table():
    t = ClientTable(2, 1024)
    yield t
    t.close()


def _config(max_connections: int = 1000, per_client: int = 1000) -> mcp.McpConfig:
    return mcp.McpConfig(host="mcp-1", clients=(ipaddress.ip_network("198.51.100.0/24"),),
                         max_connections=max_connections, max_connections_per_client=per_client)


def _workers(table: ClientTable, cfg: mcp.McpConfig) -> list[mcp.McpWorker]:
    return [mcp.McpWorker(cfg, None, None, mcp.Cookies(b"k" * 32), table, i) for i in range(table.workers)]


def _close(workers: list[mcp.McpWorker]) -> None:
    for w in workers:
        w.loop.close()


def _in_child(fn) -> int:
    """Run ``fn`` in a forked child; its exit status."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_slots_are_sized_for_max_connections_within_bounds():
    assert ClientTable.slots_for(1) == ClientTable.MIN_SLOTS
    assert ClientTable.slots_for(20000) == 65536  # at most half full
    assert ClientTable.slots_for(32768) == 65536 and ClientTable.slots_for(32769) == 131072
    assert ClientTable.slots_for(10**7) == ClientTable.MAX_SLOTS
    with pytest.raises(ValueError):
        ClientTable(2, 1000)


def test_a_max_connections_past_the_table_is_said(table, caplog):
    with caplog.at_level(logging.WARNING, logger="mptcp_cpe.mcp"):
        mcp._check_table_size(table, _config(max_connections=512, per_client=1))
        assert caplog.text == ""
        mcp._check_table_size(table, _config(max_connections=600, per_client=1))  # a reload raised it
    assert "max_connections 600: the client table is sized for 512 client addresses at once" in caplog.text
    assert caplog.text.rstrip().endswith("until a restart sizes it for 1024")


def test_keys_are_16_octets_and_ipv4_never_meets_ipv6():
    assert ClientTable.key("198.51.100.2") == bytes(10) + b"\xff\xff" + bytes([198, 51, 100, 2])
    assert ClientTable.key("2001:db8::1") == ipaddress.ip_address("2001:db8::1").packed
    # An IPv6 address whose first octets spell an IPv4 one is another client.
    assert ClientTable.key("c633:6402::") != ClientTable.key("198.51.100.2")
    assert ClientTable.key("198.51.100.2") != ClientTable.NEVER_USED


def test_counts_add_up_across_forked_workers(table):
    key = ClientTable.key("198.51.100.2")

    def child():
        slot = table.claim(key, 1, 10)
        table.add(slot, 1, 1)
        table.set_total(1, 2)

    assert _in_child(child) == 0
    slot = table.claim(key, 0, 10)
    table.set_total(0, 1)
    assert (table.count(slot), table.own(slot, 0), table.own(slot, 1)) == (3, 1, 2)
    assert table.total() == 3
    # At the limit, claim counts nothing more, whichever worker asks.
    assert table.claim(key, 0, 3) is None
    assert table.count(slot) == 3


def test_a_dead_lock_holder_does_not_keep_the_lock(table):
    def child():
        assert table._lock()
        os._exit(0)  # dies holding it

    assert _in_child(child) == 0
    assert table.claim(ClientTable.key("198.51.100.2"), 0, 1) is not None


def test_a_busy_lock_is_waited_for_a_bounded_time(table):
    table.LOCK_WAIT_S = 0.05
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            table._lock()
            os.write(w, b"x")
            time.sleep(5)
        finally:
            os._exit(0)
    try:
        assert os.read(r, 1) == b"x"
        started = time.monotonic()
        with pytest.raises(ClientTableBusy):
            table.claim(ClientTable.key("198.51.100.2"), 0, 1)
        assert time.monotonic() - started < 1
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)


def test_clear_zeroes_one_column_only(table):
    slot = table.claim(ClientTable.key("198.51.100.2"), 0, 10)
    table.claim(ClientTable.key("198.51.100.2"), 1, 10)
    table.set_total(0, 1)
    table.set_total(1, 1)
    table.clear(1)  # worker 1 started again after a crash
    assert (table.own(slot, 0), table.own(slot, 1), table.total()) == (1, 0, 1)


def test_slots_of_gone_clients_are_reused_and_a_full_table_says_so():
    table = ClientTable(2, 8)
    try:
        slots = {c: table.claim(ClientTable.key(c), i % 2, 1) for i, c in enumerate(CLIENTS + ["10.0.0.1", "10.0.0.2"])}
        assert sorted(slots.values()) == list(range(8))
        with pytest.raises(ClientTableFull):
            table.claim(ClientTable.key("10.0.0.3"), 0, 1)
        gone = slots["203.0.113.2"]
        table.add(gone, 0, -1)  # its last connection ends
        assert table.claim(ClientTable.key("10.0.0.3"), 1, 1) == gone
        assert table.count(gone) == 1 and table.own(gone, 1) == 1
        # The clients still there keep their slots.
        assert table.claim(ClientTable.key("198.51.100.2"), 1, 5) == slots["198.51.100.2"]
        with pytest.raises(ClientTableFull):
            table.claim(ClientTable.key("203.0.113.2"), 0, 1)
    finally:
        table.close()


def test_limits_hold_across_workers(table):
    workers = _workers(table, _config(max_connections=5, per_client=3))
    try:
        a, b = workers
        peer = "198.51.100.2"
        got = [a._admit(peer), b._admit(peer), b._admit(peer)]
        assert None not in got and len(set(got)) == 1
        assert a._admit(peer) is None and b._admit(peer) is None  # 3 in all, whichever worker
        a._release(peer, got[0])
        assert b._admit(peer) == got[0]
        b._release(peer, got[0])
        # max_connections counts the workers' totals.
        a.table.set_total(0, 1)
        b.table.set_total(1, 4)
        assert a._admit("198.51.100.3") is None
    finally:
        _close(workers)


def test_a_full_table_refuses_naming_the_client(caplog):
    table = ClientTable(1, 8)
    (w,) = _workers(table, _config())
    try:
        for i in range(8):
            assert w._admit(f"198.51.100.{10 + i}") is not None
        with caplog.at_level(logging.WARNING, logger="mptcp_cpe.mcp"):
            assert w._admit("198.51.100.99") is None
        assert "client 198.51.100.99: the client table is full (8 slots" in caplog.text
    finally:
        _close([w])
        table.close()


def test_a_busy_lock_falls_back_to_the_workers_share_and_says_so_once(table, monkeypatch, caplog):
    (a, b) = _workers(table, _config(per_client=3))
    slot = a._admit("198.51.100.2")

    def busy(*args):
        raise ClientTableBusy

    monkeypatch.setattr(table, "claim", busy)
    try:
        with caplog.at_level(logging.WARNING, logger="mptcp_cpe.mcp"):
            got = [b._admit("198.51.100.2") for _ in range(3)]
        assert got == [mcp.UNSHARED, mcp.UNSHARED, None]  # its share: ceil(3 / 2)
        assert caplog.text.count("lock was not had") == 1
        # A client the worker already has a slot for is still counted in the table.
        assert a._admit("198.51.100.2") == slot
        b._release("198.51.100.2", mcp.UNSHARED)
        b._release("198.51.100.2", mcp.UNSHARED)
        assert b.unshared == {}
    finally:
        _close([a, b])


MANY = CLIENTS + [f"2001:db8:b::{i}" for i in range(6)]  # more than the table's 8 slots
OPS = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(MANY), st.booleans()), max_size=150)


@settings(max_examples=300, deadline=None)
@given(ops=OPS, per_client=st.integers(1, 4))
def test_counts_follow_every_admission_and_release(ops, per_client):
    """Three workers on a table with fewer slots than the clients that come and go: every
    admission is counted once, every release takes exactly one back, the per-client limit
    holds, and a client is refused for want of a slot only when every slot is in use."""
    table = ClientTable(3, 8)
    workers = _workers(table, _config(per_client=per_client))
    model = {(w, c): [] for w in range(3) for c in MANY}  # the slots of live connections
    try:
        for w, client, opening in ops:
            live = model[(w, client)]
            if opening:
                before = sum(len(model[(v, client)]) for v in range(3))
                in_use = {c for (_, c), slots in model.items() if slots}
                slot = workers[w]._admit(client)
                if before >= per_client:
                    assert slot is None
                elif slot is None:
                    assert before == 0 and len(in_use) == table.slots
                else:
                    live.append(slot)
            elif live:
                workers[w]._release(client, live.pop())
            for c in MANY:
                held = [s for v in range(3) for s in model[(v, c)]]
                assert len(set(held)) <= 1  # one slot per client
                if held:
                    assert table.count(held[0]) == len(held)
                    for v in range(3):
                        assert table.own(held[0], v) == len(model[(v, c)])
                        assert (c in workers[v].slots) == bool(model[(v, c)])
            assert sum(table.counts) == sum(len(s) for s in model.values())
    finally:
        _close(workers)
        table.close()
