"""`kbroker run`: start the standalone broker on a folder of Knative YAML."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from kbroker import limit_flags, security_flags
from kbroker.core import logs
from kbroker.core.settings import LogSettings, RunSettings, ShutdownSettings, log_format_default


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the standalone broker (ingress + dispatcher + folder controller)",
        description="Serve the Brokers and Triggers in --config (watched: edits apply live).",
    )
    p.add_argument("--config", type=Path, required=True, help="folder of Broker/Trigger YAML")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--data", type=Path, default=Path("data"), help="embedded log folder")
    p.add_argument("--kafka", metavar="BOOTSTRAP", help="make Kafka the default channel")
    p.add_argument(
        "--nats",
        metavar="URL",
        help="NATS server(s) with JetStream, for Brokers whose channel template is "
        "NatsJetStreamChannel (nats://host:port, comma-separated for a cluster)",
    )
    p.add_argument(
        "--rabbitmq",
        metavar="URL",
        help="AMQP URL for RabbitMQBroker brokers (without --kafka, also the default channel)",
    )
    p.add_argument(
        "--topic-template",
        default=RunSettings().topic_template,
        help="storage name of a Broker: topic (Kafka) or log (embedded); {namespace}, {name}",
    )
    p.add_argument(
        "--group-template",
        default=RunSettings().group_template,
        help="Kafka consumer group of a Trigger; {namespace}, {name}",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="ingress processes sharing the port (SO_REUSEPORT); the first also dispatches",
    )
    p.add_argument(
        "--removal-grace",
        type=float,
        default=RunSettings().removal_grace,
        metavar="SECONDS",
        help="how long a Broker removed from --config keeps its stored events before they are "
        "deleted, and a removed Trigger its position (default %(default)g; 0: at once)",
    )
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=ShutdownSettings().grace,
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight requests get to finish (default %(default)s)",
    )
    security_flags.register(p)
    p.add_argument("--log-level", default="info", choices=logs.LEVELS)
    p.add_argument(
        "--log-format",
        default=log_format_default(),
        type=logs.log_format,
        choices=logs.FORMATS,
        help="log lines as text or one JSON object each (default text; KBROKER_LOG_FORMAT)",
    )
    limit_flags.register(p)
    p.set_defaults(func=main)


def settings_from(args: Any) -> RunSettings:
    base = security_flags.apply(RunSettings(), args)
    return dataclasses.replace(
        base,
        config_dir=args.config,
        host=args.host,
        port=args.port,
        data_dir=args.data,
        kafka_bootstrap=args.kafka,
        nats_url=args.nats,
        rabbitmq_url=args.rabbitmq,
        processes=max(1, args.processes),
        reuse_port=args.processes > 1,
        topic_template=args.topic_template,
        group_template=args.group_template,
        removal_grace=max(0.0, args.removal_grace),
        embedded=dataclasses.replace(
            base.embedded, data_dir=args.data, shared_writers=args.processes > 1
        ),
        logs=LogSettings(format=args.log_format, level=args.log_level),
        shutdown=dataclasses.replace(base.shutdown, grace=args.shutdown_grace),
        ingress=limit_flags.apply(base.ingress, args),
    )


def main(args: argparse.Namespace) -> int:
    logs.configure_logging(args.log_format, args.log_level)
    from kbroker import standalone

    return standalone.run(settings_from(args))
