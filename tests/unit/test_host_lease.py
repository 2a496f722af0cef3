"""The lease events of the host's udhcpc clients (`host.lease`), with a kernel that records
what it is asked: a refused answer changes nothing, a lease that ends takes back exactly
what it gave, a malformed mp-avail keeps the one before."""

from __future__ import annotations

import json
import logging
from socket import AF_INET

from mptcp_cpe.host import lease
from mptcp_cpe.host.config import from_dict
from mptcp_cpe.wand.plan import Address, Endpoint, Route, Rule


class RecordingKernel:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kw: self.calls.append((name, args[0] if args else None,
                                                      {k: sorted(map(str, v)) for k, v in kw.items()}))


def cfg(tmp_path):
    return from_dict({"host": "t", "interface": "lan0", "state_dir": str(tmp_path), "resolv_conf": None})


LEASE = {"ip": "192.0.2.120", "mask": "24", "router": "192.0.2.1"}


def test_path_bound_adds_address_routes_rule_endpoint(tmp_path):
    k = RecordingKernel()
    lease.path_event(cfg(tmp_path), k, 2, "bound", {**LEASE, "opt226": "02"})
    assert [c[:2] for c in k.calls] == [
        ("add_address", Address("lan0.mp2", "192.0.2.120/24")),
        ("replace_route", Route(AF_INET, 302, "192.0.2.0/24", device="lan0.mp2", prefsrc="192.0.2.120")),
        ("replace_route", Route(AF_INET, 302, "default", device="lan0.mp2", gateway="192.0.2.1")),
        ("add_rule", Rule(AF_INET, 5002, 302, src="192.0.2.120/32")),
        ("add_endpoint", Endpoint(201, "192.0.2.120", "lan0.mp2", False)),
        ("raise_limits", (2, 2)),
    ]
    state = json.loads((tmp_path / "path-2.json").read_text())
    assert (state["address"], state["endpoint_id"], state["last_address"]) == ("192.0.2.120/24", 201, "192.0.2.120")


def test_path_answer_for_another_range_changes_nothing(tmp_path, caplog):
    k = RecordingKernel()
    with caplog.at_level(logging.ERROR):
        lease.path_event(cfg(tmp_path), k, 2, "bound", {**LEASE, "opt226": "01"})
    assert k.calls == [] and not (tmp_path / "path-2.json").exists()
    assert [r.getMessage() for r in caplog.records] == [
        "path 2: bound on lan0.mp2: mp-range (option 226) is 1 in the answer to a request for range 2 (got '01'): "
        "lease refused, nothing changed"]


def test_path_without_mp_range_or_router_changes_nothing(tmp_path):
    k = RecordingKernel()
    lease.path_event(cfg(tmp_path), k, 1, "bound", LEASE)
    lease.path_event(cfg(tmp_path), k, 1, "bound", {"ip": "192.0.2.120", "mask": "24", "opt226": "01"})
    lease.path_event(cfg(tmp_path), k, 1, "bound", {"ip": "not-an-ip", "mask": "24", "router": "192.0.2.1", "opt226": "01"})
    assert k.calls == []


def test_path_lease_end_removes_what_it_gave(tmp_path):
    c = cfg(tmp_path)
    lease.path_event(c, RecordingKernel(), 1, "bound", {**LEASE, "ip": "192.0.2.110", "opt226": "01"})
    for event in ("deconfig", "nak"):
        k = RecordingKernel()
        lease.path_event(c, k, 1, event, {})
        if event == "deconfig":
            assert k.calls == [("remove", c, {
                "addresses": ["192.0.2.110/24 dev lan0.mp1"],
                "endpoints": ["id 200 192.0.2.110 dev lan0.mp1 subflow"],
                "routes": ["-4 table 301 192.0.2.0/24 dev lan0.mp1 src 192.0.2.110",
                           "-4 table 301 default via 192.0.2.1 dev lan0.mp1"],
                "rules": ["-4 5001: from 192.0.2.110/32 lookup 301"]})]
        else:
            assert k.calls == []  # nothing left to remove
    state = json.loads((tmp_path / "path-1.json").read_text())
    assert state["address"] is None and state["last_address"] == "192.0.2.110"


def test_path_renew_with_a_new_address_removes_the_old_first(tmp_path):
    c = cfg(tmp_path)
    lease.path_event(c, RecordingKernel(), 1, "bound", {**LEASE, "ip": "192.0.2.110", "opt226": "01"})
    k = RecordingKernel()
    lease.path_event(c, k, 1, "renew", {**LEASE, "ip": "192.0.2.111", "opt226": "01"})
    assert k.calls[0][0] == "remove" and "192.0.2.110/24 dev lan0.mp1" in k.calls[0][2]["addresses"]
    assert k.calls[1][:2] == ("add_address", Address("lan0.mp1", "192.0.2.111/24"))


def test_primary_records_mp_avail_and_keeps_it_on_a_malformed_one(tmp_path, caplog):
    c = cfg(tmp_path)
    k = RecordingKernel()
    lease.primary_event(c, k, "bound", {"ip": "192.0.2.100", "mask": "24", "router": "192.0.2.1", "opt225": "02"})
    assert ("add_address", Address("lan0", "192.0.2.100/24"), {}) in k.calls
    assert ("replace_route", Route(AF_INET, 254, "default", device="lan0", gateway="192.0.2.1"), {}) in k.calls
    assert json.loads((tmp_path / "primary.json").read_text())["mp_avail"] == 2
    with caplog.at_level(logging.ERROR):
        lease.primary_event(c, RecordingKernel(), "renew", {"ip": "192.0.2.100", "mask": "24", "router": "192.0.2.1",
                                                            "opt225": "09"})
    assert json.loads((tmp_path / "primary.json").read_text())["mp_avail"] == 2
    assert [r.getMessage() for r in caplog.records] == [
        "primary: mp-avail (option 225) is 9, above the 8 paths the kernel's MPTCP path manager can use "
        "(got '09'): refused, mp-avail stays 2"]
    # A lease without mp-avail: the gateway offers no extra path now.
    lease.primary_event(c, RecordingKernel(), "renew", {"ip": "192.0.2.100", "mask": "24", "router": "192.0.2.1"})
    assert json.loads((tmp_path / "primary.json").read_text())["mp_avail"] == 0


def test_primary_deconfig_removes_address_and_route_keeps_mp_avail(tmp_path):
    c = cfg(tmp_path)
    lease.primary_event(c, RecordingKernel(), "bound", {"ip": "192.0.2.100", "mask": "24", "router": "192.0.2.1",
                                                        "opt225": "01"})
    k = RecordingKernel()
    lease.primary_event(c, k, "deconfig", {})
    assert k.calls[0] == ("remove", c, {"addresses": ["192.0.2.100/24 dev lan0"],
                                        "routes": ["-4 table 254 default via 192.0.2.1 dev lan0"]})
    state = json.loads((tmp_path / "primary.json").read_text())
    assert state["address"] is None and state["mp_avail"] == 1


def test_resolv_conf_from_the_primary_lease(tmp_path):
    c = from_dict({"host": "t", "interface": "lan0", "state_dir": str(tmp_path), "resolv_conf": str(tmp_path / "resolv.conf")})
    lease.primary_event(c, RecordingKernel(), "bound", {"ip": "192.0.2.100", "mask": "24", "router": "192.0.2.1",
                                                        "dns": "192.0.2.53 bogus", "domain": "example.net"})
    assert (tmp_path / "resolv.conf").read_text().splitlines()[1:] == ["search example.net", "nameserver 192.0.2.53"]
