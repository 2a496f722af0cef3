"""mp-avail and mp-range as udhcpc hands them (``opt<code>=<hex>``): every malformed value is
refused with one line naming the option, and the well-formed ones are read exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mptcp_cpe.host.config import MAX_PATHS
from mptcp_cpe.host.options import OptionError, mp_avail, mp_range, send_mp_range


@given(st.integers(0, MAX_PATHS))
def test_mp_avail_one_octet_is_read(n):
    assert mp_avail(f"{n:02x}") == n


def test_no_mp_avail_is_no_extra_path():
    assert mp_avail(None) == 0


@given(st.binary().filter(lambda b: len(b) != 1))
def test_mp_avail_of_any_other_length_is_refused(data):
    with pytest.raises(OptionError, match=r"^mp-avail \(option 225\) ") as info:
        mp_avail(data.hex())
    assert "\n" not in str(info.value)


@given(st.integers(MAX_PATHS + 1, 255))
def test_mp_avail_above_the_kernel_limit_is_refused(n):
    with pytest.raises(OptionError, match=rf"is {n}, above the {MAX_PATHS} paths"):
        mp_avail(f"{n:02x}")


# Text that is not hex octets: odd lengths, separators, other letters.
not_hex = st.text().filter(lambda t: not (len(t) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in t)))


@given(not_hex)
def test_text_that_is_not_hex_is_refused(text):
    with pytest.raises(OptionError, match="is not hex octets"):
        mp_avail(text, 225)
    with pytest.raises(OptionError, match="is not hex octets"):
        mp_range(text, 1, 226)


@given(st.integers(1, MAX_PATHS))
def test_mp_range_answering_k_is_k(k):
    assert mp_range(f"{k:02x}", k) == k


@given(st.integers(1, MAX_PATHS), st.integers(0, 255))
def test_mp_range_answering_another_k_is_refused(asked, got):
    if got == asked:
        return
    with pytest.raises(OptionError, match=r"^mp-range \(option 226\) is \d+"):
        mp_range(f"{got:02x}", asked)


@given(st.binary().filter(lambda b: len(b) != 1), st.integers(1, MAX_PATHS))
def test_mp_range_of_any_other_length_is_refused(data, k):
    with pytest.raises(OptionError, match="must be one octet"):
        mp_range(data.hex(), k)


def test_mp_range_missing_or_zero_is_refused():
    with pytest.raises(OptionError, match="missing from the answer to a request for range 2"):
        mp_range(None, 2)
    with pytest.raises(OptionError, match="is 0, not a range from 1 to 8"):
        mp_range("00", 1)


def test_the_code_is_named_as_set():
    with pytest.raises(OptionError, match=r"^mp-avail \(option 240\)"):
        mp_avail("0101", 240)


@pytest.mark.parametrize(("code", "k", "arg"), [(226, 1, "0xe2:01"), (226, 8, "0xe2:08"), (240, 3, "0xf0:03")])
def test_send_mp_range_is_udhcpc_hex(code, k, arg):
    assert send_mp_range(code, k) == arg
