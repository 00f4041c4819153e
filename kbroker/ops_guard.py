"""A bearer token in front of the operational endpoints that tell more than "alive" and "ready".

/status (every Broker and Trigger, their subscribers and errors), /metrics (per-broker and
per-trigger traffic), /contract-generation and /records (a filter process's delivery records) are
for operators; with `--ops-token FILE` they answer 401 unless the request carries
`Authorization: Bearer <the file's content>`. /healthz and /readyz stay open because kubelet
probes carry no credentials, and the event paths are not this module's business (Broker
ingress has its own rules). The token is compared in constant time and re-read when the file
changes (a rotated Secret), so rotating it needs no restart either.

What it refuses: query-string tokens (they end up in access logs), and guarding anything when no
token file is configured: then the wrapped app is returned untouched, at no cost per request.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

GUARDED = ("/status", "/metrics", "/contract-generation", "/records")


class TokenFile:
    """The token in a file; re-read when its mtime changes. An empty or unreadable file admits
    nobody (an unset token must never mean "open")."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: int | None = None
        self._token = b""
        self.read()

    def read(self) -> bytes:
        try:
            mtime = self.path.stat().st_mtime_ns
            if mtime != self._mtime:
                self._token = self.path.read_bytes().strip()
                self._mtime = mtime
        except OSError as exc:
            log.warning("ops token file %s unreadable: %s", self.path, exc)
            self._token, self._mtime = b"", None
        return self._token

    def admits(self, authorization: bytes | None) -> bool:
        token = self.read()
        if not token or authorization is None:
            return False
        scheme, _, given = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(given.strip(), token)


def guarded(path: str) -> bool:
    # Exact paths only: `/status/<name>` is the ingress path of a Broker in namespace "status".
    return path.rstrip("/") in GUARDED


class OpsGuard:
    def __init__(self, app: ASGIApp, token: TokenFile) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and guarded(scope["path"]):
            authorization = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value
                    break
            if not self.token.admits(authorization):
                body = b"operational endpoint: Authorization: Bearer <ops token> required\n"
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-length", str(len(body)).encode()),
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def guard(app: ASGIApp, token_file: Path | None) -> ASGIApp:
    """`app` behind the token in `token_file`; `app` itself when there is none."""
    return app if token_file is None else OpsGuard(app, TokenFile(token_file))
