"""Smoke tests of the real Kubernetes test infrastructure the controller is tested against.

They pin what the controller's tests rely on: our CRDs accept Knative users' YAML unchanged and
keep fields we do not model, reject what Knative's webhook would reject, print Knative's columns,
and `kn` (which knows nothing about kbroker) can create, list and describe Brokers and Triggers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from fixtures.kube import Kube

CONFIG = Path(__file__).resolve().parents[3] / "config"
CONTROLLER_SA = "system:serviceaccount:kbroker-system:kbroker-controller"
DATA_PLANE_SA = "system:serviceaccount:kbroker-system:kbroker-data-plane"

# Shaped like the examples in Knative's docs (Kafka broker page, Trigger page).
DOCS_BROKER_AND_TRIGGER = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  annotations:
    eventing.knative.dev/broker.class: Kafka
spec:
  config:
    apiVersion: v1
    kind: ConfigMap
    name: kafka-broker-config
    namespace: knative-eventing
  delivery:
    deadLetterSink:
      ref:
        apiVersion: serving.knative.dev/v1
        kind: Service
        name: dlq
    retry: 5
    backoffPolicy: exponential
    backoffDelay: PT0.5S
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: my-service-trigger
spec:
  broker: default
  filter:
    attributes:
      type: dev.knative.foo.bar
      myextension: my-extension-value
  filters:
    - cesql: "source LIKE '%commerce%'"
    - any:
        - exact: {type: com.example.order.placed}
        - prefix: {type: com.example.refund.}
  subscriber:
    ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: my-service
    uri: /my-custom-path
"""

READY_STATUS = {
    "status": {
        "address": {"name": "http", "url": "http://kbroker-ingress.kbroker-system.svc/ns/b"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "AllGood"}],
    }
}


def get_json(kube: Kube, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(kube.kubectl("get", "-o", "json", *args))
    return data


def test_knative_docs_yaml_applies_and_keeps_unmodelled_fields(kube: Kube) -> None:
    ns = kube.namespace("docs")
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=DOCS_BROKER_AND_TRIGGER)

    broker = get_json(kube, "-n", ns, "broker", "default")
    assert broker["spec"]["config"]["name"] == "kafka-broker-config"
    assert broker["spec"]["delivery"]["backoffDelay"] == "PT0.5S"
    assert broker["spec"]["delivery"]["deadLetterSink"]["ref"]["name"] == "dlq"
    trigger = get_json(kube, "-n", ns, "trigger", "my-service-trigger")
    assert trigger["spec"]["filter"]["attributes"]["myextension"] == "my-extension-value"
    assert trigger["spec"]["filters"][1]["any"][1] == {"prefix": {"type": "com.example.refund."}}
    assert trigger["spec"]["subscriber"]["uri"] == "/my-custom-path"


def test_printer_columns_follow_knative_and_read_status(kube: Kube) -> None:
    ns = kube.namespace("columns")
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=DOCS_BROKER_AND_TRIGGER)
    header = kube.kubectl("get", "-n", ns, "brokers").splitlines()[0].split()
    assert header == ["NAME", "URL", "AGE", "READY", "REASON", "CLASS"]
    header = kube.kubectl("get", "-n", ns, "triggers").splitlines()[0].split()
    assert header == ["NAME", "BROKER", "SUBSCRIBER_URI", "AGE", "READY", "REASON"]

    # Status is a subresource: a plain patch of it is ignored, the /status one is stored.
    patch = json.dumps(READY_STATUS)
    kube.kubectl("patch", "-n", ns, "broker", "default", "--type=merge", "-p", patch)
    assert "status" not in get_json(kube, "-n", ns, "broker", "default")
    kube.kubectl(
        "patch", "-n", ns, "broker", "default", "--subresource=status", "--type=merge", "-p", patch
    )
    row = kube.kubectl("get", "-n", ns, "brokers", "--no-headers").split()
    assert row[0] == "default"
    assert row[1] == "http://kbroker-ingress.kbroker-system.svc/ns/b"
    assert row[3:] == ["True", "AllGood", "Kafka"]


def test_schema_and_policy_reject_what_knative_webhooks_reject(kube: Kube) -> None:
    ns = kube.namespace("reject")
    kube.kubectl("apply", "-n", ns, "-f", "-", stdin=DOCS_BROKER_AND_TRIGGER)

    sinkless = "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec: {}\n"
    no_sink = kube.run_kubectl("apply", "-n", ns, "-f", "-", stdin=sinkless)
    assert no_sink.returncode != 0
    assert "subscriber" in no_sink.stderr

    moved = kube.run_kubectl(
        "patch",
        "-n",
        ns,
        "trigger",
        "my-service-trigger",
        "--type=merge",
        "-p",
        '{"spec":{"broker":"other"}}',
    )
    assert moved.returncode != 0
    assert "spec.broker is immutable" in moved.stderr

    reclassed = kube.run_kubectl(
        "annotate",
        "-n",
        ns,
        "--overwrite",
        "broker",
        "default",
        "eventing.knative.dev/broker.class=Other",
    )
    assert reclassed.returncode != 0
    assert "Immutable fields changed" in reclassed.stderr
    # Other annotations stay editable.
    kube.kubectl("annotate", "-n", ns, "broker", "default", "example.com/owner=team-a")


