"""mp-avail and mp-range (draft-wr-mptcp-single-homed) as busybox udhcpc hands them to its
script: an option udhcpc does not know arrives as ``opt<code>=<hex>``. Pure functions of
that text, so every malformed value is refused here, with one line, before anything in the
kernel changes.

- mp-avail: one octet, n, the extra paths (WANs) the gateway offers; 0 is none. More than
  the kernel's path manager can use (``MAX_PATHS``) is refused, not cut: a gateway that
  says so is misconfigured.
- mp-range: one octet, k (1..n), which extra path a lease belongs to; the client sends it
  and the server's answer carries the same k.
"""

from __future__ import annotations

import re

from .config import MAX_PATHS

HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")  # empty too: a zero-length option is no octet


class OptionError(ValueError):
    """A malformed option value; ``str()`` is the one line that says which and why."""


def octets(name: str, code: int, text: str) -> bytes:
    if not HEX.fullmatch(text):
        raise OptionError(f"{name} (option {code}) is not hex octets (got {text!r})")
    return bytes.fromhex(text)


def _one_octet(name: str, code: int, text: str) -> int:
    data = octets(name, code, text)
    if len(data) != 1:
        raise OptionError(f"{name} (option {code}) must be one octet, not {len(data)} (got {text!r})")
    return data[0]


def mp_avail(text: str | None, code: int = 225) -> int:
    """The number of extra paths; None (the server sent no mp-avail) is 0."""
    if text is None:
        return 0
    n = _one_octet("mp-avail", code, text)
    if n > MAX_PATHS:
        raise OptionError(f"mp-avail (option {code}) is {n}, above the {MAX_PATHS} paths the kernel's MPTCP "
                          f"path manager can use (got {text!r})")
    return n


def mp_range(text: str | None, asked: int, code: int = 226) -> int:
    """The k of a lease answering a request for range ``asked``; a missing or different k
    is refused (an address from another range would route out of the wrong WAN)."""
    if text is None:
        raise OptionError(f"mp-range (option {code}) missing from the answer to a request for range {asked}")
    k = _one_octet("mp-range", code, text)
    if not 1 <= k <= MAX_PATHS:
        raise OptionError(f"mp-range (option {code}) is {k}, not a range from 1 to {MAX_PATHS} (got {text!r})")
    if k != asked:
        raise OptionError(f"mp-range (option {code}) is {k} in the answer to a request for range {asked} (got {text!r})")
    return k


def send_mp_range(code: int, k: int) -> str:
    """udhcpc's ``-x`` argument that sends mp-range = k: ``0xe2:01`` for code 226."""
    if not 1 <= code <= 254 or not 1 <= k <= MAX_PATHS:
        raise ValueError(f"no mp-range option {code} = {k}")
    return f"0x{code:02x}:{k:02x}"
