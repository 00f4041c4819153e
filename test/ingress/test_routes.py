"""Ingress answers, request by request (cloudevents.md §7), on the ASGI app with a fake channel."""

from __future__ import annotations

import datetime
import random
import re
from collections.abc import AsyncIterator, Sequence

import httpx
import orjson
import pytest
from kbroker.core import contract
from kbroker.core.channel import ChannelFull, ChannelUnavailable, Envelope
from kbroker.core.channels.memory import MemoryChannel
from kbroker.core.contract_source import ContractHolder
from kbroker.core.settings import IngressSettings
from kbroker.ingress.app import build_app
from kbroker.ingress.routes import ArrivalClock

BROKER = contract.Broker("ns", "b", "uid", "http://x/ns/b", channel="memory")
BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "1",
    "ce-source": "/s",
    "ce-type": "t",
    "content-type": "application/json",
}


class RecordingChannel(MemoryChannel):
    def __init__(self) -> None:
        super().__init__()
        self.name = "memory"
        self.appends: list[tuple[list[Envelope], contract.Durability]] = []
        self.fail: Exception | None = None

    async def append(
        self,
        broker: contract.Broker,
        envelopes: Sequence[Envelope],
        durability: contract.Durability,
    ) -> None:
        if self.fail is not None:
            raise self.fail
        self.appends.append((list(envelopes), durability))
        await super().append(broker, envelopes, durability)


async def _ready() -> tuple[bool, str]:
    return True, "ok"


@pytest.fixture
async def setup() -> AsyncIterator[tuple[httpx.AsyncClient, RecordingChannel]]:
    channel = RecordingChannel()
    holder = ContractHolder(contract.Contract(1, (BROKER,)))
    settings = IngressSettings()
    app = build_app(settings, {"memory": channel}, holder, _ready)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c, channel


async def test_binary_accepted(setup) -> None:  # type: ignore[no-untyped-def]
    client, channel = setup
    resp = await client.post("/ns/b", headers=BINARY, content=b'{"a":1}')
    assert resp.status_code == 202
    ((envs, durability),) = channel.appends
    ev = envs[0].event
    assert ev.id == "1" and ev.data == b'{"a":1}'
    assert ev.attributes["knativebrokerttl"] == "255"
    assert "knativearrivaltime" in ev.attributes
    assert durability is contract.Durability.ALL


async def test_trailing_slash(setup) -> None:  # type: ignore[no-untyped-def]
    client, _ = setup
    assert (await client.post("/ns/b/", headers=BINARY, content=b"{}")).status_code == 202


async def test_structured_and_batch(setup) -> None:  # type: ignore[no-untyped-def]
    client, channel = setup
    one = {"specversion": "1.0", "id": "s1", "source": "/s", "type": "t", "data": {"x": 1}}
    resp = await client.post(
        "/ns/b", content=orjson.dumps(one), headers={"content-type": "application/cloudevents+json"}
    )
    assert resp.status_code == 202
    batch = [dict(one, id=f"b{i}") for i in range(3)]
    resp = await client.post(
        "/ns/b",
        content=orjson.dumps(batch),
        headers={"content-type": "application/cloudevents-batch+json"},
    )
    assert resp.status_code == 202
    assert [e.event.id for e in channel.appends[1][0]] == ["b0", "b1", "b2"]


async def test_batch_error_names_index_and_stores_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    client, channel = setup
    good = {"specversion": "1.0", "id": "g", "source": "/s", "type": "t"}
    bad = {"specversion": "1.0", "id": "b", "source": "/s"}
    resp = await client.post(
        "/ns/b",
        content=orjson.dumps([good, bad]),
        headers={"content-type": "application/cloudevents-batch+json"},
    )
    assert resp.status_code == 400
    assert "1" in resp.text and "type" in resp.text
    assert channel.appends == []


@pytest.mark.parametrize("missing", ["ce-id", "ce-source", "ce-type", "ce-specversion"])
async def test_missing_required_attribute(setup, missing: str) -> None:  # type: ignore[no-untyped-def]
    client, channel = setup
    headers = {k: v for k, v in BINARY.items() if k != missing}
    resp = await client.post("/ns/b", headers=headers, content=b"{}")
    assert resp.status_code == 400
    assert channel.appends == []


