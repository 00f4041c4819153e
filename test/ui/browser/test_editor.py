"""Creating and editing Triggers in the console, against a real `kbroker run` and subscriber.

    browser --form--> /-/ui/triggers/new --atomic write--> config folder <--watch-- kbroker run
    kbroker send (own process) --> kbroker run --> subscriber (loopback)

The form is a live view of the YAML it writes; the controller's own validation decides what is
valid (a CESQL error shows line and column, and submit stays disabled meanwhile); saving writes
one console-owned file, replaced atomically on edit; a Trigger written by hand is read-only. The
keyboard-only test creates a Trigger without touching the mouse.
"""

from __future__ import annotations

import re

import pytest
import yaml
from e2e import knative_yaml as ky
from fixtures.broker import make_event
from fixtures.subscriber import SinkServer
from kbroker.core import explain
from playwright.async_api import Locator, Page, expect

from .conftest import Console

pytestmark = pytest.mark.asyncio(loop_scope="session")

HAND_WRITTEN = """\
# Written by a person: comments and the second document must survive the console.
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: handwritten
  namespace: default
spec:
  broker: default
  filter:
    attributes:
      type: com.example.hand
  subscriber:
    uri: {url}
"""


def config(sinks: SinkServer) -> dict[str, str]:
    for name in ("created", "keyboard", "edited", "hand"):
        sinks.sink(name)
    editable = ky.trigger(
        "editme",
        sinks.sinks["edited"].url,
        attributes={"type": "com.example.before"},
    )
    return {
        "broker.yaml": ky.dump(ky.broker()),
        "hand.yaml": HAND_WRITTEN.format(url=sinks.sinks["hand"].url),
        # The console's own file name for default/editme: the console may rewrite it.
        "ui.default.editme.trigger.yaml": ky.dump(editable),
    }


def ui_file(console: Console, name: str) -> str:
    return f"ui.default.{name}.trigger.yaml"


async def test_create_from_the_form_writes_yaml_becomes_ready_and_delivers(
    tab: Page, console: Console
) -> None:
    sink = console.sinks.sinks["created"]
    await tab.goto(f"{console.ui}triggers/new")
    await expect(tab.get_by_role("heading", name="New trigger", level=1)).to_be_visible()
    await expect(tab.get_by_label("Broker", exact=True)).to_have_value("default/default")
    await tab.get_by_label("Name", exact=True).fill("orders-ui")
    await tab.get_by_role("radio", name="Attributes (exact)").check()
    await tab.get_by_label("Attribute 1", exact=True).fill("type")
    await tab.get_by_label("Value 1", exact=True).fill("com.example.ui.order")
    await tab.get_by_label("Subscriber (URI or Kind/name)").fill(sink.url)
    preview = tab.locator("#yaml-text")  # the pre is labelled by its heading
    await expect(preview).to_contain_text("name: orders-ui")
    await expect(preview).to_contain_text("type: com.example.ui.order")
    await expect(preview).to_contain_text(sink.url)
    shown = yaml.safe_load(await preview.text_content() or "")
    await tab.get_by_role("button", name="Create trigger").click()

    await expect(tab).to_have_url(re.compile(r"/-/ui/triggers/default/orders-ui$"))
    path = console.config_dir / ui_file(console, "orders-ui")
    written = yaml.safe_load(path.read_text())
    assert written["spec"] == shown["spec"]  # the file holds exactly what the preview showed
    assert written["spec"]["filter"] == {"attributes": {"type": "com.example.ui.order"}}
    assert written["spec"]["subscriber"] == {"uri": sink.url}
    await expect(tab.get_by_role("heading", level=1)).to_have_text("Trigger default/orders-ui")
    # The page polls the conditions until Ready.
    await expect(tab.get_by_test_id("trigger-ready")).to_have_text("Ready", timeout=15_000)

    await console.kbroker_send("--type", "com.example.ui.order", "--source", "/ui", "--id", "ui-1")
    await console.broker.send(make_event("ui-2", type="com.example.other"))
    await sink.wait_for(1, timeout=15)
    assert sink.ids() == ["ui-1"]


async def test_cesql_error_shows_line_and_column_and_blocks_submit_until_fixed(
    tab: Page, console: Console
) -> None:
    await tab.goto(f"{console.ui}triggers/new")
    await tab.get_by_label("Name", exact=True).fill("cesql-ui")
    await tab.get_by_label("Subscriber (URI or Kind/name)").fill(console.sinks.base + "/created")
    await tab.get_by_role("radio", name="CESQL expression").check()
    editor = tab.get_by_role("textbox", name="CESQL expression")
    submit = tab.get_by_role("button", name="Create trigger")
    bad = "type = 'com.example.a'\n  AND source ="
    error = explain.check_cesql(bad).error
    assert error is not None and error.line == 2  # the expression is broken on its 2nd line
    await editor.press_sequentially(bad)  # typed: the check runs 250 ms after typing stops
    check = tab.locator("#cesql-check")
    await expect(check).to_contain_text(f"Line {error.line}, column {error.column}")
    await expect(editor).to_have_attribute("aria-invalid", "true")
    await expect(submit).to_be_disabled()

    await editor.press("End")
    await editor.press_sequentially(" '/shop'")
    await expect(check).to_contain_text("Valid CESQL.")
    await expect(check).not_to_contain_text("Line ")
    await expect(check).to_contain_text("Attributes used: type, source")
    await expect(submit).to_be_enabled()
    await expect(tab.locator("#yaml-text")).to_contain_text("cesql:")


