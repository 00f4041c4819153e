"""EventPolicy decisions at ingress, table-driven: subjects, wildcards, filters, default modes."""

from __future__ import annotations

import pytest
from kbroker.core import contract
from kbroker.core.events import CloudEvent
from kbroker.ingress.authz import Authorizer, subject_matches

MODE = contract.AuthorizationMode
SA = "system:serviceaccount"


def ev(type_: str = "order.created", source: str = "/shop") -> CloudEvent:
    return CloudEvent({"specversion": "1.0", "id": "1", "source": source, "type": type_}, None)


def exact(**attrs: str) -> contract.FilterSpec:
    return contract.FilterSpec("exact", attributes=tuple(sorted(attrs.items())))


def policy(
    name: str, *subjects: str, filters: tuple[contract.FilterSpec, ...] = ()
) -> contract.Policy:
    return contract.Policy(name, subjects, filters)


def broker(*policies: contract.Policy, ns: str = "shop") -> contract.Broker:
    return contract.Broker(ns, "b", "uid", "http://x", audience="aud", policies=policies)


@pytest.mark.parametrize(
    ("pattern", "subject", "match"),
    [
        (f"{SA}:shop:sender", f"{SA}:shop:sender", True),
        (f"{SA}:shop:sender", f"{SA}:shop:sender2", False),
        (f"{SA}:shop:*", f"{SA}:shop:anyone", True),
        (f"{SA}:shop:*", f"{SA}:shopping:anyone", False),
        (f"{SA}:SHOP:Sender", f"{SA}:shop:sender", True),  # case-insensitive, as Knative
        ("*", "anything", True),
        ("", "anything", False),
    ],
)
def test_subject_matches(pattern: str, subject: str, match: bool) -> None:
    assert subject_matches(pattern, subject) is match


CESQL_ORDERS = contract.FilterSpec("cesql", expression="type LIKE 'order.%'")


@pytest.mark.parametrize(
    ("name", "b", "mode", "subject", "events", "allowed"),
    [
        # default modes (no policy applies)
        ("same ns", broker(), MODE.ALLOW_SAME_NAMESPACE, f"{SA}:shop:a", [ev()], True),
        ("other ns", broker(), MODE.ALLOW_SAME_NAMESPACE, f"{SA}:other:a", [ev()], False),
        ("ns prefix trick", broker(), MODE.ALLOW_SAME_NAMESPACE, f"{SA}:shopx:a", [ev()], False),
        ("not an SA", broker(), MODE.ALLOW_SAME_NAMESPACE, "alice", [ev()], False),
        ("allow-all", broker(), MODE.ALLOW_ALL, "alice", [ev()], True),
        ("deny-all", broker(), MODE.DENY_ALL, f"{SA}:shop:a", [ev()], False),
        # policies replace the default mode
        ("listed", broker(policy("p", f"{SA}:x:a")), MODE.DENY_ALL, f"{SA}:x:a", [ev()], True),
        (
            "not listed, even same ns",
            broker(policy("p", f"{SA}:x:a")),
            MODE.ALLOW_SAME_NAMESPACE,
            f"{SA}:shop:a",
            [ev()],
            False,
        ),
        ("wildcard", broker(policy("p", f"{SA}:x:*")), MODE.DENY_ALL, f"{SA}:x:zz", [ev()], True),
        (
            "filter passes",
            broker(policy("p", "s", filters=(exact(type="order.created"),))),
            MODE.DENY_ALL,
            "s",
            [ev()],
            True,
        ),
        (
            "filter rejects",
            broker(policy("p", "s", filters=(exact(type="order.created"),))),
            MODE.ALLOW_ALL,
            "s",
            [ev("order.deleted")],
            False,
        ),
        (
            "cesql filter",
            broker(policy("p", "s", filters=(CESQL_ORDERS,))),
            MODE.DENY_ALL,
            "s",
            [ev("order.x")],
            True,
        ),
        (
            "filters AND",
            broker(policy("p", "s", filters=(CESQL_ORDERS, exact(source="/other")))),
            MODE.DENY_ALL,
            "s",
            [ev("order.x")],
            False,
        ),
        (
            "every event of a batch must pass",
            broker(policy("p", "s", filters=(exact(type="order.created"),))),
            MODE.DENY_ALL,
            "s",
            [ev(), ev("order.deleted")],
            False,
        ),
        (
            "any matching policy admits (the second widens the first)",
            broker(
                policy("a", "s", filters=(exact(type="nope"),)),
                policy("b", "s", filters=(exact(type="order.created"),)),
            ),
            MODE.DENY_ALL,
            "s",
            [ev()],
            True,
        ),
        (
            "a policy for someone else does not help",
            broker(policy("a", "s"), policy("b", "t", filters=(exact(type="x"),))),
            MODE.ALLOW_ALL,
            "t",
            [ev()],
            False,
        ),
    ],
)
def test_decisions(
    name: str,
    b: contract.Broker,
    mode: contract.AuthorizationMode,
    subject: str,
    events: list[CloudEvent],
    allowed: bool,
) -> None:
    why = Authorizer().denial(b, mode, subject, events)
    assert (why is None) is allowed, (name, why)


def test_compiled_filters_are_reused() -> None:
    a = Authorizer()
    b = broker(policy("p", "s", filters=(exact(type="order.created"),)))
    a.denial(b, MODE.DENY_ALL, "s", [ev()])
    first = dict(a._compiled)
    a.denial(b, MODE.DENY_ALL, "s", [ev()])
    assert a._compiled == first and len(first) == 1
