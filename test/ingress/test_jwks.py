"""ingress/jwks: where keys come from (file, URL, discovery), what is refused, and how often an
unknown key id may cause a refetch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.issuer import Issuer, ec_key, rsa_key
from kbroker.ingress.jwks import Jwks, JwksError


async def test_discovery(issuer: Issuer) -> None:
    base = issuer.url.removesuffix("/jwks")
    jwks = Jwks(discovery_url=base)
    assert await jwks.key("k1") is not None
    assert await jwks.issuer() == issuer.issuer


async def test_refetch_is_rate_limited(issuer: Issuer) -> None:
    now = [0.0]
    jwks = Jwks(issuer.url, min_refresh=10.0, clock=lambda: now[0])
    assert await jwks.key("k1") is not None
    issuer.keys.append(ec_key("k2"))
    assert await jwks.key("k2") is None  # too soon after the first fetch
    assert issuer.requests == 1
    now[0] = 10.0
    assert await jwks.key("k2") is not None
    assert await jwks.key("k3") is None
    assert issuer.requests == 2


@pytest.mark.parametrize(
    ("doc", "kids"),
    [
        ({"keys": []}, []),
        ({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}, []),  # HMAC: refused
        ({"keys": [{**rsa_key("enc").jwk(), "use": "enc"}]}, []),  # encryption key: refused
        ({"keys": [rsa_key("r").jwk(), {"kty": "RSA", "kid": "broken"}]}, ["r"]),
    ],
)
async def test_what_a_jwks_file_yields(tmp_path: Path, doc: object, kids: list[str]) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(doc))
    jwks = Jwks(str(path), min_refresh=0.0)
    for kid in ("h", "enc", "r", "broken"):
        assert (await jwks.key(kid) is not None) is (kid in kids)


@pytest.mark.parametrize("content", ["not json", "[]", '{"keys": 1}'])
async def test_bad_files_raise(tmp_path: Path, content: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(content)
    with pytest.raises(JwksError):
        await Jwks(str(path)).key("k")


async def test_nothing_configured_raises() -> None:
    with pytest.raises(JwksError):
        await Jwks().key("k")
