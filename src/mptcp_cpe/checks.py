"""The primitive checks every loader uses (the inventory model, wand's, the converter's, the
MCP's, the firewall's and Kea's configs) and their error: a value that cannot be used
reads the same wherever it is caught, ``<host>: <field>: <problem> (got <value>)``."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Linux: 1..15 octets (IFNAMSIZ - 1), no '/', no whitespace, not '.' or '..'; ':' is
# refused too (it marks an alias label, not a device).
IFNAME = re.compile(r"[^/\s:]+")
IFNAME_MAX_OCTETS = 15
# Routing tables: 32-bit ids; 0 (unspec), 253 (default), 254 (main) and 255 (local) are the kernel's.
TABLE_RANGE = (1, 2**32 - 1)
RESERVED_TABLES = frozenset({253, 254, 255})
NFT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
# Route protocol numbers of the kernel and well-known routing daemons (/etc/iproute2/rt_protos).
FOREIGN_PROTOCOLS = frozenset({0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 42, 99,
                               168, 186, 187, 188, 189, 192})


class InventoryError(ValueError):
    """A value in an inventory (or a config rendered from one) that cannot be used."""

    def __init__(self, host: str, field: str, problem: str, value: Any = None, *, show_value=True):
        self.host, self.field, self.problem, self.value = host, field, problem, value
        got = f" (got {value!r})" if show_value else ""
        super().__init__(f"{host}: {field}: {problem}{got}")


class InventoryErrors(InventoryError):
    """Several mistakes found in one pass (each an InventoryError), so an operator fixes them
    all in one round; ``str()`` is one line each. A single mistake is raised as itself."""

    def __init__(self, errors: list[InventoryError]):
        self.errors = tuple(errors)
        first = self.errors[0]
        self.host, self.field, self.problem, self.value = first.host, first.field, first.problem, first.value
        ValueError.__init__(self, "\n".join(str(e) for e in self.errors))


def error_list(exc: InventoryError) -> list[InventoryError]:
    """The single mistakes an error stands for."""
    return list(exc.errors) if isinstance(exc, InventoryErrors) else [exc]


class Errors:
    """Gathers the mistakes of checks that do not depend on each other: ``check`` runs one and
    returns its value (``default`` when it found a mistake); ``raise_any`` raises what was
    found (before the checks that need those values)."""

    def __init__(self) -> None:
        self.found: list[InventoryError] = []

    def check(self, fn: Callable[..., Any], *args: Any, default: Any = None, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except InventoryError as exc:
            self.add(exc)
            return default

    def add(self, exc: InventoryError) -> None:
        self.found.extend(error_list(exc))

    def raise_any(self) -> None:
        if len(self.found) == 1:
            raise self.found[0]
        if self.found:
            raise InventoryErrors(self.found)


def is_ifname(value: Any) -> bool:
    return (isinstance(value, str) and IFNAME.fullmatch(value) is not None
            and len(value.encode()) <= IFNAME_MAX_OCTETS and value not in (".", ".."))


def key_names(keys) -> list[str]:
    # YAML keys may be ints, bools or None as well as strings: sort them all as text.
    return sorted(repr(k) if not isinstance(k, str) else k for k in keys)


def only_keys(host: str, field: str, raw: dict, allowed: frozenset, *, error: type[InventoryError] | None = None,
              hint: str | None = None, show_value: bool = False) -> None:
    """Refuse a mapping with keys outside ``allowed``, naming them and what is allowed
    (``hint`` says it in words); ``show_value`` adds the whole mapping (small ones)."""
    unknown = set(raw) - allowed
    if unknown:
        problem = f"unknown keys {key_names(unknown)}; {hint or f'allowed: {sorted(allowed)}'}"
        raise (error or InventoryError)(host, field, problem, raw, show_value=show_value)


def integer(host: str, field: str, value: Any, lo: int, hi: int) -> int:
    # bool is an int in Python; "weight: yes" is a typo, not a weight of 1.
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InventoryError(host, field, f"must be an integer from {lo} to {hi}", value)
    return value


def boolean(host: str, field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InventoryError(host, field, "must be true or false", value)
    return value


def parse_table(host: str, field: str, value: Any) -> int:
    table = integer(host, field, value, *TABLE_RANGE)
    if table in RESERVED_TABLES:
        raise InventoryError(host, field, "is one of the kernel's own tables (253 default, 254 main, 255 local)", value)
    return table


class ConfigError(InventoryError):
    """A daemon config that cannot be used."""


def number(host: str, field: str, value: Any, lo: float, hi: float, *,
           error: type[InventoryError] = ConfigError) -> float:
    # bool is an int in Python, and NaN compares false to every bound: neither is a number here.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise error(host, field, f"must be a number from {lo:g} to {hi:g}", value)
    return float(value)


def check_keys(host: str, field: str, raw: Any, allowed: frozenset[str]) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(host, field, f"must be a mapping (keys: {', '.join(sorted(allowed))})", raw)
    only_keys(host, field, raw, allowed, error=ConfigError)
    return raw


def absolute_path(host: str, field: str, value: Any) -> Path:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(host, field, "must be an absolute path", value)
    return Path(value)


def nft_name(host: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or NFT_NAME.fullmatch(value) is None:
        raise ConfigError(host, field, "must be 1-32 letters, digits and _, not starting with a digit", value)
    return value


def route_protocol(host: str, field: str, value: Any) -> int:
    proto = integer(host, field, value, 1, 255)
    if proto in FOREIGN_PROTOCOLS:
        raise ConfigError(host, field, "belongs to the kernel or a routing daemon (see /etc/iproute2/rt_protos)", proto)
    return proto


def prefixes(host: str, field: str, value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A list of prefixes (host bits must be zero; an address alone is a /32 or /128)."""
    if not isinstance(value, list):
        raise ConfigError(host, field, "must be a list of prefixes", value)
    out = []
    for i, item in enumerate(value):
        try:
            if not isinstance(item, str):
                raise ValueError
            out.append(ipaddress.ip_network(item, strict=True))
        except ValueError:
            raise ConfigError(host, f"{field}[{i}]", "not a prefix (host bits must be zero)", item) from None
    return tuple(out)


