"""RabbitMQBroker in cluster mode: the RabbitmqBrokerConfig objects and the ConfigMaps they name.

Why a module of its own: the reconciler serves every class from the same informers; RabbitMQ adds
one resource (eventing-rabbitmq's `RabbitmqBrokerConfig`, eventing.knative.dev/v1alpha1) and one
more reason to read a ConfigMap (a config's `connectionSecret`), and nothing else. The rules for
turning a config into a server URL are `controller/rabbitmq_config.py`'s, shared with the folder
mode; here is only where the objects come from.

Where the AMQP URL comes from, in this order:
- `spec.rabbitmqClusterReference.connectionSecret.name`: a **ConfigMap** of that name (namespace:
  the reference's, else the config's) with the key `uri` (and optional `username`, `password`).
  kbroker reads no Secrets (its ClusterRole has no access to them), so the connection details
  eventing-rabbitmq keeps in a Secret go into a ConfigMap;
- `spec.rabbitmqClusterReference.name`, or a Broker whose `spec.config` names a RabbitmqCluster:
  the server of `kbroker controller --rabbitmq URL` (`KBROKER_RABBITMQ`).

What it refuses: to block the controller when the RabbitmqBrokerConfig CRD is not installed.
Then the informer reports itself synced with no objects and looks again every `absent_retry`
seconds; Brokers naming a RabbitmqBrokerConfig are not Ready ("not found") meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from kbroker.controller.kube.api import KubeError, Obj, Resource
from kbroker.controller.kube.watch import Informer

log = logging.getLogger(__name__)

CONFIGS = Resource(
    "eventing.knative.dev", "v1alpha1", "rabbitmqbrokerconfigs", "RabbitmqBrokerConfig"
)


def connection_refs(configs: Iterable[Obj]) -> set[tuple[str, str]]:
    """(namespace, name) of every ConfigMap a RabbitmqBrokerConfig names as its connection."""
    out = set()
    for cfg in configs:
        meta = cfg.get("metadata") or {}
        spec = cfg.get("spec")
        cluster = spec.get("rabbitmqClusterReference") if isinstance(spec, Mapping) else None
        if not isinstance(cluster, Mapping):
            continue
        secret = cluster.get("connectionSecret")
        if isinstance(secret, Mapping) and secret.get("name"):
            ns = cluster.get("namespace") or meta.get("namespace")
            out.add((str(ns), str(secret["name"])))
    return out


class ConfigInformer(Informer):
    """The RabbitmqBrokerConfig informer, which tolerates the CRD being absent."""

    absent_retry = 30.0

    async def run(self) -> None:
        warned = False
        while True:
            try:
                await self.client.request("GET", self.resource.path(), query={"limit": "1"})
                break
            except KubeError as exc:
                if exc.status != 404:
                    break  # anything else is the informer's to retry
                if not warned:
                    log.info(
                        "the RabbitmqBrokerConfig CRD is not installed: RabbitMQBroker Brokers "
                        "can only name a RabbitmqCluster (the server of --rabbitmq)"
                    )
                    warned = True
                self.items = {}
                self.synced.set()
                await asyncio.sleep(self.absent_retry)
        await super().run()
