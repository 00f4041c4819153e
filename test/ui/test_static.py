"""The vendored htmx is exactly the published file: its checksum and licence are checked."""

from __future__ import annotations

import hashlib
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[2] / "ui" / "static" / "vendor"


def test_htmx_matches_its_recorded_checksum() -> None:
    recorded, name, version = (VENDOR / "htmx.sha256").read_text().split()
    assert name == "htmx.min.js"
    assert version.startswith("htmx.org@2.")
    assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == recorded


def test_htmx_ships_with_its_licence() -> None:
    assert "Zero-Clause BSD" in (VENDOR / "htmx.LICENSE").read_text()


def test_our_own_script_stays_small() -> None:
    script = VENDOR.parent / "console.js"
    assert len(script.read_text().splitlines()) <= 200
