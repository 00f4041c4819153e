"""Create and edit a Trigger: the form on the left, the exact YAML to be written on the right.

Pages: `GET /triggers/new?broker=ns/name` (any form field may be given in the query, so the
playground and the live tail link here with a filter filled in) and
`GET /triggers/{ns}/{name}/edit`.
Fragments, posted by htmx with the whole form: `/triggers/preview` (YAML, diff on edit, the
controller's validation, the retry schedule), `/triggers/cesql-check` (line:col and caret,
attributes used, those never seen on this broker), `/triggers/test` (the filter on the broker's
recent events or a pasted one, through the events service: the dispatcher's own filter code).
Submitting validates once more on the server and writes through `Objects.apply`; an object from a
hand-written file is refused with 403 (the page offers its YAML to copy instead).
"""

from __future__ import annotations

from typing import Any

from kbroker.core import explain
from kbroker.ui import forms, ssrf
from kbroker.ui import objects_view as ov
from kbroker.ui.context import ConsoleContext
from kbroker.ui.ports import KObject
from kbroker.ui.templating import base_path, render
from kbroker.ui.yamlview import DiffLine, diff, to_yaml, written
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

try:  # the events service is its own part of the console; the tester needs it
    from kbroker.ui import service_events
except ImportError:  # pragma: no cover - only while that part is absent
    service_events = None  # type: ignore[assignment]


async def _brokers(ctx: ConsoleContext) -> list[KObject]:
    return sorted(await ctx.objects.list("Broker"), key=lambda b: (ov.namespace(b), ov.name(b)))


async def seen(ctx: ConsoleContext, namespace: str, broker: str) -> dict[str, list[str]]:
    """Attribute names and the values of a few attributes seen on this broker lately."""
    if not broker:
        return {}
    try:
        found = await ctx.events.recent(namespace, broker, ctx.settings.recent_limit)
    except Exception:  # suggestions are a help, never a reason for the page to fail
        return {}
    values: dict[str, dict[str, None]] = {}
    for env in found or ():
        for key, value in env.event.attributes.items():
            if key in ("id", "time", "specversion"):
                values.setdefault(key, {})
                continue
            bucket = values.setdefault(key, {})
            if len(bucket) < 20:
                bucket.setdefault(str(value), None)
    return {k: list(v) for k, v in sorted(values.items())}


async def addressables(ctx: ConsoleContext, namespace: str) -> list[str]:
    """Cluster mode: `Kind/name` of the namespace's Services and Knative Services, offered in
    the subscriber and dead-letter sink fields (standalone has no Services to offer)."""
    if not ctx.settings.cluster:
        return []
    out = []
    for kind, label in (("ksvc", "ksvc"), ("Service", "Service")):
        try:
            found = await ctx.objects.list(kind, namespace)
        except Exception:  # suggestions are a help, never a reason for the page to fail
            continue
        out += [f"{label}/{ov.name(o)}" for o in found]
    return out


def _broker_obj(brokers: list[KObject], namespace: str, name: str) -> KObject | None:
    for b in brokers:
        if ov.namespace(b) == namespace and ov.name(b) == name:
            return b
    return None


def effective_delivery(f: forms.TriggerForm, broker: KObject | None) -> list[dict[str, str]]:
    """Each delivery field: the value in force and whether it comes from the Trigger, the
    Broker or the default."""
    own = forms.to_object(f)["spec"].get("delivery", {})
    inherited = ov.delivery(broker) if broker is not None else {}
    rows = []
    for key, label in (
        ("retry", "Retries"),
        ("backoffPolicy", "Backoff policy"),
        ("backoffDelay", "Backoff delay"),
        ("timeout", "Timeout"),
        ("deadLetterSink", "Dead-letter sink"),
    ):
        if key in own:
            value, source = own[key], "Trigger"
        elif key in inherited:
            value, source = inherited[key], "Broker"
        else:
            value, source = None, "default"
        if key == "deadLetterSink":
            shown = forms.destination_text(value)[0] if value else "none: failed events are dropped"
        elif key in ("backoffDelay", "timeout") and value:
            shown = f"{value} ({forms.human(forms.seconds(str(value)))})"
        elif value is None:
            shown = {"retry": "0", "backoffPolicy": "—", "backoffDelay": "—", "timeout": "—"}[key]
        else:
            shown = str(value)
        rows.append({"field": label, "value": shown, "source": source})
    return rows


