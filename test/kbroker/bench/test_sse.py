"""The tail scenario's SSE client, and the scenario itself against a real `kbroker run`.

    TailClient --GET text/event-stream--> aiohttp server (scripted stream)
    kbroker bench tail: generator --> kbroker run --> receiver, with and without a TailClient
                                           \\--SSE--> TailClient

The client must count whole messages by event name (keep-alive comments are not messages) and
refuse an endpoint that is not an event stream; the scenario must give one off and one on step per
rate, the on step having really received the broker's events over the tail.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from kbroker import cmd_bench
from kbroker.bench import sse


async def _server(handler: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/-/ui/api/brokers/{ns}/{name}/tail", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_counts_messages_by_event_name_and_ignores_keep_alives() -> None:
    sent = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        assert request.match_info["ns"] == "bench"
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b": keep-alive\n\n")
        await resp.write(b'data: {"id": "1"}\n\n')
        await resp.write(b'event: event\ndata: {"id": "2"}\n\n')
        await resp.write(b'event: dropped\ndata: {"dropped": 3}\n\n')
        await resp.write(b"data: a\r\ndata: b\r\n\r\n")  # one message over two data lines, CRLF
        sent.set()
        await asyncio.sleep(30)  # the stream stays open, as the console's does
        return resp

    runner, base = await _server(stream)
    try:
        client = sse.TailClient(base, "bench", "bench")
        await client.start()
        await asyncio.wait_for(sent.wait(), 5)
        for _ in range(100):
            if client.counts.messages == 4:
                break
            await asyncio.sleep(0.02)
        counts = await client.stop()
    finally:
        await runner.cleanup()
    assert counts.by_event == {"message": 2, "event": 1, "dropped": 1}
    assert counts.bytes > 0


async def test_an_endpoint_that_is_not_an_event_stream_is_an_error() -> None:
    async def not_sse(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": "broker bench/bench is not in the configuration"}, status=404
        )

    runner, base = await _server(not_sse)
    try:
        with pytest.raises(sse.TailError, match="404"):
            await sse.TailClient(base, "bench", "bench").start()
    finally:
        await runner.cleanup()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_tail_scenario_compares_steps_without_and_with_a_live_tail(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = cmd_bench.main(["bench", "tail", "--rate", "100", "--duration", "1", "--json", str(out)])
    assert code == 0
    sc = orjson.loads(out.read_bytes())["scenarios"][0]
    assert sc["skipped"] is None, sc["skipped"]
    off, on = sc["steps"]
    assert (off["extra"]["tail"], on["extra"]["tail"]) == ("off", "on")
    for step in (off, on):
        assert step["accepted"] == step["delivered"] == 100
        assert step["missing"] == 0
    assert "tail_messages" not in off["extra"]
    # The open tail really carried the step's events (plus any notices such as drops).
    assert sum(on["extra"]["tail_messages"].values()) >= 100, on["extra"]
    (compared,) = sc["facts"]["compared"]
    assert compared["rate"] == 100
    assert compared["throughput_ratio"] > 0
    assert compared["server_cpu_s_per_event_on"] > 0
