"""How the CLI twins (`kbroker tail`, `kbroker trigger test`) talk to a running console's API.

One place for the console's address (`--server` plus `/-/ui`), its token (`--token` or the
KBROKER_UI_TOKEN environment variable, sent as a bearer token) and the CSRF double-submit its
writes need (the console sets a cookie on any read; the client echoes it in a header), so the
commands call the very service layer the pages use.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx
import orjson

from kbroker.core import settings

CONSOLE = "/-/ui"
DEFAULT_SERVER = "http://127.0.0.1:8080"
CSRF_COOKIE = "kbroker-ui-csrf"  # ui/security.py's names; the CLI must not import the console
CSRF_HEADER = "x-csrf-token"


class ApiError(Exception):
    """The console answered with an error, or could not be reached: one line for stderr."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=DEFAULT_SERVER, help="the running kbroker")
    p.add_argument(
        "--token",
        default=None,
        help="the console's bearer token (default: $KBROKER_UI_TOKEN)",
    )


def split_ref(ref: str, what: str) -> tuple[str, str]:
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ApiError(f"expected NAMESPACE/{what.upper()}, got {ref!r}")
    return namespace, name


def client(args: argparse.Namespace, timeout: float | None = 30.0) -> httpx.Client:
    token = args.token if args.token is not None else (settings.env("KBROKER_UI_TOKEN") or "")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    base = args.server.rstrip("/") + CONSOLE
    return httpx.Client(base_url=base, headers=headers, timeout=timeout)


def answer(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer; ApiError with the console's message otherwise."""
    if response.is_success:
        return orjson.loads(response.content)
    try:
        message = orjson.loads(response.content).get("error", "")
    except (orjson.JSONDecodeError, AttributeError):
        message = response.text.strip()
    if response.status_code == 404 and not message.strip():
        message = "not found: is the console served at this --server?"
    raise ApiError(f"{response.status_code}: {message or response.reason_phrase}")


def get(c: httpx.Client, path: str, **params: Any) -> Any:
    try:
        return answer(c.get(path, params={k: v for k, v in params.items() if v is not None}))
    except httpx.HTTPError as exc:
        raise ApiError(f"cannot reach {c.base_url}: {exc}") from None


def post(c: httpx.Client, path: str, body: dict[str, Any]) -> Any:
    """POST JSON with the CSRF token the console hands out on any read."""
    try:
        if CSRF_COOKIE not in c.cookies:
            c.get("/api/cesql/check")  # any console URL sets the cookie; this one is cheap
        csrf = c.cookies.get(CSRF_COOKIE) or ""
        return answer(
            c.post(
                path,
                content=orjson.dumps(body),
                headers={"content-type": "application/json", CSRF_HEADER: csrf},
            )
        )
    except httpx.HTTPError as exc:
        raise ApiError(f"cannot reach {c.base_url}: {exc}") from None


def fail(exc: ApiError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1
