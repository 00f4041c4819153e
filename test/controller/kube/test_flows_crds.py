"""The workflow CRDs and RBAC on the real kube-apiserver: Knative's YAML applies, columns print.

What the controller tests build on: config/310-crds-flows.yaml accepts the Sequence, Parallel,
Channel, Subscription and KafkaChannel examples of Knative's docs unchanged, keeps their fields,
prints Knative's columns, and rejects what Knative's webhooks reject; config/210-rbac-flows.yaml
lets the controller read them and write their status, and nothing more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures.knative_flows import DOCS_PARALLEL, DOCS_SEQUENCE
from fixtures.kube import Kube

CONFIG = Path(__file__).resolve().parents[3] / "config"
CONTROLLER_SA = "system:serviceaccount:kbroker-system:kbroker-controller"
CRDS = (
    "channels.messaging.knative.dev",
    "inmemorychannels.messaging.knative.dev",
    "kafkachannels.messaging.knative.dev",
    "natsjetstreamchannels.messaging.knative.dev",
    "subscriptions.messaging.knative.dev",
    "sequences.flows.knative.dev",
    "parallels.flows.knative.dev",
)

# Knative's docs: eventing/channels and the KafkaChannel page (the flows: fixtures.knative_flows).
DOCS_CHANNELS = """
apiVersion: messaging.knative.dev/v1
kind: Channel
metadata:
  name: my-channel
spec:
  channelTemplate:
    apiVersion: messaging.knative.dev/v1
    kind: InMemoryChannel
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata:
  name: my-subscription
spec:
  channel:
    apiVersion: messaging.knative.dev/v1
    kind: Channel
    name: my-channel
  delivery:
    deadLetterSink:
      ref:
        apiVersion: serving.knative.dev/v1
        kind: Service
        name: my-service
  reply:
    ref:
      apiVersion: messaging.knative.dev/v1
      kind: InMemoryChannel
      name: my-other-channel
  subscriber:
    ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: my-service
---
apiVersion: messaging.knative.dev/v1beta1
kind: KafkaChannel
metadata:
  name: my-kafka-channel
spec:
  numPartitions: 3
  replicationFactor: 1
  retentionDuration: PT168H