def test_kn_creates_lists_and_describes_brokers(kube: Kube) -> None:
    ns = kube.namespace("kn-broker")
    out = kube.kn("broker", "create", "b1", "--class", "Kafka", "-n", ns)
    assert "'b1' successfully created" in out

    broker = get_json(kube, "-n", ns, "broker", "b1")
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "Kafka"
    assert "b1" in kube.kn("broker", "list", "-n", ns)
    described = kube.kn("broker", "describe", "b1", "-n", ns)
    assert "b1" in described
    assert ns in described
    assert "eventing.knative.dev/broker.class=Kafka" in described

    # Once a controller writes status, kn shows it: this is what the controller tests will assert.
    patch = json.dumps(READY_STATUS)
    kube.kubectl(
        "patch", "-n", ns, "broker", "b1", "--subresource=status", "--type=merge", "-p", patch
    )
    assert kube.kn("broker", "describe", "b1", "-n", ns, "-o", "url").strip() == (
        "http://kbroker-ingress.kbroker-system.svc/ns/b"
    )
    listed = [line.split() for line in kube.kn("broker", "list", "-n", ns).splitlines()]
    assert any(row[0] == "b1" and "True" in row for row in listed)


def test_kn_creates_and_lists_triggers(kube: Kube) -> None:
    ns = kube.namespace("kn-trigger")
    kube.kn("broker", "create", "b1", "--class", "Kafka", "-n", ns)
    sink = "http://127.0.0.1:9/"
    kube.kn(
        "trigger", "create", "t1", "--broker", "b1", "--sink", sink, "--filter", "type=x", "-n", ns
    )

    trigger = get_json(kube, "-n", ns, "trigger", "t1")
    assert trigger["spec"]["broker"] == "b1"
    assert trigger["spec"]["filter"]["attributes"] == {"type": "x"}
    assert trigger["spec"]["subscriber"]["uri"] == "http://127.0.0.1:9/"
    rows = [line.split() for line in kube.kn("trigger", "list", "-n", ns).splitlines()]
    assert rows[0][:4] == ["NAME", "BROKER", "SINK", "AGE"]
    assert rows[1][:3] == ["t1", "b1", "http://127.0.0.1:9/"]


def test_every_manifest_in_config_validates_on_the_real_apiserver(kube: Kube) -> None:
    # `kubectl apply -f config/` reads every .yaml/.yml/.json file directly in config/ (subfolders
    # only with -R), so anything else there breaks the documented install.
    files = sorted(f for f in CONFIG.iterdir() if f.suffix in (".yaml", ".yml", ".json"))
    docs = [(f.name, doc) for f in files for doc in yaml.safe_load_all(f.read_text()) if doc]
    strays = sorted({name for name, doc in docs if not ("apiVersion" in doc and "kind" in doc)})
    assert not strays, f"not Kubernetes objects, move them to a subfolder of config/: {strays}"
    assert len(docs) >= 20

    # A dry run cannot create the namespace the other objects go into, so that one is real.
    kube.kubectl("apply", "-f", str(CONFIG / "100-namespace.yaml"))
    out = kube.kubectl("apply", "--dry-run=server", "-f", str(CONFIG))
    assert out.count("(server dry run)") == len(docs), out


def can_i(kube: Kube, who: str, verb: str, resource: str, *scope: str) -> bool:
    proc = kube.run_kubectl("auth", "can-i", verb, resource, f"--as={who}", *scope)
    assert proc.stdout.strip() in ("yes", "no"), proc.stderr
    return proc.stdout.strip() == "yes"


def test_controller_rbac_grants_what_it_needs_and_no_more(kube: Kube) -> None:
    kube.kubectl(
        "apply", "-f", str(CONFIG / "100-namespace.yaml"), "-f", str(CONFIG / "200-rbac.yaml")
    )
    ns = kube.namespace("rbac")
    allowed = [
        ("watch", "brokers.eventing.knative.dev", "-A"),
        ("list", "triggers.eventing.knative.dev", "-A"),
        ("patch", "brokers.eventing.knative.dev", "-n", ns, "--subresource=status"),
        ("update", "triggers.eventing.knative.dev", "-n", ns, "--subresource=status"),
        ("update", "brokers.eventing.knative.dev", "-n", ns, "--subresource=finalizers"),
        ("patch", "brokers.eventing.knative.dev", "-n", ns),
        ("watch", "configmaps", "-A"),
        ("update", "configmaps", "-n", "kbroker-system"),
        ("create", "configmaps", "-n", "kbroker-system"),
        ("get", "services", "-n", ns),
        ("get", "brokers.eventing.knative.dev", "-n", ns),  # Brokers are Addressables too
    ]
    denied = [
        ("create", "configmaps", "-n", ns),
        ("update", "configmaps", "-n", ns),
        ("create", "brokers.eventing.knative.dev", "-n", ns),
        ("delete", "triggers.eventing.knative.dev", "-n", ns),
        ("get", "secrets", "-n", "kbroker-system"),
        ("update", "services", "-n", ns),
        ("create", "pods", "-n", "kbroker-system"),
    ]
    for verb, resource, *scope in allowed:
        assert can_i(kube, CONTROLLER_SA, verb, resource, *scope), (verb, resource, scope)
    for verb, resource, *scope in denied:
        assert not can_i(kube, CONTROLLER_SA, verb, resource, *scope), (verb, resource, scope)
    # The data plane reads its contract from a mounted file and gets no API rights at all.
    assert not can_i(kube, DATA_PLANE_SA, "get", "configmaps", "-n", "kbroker-system")
    assert not can_i(kube, DATA_PLANE_SA, "list", "brokers.eventing.knative.dev", "-A")
