"""The playground (`/playground`): try a filter on a broker's real events without a Trigger.

The same filter fields as the create page, tested by the same service on the broker's recent
events or a pasted one; "Create a Trigger from this filter" opens the create page with the
filter carried in its URL. `?trigger=name` starts from an existing Trigger's filter.
"""

from __future__ import annotations

from urllib.parse import urlencode

from kbroker.ui import forms
from kbroker.ui import objects_view as ov
from kbroker.ui.context import ConsoleContext
from kbroker.ui.pages.editor import run_test, seen
from kbroker.ui.templating import render
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route


def create_query(f: forms.TriggerForm) -> str:
    """The create page's query string carrying this filter."""
    q: dict[str, str] = {"broker": f"{f.namespace}/{f.broker}", "mode": f.mode}
    if f.mode == "cesql":
        q["cesql"] = f.cesql
    for i, (k, v) in enumerate(f.attributes):
        q[f"attr_key_{i}"], q[f"attr_value_{i}"] = k, v
    if f.mode == "filters":
        q["group"] = f.group
        for i, r in enumerate(f.rows):
            q[f"row_dialect_{i}"], q[f"row_attr_{i}"], q[f"row_value_{i}"] = (
                r.dialect,
                r.attribute,
                r.value,
            )
        if f.filters_yaml:
            q["filters_yaml"] = f.filters_yaml
    return urlencode(q)


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        query = dict(request.query_params)
        f = forms.from_fields(query)
        brokers = sorted(
            await ctx.objects.list("Broker"), key=lambda b: (ov.namespace(b), ov.name(b))
        )
        if not f.broker and brokers:
            f.namespace, f.broker = ov.namespace(brokers[0]), ov.name(brokers[0])
        name = query.get("trigger", "")
        if name:
            existing = await ctx.objects.get("Trigger", f.namespace, name)
            if existing is not None:
                f = forms.from_object(existing)
        return render(
            request,
            ctx,
            "playground.html",
            form=f,
            brokers=brokers,
            seen=await seen(ctx, f.namespace, f.broker),
            modes=forms.MODES,
            row_dialects=forms.ROW_DIALECTS,
            create=create_query(f),
        )

    async def test(request: Request) -> Response:
        form = await request.form()
        f = forms.from_fields(form)
        return await run_test(request, ctx, f, str(form.get("pasted", "") or ""))

    async def link(request: Request) -> Response:
        f = forms.from_fields(await request.form())
        return render(request, ctx, "_create_link.html", create=create_query(f))

    return [
        Route("/playground", page, name="playground"),
        Route("/playground/test", test, methods=["POST"]),
        Route("/playground/link", link, methods=["POST"]),
    ]
