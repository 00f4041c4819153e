"""The live tail of a broker in the browser, fed by another process.

    kbroker send (second process) --> kbroker run --tail (ephemeral reader)--SSE--> browser

Events appear in the order they were appended (newest on top), each with the Triggers that match
it; a flood larger than the server's per-viewer buffer shows a visible "N dropped" instead of a
silently thinned stream.
"""

from __future__ import annotations

import re

import pytest
from e2e import knative_yaml as ky
from fixtures.subscriber import SinkServer
from playwright.async_api import Page, expect

from .conftest import Console

pytestmark = pytest.mark.asyncio(loop_scope="session")


def config(sinks: SinkServer) -> dict[str, str]:
    sink = sinks.sink("tailed")
    return {
        "broker.yaml": ky.dump(
            ky.broker(),
            ky.trigger("tailed", sink.url, attributes={"type": "com.example.tail"}),
        )
    }


async def test_tail_shows_another_process_events_in_order_then_drops_under_a_flood(
    tab: Page, console: Console
) -> None:
    await tab.goto(f"{console.ui}brokers/default/default?tab=tail")
    await expect(tab.locator("#tail-state")).to_have_text("live")
    live = tab.get_by_role("table", name="Live events")
    rows = live.get_by_test_id("tail-row")
    await expect(rows).to_have_count(0)

    send = ("--type", "com.example.tail", "--source", "/second")
    await console.kbroker_send(*send, "--mode", "batch", "--count", "5", "--id", "seq")
    await console.kbroker_send(*send, "--id", "seq-5")
    await expect(rows).to_have_count(6)
    ids = [await rows.nth(i).locator("td").nth(4).inner_text() for i in range(6)]
    # Newest first, in append order (`kbroker send` numbers a batch's events after the first).
    assert ids == ["seq-5", "seq-4", "seq-3", "seq-2", "seq-1", "seq"]
    await expect(rows.first).to_contain_text("tailed")  # matched by the Trigger
    await expect(tab.get_by_test_id("tail-dropped")).to_have_text("0 dropped")

    # One batch of 1,000 (the ingress limit per batch) against a 500-event viewer buffer.
    await console.kbroker_send(
        "--type", "com.example.flood", "--source", "/flood", "--mode", "batch",
        "--count", "1000", "--id", "flood", "--durability", "leader",
    )  # fmt: skip
    await expect(tab.get_by_test_id("tail-dropped")).to_have_text(
        re.compile(r"^[1-9]\d* dropped$"), timeout=15_000
    )
    await expect(rows.first.locator("td").nth(4)).to_have_text("flood-999")
    await expect(tab.locator("#tail-state")).to_have_text("live")
