"""`kbroker tail NS/BROKER`: a broker's events as they arrive, from a running console.

The twin of the console's live tail: the same API (NDJSON instead of SSE), the same ephemeral
reader at the log's end that commits nothing, the same server-side CESQL `--filter` and the same
"matched by" column computed against the running contract. `-o json` prints one JSON object per
event and per line, for scripts; drops (the server's bounded buffer overflowing because this
terminal reads slowly) are reported on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import httpx
import orjson

from kbroker import ui_client

HELP = "follow a broker's events as they arrive (the console's live tail)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tail", help=HELP)
    p.add_argument("broker", metavar="NS/BROKER", help="the broker, as namespace/name")
    p.add_argument("--filter", default="", metavar="CESQL", help="only events matching this")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")
    ui_client.add_arguments(p)
    p.set_defaults(func=main)


COLUMNS = ("TIME", "TYPE", "SOURCE", "SUBJECT", "ID", "MATCHED BY")
WIDTHS = (12, 28, 24, 16, 36, 0)


def _clock(arrival: Any) -> str:
    if not isinstance(arrival, int | float) or not arrival:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(arrival)) + f".{int(arrival * 1000) % 1000:03d}"


def row(item: dict[str, Any]) -> str:
    cells = (
        _clock(item.get("arrival")),
        str(item.get("type") or ""),
        str(item.get("source") or ""),
        str(item.get("subject") or "-"),
        str(item.get("id") or ""),
        ", ".join(item.get("matchedBy") or ()) or "(none)",
    )
    return _line(cells)


def _line(cells: tuple[str, ...]) -> str:
    return "  ".join(c.ljust(w) if w else c for c, w in zip(cells, WIDTHS, strict=True)).rstrip()


def main(args: argparse.Namespace) -> int:
    try:
        namespace, broker = ui_client.split_ref(args.broker, "broker")
        return _follow(args, namespace, broker)
    except ui_client.ApiError as exc:
        return ui_client.fail(exc)
    except KeyboardInterrupt:
        return 0


def _follow(args: argparse.Namespace, namespace: str, broker: str) -> int:
    as_json = args.output == "json"
    path = f"/api/brokers/{namespace}/{broker}/tail"
    params = {"format": "ndjson", **({"filter": args.filter} if args.filter else {})}
    seen = 0
    with ui_client.client(args, timeout=None) as c:
        try:
            with c.stream("GET", path, params=params) as response:
                if not response.is_success:
                    response.read()
                    ui_client.answer(response)
                # The server answers once its reader sits at the log's end: from here on, nothing
                # appended is missed. Said on stderr so `-o json` output stays pure.
                print(f"tailing {namespace}/{broker} (Ctrl-C to stop)", file=sys.stderr, flush=True)
                if not as_json:
                    print(_line(COLUMNS), flush=True)
                for line in response.iter_lines():
                    if not line.strip():
                        continue  # keep-alive
                    item = orjson.loads(line)
                    if "id" not in item:
                        dropped = item.get("dropped", 0)
                        print(
                            f"{dropped} events dropped so far: they arrive faster than shown",
                            file=sys.stderr,
                            flush=True,
                        )
                        continue
                    print(line if as_json else row(item), flush=True)
                    seen += 1
                    if args.count and seen >= args.count:
                        return 0
        except httpx.HTTPError as exc:
            raise ui_client.ApiError(f"cannot reach {c.base_url}: {exc}") from None
    return 0
