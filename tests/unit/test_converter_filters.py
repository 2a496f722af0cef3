"""The filters of the roles cpe_converter and mcp_converter (``plugins/filter/mptcp_cpe.py``):
the daemons' own loaders build the configs, and their errors name the role's variables."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from mptcp_cpe import converter, mcp

TOP = Path(__file__).resolve().parents[2]
PLUGIN = TOP / "plugins" / "filter" / "mptcp_cpe.py"
HOST = "cpe-1"
MCP_HOST = "mcp-1"
WANS = [{"name": "dsl", "device": "wan1", "kind": "dsl"}, {"name": "lte", "device": "wan2", "kind": "lte"}]


def _load():
    spec = importlib.util.spec_from_file_location("mptcp_cpe_filters_converter", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


f = _load()


def role_yaml(role: str, path: str) -> dict:
    return yaml.safe_load((TOP / "roles" / role / path).read_text())


def role_settings(role: str, prefix: str) -> dict:
    """What the role passes to its filter with its defaults: vars/main.yml's settings, each
    "{{ <prefix><key> }}" replaced by the default of that variable."""
    defaults = role_yaml(role, "defaults/main.yml")
    settings = role_yaml(role, "vars/main.yml")[f"__{role}_settings"]
    return {key: defaults[f"{prefix}{key}"] for key in settings}


# ---------------------------------------------------------------------------
# The roles' settings are the daemons' config keys, each from the variable of that name
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "prefix", "module"), [
    ("cpe_converter", "cpe_converter_", converter),
    ("mcp_converter", "mcp_converter_", mcp),
])
def test_settings_are_the_config_keys_by_their_variables(role, prefix, module):
    settings = role_yaml(role, "vars/main.yml")[f"__{role}_settings"]
    defaults = role_yaml(role, "defaults/main.yml")
    # Every key but host (the filter adds the inventory host), each from <prefix><key>: so
    # an error about a key names the variable an operator sets.
    assert set(settings) == module.TOP_KEYS - {"host"}
    for key, value in settings.items():
        assert value == f"{{{{ {prefix}{key} }}}}"
        assert f"{prefix}{key}" in defaults


@pytest.mark.parametrize(("role", "keys"), [
    ("cpe_converter", converter.TOP_KEYS),
    ("mcp_converter", mcp.TOP_KEYS),
])
def test_settings_read_only_at_start_are_config_keys(role, keys):
    assert set(role_yaml(role, "vars/main.yml")[f"__{role}_start_only"]) <= keys


# ---------------------------------------------------------------------------
# converter_config
# ---------------------------------------------------------------------------

# The defaults that read the inventory, as they render for a host without cpe_lans nor
# cpe_mcp_prefixes (test_converter_inventory_defaults_render renders them for real), with one LAN.
CONVERTER_DEFAULTS = {**role_settings("cpe_converter", "cpe_converter_"), "lan_interfaces": ["lan0"],
                      "lan_prefixes": [], "mcp_prefixes": []}


def test_converter_config_with_the_role_defaults():
    assert f.converter_config(CONVERTER_DEFAULTS, HOST, WANS) == {
        "host": HOST, "lan_interfaces": ["lan0"], "mcp_port": 5124, "listen_port": 5125, "mcps": [],
        "mcp_file": "/run/mptcp-cpe/mcp.json", "mcp_prefixes": [], "lan_prefixes": [],
        "bypass": {"destinations": [], "ports": [], "sources": []}, "connect_timeout_s": 3.0, "reply_timeout_s": 15.0, "retry_after_s": 30.0, "replay_limit": 65536,
        "workers": 0, "pipe_size": 262144, "mptcp_rcvbuf": 4194304, "drain_timeout_s": 30.0, "fwmark": 8803, "route_table": 199,
        "rule_priority": 9000, "route_protocol": 202, "nft_table": "mptcp_cpe_converter",
    }


def test_converter_role_defaults_are_the_daemons():
    # The role's defaults say what the converter would do without them.
    assert f.converter_config(CONVERTER_DEFAULTS, HOST) == f.converter_config({"lan_interfaces": ["lan0"]}, HOST)


def test_converter_config_is_normalised():
    cfg = f.converter_config({
        **CONVERTER_DEFAULTS,
        "lan_interfaces": ["lan0", "lan1.10"],
        "mcps": [["203.0.113.1", "2001:DB8::1"], ["198.51.100.7"]],
        "bypass": {"destinations": ["192.0.2.0/24", "2001:db8:FFFF::/48"], "ports": [22, 443], "sources": ["198.18.1.64/26"]},
        "connect_timeout_s": 2, "workers": 4,
    }, HOST, WANS)
    assert cfg["lan_interfaces"] == ["lan0", "lan1.10"]
    assert cfg["mcps"] == [["203.0.113.1", "2001:db8::1"], ["198.51.100.7"]]
    assert cfg["bypass"] == {"destinations": ["192.0.2.0/24", "2001:db8:ffff::/48"], "ports": [22, 443],
                             "sources": ["198.18.1.64/26"]}
    assert cfg["connect_timeout_s"] == 2.0 and isinstance(cfg["connect_timeout_s"], float)
    assert cfg["workers"] == 4


def test_converter_config_round_trips_through_json_and_the_loader(tmp_path):
    # The role writes the filter's result with to_nice_json; `converter --check` loads that file.
    settings = {**CONVERTER_DEFAULTS, "mcps": [["203.0.113.1"]],
                "bypass": {"destinations": ["2001:db8::/32"], "ports": [22], "sources": []}}
    cfg = f.converter_config(settings, HOST, WANS)
    path = tmp_path / "converter.json"
    path.write_text(json.dumps(cfg, indent=4, sort_keys=True) + "\n")
    loaded = converter.load(path, "elsewhere")
    assert loaded == converter.from_dict({**settings, "host": HOST})
    assert loaded.host == HOST  # the file names its host; --check on the router reports it
    assert f._plain(loaded) == cfg


def test_converter_config_does_not_modify_arguments():
    settings = {**CONVERTER_DEFAULTS, "bypass": {"destinations": [], "ports": [22], "sources": []}}
    before = json.dumps(settings, sort_keys=True)
    f.converter_config(settings, HOST, WANS)
    assert json.dumps(settings, sort_keys=True) == before
    assert "host" not in settings


@pytest.mark.parametrize("wans", [None, []])
def test_converter_config_without_wans_checks_no_overlap(wans):
    assert f.converter_config({**CONVERTER_DEFAULTS, "lan_interfaces": ["wan1"]}, HOST, wans)["lan_interfaces"] == ["wan1"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"bypass": {"destinations": [], "ports": [70000], "sources": []}},
                     "cpe_converter_bypass.ports[0]: must be an integer from 1 to 65535 (got 70000)", id="bypass-port"),
        pytest.param({"bypass": {"destinations": ["192.0.2.1/24"], "ports": [], "sources": []}},
                     "cpe_converter_bypass.destinations[0]: not a prefix (host bits must be zero) (got '192.0.2.1/24')",
                     id="bypass-host-bits"),
        pytest.param({"bypass": {"destinations": [], "ports": [], "sources": "198.18.1.0/24"}},
                     "cpe_converter_bypass.sources: must be a list of prefixes (got '198.18.1.0/24')", id="bypass-sources"),
        pytest.param({"bypass": {"dst": []}},
                     "cpe_converter_bypass: unknown keys ['dst']; allowed: ['destinations', 'ports', 'sources']",
                     id="bypass-unknown"),
        pytest.param({"lan_interfaces": []},
                     "cpe_converter_lan_interfaces: must be a list of at least 1 interface name(s) (got [])", id="no-lan"),
        pytest.param({"lan_interfaces": ["lan0", "eth0:1"]},
                     "cpe_converter_lan_interfaces[1]: not an interface name (1-15 octets, no '/', ':' or blanks) (got 'eth0:1')",
                     id="lan-name"),
        pytest.param({"lan_interfaces": ["lan0", "wan2"]},
                     "cpe_converter_lan_interfaces[1]: is the device of WAN lte: the converter would intercept "
                     "connections from the internet (got 'wan2')", id="lan-is-wan"),
        pytest.param({"mcps": [["203.0.113.1", "mcp.example.net"]]},
                     "cpe_converter_mcps[0][1]: not an IP address (got 'mcp.example.net')", id="mcp-address"),
        pytest.param({"mcps": [[]]}, "cpe_converter_mcps[0]: must be a non-empty list of addresses (got [])", id="mcp-empty"),
        pytest.param({"mcps": ["203.0.113.1"]},
                     "cpe_converter_mcps[0]: must be a non-empty list of addresses (got '203.0.113.1')", id="mcp-not-list"),
        pytest.param({"mcps": [["127.0.0.1"]]},
                     "cpe_converter_mcps[0][0]: must be a unicast address (not multicast, loopback or unspecified) "
                     "(got '127.0.0.1')", id="mcp-loopback"),
        pytest.param({"listen_port": 5124},
                     "cpe_converter_listen_port: is the cpe_converter_mcp_port: connections to MCPs are never "
                     "intercepted (got 5124)", id="listen-is-mcp-port"),
        pytest.param({"mcp_port": "5124"},
                     "cpe_converter_mcp_port: must be an integer from 1 to 65535 (got '5124')", id="port-str"),
        pytest.param({"reply_timeout_s": 2},
                     "cpe_converter_reply_timeout_s: shorter than cpe_converter_connect_timeout_s (3) (got 2.0)",
                     id="reply-shorter"),
        pytest.param({"connect_timeout_s": True},
                     "cpe_converter_connect_timeout_s: must be a number from 0.1 to 60 (got True)", id="timeout-bool"),
        pytest.param({"mcp_file": "run/mcp.json"},
                     "cpe_converter_mcp_file: must be an absolute path (got 'run/mcp.json')", id="mcp-file"),
        pytest.param({"route_table": 254},
                     "cpe_converter_route_table: is one of the kernel's own tables (253 default, 254 main, 255 local) "
                     "(got 254)", id="route-table"),
        pytest.param({"route_protocol": 4},
                     "cpe_converter_route_protocol: belongs to the kernel or a routing daemon "
                     "(see /etc/iproute2/rt_protos) (got 4)", id="route-protocol"),
        pytest.param({"rule_priority": 32766},
                     "cpe_converter_rule_priority: must be an integer from 1 to 32765 (got 32766)", id="rule-priority"),
        pytest.param({"nft_table": "mptcp-cpe"},
                     "cpe_converter_nft_table: must be 1-32 letters, digits and _, not starting with a digit "
                     "(got 'mptcp-cpe')", id="nft-table"),
        pytest.param({"workers": 257}, "cpe_converter_workers: must be an integer from 0 to 256 (got 257)", id="workers"),
        pytest.param({"replay_limit": 100},
                     "cpe_converter_replay_limit: must be an integer from 1024 to 16777216 (got 100)", id="replay"),
        pytest.param({"mcp_prefixes": ["198.51.100.1/24"]},
                     "cpe_converter_mcp_prefixes[0]: not a prefix (host bits must be zero) (got '198.51.100.1/24')",
                     id="mcp-prefixes-host-bits"),
        pytest.param({"mcp_prefixes": "198.51.100.0/24"},
                     "cpe_converter_mcp_prefixes: must be a list of prefixes (got '198.51.100.0/24')", id="mcp-prefixes-str"),
        pytest.param({"lan_prefixes": ["lan0"]},
                     "cpe_converter_lan_prefixes[0]: not a prefix (host bits must be zero) (got 'lan0')", id="lan-prefixes"),
        pytest.param({"mcp_prefixes": ["198.51.100.0/24"], "mcps": [["203.0.113.1"]]},
                     "cpe_converter_mcps[0][0]: cannot be an MCP: outside cpe_converter_mcp_prefixes (198.51.100.0/24) "
                     "(got '203.0.113.1')", id="static-mcp-outside"),
        pytest.param({"lan_prefixes": ["192.0.2.0/24"], "mcps": [["192.0.2.1"]]},
                     "cpe_converter_mcps[0][0]: cannot be an MCP: inside the LAN prefix 192.0.2.0/24 (got '192.0.2.1')",
                     id="static-mcp-in-lan"),
    ],
)
def test_converter_errors_name_host_variable_and_value(change, expected):
    with pytest.raises(AnsibleFilterError) as info:
        f.converter_config({**CONVERTER_DEFAULTS, **change}, HOST, WANS)
    assert info.value.message == f"{HOST}: {expected}"
    # Raised "from None": the daemon's traceback is not chained into Ansible's output.
    assert info.value.__cause__ is None and info.value.__suppress_context__ is True


def test_converter_config_keeps_the_trust_prefixes():
    cfg = f.converter_config({**CONVERTER_DEFAULTS, "mcp_prefixes": ["198.51.100.0/24", "2001:DB8:A::/48"],
                              "lan_prefixes": ["192.0.2.0/24"], "mcps": [["198.51.100.1"]]}, HOST, WANS)
    assert cfg["mcp_prefixes"] == ["198.51.100.0/24", "2001:db8:a::/48"] and cfg["lan_prefixes"] == ["192.0.2.0/24"]


LANS = [{"name": "home", "device": "br-lan", "ipv4": "192.0.2.1/24", "ipv6": ["2001:db8:1::1/64"]},
        {"name": "guest", "device": "br-guest", "ipv4": "198.18.7.1/24"}]


def test_lan_prefixes_are_every_prefix_of_the_lans():
    assert f.lan_prefixes(LANS, HOST) == ["192.0.2.0/24", "2001:db8:1::/64", "198.18.7.0/24"]
    assert f.lan_prefixes([], HOST) == [] and f.lan_prefixes(None, HOST) == []


@pytest.mark.parametrize(("lans", "expected"), [
    pytest.param([{"name": "home", "device": "br-lan", "ipv4": "192.0.2.1"}],
                 "cpe_lans[0] (home).ipv4: not the CPE's IPv4 address with the LAN's prefix length, like 198.18.1.1/24 "
                 "(got '192.0.2.1')", id="no-length"),
    pytest.param([LANS[0], {**LANS[1], "ipv4": "192.0.2.129/25"}],
                 "cpe_lans[1] (guest): prefix 192.0.2.128/25 overlaps 192.0.2.0/24 of LAN home (got '192.0.2.128/25')",
                 id="overlap"),
    pytest.param("br-lan", "cpe_lans: must be a non-empty list of LANs (got 'br-lan')", id="not-a-list"),
])
def test_lan_prefixes_errors_name_host_field_and_value(lans, expected):
    with pytest.raises(AnsibleFilterError) as info:
        f.lan_prefixes(lans, HOST)
    assert info.value.message == f"{HOST}: {expected}"


def _render(template: str, **context):
    """A role default rendered as Ansible would: Jinja2 with this plugin's filters."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters.update(f.FilterModule().filters())
    return env.from_string(template.replace("{{", "{{ (").replace("}}", ") | tojson }}")).render(
        inventory_hostname=HOST, **context)


