"""A Broker -> its contract entry, its Knative status, and the delivery its Triggers inherit.

Rules (Knative's MT broker and Kafka broker, as users see them):
- Only Brokers whose class (annotation, else config-br-defaults, else the Environment) maps to a
  channel are ours; others are left alone, status included, as Knative's class filter does.
- A Broker without `spec.delivery` gets the default from config-br-defaults.
- A Broker that is not Ready is not in the contract.
- An MTChannelBasedBroker's channel comes from its channel template (`channel_template`).

What this module refuses: Triggers (see `triggers`) and anything that is not a pure function of
the compilation it is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from kbroker.controller import channel_template, quotas, rabbitmq_config, resolve, status, validate
from kbroker.controller.compilation import Compilation, Obj, from_issues
from kbroker.core import contract


@dataclass(frozen=True, slots=True)
class BrokerOutcome:
    obj: Obj
    entry: contract.Broker | None  # None when not Ready
    status: status.ObjectStatus
    delivery: contract.DeliverySpec | None  # effective default for its Triggers; None if invalid


def owned(c: Compilation) -> dict[tuple[str, str], str]:
    """(namespace, name) -> class of every Broker whose class maps to one of our channels."""
    found: dict[tuple[str, str], str] = {}
    for key, o in sorted(c.brokers.items()):
        cls = validate.broker_class(o.raw, c.defaults, c.env.default_broker_class)
        if cls in c.env.class_channels:
            found[key] = cls
        else:
            c.problem(
                o,
                o.source,
                "",
                f"broker class {cls!r} is not handled by kbroker: ignored",
                "warning",
            )
    return found


def compile_broker(
    c: Compilation, o: Obj, cls: str, addresses: Mapping[tuple[str, str], str]
) -> BrokerOutcome:
    """The outcome for one owned Broker of class `cls`; `addresses` are every owned Broker's."""
    spec = o.spec if isinstance(o.spec, Mapping) else {}
    channel_issues, delivery_issues = validate.Issues(), validate.Issues()
    if not isinstance(o.spec, Mapping):
        channel_issues.error("spec", "expected a mapping")
    channel = c.env.class_channels[cls]
    durability = validate.durability(o.annotations, channel_issues)
    quota = quotas.quota(o.annotations, channel_issues)
    class_defaults = c.defaults.broker_config(o.namespace, cls)

    raw_delivery, where = spec.get("delivery"), "spec.delivery"
    if raw_delivery is None and class_defaults is not None:
        raw_delivery, where = class_defaults.delivery, "spec.delivery (from config-br-defaults)"
    delivery, dls_raw = (
        validate.delivery(raw_delivery, where, delivery_issues)
        if raw_delivery is not None
        else (contract.DeliverySpec(), None)
    )
    dls_cond, dls_uri, dls_error = resolve.dead_letter(
        dls_raw, o.namespace, f"{where}.deadLetterSink", addresses, c.env.resolver
    )
    dls_issue = None
    if dls_error is not None:
        dls_issue = validate.Issue(dls_error.field, dls_error.message, status.REASON_DLS_FAILED)
        delivery_issues.items.append(dls_issue)

    config: dict[str, str] = {}
    external = o.annotations.get(validate.EXTERNAL_TOPIC_ANNOTATION)
    ref = spec.get("config") or (class_defaults.config if class_defaults else None)
    template = ""
    if cls == channel_template.CLASS:
        chosen = channel_template.select(
            ref, o.namespace, c.configmap_data, channel, channel_issues
        )
        channel, config, template = chosen.channel, chosen.config, chosen.source
    if channel == "kafka":
        config = validate.kafka_channel_config(
            None if template else ref,  # a channel template is no kafka-broker-config
            o.namespace,
            cls,
            dict(c.env.default_kafka_config),
            c.configmap_data,
            channel_issues,
        )
    elif channel == "nats" and not c.env.nats_url:
        channel_issues.error(
            "spec.config",
            "the channel is NatsJetStreamChannel but no NATS server is configured: run kbroker "
            "with --nats URL",
            channel_template.REASON,
        )
    elif channel == "rabbitmq" and cls != rabbitmq_config.CLASS:
        # The default class under `kbroker run --rabbitmq`: its spec.config is Knative's channel
        # template, which means nothing here; the server is the one kbroker runs with.
        config = rabbitmq_config.default_config(c.env.default_rabbitmq_url, channel_issues)
    elif channel == "rabbitmq":
        config = rabbitmq_config.channel_config(
            spec.get("config") or (class_defaults.config if class_defaults else None),
            o.namespace,
            {k: cfg.raw for k, cfg in c.rabbitmq_configs.items()},
            c.configmap_data,
            c.env.default_rabbitmq_url,
            channel_issues,
        )
    if external and channel != "kafka":
        channel_issues.warn(
            f"metadata.annotations[{validate.EXTERNAL_TOPIC_ANNOTATION}]",
            f"only used by Kafka brokers; this Broker uses the {channel} channel: ignored",
        )
        external = None
    topic = (
        str(external)
        if external
        else c.env.topic_template.format(namespace=o.namespace, name=o.name)
    )

    c.report(o, channel_issues)
    c.report(o, delivery_issues)
    address = c.address(o.namespace, o.name)
    conditions = status.with_ready(
        status.BROKER_CONDITIONS,
        {
            "TriggerChannelReady": from_issues("TriggerChannelReady", channel_issues),
            "FilterReady": from_issues("FilterReady", delivery_issues, skip=dls_issue),
            "IngressReady": status.true("IngressReady"),
            "Addressable": status.true("Addressable"),
            "DeadLetterSinkResolved": dls_cond,
            "EventPoliciesReady": status.true(
                "EventPoliciesReady", status.REASON_OIDC_DISABLED_BROKER
            ),
        },
    )
    annotations = {"kbroker.dev/channel": channel, "default.topic": topic}
    if template:
        annotations["kbroker.dev/channel-template"] = template
    annotations.update(
        {
            k: v
            for k, v in config.items()
            if not k.startswith("default.topic.config.") and k != "url"
        }
    )
    st = status.ObjectStatus(
        kind="Broker",
        namespace=o.namespace,
        name=o.name,
        generation=o.generation,
        conditions=conditions,
        address_url=address,
        address_ca_certs=c.env.ingress_ca_certs,
        dead_letter_sink_uri=dls_uri,
        annotations=tuple(sorted(annotations.items())),
    )
    entry = None
    if st.ready:
        entry = contract.Broker(
            namespace=o.namespace,
            name=o.name,
            uid=o.uid(),
            address=address,
            channel=channel,
            channel_config=tuple(sorted(config.items())),
            topic=topic,
            external_topic=bool(external),
            default_durability=durability,
            generation=o.generation,
            quota=quota,
        )
    ok_delivery = (
        None if delivery_issues.errors else dataclasses.replace(delivery, dead_letter_uri=dls_uri)
    )
    return BrokerOutcome(o, entry, st, ok_delivery)
