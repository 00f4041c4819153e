"""Who may use the console, and proof that a write came from one of its own pages.

Three checks, in one ASGI wrapper around the whole console so no route can forget them:

- **Token.** With `settings.token` set, every request needs `Authorization: Bearer <token>` or
  the `kbroker-ui-token` cookie that `/login` sets (a browser cannot add a header to a page
  navigation). Compared in constant time. Without a token the console is for loopback only.
- **Host.** Without a token, the `Host` header must name the loopback interface: a page on
  another site cannot reach us by rebinding its DNS name to 127.0.0.1.
- **CSRF** (double-submit). Every response carries a random `kbroker-ui-csrf` cookie (SameSite
  strict); every write (POST, PUT, PATCH, DELETE) must echo it in an `X-CSRF-Token` header
  (htmx sends it from the page's `hx-headers`) or a `csrf_token` form field, else 403. A
  cross-site page can make the browser send the cookie but cannot read it to echo it. A request
  whose `Origin` names another host is refused as well.

What it refuses: tokens in query strings (they end up in logs and browser history).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "kbroker-ui-csrf"
TOKEN_COOKIE = "kbroker-ui-token"
CSRF_HEADER = b"x-csrf-token"
CSRF_FIELD = "csrf_token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
MAX_FORM = 1 << 20  # bytes of a urlencoded form read to find its csrf_token


def is_loopback(host: str) -> bool:
    """True for a host name or address that can only mean this machine."""
    h = host.strip().lower()
    if h.startswith("["):
        h = h[1:].split("]", 1)[0]
    return h in LOOPBACK_HOSTS or h.startswith("127.")


def _host_only(value: str) -> str:
    """`host:port` -> `host` (IPv6 in brackets kept whole), lower case."""
    value = value.lower()
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", ())}


def _cookies(headers: dict[bytes, bytes]) -> dict[str, str]:
    raw = headers.get(b"cookie", b"").decode("latin-1")
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header is no cookie, not a 500
        return {}
    return {k: m.value for k, m in jar.items()}


def _same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


class Guard:
    """The console's ASGI wrapper: token, host, CSRF (see the module docstring)."""

    def __init__(self, app: ASGIApp, token: str = "", secure_cookies: bool = False) -> None:
        self.app = app
        self.token = token
        self.secure = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        cookies = _cookies(headers)
        if not self._admitted(scope, headers, cookies):
            await _plain(send, 401, "the console needs its token: open /-/ui/login\n")
            return
        host = _host_only(headers.get(b"host", b"").decode("latin-1")).lower()
        if not self.token and not is_loopback(host):
            await _plain(send, 403, "the console answers on the loopback host only\n")
            return
        origin = headers.get(b"origin", b"").decode("latin-1")
        if origin and origin != "null" and _host_only(urlsplit(origin).netloc) != host:
            await _plain(send, 403, "cross-origin request refused\n")
            return
        csrf = cookies.get(CSRF_COOKIE, "")
        fresh = not csrf
        if fresh:
            csrf = secrets.token_urlsafe(24)
        scope.setdefault("state", {})["csrf"] = csrf
        if scope["method"] in UNSAFE:
            given = headers.get(CSRF_HEADER, b"").decode("latin-1")
            if not given and headers.get(b"content-type", b"").startswith(
                b"application/x-www-form-urlencoded"
            ):
                body, receive = await _buffer(receive)
                if body is None:
                    await _plain(send, 413, "form too large\n")
                    return
                values = parse_qs(body.decode("utf-8", "replace")).get(CSRF_FIELD, [""])
                given = values[0]
            if fresh or not _same(given, csrf):
                await _plain(send, 403, "missing or wrong CSRF token: reload the page\n")
                return
        if not fresh:
            await self.app(scope, receive, send)
            return
        cookie = self._cookie(CSRF_COOKIE, csrf, scope)

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), cookie]}
            await send(message)

        await self.app(scope, receive, with_cookie)

    def _admitted(self, scope: Scope, headers: dict[bytes, bytes], cookies: dict[str, str]) -> bool:
        if not self.token:
            return True
        root = str(scope.get("root_path", ""))
        path = str(scope["path"])
        relative = path[len(root) :] if root and path.startswith(root) else path
        if relative.rstrip("/") == "/login" or relative.startswith("/static/"):
            return True  # the page that asks for the token, and its stylesheet and scripts
        scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and _same(given.strip(), self.token):
            return True
        return _same(cookies.get(TOKEN_COOKIE, ""), self.token)

    def _cookie(self, name: str, value: str, scope: Scope) -> tuple[bytes, bytes]:
        path = scope.get("root_path") or "/"
        flags = f"; Path={path}; SameSite=Strict" + ("; Secure" if self.secure else "")
        return (b"set-cookie", f"{name}={value}{flags}".encode("latin-1"))


def login_cookie(token: str, path: str, secure: bool) -> str:
    """The Set-Cookie value `/login` answers with once the token given is right."""
    flags = f"; Path={path or '/'}; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
    return f"{TOKEN_COOKIE}={token}{flags}"


async def _buffer(receive: Receive) -> tuple[bytes | None, Receive]:
    """Read the request body (up to MAX_FORM) and a `receive` that replays it to the route."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM:
            return None, receive
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers: Iterable[tuple[bytes, bytes]] = (
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    )
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})
