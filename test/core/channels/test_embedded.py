"""EmbeddedChannel: the conformance suite, then what only a durable SQLite log must show."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.channels.embedded import EmbeddedChannel
from core.settings import EmbeddedSettings
from test.core.channels import channel_conformance as conformance


@pytest.mark.parametrize("check", conformance.CHECKS, ids=conformance.check_id)
async def test_conformance(check: conformance.Check, tmp_path: Path) -> None:
    settings = EmbeddedSettings(data_dir=tmp_path, busy_timeout=1.0)
    await check(lambda: EmbeddedChannel(settings))
