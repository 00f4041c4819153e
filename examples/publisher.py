"""A tiny HTTP API that publishes a CloudEvent to $K_SINK on each call (standard library only).

    K_SINK=http://127.0.0.1:8080/default/default python examples/publisher.py [--port 8098]

The "exposed API -> event -> trigger" path: a SinkBinding gives the workload running this
program `K_SINK` (where to send) and `K_CE_OVERRIDES` (extensions to add); each
`POST /orders` with a JSON body answers 202 once the event `com.example.order.placed` is accepted
by the sink, and 502 when it is not. Any other path answers 404.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def publish(sink: str, data: bytes) -> tuple[int, str]:
    """POST one binary-mode CloudEvent; (sink's HTTP status or 0, event id)."""
    event_id = str(uuid.uuid4())
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/examples/publisher",
        "ce-type": "com.example.order.placed",
        "content-type": "application/json",
    }
    overrides = os.environ.get("K_CE_OVERRIDES") or ""
    if overrides:
        for name, value in json.loads(overrides).get("extensions", {}).items():
            headers[f"ce-{name}"] = str(value)
    req = urllib.request.Request(sink, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, event_id
    except urllib.error.HTTPError as exc:
        return exc.code, event_id
    except OSError:
        return 0, event_id


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}"
        sink = os.environ.get("K_SINK")
        if self.path != "/orders":
            self._answer(404, {"error": "POST /orders"})
        elif not sink:
            self._answer(503, {"error": "K_SINK is not set: no SinkBinding yet"})
        else:
            status, event_id = publish(sink, body)
            ok = 200 <= status < 300
            self._answer(202 if ok else 502, {"id": event_id, "sink_status": status})

    def _answer(self, status: int, doc: dict[str, object]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8098, help="0 = any free port")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    port = server.server_address[1]
    print(f"publisher listening on http://127.0.0.1:{port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