def ip_address(host: str, field: str, value: Any, version: int | None = None, *,
               error: type[InventoryError] = InventoryError) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IP address written as text (of IPv``version`` only, if given)."""
    name = f"IPv{version}" if version else "IP"
    try:
        # A string only: ip_address() also takes integers and packed bytes, which no operator means.
        if not isinstance(value, str):
            raise ValueError
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise error(host, field, f"not an {name} address", value) from None
    if version is not None and addr.version != version:
        raise error(host, field, f"not an {name} address", value)
    return addr


def address(host: str, field: str, value: Any) -> str:
    """An IP address (any, the unspecified too: a listen address) as text."""
    ip_address(host, field, value, error=ConfigError)
    return value


def unicast_address(host: str, field: str, value: Any) -> str:
    addr = ip_address(host, field, value, error=ConfigError)
    if addr.is_multicast or addr.is_loopback or addr.is_unspecified or (addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255")):
        raise ConfigError(host, field, "must be a unicast address (not multicast, loopback or unspecified)", value)
    return str(addr)


def mcp_lists(host: str, field: str, raw: Any) -> tuple[tuple[str, ...], ...]:
    """Static MCPs: a list of MCPs, each a non-empty list of its unicast addresses in the
    order to try them (the converter's ``mcps``, wand's ``mptcp_probe.mcps``)."""
    if not isinstance(raw, list):
        raise ConfigError(host, field, "must be a list of MCPs, each a list of its addresses", raw)
    out = []
    for i, mcp in enumerate(raw):
        if not isinstance(mcp, list) or not mcp:
            raise ConfigError(host, f"{field}[{i}]", "must be a non-empty list of addresses", mcp)
        out.append(tuple(unicast_address(host, f"{field}[{i}][{j}]", a) for j, a in enumerate(mcp)))
    return tuple(out)


def interfaces(host: str, field: str, value: Any, *, minimum: int = 0) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) < minimum:
        raise ConfigError(host, field, f"must be a list of at least {minimum} interface name(s)", value)
    for i, name in enumerate(value):
        if not is_ifname(name):
            raise ConfigError(host, f"{field}[{i}]", "not an interface name (1-15 octets, no '/', ':' or blanks)", name)
    if len(set(value)) != len(value):
        raise ConfigError(host, field, "lists an interface twice", value)
    return tuple(value)


def ports(host: str, field: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ConfigError(host, field, "must be a list of TCP ports", value)
    return tuple(integer(host, f"{field}[{i}]", p, 1, 65535) for i, p in enumerate(value))
