"""The Kubernetes API server as the OIDC issuer: a real ServiceAccount token, minted with the
TokenRequest API (the dispatcher's provider), verifies at ingress through discovery
(`/.well-known/openid-configuration` and its `jwks_uri`), with the subject Knative expects."""

from __future__ import annotations

import json
import ssl

import pytest
from fixtures.kube import Kube
from kbroker.core import contract
from kbroker.filter.tokens import TokenRequestProvider
from kbroker.ingress.auth import Denied, Verifier
from kbroker.ingress.jwks import Jwks

AUDIENCE = "eventing.knative.dev/broker/ns/b"


def ca_context(kube: Kube) -> ssl.SSLContext:
    config = json.loads(kube.kubeconfig.read_text())
    return ssl.create_default_context(
        cafile=config["clusters"][0]["cluster"]["certificate-authority"]
    )


async def test_service_account_token_verifies_through_discovery(kube: Kube) -> None:
    ns = kube.namespace("oidc")
    kube.kubectl("create", "serviceaccount", "sender", "-n", ns)
    auth = {"Authorization": f"Bearer {kube.token}"}
    tls = ca_context(kube)
    provider = TokenRequestProvider(kube.server, ns, "sender", auth, tls)
    token = await provider.token("sender", AUDIENCE)
    assert await provider.token("sender", AUDIENCE) == token  # cached, not minted again

    jwks = Jwks(discovery_url=kube.server, headers=auth, ssl_context=tls)
    verifier = Verifier(contract.OIDC(discovery_url=kube.server), jwks)
    assert await verifier.subject(token, AUDIENCE) == f"system:serviceaccount:{ns}:sender"
    assert await jwks.issuer() == kube.server  # hack/kube starts it with this issuer
    with pytest.raises(Denied) as denied:
        await verifier.subject(token, "eventing.knative.dev/broker/ns/other")
    assert (denied.value.status, denied.value.reason) == (401, "audience")
    assert jwks.fetches == 1
