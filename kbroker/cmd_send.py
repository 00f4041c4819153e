"""`kbroker send`: post one CloudEvent (or a batch of copies) to a broker, for scripts."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

import httpx

from kbroker.core import events


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("send", help="send a CloudEvent to a broker URL")
    p.add_argument("url", help="broker URL, e.g. http://127.0.0.1:8080/default/default")
    p.add_argument("--type", required=True, help="ce type")
    p.add_argument("--source", required=True, help="ce source")
    p.add_argument("--id", help="ce id (default: a new UUID)")
    p.add_argument("--subject")
    p.add_argument("--data", help="data; @FILE reads a file, @- standard input")
    p.add_argument("--content-type", default="application/json", help="datacontenttype")
    p.add_argument("--ext", action="append", default=[], metavar="NAME=VALUE", help="extension")
    p.add_argument("--mode", choices=["binary", "structured", "batch"], default="binary")
    p.add_argument("--count", type=int, default=1, help="events in a batch (batch mode)")
    p.add_argument("--durability", choices=["none", "leader", "all"])
    p.add_argument("--specversion", default="1.0", choices=["1.0", "0.3"])
    p.set_defaults(func=main)


def build_event(args: argparse.Namespace, index: int = 0) -> events.CloudEvent:
    attrs: dict[str, events.AttrValue] = {
        "specversion": args.specversion,
        "id": args.id or str(uuid.uuid4()),
        "source": args.source,
        "type": args.type,
    }
    if index and args.id:
        attrs["id"] = f"{args.id}-{index}"
    if args.subject:
        attrs["subject"] = args.subject
    data: bytes | None = None
    if args.data is not None:
        if args.data == "@-":
            data = sys.stdin.buffer.read()
        elif args.data.startswith("@"):
            data = Path(args.data[1:]).read_bytes()
        else:
            data = args.data.encode()
        attrs["datacontenttype"] = args.content_type
    for item in args.ext:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--ext {item!r}: expected NAME=VALUE")
        attrs[name] = value
    return events.CloudEvent(attrs, data)


def main(args: argparse.Namespace) -> int:
    headers: list[tuple[str, str]]
    if args.mode == "batch":
        batch = [build_event(args, i) for i in range(args.count)]
        headers = [("content-type", "application/cloudevents-batch+json")]
        body = events.encode_batch(batch)
    elif args.mode == "structured":
        headers, body = events.encode_structured(build_event(args))
    else:
        headers, body = events.encode_binary(build_event(args))
    if args.durability:
        headers.append(("kbroker-durability", args.durability))
    try:
        resp = httpx.post(args.url, headers=headers, content=body, timeout=30.0)
    except httpx.HTTPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{resp.status_code} {resp.reason_phrase}")
    if resp.text:
        print(resp.text.rstrip())
    return 0 if resp.is_success else 1