def test_converter_inventory_defaults_render():
    defaults = role_yaml("cpe_converter", "defaults/main.yml")
    names = ("cpe_converter_lan_interfaces", "cpe_converter_lan_prefixes", "cpe_converter_mcp_prefixes")
    # A host without cpe_lans nor cpe_mcp_prefixes: what CONVERTER_DEFAULTS says.
    assert [json.loads(_render(defaults[n])) for n in names] == [[], [], []]
    # With the inventory's LANs and MCP prefixes: their devices, their prefixes, the prefixes as given.
    rendered = [json.loads(_render(defaults[n], cpe_lans=LANS, cpe_mcp_prefixes=["198.51.100.0/24"])) for n in names]
    assert rendered == [["br-lan", "br-guest"], ["192.0.2.0/24", "2001:db8:1::/64", "198.18.7.0/24"], ["198.51.100.0/24"]]
    cfg = f.converter_config({**CONVERTER_DEFAULTS, **dict(zip(("lan_interfaces", "lan_prefixes", "mcp_prefixes"), rendered))},
                             HOST, WANS)
    assert cfg["lan_interfaces"] == ["br-lan", "br-guest"] and cfg["mcp_prefixes"] == ["198.51.100.0/24"]


def test_converter_wan_errors_keep_the_inventory_names():
    # The WAN list is the inventory's cpe_wans, checked by the one WAN checker.
    with pytest.raises(AnsibleFilterError) as info:
        f.converter_config(CONVERTER_DEFAULTS, HOST, [{**WANS[0], "kind": "adsl"}])
    assert info.value.message.startswith(f"{HOST}: cpe_wans[0] (dsl).kind: must be one of ")


