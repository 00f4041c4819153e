"""config-features -> whether senders must authenticate, and how (the contract's `OIDC`).

Knative's keys keep Knative's meaning: `authentication-oidc` (`enabled` | `disabled`, default
disabled, case-insensitive), `default-authorization-mode` (`allow-same-namespace` | `allow-all` |
`deny-all`, default allow-same-namespace) and `oidc-discovery-base-url`. kbroker adds keys prefixed
`kbroker.` for what Knative takes from the cluster: the allowed issuers, a JWKS file or URL, the
clock-skew leeway, credentials for reading the issuer's keys, and the key the dispatcher signs its
own tokens with. In a cluster, as in Knative, the issuer defaults to the API server
(`https://kubernetes.default.svc`), read with the pod's ServiceAccount token and CA.

What this module refuses: reading the files it names. Paths and URLs go into the contract as given
(relative paths made absolute against the folder the ConfigMap came from); the data plane reads
them, so a rotated key file needs no recompile.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kbroker.controller import validate
from kbroker.controller.compilation import Compilation
from kbroker.core import contract

CONFIGMAP_NAME = "config-features"
FLAG_OIDC = "authentication-oidc"
FLAG_MODE = "default-authorization-mode"
DISCOVERY = "oidc-discovery-base-url"
ISSUERS = "kbroker.oidc-issuers"
JWKS = "kbroker.oidc-jwks"
LEEWAY = "kbroker.oidc-leeway-seconds"
SIGNING_KEY = "kbroker.oidc-signing-key"
TOKEN_ISSUER = "kbroker.oidc-token-issuer"
TOKEN_FILE = "kbroker.oidc-discovery-token-file"
CA_FILE = "kbroker.oidc-discovery-ca-file"
# Knative's default issuer in a cluster: the API server, read with the pod's own credentials.
IN_CLUSTER_ISSUER = "https://kubernetes.default.svc"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

_MODES = {m.value: m for m in contract.AuthorizationMode}


def oidc(data: Mapping[str, Any], source: str, issues: validate.Issues) -> contract.OIDC | None:
    """The OIDC settings of one config-features `data`, or None when authentication is off."""
    flag = str(data.get(FLAG_OIDC, "disabled")).strip().lower()
    if flag not in ("enabled", "disabled"):
        issues.error(f"data.{FLAG_OIDC}", f"must be enabled or disabled, not {flag!r}")
        return None
    if flag == "disabled":
        return None
    raw_mode = str(data.get(FLAG_MODE, "allow-same-namespace")).strip().lower()
    mode = _MODES.get(raw_mode)
    if mode is None:
        issues.error(
            f"data.{FLAG_MODE}",
            f"must be one of {', '.join(_MODES)}, not {raw_mode!r}: using allow-same-namespace",
        )
        mode = contract.AuthorizationMode.ALLOW_SAME_NAMESPACE
    leeway = 60.0
    if LEEWAY in data:
        try:
            leeway = float(data[LEEWAY])
            if not 0 <= leeway <= 600:
                raise ValueError
        except (TypeError, ValueError):
            issues.error(f"data.{LEEWAY}", "must be a number of seconds from 0 to 600: using 60")
            leeway = 60.0
    jwks = _path_or_url(str(data.get(JWKS, "") or "").strip(), source)
    discovery = str(data.get(DISCOVERY, "") or "").strip()
    token_file = _path_or_url(str(data.get(TOKEN_FILE, "") or "").strip(), source)
    ca_file = _path_or_url(str(data.get(CA_FILE, "") or "").strip(), source)
    if source == "kubernetes" and not jwks and not discovery:
        discovery = IN_CLUSTER_ISSUER
    if discovery.rstrip("/") == IN_CLUSTER_ISSUER and not token_file:
        token_file, ca_file = f"{SA_DIR}/token", ca_file or f"{SA_DIR}/ca.crt"
    issuers = tuple(i.strip() for i in str(data.get(ISSUERS, "") or "").split(",") if i.strip())
    if not jwks and not discovery:
        issues.error(
            f"data.{JWKS}",
            f"authentication-oidc is enabled but neither {JWKS} nor {DISCOVERY} is set: "
            "no token can be verified",
        )
    elif jwks and not issuers:
        issues.error(f"data.{ISSUERS}", f"required with {JWKS} (the `iss` values tokens may carry)")
    return contract.OIDC(
        issuers=issuers,
        jwks=jwks,
        discovery_url=discovery,
        leeway=leeway,
        default_mode=mode,
        signing_key=_path_or_url(str(data.get(SIGNING_KEY, "") or "").strip(), source),
        token_issuer=str(data.get(TOKEN_ISSUER, "") or "").strip() or "kbroker",
        token_file=token_file,
        ca_file=ca_file,
    )


def _path_or_url(value: str, source: str) -> str:
    if not value or value.startswith(("http://", "https://")):
        return value
    path = Path(value)
    if not path.is_absolute() and source not in ("", "kubernetes"):
        path = Path(source).parent / path
    return str(path)


def audience(group: str, kind: str, namespace: str, name: str) -> str:
    """Knative's audience of an addressable: lowercase `<group>/<kind>/<namespace>/<name>`."""
    return f"{group}/{kind}/{namespace}/{name}".lower()


def broker_audience(namespace: str, name: str) -> str:
    return audience("eventing.knative.dev", "broker", namespace, name)


def trigger_identity(namespace: str, name: str) -> str:
    """The subject of the Trigger's OIDC ServiceAccount, `<name>-oidc-<group>-<kind>` (Knative)."""
    return f"system:serviceaccount:{namespace}:{name}-oidc-eventing.knative.dev-trigger".lower()


def load(c: Compilation) -> contract.OIDC | None:
    """The OIDC settings of the compilation's config-features (knative-eventing's if there are
    several); problems are reported against the ConfigMap."""
    found = sorted(
        (cm for (_, name), cm in c.configmaps.items() if name == CONFIGMAP_NAME),
        key=lambda cm: (cm.namespace != "knative-eventing", cm.namespace),
    )
    if not found:
        return None
    cm = found[0]
    data = cm.raw.get("data") or {}
    issues = validate.Issues()
    result = oidc(data if isinstance(data, Mapping) else {}, cm.source, issues)
    c.report(cm, issues)
    return result
