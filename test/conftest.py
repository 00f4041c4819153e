"""Shared pytest wiring: fixtures for real components live in test/fixtures/ as plugins."""

from __future__ import annotations

pytest_plugins: list[str] = []
