"""Sender authentication and authorization at ingress (Knative's authentication-oidc + EventPolicy).

`Gate.authenticate` runs before the body is read (a sender without a valid token never costs us
its upload): the `Authorization: Bearer <JWT>` header must carry a token signed by a key of the
issuer's JWKS (RS256 or ES256 only), with `aud` containing the Broker's audience, an allowed
`iss`, and `exp`/`nbf` within the leeway; its `sub` is the sender's identity. `Gate.authorize`
runs after decoding, because EventPolicy filters look at the events. Failures raise `Denied`:
401 with `WWW-Authenticate` for authentication, 403 for authorization, each with a reason label
for the metrics.

Cost when authentication-oidc is off: none here. Ingress calls the gate only for Brokers whose
contract entry has an audience, which the controller sets only when the feature is on.

What this module refuses: the `none` algorithm and HMAC algorithms (whoever can read a JWKS must
not be able to forge tokens), tokens in query parameters, and reading anything but the contract
(keys come from the files or URLs the contract names).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Sequence

import jwt
from kbroker.core import contract, events, signing
from kbroker.core.contract_source import ContractHolder
from kbroker.ingress.authz import Authorizer
from kbroker.ingress.jwks import Jwks, JwksError

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256")
MAX_CACHED_TOKENS = 10_000  # verified tokens remembered until they expire
_RETRY_SOON = ((b"retry-after", b"1"),)


class Denied(Exception):
    """A request refused by authentication (401) or authorization (403)."""

    def __init__(
        self, status: int, reason: str, message: str, headers: tuple[tuple[bytes, bytes], ...]
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason  # a short, fixed label (metrics)
        self.message = message
        self.headers = headers


def _unauthorized(reason: str, message: str, error: str | None = "invalid_token") -> Denied:
    challenge = 'Bearer realm="kbroker"'
    if error:
        safe = message.replace("\\", "\\\\").replace('"', "'")
        challenge += f', error="{error}", error_description="{safe}"'
    return Denied(401, reason, message, ((b"www-authenticate", challenge.encode()),))


def bearer(headers: Sequence[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _unauthorized("malformed", "Authorization must be `Bearer <token>`")
            return token.strip()
    raise _unauthorized("missing", "no bearer token: this broker requires one", error=None)


class Verifier:
    """Checks tokens against one contract's OIDC settings."""

    def __init__(
        self,
        oidc: contract.OIDC,
        jwks: Jwks,
        clock: Callable[[], float] = time.time,
        local: tuple[str, jwt.PyJWK] | None = None,
    ):
        self.oidc = oidc
        self.jwks = jwks
        self.clock = clock
        self.local = local  # (kid, key) of the dispatcher's own signing key, trusted as is
        self._verified: dict[tuple[str, str], tuple[str, float]] = {}  # (token, aud) -> sub, exp

    async def subject(self, token: str, audience: str) -> str:
        cached = self._verified.get((token, audience))
        now = self.clock()
        if cached is not None and now <= cached[1] + self.oidc.leeway:
            return cached[0]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise _unauthorized("malformed", f"malformed token: {exc}") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _unauthorized("algorithm", f"token algorithm {alg!r} is not RS256 or ES256")
        kid = header.get("kid")
        if self.local is not None and kid == self.local[0]:
            key, issuers = self.local[1], {self.oidc.token_issuer}
        else:
            key, issuers = await self._issuer_key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                leeway=self.oidc.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("expired", "token expired") from None
        except jwt.ImmatureSignatureError:
            raise _unauthorized("not_yet_valid", "token not valid yet (nbf/iat)") from None
        except jwt.InvalidAudienceError:
            raise _unauthorized("audience", f"token audience is not {audience!r}") from None
        except jwt.InvalidSignatureError:
            raise _unauthorized("signature", "token signature does not verify") from None
        except jwt.PyJWTError as exc:  # missing claims, a key of the wrong type, ...
            raise _unauthorized("invalid", f"invalid token: {exc}") from None
        if claims.get("iss") not in issuers:
            raise _unauthorized("issuer", f"token issuer {claims.get('iss')!r} is not allowed")
        subject = str(claims["sub"])
        if len(self._verified) >= MAX_CACHED_TOKENS:
            self._verified.clear()
        self._verified[(token, audience)] = (subject, float(claims["exp"]))
        return subject

    async def _issuer_key(self, kid: object) -> tuple[jwt.PyJWK, set[str]]:
        try:
            key = await self.jwks.key(str(kid) if kid is not None else None)
            issuers = set(self.oidc.issuers) or {await self.jwks.issuer()}
        except JwksError as exc:
            log.error("cannot load the issuer's keys: %s", exc)
            raise _unauthorized("keys_unavailable", "the issuer's keys cannot be loaded") from None
        if key is None:
            raise _unauthorized("unknown_key", f"token signed by an unknown key (kid {kid!r})")
        return key, issuers


def build_verifier(oidc: contract.OIDC) -> Verifier:
    local = None
    if oidc.signing_key:
        try:
            jwk = signing.public_jwk(signing.load_private_key(oidc.signing_key))
            local = (str(jwk["kid"]), jwt.PyJWK(jwk))
        except (signing.SigningKeyError, jwt.PyJWKError) as exc:
            log.error("kbroker.oidc-signing-key: %s: replies will not authenticate", exc)
    tls = None
    if oidc.ca_file:
        try:
            tls = ssl.create_default_context(cafile=oidc.ca_file)
        except (OSError, ssl.SSLError) as exc:
            log.error("kbroker.oidc-discovery-ca-file: %s: using the system's trust store", exc)
    jwks = Jwks(oidc.jwks, oidc.discovery_url, ssl_context=tls, token_file=oidc.token_file)
    return Verifier(oidc, jwks, local=local)


class Gate:
    """Authentication and authorization for one ingress, following the contract's settings."""

    def __init__(
        self,
        holder: ContractHolder,
        make_verifier: Callable[[contract.OIDC], Verifier] = build_verifier,
    ) -> None:
        self.holder = holder
        self.make_verifier = make_verifier
        self.authorizer = Authorizer()
        self._verifier: Verifier | None = None

    def _current(self) -> tuple[contract.OIDC, Verifier]:
        oidc = self.holder.current.oidc
        if oidc is None:  # the Broker came from a contract with OIDC, the holder has moved on
            raise Denied(503, "reconfiguring", "authentication settings are changing", _RETRY_SOON)
        verifier = self._verifier
        if verifier is None or (verifier.oidc is not oidc and verifier.oidc != oidc):
            verifier = self._verifier = self.make_verifier(oidc)
        return oidc, verifier

    async def authenticate(
        self, headers: Sequence[tuple[bytes, bytes]], broker: contract.Broker
    ) -> str:
        """The sender's subject; raises Denied (401)."""
        token = bearer(headers)
        _, verifier = self._current()
        return await verifier.subject(token, broker.audience)

    def authorize(
        self, broker: contract.Broker, subject: str, evs: Sequence[events.CloudEvent]
    ) -> None:
        """Raises Denied (403) unless `subject` may send `evs` to `broker`."""
        oidc, _ = self._current()
        why = self.authorizer.denial(broker, oidc.default_mode, subject, evs)
        if why is not None:
            reason = "policy" if broker.policies else oidc.default_mode.value
            raise Denied(403, reason, why, ())