# ---------------------------------------------------------------------------
# mcp_config
# ---------------------------------------------------------------------------

MCP_DEFAULTS = {**role_settings("mcp_converter", "mcp_converter_"), "clients": ["192.0.2.0/24", "2001:db8:0:1::/64"]}


def test_mcp_config_with_the_role_defaults():
    assert f.mcp_config(MCP_DEFAULTS, MCP_HOST) == {
        "host": MCP_HOST, "listen": "::", "port": 5124, "clients": ["192.0.2.0/24", "2001:db8:0:1::/64"],
        "deny_destinations": [], "max_connections": 20000, "max_connections_per_client": 2000, "max_subflows": 8,
        "connect_timeout_s": 10.0, "handshake_timeout_s": 10.0, "cookie_syn_rate": 0, "retry_after_s": 30,
        "workers": 0, "pipe_size": 262144, "mptcp_rcvbuf": 4194304, "drain_timeout_s": 30.0,
    }


def test_mcp_role_defaults_are_the_daemons():
    assert f.mcp_config(MCP_DEFAULTS, MCP_HOST) == f.mcp_config({"clients": MCP_DEFAULTS["clients"]}, MCP_HOST)


def test_mcp_config_max_subflows_null_leaves_the_kernel_alone():
    assert f.mcp_config({**MCP_DEFAULTS, "max_subflows": None}, MCP_HOST)["max_subflows"] is None


