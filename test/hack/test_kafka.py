"""hack/kafka.py's pieces that a flaky CI run pointed at, checked without starting a JVM."""

from __future__ import annotations

import uuid

import pytest
from fixtures.kafka import _hack_kafka


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 encodes to "-" as the first URL-safe base64 character: StorageTool would read such an
    # id as an option. The first draw is that one; new_cluster_id must draw again.
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x01" * 16)])
    module = _hack_kafka()
    monkeypatch.setattr(module.uuid, "uuid4", lambda: next(draws))
    cid = module.new_cluster_id()
    assert not cid.startswith("-")
    assert cid == "AQEBAQEBAQEBAQEBAQEBAQ"


def test_cluster_id_is_22_url_safe_characters() -> None:
    for _ in range(500):
        cid = _hack_kafka().new_cluster_id()
        assert len(cid) == 22
        assert set(cid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert not cid.startswith("-")