async def test_unknown_broker_404(setup) -> None:  # type: ignore[no-untyped-def]
    client, _ = setup
    resp = await client.post("/ns/nope", headers=BINARY, content=b"{}")
    assert resp.status_code == 404 and "ns/nope" in resp.text


async def test_get_is_405_with_allow(setup) -> None:  # type: ignore[no-untyped-def]
    client, _ = setup
    resp = await client.get("/ns/b")
    assert resp.status_code == 405
    assert "POST" in resp.headers["allow"]


async def test_options_probe(setup) -> None:  # type: ignore[no-untyped-def]
    client, _ = setup
    resp = await client.options("/ns/b")
    assert resp.status_code == 200
    assert resp.headers["webhook-allowed-origin"] == "*"


async def test_durability_header(setup) -> None:  # type: ignore[no-untyped-def]
    client, channel = setup
    resp = await client.post("/ns/b", headers={**BINARY, "Kbroker-Durability": "none"}, content=b"")
    assert resp.status_code == 202
    assert channel.appends[0][1] is contract.Durability.NONE
    resp = await client.post("/ns/b", headers={**BINARY, "Kbroker-Durability": "fast"}, content=b"")
    assert resp.status_code == 400 and "Kbroker-Durability" in resp.text


async def test_ttl_exhausted_is_rejected(setup) -> None:  # type: ignore[no-untyped-def]
    client, channel = setup
    resp = await client.post("/ns/b", headers={**BINARY, "ce-knativebrokerttl": "0"}, content=b"")
    assert resp.status_code == 400 and "knativebrokerttl" in resp.text
    resp = await client.post("/ns/b", headers={**BINARY, "ce-knativebrokerttl": "5"}, content=b"")
    assert resp.status_code == 202
    assert channel.appends[0][0][0].event.attributes["knativebrokerttl"] == "5"


async def test_too_large_by_content_length(setup) -> None:  # type: ignore[no-untyped-def]
    client, _ = setup
    body = b"x" * (2 * 1024 * 1024)
    resp = await client.post("/ns/b", headers=BINARY, content=body)
    assert resp.status_code == 413


async def test_unsupported_format_415(setup) -> None:  # type: ignore[no-untyped-def]
    client, _ = setup
    resp = await client.post(
        "/ns/b", headers={"content-type": "application/cloudevents+avro"}, content=b"\x00"
    )
    assert resp.status_code == 415


async def test_malformed_json_400(setup) -> None:  # type: ignore[no-untyped-def]
    client, _ = setup
    resp = await client.post(
        "/ns/b", headers={"content-type": "application/cloudevents+json"}, content=b"{not json"
    )
    assert resp.status_code == 400


async def test_channel_unavailable_503_with_retry_after(setup) -> None:  # type: ignore[no-untyped-def]
    client, channel = setup
    channel.fail = ChannelUnavailable("down")
    resp = await client.post("/ns/b", headers=BINARY, content=b"{}")
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1"


async def test_channel_full_507(setup) -> None:  # type: ignore[no-untyped-def]
    client, channel = setup
    channel.fail = ChannelFull("disk")
    resp = await client.post("/ns/b", headers=BINARY, content=b"{}")
    assert resp.status_code == 507


async def test_health_endpoints(setup) -> None:  # type: ignore[no-untyped-def]
    client, _ = setup
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.post("/", content=b"")).status_code == 404


def test_arrival_clock_matches_datetime_across_seconds() -> None:
    clock = ArrivalClock()
    rng = random.Random(7)
    epochs = sorted(1_795_000_000 + rng.random() * 5 for _ in range(500))  # spans 5 seconds
    epochs += [1_795_000_010.0, 1_795_000_010.999999, 946_684_799.5]  # .0, just below, 1999
    for epoch in epochs:
        text = clock.format(epoch)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text), text
        ours = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        want = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
        assert abs((ours - want).total_seconds()) <= 1e-6, (epoch, text, want)
