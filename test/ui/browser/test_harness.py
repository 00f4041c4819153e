"""The harness's own guards can fail: a request off 127.0.0.1 is caught and blocked while one to
127.0.0.1 goes through, and console errors and uncaught exceptions are caught, so a page that
breaks either rule cannot pass the other tests silently."""

from __future__ import annotations

import pytest
from fixtures.subscriber import SinkServer
from playwright.async_api import Browser

from .conftest import VIEWPORT, PageGuard

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_guard_blocks_requests_off_loopback_and_records_console_errors(
    chromium: Browser,
) -> None:
    server = SinkServer()
    await server.start()
    local = server.sink("pixel")
    context = await chromium.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    guard = PageGuard()
    await context.route("**/*", guard.route)
    page = await context.new_page()
    page.on("console", guard.console)
    page.on("pageerror", guard.page_error)
    try:
        await page.goto(f"{server.base}/pixel")
        await page.set_content(
            f'<img alt="local" src="{local.url}?x=1"><img alt="far" src="http://192.0.2.1/p.png">'
            "<script>console.error('boom'); throw new Error('uncaught boom')</script>"
        )
        await page.wait_for_function("[...document.images].every((i) => i.complete)")
    finally:
        await context.close()
        await server.close()
    assert [r.path for r in local.received] == ["/pixel", "/pixel"]  # the page, then the image
    assert guard.off_host == ["http://192.0.2.1/p.png"]
    assert any("boom" in e for e in guard.errors)
    assert any("uncaught boom" in e for e in guard.errors)
