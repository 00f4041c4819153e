"""Destination (`ref` | `uri` | both) -> URL, the Addressable duck type of Knative.

A subscriber or dead-letter sink names its target by URI, by reference to an addressable object,
or by both (then the URI is resolved relative to the object's URL, e.g. `uri: /update`). The
compiler resolves references to Brokers itself: a Broker's address is a pure function of the
ingress base URL and its name, so a Broker that exists in the object set resolves in both modes.
Every other reference goes through a `Resolver` that the Kubernetes controller supplies (reading
`status.address.url`, Services, ...); standalone mode has none, and says so in the status.

What this module refuses: relative URIs without a ref, and references it cannot check. The
contract carries only absolute URLs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from kbroker.controller import status

BROKER_API_VERSION = "eventing.knative.dev/v1"


class ResolveError(Exception):
    """A reference that cannot be turned into a URL; the text says why (it becomes a message)."""


class DestinationError(Exception):
    """A Destination that is invalid or unresolvable; `field` names where (e.g. spec.subscriber)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Resolver(Protocol):
    """Turns a reference (apiVersion, kind, name, namespace) into the object's URL."""

    def resolve(self, ref: Mapping[str, Any], namespace: str) -> str:
        """The URL of the referenced object; raises ResolveError when there is none."""
        ...


def is_absolute(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def resolve_destination(
    dest: Any,
    namespace: str,
    field: str,
    brokers: Mapping[tuple[str, str], str],
    resolver: Resolver | None,
) -> str:
    """The absolute URL of `dest`; raises DestinationError.

    `brokers` maps (namespace, name) of every Broker this compiler owns to its address.
    """
    if not isinstance(dest, Mapping):
        raise DestinationError(field, "expected a mapping with ref and/or uri")
    ref, uri = dest.get("ref"), dest.get("uri")
    if ref is None and not uri:
        raise DestinationError(field, "expected at least one, got none: ref, uri")
    if uri is not None and not isinstance(uri, str):
        raise DestinationError(f"{field}.uri", "must be a string")
    if ref is None:
        assert isinstance(uri, str)  # narrowed above: uri is a non-empty str here
        if not is_absolute(uri):
            raise DestinationError(
                f"{field}.uri", f"{uri!r} is not an absolute http(s) URL (and no ref is given)"
            )
        return uri
    base = _resolve_ref(ref, namespace, f"{field}.ref", brokers, resolver)
    return urljoin(base, uri) if uri else base


def _resolve_ref(
    ref: Any,
    namespace: str,
    field: str,
    brokers: Mapping[tuple[str, str], str],
    resolver: Resolver | None,
) -> str:
    if not isinstance(ref, Mapping):
        raise DestinationError(field, "expected a mapping (apiVersion, kind, name)")
    missing = [k for k in ("apiVersion", "kind", "name") if not ref.get(k)]
    if missing:
        raise DestinationError(field, "missing field(s): " + ", ".join(missing))
    ns = str(ref.get("namespace") or namespace)
    full = {**ref, "namespace": ns}
    api, kind, name = str(ref["apiVersion"]), str(ref["kind"]), str(ref["name"])
    if api == BROKER_API_VERSION and kind == "Broker":
        address = brokers.get((ns, name))
        if address is not None:
            return address
        if resolver is None:  # else it may be another implementation's Broker: ask
            raise DestinationError(field, f'Broker "{ns}/{name}" does not exist')
    if resolver is None:
        raise DestinationError(
            field,
            f"cannot resolve ref to {api}/{kind} {name!r}: only Broker refs and absolute URIs "
            "resolve in standalone mode",
        )
    try:
        url = resolver.resolve(full, namespace)
    except ResolveError as exc:
        raise DestinationError(field, str(exc)) from exc
    if not is_absolute(url):
        raise DestinationError(
            field, f"{api}/{kind} {name!r} resolved to a non-absolute URL {url!r}"
        )
    return url


def dead_letter(
    raw: Any,
    namespace: str,
    field: str,
    brokers: Mapping[tuple[str, str], str],
    resolver: Resolver | None,
) -> tuple[status.Condition, str | None, DestinationError | None]:
    """The DeadLetterSinkResolved condition, the sink's URL, and the error if it did not resolve."""
    cond = "DeadLetterSinkResolved"
    if raw is None:
        message = status.MESSAGE_DLS_NOT_CONFIGURED
        return status.true(cond, status.REASON_DLS_NOT_CONFIGURED, message), None, None
    try:
        uri = resolve_destination(raw, namespace, field, brokers, resolver)
    except DestinationError as exc:
        return status.false(cond, status.REASON_DLS_FAILED, str(exc)), None, exc
    return status.true(cond), uri, None