def test_mcp_config_round_trips_through_json_and_the_loader(tmp_path):
    settings = {**MCP_DEFAULTS, "deny_destinations": ["2001:DB8:FFFF::/48"], "max_subflows": None,
                "listen": "203.0.113.1"}
    cfg = f.mcp_config(settings, MCP_HOST)
    assert cfg["deny_destinations"] == ["2001:db8:ffff::/48"]
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps(cfg, indent=4, sort_keys=True) + "\n")
    loaded = mcp.load(path, "elsewhere")
    assert loaded == mcp.from_dict({**settings, "host": MCP_HOST})
    assert f._plain(loaded) == cfg


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"clients": []}, "mcp_converter_clients: empty: the MCP would refuse everyone (got [])", id="no-clients"),
        pytest.param({"clients": ["192.0.2.0/24", "0.0.0.0/0"]},
                     "mcp_converter_clients[1]: a default prefix would make the MCP an open proxy (got '0.0.0.0/0')",
                     id="open-proxy"),
        pytest.param({"clients": ["192.0.2.1/24"]},
                     "mcp_converter_clients[0]: not a prefix (host bits must be zero) (got '192.0.2.1/24')", id="host-bits"),
        pytest.param({"deny_destinations": ["2001:db8::/129"]},
                     "mcp_converter_deny_destinations[0]: not a prefix (host bits must be zero) (got '2001:db8::/129')",
                     id="deny"),
        pytest.param({"listen": "any"}, "mcp_converter_listen: not an IP address (got 'any')", id="listen"),
        pytest.param({"port": 0}, "mcp_converter_port: must be an integer from 1 to 65535 (got 0)", id="port"),
        pytest.param({"max_connections": 100},
                     "mcp_converter_max_connections_per_client: above mcp_converter_max_connections (100) (got 2000)",
                     id="per-client-above"),
        pytest.param({"max_subflows": 9}, "mcp_converter_max_subflows: must be an integer from 0 to 8 (got 9)",
                     id="subflows"),
        pytest.param({"retry_after_s": 30.0},
                     "mcp_converter_retry_after_s: must be an integer from 1 to 255 (got 30.0)", id="retry-float"),
        pytest.param({"handshake_timeout_s": 0},
                     "mcp_converter_handshake_timeout_s: must be a number from 0.1 to 300 (got 0)", id="handshake"),
        pytest.param({"pipe_size": 1 << 21},
                     "mcp_converter_pipe_size: must be an integer from 4096 to 1048576 (got 2097152)", id="pipe"),
    ],
)
def test_mcp_errors_name_host_variable_and_value(change, expected):
    with pytest.raises(AnsibleFilterError) as info:
        f.mcp_config({**MCP_DEFAULTS, **change}, MCP_HOST)
    assert info.value.message == f"{MCP_HOST}: {expected}"
    assert info.value.__cause__ is None and info.value.__suppress_context__ is True


