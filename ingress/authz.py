"""Authorization at ingress: may this (already authenticated) subject send these events here?

Rules (Knative's EventPolicy, with the Kafka broker's reading of overlapping policies):
- With EventPolicies applying to the Broker, a request passes when some policy lists the subject
  (case-insensitively; a subject ending in `*` matches by prefix) and every event of the request
  passes that policy's filters. Any matching policy admits: policies only ever widen access.
  (Knative's MT broker stops at the first policy whose subject matches, so a later policy that
  would admit is never consulted; the Kafka broker and Knative's docs widen, as here.)
- With none, the default mode decides: `allow-all` admits any authenticated subject,
  `allow-same-namespace` one whose subject starts with `system:serviceaccount:<broker ns>:`, and
  `deny-all` nobody.

What this module refuses: I/O and token handling (see `auth`). Filters are compiled once per
policy and kept while the policy is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from kbroker.core import contract, events, filters


def subject_matches(pattern: str, subject: str) -> bool:
    p, s = pattern.lower(), subject.lower()
    if p.endswith("*"):
        return s.startswith(p[:-1])
    return p == s


class Authorizer:
    """Holds compiled policy filters; `denial` answers None (allowed) or why not."""

    MAX_CACHED = 4096  # compiled policies kept; the cache starts over beyond that

    def __init__(self) -> None:
        self._compiled: dict[contract.Policy, filters.Predicate] = {}

    def _predicate(self, policy: contract.Policy) -> filters.Predicate:
        pred = self._compiled.get(policy)
        if pred is None:
            if len(self._compiled) >= self.MAX_CACHED:
                self._compiled.clear()
            pred = self._compiled[policy] = filters.build(policy.filters)
        return pred

    def denial(
        self,
        broker: contract.Broker,
        mode: contract.AuthorizationMode,
        subject: str,
        evs: Sequence[events.CloudEvent],
    ) -> str | None:
        """None when `subject` may send `evs` to `broker`, else the reason it may not."""
        if not broker.policies:
            if mode is contract.AuthorizationMode.ALLOW_ALL:
                return None
            if mode is contract.AuthorizationMode.DENY_ALL:
                return "default authorization mode is deny-all"
            if subject.startswith(f"system:serviceaccount:{broker.namespace}:"):
                return None
            return (
                f"subject {subject!r} is not in namespace {broker.namespace!r} "
                "(default authorization mode allow-same-namespace)"
            )
        matched = False
        for policy in broker.policies:
            if not any(subject_matches(p, subject) for p in policy.subjects):
                continue
            matched = True
            pred = self._predicate(policy)
            if all(pred(ev.attributes) for ev in evs):
                return None
        if matched:
            return f"subject {subject!r} may not send this event (EventPolicy filters)"
        return f"subject {subject!r} is not allowed by any EventPolicy"
