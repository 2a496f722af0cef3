"""The C codec under AddressSanitizer and UndefinedBehaviorSanitizer: a bounded fuzz loop
(hooks/kea/tests/fuzz_codec.c) with exact-size heap buffers."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from helpers import TOP

KEA = TOP / "hooks" / "kea"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_fuzz_loop_under_asan_and_ubsan(tmp_path):
    exe = tmp_path / "fuzz_codec"
    build = subprocess.run(
        ["gcc", "-std=c99", "-g", "-O1", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-o", str(exe),
         str(KEA / "mcp_codec.c"), str(KEA / "tests" / "fuzz_codec.c")],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe), "200000"], capture_output=True, text=True, timeout=120,
                         env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1"})
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.strip() == "ok 200000"
    assert run.stderr == ""
