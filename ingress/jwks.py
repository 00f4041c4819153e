"""The issuer's signing keys (a JWKS), fetched once and again only when a token names a new key.

Where the keys come from: a JWKS file, a JWKS URL, or OIDC discovery (`<base>/.well-known/
openid-configuration`, whose `jwks_uri` is then fetched; the Kubernetes API server serves both).
An unknown `kid` triggers a refetch, because that is what an issuer's key rotation looks like from
here; refetches are rate-limited (`min_refresh` seconds apart) and shared by concurrent requests,
so a flood of tokens with made-up `kid`s costs at most one fetch per interval.

What this module refuses: symmetric keys (`oct`) and keys whose `use` is not `sig` - a verifier
that accepts an HMAC key from a JWKS lets anyone who can read the JWKS forge tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jwt

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 5.0  # seconds for one discovery or JWKS request
DEFAULT_MIN_REFRESH = 10.0  # seconds between two refetches caused by unknown key ids


class JwksError(Exception):
    """The keys could not be fetched or parsed; the text says why."""


class Jwks:
    def __init__(
        self,
        jwks: str = "",
        discovery_url: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        token_file: str = "",
        min_refresh: float = DEFAULT_MIN_REFRESH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.location = jwks
        self.discovery_url = discovery_url.rstrip("/")
        self.headers = dict(headers or {})
        self.token_file = token_file  # read at every fetch: projected tokens rotate
        self.ssl_context = ssl_context
        self.min_refresh = min_refresh
        self.clock = clock
        self.discovered_issuer = ""
        self.fetches = 0  # how many times the keys were (re)loaded; for tests and logs
        self._keys: dict[str, jwt.PyJWK] = {}
        self._anonymous: list[jwt.PyJWK] = []  # keys without a kid
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The signing key named `kid` (None: the only key without a kid), refetching the set
        once if it is unknown and the last fetch is old enough; None when there is no such key."""
        found = self._lookup(kid)
        if found is not None:
            return found
        async with self._lock:
            found = self._lookup(kid)  # another request may have refetched meanwhile
            if found is not None:
                return found
            now = self.clock()
            if self._loaded_at is not None and now - self._loaded_at < self.min_refresh:
                return None
            try:
                await self.refresh()
            finally:
                self._loaded_at = self.clock()
            return self._lookup(kid)

    async def issuer(self) -> str:
        """The discovered issuer ("" without discovery); loads the keys first if needed."""
        if self._loaded_at is None:
            async with self._lock:
                if self._loaded_at is None:
                    try:
                        await self.refresh()
                    finally:
                        self._loaded_at = self.clock()
        return self.discovered_issuer

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return self._anonymous[0] if len(self._anonymous) == 1 else None
        return self._keys.get(kid)

    async def refresh(self) -> None:
        location = self.location
        if not location and not self.discovery_url:
            raise JwksError("neither kbroker.oidc-jwks nor oidc-discovery-base-url is set")
        if not location:
            doc = await self._get_json(f"{self.discovery_url}/.well-known/openid-configuration")
            location = str(doc.get("jwks_uri") or "")
            self.discovered_issuer = str(doc.get("issuer") or "")
            if not location:
                raise JwksError(f"{self.discovery_url}: discovery document has no jwks_uri")
        if location.startswith(("http://", "https://")):
            data = await self._get_json(location)
        else:
            try:
                text = await asyncio.to_thread(Path(location).read_text)
                data = json.loads(text)
            except (OSError, ValueError) as exc:
                raise JwksError(f"{location}: {exc}") from None
        self._install(data, location)
        self.fetches += 1

    def _install(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
            raise JwksError(f"{where}: not a JWKS (no `keys` list)")
        keys: dict[str, jwt.PyJWK] = {}
        anonymous: list[jwt.PyJWK] = []
        for raw in data["keys"]:
            if not isinstance(raw, Mapping) or raw.get("kty") not in ("RSA", "EC"):
                continue
            if raw.get("use", "sig") != "sig":
                continue
            try:
                k = jwt.PyJWK(dict(raw))
            except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:
                log.warning("%s: skipping key %s: %s", where, raw.get("kid"), exc)
                continue
            if raw.get("kid"):
                keys[str(raw["kid"])] = k
            else:
                anonymous.append(k)
        self._keys, self._anonymous = keys, anonymous
        log.info("loaded %d signing key(s) from %s", len(keys) + len(anonymous), where)

    async def _get_json(self, url: str) -> Mapping[str, Any]:
        # Imported here: an ingress without OIDC (every extra `--processes` ingress among them)
        # never loads the HTTP client library.
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
        headers = self.headers
        if self.token_file:
            try:
                token = (await asyncio.to_thread(Path(self.token_file).read_text)).strip()
            except OSError as exc:
                raise JwksError(f"{self.token_file}: {exc}") from None
            headers = {**headers, "Authorization": f"Bearer {token}"}
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, headers=headers, ssl=self.ssl_context or True) as resp,
            ):
                if resp.status != 200:
                    raise JwksError(f"GET {url}: HTTP {resp.status}")
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise JwksError(f"GET {url}: {type(exc).__name__}: {exc}") from None
        if not isinstance(data, Mapping):
            raise JwksError(f"GET {url}: not a JSON object")
        return data
