"""A broker's events in the console: the filter tester on real recent or pasted events, and the
live tail.

    test --20 events--> kbroker run (log keeps them) <--recent events-- console tester
    console form --create, start from earliest--> Trigger --replays the log--> subscriber
    kbroker send (second process) --> kbroker run --tail (ephemeral reader)--SSE--> browser

"matches K of 20" is the console's promise that K is what the dispatcher delivers: the Trigger
created from the same form with start position `earliest` replays those 20 events, and the
subscriber must receive exactly those K. A pasted event that fails shows which attribute failed.
The live tail shows events in the order they were appended (newest on top) with the Triggers
matching each; a flood larger than the server's per-viewer buffer shows "N dropped" instead of a
silently thinned stream.
"""

from __future__ import annotations

import json
import re

import pytest
from e2e import knative_yaml as ky
from fixtures.broker import make_event
from fixtures.subscriber import SinkServer
from playwright.async_api import Page, expect

from .conftest import Console

pytestmark = pytest.mark.asyncio(loop_scope="session")


def config(sinks: SinkServer) -> dict[str, str]:
    sinks.sink("replay")
    tailed = sinks.sink("tailed")
    return {
        "brokers.yaml": ky.dump(
            ky.broker(),
            ky.broker("tester"),
            ky.trigger("tailed", tailed.url, attributes={"type": "com.example.tail"}),
        )
    }


async def test_matches_k_of_20_is_what_the_dispatcher_then_delivers(
    tab: Page, console: Console
) -> None:
    sink = console.sinks.sinks["replay"]
    expected = []
    for i in range(20):
        kind = "com.example.match" if i % 3 == 0 else "com.example.other"
        if kind == "com.example.match":
            expected.append(f"r{i}")
        resp = await console.broker.send(make_event(f"r{i}", type=kind), broker="tester")
        assert resp.status_code == 202

    await tab.goto(f"{console.ui}triggers/new")
    await tab.get_by_label("Broker", exact=True).select_option("default/tester")
    await tab.get_by_label("Name", exact=True).fill("replayed")
    await tab.get_by_role("radio", name="Attributes (exact)").check()
    await tab.get_by_label("Attribute 1", exact=True).fill("type")
    await tab.get_by_label("Value 1", exact=True).fill("com.example.match")
    await tab.get_by_label("Subscriber (URI or Kind/name)").fill(sink.url)
    await tab.get_by_role("button", name="Test filter").click()
    summary = tab.get_by_test_id("test-summary")
    await expect(summary).to_have_text(re.compile(r"matches \d+ of 20"))
    k = int(re.findall(r"matches (\d+) of", await summary.inner_text())[0])
    rows = tab.get_by_role("table", name="Test results").get_by_role("row")
    await expect(rows).to_have_count(21)  # header + one row per event
    await expect(rows.filter(has_text="✓ matches")).to_have_count(k)

    await tab.get_by_text("Advanced (kbroker annotations)").click()
    await tab.get_by_label("Start from").select_option("earliest")
    await tab.get_by_role("button", name="Create trigger").click()
    await expect(tab).to_have_url(re.compile(r"/-/ui/triggers/default/replayed$"))
    await console.broker.wait_ready_object("Trigger", "replayed")
    # The replay first, then a sentinel sent now: whatever arrives before it is the replay.
    await console.broker.send(make_event("sentinel", type="com.example.match"), broker="tester")
    await sink.wait_for(k + 1, timeout=20)
    assert sink.ids()[-1] == "sentinel"
    assert sorted(sink.ids()[:-1]) == sorted(expected)
    assert k == len(expected) == 7


async def test_a_pasted_event_explains_which_attribute_failed(tab: Page, console: Console) -> None:
    await tab.goto(f"{console.ui}playground")
    await expect(tab.get_by_role("heading", name="Filter playground")).to_be_visible()
    await tab.get_by_label("Broker", exact=True).select_option("default/default")
    await tab.get_by_role("radio", name="Filters (exact/prefix/suffix/any/not)").check()
    await tab.get_by_label("Match").select_option("all")
    await tab.get_by_label("Test 1", exact=True).select_option("exact")
    await tab.get_by_label("Attribute of test 1", exact=True).fill("type")
    await tab.get_by_label("Value of test 1", exact=True).fill("com.example.order")
    await tab.get_by_label("Test 2", exact=True).select_option("prefix")
    await tab.get_by_label("Attribute of test 2", exact=True).fill("source")
    await tab.get_by_label("Value of test 2", exact=True).fill("/shop")
    pasted = {
        "specversion": "1.0",
        "id": "p-1",
        "source": "/bank/eu",
        "type": "com.example.order",
        "datacontenttype": "application/json",
        "data": {"total": 42},
    }
    await tab.get_by_label(re.compile("^Paste an event")).fill(json.dumps(pasted))
    await tab.get_by_role("button", name="Test filter").click()
    await expect(tab.get_by_test_id("test-summary")).to_have_text("matches 0 of 1")
    row = tab.get_by_role("table", name="Test results").get_by_role("row").filter(has_text="p-1")
    await expect(row).to_contain_text("✗ no match")
    await row.get_by_text("Explain").click()
    failed = row.get_by_role("listitem").filter(has=tab.get_by_label("not matched", exact=True))
    leaf = failed.filter(has_text="source").last
    await expect(leaf).to_contain_text("source = '/bank/eu' expected prefix '/shop'")
    passed = row.get_by_role("listitem").filter(has=tab.get_by_label("matched", exact=True))
    await expect(passed.filter(has_text="type = 'com.example.order'").last).to_be_visible()


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
