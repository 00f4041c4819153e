"""ApiServerSource and SinkBinding in a config folder: reported as needing Kubernetes, never Ready.

Both are about a Kubernetes cluster (one watches its API server, the other patches its
workloads), so `kbroker run` cannot serve them. Rather than the generic "unsupported kind", each
gets a status saying so (Ready False, reason `KubernetesOnly`) and an error problem, so a user who
copied cluster YAML into the folder sees at once why nothing happens.
"""

from __future__ import annotations

from kbroker.controller import status
from kbroker.controller.compilation import Compilation

REASON = "KubernetesOnly"


def report(c: Compilation) -> None:
    for kind, table in (("ApiServerSource", c.apiserversources), ("SinkBinding", c.sinkbindings)):
        for (ns, name), o in sorted(table.items()):
            message = (
                f"{kind} needs Kubernetes: it is served by `kbroker controller` in cluster mode, "
                "not by `kbroker run`"
            )
            c.problem(o, o.source, "", message, "error")
            c.statuses[(kind, ns, name)] = status.ObjectStatus(
                kind=kind,
                namespace=ns,
                name=name,
                generation=o.generation,
                conditions=(status.false(status.READY, REASON, message),),
            )
