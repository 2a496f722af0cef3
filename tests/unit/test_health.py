"""``mptcp-cpe health``: each check's verdict, the Convert exchange against a stand-in MCP on
loopback, the JSON line and the exit status, and the refusals naming host, field and value."""

from __future__ import annotations

import argparse
import json
import socket
import threading
from pathlib import Path

import pytest

from mptcp_cpe import health, rfc8803
from mptcp_cpe.build import build_id
from mptcp_cpe.kernelcaps import IPPROTO_MPTCP
from mptcp_cpe.state import WanRecord, WanState, write_wan_state

HOST = "cpe-h"
MCP = "198.18.0.1"


def state(*wans: WanRecord, build: str | None = None) -> WanState:
    return WanState(host=HOST, policy="balance", build=build, wans=wans)


UP = WanRecord(name="dsl", device="wan1", healthy=True, state="up")
DOWN = WanRecord(name="lte", device="wan2", healthy=False, state="down")


def test_expectations_default_up_and_refusals_name_host_field_value():
    assert health.parse_expectations(HOST, [], ["dsl", "lte"]) == {"dsl": "up", "lte": "up"}
    assert health.parse_expectations(HOST, ["lte=down", "dsl=any"], ["dsl", "lte"]) == {"dsl": "any", "lte": "down"}
    with pytest.raises(health.CannotRun, match=r"cpe-h: --expect: must be NAME=up.*'lte=gone'"):
        health.parse_expectations(HOST, ["lte=gone"], ["dsl", "lte"])
    with pytest.raises(health.CannotRun, match=r"cpe-h: --expect: wan9 is not a WAN.*\(its WANs: dsl, lte\).*'wan9=up'"):
        health.parse_expectations(HOST, ["wan9=up"], ["dsl", "lte"])


def test_wans_against_expectations():
    ok = health.judge_wans(state(UP, DOWN), {"dsl": "up", "lte": "down"})
    assert ok.ok and ok.data["wans"] == {"dsl": "up", "lte": "down"}
    bad = health.judge_wans(state(UP, DOWN), {"dsl": "up", "lte": "up"})
    assert bad.ok is False and bad.detail == "lte is down, expected up"
    assert health.judge_wans(state(UP, DOWN), {"dsl": "down", "lte": "any"}).detail == "dsl is up, expected down"
    missing = health.judge_wans(state(UP), {"dsl": "up", "lte": "up"})
    assert missing.ok is False and "lte is not in wan.json" in missing.detail
    assert health.judge_wans(state(UP), {"dsl": "up", "lte": "any"}).ok
    assert health.judge_wans(None, {"dsl": "up"}).ok is False


def test_wand_running_written_and_current():
    assert health.judge_wand((True, "systemd: active/running"), state(UP, build="b1"), "b1").ok
    assert "not running (systemd: inactive/dead)" in health.judge_wand((False, "systemd: inactive/dead"), None, "b1").detail
    assert "no wan.json" in health.judge_wand((True, "x"), None, "b1").detail
    stale = health.judge_wand((True, "x"), state(UP, build="old"), "new")
    assert stale.ok is False and "runs build old, the installed build is new" in stale.detail
    unknown_init = health.judge_wand((None, "neither systemd nor procd (ubus) here to ask"), state(UP), "b")
    assert unknown_init.ok is False and "neither systemd nor procd" in unknown_init.detail


def test_converter_running_and_bound():
    assert health.judge_converter((True, "procd: running"), 5125, True).ok
    assert "nothing listens on its listen_port 5125" in health.judge_converter((True, "x"), 5125, False).detail
    assert health.judge_converter((False, "procd: no instance"), 5125, True).ok is False


def test_listening_reads_both_families(tmp_path):
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (tmp_path / "tcp").write_text(head + "   0: 00000000:1405 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1\n"
                                  "   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000 0 0 2\n")
    (tmp_path / "tcp6").write_text(head + "   0: 00000000000000000000000000000000:1406 "
                                   "00000000000000000000000000000000:0000 0A 0 0 0 0 0 3\n")
    assert health.listening(5125, tmp_path) and health.listening(5126, tmp_path)
    assert not health.listening(8080, tmp_path)  # established, not listening
    assert not health.listening(5125, tmp_path / "none")


