"""The Trigger form and object make each other; the retry schedule is the dispatcher's."""

from __future__ import annotations

from typing import Any

import pytest
from kbroker.core import delivery
from kbroker.core.contract import BackoffPolicy, DeliverySpec
from kbroker.ui import forms

SPECS: list[dict[str, Any]] = [
    {"broker": "default", "subscriber": {"uri": "http://127.0.0.1:9/a"}},
    {
        "broker": "default",
        "filter": {"attributes": {"type": "order.created", "source": ""}},
        "subscriber": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "app"}, "uri": "/x"},
    },
    {
        "broker": "default",
        "filters": [{"exact": {"type": "a"}}, {"prefix": {"source": "/shop"}}],
        "subscriber": {"uri": "http://127.0.0.1:9/a"},
    },
    {
        "broker": "default",
        "filters": [{"not": {"any": [{"exact": {"type": "a"}}, {"cesql": "subject = 'x'"}]}}],
        "subscriber": {
            "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "k"}
        },
    },
    {
        "broker": "default",
        "filters": [{"all": [{"any": [{"exact": {"type": "a"}}]}, {"suffix": {"type": "b"}}]}],
        "subscriber": {"uri": "http://127.0.0.1:9/a"},
        "delivery": {
            "retry": 3,
            "backoffPolicy": "linear",
            "backoffDelay": "PT0.5S",
            "deadLetterSink": {
                "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "dls"}
            },
        },
    },
    {
        "broker": "default",
        "filters": [{"cesql": "type LIKE 'order.%'"}],
        "subscriber": {"uri": "http://127.0.0.1:9/a"},
    },
]


@pytest.mark.parametrize("spec", SPECS)
def test_an_object_survives_the_form_unchanged(spec: dict[str, Any]) -> None:
    obj = {
        "apiVersion": forms.API,
        "kind": "Trigger",
        "metadata": {
            "name": "t",
            "namespace": "default",
            "labels": {"team": "a"},
            "annotations": {forms.MAX_IN_FLIGHT: "5", "note": "kept"},
        },
        "spec": spec,
    }
    f = forms.from_object(obj)
    assert forms.to_object(f) == obj
    # ...and through the submitted fields, as the browser sends them back.
    fields = _fields(f)
    assert forms.to_object(forms.from_fields(fields)) == obj


def _fields(f: forms.TriggerForm) -> dict[str, str]:
    out = {
        "broker": f"{f.namespace}/{f.broker}",
        "name": f.name,
        "mode": f.mode,
        "group": f.group,
        "filters_yaml": f.filters_yaml,
        "cesql": f.cesql,
        "subscriber": f.subscriber,
        "subscriber_path": f.subscriber_path,
        "retry": f.retry,
        "backoff_policy": f.backoff_policy,
        "backoff_delay": f.backoff_delay,
        "timeout": f.timeout,
        "dead_letter_sink": f.dead_letter_sink,
        "max_in_flight": f.max_in_flight,
        "kept_yaml": forms.kept_yaml(f),
    }
    if f.inherit:
        out["inherit"] = "on"
    for i, (k, v) in enumerate(f.padded_attributes()):
        out[f"attr_key_{i}"], out[f"attr_value_{i}"] = k, v
    for i, r in enumerate(f.padded_rows()):
        out[f"row_dialect_{i}"], out[f"row_attr_{i}"], out[f"row_value_{i}"] = (
            r.dialect,
            r.attribute,
            r.value,
        )
    return out


def test_only_the_chosen_mode_counts() -> None:
    f = forms.from_fields(
        {"mode": "cesql", "cesql": "type = 'a'", "attr_key_0": "type", "attr_value_0": "b"}
    )
    assert forms.to_object(f)["spec"]["filters"] == [{"cesql": "type = 'a'"}]
    assert "filter" not in forms.to_object(f)["spec"]


@pytest.mark.parametrize("policy", ["linear", "exponential"])
def test_the_retry_preview_is_the_dispatchers_schedule(policy: str) -> None:
    spec = DeliverySpec(retry=5, backoff_policy=BackoffPolicy(policy), backoff_delay=0.2)
    expected = tuple(delivery.backoff(spec, n) for n in range(5))
    assert forms.retry_schedule(5, policy, 0.2).waits == pytest.approx(expected)


def test_durations_are_shown_humanly() -> None:
    assert forms.seconds("PT0.2S") == pytest.approx(0.2)
    assert forms.human(forms.seconds("PT0.2S")) == "200 ms"
    assert forms.human(forms.seconds("PT1M30S")) == "1 min 30 s"
    assert forms.seconds("soon") is None
    text = forms.retry_schedule(10, "exponential", 0.2).text
    assert text.startswith("200 ms, 400 ms, 800 ms") and "10 retries ≈ 3 min 25 s" in text