"""


def install(kube: Kube) -> None:
    kube.kubectl("apply", "-f", str(CONFIG / "310-crds-flows.yaml"))
    kube.kubectl("wait", "--for=condition=Established", *(f"crd/{n}" for n in CRDS))


@pytest.fixture(scope="module")
def crds(kube: Kube) -> Kube:
    install(kube)
    return kube


def get_json(kube: Kube, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(kube.kubectl("get", "-o", "json", *args))
    return data


def test_knative_docs_yaml_applies_unchanged_and_keeps_its_fields(crds: Kube) -> None:
    ns = crds.namespace("flows-docs")
    for text in (DOCS_SEQUENCE, DOCS_PARALLEL, DOCS_CHANNELS):
        crds.kubectl("apply", "-n", ns, "-f", "-", stdin=text)

    seq = get_json(crds, "-n", ns, "sequence", "sequence")
    assert [s["ref"]["name"] for s in seq["spec"]["steps"]] == ["first", "second", "third"]
    assert seq["spec"]["channelTemplate"]["kind"] == "InMemoryChannel"
    par = get_json(crds, "-n", ns, "parallel", "odd-even-parallel")
    assert par["spec"]["branches"][1]["filter"]["ref"]["name"] == "odd-filter"
    sub = get_json(crds, "-n", ns, "subscription", "my-subscription")
    assert sub["spec"]["reply"]["ref"]["kind"] == "InMemoryChannel"
    assert sub["spec"]["delivery"]["deadLetterSink"]["ref"]["name"] == "my-service"
    kafka = get_json(crds, "-n", ns, "kafkachannel", "my-kafka-channel")
    assert kafka["spec"] == {
        "numPartitions": 3,
        "replicationFactor": 1,
        "retentionDuration": "PT168H",
    }
    # Category `channel`, as Knative's: one command lists every channel kind.
    listed = crds.kubectl("get", "-n", ns, "channel", "-o", "name").split()
    assert sorted(listed) == [
        "channel.messaging.knative.dev/my-channel",
        "kafkachannel.messaging.knative.dev/my-kafka-channel",
    ]


def test_printer_columns_follow_knative(crds: Kube) -> None:
    ns = crds.namespace("flows-columns")
    crds.kubectl("apply", "-n", ns, "-f", "-", stdin=DOCS_SEQUENCE)
    crds.kubectl("apply", "-n", ns, "-f", "-", stdin=DOCS_CHANNELS)
    for plural in ("sequences", "parallels", "channels", "inmemorychannels"):
        header = crds.kubectl("get", "-n", ns, plural).splitlines()
        if header:  # "No resources found" goes to stderr, with no header
            assert header[0].split() == ["NAME", "URL", "AGE", "READY", "REASON"], plural
    header = crds.kubectl("get", "-n", ns, "subscriptions").splitlines()[0].split()
    assert header == ["NAME", "AGE", "READY", "REASON"]
    header = crds.kubectl("get", "-n", ns, "kafkachannels").splitlines()[0].split()
    assert header == ["NAME", "READY", "REASON", "URL", "AGE"]

    status = {
        "status": {
            "address": {"url": "http://example/seq"},
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }
    crds.kubectl(
        "patch",
        "-n",
        ns,
        "sequence",
        "sequence",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    row = crds.kubectl("get", "-n", ns, "sequences", "--no-headers").split()
    assert row[0] == "sequence" and row[1] == "http://example/seq" and row[3] == "True"


def test_schema_rejects_what_knatives_webhooks_reject(crds: Kube) -> None:
    ns = crds.namespace("flows-reject")
    crds.kubectl("apply", "-n", ns, "-f", "-", stdin=DOCS_CHANNELS)

    def refused(text: str) -> str:
        proc = crds.run_kubectl("apply", "-n", ns, "-f", "-", stdin=text)
        assert proc.returncode != 0, text
        return proc.stderr

    stepless = "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: s}\nspec: {}\n"
    assert "steps" in refused(stepless)
    empty = stepless.replace("spec: {}", "spec: {steps: []}")
    assert "steps" in refused(empty)
    branchless = stepless.replace("Sequence", "Parallel").replace("{}", "{branches: []}")
    assert "branches" in refused(branchless)
    nowhere = stepless.replace("spec: {}", "spec: {steps: [{}]}")
    assert "needs a ref or a uri" in refused(nowhere)
    subless = (
        "apiVersion: messaging.knative.dev/v1\nkind: Subscription\nmetadata: {name: x}\n"
        "spec: {channel: {apiVersion: messaging.knative.dev/v1, kind: Channel, name: c}}\n"
    )
    assert "subscriber" in refused(subless)

    moved = crds.run_kubectl(
        "patch",
        "-n",
        ns,
        "subscription",
        "my-subscription",
        "--type=merge",
        "-p",
        '{"spec":{"channel":{"name":"other"}}}',
    )
    assert moved.returncode != 0 and "Immutable fields changed: spec.channel" in moved.stderr
    retemplated = crds.run_kubectl(
        "patch",
        "-n",
        ns,
        "channels.messaging.knative.dev",
        "my-channel",
        "--type=merge",
        "-p",
        '{"spec":{"channelTemplate":{"apiVersion":"messaging.knative.dev/v1beta1",'
        '"kind":"KafkaChannel"}}}',
    )
    assert retemplated.returncode != 0
    assert "Immutable fields changed: spec.channelTemplate" in retemplated.stderr
    for resource, name, patch, fld in (
        ("kafkachannel", "my-kafka-channel", {"numPartitions": 6}, "numPartitions"),
        ("kafkachannel", "my-kafka-channel", {"replicationFactor": None}, "replicationFactor"),
        ("channels.messaging.knative.dev", "my-channel", {"delivery": {"retry": 1}}, "delivery"),
    ):
        changed = crds.run_kubectl(
            "patch", "-n", ns, resource, name, "--type=merge", "-p", json.dumps({"spec": patch})
        )
        assert changed.returncode != 0, (resource, patch)
        assert f"Immutable fields changed: spec.{fld}" in changed.stderr
    # The subscriber, reply and delivery stay editable, as in Knative.
    crds.kubectl(
        "patch",
        "-n",
        ns,
        "subscription",
        "my-subscription",
        "--type=merge",
        "-p",
        '{"spec":{"subscriber":{"uri":"http://elsewhere/"}}}',
    )


def can_i(kube: Kube, verb: str, resource: str, *scope: str) -> bool:
    proc = kube.run_kubectl("auth", "can-i", verb, resource, f"--as={CONTROLLER_SA}", *scope)
    assert proc.stdout.strip() in ("yes", "no"), proc.stderr
    return proc.stdout.strip() == "yes"


def test_controller_may_read_workflows_and_write_only_their_status(crds: Kube) -> None:
    crds.kubectl(
        "apply",
        "-f",
        str(CONFIG / "100-namespace.yaml"),
        "-f",
        str(CONFIG / "200-rbac.yaml"),
        "-f",
        str(CONFIG / "210-rbac-flows.yaml"),
    )
    ns = crds.namespace("flows-rbac")
    for plural in ("sequences", "parallels"):
        resource = f"{plural}.flows.knative.dev"
        assert can_i(crds, "watch", resource, "-A")
        assert can_i(crds, "patch", resource, "-n", ns, "--subresource=status")
        assert not can_i(crds, "create", resource, "-n", ns)
        assert not can_i(crds, "update", resource, "-n", ns)
    for plural in ("channels", "inmemorychannels", "kafkachannels", "subscriptions"):
        resource = f"{plural}.messaging.knative.dev"
        assert can_i(crds, "list", resource, "-A")
        assert can_i(crds, "update", resource, "-n", ns, "--subresource=status")
        assert not can_i(crds, "delete", resource, "-n", ns)
        assert not can_i(crds, "patch", resource, "-n", ns)
