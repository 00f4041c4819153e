"""RabbitMQBroker's configuration: `spec.config` -> the RabbitMQ channel's config pairs, and the
Trigger parallelism annotation, as Knative's eventing-rabbitmq defines them.

Why a module of its own: eventing-rabbitmq's rules (a required `spec.config` naming a
`RabbitmqBrokerConfig` or a `RabbitmqCluster`, `queueType`, the cluster reference, the
`rabbitmq.eventing.knative.dev/parallelism` annotation) belong to one broker class; the generic
Broker and Trigger rules stay in `validate`.

Where the AMQP URL comes from (kbroker has no RabbitmqCluster operator to ask):
- `rabbitmqClusterReference.connectionSecret.name`: a ConfigMap of that name in the config's
  namespace with the key `uri` (and optional `username` / `password`, put into the URL). kbroker
  reads no Secrets, so a ConfigMap stands in for eventing-rabbitmq's connection Secret;
- `rabbitmqClusterReference.name`, or a `RabbitmqCluster` reference: the URL kbroker runs with
  (`kbroker run --rabbitmq URL`).

What this module refuses: I/O; it reads only the objects the compilation indexed.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from kbroker.controller.validate import REASON_ANNOTATION, REASON_CONFIG, Issues

CLASS = "RabbitMQBroker"
CONFIG_API, CONFIG_KIND = "eventing.knative.dev/v1alpha1", "RabbitmqBrokerConfig"
CLUSTER_API, CLUSTER_KIND = "rabbitmq.com/v1beta1", "RabbitmqCluster"
PARALLELISM_ANNOTATION = "rabbitmq.eventing.knative.dev/parallelism"
QUEUE_TYPES = ("quorum", "classic")
NOT_SUPPORTED = (
    "Configuration not supported, only [kind: RabbitmqCluster, apiVersion: rabbitmq.com/v1beta1] "
    "or [kind: RabbitmqBrokerConfig, apiVersion: eventing.knative.dev/v1alpha1]"
)


def channel_config(
    ref: Any,
    namespace: str,
    configs: Mapping[tuple[str, str], Mapping[str, Any]],
    data: Mapping[tuple[str, str], Mapping[str, Any]],
    default_url: str,
    issues: Issues,
) -> dict[str, str]:
    """{"url", "queueType", "vhost"?} for a RabbitMQBroker's `spec.config`; errors in `issues`.

    `configs`: RabbitmqBrokerConfig objects by (namespace, name); `data`: ConfigMap data by
    (namespace, name)."""
    if not isinstance(ref, Mapping):
        issues.error("spec.config", "missing field(s): spec.config", REASON_CONFIG)
        return {}
    missing = [f"spec.config.{k}" for k in ("apiVersion", "kind", "name") if not ref.get(k)]
    if missing:
        issues.error("spec.config", f"missing field(s): {', '.join(missing)}", REASON_CONFIG)
        return {}
    api, kind, name = str(ref["apiVersion"]), str(ref["kind"]), str(ref["name"])
    ns = str(ref.get("namespace") or namespace)
    out = {"queueType": "quorum", "url": default_url}
    if (api, kind) == (CLUSTER_API, CLUSTER_KIND):
        pass  # the cluster is the one kbroker runs with
    elif (api, kind) == (CONFIG_API, CONFIG_KIND):
        obj = configs.get((ns, name))
        if obj is None:
            issues.error("spec.config", f"{CONFIG_KIND} {ns}/{name} not found", REASON_CONFIG)
            return {}
        _parse_config(obj.get("spec"), ns, data, out, issues)
    else:
        issues.error("spec.config", NOT_SUPPORTED, REASON_CONFIG)
        return {}
    if not out.get("url"):
        issues.error(
            "spec.config",
            "no RabbitMQ URL: name a connectionSecret with a `uri` or run kbroker with --rabbitmq",
            REASON_CONFIG,
        )
    return out


def default_config(default_url: str, issues: Issues) -> dict[str, str]:
    """The configuration of a Broker of another class served by RabbitMQ (the default class
    under `kbroker run --rabbitmq` without `--kafka`): the server kbroker runs with, quorum."""
    if not default_url:
        issues.error("spec.config", "no RabbitMQ URL: run kbroker with --rabbitmq", REASON_CONFIG)
    return {"queueType": "quorum", "url": default_url}


def _parse_config(
    spec: Any,
    ns: str,
    data: Mapping[tuple[str, str], Mapping[str, Any]],
    out: dict[str, str],
    issues: Issues,
) -> None:
    where = f"{CONFIG_KIND} {ns}"
    spec = spec if isinstance(spec, Mapping) else {}
    queue_type = str(spec.get("queueType") or "quorum")
    if queue_type not in QUEUE_TYPES:
        issues.error("spec.config", f"{where}: queueType must be quorum or classic", REASON_CONFIG)
    out["queueType"] = queue_type
    if spec.get("vhost"):
        out["vhost"] = str(spec["vhost"])
    cluster = spec.get("rabbitmqClusterReference")
    if not isinstance(cluster, Mapping):
        issues.error(
            "spec.config", "missing field(s): spec.rabbitmqClusterReference", REASON_CONFIG
        )
        return
    secret = cluster.get("connectionSecret")
    if cluster.get("name") and secret:
        issues.error(
            "spec.config",
            "rabbitmqClusterReference.name and rabbitmqClusterReference.connectionSecret must "
            "not be set simultaneously",
            REASON_CONFIG,
        )
        return
    if not secret:
        if not cluster.get("name"):
            issues.error(
                "spec.config", "missing field(s): spec.rabbitmqClusterReference.name", REASON_CONFIG
            )
        return
    secret_name = str(secret.get("name") or "") if isinstance(secret, Mapping) else ""
    ref_ns = str(cluster.get("namespace") or ns)
    values = data.get((ref_ns, secret_name))
    if values is None or not values.get("uri"):
        issues.error(
            "spec.config",
            f"connectionSecret {ref_ns}/{secret_name} not found or has no `uri`",
            REASON_CONFIG,
        )
        return
    out["url"] = _with_credentials(
        str(values["uri"]), values.get("username"), values.get("password")
    )


def _with_credentials(uri: str, username: Any, password: Any) -> str:
    if not username:
        return uri
    parts = urllib.parse.urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    cred = urllib.parse.quote(str(username), safe="")
    if password:
        cred += ":" + urllib.parse.quote(str(password), safe="")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{cred}@{host}"))


def parallelism(annotations: Mapping[str, Any], issues: Issues) -> int | None:
    """The Trigger's `rabbitmq.eventing.knative.dev/parallelism` (1..1000), or None if unset."""
    raw = annotations.get(PARALLELISM_ANNOTATION)
    if raw is None:
        return None
    field = f"metadata.annotations[{PARALLELISM_ANNOTATION}]"
    try:
        n = int(str(raw).strip())
    except ValueError:
        issues.error(
            field, "Failed to parse valid int from parallelismAnnotation", REASON_ANNOTATION
        )
        return None
    if not 1 <= n <= 1000:
        issues.error(field, f"expected 1 <= N <= 1000: {PARALLELISM_ANNOTATION}", REASON_ANNOTATION)
        return None
    return n