def test_convert_verdicts():
    assert health.judge_convert([], [])[0].detail == "no MCP to ask"
    bad = health.Exchange("198.18.0.1", False, "198.18.0.1:5124: no answer within 5 s")
    good = health.Exchange("198.18.0.2", True, "answered", mptcp=True, rtt_ms=1.0)
    check, warnings = health.judge_convert([bad, good], ["198.18.0.1", "198.18.0.2"])
    assert check.ok and check.data["mcp"] == "198.18.0.2" and len(check.data["tried"]) == 2 and not warnings
    fallback = health.Exchange("198.18.0.2", True, "answered", mptcp=False)
    assert "fell back to plain TCP" in health.judge_convert([fallback], ["198.18.0.2"])[1][0]
    failed, _ = health.judge_convert([bad], ["198.18.0.1"])
    assert failed.ok is False and failed.detail == bad.detail


class StandIn:
    """A stand-in MCP on loopback: reads the client's message to its end, answers ``reply``
    (None: closes without a word), over MPTCP when ``mptcp``."""

    def __init__(self, reply: bytes | None, mptcp: bool = True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP if mptcp else 0)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.reply, self.received = reply, b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(5)
            while chunk := conn.recv(4096):
                self.received += chunk
            if self.reply is not None:
                conn.sendall(self.reply)

    def close(self) -> None:
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("mptcp", [True, False], ids=["mptcp", "plain-tcp-peer"])
def test_exchange_sends_info_and_reads_supported_extensions(mptcp):
    mcp = StandIn(rfc8803.supported_extensions_message([4, 8]), mptcp=mptcp)
    try:
        got = health.convert_exchange("127.0.0.1", mcp.port, 5)
    finally:
        mcp.close()
    assert mcp.received == rfc8803.info_message()
    assert got.ok and got.mptcp is mptcp and "TCP options [4, 8]" in got.detail


@pytest.mark.parametrize("reply, words", [
    (rfc8803.error_message(rfc8803.ErrorCode.NOT_AUTHORIZED), "answered Error 32 (not authorized)"),
    (None, "closed after 0 octets, no complete Convert message"),
    (bytes([2, 1, 0, 0]), "malformed Convert message"),
    (rfc8803.build([]), "answered Info without Supported TCP Extensions"),
], ids=["error", "silent-close", "bad-version", "empty-answer"])
def test_exchange_failures_say_what_came_back(reply, words):
    mcp = StandIn(reply)
    try:
        got = health.convert_exchange("127.0.0.1", mcp.port, 5)
    finally:
        mcp.close()
    assert not got.ok and words in got.detail and got.detail.startswith(f"127.0.0.1:{mcp.port}")


def test_exchange_refused_and_silent_mcp():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: the connection is refused
        refused = health.convert_exchange("127.0.0.1", port, 2)
        s.listen(1)  # listening, never accepting or answering: the timeout
        silent = health.convert_exchange("127.0.0.1", port, 0.3)
    assert not refused.ok and "Connection refused" in refused.detail
    assert not silent.ok and "no answer within 0.3 s" in silent.detail


def _args(tmp_path: Path, expect=(), wand=True, converter=True) -> argparse.Namespace:
    wan_json = tmp_path / "wan.json"
    if wand:
        (tmp_path / "wand.json").write_text(json.dumps({"host": HOST, "state_file": str(wan_json), "wans": [
            {"name": "dsl", "device": "wan1", "kind": "dsl"}, {"name": "lte", "device": "wan2", "kind": "lte"}]}))
    if converter:
        (tmp_path / "converter.json").write_text(json.dumps({"host": HOST, "lan_interfaces": ["lan0"], "mcps": [[MCP]],
                                                             "mcp_file": str(tmp_path / "mcp.json")}))
    return argparse.Namespace(wand_config=tmp_path / "wand.json", converter_config=tmp_path / "converter.json",
                              expect=list(expect), timeout=1.0, quiet=False)


