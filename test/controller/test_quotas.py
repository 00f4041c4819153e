"""Quota annotations -> contract.Quota, or a Broker that is not Ready saying which value is wrong;
and an https ingress base publishes an https address with its CACerts."""

from __future__ import annotations

from typing import Any

import pytest
from kbroker.controller import compiler, quotas, validate
from kbroker.core import contract

Q = contract.Quota


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, None),
        ({"kbroker.dev/rate-limit": "1000"}, Q(events_per_second=1000)),
        ({"kbroker.dev/rate-limit": "2.5", "kbroker.dev/rate-burst": "10"}, Q(2.5, 10)),
        ({"kbroker.dev/byte-rate-limit": "10Mi"}, Q(bytes_per_second=10 * 2**20)),
        ({"kbroker.dev/byte-rate-limit": "1.5k"}, Q(bytes_per_second=1500)),
        (
            {"kbroker.dev/byte-rate-limit": "1Gi", "kbroker.dev/byte-burst": "2Gi"},
            Q(bytes_per_second=2**30, byte_burst=2**31),
        ),
        (
            {"kbroker.dev/rate-limit": "5", "kbroker.dev/byte-rate-limit": "100"},
            Q(events_per_second=5, bytes_per_second=100),
        ),
        ({"unrelated": "x"}, None),
    ],
)
def test_valid(annotations: dict[str, str], expected: contract.Quota | None) -> None:
    issues = validate.Issues()
    assert quotas.quota(annotations, issues) == expected
    assert not issues.items


@pytest.mark.parametrize(
    ("annotations", "field"),
    [
        ({"kbroker.dev/rate-limit": "fast"}, "kbroker.dev/rate-limit"),
        ({"kbroker.dev/rate-limit": "0"}, "kbroker.dev/rate-limit"),
        ({"kbroker.dev/rate-limit": "-3"}, "kbroker.dev/rate-limit"),
        ({"kbroker.dev/rate-limit": "nan"}, "kbroker.dev/rate-limit"),
        ({"kbroker.dev/rate-limit": "10", "kbroker.dev/rate-burst": "1.5"}, "rate-burst"),
        ({"kbroker.dev/rate-burst": "10"}, "kbroker.dev/rate-burst"),
        ({"kbroker.dev/byte-rate-limit": "10MB"}, "kbroker.dev/byte-rate-limit"),
        ({"kbroker.dev/byte-rate-limit": "1k", "kbroker.dev/byte-burst": "x"}, "byte-burst"),
        ({"kbroker.dev/byte-burst": "1Mi"}, "kbroker.dev/byte-burst"),
    ],
)
def test_invalid(annotations: dict[str, str], field: str) -> None:
    issues = validate.Issues()
    quotas.quota(annotations, issues)
    assert issues.errors, annotations
    assert any(field in i.field for i in issues.errors)
    assert all(i.reason == validate.REASON_ANNOTATION for i in issues.errors)


def broker_doc(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": "b", "namespace": "ns", "annotations": annotations},
    }


def compile_one(annotations: dict[str, str], **env: Any) -> compiler.CompileResult:
    env.setdefault("ingress_base_url", "http://127.0.0.1:8080")
    docs = [compiler.SourcedObject(broker_doc(annotations), "t.yaml")]
    return compiler.compile(docs, compiler.Environment(**env))


def test_quota_reaches_the_contract() -> None:
    r = compile_one({"kbroker.dev/rate-limit": "100", "kbroker.dev/rate-burst": "7"})
    (b,) = r.contract.brokers
    assert b.quota == Q(events_per_second=100, event_burst=7)
    assert contract.Contract.from_json(r.contract.to_json()).brokers[0].quota == b.quota


def test_no_quota_no_field() -> None:
    r = compile_one({})
    assert r.contract.brokers[0].quota is None
    assert b'"quota"' not in r.contract.to_json()


def test_bad_quota_makes_the_broker_not_ready() -> None:
    r = compile_one({"kbroker.dev/byte-rate-limit": "lots"})
    assert not r.contract.brokers
    st = r.statuses[("Broker", "ns", "b")]
    ready = st.condition("Ready")
    assert ready is not None and ready.status == "False"
    assert ready.reason == validate.REASON_ANNOTATION
    assert "byte-rate-limit" in ready.message


def test_https_address_carries_the_ca() -> None:
    r = compile_one({}, ingress_base_url="https://127.0.0.1:8443", ingress_ca_certs="PEM")
    out = r.statuses[("Broker", "ns", "b")].to_k8s()
    assert out["address"] == {
        "name": "https",
        "url": "https://127.0.0.1:8443/ns/b",
        "CACerts": "PEM",
    }
    assert out["addresses"] == [out["address"]]
    assert r.contract.brokers[0].address == "https://127.0.0.1:8443/ns/b"


def test_http_address_unchanged() -> None:
    out = compile_one({}, ingress_ca_certs="PEM").statuses[("Broker", "ns", "b")].to_k8s()
    assert out["address"] == {"name": "http", "url": "http://127.0.0.1:8080/ns/b"}
