"""The console's browser tests: the system Chromium driven by Playwright, a real `kbroker run` and
a real loopback subscriber.

Everything runs in one session-scoped event loop (Playwright's async API): the browser starts once
per session, each test module gets its own broker process and subscriber server, and each test a
fresh browser context (cookies, storage and routes start clean). Playwright's sync API is not used
because it refuses to run inside pytest-asyncio's loop, and the broker and subscriber fixtures are
asyncio code.

Every page is held to three rules checked after the test: no request leaves 127.0.0.1 (the
console must work on a closed network and never load anything from a CDN), no console error or
uncaught exception, and on failure a screenshot and a Playwright trace land in test-results/
(open the trace with `.venv/bin/playwright show-trace`).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from e2e import knative_yaml as ky
from fixtures.broker import BrokerProcess
from fixtures.subscriber import SinkServer
from playwright.async_api import Browser, ConsoleMessage, Page, Playwright, Route, async_playwright

CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by hack/chromium.sh
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests may run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
REPO = Path(__file__).resolve().parents[3]
# The failure trace records actions, network and console; DOM snapshots and the screencast only
# with KBROKER_UI_TRACE=full (a snapshot per assertion poll of a 500-row live tail took seconds).
FULL_TRACE = os.environ.get("KBROKER_UI_TRACE") == "full"
RESULTS = REPO / "test-results"

# The files a module's broker starts with, unless the module defines `config(sinks)`.
Config = Callable[[SinkServer], dict[str, str]]


def default_config(sinks: SinkServer) -> dict[str, str]:
    return {"broker.yaml": ky.dump(ky.broker())}


@dataclass
class Console:
    """One module's running system: the broker process, its config folder and the subscribers."""

    broker: BrokerProcess
    sinks: SinkServer

    @property
    def base(self) -> str:
        return self.broker.base

    @property
    def ui(self) -> str:
        return f"{self.broker.base}/-/ui/"

    @property
    def config_dir(self) -> Path:
        return self.broker.config_dir

    async def kbroker_send(
        self, *args: str, broker: str = "default", namespace: str = "default"
    ) -> str:
        """`kbroker send` in its own process, as a user would run it."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kbroker",
            "send",
            self.broker.broker_url(broker, namespace),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, (out + err).decode(errors="replace")
        return out.decode()


@dataclass
class PageGuard:
    """What a page did that it must not: requests off loopback, console errors."""

    off_host: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def route(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            self.off_host.append(url)
            await route.abort("blockedbyclient")

    def console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text} at {msg.location}")

    def page_error(self, exc: Exception) -> None:
        self.errors.append(f"uncaught: {exc}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pw() -> AsyncIterator[Playwright]:
    async with async_playwright() as pw:
        yield pw


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium(pw: Playwright) -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash hack/chromium.sh install` (make test-deps)")
    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    await browser.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def console(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Console]:
    sinks = SinkServer()
    await sinks.start()
    config: Config = getattr(request.module, "config", default_config)
    broker = BrokerProcess(tmp_path_factory.mktemp("console"))
    try:
        for name, text in config(sinks).items():
            broker.write(name, text)
        await broker.start()
        yield Console(broker, sinks)
    finally:
        await broker.close()
        await sinks.close()


@pytest_asyncio.fixture(loop_scope="session")
async def tab(
    chromium: Browser, console: Console, request: pytest.FixtureRequest
) -> AsyncIterator[Page]:
    """A fresh context and page at 1280x800, guarded; artifacts kept when the test fails."""
    context = await chromium.new_context(viewport=VIEWPORT, base_url=console.base)  # type: ignore[arg-type]
    await context.tracing.start(snapshots=FULL_TRACE, screenshots=FULL_TRACE)
    guard = PageGuard()
    await context.route("**/*", guard.route)
    pg = await context.new_page()
    pg.on("console", guard.console)
    pg.on("pageerror", guard.page_error)
    try:
        yield pg
    finally:
        failed = request.node.stash.get(_CALL_FAILED, True)
        if failed:
            out = RESULTS / re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.nodeid).strip("-")
            out.mkdir(parents=True, exist_ok=True)
            if not pg.is_closed():
                await pg.screenshot(path=str(out / "failure.png"), full_page=True)
            await context.tracing.stop(path=str(out / "trace.zip"))
        else:
            await context.tracing.stop()
        await context.close()
    assert guard.off_host == [], f"requests left 127.0.0.1: {guard.off_host}"
    assert guard.errors == [], f"the page logged errors: {guard.errors}"
