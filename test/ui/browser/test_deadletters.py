"""Why was my event not delivered, and getting it delivered: retries, the dead letter, redrive.

    kbroker send --> default --> Trigger "flaky" --> subscriber (answers 500)
                                        \\--retries exhausted--> Broker "dead-letters" (DLS)
    browser: Trigger page (retries rise) -> dead letters (knativeerrorcode) -> inspector
             -> targeted redrive --> the now healthy subscriber, exactly once

The dead-letter sink is a kbroker Broker named by a plain Knative ref, so the console can list
what it holds; redrive delivers to that one Trigger's subscriber only, with the same event id.
"""

from __future__ import annotations

import re
import time

import pytest
from e2e import knative_yaml as ky
from fixtures.broker import make_event
from fixtures.subscriber import SinkServer
from playwright.async_api import Locator, Page, expect

from .conftest import Console

pytestmark = pytest.mark.asyncio(loop_scope="session")

DLS_REF = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "dead-letters"}


def config(sinks: SinkServer) -> dict[str, str]:
    sink = sinks.sink("flaky", status=500)
    # Linear backoff 1 s, 2 s: the page is looked at while the third attempt is still due.
    delivery = {
        "retry": 2,
        "backoffPolicy": "linear",
        "backoffDelay": "PT1S",
        "deadLetterSink": {"ref": DLS_REF},
    }
    return {
        "brokers.yaml": ky.dump(ky.broker(), ky.broker("dead-letters")),
        "flaky.yaml": ky.dump(
            ky.trigger(
                "flaky", sink.url, attributes={"type": "com.example.flaky"}, delivery=delivery
            )
        ),
    }


async def reload_until_visible(page: Page, target: Locator) -> None:
    """Reload until `target` is there: these pages show records as of when they rendered."""
    deadline = time.monotonic() + 20
    while True:
        try:
            await expect(target).to_be_visible(timeout=500)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await page.reload()


async def test_failing_subscriber_dead_letter_then_targeted_redrive_received_once(
    tab: Page, console: Console
) -> None:
    sink = console.sinks.sinks["flaky"]
    await console.kbroker_send("--type", "com.example.flaky", "--source", "/t", "--id", "doomed-1")
    await sink.wait_for(2, timeout=15)  # the first attempt and the first retry failed

    await tab.goto(f"{console.ui}triggers/default/flaky")
    await expect(tab.get_by_text(re.compile(r"1 event\(s\) waiting for a retry"))).to_be_visible()
    counters = tab.get_by_role("table", name="Delivery counters")
    await sink.wait_for(3, timeout=15)  # the last retry failed too: retries exhausted
    # Window, Matched, Delivered, Retries, Dead-lettered: 1 matched, 0 delivered, 2 retries, 1 DL.
    last_minute = counters.get_by_role("row", name=re.compile(r"^1m 1 0 2 1 "))
    await reload_until_visible(tab, last_minute)
    failure = tab.get_by_role("region", name="Last failure")
    await expect(failure).to_contain_text("doomed-1")
    await expect(failure).to_contain_text("Subscriber's last answer: 500")
    await expect(failure).to_contain_text("Then the dead-letter sink answered 202")

    await tab.goto(f"{console.ui}brokers/default/dead-letters?tab=deadletters")
    letters = tab.get_by_role("table", name="Dead letters")
    row = letters.get_by_role("row").filter(has_text="doomed-1")
    await reload_until_visible(tab, row)
    codes = await row.get_by_role("cell").all_inner_texts()
    # Select, Stored, id, type, Failed trigger, Code (knativeerrorcode, decoded), Attempts, Answer
    assert codes[2:6] == ["doomed-1", "com.example.flaky", "default/flaky", "500"], codes
    assert codes[6] == "3", codes  # attempts, joined from the dispatcher's records
    await row.get_by_role("link", name="doomed-1").click()
    attrs = tab.get_by_role("table", name="Event attributes")
    await expect(attrs.get_by_role("row", name=re.compile("^knativeerrorcode"))).to_contain_text(
        "500"
    )
    await expect(attrs.get_by_role("row", name=re.compile("^knativeerrordest"))).to_contain_text(
        sink.url
    )

    sink.status = 200  # the subscriber is fixed
    await tab.go_back()
    await tab.get_by_role("checkbox", name="Select dead letter doomed-1").check()
    await tab.get_by_label("Redrive to the subscriber of trigger").select_option("default/flaky")
    await tab.get_by_role("button", name="Redrive selected").click()
    result = tab.locator("#redrive-result")
    await expect(result).to_contain_text("Redriven: 1 event(s).")
    await expect(result).to_contain_text("doomed-1")
    await expect(result).to_contain_text("delivered")

    # A later event through the Trigger marks the end: nothing else arrived before it.
    await console.broker.send(make_event("after-1", type="com.example.flaky"))
    await sink.wait_for(5, timeout=15)
    assert sink.ids() == ["doomed-1"] * 4 + ["after-1"]
    redriven = sink.received[3]
    assert "ce-knativeerrorcode" not in redriven.headers  # delivered as the original event