def test_mcp_without_clients_says_so():
    settings = dict(MCP_DEFAULTS)
    del settings["clients"]
    with pytest.raises(AnsibleFilterError) as info:
        f.mcp_config(settings, MCP_HOST)
    assert info.value.message == f"{MCP_HOST}: mcp_converter_clients: missing: an MCP accepts only the client prefixes it is given"


# ---------------------------------------------------------------------------
# _role_error: which names are rewritten
# ---------------------------------------------------------------------------


def test_role_error_rewrites_only_the_config_keys():
    exc = converter.ConfigError(HOST, "reply_timeout_s", "shorter than connect_timeout_s (3), see host and port", 1)
    assert f._role_error(exc, "p_", converter.TOP_KEYS).message == (
        f"{HOST}: p_reply_timeout_s: shorter than p_connect_timeout_s (3), see host and port (got 1)")
    # A field that is no config key (the inventory's, a file's) is left as it is.
    for field in ("cpe_wans[0] (dsl).kind", "(config)", "/etc/mptcp-cpe/converter.json"):
        exc = converter.ConfigError(HOST, field, "something about mcp_port", show_value=False)
        assert f._role_error(exc, "p_", converter.TOP_KEYS).message == f"{HOST}: {field}: something about mcp_port"


def test_role_error_does_not_rewrite_inside_longer_names():
    exc = mcp.ConfigError(MCP_HOST, "max_connections", "below max_connections_per_client", 1)
    assert f._role_error(exc, "m_", mcp.TOP_KEYS).message == (
        f"{MCP_HOST}: m_max_connections: below m_max_connections_per_client (got 1)")


