"""Every console page at 1280x800, the README's screenshots, and the dead-letter flow.

    browser --GET /-/ui/...--> kbroker run (this module's) --> subscribers (loopback)
    send --> default --> Trigger "doomed" --> subscriber (answers 500)
                                 \--retries exhausted--> Broker "dead-letters" (the DLS)

Each page must render without a console error, fit the 1280 px viewport without horizontal
scrolling, name its main heading, and give every form control an accessible name (what screen
readers announce, and what these tests find controls by). The tour test then saves a PNG of each
page: into docs/, the pictures the README's console section shows, with KBROKER_UI_SCREENSHOTS=docs
(ports and times differ on every run, so by default they go to test-results/screenshots/ and the
checkout stays clean).

Last, "why was my event not delivered, and getting it delivered": the Trigger page shows the
retries, the dead-letter Broker (a plain Knative ref, so the console can list what it holds) shows
the event with its knativeerrorcode, and a targeted redrive delivers it to that one Trigger's
subscriber, exactly once, with the same id. (Tests run in file order: the tour's counts come
before this test's events.)
"""

from __future__ import annotations

import os
import re
import time

import pytest
from e2e import knative_yaml as ky
from fixtures.broker import make_event
from fixtures.subscriber import SinkServer
from playwright.async_api import Locator, Page, expect

from .conftest import REPO, Console

pytestmark = pytest.mark.asyncio(loop_scope="session")

SHOTS = REPO / (
    "docs" if os.environ.get("KBROKER_UI_SCREENSHOTS") == "docs" else "test-results/screenshots"
)
DLS_REF = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "dead-letters"}

# Every page and Broker tab, with its main heading.
PAGES = [
    ("", "Brokers"),
    *(
        (f"brokers/default/default?tab={tab}", "Broker default/default")
        for tab in ("topology", "triggers", "events", "deadletters", "tail", "send")
    ),
    ("brokers/default/dead-letters?tab=deadletters", "Broker default/dead-letters"),
    ("triggers/default/orders", "Trigger default/orders"),
    ("triggers/default/flaky", "Trigger default/flaky"),
    ("triggers/new?broker=default/default", "New trigger"),
    ("triggers/default/orders/edit", "Edit trigger default/orders"),
    ("events/default/default/order-1", "Event order-1 on default/default"),
    ("playground", "Filter playground"),
]

# Form controls without a name a screen reader could announce (labels, aria-label(ledby),
# or a button's own text).
UNNAMED_CONTROLS = """() => [...document.querySelectorAll("input, select, textarea, button")]
  .filter((el) => el.type !== "hidden")
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
    && !el.getAttribute("aria-labelledby") && !(el.tagName === "BUTTON" && el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 120))"""


# The innermost elements reaching past the viewport's right edge, to say what overflows.
WIDEST = """() => [...document.querySelectorAll("main *")]
  .filter((el) => el.getBoundingClientRect().right > document.documentElement.clientWidth)
  .filter((el) => ![...el.children].some((c) => c.getBoundingClientRect().right >
    document.documentElement.clientWidth))
  .slice(0, 5).map((el) => el.outerHTML.slice(0, 160))"""


