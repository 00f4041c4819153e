"""Sender authentication at ingress with real tokens, a real JWKS server and the real ASGI app:
the answers Knative's OIDC conformance asks for (401 on a missing, expired, wrong-audience or
badly signed token; 2xx exactly once on a valid one) plus key rotation and the feature switch."""

from __future__ import annotations

import base64
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import jwt
import pytest
from fixtures.issuer import Issuer, ec_key, rsa_key
from kbroker.core import contract
from kbroker.core.channels.memory import MemoryChannel
from kbroker.core.contract_source import ContractHolder
from kbroker.core.metrics import Metrics
from kbroker.core.settings import IngressSettings
from kbroker.ingress.app import build_app

AUDIENCE = "eventing.knative.dev/broker/ns/b"
SUB = "system:serviceaccount:ns:sender"
BROKER = contract.Broker("ns", "b", "uid", "http://x/ns/b", channel="memory", audience=AUDIENCE)
EVENT = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}


async def _ready() -> tuple[bool, str]:
    return True, "ok"


@dataclasses.dataclass
class Setup:
    client: httpx.AsyncClient
    channel: MemoryChannel
    holder: ContractHolder
    metrics: Metrics

    async def post(self, token: str | None, path: str = "/ns/b") -> httpx.Response:
        headers = dict(EVENT)
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return await self.client.post(path, headers=headers, content=b"{}")

    def denied(self, code: int, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "kbroker_broker_ingress_auth_denied_total",
            {
                "namespace_name": "ns",
                "broker_name": "b",
                "response_code": str(code),
                "reason": reason,
            },
        )
        return value or 0.0


def stored(channel: MemoryChannel) -> list[object]:
    log = channel.store.logs.get(BROKER.key)
    return [r.envelope.event.attributes["id"] for r in log.records] if log else []


def oidc(issuer: Issuer, **kw: object) -> contract.OIDC:
    return contract.OIDC(issuers=(issuer.issuer,), jwks=issuer.url, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def setup(issuer: Issuer) -> AsyncIterator[Setup]:
    channel = MemoryChannel()
    holder = ContractHolder(contract.Contract(1, (BROKER,), oidc=oidc(issuer)))
    metrics = Metrics()
    app = build_app(IngressSettings(), {"memory": channel}, holder, _ready, observer=metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield Setup(c, channel, holder, metrics)


async def test_valid_token_is_accepted_exactly_once(setup: Setup, issuer: Issuer) -> None:
    r = await setup.post(issuer.token(SUB, AUDIENCE))
    assert r.status_code == 202, r.text
    assert stored(setup.channel) == ["1"]


async def test_es256_and_audience_lists(setup: Setup, issuer: Issuer) -> None:
    issuer.keys.append(ec_key("ec1"))
    token = issuer.token(SUB, ["other", AUDIENCE], key=issuer.keys[1])
    assert (await setup.post(token)).status_code == 202


def _corrupt(token: str) -> str:
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[0] ^= 0xFF
    return f"{head}.{body}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "missing"),
        ("not bearer", "malformed"),
        ("garbage", "malformed"),
        ("expired", "expired"),
        ("not yet valid", "not_yet_valid"),
        ("wrong audience", "audience"),
        ("another broker's audience", "audience"),
        ("bad signature", "signature"),
        ("signed by a stranger", "unknown_key"),
        ("other issuer", "issuer"),
        ("alg none", "algorithm"),
        ("HS256 with the public key", "algorithm"),
        ("no sub", "invalid"),
    ],
)
async def test_bad_tokens_get_401(setup: Setup, issuer: Issuer, case: str, reason: str) -> None:
    now = time.time()
    tokens: dict[str, Callable[[], str | None]] = {
        "missing": lambda: None,
        "garbage": lambda: "not.a.jwt",
        "expired": lambda: issuer.token(SUB, AUDIENCE, now=now - 3600, lifetime=600),
        "not yet valid": lambda: issuer.token(SUB, AUDIENCE, nbf=int(now + 3600)),
        "wrong audience": lambda: issuer.token(SUB, "somebody-else"),
        "another broker's audience": lambda: issuer.token(
            SUB, "eventing.knative.dev/broker/ns/other"
        ),
        "bad signature": lambda: _corrupt(issuer.token(SUB, AUDIENCE)),
        "signed by a stranger": lambda: issuer.token(SUB, AUDIENCE, key=rsa_key("k-unknown")),
        "other issuer": lambda: dataclasses.replace(issuer, issuer="https://evil").token(
            SUB, AUDIENCE
        ),
        "alg none": lambda: jwt.encode(
            {"sub": SUB, "aud": AUDIENCE, "iss": issuer.issuer, "exp": int(now + 60)},
            None,  # type: ignore[arg-type]
            algorithm="none",
            headers={"kid": "k1"},
        ),
        "HS256 with the public key": lambda: jwt.encode(
            {"sub": SUB, "aud": AUDIENCE, "iss": issuer.issuer, "exp": int(now + 60)},
            "k1-public-material-long-enough-for-hs256",
            algorithm="HS256",
            headers={"kid": "k1"},
        ),
        "no sub": lambda: jwt.encode(
            {"aud": AUDIENCE, "iss": issuer.issuer, "exp": int(now + 60)},
            issuer.keys[0].private,
            algorithm="RS256",
            headers={"kid": "k1"},
        ),
    }
    if case == "not bearer":
        r = await setup.client.post("/ns/b", headers={**EVENT, "authorization": "Basic eDp5"})
    else:
        r = await setup.post(tokens[case]())
    assert r.status_code == 401, (case, r.text)
    assert r.headers["www-authenticate"].startswith('Bearer realm="kbroker"')
    assert stored(setup.channel) == []
    assert setup.denied(401, reason) == 1.0


