"""Which channel an `MTChannelBasedBroker` stores its events in: Knative's channel template.

Knative's channel-based broker reads the ConfigMap its `spec.config` names (filled in from
`config-br-defaults`), key `channel-template-spec` (the legacy key `channelTemplateSpec` still
works; the new one wins), whose YAML names a channel kind. kbroker maps the kinds onto its
backends:

    messaging.knative.dev/v1        InMemoryChannel        embedded (kbroker's durable log)
    messaging.knative.dev/v1beta1   KafkaChannel           kafka
    messaging.knative.dev/v1alpha1  NatsJetStreamChannel   nats

A Broker without `spec.config` (and no default naming one) uses the ConfigMap
`config-br-default-channel` (in `knative-eventing`, else the Broker's namespace) when the
configuration has it, and otherwise the process default (`embedded`, or `kafka` under `--kafka`).
A `spec.config` naming a ConfigMap the configuration does not hold falls back the same way, with
a warning. A template naming any other kind makes the Broker not Ready (TriggerChannelReady False,
reason ChannelTemplateFailed) with a message listing the kinds supported.

What this module refuses: I/O (it reads the ConfigMaps the compilation indexed) and guessing: a
template it cannot read is an error, never a silent fall back to another backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from kbroker.controller import validate

CLASS = "MTChannelBasedBroker"
KEY, LEGACY_KEY = "channel-template-spec", "channelTemplateSpec"
DEFAULT_CONFIGMAP = "config-br-default-channel"
SYSTEM_NAMESPACE = "knative-eventing"
REASON = "ChannelTemplateFailed"
KINDS: dict[str, tuple[str, str]] = {  # kind -> (apiVersion Knative defines it in, our channel)
    "InMemoryChannel": ("messaging.knative.dev/v1", "embedded"),
    "KafkaChannel": ("messaging.knative.dev/v1beta1", "kafka"),
    "NatsJetStreamChannel": ("messaging.knative.dev/v1alpha1", "nats"),
}
SUPPORTED = ", ".join(f"{kind} ({api})" for kind, (api, _) in KINDS.items())


@dataclass(frozen=True, slots=True)
class Selection:
    channel: str
    config: dict[str, str]  # channel_config pairs the template implies (e.g. NATS replicas)
    source: str  # where the choice came from, for the Broker's status annotations


def select(
    ref: Any,
    namespace: str,
    configmaps: Mapping[tuple[str, str], Mapping[str, Any]],
    fallback: str,
    issues: validate.Issues,
) -> Selection:
    """The channel for an MTChannelBasedBroker whose `spec.config` (or default) is `ref`."""
    if ref:
        if not isinstance(ref, Mapping) or ref.get("kind", "ConfigMap") != "ConfigMap":
            issues.error(
                "spec.config",
                "Broker.Spec.Config configuration not supported, only [kind: ConfigMap, "
                "apiVersion: v1]",
                REASON,
            )
            return Selection(fallback, {}, "")
        ns, name = str(ref.get("namespace") or namespace), str(ref.get("name") or "")
        data = configmaps.get((ns, name))
        if data is None:
            # Knative's defaults name knative-eventing/config-br-default-channel, which a folder
            # of YAML rarely carries: the process default then, said as a warning.
            issues.warn("spec.config", f"ConfigMap {ns}/{name} not found: using the {fallback} "
                        "channel")  # fmt: skip
            return Selection(fallback, {}, "")
        if KEY not in data and LEGACY_KEY not in data and name != DEFAULT_CONFIGMAP:
            # A ConfigMap of another kind of config (e.g. kafka-broker-config): not a template.
            return Selection(fallback, {}, "")
        return _from_configmap(data, f"ConfigMap {ns}/{name}", issues, fallback)
    for ns in (SYSTEM_NAMESPACE, namespace):
        data = configmaps.get((ns, DEFAULT_CONFIGMAP))
        if data is not None:
            return _from_configmap(data, f"ConfigMap {ns}/{DEFAULT_CONFIGMAP}", issues, fallback)
    return Selection(fallback, {}, "")


def _from_configmap(
    data: Mapping[str, Any], where: str, issues: validate.Issues, fallback: str
) -> Selection:
    raw = data.get(KEY) or data.get(LEGACY_KEY)
    if not raw:
        issues.error("spec.config", f"{where}: empty or missing value for config", REASON)
        return Selection(fallback, {}, "")
    try:
        template = yaml.safe_load(str(raw))
    except yaml.YAMLError as exc:
        issues.error("spec.config", f"{where}: {KEY} is not YAML: {exc}", REASON)
        return Selection(fallback, {}, "")
    if not isinstance(template, Mapping):
        issues.error("spec.config", f"{where}: {KEY} must be a mapping", REASON)
        return Selection(fallback, {}, "")
    kind = str(template.get("kind") or "")
    api = str(template.get("apiVersion") or "")
    known = KINDS.get(kind)
    if known is None or (api and api.split("/")[0] != known[0].split("/")[0]):
        issues.error(
            "spec.config",
            f"{where}: channel kind {kind or '(none)'} ({api or 'no apiVersion'}) is not "
            f"supported; supported: {SUPPORTED}",
            REASON,
        )
        return Selection(fallback, {}, "")
    channel = known[1]
    return Selection(channel, _config(channel, template.get("spec"), where, issues), where)


def _config(channel: str, spec: Any, where: str, issues: validate.Issues) -> dict[str, str]:
    """The template's spec as channel_config: NatsJetStreamChannel `stream.config.replicas`."""
    if channel != "nats" or not isinstance(spec, Mapping):
        return {}
    stream = spec.get("stream")
    conf = stream.get("config") if isinstance(stream, Mapping) else None
    replicas = conf.get("replicas") if isinstance(conf, Mapping) else None
    if replicas is None:
        return {}
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 5:
        issues.error(
            "spec.config",
            f"{where}: stream.config.replicas must be an integer from 1 to 5",
            REASON,
        )
        return {}
    return {"replicas": str(replicas)}
