"""The host's pure plan: macvlan names and MACs, a path's kernel objects, which paths run for
an mp-avail, the IPv6 endpoints, the limits."""

from __future__ import annotations

from socket import AF_INET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mptcp_cpe.checks import is_ifname
from mptcp_cpe.host.config import MAX_PATHS, from_dict
from mptcp_cpe.host.plan import (
    Lease,
    lease_from_env,
    limits,
    macvlan_name,
    path_mac,
    path_macs,
    path_objects,
    paths_to_change,
    primary_objects,
    v6_endpoints,
    v6_prefix_addresses,
)
from mptcp_cpe.wand.plan import Address, Endpoint, Route, Rule

CFG = from_dict({"host": "t", "interface": "lan0", "table_base": 300, "rule_priority": 5000, "endpoint_id_base": 200})
macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))


@given(macs)
def test_path_macs_are_stable_unique_local_unicast(mac):
    derived = path_macs(mac)
    assert derived == path_macs(mac.upper())  # the same whatever the kernel's case
    assert list(derived) == list(range(1, MAX_PATHS + 1))
    values = list(derived.values())
    assert len(set(values)) == MAX_PATHS and mac not in values
    for k, m in derived.items():
        first = int(m[:2], 16)
        assert first & 0x02 and not first & 0x01, m  # locally administered, unicast
        assert path_mac(mac, k) == m


def test_path_macs_differ_between_hosts_a_mac_apart():
    # MAC + k would make host A's path 3 host B's path 2: a hash does not.
    a, b = path_macs("52:54:00:00:00:10"), path_macs("52:54:00:00:00:11")
    assert not set(a.values()) & set(b.values())


def test_path_mac_vector():
    # Pinned: a change of the derivation would move every host's leases.
    assert path_macs("52:54:00:12:34:56", 2) == {1: "02:da:6d:9c:7d:71", 2: "32:2d:67:4c:c4:5c"}


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=15), st.integers(1, MAX_PATHS))
def test_macvlan_names_fit_ifnamsiz(parent, k):
    name = macvlan_name(parent, k)
    assert is_ifname(name) and name.endswith(f".mp{k}")
    assert name.startswith(parent[:11])


def test_lease_from_udhcpc_env():
    assert lease_from_env({"ip": "192.0.2.110", "mask": "24", "router": "192.0.2.1 192.0.2.2"}) == Lease(
        "192.0.2.110/24", "192.0.2.1")
    assert lease_from_env({"ip": "192.0.2.110", "subnet": "255.255.255.0"}) == Lease("192.0.2.110/24", None)
    with pytest.raises(ValueError):
        lease_from_env({"ip": "192.0.2.300", "mask": "24"})


def test_path_objects():
    objs = path_objects(CFG, 2, "lan0.mp2", Lease("192.0.2.120/24", "192.0.2.1"))
    assert objs.address == Address("lan0.mp2", "192.0.2.120/24")
    assert objs.routes == (Route(AF_INET, 302, "192.0.2.0/24", device="lan0.mp2", prefsrc="192.0.2.120"),
                           Route(AF_INET, 302, "default", device="lan0.mp2", gateway="192.0.2.1"))
    assert objs.rule == Rule(AF_INET, 5002, 302, src="192.0.2.120/32")
    assert objs.endpoint == Endpoint(201, "192.0.2.120", "lan0.mp2", False)


def test_primary_objects_are_default_scripts():
    assert primary_objects(CFG, Lease("192.0.2.100/24", "192.0.2.1")) == (
        Address("lan0", "192.0.2.100/24"), Route(AF_INET, 254, "default", device="lan0", gateway="192.0.2.1"))
    assert primary_objects(CFG, Lease("192.0.2.100/24", None))[1] is None


@pytest.mark.parametrize(("running", "n", "start", "stop"), [
    (set(), 2, [1, 2], []),
    ({1, 2}, 2, [], []),
    ({1, 2}, 1, [], [2]),
    ({1, 2, 3}, 0, [], [3, 2, 1]),
    ({1}, 3, [2, 3], []),
    (set(), 9, list(range(1, 9)), []),
])
def test_paths_to_change(running, n, start, stop):
    assert paths_to_change(running, n) == (start, stop)


def test_one_v6_address_per_prefix():
    assert v6_prefix_addresses(["2001:db8:2::10/64", "2001:db8:1::11/64", "2001:db8:1::10/64"]) == [
        "2001:db8:1::10", "2001:db8:2::10"]


def test_v6_endpoints_keep_ids_and_fill_the_lowest_free():
    have = {208: Endpoint(208, "2001:db8:1::10", "lan0", False), 209: Endpoint(209, "2001:db8:2::10", "lan0", False)}
    remove, add = v6_endpoints(CFG, "lan0", have, ["2001:db8:2::10", "2001:db8:3::10"])
    assert remove == [have[208]]
    assert add == [Endpoint(208, "2001:db8:3::10", "lan0", False)]
    assert v6_endpoints(CFG, "lan0", have, ["2001:db8:1::10", "2001:db8:2::10"]) == ([], [])


def test_v6_endpoints_beyond_the_ids_wait():
    addrs = [f"2001:db8:{i}::1" for i in range(1, 11)]
    remove, add = v6_endpoints(CFG, "lan0", {}, addrs)
    assert remove == [] and [e.id for e in add] == list(range(208, 216))


def test_limits_follow_the_larger_family_within_the_kernel():
    assert limits(2, 1) == (2, 2)
    assert limits(0, 3) == (3, 3)
    assert limits(8, 12) == (8, 8)
