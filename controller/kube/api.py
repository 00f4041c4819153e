"""The seam between the Kubernetes controller and the API server: raw JSON over a tiny Protocol.

The controller needs six verbs on a handful of resources (list, watch, get, create, replace,
merge-patch), always on plain JSON: Brokers and Triggers are custom objects, and ConfigMaps and
Services are read for two fields each. Typed client models would only be converted back to dicts.
So `KubeClient` is just "request a path" and "watch a path"; `controller/kube/client.py`
implements it over kubernetes-asyncio (the only module importing that library), and tests can
implement it too.

Errors: every failure talking to the API server surfaces as `KubeError` with the HTTP status
(0 when there was no response at all), so callers branch on 404/409/410 and never on a foreign
exception type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

MERGE_PATCH = "application/merge-patch+json"
JSON = "application/json"

Obj = dict[str, Any]


class KubeError(Exception):
    """A failed API call: `status` is the HTTP status, or 0 when the server never answered."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


class KubeClient(Protocol):
    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> Obj:
        """The decoded JSON answer; raises KubeError on any non-2xx answer or transport error."""
        ...

    def watch(self, path: str, resource_version: str, timeout_seconds: int) -> AsyncIterator[Obj]:
        """Watch events ({type, object}) from `resource_version` until the server ends the watch."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Resource:
    """A REST resource: where it lives and what its objects say they are."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        ns = f"/namespaces/{namespace}" if namespace else ""
        tail = f"/{name}" if name else ""
        return f"{root}{ns}/{self.plural}{tail}" + (f"/{sub}" if sub else "")


BROKERS = Resource("eventing.knative.dev", "v1", "brokers", "Broker")
TRIGGERS = Resource("eventing.knative.dev", "v1", "triggers", "Trigger")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
EVENTPOLICIES = Resource("eventing.knative.dev", "v1alpha1", "eventpolicies", "EventPolicy")
SERVICES = Resource("", "v1", "services", "Service")
