"""A Trigger -> its contract entry and Knative status, against the already compiled Brokers.

Rules (Knative's Trigger, as users see it):
- A Trigger's delivery is its own `spec.delivery` if set, else its Broker's, whole-object: fields
  are never merged.
- A Trigger waits for its Broker: it is not in the contract until the Broker is Ready.
- A non-empty `filters` wins over the legacy `filter`; an empty one leaves the legacy one in force.

What this module refuses: Brokers (see `brokers`) and anything that is not a pure function of the
compilation it is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kbroker.controller import rabbitmq_config, resolve, status, validate
from kbroker.controller.brokers import BrokerOutcome
from kbroker.controller.compilation import Compilation, Obj, from_issues
from kbroker.core import contract


class TriggerCompiler:
    """Compiles one Trigger against the already compiled Brokers."""

    def __init__(self, c: Compilation, addresses: Mapping[tuple[str, str], str]) -> None:
        self.c = c
        self.addresses = addresses

    def broker_name(self, o: Obj, spec: Mapping[str, Any], issues: validate.Issues) -> str:
        name, ref = spec.get("broker"), spec.get("brokerRef")
        if name and ref:
            issues.error("spec", "expected exactly one, got both: spec.broker, spec.brokerRef")
        if not name and isinstance(ref, Mapping):
            if ref.get("namespace") not in (None, "", o.namespace):
                issues.error(
                    "spec.brokerRef.namespace", "cross-namespace Brokers are not supported"
                )
            name = ref.get("name")
        if not name:
            issues.error("spec.broker", "missing field(s): spec.broker")
            return ""
        return str(name)

    def compile(
        self, o: Obj, brokers: Mapping[tuple[str, str], BrokerOutcome]
    ) -> contract.Trigger | None:
        c = self.c
        spec = o.spec if isinstance(o.spec, Mapping) else {}
        broker_issues, issues = validate.Issues(), validate.Issues()
        if not isinstance(o.spec, Mapping):
            issues.error("spec", "expected a mapping")
        broker = self.broker_name(o, spec, broker_issues)
        if broker and (o.namespace, broker) in c.brokers and (o.namespace, broker) not in brokers:
            c.problem(
                o,
                o.source,
                "spec.broker",
                f'Broker "{broker}" is not a kbroker class: ignored',
                "warning",
            )
            return None
        outcome = brokers.get((o.namespace, broker))

        # Filters: a non-empty `filters` wins; an empty one leaves the legacy filter in force.
        legacy = validate.legacy_filter(spec.get("filter"), issues)
        new = validate.filters(spec.get("filters"), issues)
        filters = new if new else legacy

        subscriber_uri: str | None = None
        try:
            subscriber_uri = resolve.resolve_destination(
                spec.get("subscriber"),
                o.namespace,
                "spec.subscriber",
                self.addresses,
                c.env.resolver,
            )
            subscriber = status.true("SubscriberResolved")
        except resolve.DestinationError as exc:
            subscriber = status.false(
                "SubscriberResolved", status.REASON_SUBSCRIBER_FAILED, str(exc)
            )
            c.problem(o, o.source, exc.field, exc.message, "error")

        delivery, dls = self.delivery(o, spec, outcome, issues)
        order = validate.order(o.annotations, issues)
        max_in_flight = validate.max_in_flight(o.annotations, c.env.default_max_in_flight, issues)
        parallelism = rabbitmq_config.parallelism(o.annotations, issues)
        if parallelism is not None and validate.MAX_IN_FLIGHT_ANNOTATION not in o.annotations:
            max_in_flight = parallelism
        start_from = validate.start_from(o.annotations, issues)
        entry = outcome.entry if outcome is not None else None
        if start_from is contract.StartFrom.EARLIEST and entry and entry.channel == "rabbitmq":
            issues.warn(
                f"metadata.annotations[{validate.START_FROM_ANNOTATION}]",
                "earliest is not supported on RabbitMQ: the trigger's queue holds what arrives "
                "after it is created",
            )
        validate.dependency(o.annotations, o.namespace, issues)
        c.report(o, broker_issues)
        c.report(o, issues)

        if broker_issues.errors:
            broker_cond = from_issues("BrokerReady", broker_issues)
        elif outcome is None:
            broker_cond = status.false(
                "BrokerReady", status.REASON_BROKER_MISSING, f'Broker "{broker}" does not exist'
            )
            c.problem(
                o,
                o.source,
                "spec.broker",
                f'Broker "{broker}" does not exist (the Trigger waits for it)',
                "warning",
            )
        else:
            top = outcome.status.conditions[0]
            broker_cond = dataclasses.replace(top, type="BrokerReady")
        consumer_group = c.env.group_template.format(namespace=o.namespace, name=o.name)
        st = status.ObjectStatus(
            kind="Trigger",
            namespace=o.namespace,
            name=o.name,
            generation=o.generation,
            conditions=status.with_ready(
                status.TRIGGER_CONDITIONS,
                {
                    "BrokerReady": broker_cond,
                    "SubscriberResolved": subscriber,
                    "DeadLetterSinkResolved": dls,
                    "SubscriptionReady": from_issues("SubscriptionReady", issues),
                    "DependencyReady": status.true("DependencyReady"),
                    "OIDCIdentityCreated": status.true(
                        "OIDCIdentityCreated", status.REASON_OIDC_DISABLED_TRIGGER
                    ),
                },
            ),
            subscriber_uri=subscriber_uri,
            dead_letter_sink_uri=delivery.dead_letter_uri if delivery else None,
            annotations=(("group.id", consumer_group),),
            warnings=tuple(str(i) for i in issues.items if i.severity == "warning"),
        )
        c.statuses[("Trigger", o.namespace, o.name)] = st
        if not st.ready or outcome is None or delivery is None or subscriber_uri is None:
            return None
        return contract.Trigger(
            namespace=o.namespace,
            name=o.name,
            uid=contract.TriggerUid(o.uid()),
            broker=broker,
            subscriber_uri=subscriber_uri,
            filters=filters,
            delivery=delivery,
            order=order,
            max_in_flight=max_in_flight,
            start_from=start_from,
            consumer_group=consumer_group,
            generation=o.generation,
        )

    def delivery(
        self,
        o: Obj,
        spec: Mapping[str, Any],
        outcome: BrokerOutcome | None,
        issues: validate.Issues,
    ) -> tuple[contract.DeliverySpec | None, status.Condition]:
        """The effective delivery (own, else the Broker's, whole-object) and its DLS condition."""
        raw = spec.get("delivery")
        if raw is not None:
            own, dls_raw = validate.delivery(raw, "spec.delivery", issues)
            cond, uri, issue = resolve.dead_letter(
                dls_raw,
                o.namespace,
                "spec.delivery.deadLetterSink",
                self.addresses,
                self.c.env.resolver,
            )
            if issue is not None:
                self.c.problem(o, o.source, issue.field, issue.message, "error")
                return None, cond
            return dataclasses.replace(own, dead_letter_uri=uri), cond
        if outcome is None:
            return None, status.unknown(
                "DeadLetterSinkResolved", "BrokerNotReady", "waiting for the Broker's delivery"
            )
        broker_dls = outcome.status.condition("DeadLetterSinkResolved")
        if outcome.delivery is None:
            if broker_dls is not None and broker_dls.status == status.FALSE:
                return None, broker_dls
            return None, status.unknown(
                "DeadLetterSinkResolved", "BrokerNotReady", "the Broker's delivery is invalid"
            )
        if outcome.delivery.dead_letter_uri is None:
            return outcome.delivery, status.true(
                "DeadLetterSinkResolved",
                status.REASON_DLS_NOT_CONFIGURED,
                status.MESSAGE_DLS_NOT_CONFIGURED,
            )
        return outcome.delivery, status.true("DeadLetterSinkResolved")
