"""Workflow YAML for end-to-end tests: Sequences, Parallels, channels and Subscriptions as users
write them, with the channel template of the backend under test, and the status lookups they need.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fixtures.broker import BrokerProcess
from kbroker.core import events

TEMPLATES: dict[str, dict[str, Any]] = {
    "embedded": {"apiVersion": "messaging.knative.dev/v1", "kind": "InMemoryChannel"},
    "kafka": {
        "apiVersion": "messaging.knative.dev/v1beta1",
        "kind": "KafkaChannel",
        "spec": {"numPartitions": 1, "replicationFactor": 1},
    },
    "nats": {"apiVersion": "messaging.knative.dev/v1alpha1", "kind": "NatsJetStreamChannel"},
}
LISTS = {"Sequence": "sequences", "Parallel": "parallels", "Subscription": "subscriptions"}


def uri(url: str) -> dict[str, Any]:
    return {"uri": url}


def ref(kind: str, name: str, namespace: str) -> dict[str, Any]:
    api = {
        "Broker": "eventing.knative.dev/v1",
        "Sequence": "flows.knative.dev/v1",
        "Parallel": "flows.knative.dev/v1",
    }.get(kind, "messaging.knative.dev/v1")
    return {"ref": {"apiVersion": api, "kind": kind, "name": name, "namespace": namespace}}


def sequence(
    name: str,
    namespace: str,
    steps: list[dict[str, Any]],
    template: dict[str, Any],
    reply: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"channelTemplate": template, "steps": steps}
    if reply is not None:
        spec["reply"] = reply
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "flows.knative.dev/v1",
        "kind": "Sequence",
        "metadata": meta,
        "spec": spec,
    }


def parallel(
    name: str,
    namespace: str,
    branches: list[dict[str, Any]],
    template: dict[str, Any],
    reply: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"channelTemplate": template, "branches": branches}
    if reply is not None:
        spec["reply"] = reply
    return {
        "apiVersion": "flows.knative.dev/v1",
        "kind": "Parallel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def subscription(
    name: str,
    namespace: str,
    channel: str,
    subscriber: dict[str, Any],
    reply: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "channel": {"apiVersion": "messaging.knative.dev/v1", "kind": "Channel", "name": channel},
        "subscriber": subscriber,
    }
    if reply is not None:
        spec["reply"] = reply
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "messaging.knative.dev/v1",
        "kind": "Subscription",
        "metadata": meta,
        "spec": spec,
    }


def appender(suffix: str, type_: str | None = None) -> Any:
    """A step that answers with the event it got, `suffix` appended to the data (rekt's
    SequenceTest step), and its type changed when `type_` is given."""

    def reply(e: events.CloudEvent) -> events.CloudEvent:
        attrs = dict(e.attributes)
        if type_ is not None:
            attrs["type"] = type_
        return events.CloudEvent(attrs, (e.data or b"") + suffix.encode())

    return reply


def text_event(id: str, data: str, type_: str = "com.example.flow") -> events.CloudEvent:
    return events.CloudEvent(
        {
            "specversion": "1.0",
            "id": id,
            "source": "/flows-test",
            "type": type_,
            "datacontenttype": "text/plain",
        },
        data.encode(),
    )


async def objects(proc: BrokerProcess, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await proc.status()).get(LISTS.get(kind, "channels"), [])
    return found


async def wait_ready(
    proc: BrokerProcess, kind: str, name: str, namespace: str, timeout: float = 30.0
) -> dict[str, Any]:
    """The object's /status document once it is Ready."""
    found: dict[str, Any] = {}

    async def ready() -> bool:
        for obj in await objects(proc, kind):
            meta = obj["metadata"]
            if (obj["kind"], meta["name"], meta["namespace"]) != (kind, name, namespace):
                continue
            conds = {c["type"]: c["status"] for c in obj["status"].get("conditions", [])}
            if conds.get("Ready") == "True":
                found.update(obj)
                return True
        return False

    await proc.until(ready, timeout, f"{kind} {namespace}/{name} never became Ready")
    return found


async def post(proc: BrokerProcess, url: str, event: events.CloudEvent) -> int:
    headers, body = events.encode_binary(event)
    resp = await proc.client.post(url, content=body, headers=headers)
    return resp.status_code


async def settle(seconds: float = 0.3) -> None:
    """For assertions that something did NOT happen: a bounded wait after the events that
    would have caused it were already seen to pass (never used to wait for an arrival)."""
    await asyncio.sleep(seconds)
