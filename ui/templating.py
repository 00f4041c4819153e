"""The Jinja2 environment every page renders with, and the values every template can use.

Autoescaping is on (event data and object fields are user input). Each page gets the console's
base path (`/-/ui` when mounted in `kbroker run`), the CSRF token the security wrapper issued,
and the settings, so templates never hard-code where the console lives.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from kbroker.ui.context import ConsoleContext
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.autoescape = True
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True


def timestamp(epoch: float | None) -> str:
    """Epoch seconds as UTC wall time for tables ("—" when unknown)."""
    if not epoch:
        return "—"
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"


def seconds(value: float | None) -> str:
    """A latency for people: 12 ms, 1.4 s."""
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


templates.env.filters["timestamp"] = timestamp
templates.env.filters["seconds"] = seconds


def base_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def render(
    request: Request,
    ctx: ConsoleContext,
    template: str,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    state = request.scope.get("state", {})
    context = {
        "base": base_path(request),
        "csrf": state.get("csrf", ""),
        "settings": ctx.settings,
        **values,
    }
    return templates.TemplateResponse(request, template, context, status_code=status_code)
