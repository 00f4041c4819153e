"""The Jinja2 environment every page renders with, and the values every template can use.

Autoescaping is on (event data and object fields are user input). Each page gets the console's
base path (`/-/ui` when mounted in `kbroker run`), the CSRF token the security wrapper issued,
and the settings, so templates never hard-code where the console lives.
"""

from __future__ import annotations

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
