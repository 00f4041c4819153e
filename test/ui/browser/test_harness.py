"""The harness's own guards can fail: a request off 127.0.0.1 is caught and blocked, and a console
error is caught, so a page that breaks either rule cannot pass the other tests silently."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from .conftest import VIEWPORT, Console, PageGuard

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_guard_blocks_requests_off_loopback_and_records_console_errors(
    chromium: Browser, console: Console
) -> None:
    context = await chromium.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    guard = PageGuard()
    await context.route("**/*", guard.route)
    page = await context.new_page()
    page.on("console", guard.console)
    page.on("pageerror", guard.page_error)
    try:
        await page.goto(f"{console.base}/status")
        await page.set_content(
            '<img alt="x" src="http://192.0.2.1/pixel.png">'
            "<script>console.error('boom'); throw new Error('uncaught boom')</script>"
        )
        await page.wait_for_function("document.images[0].complete")
    finally:
        await context.close()
    assert guard.off_host == ["http://192.0.2.1/pixel.png"]
    assert any("boom" in e for e in guard.errors)
    assert any("uncaught boom" in e for e in guard.errors)