def schedule(f: forms.TriggerForm, broker: KObject | None) -> forms.Schedule:
    own = forms.to_object(f)["spec"].get("delivery", {})
    inherited = ov.delivery(broker) if broker is not None else {}

    def pick(key: str) -> Any:
        return own.get(key, inherited.get(key))

    retry = pick("retry")
    delay = pick("backoffDelay")
    return forms.retry_schedule(
        retry if isinstance(retry, int) else 0,
        str(pick("backoffPolicy") or "exponential"),
        forms.seconds(str(delay)) if delay else None,
    )


def _editing(form: FormData | dict[str, Any]) -> tuple[str, str] | None:
    value = str(form.get("editing", "") or "")
    if "/" not in value:
        return None
    ns, name = value.split("/", 1)
    return ns, name


async def _preview_values(
    ctx: ConsoleContext, f: forms.TriggerForm, editing: tuple[str, str] | None, check: bool
) -> dict[str, Any]:
    obj = forms.to_object(f)
    text = to_yaml(written(obj))
    changes: list[DiffLine] = []
    if editing is not None:
        current = await ctx.objects.get("Trigger", *editing)
        if current is not None:
            changes = diff(to_yaml(written(current)), text)
    errors = (
        [*ctx.objects.validate(obj), *ssrf.literal_problems(obj, ctx.settings)] if check else []
    )
    brokers = await _brokers(ctx)
    broker = _broker_obj(brokers, f.namespace, f.broker)
    return {
        "yaml": text,
        "diff": changes,
        "editing": editing,
        "errors": errors,
        "checked": check,
        "filename": f"{f.name or 'trigger'}.yaml",
        "schedule": schedule(f, broker),
        "effective": effective_delivery(f, broker),
    }


