"""A Trigger's token audiences and identity, when authentication-oidc is on.

Knative's rules: a Destination's `audience` wins; else an addressable's own audience (here: a
Broker's, `eventing.knative.dev/broker/<ns>/<name>`); else no token is sent. The dispatcher's
tokens for a Trigger name the Trigger's OIDC identity as subject, as Knative's do.

What this module refuses: audiences of addressables other than Brokers without an explicit
`audience` (standalone mode cannot read their status), and anything that is not a pure function
of the compilation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kbroker.controller import features, status
from kbroker.controller.compilation import Compilation
from kbroker.core import contract


def destination_audience(dest: Any, namespace: str, owned: Mapping[tuple[str, str], str]) -> str:
    if not isinstance(dest, Mapping):
        return ""
    explicit = dest.get("audience")
    if explicit:
        return str(explicit)
    ref = dest.get("ref")
    if (
        isinstance(ref, Mapping)
        and ref.get("kind") == "Broker"
        and str(ref.get("apiVersion", "")).startswith("eventing.knative.dev/")
    ):
        ns, name = str(ref.get("namespace") or namespace), str(ref.get("name", ""))
        if (ns, name) in owned:
            return features.broker_audience(ns, name)
    return ""


def with_audiences(
    c: Compilation, t: contract.Trigger, owned: Mapping[tuple[str, str], str]
) -> contract.Trigger:
    """`t` with its subscriber and dead-letter audiences and identity; its status shows them."""
    o = c.triggers[(t.namespace, t.name)]
    spec = o.spec if isinstance(o.spec, Mapping) else {}
    subscriber = destination_audience(spec.get("subscriber"), t.namespace, owned)
    delivery = spec.get("delivery")
    if delivery is None:
        broker = c.brokers.get((t.namespace, t.broker))
        broker_spec = broker.spec if broker is not None else {}
        delivery = broker_spec.get("delivery") if isinstance(broker_spec, Mapping) else None
    dls = (
        destination_audience(delivery.get("deadLetterSink"), t.namespace, owned)
        if isinstance(delivery, Mapping)
        else ""
    )
    key = ("Trigger", t.namespace, t.name)
    st = c.statuses.get(key)
    if st is not None:
        given = {cond.type: cond for cond in st.conditions[1:]}
        given["OIDCIdentityCreated"] = status.true("OIDCIdentityCreated")
        c.statuses[key] = dataclasses.replace(
            st,
            conditions=status.with_ready(status.TRIGGER_CONDITIONS, given),
            subscriber_audience=subscriber or None,
        )
    return dataclasses.replace(
        t,
        subscriber_audience=subscriber,
        dead_letter_audience=dls,
        identity=features.trigger_identity(t.namespace, t.name),
    )
