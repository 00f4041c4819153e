"""A Sequence is one trace: every channel, step and reply hop exported over OTLP by `kbroker run`.

producer --> channel:seq-0 --> subscription:seq-0 --send--> step 0 --reply--> channel:seq-1
             --> subscription:seq-1 --send--> step 1 --reply--> final sink
"""

from __future__ import annotations

from e2e import flows_yaml as fy
from e2e import knative_yaml as ky
from fixtures.broker import StartBroker
from fixtures.otlp import OtlpReceiver
from fixtures.subscriber import SinkServer
from kbroker.core import events

NS = "traced"


async def test_a_sequence_is_one_trace_through_every_step(
    start_broker: StartBroker, sinks: SinkServer, otlp_receiver: OtlpReceiver
) -> None:
    steps = [fy.uri(sinks.sink(f"t{i}", reply=fy.appender(f"-{i}")).url) for i in (0, 1)]
    out = sinks.sink("out")
    flow = fy.sequence("tr", NS, steps, fy.TEMPLATES["embedded"], fy.uri(out.url))
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    proc = await start_broker({"seq.yaml": ky.dump(flow)}, env=env)
    url = (await fy.wait_ready(proc, "Sequence", "tr", NS))["status"]["address"]["url"]
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers, body = events.encode_binary(fy.text_event("t-1", "x"))
    resp = await proc.client.post(
        url, content=body, headers=[*headers, ("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01")]
    )
    assert resp.status_code == 202
    [final] = await out.wait_for(1)
    assert final.data == b"x-0-1"
    spans = await otlp_receiver.wait_for(8)
    assert {s.trace_id for s in spans} == {trace_id}
    by_name = {s.name: s for s in spans}
    base = url.rsplit("/", 1)[0]
    chain = [
        ("channel:tr-kn-sequence-0.traced", "SERVER"),
        ("subscription:tr-kn-sequence-0.traced", "CONSUMER"),
        (f"send {steps[0]['uri']}", "CLIENT"),
        (f"reply {base}/tr-kn-sequence-1", "CLIENT"),
        ("channel:tr-kn-sequence-1.traced", "SERVER"),
        ("subscription:tr-kn-sequence-1.traced", "CONSUMER"),
        (f"send {steps[1]['uri']}", "CLIENT"),
        (f"reply {out.url}", "CLIENT"),
    ]
    parent = "00f067aa0ba902b7"  # the producer's span
    for name, kind in chain:
        span = by_name[name]
        assert (span.kind, span.parent_span_id) == (kind, parent), name
        parent = span.span_id
    # The final reply sink is called with the last reply span's context.
    assert out.received[0].headers["traceparent"] == f"00-{trace_id}-{parent}-01"