def cesql_values(check: explain.CesqlCheck, seen_attrs: set[str] | None) -> dict[str, Any]:
    unseen = []
    if check.valid and seen_attrs:
        unseen = [a for a in check.attributes if a not in seen_attrs]
    return {"check": check, "unseen": unseen}


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    async def page(
        request: Request,
        f: forms.TriggerForm,
        editing: tuple[str, str] | None,
        status_code: int = 200,
        errors: list[str] | None = None,
        read_only: str = "",
        origin_path: str = "",
    ) -> Response:
        brokers = await _brokers(ctx)
        if not f.broker and len(brokers) == 1:
            f.namespace, f.broker = ov.namespace(brokers[0]), ov.name(brokers[0])
        values = await _preview_values(ctx, f, editing, check=errors is not None)
        if errors:
            values["errors"] = errors
        broker = _broker_obj(brokers, f.namespace, f.broker)
        return render(
            request,
            ctx,
            "editor.html",
            status_code=status_code,
            form=f,
            brokers=brokers,
            broker=broker,
            broker_ready=ov.readiness(broker) if broker is not None else None,
            seen=await seen(ctx, f.namespace, f.broker),
            addressables=await addressables(ctx, f.namespace),
            kept=forms.kept_yaml(f),
            read_only=read_only,
            origin_path=origin_path,
            modes=forms.MODES,
            row_dialects=forms.ROW_DIALECTS,
            **values,
        )

    async def new(request: Request) -> Response:
        if request.method == "POST":
            return await submit(request, None)
        query = dict(request.query_params)
        f = forms.from_fields(query)
        if "inherit" not in query:
            f.inherit = True
        return await page(request, f, None)

    async def edit(request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        current = await ctx.objects.get("Trigger", ns, name)
        if current is None:
            return render(request, ctx, "not_found.html", status_code=404)
        if request.method == "POST":
            return await submit(request, (ns, name))
        origin = ctx.objects.origin(current)
        return await page(
            request,
            forms.from_object(current),
            (ns, name),
            read_only="" if origin.editable else origin.reason,
            origin_path=origin.path,
        )

    async def submit(request: Request, editing: tuple[str, str] | None) -> Response:
        f = forms.from_fields(await request.form())
        if editing is not None:
            f.namespace, f.name = editing  # the URL names the object; renames are new objects
        obj = forms.to_object(f)
        current = await ctx.objects.get("Trigger", f.namespace, f.name)
        if editing is None and current is not None:
            return await page(
                request,
                f,
                None,
                409,
                [f"metadata.name: Trigger {f.namespace}/{f.name} already exists; edit it instead"],
            )
        origin = ctx.objects.origin(obj)
        if not origin.editable:
            return await page(request, f, editing, 403, [origin.reason], origin.reason, origin.path)
        errors = [*ctx.objects.validate(obj), *await ssrf.problems(obj, ctx.settings)]
        if errors:
            return await page(request, f, editing, 422, errors)
        try:
            await ctx.objects.apply(obj)
        except PermissionError as exc:
            return await page(request, f, editing, 403, [str(exc)], str(exc))
        except ValueError as exc:
            return await page(request, f, editing, 422, [str(exc)])
        target = f"{base_path(request)}/triggers/{f.namespace}/{f.name}"
        return RedirectResponse(target, status_code=303)

    async def preview(request: Request) -> Response:
        form = await request.form()
        f = forms.from_fields(form)
        editing = _editing(form)
        if editing is not None:
            f.namespace, f.name = editing
        values = await _preview_values(ctx, f, editing, check=True)
        return render(request, ctx, "_preview.html", **values)

    async def cesql_check(request: Request) -> Response:
        form = await request.form()
        f = forms.from_fields(form)
        expression = str(form.get(str(form.get("field") or "cesql"), "") or "")
        check = explain.check_cesql(expression)
        attrs = set((await seen(ctx, f.namespace, f.broker)).keys()) if check.valid else None
        return render(
            request,
            ctx,
            "_cesql.html",
            expression=expression,
            editor_id=str(form.get("editor_id") or "cesql"),
            **cesql_values(check, attrs),
        )

    async def test(request: Request) -> Response:
        form = await request.form()
        f = forms.from_fields(form)
        return await run_test(request, ctx, f, str(form.get("pasted", "") or ""), _skip(form))

    def _skip(form: FormData) -> str:
        editing = _editing(form)
        return editing[1] if editing else ""

    return [
        Route("/triggers/new", new, methods=["GET", "POST"], name="trigger_new"),
        Route("/triggers/preview", preview, methods=["POST"]),
        Route("/triggers/cesql-check", cesql_check, methods=["POST"]),
        Route("/triggers/test", test, methods=["POST"]),
        Route("/triggers/{ns}/{name}/edit", edit, methods=["GET", "POST"], name="trigger_edit"),
    ]


async def run_test(
    request: Request, ctx: ConsoleContext, f: forms.TriggerForm, pasted: str, skip: str = ""
) -> Response:
    """The test panel's fragment: the form's filter on recent or pasted events."""
    if service_events is None:
        return render(request, ctx, "_test.html", error="the filter tester is not available")
    svc = service_events
    try:
        specs = svc.filters_from_spec(forms.to_object(f)["spec"])
        events = svc.parse_structured(pasted) if pasted.strip() else None
        result = await svc.test_filter(ctx, f.namespace, f.broker, specs, pasted=events, skip=skip)
    except svc.BadRequest as exc:
        return render(request, ctx, "_test.html", error=str(exc))
    except ValueError as exc:
        return render(request, ctx, "_test.html", error=str(exc))
    return render(request, ctx, "_test.html", result=result, error="")
