"""Shared pytest wiring: fixtures for real components live in test/fixtures/ as plugins."""

from __future__ import annotations

from pathlib import Path

# Every module in test/fixtures/ is a plugin (real subscribers, the kbroker process, Kafka, the
# Kubernetes API server); listing the folder keeps this file out of every fixture change.
pytest_plugins = sorted(
    f"fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if not p.stem.startswith("_")
)