# ---------------------------------------------------------------------------
# converter_sysctls
# ---------------------------------------------------------------------------

VAR = "cpe_converter_tcp_fastopen"


@pytest.mark.parametrize(("value", "bit", "expected"), [(1, 1, "1"), (3, 1, "3"), (3, 2, "3"), (2, 2, "2"),
                                                        ("3", 1, "3"), (0x603, 2, "1539")])
def test_converter_sysctls(value, bit, expected):
    result = f.converter_sysctls(value, HOST, VAR, bit)
    assert result == {"net.mptcp.enabled": "1", "net.ipv4.tcp_fastopen": expected}
    assert list(result) == ["net.mptcp.enabled", "net.ipv4.tcp_fastopen"]


@pytest.mark.parametrize("extra", [None, {}, {"net.ipv4.tcp_ecn": 1}, {"net.ipv4.tcp_fastopen": 3},
                                   {"net.ipv4.tcp_fastopen": "3"}, {"net.ipv4.tcp_fastopen": " 3 "}])
def test_converter_sysctls_agree_with_cpe_base(extra):
    assert f.converter_sysctls(3, HOST, VAR, 1, extra)["net.ipv4.tcp_fastopen"] == "3"


@pytest.mark.parametrize(
    ("value", "bit", "extra", "expected"),
    [
        pytest.param(2, 1, None, f"{VAR}: must include the client bit (1) (got 2)", id="no-client-bit"),
        pytest.param(1, 2, None, f"{VAR}: must include the server bit (2) (got 1)", id="no-server-bit"),
        pytest.param(0, 1, None, f"{VAR}: must include the client bit (1) (got 0)", id="off"),
        pytest.param("yes", 1, None, f"{VAR}: must be an integer from 0 to 65535 (got 'yes')", id="word"),
        pytest.param(True, 1, None, f"{VAR}: must be an integer from 0 to 65535 (got True)", id="bool"),
        pytest.param(1, 1, {"net.ipv4.tcp_fastopen": 3},
                     f"{VAR}: differs from cpe_base_extra_sysctls['net.ipv4.tcp_fastopen'] (3): cpe_base and this "
                     "role would set it back and forth (got 1)", id="clash"),
        pytest.param(1, 1, {"net.ipv4.tcp_fastopen": True},
                     None, id="true-is-1"),
    ],
)
def test_converter_sysctls_errors(value, bit, extra, expected):
    if expected is None:
        assert f.converter_sysctls(value, HOST, VAR, bit, extra)["net.ipv4.tcp_fastopen"] == "1"
        return
    with pytest.raises(AnsibleFilterError) as info:
        f.converter_sysctls(value, HOST, VAR, bit, extra)
    assert info.value.message == f"{HOST}: {expected}"


def test_role_fastopen_defaults():
    assert role_yaml("mcp_converter", "defaults/main.yml")["mcp_converter_tcp_fastopen"] == 3
    # The CPE's follows cpe_base_extra_sysctls when that sets it, else the client bit alone.
    default = role_yaml("cpe_converter", "defaults/main.yml")["cpe_converter_tcp_fastopen"]
    assert re.search(r"cpe_base_extra_sysctls.*\['net\.ipv4\.tcp_fastopen'\].*default\(1\)", default)
