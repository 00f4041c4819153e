"""An ApiServerSource's watch event -> Knative's CloudEvent.

The shape is Knative's adapter's (`dev.knative.apiserver.{ref,resource}.{add,update,delete}`):
`source` is the API server URL, `subject` a selfLink-like path
`/apis/<apiVersion>/namespaces/<ns>/<plural>/<name>` with Knative's naive plural (so `/apis/v1/...`
for core objects, not `/api/v1`), extensions `kind`, `apiversion`, `name` and `namespace` of the
object, then `ceOverrides`. In `Reference` mode the data is the object reference (kind, namespace,
name, apiVersion); in `Resource` mode the object as the watch delivered it (updates carry only the
new object, deletes the last state).

One deviation: `id` is derived from the source, the object's uid, its resourceVersion and the verb
instead of random, so an event repeated after a controller restart (see controller/kube/
sources_apiserver.py) has the same id and a consumer can drop the copy.

What this module refuses: watching and sending.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from kbroker.core import events
from kbroker.core.contract_apiserver import MODE_REFERENCE, ApiServerSource

_VERSION = re.compile(r"v\d")


def guess_plural(kind: str) -> str:
    """Kubernetes' UnsafeGuessKindToResource, as Knative's subject path uses it."""
    k = kind.lower()
    if not k:
        return k
    if k.endswith("s"):
        return k + "es"
    if k.endswith("y"):
        return k[:-1] + "ies"
    return k + "s"


def subject(api_version: str, kind: str, namespace: str, name: str) -> str:
    if "/" not in api_version and not _VERSION.match(api_version):
        api_version += "/versionUnknown"
    return f"/apis/{api_version}/namespaces/{namespace}/{guess_plural(kind)}/{name}"


def event_for(src: ApiServerSource, verb: str, obj: Mapping[str, Any]) -> events.CloudEvent:
    raw_meta = obj.get("metadata")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    api, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
    ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    stamp = f"{src.key}#{meta.get('uid')}#{meta.get('resourceVersion')}#{verb}"
    attrs: dict[str, events.AttrValue] = {
        "specversion": "1.0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, stamp)),
        "source": src.server,
        "type": src.event_type(verb),
        "subject": subject(api, kind, ns, name),
        "datacontenttype": "application/json",
    }
    ext = {"kind": kind, "apiversion": api, "name": name, "namespace": ns}
    attrs.update({k: v for k, v in ext.items() if v})  # a cluster-scoped object has no namespace
    attrs.update(dict(src.extensions))
    if src.mode == MODE_REFERENCE:
        data: Any = {"kind": kind, "namespace": ns, "name": name, "apiVersion": api}
    else:
        data = obj
    return events.CloudEvent(attrs, orjson.dumps(data))