def config(sinks: SinkServer) -> dict[str, str]:
    shop, bank, flaky = sinks.sink("shop"), sinks.sink("bank"), sinks.sink("flaky", status=500)
    doomed = sinks.sink("doomed", status=500)
    # Linear backoff 1 s, 2 s: the page is looked at while the third attempt is still due.
    slow = {
        "retry": 2,
        "backoffPolicy": "linear",
        "backoffDelay": "PT1S",
        "deadLetterSink": {"ref": DLS_REF},
    }
    default = ky.broker(delivery={"deadLetterSink": {"ref": DLS_REF}})
    quick = {
        "retry": 1,
        "backoffPolicy": "linear",
        "backoffDelay": "PT0.1S",
        "deadLetterSink": {"ref": DLS_REF},
    }
    return {
        "brokers.yaml": ky.dump(default, ky.broker("dead-letters")),
        "triggers.yaml": ky.dump(
            ky.trigger("orders", shop.url, attributes={"type": "com.example.order.created"}),
            ky.trigger(
                "payments", bank.url, filters=[{"prefix": {"type": "com.example.payment."}}]
            ),
            ky.trigger(
                "big-orders",
                shop.url,
                filters=[{"cesql": "type = 'com.example.order.created' AND total > 100"}],
            ),
            ky.trigger(
                "flaky", flaky.url, attributes={"type": "com.example.flaky"}, delivery=quick
            ),
            ky.trigger(
                "doomed", doomed.url, attributes={"type": "com.example.doomed"}, delivery=slow
            ),
        ),
        # A second broker whose trigger has no dead-letter sink: a problem, shown first.
        "risky.yaml": ky.dump(ky.broker("risky"), ky.trigger("no-dls", shop.url, broker="risky")),
    }


@pytest.fixture(scope="module")
def tour_events() -> list[tuple[str, str, str, str]]:
    """(id, type, source, total) of the events the tour sends before looking."""
    out = [(f"order-{i}", "com.example.order.created", "/shop", str(40 * i)) for i in range(1, 6)]
    out += [(f"pay-{i}", "com.example.payment.received", "/bank", "10") for i in range(1, 4)]
    return [*out, ("flaky-1", "com.example.flaky", "/tour", "0")]


async def send_tour_events(console: Console, events: list[tuple[str, str, str, str]]) -> None:
    for id_, type_, source, total in events:
        ev = make_event(id_, type=type_, source=source, data=b'{"total": %s}' % total.encode())
        ev.attributes["total"] = int(total)
        resp = await console.broker.send(ev)
        assert resp.status_code == 202, resp.text
    # The flaky event's retries run out and it is dead-lettered before the pages are looked at.
    await console.sinks.sinks["flaky"].wait_for(2, timeout=15)
    await console.broker.until(
        lambda: _dead_lettered(console), 15, "flaky-1 never reached the dead-letter Broker"
    )


async def _dead_lettered(console: Console) -> bool:
    resp = await console.broker.client.get(f"{console.ui}api/deadletters/default/dead-letters")
    return resp.status_code == 200 and "flaky-1" in resp.text


async def fits_viewport(page: Page) -> None:
    """No horizontal scrolling at the page's viewport width."""
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    wide = await page.evaluate(WIDEST)
    assert overflow <= 0, f"{page.url} is {overflow}px wider than the viewport: {wide}"


async def test_overview_lists_problem_brokers_first(tab: Page, console: Console) -> None:
    await tab.goto(console.ui)
    await expect(tab.get_by_role("heading", name="Brokers", level=1)).to_be_visible()
    cards = tab.get_by_role("heading", level=2)
    await expect(cards).to_have_count(3)
    await expect(cards.first).to_have_text("default/risky")
    problems = tab.get_by_role("list", name="Problems of default/risky")
    await expect(problems).to_contain_text("without a dead-letter sink: no-dls")
    await expect(tab.get_by_role("list", name="Problems of default/default")).to_have_count(0)


async def test_every_page_fits_1280x800_and_names_its_controls(
    tab: Page, console: Console, tour_events: list[tuple[str, str, str, str]]
) -> None:
    await send_tour_events(console, tour_events)
    for path, heading in PAGES:
        await tab.goto(console.ui + path)
        await expect(tab.get_by_role("heading", name=heading, level=1)).to_be_visible()
        await fits_viewport(tab)
        unnamed = await tab.evaluate(UNNAMED_CONTROLS)
        assert unnamed == [], f"{path}: controls without an accessible name: {unnamed}"


async def shoot(page: Page, name: str, full_page: bool = False) -> None:
    await fits_viewport(page)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(SHOTS / name), full_page=full_page)
    assert (SHOTS / name).stat().st_size > 10_000


