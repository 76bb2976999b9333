"""build_routing: names, references across namespaces, manifests from the store, bad params."""

from __future__ import annotations

from istio_sdk.config import load_resources
from istio_sdk.mixer.runtime import build_routing

HANDLER_AND_INSTANCE = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: deny, namespace: istio-system}
spec: {compiledAdapter: denier}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: nothing, namespace: istio-system}
spec: {compiledTemplate: checknothing}
"""


def rule(namespace: str, handler: str, instance: str, match: str = "") -> str:
    return f"""---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {{name: r, namespace: {namespace}}}
spec:
  match: '{match}'
  actions: [{{handler: {handler}, instances: [{instance}]}}]
"""


def test_references_resolve_against_the_rules_namespace_as_mixer_does() -> None:
    # 1 part: name.kind.<rule's namespace>; 2 parts: a.b.<ns> if it exists, else a.<kind>.b
    config = HANDLER_AND_INSTANCE + rule("bookinfo", "deny.istio-system", "nothing.istio-system")
    routing = build_routing(load_resources(config))
    assert routing.problems == ()
    [compiled] = routing.rules
    assert compiled.name == "r.rule.bookinfo"
    assert compiled.actions[0].handler == "deny.handler.istio-system"
    assert compiled.actions[0].instances[0].name == "nothing.instance.istio-system"
    # the rule applies in its own namespace only
    assert routing.rules_for("bookinfo") == (compiled,)
    assert routing.rules_for("other") == ()

    local = build_routing(
        load_resources(HANDLER_AND_INSTANCE + rule("bookinfo", "deny", "nothing"))
    )
    assert [str(p) for p in local.problems] == [
        "rule r.rule.bookinfo: actions[0]: no handler deny.handler.bookinfo",
        "rule r.rule.bookinfo: no usable action; the rule is skipped",
    ]


def test_attribute_manifests_in_the_store_replace_the_default_vocabulary() -> None:
    manifest = """---
apiVersion: config.istio.io/v1alpha2
kind: attributemanifest
metadata: {name: custom, namespace: team}
spec:
  attributes:
    custom.tier: {valueType: STRING}
    destination.service.name: {valueType: STRING}
"""
    config = HANDLER_AND_INSTANCE + rule("istio-system", "deny", "nothing", 'custom.tier == "gold"')
    without = build_routing(load_resources(config))
    assert [p.message for p in without.problems] == ["match: unknown attribute custom.tier"]
    with_manifest = build_routing(load_resources(config + manifest))
    assert with_manifest.problems == ()
    assert set(with_manifest.manifest) == {"custom.tier", "destination.service.name"}


def test_an_adapter_that_does_not_handle_the_template_is_reported() -> None:
    config = HANDLER_AND_INSTANCE.replace("checknothing", "metric") + rule(
        "istio-system", "deny", "nothing"
    )
    routing = build_routing(load_resources(config))
    assert str(routing.problems[0]) == (
        "rule r.rule.istio-system: actions[0]: handler deny.handler.istio-system (adapter "
        "denier) does not handle template metric of nothing.instance.istio-system"
    )
    assert routing.rules == ()


def test_instance_params_that_do_not_fit_the_template_are_reported() -> None:
    config = """
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: q, namespace: istio-system}
spec:
  compiledTemplate: quota
  params:
    dimension: {a: source.name}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: m, namespace: istio-system}
spec:
  compiledTemplate: metric
  params:
    value: {nested: "1"}
---
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: h, namespace: istio-system}
spec: {compiledAdapter: nosuchadapter}
"""
    problems = [str(p) for p in build_routing(load_resources(config)).problems]
    assert problems[0].startswith("handler h.handler.istio-system: adapter 'nosuchadapter' is not")
    assert problems[1:] == [
        "instance q.instance.istio-system: dimension: unknown field (the template has: dimensions)",
        "instance m.instance.istio-system: value: expected an expression (a string), got "
        "{'nested': '1'}",
    ]
