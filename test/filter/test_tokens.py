"""The dispatcher's tokens: which URLs get one, for which audience and subject, cached how long,
and what happens when none can be made."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from kbroker.core import contract, signing
from kbroker.core.contract_source import ContractHolder
from kbroker.filter.sender import Response, SendError
from kbroker.filter.tokens import LIFETIME, RENEW_BEFORE, LocalSigner, TokenSender, main


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []

    async def send(
        self, url: str, headers: Sequence[tuple[str, str]], body: bytes, timeout: float | None
    ) -> Response:
        self.sent.append((url, dict(headers)))
        return Response(202, {}, (), b"")

    async def close(self) -> None:
        pass


def write_key(path: Path, kind: str = "ec") -> Path:
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ec"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def holder_for(key: str) -> ContractHolder:
    broker = contract.Broker("ns", "b", "u", "http://in/ns/b", audience="aud-b")
    plain = contract.Broker("ns", "p", "u", "http://in/ns/p")
    trig = contract.Trigger(
        "ns",
        "t",
        contract.TriggerUid("t"),
        "b",
        "http://sink/",
        delivery=contract.DeliverySpec(dead_letter_uri="http://dls/"),
        subscriber_audience="aud-sink",
        dead_letter_audience="aud-dls",
        identity="system:serviceaccount:ns:t-oidc-eventing.knative.dev-trigger",
    )
    other = contract.Trigger("ns", "o", contract.TriggerUid("o"), "b", "http://other/")
    oidc = contract.OIDC(issuers=("x",), jwks="/j", signing_key=key)
    return ContractHolder(contract.Contract(1, (broker, plain), (trig, other), oidc=oidc))


@pytest.mark.parametrize("kind", ["ec", "rsa"])
async def test_tokens_by_destination(tmp_path: Path, kind: str) -> None:
    key = write_key(tmp_path / "k.pem", kind)
    inner = Recorder()
    sender = TokenSender(inner, holder_for(str(key)))
    for url in ("http://sink/", "http://dls/", "http://in/ns/b", "http://other/", "http://in/ns/p"):
        await sender.send(url, [("ce-id", "1")], b"", 1.0)
    jwk = jwt.PyJWK(signing.public_jwk(signing.load_private_key(str(key))))
    got: dict[str, tuple[object, object] | None] = {}
    for url, headers in inner.sent:
        auth = headers.get("authorization")
        if auth is None:
            got[url] = None
            continue
        claims = jwt.decode(
            auth.removeprefix("Bearer "),
            jwk,
            algorithms=["RS256", "ES256"],
            options={"verify_aud": False},
        )
        assert claims["iss"] == "kbroker" and claims["exp"] - claims["iat"] == LIFETIME
        got[url] = (claims["aud"], claims["sub"])
    trigger_sa = "system:serviceaccount:ns:t-oidc-eventing.knative.dev-trigger"
    assert got == {
        "http://sink/": (["aud-sink"], trigger_sa),
        "http://dls/": (["aud-dls"], trigger_sa),
        "http://in/ns/b": (["aud-b"], "system:serviceaccount:ns:kbroker-dispatcher"),
        "http://other/": None,
        "http://in/ns/p": None,
    }


async def test_no_tokens_when_the_feature_is_off(tmp_path: Path) -> None:
    holder = holder_for(str(write_key(tmp_path / "k.pem")))
    holder.current = contract.Contract(2, holder.current.brokers, holder.current.triggers)
    inner = Recorder()
    await TokenSender(inner, holder).send("http://sink/", [], b"", 1.0)
    assert "authorization" not in inner.sent[0][1]


@pytest.mark.parametrize("key", ["", "/does/not/exist.pem"])
async def test_a_destination_wanting_a_token_fails_without_one(key: str) -> None:
    inner = Recorder()
    sender = TokenSender(inner, holder_for(key))
    with pytest.raises(SendError):
        await sender.send("http://sink/", [], b"", 1.0)
    await sender.send("http://other/", [], b"", 1.0)  # no audience: unaffected
    assert [u for u, _ in inner.sent] == ["http://other/"]


async def test_signer_caches_until_shortly_before_expiry(tmp_path: Path) -> None:
    now = [1000.0]
    signer = LocalSigner(str(write_key(tmp_path / "k.pem")), "kbroker", clock=lambda: now[0])
    first = await signer.token("s", "a")
    now[0] += LIFETIME - RENEW_BEFORE - 1
    assert await signer.token("s", "a") == first
    assert await signer.token("s", "other") != first
    now[0] += 2
    assert await signer.token("s", "a") != first


def test_jwks_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    key = write_key(tmp_path / "k.pem")
    assert main([str(key)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (
        printed["keys"][0]["kid"] == signing.public_jwk(signing.load_private_key(str(key)))["kid"]
    )
    assert main([]) == 2