async def tab_to(page: Page, target: Locator, limit: int = 80) -> None:
    """Press Tab until `target` has the focus, as a keyboard user would."""
    handle = await target.element_handle()
    for _ in range(limit):
        if await page.evaluate("(el) => document.activeElement === el", handle):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"{target} never got the focus by Tab")


async def test_create_with_the_keyboard_only(tab: Page, console: Console) -> None:
    sink = console.sinks.sinks["keyboard"]
    await tab.goto(f"{console.ui}triggers/new")
    await tab_to(tab, tab.get_by_label("Name", exact=True))
    await tab.keyboard.type("by-keys")
    # A radio group is one Tab stop (its checked radio); arrows move the choice within it.
    modes = tab.get_by_role("radiogroup", name="Filter mode")
    await tab_to(tab, modes.get_by_role("radio", checked=True))
    attributes = tab.get_by_role("radio", name="Attributes (exact)")
    for _ in range(4):
        if await attributes.is_checked():
            break
        await tab.keyboard.press("ArrowDown")
    await expect(attributes).to_be_checked()
    await tab_to(tab, tab.get_by_label("Attribute 1", exact=True))
    await tab.keyboard.type("type")
    await tab.keyboard.press("Tab")
    await expect(tab.get_by_label("Value 1", exact=True)).to_be_focused()
    await tab.keyboard.type("com.example.keys")
    await tab_to(tab, tab.get_by_label("Subscriber (URI or Kind/name)"))
    await tab.keyboard.type(sink.url)
    await expect(tab.locator("#yaml-text")).to_contain_text("com.example.keys")
    await tab_to(tab, tab.get_by_role("button", name="Create trigger"))
    await tab.keyboard.press("Enter")

    await expect(tab).to_have_url(re.compile(r"/-/ui/triggers/default/by-keys$"))
    assert (console.config_dir / ui_file(console, "by-keys")).exists()
    await console.broker.wait_ready_object("Trigger", "by-keys")
    await console.broker.send(make_event("k-1", type="com.example.keys"))
    await sink.wait_for(1, timeout=15)
    assert sink.ids() == ["k-1"]


async def test_edit_shows_a_diff_and_replaces_the_file_atomically(
    tab: Page, console: Console
) -> None:
    path = console.config_dir / ui_file(console, "editme")
    before = path.stat().st_ino
    await tab.goto(f"{console.ui}triggers/default/editme/edit")
    await expect(tab.get_by_role("heading", name="Edit trigger default/editme")).to_be_visible()
    await expect(tab.get_by_label("Name", exact=True)).to_have_attribute("readonly", "")
    await tab.get_by_label("Value 1", exact=True).fill("com.example.after")
    diff = tab.get_by_role("region", name="Changes against the current Trigger")
    await expect(diff).to_contain_text("-      type: com.example.before")
    await expect(diff).to_contain_text("+      type: com.example.after")
    await tab.get_by_role("button", name="Save changes").click()

    await expect(tab).to_have_url(re.compile(r"/-/ui/triggers/default/editme$"))
    await expect(tab.get_by_test_id("effective-filter")).to_contain_text("com.example.after")
    written = yaml.safe_load(path.read_text())
    assert written["spec"]["filter"] == {"attributes": {"type": "com.example.after"}}
    # Replaced by a rename (a new inode), not rewritten in place; no temporary file left over.
    assert path.stat().st_ino != before
    assert sorted(p.name for p in console.config_dir.iterdir() if p.name.startswith(".")) == []


async def test_a_hand_written_trigger_is_read_only(tab: Page, console: Console) -> None:
    path = console.config_dir / "hand.yaml"
    text = path.read_text()
    await tab.goto(f"{console.ui}triggers/default/handwritten/edit")
    note = tab.get_by_role("note")
    await expect(note).to_contain_text("Read-only")
    await expect(note).to_contain_text("hand.yaml")
    await expect(tab.get_by_role("button", name="Copy YAML")).to_be_visible()
    await expect(tab.get_by_role("button", name="Save changes")).to_have_count(0)
    await expect(tab.locator("#yaml-text")).to_contain_text("com.example.hand")
    assert path.read_text() == text
    assert not (console.config_dir / ui_file(console, "handwritten")).exists()
