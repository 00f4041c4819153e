"""Every console page at 1280x800, as a user first sees it, and the README's screenshots.

    browser --GET /-/ui/...--> kbroker run (this module's) --> subscriber (loopback)

Each page must render without a console error, fit the 1280 px viewport without horizontal
scrolling, and name its main heading. The tour test then saves one PNG per page into docs/, the
pictures the README's console section shows (rerun this module to refresh them).
"""

from __future__ import annotations

import pytest
from e2e import knative_yaml as ky
from fixtures.broker import make_event
from fixtures.subscriber import SinkServer
from playwright.async_api import Page, expect

from .conftest import REPO, Console

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOCS = REPO / "docs"


def config(sinks: SinkServer) -> dict[str, str]:
    shop, audit = sinks.sink("shop"), sinks.sink("audit")
    dead = ky.broker("dead-letters")
    default = ky.broker(
        delivery={"retry": 2, "deadLetterSink": {"ref": _broker_ref("dead-letters")}}
    )
    return {
        "brokers.yaml": ky.dump(default, dead),
        "triggers.yaml": ky.dump(
            ky.trigger("orders", shop.url, attributes={"type": "com.example.order.created"}),
            ky.trigger("audit", audit.url, filters=[{"suffix": {"type": ".audit"}}]),
        ),
        # A second broker whose trigger has no dead-letter sink: a problem, shown first.
        "risky.yaml": ky.dump(
            ky.broker("risky"),
            ky.trigger("no-dls", shop.url, broker="risky"),
        ),
    }


def _broker_ref(name: str) -> dict[str, str]:
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": name}


async def fits_viewport(page: Page) -> None:
    """No horizontal scrolling at the page's viewport width."""
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} is {overflow}px wider than the viewport"


async def test_overview_lists_problem_brokers_first(tab: Page, console: Console) -> None:
    await tab.goto(console.ui)
    await expect(tab.get_by_role("heading", name="Brokers", level=1)).to_be_visible()
    cards = tab.get_by_role("heading", level=2)
    await expect(cards).to_have_count(3)
    await expect(cards.first).to_have_text("default/risky")
    problems = tab.get_by_role("list", name="Problems of default/risky")
    await expect(problems).to_contain_text("without a dead-letter sink: no-dls")
    await expect(tab.get_by_role("list", name="Problems of default/default")).to_have_count(0)
    await fits_viewport(tab)


async def test_tour_writes_the_readme_screenshots(tab: Page, console: Console) -> None:
    for i in range(3):
        await console.broker.send(make_event(f"tour-{i}", type="com.example.order.created"))
    shots = [
        ("console-overview.png", console.ui, "Brokers"),
    ]
    for name, url, heading in shots:
        await tab.goto(url)
        await expect(tab.get_by_role("heading", name=heading, level=1)).to_be_visible()
        await fits_viewport(tab)
        await tab.screenshot(path=str(DOCS / name))
        assert (DOCS / name).stat().st_size > 5_000