async def test_same_kid_other_key_is_a_bad_signature(setup: Setup, issuer: Issuer) -> None:
    r = await setup.post(issuer.token(SUB, AUDIENCE, key=rsa_key("k1")))
    assert r.status_code == 401
    assert "signature" in r.text


async def test_leeway_accepts_a_small_clock_skew(setup: Setup, issuer: Issuer) -> None:
    just_expired = issuer.token(SUB, AUDIENCE, now=time.time() - 630, lifetime=600)
    assert (await setup.post(just_expired)).status_code == 202  # 30 s late, leeway 60 s
    setup.holder.current = dataclasses.replace(setup.holder.current, oidc=oidc(issuer, leeway=0.0))
    assert (await setup.post(just_expired)).status_code == 401


async def test_key_rotation_refetches_the_jwks_once(setup: Setup, issuer: Issuer) -> None:
    assert (await setup.post(issuer.token(SUB, AUDIENCE))).status_code == 202
    assert issuer.requests == 1
    issuer.keys = [rsa_key("k2")]  # the issuer rotates; our cache still has only k1
    gate = setup.client._transport.app.ingress.auth  # type: ignore[attr-defined]
    assert gate._verifier is not None
    gate._verifier.jwks.min_refresh = 0.0
    assert (await setup.post(issuer.token(SUB, AUDIENCE))).status_code == 202
    assert issuer.requests == 2
    # The cached token of the old key stays valid until it expires; new k1 tokens do not verify.
    assert (await setup.post(issuer.token(SUB, AUDIENCE, key=rsa_key("k1")))).status_code == 401


async def test_unknown_kids_cannot_force_a_fetch_per_request(setup: Setup, issuer: Issuer) -> None:
    assert (await setup.post(issuer.token(SUB, AUDIENCE))).status_code == 202
    for i in range(5):
        r = await setup.post(issuer.token(SUB, AUDIENCE, key=rsa_key(f"made-up-{i}")))
        assert r.status_code == 401
    assert issuer.requests == 1  # within min_refresh of the first fetch: no refetch at all


async def test_feature_disabled_means_no_check(setup: Setup, issuer: Issuer) -> None:
    setup.holder.current = contract.Contract(
        2, (dataclasses.replace(BROKER, audience=""),), oidc=None
    )
    assert (await setup.post(None)).status_code == 202
    assert (await setup.post("garbage")).status_code == 202
    assert issuer.requests == 0


async def test_jwks_file_and_unreachable_keys(tmp_path: Path, issuer: Issuer) -> None:
    channel = MemoryChannel()
    path = issuer.write(tmp_path / "jwks.json")
    holder = ContractHolder(
        contract.Contract(1, (BROKER,), oidc=contract.OIDC((issuer.issuer,), str(path)))
    )
    app = build_app(IngressSettings(), {"memory": channel}, holder, _ready)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        ok = await c.post(
            "/ns/b", headers={**EVENT, "authorization": f"Bearer {issuer.token(SUB, AUDIENCE)}"}
        )
        assert ok.status_code == 202
        holder.current = contract.Contract(
            2, (BROKER,), oidc=contract.OIDC((issuer.issuer,), str(tmp_path / "missing.json"))
        )
        down = await c.post(
            "/ns/b", headers={**EVENT, "authorization": f"Bearer {issuer.token(SUB, AUDIENCE)}"}
        )
        assert down.status_code == 401
        assert "keys cannot be loaded" in down.text
