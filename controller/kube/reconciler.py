"""The cluster-mode controller: Brokers and Triggers from the API server -> contract + status.

Level-based and idempotent, like the folder source: informers keep every Broker, Trigger,
EventPolicy and ConfigMap in memory, any change marks the world dirty, and one reconcile at a
time recompiles the *whole* contract with `controller.compiler` (~0.2 s for 1,000 Triggers), then
makes the cluster match it:

  informers --dirty--> reconcile: served versions (immutable fields) -> resolve refs (prefetch)
     -> compile -> ensure storage -> ConfigMap kbroker-contract (optimistic, generation + 1)
     -> [contract file] -> probe data plane -> patch status subresources -> finalizers

Ready means served: an object is Ready only once every data-plane process reports serving a
contract generation that includes its current entry (GET <url>/contract-generation). Deleting a
Broker: our finalizer keeps it until the contract without it is served and its storage (Kafka
topic, embedded log) is deleted, because nothing else would garbage-collect a topic.

What it refuses: acting on single events, and writing anything it has not changed (a status is
patched only when it differs, the contract only when its content does).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kbroker.controller import channel_template, compiler, features, readiness
from kbroker.controller import defaults as br_defaults
from kbroker.controller.kube import decisions, flows, rabbitmq
from kbroker.controller.kube.api import (
    BROKERS,
    CONFIGMAPS,
    EVENTPOLICIES,
    MERGE_PATCH,
    TRIGGERS,
    KubeClient,
    KubeError,
    Obj,
    Resource,
)
from kbroker.controller.kube.contract_map import Conflict, ContractStore, DataPlaneProbe
from kbroker.controller.kube.resolve import KubeResolver
from kbroker.controller.kube.sources_api import PINGSOURCES, sink_refs
from kbroker.controller.kube.watch import Informer
from kbroker.core import contract as ct
from kbroker.core.channel import Channel, ChannelError

log = logging.getLogger(__name__)

SOURCE = "kubernetes"


@dataclasses.dataclass(frozen=True, slots=True)
class KubeSettings:
    system_namespace: str = "kbroker-system"
    ingress_url: str = ""  # Broker addresses' base; "" = the in-cluster ingress Service
    classes: tuple[str, ...] = ()  # Broker classes served; () = every class kbroker implements
    contract_configmap: str = "kbroker-contract"
    contract_file: Path | None = None  # also write the contract here (processes outside pods)
    data_plane: tuple[str, ...] = ()  # base URLs probed before Ready; () = Ready when written
    kafka_bootstrap: str | None = None  # default Kafka; makes MTChannelBasedBroker use Kafka
    nats_url: str | None = None  # the NATS server of NatsJetStreamChannel brokers
    rabbitmq_url: str | None = None  # RabbitMQBroker's server when its config names none
    resync_interval: float = 30.0  # seconds between full reconciles (re-resolves references)
    watch_timeout: int = 300
    finalize_timeout: float = 60.0  # seconds a deleted Broker waits for a silent data plane
    max_backoff: float = 30.0
    ingress_ca_certs: str | None = None  # PEM published as Brokers' CACerts (https ingress)
    probe_token_file: Path | None = None  # ops token the data plane's /contract-generation wants
    probe_ca: Path | None = None  # verifies the data plane's https certificates

    def base_url(self) -> str:
        return (
            self.ingress_url or f"http://kbroker-ingress.{self.system_namespace}.svc.cluster.local"
        )

    def environment(self) -> compiler.Environment:
        env = compiler.Environment(
            ingress_base_url=self.base_url(), ingress_ca_certs=self.ingress_ca_certs
        )
        classes = dict(env.class_channels)
        kafka: tuple[tuple[str, str], ...] = ()
        channel_backends: dict[str, str] = {}
        if self.kafka_bootstrap:
            classes["MTChannelBasedBroker"] = "kafka"
            kafka = (("bootstrap.servers", self.kafka_bootstrap),)
            # Ingress and filter run in separate pods: an embedded log written by one is never
            # read by the other, so channels that would use it use the default Kafka instead.
            channel_backends["InMemoryChannel"] = "kafka"
        if self.classes:
            classes = {c: ch for c, ch in classes.items() if c in self.classes}
        return dataclasses.replace(
            env,
            class_channels=classes,
            default_kafka_config=kafka,
            nats_url=self.nats_url,
            channel_backends=channel_backends,
            default_rabbitmq_url=self.rabbitmq_url or "",
        )


class KubeController:
    def __init__(
        self,
        client: KubeClient,
        settings: KubeSettings,
        channels: Mapping[str, Channel],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.settings = settings
        self.channels = channels
        self.clock = clock
        self.env = settings.environment()
        self.resolver = KubeResolver(client)
        self.dirty = asyncio.Event()
        self.brokers = Informer(
            client, BROKERS, self._changed, watch_timeout=settings.watch_timeout
        )
        self.triggers = Informer(
            client, TRIGGERS, self._changed, watch_timeout=settings.watch_timeout
        )
        self.configmaps = Informer(
            client, CONFIGMAPS, self._configmap_changed, watch_timeout=settings.watch_timeout
        )
        self.eventpolicies = Informer(
            client, EVENTPOLICIES, self._changed, watch_timeout=settings.watch_timeout
        )
        # Channels, Subscriptions, Sequences and Parallels: compiled with the rest.
        self.flows = {
            r.kind: Informer(
                client,
                r,
                self._changed,
                watch_timeout=settings.watch_timeout,
                optional=r.kind in flows.OPTIONAL,
            )
            for r in flows.KINDS
        }
        self.rabbitmq_configs = rabbitmq.ConfigInformer(
            client, rabbitmq.CONFIGS, self._changed, watch_timeout=settings.watch_timeout
        )
        self._informers = (
            self.brokers,
            self.triggers,
            self.configmaps,
            self.eventpolicies,
            *self.flows.values(),
            self.rabbitmq_configs,
        )
        # Not waited for before the first reconcile: without the sources CRDs installed it never
        # syncs, and Brokers must not wait for PingSources.
        self.pingsources = Informer(
            client, PINGSOURCES, self._changed, watch_timeout=settings.watch_timeout
        )
        self._by_kind = {
            "Broker": (self.brokers, BROKERS),
            "Trigger": (self.triggers, TRIGGERS),
            "EventPolicy": (self.eventpolicies, EVENTPOLICIES),
            **{kind: (i, i.resource) for kind, i in self.flows.items()},
            "PingSource": (self.pingsources, PINGSOURCES),
        }
        self.store = ContractStore(
            client, settings.system_namespace, settings.contract_configmap, settings.contract_file
        )
        self.probe = DataPlaneProbe(
            settings.data_plane, token_file=settings.probe_token_file, ca=settings.probe_ca
        )
        self.reconciles = 0
        self.last_duration = 0.0  # seconds the last successful reconcile took
        self._awaiting: int | None = None  # generation some object waits to see served
        self._doomed_since: dict[str, float] = {}  # deleted Broker -> when first seen (monotonic)
        self._since: dict[decisions.Key, tuple[object, int]] = {}
        self._storage: dict[str, ct.Broker] = {}  # key -> entry whose storage exists
        self._storage_errors: dict[str, str] = {}
        self._trigger_brokers: dict[tuple[str, str, str], str] = {}
        self._problems: tuple[compiler.Problem, ...] = ()
        self._readiness = readiness.ReadinessLog()

    @property
    def contract(self) -> ct.Contract | None:
        """The contract last written to (or found in) the ConfigMap."""
        return self.store.current

    async def _load_contract(self) -> None:
        loaded = await self.store.load()
        if loaded is None:
            return
        for b in loaded.brokers:
            # A restart: what the data plane serves is where the bookkeeping starts.
            self._storage.setdefault(b.key, b)
        for key, entry in _entries(loaded).items():
            self._since[key] = (entry, loaded.generation)

    # --- change notifications -------------------------------------------------------------------

    def _changed(self, _: Obj | None) -> None:
        self.dirty.set()

    def _configmap_changed(self, obj: Obj | None) -> None:
        if obj is None or self._relevant(obj):
            self.dirty.set()

    def _relevant(self, cm: Mapping[str, Any]) -> bool:
        meta = decisions.meta(cm)
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if name in (
            br_defaults.CONFIGMAP_NAME,
            features.CONFIGMAP_NAME,
            channel_template.DEFAULT_CONFIGMAP,
        ):
            return ns in (self.settings.system_namespace, "knative-eventing")
        return (ns, name) in self._config_refs()

    def _config_refs(self) -> set[tuple[str, str]]:
        out = set()
        for b in self.brokers.items.values():
            ref = (b.get("spec") or {}).get("config")
            if isinstance(ref, Mapping) and ref.get("kind") == "ConfigMap" and ref.get("name"):
                ns = ref.get("namespace") or decisions.meta(b).get("namespace")
                out.add((str(ns), str(ref["name"])))
        return out | rabbitmq.connection_refs(self.rabbitmq_configs.items.values())

    # --- main loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for informer in (*self._informers, self.pingsources):
                tg.create_task(informer.run(), name=f"watch:{informer.resource.plural}")
            tg.create_task(self._loop(), name="reconcile")
            tg.create_task(self._probe_loop(), name="probe-data-plane")

    async def _loop(self) -> None:
        for informer in self._informers:
            await informer.synced.wait()
        await self._retrying(self._load_contract)
        wait, delay = 0.0, 0.2
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.dirty.wait(), wait or self.settings.resync_interval)
                await asyncio.sleep(0.05)  # coalesce a burst of events into one reconcile
                self.dirty.clear()
                started = time.perf_counter()
                try:
                    converged = await self.reconcile()
                except Conflict:
                    wait = 0.01
                    continue
                except (KubeError, ChannelError) as exc:
                    log.warning("reconcile failed: %s; retrying in %.1fs", exc, delay)
                    wait, delay = delay, min(delay * 2, self.settings.max_backoff)
                    continue
                except Exception:  # a bug must not stop every Broker's reconciliation for good
                    log.exception("reconcile failed unexpectedly; retrying in %.1fs", delay)
                    wait, delay = delay, min(delay * 2, self.settings.max_backoff)
                    continue
                self.last_duration = time.perf_counter() - started
                if self.last_duration > 1.0:
                    log.info("reconcile took %.2fs", self.last_duration)
                # Storage or finalization failing: look again, backing off. (Waiting for the
                # data plane is the probe loop's job: it wakes us when the generation moves.)
                wait = 0.0 if converged else delay
                delay = 0.2 if converged else min(delay * 2, self.settings.max_backoff)
        finally:
            await self.probe.close()

    async def _probe_loop(self, interval: float = 0.2) -> None:
        while True:
            await asyncio.sleep(interval)
            awaited = self._awaiting
            if awaited is not None:
                served = await self.probe.generation()
                if served is not None and served >= awaited:
                    self._awaiting = None
                    self.dirty.set()

    async def _retrying(self, step: Callable[[], Any]) -> None:
        delay = 0.2
        while True:
            try:
                await step()
                return
            except KubeError as exc:
                log.warning("%s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.max_backoff)

    # --- one reconcile --------------------------------------------------------------------------

    async def reconcile(self) -> bool:
        """Make the cluster match the objects once; True when nothing is left pending."""
        self.reconciles += 1
        now = self.clock()
        configmaps = self._configmaps()
        defaults = _defaults(configmaps)
        objects = [compiler.SourcedObject(cm, SOURCE) for cm in configmaps]
        violations: dict[decisions.Key, tuple[str, ...]] = {}
        doomed = []
        for b in self.brokers.items.values():
            if decisions.deleting(b):
                if decisions.has_finalizer(b):
                    doomed.append(b)
                continue
            served, problems = decisions.served_broker(
                b, decisions.recorded(b), defaults, self.env.default_broker_class
            )
            if problems:
                violations[decisions.key_of(b)] = tuple(problems)
            objects.append(compiler.SourcedObject(served, SOURCE))
        for t in self.triggers.items.values():
            if not decisions.deleting(t):
                objects.append(compiler.SourcedObject(self._served_trigger(t, violations), SOURCE))
        objects += [compiler.SourcedObject(p, SOURCE) for p in self.eventpolicies.items.values()]
        workflow = [
            o for i in self.flows.values() for o in i.items.values() if not decisions.deleting(o)
        ]
        objects += [compiler.SourcedObject(o, SOURCE) for o in workflow]
        pings = [p for p in self.pingsources.items.values() if not decisions.deleting(p)]
        objects += [compiler.SourcedObject(p, SOURCE) for p in pings]
        objects += [compiler.SourcedObject(r, SOURCE) for r in self.rabbitmq_configs.items.values()]
        alive = {_ident(t) for t in self.triggers.items.values()}
        self._trigger_brokers = {k: v for k, v in self._trigger_brokers.items() if k in alive}

        wanted = (
            decisions.refs(o.obj for o in objects)
            + [r for o in workflow for r in flows.refs(o)]
            + sink_refs(pings)
        )
        resolver = await self.resolver.prefetch(wanted)
        env = dataclasses.replace(self.env, resolver=resolver)
        result = compiler.compile(objects, env, previous=self.contract)
        self._log_problems(result.problems)
        await self._ensure_storage(result.contract)
        if self.contract is None or result.contract.generation != self.contract.generation:
            await self.store.write(result.contract)
        self.store.write_file(result.contract)
        generation = await self.probe.generation()
        pending = await self._write_statuses(result, violations, generation, now)
        await self._adopt(result)
        waiting, failed = await self._finalize(doomed, generation)
        await self._collect_channels(result.contract, generation)
        self._awaiting = result.contract.generation if pending or waiting else None
        return not failed and not self._storage_errors

    def _configmaps(self) -> list[Obj]:
        """config-br-defaults (ours first), config-features, config-br-default-channel and the
        ConfigMaps Brokers reference."""
        refs = self._config_refs()
        keep = []
        for (ns, name), cm in sorted(self.configmaps.items.items()):
            if (ns, name) in refs or (
                name
                in (
                    br_defaults.CONFIGMAP_NAME,
                    features.CONFIGMAP_NAME,
                    channel_template.DEFAULT_CONFIGMAP,
                )
                and ns in (self.settings.system_namespace, "knative-eventing")
            ):
                keep.append(cm)
        return keep

    def _served_trigger(self, t: Obj, violations: dict[decisions.Key, tuple[str, ...]]) -> Obj:
        ident = _ident(t)
        served, problems = decisions.served_trigger(t, self._trigger_brokers.get(ident))
        if problems:
            violations[decisions.key_of(t)] = tuple(problems)
        else:
            broker = (t.get("spec") or {}).get("broker")
            if isinstance(broker, str):
                self._trigger_brokers[ident] = broker
        return dict(served)

    def _log_problems(self, problems: tuple[compiler.Problem, ...]) -> None:
        if problems != self._problems:
            for p in problems:
                (log.warning if p.severity == "error" else log.info)("%s", p)
            self._problems = problems

    async def _ensure_storage(self, c: ct.Contract) -> None:
        for b in c.brokers:
            if self._storage.get(b.key) == b and b.key not in self._storage_errors:
                continue
            channel = self.channels.get(b.channel)
            try:
                if channel is None:
                    raise ChannelError(f"channel {b.channel!r} is not available in the controller")
                await channel.ensure_broker(b)
            except ChannelError as exc:
                log.error("broker %s: storage not ready: %s", b.key, exc)
                self._storage_errors[b.key] = str(exc)
                continue
            self._storage[b.key] = b
            self._storage_errors.pop(b.key, None)

    # --- status ---------------------------------------------------------------------------------

    async def _write_statuses(
        self,
        result: compiler.CompileResult,
        violations: Mapping[decisions.Key, tuple[str, ...]],
        served: int | None,
        now: datetime,
    ) -> bool:
        """Patch every status that differs; True while some object waits for the data plane."""
        c = result.contract
        entries = _entries(c)
        pending = False
        patches: list[tuple[Resource, Obj, Obj]] = []
        seen: list[readiness.Readiness] = []
        for key, st in result.statuses.items():
            kind, ns, name = key
            if kind not in self._by_kind:
                continue  # a kind this controller does not watch (compile's own bookkeeping)
            informer, resource = self._by_kind[kind]
            obj = informer.items.get((ns, name))
            if obj is None:
                continue
            waiting = None
            entry = entries.get(key)
            if entry is None and kind in self.flows:
                # Ready waits for the generation that first carried its channels and
                # subscriptions as they are now (and this version of the object).
                entry = (st.generation, st.ready, flows.entries_of(kind, ns, name, c))
            if entry is not None:
                since = self._since.get(key)
                if since is None or since[0] != entry:
                    since = self._since[key] = (entry, c.generation)
                if served is not None and served < since[1]:
                    waiting, pending = since[1], True
            overrides = decisions.Overrides(
                violations=violations.get(key, ()),
                storage_error=self._storage_errors.get(f"{ns}/{name}")
                if kind == "Broker"
                else flows.storage_error(kind, ns, name, self._storage_errors),
                waiting_for=waiting,
                accepted=decisions.accepted_record(obj) if kind == "Broker" else None,
            )
            previous = obj.get("status")
            desired = decisions.desired_status(st, overrides, previous, now)
            broker = entry.broker if isinstance(entry, ct.Trigger) else ""
            if kind != "EventPolicy":
                seen.append(readiness.from_k8s(kind, ns, name, desired, broker))
            patch = decisions.status_patch(desired, previous)
            if patch is not None:
                patches.append((resource, obj, patch))
        kept = {k for k in result.statuses if k[0] in self.flows}
        for key in [k for k in self._since if k not in entries and k not in kept]:
            del self._since[key]
        await _gather_limited(self._patch_status(r, o, p) for r, o, p in patches)
        self._readiness.observe(seen)
        return pending

    async def _patch_status(self, resource: Resource, obj: Obj, patch: Obj) -> None:
        meta = decisions.meta(obj)
        path = resource.path(str(meta["namespace"]), str(meta["name"]), "status")
        try:
            await self.client.request("PATCH", path, body=patch, content_type=MERGE_PATCH)
        except KubeError as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report on
                raise

    # --- finalizers -----------------------------------------------------------------------------

    async def _adopt(self, result: compiler.CompileResult) -> None:
        """Our finalizer on every Broker we serve, so its storage is deleted with it."""
        patches = []
        for kind, ns, name in result.statuses:
            b = self.brokers.items.get((ns, name)) if kind == "Broker" else None
            if b is None or decisions.has_finalizer(b):
                continue
            meta = decisions.meta(b)
            finalizers = [*(meta.get("finalizers") or ()), decisions.FINALIZER]
            patch = {
                "metadata": {
                    "resourceVersion": meta.get("resourceVersion"),
                    "finalizers": finalizers,
                }
            }
            patches.append(self._patch_meta(b, patch))
        await _gather_limited(patches)

    async def _finalize(self, doomed: list[Obj], served: int | None) -> tuple[bool, bool]:
        """Delete the storage of deleted Brokers, then let them go.

        Returns (some wait for the data plane, some storage failed to delete)."""
        waiting = failed = False
        for b in doomed:
            meta = decisions.meta(b)
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            current = self.contract.generation if self.contract else 0
            first_seen = self._doomed_since.setdefault(key, time.monotonic())
            patience = self.settings.finalize_timeout
            if served is not None and served < current:
                if time.monotonic() - first_seen < patience:
                    waiting = True  # the data plane may still write to it
                    continue
                # A data plane that is down must not make Brokers undeletable.
                log.warning(
                    "broker %s: data plane silent for %.0fs, deleting anyway", key, patience
                )
            entry = self._storage.get(key)
            if entry is not None and (channel := self.channels.get(entry.channel)) is not None:
                try:
                    await channel.delete_broker(entry)
                except ChannelError as exc:
                    log.error("broker %s: storage not deleted yet: %s", key, exc)
                    failed = True
                    continue
                log.info("broker %s: storage %s deleted", key, entry.topic)
            self._storage.pop(key, None)
            self._storage_errors.pop(key, None)
            self._doomed_since.pop(key, None)
            kept = [f for f in meta.get("finalizers") or () if f != decisions.FINALIZER]
            await self._patch_meta(
                b,
                {"metadata": {"resourceVersion": meta.get("resourceVersion"), "finalizers": kept}},
            )
        return waiting, failed

    async def _collect_channels(self, current: ct.Contract, served: int | None) -> None:
        """Delete the storage of channels nothing owns any more, once no process serves them."""
        if any(i.absent for i in self.flows.values()):
            return  # an unlistable kind might own some: keep everything
        if served is not None and served < current.generation:
            return  # the data plane may still write to them
        present = {kind: i.items for kind, i in self.flows.items()}
        for entry in flows.orphaned(list(self._storage.values()), current, present):
            channel = self.channels.get(entry.channel)
            if channel is not None:
                try:
                    await channel.delete_broker(entry)
                except ChannelError as exc:
                    log.error("channel %s: storage not deleted yet: %s", entry.key, exc)
                    continue
                log.info("channel %s: storage %s deleted", entry.key, entry.topic)
            self._storage.pop(entry.key, None)
            self._storage_errors.pop(entry.key, None)

    async def _patch_meta(self, obj: Obj, patch: Obj) -> None:
        meta = decisions.meta(obj)
        path = BROKERS.path(str(meta["namespace"]), str(meta["name"]))
        try:
            await self.client.request("PATCH", path, body=patch, content_type=MERGE_PATCH)
        except KubeError as exc:
            if exc.status == 409:  # changed meanwhile: its watch event brings another reconcile
                self.dirty.set()
            elif exc.status != 404:
                raise


def _entries(c: ct.Contract) -> dict[decisions.Key, object]:
    """The contract entries of Brokers and Triggers by object key. Channels and Subscriptions
    (those of Sequences and Parallels included) are entries of the same types: left out, as a
    channel may share a name with a Broker."""
    out: dict[decisions.Key, object] = {
        ("Broker", b.namespace, b.name): b for b in c.brokers if b.kind == ct.BROKER
    }
    out.update({("Trigger", t.namespace, t.name): t for t in c.triggers if t.kind == ct.TRIGGER})
    return out


def _ident(obj: Obj) -> tuple[str, str, str]:
    meta = decisions.meta(obj)
    return (str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid")))


def _defaults(configmaps: list[Obj]) -> br_defaults.Defaults | None:
    for cm in configmaps:
        if decisions.meta(cm).get("name") == br_defaults.CONFIGMAP_NAME:
            try:
                return br_defaults.from_configmap(cm.get("data") or {})
            except br_defaults.DefaultsError:
                return None  # compile reports it on the ConfigMap
    return None


async def _gather_limited(calls: Any, limit: int = 8) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(call: Any) -> None:
        async with gate:
            await call

    await asyncio.gather(*(one(c) for c in calls))
