"""``mptcp-cpe kernel``: the running kernel's MPTCP abilities, and what the converter makes
of a kernel without TCP Fast Open on MPTCP sockets (Debian 12's 6.1)."""

from __future__ import annotations

import errno
import json
import socket

import pytest

from mptcp_cpe import cli, kernelcaps
from mptcp_cpe.converter import from_dict
from mptcp_cpe.converter.worker import ConverterWorker
from mptcp_cpe.checks import InventoryError


class FakeSocket:
    """An MPTCP socket of a kernel that refuses TCP_FASTOPEN_CONNECT on it (6.1)."""

    def __init__(self, *args):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def setsockopt(self, *args):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")


@pytest.fixture
def sysctls(tmp_path, monkeypatch):
    def write(**values):
        for name, value in values.items():
            path = tmp_path / name.replace(".", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{value}\n")
    monkeypatch.setattr(kernelcaps, "PROC_SYS", tmp_path)
    return write


def test_a_kernel_without_fast_open_on_mptcp_sockets(sysctls, monkeypatch):
    sysctls(**{"net.mptcp.enabled": 1, "net.ipv4.tcp_fastopen": 3})
    monkeypatch.setattr(kernelcaps.socket, "socket", FakeSocket)
    caps = kernelcaps.probe()
    assert caps.mptcp_socket and caps.mptcp_enabled and not caps.mptcp_fast_open and not caps.convert_in_syn
    assert "refuses TCP_FASTOPEN_CONNECT" in caps.no_fast_open_reason() and "6.2" in caps.no_fast_open_reason()
    assert "one more round trip" in caps.text()


def test_no_mptcp_at_all_and_the_client_bit(sysctls, monkeypatch):
    sysctls(**{"net.mptcp.enabled": 0, "net.ipv4.tcp_fastopen": 2})

    def no_mptcp(*args):
        raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")
    monkeypatch.setattr(kernelcaps.socket, "socket", no_mptcp)
    caps = kernelcaps.probe()
    assert not caps.mptcp_socket and not caps.mptcp_enabled and not caps.convert_in_syn
    assert "no MPTCP socket" in caps.no_fast_open_reason()
    # The socket option, but no client bit in net.ipv4.tcp_fastopen: no data in the SYN either.
    both = kernelcaps.KernelCaps("6.12.0", True, True, True, 2)
    assert not both.convert_in_syn and "lacks the client bit" in both.no_fast_open_reason()
    assert kernelcaps.KernelCaps("6.12.0", True, True, True, 1).convert_in_syn


def test_the_command_prints_json_and_fails_without_mptcp_sockets(sysctls, monkeypatch, capsys):
    sysctls(**{"net.mptcp.enabled": 1, "net.ipv4.tcp_fastopen": 1})
    monkeypatch.setattr(kernelcaps.socket, "socket", FakeSocket)
    assert cli.main(["kernel", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["mptcp_fast_open"] is False and got["convert_in_syn"] is False and got["release"]

    def no_mptcp(*args):
        raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")
    monkeypatch.setattr(kernelcaps.socket, "socket", no_mptcp)
    assert cli.main(["kernel"]) == 1
    assert "sockets do not open" in capsys.readouterr().out


def test_this_machines_kernel_answers():
    # The lab's kernel has MPTCP (the netns tests need it); what it says is the kernel's own.
    caps = kernelcaps.probe()
    assert caps.release
    assert caps.mptcp_socket == _opens_mptcp()


def _opens_mptcp() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, kernelcaps.IPPROTO_MPTCP).close()
        return True
    except OSError:
        return False


def test_fast_open_setting_and_what_the_worker_makes_of_it():
    base = {"host": "cpe", "lan_interfaces": ["lan0"]}
    assert from_dict(base).fast_open == "auto"
    assert from_dict({**base, "fast_open": "off"}).fast_open == "off"
    # YAML's unquoted off arrives as false.
    assert from_dict({**base, "fast_open": False}).fast_open == "off"
    with pytest.raises(InventoryError) as e:
        from_dict({**base, "fast_open": "sometimes"})
    assert str(e.value) == "cpe: fast_open: must be one of auto, off (got 'sometimes')"
    for setting, kernel, expected in (("auto", True, True), ("auto", False, False), ("off", True, False)):
        w = ConverterWorker.__new__(ConverterWorker)
        w.cfg, w.kernel_fast_open = from_dict({**base, "fast_open": setting}), kernel
        assert w.fast_open is expected, (setting, kernel)
