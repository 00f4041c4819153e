"""The Knative YAML a benchmark run gives `kbroker run`: one Broker and its Triggers.

Why generated: each scenario's shape (trigger count, matching fraction, failing subscriber,
dead-letter sinks) is encoded in its name, and the config folder is derived from it so the run
is reproducible from the command line alone. Triggers filter on `type` plus the `benchgroup`
extension, so trigger i gets exactly the events with `benchseq % groups == i % groups`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kbroker.bench import payload
from kbroker.bench.receiver import TriggerSpec

NAMESPACE = "bench"
BROKER = "bench"


@dataclass(frozen=True, slots=True)
class Delivery:
    retry: int = 3
    backoff_policy: str = "exponential"
    backoff_delay: str = "PT0.05S"
    dead_letter: bool = True

    def to_yaml(self, sink: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "retry": self.retry,
            "backoffPolicy": self.backoff_policy,
            "backoffDelay": self.backoff_delay,
        }
        if self.dead_letter:
            spec["deadLetterSink"] = {"uri": sink}
        return spec


def broker_doc(broker_class: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": BROKER, "namespace": NAMESPACE}
    if broker_class:
        meta["annotations"] = {"eventing.knative.dev/broker.class": broker_class}
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": meta, "spec": {}}


def trigger_doc(spec: TriggerSpec, receiver: str, delivery: Delivery | None) -> dict[str, Any]:
    attributes = {"type": payload.CE_TYPE}
    if spec.groups > 1:
        attributes["benchgroup"] = str(spec.residue)
    doc: dict[str, Any] = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": spec.name, "namespace": NAMESPACE},
        "spec": {
            "broker": BROKER,
            "filter": {"attributes": attributes},
            "subscriber": {"uri": f"{receiver}/t/{spec.name}"},
        },
    }
    if delivery is not None:
        doc["spec"]["delivery"] = delivery.to_yaml(f"{receiver}/dls/{spec.name}")
    return doc


def write(
    folder: Path,
    triggers: list[TriggerSpec],
    receiver: str,
    delivery: Delivery | None = None,
    broker_class: str | None = None,
    prefix: str = "",
) -> list[Path]:
    """<prefix>broker.yaml and <prefix>triggers.yaml (multi-document) in `folder`; their paths.

    The prefix lets the benchmark add its objects to a folder a running broker already watches
    (`--url` with `--broker-config`) and remove exactly those afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    broker = folder / f"{prefix}broker.yaml"
    broker.write_text(yaml.safe_dump(broker_doc(broker_class), sort_keys=False))
    return [broker, write_triggers(folder, triggers, receiver, delivery, prefix)]


def write_triggers(
    folder: Path,
    triggers: list[TriggerSpec],
    receiver: str,
    delivery: Delivery | None = None,
    prefix: str = "",
) -> Path:
    docs = [trigger_doc(t, receiver, delivery) for t in triggers]
    target = folder / f"{prefix}triggers.yaml"
    tmp = folder / f".{prefix}triggers.yaml.tmp"  # written aside, renamed: never seen half-written
    tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    tmp.replace(target)
    return target


def ingress_url(base: str) -> str:
    return f"{base.rstrip('/')}/{NAMESPACE}/{BROKER}"
