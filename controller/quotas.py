"""A Broker's ingress quota from its annotations, validated like every other annotation.

    kbroker.dev/rate-limit: "1000"          events per second (a positive number)
    kbroker.dev/rate-burst: "2000"          events at once after a quiet spell (default: one
                                            second's worth, at least 1)
    kbroker.dev/byte-rate-limit: "10Mi"     body bytes per second (Kubernetes quantity: Ki, Mi,
                                            Gi, k, M, G, or plain bytes)
    kbroker.dev/byte-burst: "20Mi"          bytes at once (default: one second's worth)

A bad value is an error on the Broker (not Ready, reason InvalidAnnotation), never a silent
"unlimited". What this module refuses: enforcing anything (ingress/quota.py does), and
fractional bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kbroker.controller.validate import REASON_ANNOTATION, Issues
from kbroker.core import contract

RATE = "kbroker.dev/rate-limit"
BURST = "kbroker.dev/rate-burst"
BYTE_RATE = "kbroker.dev/byte-rate-limit"
BYTE_BURST = "kbroker.dev/byte-burst"

_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?")
_UNITS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(raw: str) -> float | None:
    """A Kubernetes-style quantity ("10Mi", "1.5k", "500") as a number; None if it is not one."""
    m = _QUANTITY.fullmatch(raw.strip())
    if m is None:
        return None
    return float(m.group(1)) * _UNITS[m.group(2)]


def _positive(
    annotations: Mapping[str, Any], name: str, issues: Issues, *, bytes_: bool, whole: bool
) -> float | None:
    raw = annotations.get(name)
    if raw is None:
        return None
    value = quantity(str(raw)) if bytes_ else _number(str(raw))
    if value is None or value <= 0 or (whole and value != int(value)):
        what = "a positive " + ("whole " if whole else "") + "number"
        if bytes_:
            what += " of bytes (e.g. 512Ki, 10Mi)"
        issues.error(
            f"metadata.annotations[{name}]", f"must be {what}, got {raw!r}", REASON_ANNOTATION
        )
        return None
    return value


def _number(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value == value and value != float("inf") else None  # no NaN, no inf


def quota(annotations: Mapping[str, Any], issues: Issues) -> contract.Quota | None:
    """The Broker's quota, or None when it sets no quota annotation (or only invalid ones)."""
    if not any(a in annotations for a in (RATE, BURST, BYTE_RATE, BYTE_BURST)):
        return None
    rate = _positive(annotations, RATE, issues, bytes_=False, whole=False)
    burst = _positive(annotations, BURST, issues, bytes_=False, whole=True)
    byte_rate = _positive(annotations, BYTE_RATE, issues, bytes_=True, whole=False)
    byte_burst = _positive(annotations, BYTE_BURST, issues, bytes_=True, whole=True)
    if burst is not None and rate is None:
        issues.error(f"metadata.annotations[{BURST}]", f"needs {RATE}", REASON_ANNOTATION)
    if byte_burst is not None and byte_rate is None:
        issues.error(f"metadata.annotations[{BYTE_BURST}]", f"needs {BYTE_RATE}", REASON_ANNOTATION)
    if rate is None and byte_rate is None:
        return None
    return contract.Quota(
        events_per_second=rate,
        event_burst=int(burst) if burst is not None and rate is not None else None,
        bytes_per_second=byte_rate,
        byte_burst=int(byte_burst) if byte_burst is not None and byte_rate is not None else None,
    )
