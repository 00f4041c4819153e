"""`kbroker get brokers|triggers|eventpolicies|pingsources|sequences|parallels|channels|
subscriptions`: objects as `kubectl get` shows them, from a running broker.

`-o yaml|json` prints each object as written plus its status (GET /status serves them so); the
table picks a few columns from the same documents.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from kbroker.core import tls


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "get",
        help="show Brokers, Triggers, EventPolicies, PingSources, Sequences, Parallels, "
        "channels or Subscriptions and their status",
    )
    p.add_argument("kind", choices=[*PLURALS, *PLURALS.values()])
    p.add_argument("name", nargs="?", help="only this object")
    p.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")
    p.add_argument("-n", "--namespace", help="only this namespace")
    p.add_argument("--server", default="http://127.0.0.1:8080", help="the running kbroker")
    p.add_argument("--ca", type=Path, metavar="FILE", help="PEM CA to verify an https --server")
    p.add_argument(
        "--ops-token", type=Path, metavar="FILE", help="send the bearer token in FILE (/status)"
    )
    p.set_defaults(func=main)


PLURALS = {
    "broker": "brokers",
    "trigger": "triggers",
    "eventpolicy": "eventpolicies",
    "pingsource": "pingsources",
    "sequence": "sequences",
    "parallel": "parallels",
    "channel": "channels",
    "subscription": "subscriptions",
}


def _condition(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond.get("type") == ctype:
            return dict(cond)
    return {}


def _broker_of(spec: dict[str, Any]) -> str:
    ref = spec.get("brokerRef")
    name = spec.get("broker") or (ref.get("name") if isinstance(ref, dict) else "")
    return str(name or "")


def rows(kind: str, objects: list[dict[str, Any]]) -> list[list[str]]:
    if kind == "brokers":
        out = [["NAMESPACE", "NAME", "URL", "READY", "REASON"]]
    elif kind == "eventpolicies":
        out = [["NAMESPACE", "NAME", "READY", "REASON", "FROM"]]
    elif kind == "pingsources":
        out = [["NAMESPACE", "NAME", "SCHEDULE", "SINK", "READY", "REASON"]]
    elif kind in ("sequences", "parallels", "channels"):
        return _addressable_rows(kind, objects)
    elif kind == "subscriptions":
        return _subscription_rows(objects)
    else:
        out = [["NAMESPACE", "NAME", "BROKER", "SUBSCRIBER_URI", "READY", "REASON", "LAG"]]
    for obj in objects:
        meta, status = obj["metadata"], obj.get("status", {})
        ready = _condition(obj, "Ready")
        cells = [meta["namespace"], meta["name"]]
        if kind == "pingsources":
            spec = obj.get("spec") or {}
            schedule = str(spec.get("schedule") or "* * * * *")
            sink = status.get("sinkUri", "")
            out.append(
                [*cells, schedule, sink, ready.get("status", "Unknown"), ready.get("reason", "")]
            )
            continue
        if kind == "eventpolicies":
            subjects = ",".join(status.get("from", []))
            out.append([*cells, ready.get("status", "Unknown"), ready.get("reason", ""), subjects])
            continue
        if kind == "brokers":
            cells.append(status.get("address", {}).get("url", ""))
        else:
            cells += [_broker_of(obj.get("spec") or {}), status.get("subscriberUri", "")]
        cells += [ready.get("status", "Unknown"), ready.get("reason", "")]
        if kind == "triggers":
            cells.append(status.get("annotations", {}).get("kbroker.dev/lag", ""))
        out.append(cells)
    return out


def _addressable_rows(kind: str, objects: list[dict[str, Any]]) -> list[list[str]]:
    """Sequences, Parallels and channels: their address (and a channel's kind), as `kubectl get`."""
    head = ["NAMESPACE", "NAME", *(["KIND"] if kind == "channels" else []), "URL", "READY"]
    out = [[*head, "REASON"]]
    for obj in objects:
        meta, ready = obj["metadata"], _condition(obj, "Ready")
        cells = [meta["namespace"], meta["name"]]
        if kind == "channels":
            cells.append(str(obj.get("kind", "")))
        cells.append(obj.get("status", {}).get("address", {}).get("url", ""))
        out.append([*cells, ready.get("status", "Unknown"), ready.get("reason", "")])
    return out


def _subscription_rows(objects: list[dict[str, Any]]) -> list[list[str]]:
    out = [["NAMESPACE", "NAME", "CHANNEL", "SUBSCRIBER_URI", "REPLY_URI", "READY", "REASON"]]
    for obj in objects:
        meta, ready = obj["metadata"], _condition(obj, "Ready")
        channel = (obj.get("spec") or {}).get("channel") or {}
        physical = obj.get("status", {}).get("physicalSubscription", {})
        out.append(
            [
                meta["namespace"],
                meta["name"],
                f"{channel.get('kind', '')}:{channel.get('name', '')}",
                physical.get("subscriberUri", ""),
                physical.get("replyUri", ""),
                ready.get("status", "Unknown"),
                ready.get("reason", ""),
            ]
        )
    return out


def format_table(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table
    )


def main(args: argparse.Namespace) -> int:
    kind = PLURALS.get(args.kind, args.kind)
    try:
        headers = {}
        if args.ops_token is not None:
            headers["authorization"] = f"Bearer {args.ops_token.read_text().strip()}"
        verify: ssl.SSLContext | bool = tls.client_context(args.ca) if args.ca else True
        resp = httpx.get(
            f"{args.server.rstrip('/')}/status", timeout=10.0, headers=headers, verify=verify
        )
        resp.raise_for_status()
    except (httpx.HTTPError, OSError) as exc:
        print(f"error: cannot read status from {args.server}: {exc}", file=sys.stderr)
        return 1
    body = orjson.loads(resp.content)
    config = body.get("config", {})
    if config.get("readable") is False:
        # The objects shown are the last good configuration, not what the folder says now.
        for error in config.get("errors", []):
            print(
                f"warning: config not readable, showing the last good one: {error}", file=sys.stderr
            )
    objects = [
        o
        for o in body.get(kind, [])
        if (not args.name or o["metadata"]["name"] == args.name)
        and (not args.namespace or o["metadata"]["namespace"] == args.namespace)
    ]
    if args.name and not objects:
        print(f"error: {args.kind} {args.name!r} not found", file=sys.stderr)
        return 1
    if args.output == "json":
        doc: Any = (
            objects[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": objects}
        )
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    elif args.output == "yaml":
        doc = objects[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": objects}
        print(yaml.safe_dump(doc, sort_keys=False).rstrip())
    else:
        print(format_table(rows(kind, objects)))
    return 0
