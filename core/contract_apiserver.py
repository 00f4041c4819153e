"""What watching one ApiServerSource needs, validated: its resources, mode, owner and sink.

Shared by the controller (which validates the object, checks RBAC and runs the watches) and the
sources layer (which turns each watch event into Knative's CloudEvent), like `contract_ping` is
for PingSource. Frozen and comparable, so "the spec changed" is one `!=`.

What this module refuses: validation (controller/apiserversources) and I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

MODE_REFERENCE = "Reference"
MODE_RESOURCE = "Resource"
EVENT_PREFIX = {
    MODE_REFERENCE: "dev.knative.apiserver.ref",
    MODE_RESOURCE: "dev.knative.apiserver.resource",
}
VERBS = ("add", "update", "delete")


@dataclass(frozen=True, slots=True)
class WatchedResource:
    api_version: str
    kind: str
    # Label selector as given (matchLabels, matchExpressions): sorted tuples, comparable.
    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # key, operator, values


@dataclass(frozen=True, slots=True)
class ApiServerSource:
    namespace: str
    name: str
    uid: str
    mode: str
    resources: tuple[WatchedResource, ...]
    owner: tuple[str, str] | None = None  # (apiVersion, kind) of the controller owner required
    service_account: str = "default"
    sink_uri: str = ""
    sink_broker: str = ""  # "namespace/name" when the sink is a Broker kbroker serves
    extensions: tuple[tuple[str, str], ...] = ()
    server: str = ""  # the API server URL: every event's `source`
    generation: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def event_type(self, verb: str) -> str:
        return f"{EVENT_PREFIX[self.mode]}.{verb}"
