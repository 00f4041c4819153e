"""Sender authentication and EventPolicy through the real `kbroker run`, a real JWKS server and
real tokens, as Knative's OIDC and AuthZ conformance features exercise them:

    test --token--> kbroker run --verify--> JWKS server (fixture issuer)
                      |--202/401/403
                      '--dispatch (+ kbroker's own token)--> sink
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from e2e import knative_yaml as ky
from fixtures.broker import StartBroker, make_event
from fixtures.issuer import Issuer
from fixtures.subscriber import SinkServer
from kbroker.core import signing

AUDIENCE = "eventing.knative.dev/broker/default/default"
ALLOWED = "system:serviceaccount:default:allowed"
FILTERED = "system:serviceaccount:other:filtered"


def config_features(issuer: Issuer, key: Path, **extra: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "config-features", "namespace": "knative-eventing"},
        "data": {
            "authentication-oidc": "enabled",
            "kbroker.oidc-issuers": issuer.issuer,
            "kbroker.oidc-jwks": issuer.url,
            "kbroker.oidc-signing-key": str(key),
            **extra,
        },
    }


def policy(name: str, subjects: list[str], filters: list[Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "to": [
            {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}}
        ],
        "from": [{"sub": s} for s in subjects],
    }
    if filters:
        spec["filters"] = filters
    return {
        "apiVersion": "eventing.knative.dev/v1alpha1",
        "kind": "EventPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def write_key(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    return path


async def test_oidc_and_event_policies(
    start_broker: StartBroker, sinks: SinkServer, issuer: Issuer, tmp_path: Path
) -> None:
    key = write_key(tmp_path / "dispatcher.pem")
    sink = sinks.sink("s")
    trigger = ky.trigger("t", sink.url)
    trigger["spec"]["subscriber"]["audience"] = "my-sink"
    proc = await start_broker(
        {
            "all.yaml": ky.dump(
                config_features(issuer, key),
                ky.broker(),
                trigger,
                policy("senders", [ALLOWED]),
                policy(
                    "filtered",
                    [FILTERED],
                    filters=[{"exact": {"type": "com.example.ok"}}],
                ),
            )
        }
    )
    await proc.wait_ready_object("Broker", "default")
    broker = await proc.object_status("Broker", "default")
    assert broker is not None
    assert broker["status"]["address"]["audience"] == AUDIENCE
    assert broker["status"]["policies"] == [
        {"apiVersion": "eventing.knative.dev/v1alpha1", "name": "filtered"},
        {"apiVersion": "eventing.knative.dev/v1alpha1", "name": "senders"},
    ]
    policies = {p["metadata"]["name"]: p for p in (await proc.status())["eventpolicies"]}
    assert policies["senders"]["status"]["from"] == [ALLOWED]
    table = subprocess.run(
        [sys.executable, "-m", "kbroker", "get", "eventpolicies", "--server", proc.base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "READY", "REASON", "FROM"]
    assert table[2].split() == ["default", "senders", "True", ALLOWED]

    def bearer(sub: str, aud: str = AUDIENCE) -> dict[str, str]:
        return {"authorization": f"Bearer {issuer.token(sub, aud)}"}

    # Authentication: no token, wrong audience
    assert (await proc.send(make_event("no-token"))).status_code == 401
    r = await proc.send(make_event("wrong-aud"), headers=bearer(ALLOWED, "other"))
    assert r.status_code == 401 and "audience" in r.text
    # Authorization: an allowed subject, binary and structured
    r = await proc.send(make_event("ok-1"), headers=bearer(ALLOWED))
    assert r.status_code == 202, r.text
    r = await proc.send(make_event("ok-2"), mode="structured", headers=bearer(ALLOWED))
    assert r.status_code == 202, r.text
    # a subject no policy lists (same namespace: the default mode no longer applies)
    r = await proc.send(make_event("stranger"), headers=bearer("system:serviceaccount:default:x"))
    assert r.status_code == 403, r.text
    # a listed subject whose policy's filter rejects the event type, then accepts the right one
    r = await proc.send(make_event("filtered-out", type="com.example.no"), headers=bearer(FILTERED))
    assert r.status_code == 403, r.text
    r = await proc.send(make_event("filtered-in", type="com.example.ok"), headers=bearer(FILTERED))
    assert r.status_code == 202, r.text

    await sink.wait_for(3)
    assert sorted(sink.ids()) == ["filtered-in", "ok-1", "ok-2"]
    # The dispatcher sent a token for the subscriber's audience, naming the Trigger's identity,
    # signed by the configured key.
    jwk = signing.public_jwk(signing.load_private_key(str(key)))
    token = sink.received[0].headers["authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, jwt.PyJWK(jwk), algorithms=["ES256"], audience="my-sink")
    assert claims["sub"] == "system:serviceaccount:default:t-oidc-eventing.knative.dev-trigger"
    assert claims["iss"] == "kbroker"

    metrics = (await proc.client.get(f"{proc.base}/metrics")).text
    assert 'reason="missing"' in metrics and 'reason="policy"' in metrics


async def test_disabled_feature_and_default_mode(
    start_broker: StartBroker, sinks: SinkServer, issuer: Issuer, tmp_path: Path
) -> None:
    key = write_key(tmp_path / "k.pem")
    sink = sinks.sink("s")
    proc = await start_broker(
        {"b.yaml": ky.dump(ky.broker(), ky.trigger("t", sink.url), policy("p", [ALLOWED]))}
    )
    await proc.wait_ready_object("Broker", "default")
    # authentication-oidc off: no token needed, policies not enforced (Knative's behaviour)
    assert (await proc.send(make_event("open"))).status_code == 202
    cond = await proc.condition("Broker", "default", "EventPoliciesReady")
    assert cond is not None and cond["reason"] == "OIDCDisabled"

    proc.write("features.yaml", yaml.safe_dump(config_features(issuer, key)))
    proc.remove("b.yaml")
    proc.write("b2.yaml", ky.dump(ky.broker(), ky.trigger("t", sink.url)))

    async def default_mode() -> bool:
        c = await proc.condition("Broker", "default", "EventPoliciesReady")
        return c is not None and c.get("reason") == "DefaultAuthorizationMode"

    await proc.until(default_mode, 30, "authentication-oidc never took effect")
    assert (await proc.send(make_event("no-token"))).status_code == 401
    ok = {"authorization": f"Bearer {issuer.token('system:serviceaccount:default:a', AUDIENCE)}"}
    assert (await proc.send(make_event("same-ns"), headers=ok)).status_code == 202
    other = {"authorization": f"Bearer {issuer.token('system:serviceaccount:x:a', AUDIENCE)}"}
    assert (await proc.send(make_event("other-ns"), headers=other)).status_code == 403
    await sink.wait_for(2)
    assert sink.ids() == ["open", "same-ns"]
