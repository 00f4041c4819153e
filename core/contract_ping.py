"""The PingSource entry of the contract: what the firing side needs to emit one source's ticks.

Its own module so the contract's main file stays about Brokers and Triggers; `contract` re-exports
`PingSource` and includes it as `Contract.sources`. The compiler has already validated every field
(schedule parses, exactly one of data/dataBase64, sink resolved), so the firing side trusts it.

What this module refuses: validation and scheduling (controller/pingsources, sources/ping).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

PING_TYPE = "dev.knative.sources.ping"


@dataclass(frozen=True, slots=True)
class PingSource:
    namespace: str
    name: str
    uid: str
    schedule: str  # robfig syntax, CRON_TZ= prefix allowed
    timezone: str = ""  # IANA name, prepended as CRON_TZ= (Knative's spec.timezone)
    content_type: str = ""
    data: str = ""
    data_base64: str = ""
    sink_uri: str = ""
    # "namespace/name" when the sink is a Broker this process serves: appended to its channel
    # directly instead of a POST to itself.
    sink_broker: str = ""
    extensions: tuple[tuple[str, str], ...] = ()  # ceOverrides.extensions, sorted
    catch_up: float = 0.0  # seconds of missed ticks replayed after a restart (0: none, Knative's)
    generation: int = 0

    @property
    def source(self) -> str:
        return f"/apis/v1/namespaces/{self.namespace}/pingsources/{self.name}"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def body(self) -> bytes:
        if self.data_base64:
            return base64.b64decode(self.data_base64)
        return self.data.encode()


def encode(p: PingSource) -> dict[str, Any]:
    out: dict[str, Any] = {
        "namespace": p.namespace,
        "name": p.name,
        "uid": p.uid,
        "schedule": p.schedule,
        "sinkUri": p.sink_uri,
        "generation": p.generation,
    }
    optional = {
        "timezone": p.timezone,
        "contentType": p.content_type,
        "data": p.data,
        "dataBase64": p.data_base64,
        "sinkBroker": p.sink_broker,
        "extensions": dict(p.extensions),
        "catchUp": p.catch_up,
    }
    out.update({k: v for k, v in optional.items() if v})
    return out


def decode(d: dict[str, Any]) -> PingSource:
    return PingSource(
        namespace=d["namespace"],
        name=d["name"],
        uid=d.get("uid", ""),
        schedule=d.get("schedule", "* * * * *"),
        timezone=d.get("timezone", ""),
        content_type=d.get("contentType", ""),
        data=d.get("data", ""),
        data_base64=d.get("dataBase64", ""),
        sink_uri=d.get("sinkUri", ""),
        sink_broker=d.get("sinkBroker", ""),
        extensions=tuple(sorted((str(k), str(v)) for k, v in d.get("extensions", {}).items())),
        catch_up=float(d.get("catchUp", 0.0)),
        generation=int(d.get("generation", 0)),
    )
