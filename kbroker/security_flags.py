"""The transport-security and operational-endpoint flags every serving command shares.

`kbroker run`, `kbroker ingress`, `kbroker filter` and `kbroker controller` take the same flags
(defaults from KBROKER_* variables, so a Deployment sets them from a mounted Secret), and this
module turns them into settings. What it refuses: reading the files (the parts that use them do,
so a bad file is reported by the part that needs it).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from kbroker.core.settings import RunSettings, TlsSettings, env


def _path(name: str) -> Path | None:
    raw = env(name)
    return Path(raw) if raw else None


def register(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("transport security and operational endpoints")
    g.add_argument(
        "--tls-cert",
        type=Path,
        default=_path("KBROKER_TLS_CERT"),
        metavar="FILE",
        help="serve https with this PEM certificate chain (reloaded when it changes; "
        "KBROKER_TLS_CERT)",
    )
    g.add_argument(
        "--tls-key",
        type=Path,
        default=_path("KBROKER_TLS_KEY"),
        metavar="FILE",
        help="the certificate's PEM private key (KBROKER_TLS_KEY)",
    )
    g.add_argument(
        "--tls-ca",
        type=Path,
        default=_path("KBROKER_TLS_CA"),
        metavar="FILE",
        help="PEM CA bundle published as the Brokers' CACerts (default: the certificate; "
        "KBROKER_TLS_CA)",
    )
    g.add_argument(
        "--subscriber-ca",
        type=Path,
        default=_path("KBROKER_SUBSCRIBER_CA"),
        metavar="FILE",
        help="verify https subscribers, replies and dead-letter sinks with this PEM CA bundle "
        "(default: the system trust store; KBROKER_SUBSCRIBER_CA)",
    )
    g.add_argument(
        "--ops-token",
        type=Path,
        default=_path("KBROKER_OPS_TOKEN_FILE"),
        metavar="FILE",
        help="require 'Authorization: Bearer <token in FILE>' on /status, /metrics and "
        "/contract-generation (default: open; KBROKER_OPS_TOKEN_FILE)",
    )


def apply(base: RunSettings, args: Any) -> RunSettings:
    return dataclasses.replace(
        base,
        tls=TlsSettings(cert=args.tls_cert, key=args.tls_key, ca=args.tls_ca),
        ops_token_file=args.ops_token,
        dispatcher=dataclasses.replace(
            base.dispatcher,
            subscriber_ca=args.subscriber_ca,
            # Replies go back to our own https ingress: trust what it tells producers to trust.
            ingress_ca=(args.tls_ca or args.tls_cert) if args.tls_key else None,
        ),
    )
