"""Non-ASCII attribute values through the real process: ingress -> log -> dispatcher -> a real
subscriber. ce- headers are percent-encoded on the wire and must arrive exactly as sent; a
non-ASCII datacontenttype (it travels raw, as Content-Type) is not a media type and is refused with
400 at ingress in either content mode, so the broker never accepts what it could not deliver.

    producer --binary/structured--> kbroker run --binary--> sink (sees the same attributes)
"""

from __future__ import annotations

import orjson
from e2e import knative_yaml as ky
from fixtures.broker import StartBroker, make_event
from fixtures.subscriber import SinkServer

UNICODE = 'héllo wörld € 日本 "q" 100%'


async def test_unicode_attributes_round_trip_and_non_ascii_content_type_is_refused(
    start_broker: StartBroker, sinks: SinkServer
) -> None:
    sink = sinks.sink("s")
    proc = await start_broker({"o.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url))})
    await proc.wait_ready_object("Trigger", "t")
    url = proc.broker_url()

    refused: list[tuple[list[tuple[bytes, bytes]], bytes]] = [
        (  # binary: Content-Type bytes in UTF-8
            [
                (b"ce-specversion", b"1.0"),
                (b"ce-id", b"bad-1"),
                (b"ce-source", b"/s"),
                (b"ce-type", b"t"),
                (b"content-type", "text/plain; charset=ü".encode()),
            ],
            b"x",
        ),
        (  # structured: the attribute in JSON
            [(b"content-type", b"application/cloudevents+json")],
            orjson.dumps(
                {
                    "specversion": "1.0",
                    "id": "bad-2",
                    "source": "/s",
                    "type": "t",
                    "datacontenttype": "text/plain; charset=€",
                    "data": "x",
                }
            ),
        ),
    ]
    for headers, body in refused:
        resp = await proc.client.post(url, headers=headers, content=body)
        assert resp.status_code == 400, resp.text
        assert "datacontenttype" in resp.text

    binary = make_event("u-1", subject=UNICODE, myext=UNICODE)
    structured = make_event("u-2", source="/ü/€", myext="ünïcode")
    assert (await proc.send(binary)).status_code == 202
    assert (await proc.send(structured, mode="structured")).status_code == 202
    got = {e.id: e for e in await sink.wait_for(2)}
    assert got["u-1"].attributes["subject"] == UNICODE
    assert got["u-1"].attributes["myext"] == UNICODE
    assert got["u-2"].attributes["source"] == "/ü/€"
    assert got["u-2"].attributes["myext"] == "ünïcode"
    assert sorted(r.event.id for r in sink.received if r.event) == ["u-1", "u-2"]
