"""Broker defaults: Knative's `config-br-defaults` ConfigMap (key `default-br-config`).

Knative's webhook fills in a Broker's class annotation, `spec.config` and `spec.delivery` from
this ConfigMap; we have no webhook, so the compiler asks these values at compile time instead.
The lookup order mirrors Knative's `Defaults.GetBrokerClass` / `GetBrokerConfig`: the namespace's
entry first (its own class, then its `brokerClasses` map), then the cluster default (its
`brokerClasses` map, then its inline config, which every unknown class falls back to).

Delivery stays raw (the YAML mapping) here: the compiler parses and resolves it with the same
code it uses for a Broker's own `spec.delivery`, so a bad default is reported the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

CONFIGMAP_NAME = "config-br-defaults"
CONFIGMAP_KEY = "default-br-config"

# The delivery Knative ships in config-br-defaults since #6011 (it used to be fire-and-forget).
SHIPPED_DELIVERY: Mapping[str, Any] = {
    "retry": 10,
    "backoffPolicy": "exponential",
    "backoffDelay": "PT0.2S",
}

_REF_KEYS = ("apiVersion", "kind", "name", "namespace", "group", "address")


class DefaultsError(ValueError):
    """`default-br-config` is not valid YAML of the expected shape."""


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """What a Broker of some class gets when it leaves `spec.config` / `spec.delivery` unset."""

    config: Mapping[str, Any] | None = None  # a KReference, usually to a ConfigMap
    delivery: Mapping[str, Any] | None = None  # raw DeliverySpec


@dataclass(frozen=True, slots=True)
class ScopeDefaults:
    """One `clusterDefault` or `namespaceDefaults.<ns>` entry."""

    broker_class: str = ""
    inline: BrokerConfig | None = None  # the deprecated inline config of the default class
    broker_classes: Mapping[str, BrokerConfig] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Defaults:
    cluster: ScopeDefaults | None = None
    namespaces: Mapping[str, ScopeDefaults] = field(default_factory=dict)

    def broker_class(self, namespace: str) -> str | None:
        """The class a Broker without the class annotation gets, or None when unset."""
        ns = self.namespaces.get(namespace)
        if ns is not None and ns.broker_class:
            return ns.broker_class
        if self.cluster is not None and self.cluster.broker_class:
            return self.cluster.broker_class
        return None

    def broker_config(self, namespace: str, broker_class: str) -> BrokerConfig | None:
        ns = self.namespaces.get(namespace)
        if ns is not None:
            if broker_class in ns.broker_classes:
                return ns.broker_classes[broker_class]
            if ns.broker_class == broker_class and ns.inline is not None:
                return ns.inline
        return self._cluster_config(broker_class)

    def _cluster_config(self, broker_class: str) -> BrokerConfig | None:
        c = self.cluster
        if c is None:
            return None
        if broker_class in c.broker_classes:
            return c.broker_classes[broker_class]
        return c.inline


def shipped() -> Defaults:
    """Knative's shipped defaults, minus the class (the Environment picks that)."""
    return Defaults(cluster=ScopeDefaults(inline=BrokerConfig(delivery=dict(SHIPPED_DELIVERY))))


def from_configmap(data: Mapping[str, Any]) -> Defaults:
    """Defaults from a ConfigMap's `data`; raises DefaultsError."""
    text = data.get(CONFIGMAP_KEY)
    if text is None:
        raise DefaultsError(f"data.{CONFIGMAP_KEY} is missing")
    return parse(str(text))


def parse(text: str) -> Defaults:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DefaultsError(f"{CONFIGMAP_KEY} is not valid YAML: {exc}") from exc
    if doc is None:
        return Defaults()
    if not isinstance(doc, Mapping):
        raise DefaultsError(f"{CONFIGMAP_KEY} must be a mapping")
    cluster = doc.get("clusterDefault")
    namespaces = doc.get("namespaceDefaults") or {}
    if not isinstance(namespaces, Mapping):
        raise DefaultsError("namespaceDefaults must be a mapping of namespace to defaults")
    return Defaults(
        cluster=_scope(cluster, "clusterDefault") if cluster is not None else None,
        namespaces={
            str(ns): _scope(v, f"namespaceDefaults.{ns}")
            for ns, v in namespaces.items()
            if v is not None
        },
    )


def _scope(raw: Any, where: str) -> ScopeDefaults:
    if not isinstance(raw, Mapping):
        raise DefaultsError(f"{where} must be a mapping")
    classes = raw.get("brokerClasses") or {}
    if not isinstance(classes, Mapping):
        raise DefaultsError(f"{where}.brokerClasses must be a mapping of class to config")
    inline = _config(raw, where)
    return ScopeDefaults(
        broker_class=str(raw.get("brokerClass") or ""),
        inline=inline if (inline.config or inline.delivery) else None,
        broker_classes={
            str(k): _config(v, f"{where}.brokerClasses.{k}")
            for k, v in classes.items()
            if v is not None
        },
    )


def _config(raw: Any, where: str) -> BrokerConfig:
    if not isinstance(raw, Mapping):
        raise DefaultsError(f"{where} must be a mapping")
    ref = {k: raw[k] for k in _REF_KEYS if raw.get(k)}
    delivery = raw.get("delivery")
    if delivery is not None and not isinstance(delivery, Mapping):
        raise DefaultsError(f"{where}.delivery must be a mapping")
    return BrokerConfig(config=ref or None, delivery=delivery)
