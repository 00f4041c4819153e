"""kbroker's own token-signing key: loading it and describing its public half as a JWK.

Shared by the dispatcher (which signs with it) and ingress (which trusts it for tokens kbroker
itself minted, e.g. a subscriber's reply re-entering a Broker), so both derive the same key id:
the key's RFC 7638 thumbprint.

What this module refuses: keys other than RSA and EC P-256 (the algorithms ingress accepts are
RS256 and ES256), and encrypted key files (there is nowhere safe to keep the password).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class SigningKeyError(Exception):
    """The key file cannot be used; the text says why."""


def load_private_key(path: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path}: {exc}") from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name != "secp256r1":
        raise SigningKeyError(f"{path}: EC keys must be P-256 (ES256)")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise SigningKeyError(f"{path}: only RSA and EC (P-256) keys are supported")
    return key


def public_jwk(key: PrivateKey) -> dict[str, Any]:
    """The public half as a JWK, with `kid` = its RFC 7638 thumbprint and `alg` set."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        required = {k: jwk[k] for k in ("e", "kty", "n")}
        alg = "RS256"
    else:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        required = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
        alg = "ES256"
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    kid = jwt.utils.base64url_encode(hashlib.sha256(canonical).digest()).decode()
    return {**jwk, "kid": kid, "use": "sig", "alg": alg}
