"""controller/sinkbindings: Knative's SinkBinding validation and the env put into pod templates."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kbroker.controller import sinkbindings

SINK = {"uri": "http://sink.example/"}
SUBJECT = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}


def spec(**fields: Any) -> dict[str, Any]:
    return {"subject": SUBJECT, "sink": SINK, **fields}


def test_subject_by_name_defaults_to_the_bindings_namespace() -> None:
    subject, ext, issues = sinkbindings.parse(spec(), "ns")
    assert not issues.items
    assert subject == sinkbindings.Subject("apps/v1", "Deployment", "ns", "api")
    assert ext == ()


def test_subject_by_selector() -> None:
    raw = {"apiVersion": "batch/v1", "kind": "Job", "selector": {"matchLabels": {"app": "x"}}}
    subject, _, issues = sinkbindings.parse(spec(subject=raw), "ns")
    assert not issues.items
    assert subject.selector is not None and subject.selector.matches({"app": "x"})


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ({"kind": "Deployment", "name": "a"}, "missing field(s): spec.subject.apiVersion"),
        ({"apiVersion": "apps/v1", "name": "a"}, "missing field(s): spec.subject.kind"),
        ({**SUBJECT, "namespace": "other"}, "invalid value: other: spec.subject.namespace"),
        (
            {**SUBJECT, "selector": {"matchLabels": {"a": "b"}}},
            "expected exactly one, got both: spec.subject.name, spec.subject.selector",
        ),
        (
            {"apiVersion": "apps/v1", "kind": "Deployment"},
            "expected exactly one, got neither: spec.subject.name, spec.subject.selector",
        ),
    ],
)
def test_invalid_subjects(subject: dict[str, Any], message: str) -> None:
    _, _, issues = sinkbindings.parse(spec(subject=subject), "ns")
    assert message in [i.message for i in issues.errors]


def test_missing_sink_is_knatives_message() -> None:
    _, _, issues = sinkbindings.parse({"subject": SUBJECT}, "ns")
    assert [i.message for i in issues.errors] == [
        "expected at least one, got none: ref, uri: spec.sink"
    ]


DEPLOYMENT: dict[str, Any] = {
    "spec": {
        "template": {
            "spec": {
                "initContainers": [{"name": "init"}],
                "containers": [
                    {"name": "api", "env": [{"name": "KEEP", "value": "1"}]},
                    {"name": "side", "env": [{"name": "K_SINK", "value": "http://old/"}]},
                ],
            }
        }
    }
}


def test_every_container_gets_exactly_the_bound_env_and_undo_removes_it() -> None:
    env = sinkbindings.bound_env("http://new/", (("team", "ops"),))
    patch = sinkbindings.template_patch(DEPLOYMENT, env)
    assert patch is not None
    pod = patch["spec"]["template"]["spec"]
    overrides = json.dumps({"extensions": {"team": "ops"}})
    bound = [
        {"name": "K_SINK", "value": "http://new/"},
        {"name": "K_CE_OVERRIDES", "value": overrides},
    ]
    assert pod["initContainers"] == [{"name": "init", "env": bound}]
    assert pod["containers"][0]["env"] == [{"name": "KEEP", "value": "1"}, *bound]
    assert pod["containers"][1]["env"] == bound  # the old K_SINK replaced, not doubled

    applied = copy.deepcopy(DEPLOYMENT)
    applied["spec"]["template"]["spec"].update(pod)
    assert sinkbindings.template_patch(applied, env) is None  # steady state: nothing to write

    undo = sinkbindings.template_patch(applied, [])
    assert undo is not None
    pod = undo["spec"]["template"]["spec"]
    assert pod["initContainers"] == [{"name": "init"}]
    assert pod["containers"] == [
        {"name": "api", "env": [{"name": "KEEP", "value": "1"}]},
        {"name": "side"},
    ]


def test_overrides_are_an_empty_string_without_extensions() -> None:
    assert sinkbindings.bound_env("http://s/", ())[1] == {"name": "K_CE_OVERRIDES", "value": ""}


def test_no_pod_template_no_patch() -> None:
    assert (
        sinkbindings.template_patch({"spec": {}}, sinkbindings.bound_env("http://s/", ())) is None
    )
