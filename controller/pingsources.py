"""A PingSource -> its contract entry and Knative status (`sources.knative.dev/v1`).

The rules are Knative's webhook and reconciler, as users see them:
- `schedule` defaults to `* * * * *` and parses as robfig/cron does (core/cron), `timezone` being a
  `CRON_TZ=` prefix; a bad zone is reported on `spec.timezone`, any other error on `spec.schedule`.
- `data` and `dataBase64` are mutually exclusive; `dataBase64` must decode; with contentType
  exactly `application/json` the data must be a JSON object.
- `sink` is a Destination (ref and/or uri; no absolute uri next to a ref); `ceOverrides.extensions`
  keys are non-empty alphanumerics.
- Conditions `SinkProvided`, `Deployed`, `OIDCIdentityCreated` -> `Ready`. Knative's webhook
  would reject an invalid object outright; here, like an invalid Trigger, it is not Ready and says
  why (`Deployed` False, reason `InvalidSpec`), and it is not in the contract so it never fires.

kbroker-only: the annotation `kbroker.dev/catch-up` (ISO-8601 duration) replays ticks missed while
kbroker was down, within that window.

What this module refuses: scheduling and sending (sources/ping), and Brokers and Triggers.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from kbroker.controller import durations, resolve, status, validate
from kbroker.controller.compilation import EVENTING_API, Compilation, Obj, from_issues
from kbroker.core import contract, cron
from kbroker.core.contract_ping import PING_TYPE

SOURCES_API = "sources.knative.dev/v1"
CONDITIONS = ("SinkProvided", "Deployed", "OIDCIdentityCreated")
CATCH_UP_ANNOTATION = "kbroker.dev/catch-up"
REASON_SINK_NOT_FOUND = "NotFound"

_KEY = re.compile(r"[a-zA-Z0-9]+")


def _text(spec: Mapping[str, Any], key: str, issues: validate.Issues) -> str:
    value = spec.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        issues.error(f"spec.{key}", "expected a string")
        return ""
    return value


def _schedule(spec: Mapping[str, Any], issues: validate.Issues) -> tuple[str, str]:
    schedule = _text(spec, "schedule", issues) or "* * * * *"
    timezone = _text(spec, "timezone", issues)
    try:
        cron.parse(schedule, timezone)
    except cron.CronError as exc:
        if exc.timezone and timezone:
            issues.error("spec.timezone", f"invalid value: {exc}: spec.timezone")
        else:
            issues.error("spec.schedule", f"invalid value: {exc}: spec.schedule")
    return schedule, timezone


def _data(spec: Mapping[str, Any], issues: validate.Issues) -> tuple[str, str, str]:
    content_type = _text(spec, "contentType", issues)
    data, data64 = _text(spec, "data", issues), _text(spec, "dataBase64", issues)
    body = data.encode()
    if data and data64:
        issues.error("spec", "expected exactly one, got both: spec.data, spec.dataBase64")
    elif data64:
        try:
            body = base64.b64decode(data64, validate=True)
        except (binascii.Error, ValueError) as exc:
            issues.error("spec.dataBase64", f"invalid value: {exc}: spec.dataBase64")
    if content_type == "application/json" and body:
        try:
            ok = isinstance(json.loads(body), dict)
        except ValueError:
            ok = False
        if not ok:
            where = "spec.dataBase64" if data64 else "spec.data"
            issues.error(where, f"invalid value: data is not a JSON object: {where}")
    return content_type, data, data64


def ce_overrides(spec: Mapping[str, Any], issues: validate.Issues) -> tuple[tuple[str, str], ...]:
    overrides = spec.get("ceOverrides")
    if overrides is None:
        return ()
    raw = overrides.get("extensions") if isinstance(overrides, Mapping) else None
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        issues.error("spec.ceOverrides.extensions", "expected a map of name to value")
        return ()
    out = []
    for k, v in raw.items():
        if not isinstance(k, str) or not k:
            issues.error(
                "spec.ceOverrides.extensions", 'invalid key name "": keys MUST NOT be empty'
            )
        elif not _KEY.fullmatch(k):
            issues.error(
                "spec.ceOverrides.extensions",
                f'invalid key name "{k}": keys are expected to be alphanumeric',
            )
        else:
            out.append((k, str(v)))
    return tuple(sorted(out))


def _catch_up(o: Obj, issues: validate.Issues) -> float:
    raw = o.annotations.get(CATCH_UP_ANNOTATION)
    if raw is None:
        return 0.0
    try:
        return durations.parse(raw)
    except durations.DurationError as exc:
        issues.error(f"metadata.annotations[{CATCH_UP_ANNOTATION}]", str(exc))
        return 0.0


def _sink_broker(sink: Any, namespace: str, c_addresses: Mapping[tuple[str, str], str]) -> str:
    """ "ns/name" when the sink is one of our Brokers by ref (appended to directly)."""
    ref = sink.get("ref") if isinstance(sink, Mapping) else None
    if not isinstance(ref, Mapping) or sink.get("uri"):
        return ""
    if ref.get("kind") != "Broker" or ref.get("apiVersion", EVENTING_API) != EVENTING_API:
        return ""
    key = (str(ref.get("namespace") or namespace), str(ref.get("name") or ""))
    return f"{key[0]}/{key[1]}" if key in c_addresses else ""


def compile_pingsource(
    c: Compilation, o: Obj, addresses: Mapping[tuple[str, str], str]
) -> contract.PingSource | None:
    """The contract entry for `o`, or None when it is not Ready; its status goes into `c`."""
    issues = validate.Issues()
    spec = o.spec if isinstance(o.spec, Mapping) else {}
    if not isinstance(o.spec, Mapping):
        issues.error("spec", "expected a mapping")
    schedule, timezone = _schedule(spec, issues)
    content_type, data, data64 = _data(spec, issues)
    extensions = ce_overrides(spec, issues)
    catch_up = _catch_up(o, issues)
    sink = spec.get("sink")
    sink_uri: str | None = None
    if isinstance(sink, Mapping) and sink.get("ref") and resolve.is_absolute(str(sink.get("uri"))):
        issues.error(
            "spec.sink",
            "Absolute URI is not allowed when Ref or [apiVersion, kind, name] is present",
        )
    try:
        sink_uri = resolve.resolve_destination(
            sink, o.namespace, "spec.sink", addresses, c.env.resolver
        )
        sink_cond = status.true("SinkProvided")
    except resolve.DestinationError as exc:
        sink_cond = status.false("SinkProvided", REASON_SINK_NOT_FOUND, str(exc))
        c.problem(o, o.source, exc.field, exc.message, "error")
    c.report(o, issues)
    ping = contract.PingSource(
        namespace=o.namespace,
        name=o.name,
        uid=o.uid(),
        schedule=schedule,
        timezone=timezone,
        content_type=content_type,
        data=data,
        data_base64=data64,
        sink_uri=sink_uri or "",
        sink_broker=_sink_broker(sink, o.namespace, addresses),
        extensions=extensions,
        catch_up=catch_up,
        generation=o.generation,
    )
    st = status.ObjectStatus(
        kind="PingSource",
        namespace=o.namespace,
        name=o.name,
        generation=o.generation,
        conditions=status.with_ready(
            CONDITIONS,
            {
                "SinkProvided": sink_cond,
                "Deployed": from_issues("Deployed", issues),
                "OIDCIdentityCreated": status.true(
                    "OIDCIdentityCreated", status.REASON_OIDC_DISABLED_TRIGGER
                ),
            },
        ),
        sink_uri=sink_uri,
        ce_attributes=((PING_TYPE, ping.source),),
        warnings=tuple(str(i) for i in issues.items if i.severity == "warning"),
    )
    c.statuses[("PingSource", o.namespace, o.name)] = st
    return ping if st.ready and sink_uri else None