@pytest.fixture
def cpe(monkeypatch, tmp_path):
    """A CPE whose services run, whose listener is bound and whose MCP answers."""
    seen = []
    monkeypatch.setattr(health, "service_running", lambda unit: (True, f"stub init: {unit} running"))
    monkeypatch.setattr(health, "listening", lambda port: port == 5125)

    def exchange(address, port, timeout):
        seen.append((address, port, timeout))
        return health.Exchange(address, True, f"{address}:{port} answered Info", mptcp=True, rtt_ms=0.5)

    monkeypatch.setattr(health, "convert_exchange", exchange)
    write_wan_state(state(UP, DOWN, build=build_id()), tmp_path / "wan.json")
    return seen


def _run(args, capsys) -> tuple[int, dict, str]:
    rc = health.main(args)
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1  # one JSON line, whatever the verdict
    return rc, json.loads(lines[0]), err


def test_healthy_cpe_is_one_json_line_and_exit_0(cpe, tmp_path, capsys):
    rc, report, err = _run(_args(tmp_path, expect=["lte=down"]), capsys)
    assert rc == 0 and report["healthy"] and report["host"] == HOST and not err
    assert set(report["checks"]) == {"wand", "wans", "mcps", "converter", "convert"}
    assert report["checks"]["convert"]["mcp"] == MCP and cpe == [(MCP, 5124, 1.0)]


def test_unhealthy_names_each_problem_and_exits_1(cpe, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(health, "listening", lambda port: False)
    rc, report, err = _run(_args(tmp_path), capsys)
    assert rc == 1 and not report["healthy"]
    assert report["problems"] == ["wans: lte is down, expected up",
                                  "converter: the converter runs (stub init: mptcp-cpe-converter running) but nothing "
                                  "listens on its listen_port 5125"]
    assert f"mptcp-cpe health: {HOST}: wans: lte is down, expected up" in err


def test_parts_not_configured_are_skipped_not_failed(cpe, tmp_path, capsys):
    rc, report, _ = _run(_args(tmp_path, expect=["lte=down"], converter=False), capsys)
    assert rc == 0 and report["checks"]["convert"]["ok"] is None
    assert "not configured here" in report["checks"]["converter"]["detail"]


def test_no_mcp_fails_mcps_and_convert(cpe, tmp_path, capsys):
    args = _args(tmp_path, expect=["lte=down"])
    raw = json.loads(args.converter_config.read_text())
    args.converter_config.write_text(json.dumps({**raw, "mcps": []}))
    rc, report, _ = _run(args, capsys)
    assert rc == 1 and report["checks"]["mcps"]["ok"] is False and report["checks"]["convert"]["detail"] == "no MCP to ask"
    assert cpe == []


@pytest.mark.parametrize("change, words", [
    (lambda a: setattr(a, "expect", ["wan9=up"]), "cpe-h: --expect: wan9 is not a WAN"),
    (lambda a: a.wand_config.write_text('{"host": "cpe-h", "wans": [{"name": "dsl", "device": "wan1", "kind": "dsl", '
                                        '"weight": 0}]}'), "cpe-h: wans[0] (dsl).weight"),
    (lambda a: a.converter_config.write_text("{not json"), "not JSON"),
    (lambda a: (a.wand_config.unlink(), a.converter_config.unlink()), "nothing of mptcp-cpe is configured here"),
    (lambda a: setattr(a, "timeout", 0), "--timeout: must be a number from 0.1 to 60 (got 0)"),
], ids=["expect", "wand-config", "converter-config", "nothing", "timeout"])
def test_cannot_run_exits_2_with_one_line(cpe, tmp_path, capsys, change, words):
    args = _args(tmp_path)
    change(args)
    rc = health.main(args)
    out, err = capsys.readouterr()
    assert rc == 2 and words in err and len(err.splitlines()) == 1
    assert json.loads(out)["healthy"] is False


def test_stale_wand_build_is_unhealthy(cpe, tmp_path, capsys):
    write_wan_state(state(UP, DOWN, build="0123456789abcdef"), tmp_path / "wan.json")
    rc, report, _ = _run(_args(tmp_path, expect=["lte=down"]), capsys)
    assert rc == 1 and "runs build 0123456789abcdef" in report["checks"]["wand"]["detail"]


def test_cli_knows_the_command():
    from mptcp_cpe.cli import build_parser

    args = build_parser("health").parse_args(["health", "--expect", "lte=down", "--timeout", "2"])
    assert args.func is health.main and args.expect == ["lte=down"] and args.timeout == 2
