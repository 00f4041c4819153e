"""Every console page at 1280x800, as a user first sees it, and the README's screenshots.

    browser --GET /-/ui/...--> kbroker run (this module's) --> subscribers (loopback)

Each page must render without a console error, fit the 1280 px viewport without horizontal
scrolling, name its main heading, and give every form control an accessible name (what screen
readers announce, and what these tests find controls by). The tour test then saves PNGs into
docs/, the pictures the README's console section shows: rerun this module to refresh them.
"""

from __future__ import annotations

import re

import pytest
from e2e import knative_yaml as ky
from fixtures.broker import make_event
from fixtures.subscriber import SinkServer
from playwright.async_api import Page, expect

from .conftest import REPO, Console

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOCS = REPO / "docs"
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


async def shoot(page: Page, name: str) -> None:
    await fits_viewport(page)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(DOCS / name))
    assert (DOCS / name).stat().st_size > 10_000


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
    await shoot(tab, "console-inspector.png")

    await tab.goto(f"{console.ui}brokers/default/dead-letters?tab=deadletters")
    await expect(tab.get_by_role("table", name="Dead letters")).to_contain_text("flaky-1")
    await shoot(tab, "console-deadletters.png")

    await tab.goto(f"{console.ui}brokers/default/default?tab=tail")
    await expect(tab.locator("#tail-state")).to_have_text("live")
    for i in range(1, 4):
        await console.kbroker_send(
            "--type", "com.example.order.created", "--source", "/shop", "--id", f"live-{i}",
            "--data", f'{{"total": {i * 70}}}', "--ext", f"total={i * 70}",
        )  # fmt: skip
    rows = tab.get_by_role("table", name="Live events").get_by_test_id("tail-row")
    await expect(rows).to_have_count(3)
    await expect(rows.first).to_contain_text(re.compile("orders"))
    await shoot(tab, "console-tail.png")