async def test_tour_writes_the_readme_screenshots(tab: Page, console: Console) -> None:
    """Runs after the test above in this module (its events are on the broker)."""
    await tab.goto(console.ui)
    await shoot(tab, "console-overview.png")

    await tab.goto(f"{console.ui}brokers/default/default?tab=topology")
    await expect(tab.get_by_role("region", name="Topology")).to_contain_text("big-orders")
    await shoot(tab, "console-broker.png")

    await tab.goto(f"{console.ui}triggers/new?broker=default/default")
    await tab.get_by_label("Name", exact=True).fill("large-orders")
    await tab.get_by_role("radio", name="CESQL expression").check()
    await tab.get_by_role("textbox", name="CESQL expression").press_sequentially(
        "type LIKE 'com.example.order.%' AND total >= 120"
    )
    await expect(tab.locator("#cesql-check")).to_contain_text("Valid CESQL.")
    await tab.get_by_label("Subscriber (URI or Kind/name)").fill("http://127.0.0.1:8099/orders")
    await tab.get_by_role("button", name="Test filter").click()
    await expect(tab.get_by_test_id("test-summary")).to_have_text("matches 3 of 9")
    await shoot(tab, "console-trigger-new.png")

    await tab.goto(f"{console.ui}triggers/default/flaky")
    await expect(tab.get_by_role("region", name="Last failure")).to_contain_text("flaky-1")
    await shoot(tab, "console-trigger.png")

    await tab.goto(f"{console.ui}events/default/default/flaky-1")
    await expect(tab.get_by_role("region", name="Trigger flaky")).to_contain_text("dead-lettered")
    # A CESQL filter's value as CESQL writes it, not as Python prints it.
    await expect(tab.get_by_role("region", name="Trigger big-orders")).to_contain_text(
        "(value: false)"
    )
    await shoot(tab, "console-inspector.png", full_page=True)

    await tab.goto(f"{console.ui}brokers/default/dead-letters?tab=deadletters")
    await expect(tab.get_by_role("table", name="Dead letters")).to_contain_text("flaky-1")
    await shoot(tab, "console-deadletters.png")

    await tab.goto(f"{console.ui}brokers/default/default?tab=tail")
    await expect(tab.locator("#tail-state")).to_have_text("live")
    for i in range(1, 4):
        ev = make_event(f"live-{i}", type="com.example.order.created", source="/shop")
        ev.attributes["total"] = 70 * i
        await console.broker.send(ev)
    rows = tab.get_by_role("table", name="Live events").get_by_test_id("tail-row")
    await expect(rows).to_have_count(3)
    await expect(rows.first).to_contain_text(re.compile("orders"))
    await shoot(tab, "console-tail.png")


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
    sink = console.sinks.sinks["doomed"]
    await console.broker.send(make_event("doomed-1", type="com.example.doomed"))
    await sink.wait_for(2, timeout=15)  # the first attempt and the first retry failed

    await tab.goto(f"{console.ui}triggers/default/doomed")
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
    assert codes[2:6] == ["doomed-1", "com.example.doomed", "default/doomed", "500"], codes
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
    await tab.get_by_label("Redrive to the subscriber of trigger").select_option("default/doomed")
    await tab.get_by_role("button", name="Redrive selected").click()
    result = tab.locator("#redrive-result")
    await expect(result).to_contain_text("Redriven: 1 event(s).")
    await expect(result).to_contain_text("doomed-1")
    await expect(result).to_contain_text("delivered")

    # A later event through the Trigger marks the end: nothing else arrived before it.
    await console.broker.send(make_event("after-1", type="com.example.doomed"))
    await sink.wait_for(5, timeout=15)
    assert sink.ids() == ["doomed-1"] * 4 + ["after-1"]
    redriven = sink.received[3]
    assert "ce-knativeerrorcode" not in redriven.headers  # delivered as the original event
