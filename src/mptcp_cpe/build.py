"""Which code is installed: a digest of the package's own files, so that a daemon can say
which code it runs (wand writes it into wan.json) and a role can tell whether a running
daemon predates the package it just installed. The version number alone cannot: a rebuilt
wheel of the same version carries new code."""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CODE_SUFFIXES = (".py", ".so")


def build_id(root: Path = PACKAGE) -> str:
    """16 hex digits of sha256 over every code file under ``root`` (``*.py`` and the compiled
    codec, ``*.so``), each with its path relative to ``root``, in sorted order. Byte-compiled
    caches are not code: they are left out."""
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.suffix in CODE_SUFFIXES and "__pycache__" not in p.parts and p.is_file())
    for path in files:
        rel = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        h.update(len(rel).to_bytes(4, "big") + rel + len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:16]
