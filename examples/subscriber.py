"""A tiny CloudEvents subscriber for the README tour (standard library only).

    python examples/subscriber.py [--port 8099]

Prints every delivery. `/orders` replies with a `com.example.order.confirmed` event (which the
broker routes again), `/fail` always answers 500, anything else answers 200 with no body.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        attrs = {k[3:]: v for k, v in self.headers.items() if k.lower().startswith("ce-")}
        print(f"{self.path:<13} {json.dumps(attrs)} data={body[:200]!r}", flush=True)
        if self.path == "/fail":
            self._answer(500, [], b"always failing, on purpose")
        elif self.path == "/orders":
            reply = [
                ("ce-specversion", "1.0"),
                ("ce-id", str(uuid.uuid4())),
                ("ce-source", "/examples/subscriber"),
                ("ce-type", "com.example.order.confirmed"),
                ("content-type", "application/json"),
            ]
            self._answer(200, reply, json.dumps({"confirmed": attrs.get("id")}).encode())
        else:
            self._answer(200, [], b"")

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"subscriber listening on http://127.0.0.1:{args.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
