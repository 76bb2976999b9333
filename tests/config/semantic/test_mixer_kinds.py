"""Istio 1.3's Mixer kinds: a rule's match and an instance's params must compile."""

from __future__ import annotations

import json
from typing import Any

import pytest

from istio_sdk import Resource, load_resources, validate


def mixer(kind: str, spec: dict[str, Any]) -> Resource:
    document = {
        "apiVersion": "config.istio.io/v1alpha2",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "istio-system"},
        "spec": spec,
    }
    (resource,) = load_resources(json.dumps(document))
    return resource


def verdicts(resource: Resource) -> list[tuple[str, str, str]]:
    return [(p.level, p.path, p.message) for p in validate(resource)]


GOOD_RULE = {
    "match": 'destination.service.name == "reviews" && request.headers["x-user"] != ""',
    "actions": [{"handler": "denyall", "instances": ["nothing"]}],
}
GOOD_INSTANCE = {"compiledTemplate": "listentry", "params": {"value": 'source.labels["app"]'}}


def test_a_rule_and_an_instance_that_compile_pass() -> None:
    assert verdicts(mixer("rule", GOOD_RULE)) == []
    assert verdicts(mixer("instance", GOOD_INSTANCE)) == []
    assert verdicts(mixer("rule", {"actions": [{"handler": "h"}]})) == []  # no match: always


@pytest.mark.parametrize(
    ("spec", "path", "text"),
    [
        ({"match": "request.path ==", "actions": [{"handler": "h"}]}, "spec.match", "parse"),
        ({"match": "request.size", "actions": [{"handler": "h"}]}, "spec.match", "not BOOL"),
        ({"match": 'request.size == "a"', "actions": [{"handler": "h"}]}, "spec.match", "STRING"),
        ({"actions": [{"instances": ["i"]}]}, "spec.actions[0].handler", "required"),
        (
            {
                "actions": [{"handler": "h"}],
                "requestHeaderOperations": [{"name": "x-a", "values": ["request.path +"]}],
            },
            "spec.requestHeaderOperations[0].values[0]",
            "parse",
        ),
    ],
)
def test_rules_mixer_refuses(spec: dict[str, Any], path: str, text: str) -> None:
    found = verdicts(mixer("rule", spec))
    assert any(level == "error" and p == path and text in m for level, p, m in found), found


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ({"compiledTemplate": "nosuch"}, "not available"),
        ({"params": {"value": "source.ip"}}, "template is required"),
        ({"compiledTemplate": "listentry", "params": {"value": "source.ip +"}}, "parse"),
    ],
)
def test_instances_mixer_refuses(spec: dict[str, Any], text: str) -> None:
    found = verdicts(mixer("instance", spec))
    assert any(level == "error" and text in m for level, _, m in found), found


def test_an_attribute_outside_the_default_vocabulary_is_a_warning() -> None:
    # It may be declared by an attributemanifest elsewhere in the mesh.
    found = verdicts(mixer("rule", {"match": 'my.attr == "a"', "actions": [{"handler": "h"}]}))
    assert [(level, path) for level, path, _ in found] == [("warning", "spec.match")]
    assert "my.attr" in found[0][2]
