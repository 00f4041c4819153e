"""The dispatcher's own tokens: `Authorization: Bearer` for destinations that declare an audience.

Knative's rule: a Trigger's subscriber (or dead-letter sink) that has an audience (the
Destination's `audience`, or the addressable's own) gets a token for that audience naming the
Trigger's identity; one without gets none. Tokens are cached per (subject, audience) until five
minutes before they expire, as Knative's token provider does.

Two ways to get one:
- `LocalSigner` (standalone): signs with a private key kbroker holds (config-features
  `kbroker.oidc-signing-key`), issuer `kbroker.oidc-token-issuer`, key id = the key's RFC 7638
  thumbprint. Receivers verify with the JWKS that `python -m kbroker.filter.tokens KEY.pem`
  prints; kbroker's own ingress trusts the key without being told (replies come back that way).
- `TokenRequestProvider` (Kubernetes): the TokenRequest API for a ServiceAccount.

`TokenSender` wraps the dispatcher's Sender and adds the header by destination URL, so the
delivery code does not change. Replies POSTed back to a Broker carry a token for that Broker's
audience, subject `system:serviceaccount:<broker namespace>:kbroker-dispatcher`.

What this module refuses: sending a token to a destination without an audience (a token is a
credential: it goes only where it was minted for).
"""

from __future__ import annotations

import json
import ssl
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import aiohttp
import jwt
from kbroker.core import contract
from kbroker.core.contract_source import ContractHolder
from kbroker.core.signing import SigningKeyError, load_private_key, public_jwk
from kbroker.filter.sender import Response, Sender, SendError

LIFETIME = 3600.0  # seconds a token is valid (Knative asks for 1 h)
RENEW_BEFORE = 300.0  # seconds before expiry a cached token is replaced


class TokenError(Exception):
    """No token could be made; the text says why."""


class TokenProvider(Protocol):
    async def token(self, subject: str, audience: str) -> str: ...


def dispatcher_identity(namespace: str) -> str:
    return f"system:serviceaccount:{namespace}:kbroker-dispatcher"


class _Cache:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.tokens: dict[tuple[str, str], tuple[str, float]] = {}

    def get(self, subject: str, audience: str) -> str | None:
        hit = self.tokens.get((subject, audience))
        if hit is not None and hit[1] - RENEW_BEFORE > self.clock():
            return hit[0]
        return None

    def put(self, subject: str, audience: str, token: str, expires: float) -> str:
        self.tokens[(subject, audience)] = (token, expires)
        return token


class LocalSigner:
    def __init__(self, key_path: str, issuer: str, clock: Callable[[], float] = time.time) -> None:
        self.key = load_private_key(key_path)
        self.jwk = public_jwk(self.key)
        self.issuer = issuer
        self.cache = _Cache(clock)

    async def token(self, subject: str, audience: str) -> str:
        cached = self.cache.get(subject, audience)
        if cached is not None:
            return cached
        now = self.cache.clock()
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": [audience],
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + LIFETIME),
        }
        token = jwt.encode(
            claims, self.key, algorithm=self.jwk["alg"], headers={"kid": self.jwk["kid"]}
        )
        return self.cache.put(subject, audience, token, now + LIFETIME)


class TokenRequestProvider:
    """TokenRequest (`serviceaccounts/<sa>/token`) for one ServiceAccount of the API server."""

    def __init__(
        self,
        server: str,
        namespace: str,
        service_account: str,
        headers: Mapping[str, str],
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = (
            f"{server.rstrip('/')}/api/v1/namespaces/{namespace}/serviceaccounts/"
            f"{service_account}/token"
        )
        self.headers = dict(headers)
        self.ssl_context = ssl_context
        self.cache = _Cache(clock)

    async def token(self, subject: str, audience: str) -> str:
        # The subject is the ServiceAccount's own; `subject` only keys the cache.
        cached = self.cache.get(subject, audience)
        if cached is not None:
            return cached
        body = {"spec": {"audiences": [audience], "expirationSeconds": int(LIFETIME)}}
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.post(
                    self.url, json=body, headers=self.headers, ssl=self.ssl_context or True
                ) as resp,
            ):
                data = await resp.json(content_type=None)
                if resp.status != 201:
                    raise TokenError(f"TokenRequest: HTTP {resp.status}: {data}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TokenError(f"TokenRequest: {type(exc).__name__}: {exc}") from None
        token = str(data["status"]["token"])
        expires = jwt.decode(token, options={"verify_signature": False})["exp"]
        return self.cache.put(subject, audience, token, float(expires))


class TokenSender:
    """A Sender that adds a token to requests for URLs whose destination declares an audience."""

    def __init__(
        self,
        inner: Sender,
        holder: ContractHolder,
        make_provider: Callable[[contract.OIDC], TokenProvider | None] | None = None,
    ) -> None:
        self.inner = inner
        self.holder = holder
        self.make_provider = make_provider or local_provider
        self._seen: contract.Contract | None = None
        self._oidc: contract.OIDC | None = None
        self._provider: TokenProvider | None = None
        self._provider_error = ""
        self._routes: dict[str, tuple[str, str]] = {}  # url -> (subject, audience)

    def _refresh(self, c: contract.Contract) -> None:
        self._seen = c
        if c.oidc != self._oidc:
            self._oidc = c.oidc
            self._provider, self._provider_error = None, ""
            try:
                self._provider = self.make_provider(c.oidc) if c.oidc is not None else None
            except (SigningKeyError, OSError, ValueError) as exc:
                self._provider_error = f"cannot sign tokens: {exc}"
        routes: dict[str, tuple[str, str]] = {}
        for b in c.brokers:
            if b.audience:
                routes.setdefault(b.address, (dispatcher_identity(b.namespace), b.audience))
        for t in c.triggers:
            if t.subscriber_audience:
                routes.setdefault(t.subscriber_uri, (t.identity, t.subscriber_audience))
            dls = t.delivery.dead_letter_uri
            if dls and t.dead_letter_audience:
                routes.setdefault(dls, (t.identity, t.dead_letter_audience))
        self._routes = routes

    async def send(
        self, url: str, headers: Sequence[tuple[str, str]], body: bytes, timeout: float | None
    ) -> Response:
        current = self.holder.current
        if current is not self._seen:
            self._refresh(current)
        route = self._routes.get(url)
        if route is not None and self._oidc is not None:
            # A destination that wants a token and cannot get one is a failed attempt (retried),
            # never a request without credentials.
            if self._provider is None:
                raise SendError(self._provider_error or "no token source configured")
            try:
                token = await self._provider.token(*route)
            except (TokenError, OSError, ValueError) as exc:
                raise SendError(f"no token for {route[1]!r}: {exc}") from exc
            headers = [*headers, ("authorization", f"Bearer {token}")]
        return await self.inner.send(url, headers, body, timeout)

    async def close(self) -> None:
        await self.inner.close()


def local_provider(oidc: contract.OIDC) -> TokenProvider | None:
    if not oidc.signing_key:
        return None
    return LocalSigner(oidc.signing_key, oidc.token_issuer)


def main(argv: Sequence[str]) -> int:
    """`python -m kbroker.filter.tokens KEY.pem`: the JWKS receivers need for kbroker's tokens."""
    if len(argv) != 1:
        print("usage: python -m kbroker.filter.tokens PRIVATE_KEY.pem", file=sys.stderr)
        return 2
    print(json.dumps({"keys": [public_jwk(load_private_key(argv[0]))]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
