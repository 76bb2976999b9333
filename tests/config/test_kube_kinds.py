"""Kubernetes kinds in the config layer: typed lightkube bodies, schema checks, store keys, dump."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from istio_sdk.config import (
    KUBERNETES_KINDS,
    ConfigError,
    ConfigStore,
    FieldError,
    UnknownKindError,
    dump_resources,
    find_kind,
    kind_for,
    load_resources,
    validate,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
BOOKINFO = ROOT / "src" / "istio_sdk" / "examples" / "kubernetes.yaml"

EVERY_OTHER_KIND = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data: {mesh: "trustDomain: cluster.local"}
---
apiVersion: v1
kind: Secret
metadata: {name: cacerts, namespace: istio-system}
type: Opaque
data: {root-cert.pem: aGVsbG8=}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: bookinfo}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: mysql:8}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cni, namespace: kube-system}
spec:
  selector: {matchLabels: {app: cni}}
  template:
    metadata: {labels: {app: cni}}
    spec: {containers: [{name: cni, image: istio/install-cni}]}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: reviews-v1-7c9f8b5d4, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: istio-sidecar-injector}
webhooks:
- name: sidecar-injector.istio.io
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {service: {name: istiod, namespace: istio-system, path: /inject, port: 443}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: istio-validator}
webhooks:
- name: validation.istio.io
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {service: {name: istiod, namespace: istio-system, path: /validate}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: istio}
spec: {controllerName: istio.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: bookinfo}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bookinfo, namespace: bookinfo}
spec:
  parentRefs: [{name: bookinfo-gateway}]
  rules:
  - matches: [{path: {type: Exact, value: /productpage}}, {path: {value: /static}}]
    backendRefs: [{name: productpage, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: ratings, namespace: bookinfo}
spec:
  parentRefs: [{name: bookinfo-gateway}]
  rules:
  - matches: [{method: {service: bookinfo.Ratings, method: Get}}]
    backendRefs: [{name: ratings, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: from-istio-system, namespace: bookinfo}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: istio-system}]
  to: [{group: "", kind: Service}]
"""

ISTIO_GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: bookinfo}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"""


def test_every_kubernetes_kind_loads_validates_and_round_trips() -> None:
    resources = load_resources(BOOKINFO) + load_resources(EVERY_OTHER_KIND)
    assert {(r.group, r.kind) for r in resources} == {(k.group, k.kind) for k in KUBERNETES_KINDS}
    assert validate(resources) == []
    assert validate(BOOKINFO) == []
    assert validate(EVERY_OTHER_KIND) == []
    text = dump_resources(resources)
    assert load_resources(text) == resources
    # kubectl apply reads it: plain objects with apiVersion, kind, metadata and the body
    written = list(yaml.safe_load_all(text))
    service = next(d for d in written if d["kind"] == "Service")
    assert service["spec"]["ports"][0] == {
        "name": "http",
        "port": 9080,
        "protocol": "TCP",
        "targetPort": 9080,
    }
    cm = next(d for d in written if d["kind"] == "ConfigMap")
    assert cm == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": "trustDomain: cluster.local"},
    }


def test_bodies_are_typed_lightkube_models() -> None:
    from lightkube.models.core_v1 import ServicePort
    from lightkube.resources.core_v1 import Pod

    service, pod = (
        r
        for r in load_resources(BOOKINFO)
        if r.name in ("reviews", "reviews-v1-7c9f8b5d4-21x") and r.kind in ("Service", "Pod")
    )
    assert isinstance(service.spec.spec.ports[0], ServicePort)
    assert service.spec.spec.ports[0].port == 9080
    assert isinstance(pod.spec, Pod)
    assert pod.status["podIP"] == "10.1.0.21"  # status stays the JSON it was written as


def test_gateway_api_gateway_and_istio_gateway_share_a_store() -> None:
    store = ConfigStore()
    for resource in load_resources(EVERY_OTHER_KIND + "---\n" + ISTIO_GATEWAY):
        store.apply(resource)
    istio = store.get("Gateway", "bookinfo-gateway", "bookinfo")
    api = store.get("Gateway.gateway.networking.k8s.io", "bookinfo-gateway", "bookinfo")
    assert istio is not None and istio.api_version == "networking.istio.io/v1"
    assert api is not None and api.api_version == "gateway.networking.k8s.io/v1"
    assert [r.api_version for r in store.list("Gateway")] == ["networking.istio.io/v1"]
    assert kind_for("Gateway").group == "networking.istio.io"
    assert kind_for("Gateway", "gateway.networking.k8s.io").kubernetes


def test_stored_kubernetes_objects_get_revisions_and_generations() -> None:
    store = ConfigStore()
    (service,) = [
        r for r in load_resources(BOOKINFO) if r.kind == "Service" and r.name == "reviews"
    ]
    first = store.apply(service)
    assert first.metadata.generation == 1
    assert store.apply(service) is first  # same content: nothing changes
    changed = load_resources(
        dump_resources([service]).replace("targetPort: 9080", "targetPort: 9081")
    )[0]
    second = store.apply(changed)
    assert second.metadata.generation == 2
    assert second.spec.spec.ports[0].targetPort == 9081


BAD = [
    # (document, path, message fragment)
    (
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{name: http}]}\n",
        "spec.ports[0].port",
        "missing required field",
    ),
    (
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: x}]}\n",
        "spec.ports[0].port",
        "expected a 64-bit integer, got a string",
    ),
    (
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {portz: []}\n",
        "spec.portz",
        "unknown field 'portz'",
    ),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: 5\n", "spec", "an object"),
    (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: 1}\nextra: true\n",
        "extra",
        "unknown field 'extra'",
    ),
    (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{image: x}]}\n",
        "spec.containers[0].name",
        "missing required field",
    ),
    (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a}\n"
        "spec: {rules: [{matches: [{path: {type: PathPrefix, value: nope}}]}]}\n",
        "spec.rules[0].matches[0].path",
        "must be an absolute path",
    ),
    (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a}\n"
        "spec: {rules: [{backendRefs: [{name: b, port: 99999}]}]}\n",
        "spec.rules[0].backendRefs[0].port",
        "at most 65535",
    ),
    (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: a}\n"
        "spec: {listeners: [{name: h, port: 80, protocol: HTTP}]}\n",
        "spec.gatewayClassName",
        "missing required field",
    ),
    (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: a}\n"
        "spec: {gatewayClassName: istio, listeners: [{name: h, port: 80, protocol: HTTP},"
        " {name: h, port: 81, protocol: HTTP}]}\n",
        "spec.listeners",
        "Listener name must be unique",
    ),
    (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: a}\n"
        "spec: {gatewayClassName: istio, listeners: [{name: h, port: '80', protocol: HTTP}]}\n",
        "spec.listeners[0].port",
        "expected an integer",
    ),
    (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: a}\n"
        "spec: {rules: [{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {}},"
        " {type: RequestHeaderModifier, requestHeaderModifier: {}}]}]}\n",
        "spec.rules[0].filters",
        "RequestHeaderModifier filter cannot be repeated",
    ),
    (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: a}\n"
        "spec: {rules: [{matches: [{method: {service: 'a..b'}}]}]}\n",
        "spec.rules[0].matches[0].method",
        "service must only contain valid characters",
    ),
    (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a}\n"
        "spec: {hostnames: ['*.Example.com']}\n",
        "spec.hostnames[0]",
        "does not match the pattern",
    ),
]


@pytest.mark.parametrize(("document", "path", "message"), BAD)
def test_validate_names_the_field_and_the_rule(document: str, path: str, message: str) -> None:
    problems = validate(document)
    assert any(p.path == path and message in p.message for p in problems), problems


def test_unknown_kinds_stay_an_error() -> None:
    with pytest.raises(UnknownKindError, match="unknown kind 'Frobnicator'"):
        load_resources("apiVersion: v1\nkind: Frobnicator\nmetadata: {name: a}\n")
    with pytest.raises(UnknownKindError, match="'Service' in apiVersion 'apps/v1'"):
        load_resources("apiVersion: apps/v1\nkind: Service\nmetadata: {name: a}\n")
    assert find_kind("discovery.k8s.io/v1", "EndpointSlice") is not None


def test_hostile_bodies_are_field_errors() -> None:
    deep = "[" * 40 + "]" * 40
    huge = "x" * 1_000_000
    for body in (
        f"spec: {{selector: {deep}}}",
        "spec: {ports: [{port: 99999999999999999999999999}]}",
        "spec: {ports: [{port: true}]}",
        "spec: {ports: [{port: 1.5}]}",
        "spec: {clusterIP: [1, 2]}",
        f"spec: {{selector: {{a: {huge}}}, ports: [{{port: x}}]}}",
        "spec: {ports: [[[]]]}",
    ):
        text = f"apiVersion: v1\nkind: Service\nmetadata: {{name: a}}\n{body}\n"
        problems = validate(text)
        assert problems, body
        with pytest.raises(FieldError):
            load_resources(text)
    for number in (".inf", ".nan"):  # not JSON: refused by the parser, as for Istio kinds
        head = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
        text = head + f"spec: {{ports: [{{port: {number}}}]}}\n"
        with pytest.raises(ConfigError, match="not a finite number"):
            load_resources(text)


def test_every_gateway_api_rule_is_understood() -> None:
    from istio_sdk.config._cel import compile_rule
    from istio_sdk.config._gateway_api import schema_of

    rules: set[str] = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            rules.update(r["rule"] for r in node.get("x-kubernetes-validations", ()))
            for child in node.values():
                collect(child)
        elif isinstance(node, list):
            for child in node:
                collect(child)

    for info in KUBERNETES_KINDS:
        if info.model.startswith("crd:"):
            for version in info.versions:
                collect(schema_of(info, version))
    assert len(rules) > 50
    for rule in sorted(rules):
        compile_rule(rule)  # raises CelSyntaxError for anything outside the supported subset


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        ('self.matches(r"""^\\.a$""")', ".a", True),
        ("self.matches(r'^\\.a$')", "xa", False),
        ("'''two\\nlines''' == 'two\\nlines'", 0, True),
        ("self.filter(x, x > 1) == [2, 3]", [1, 2, 3], True),
        ("self.filter(k, k.startsWith('a')).size() == 1", {"ab": 1, "b": 2}, True),
        ('self.split("/")[0] == "example.com"', "example.com/x", True),
        ('self.split("") == ["a", "b"]', "ab", True),
    ],
)
def test_cel_raw_strings_filter_and_split(rule: str, value: object, expected: bool) -> None:
    from istio_sdk.config._cel import evaluate

    assert evaluate(rule, value) is expected


def test_cli_validate_accepts_kubernetes_objects_and_reports_their_problems(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from istio_sdk.cli import main

    assert main(["validate", "-f", str(BOOKINFO)]) == 0
    assert "26 resource(s) in 1 file(s): all valid" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD[0][0] + "---\n" + BAD[6][0])
    assert main(["validate", "-f", str(bad)]) == 1
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "Service a: spec.ports[0].port: missing required field" in out
    assert "HTTPRoute a: spec.rules[0].matches[0].path: value must be an absolute path" in out


def test_demo_summarises_kubernetes_objects_beside_istio_gateways(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from istio_sdk.cli import main

    (tmp_path / "mesh.yaml").write_text(EVERY_OTHER_KIND + "---\n" + ISTIO_GATEWAY)
    assert main(["demo", "--summary-only", "--path", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Gateway.gateway.networking.k8s.io  gateway.networking.k8s.io/v1" in out
    assert "bookinfo/bookinfo-gateway" in out  # the Istio Gateway's section


def test_resource_new_takes_a_lightkube_object() -> None:
    from lightkube.models.core_v1 import ServicePort, ServiceSpec
    from lightkube.models.meta_v1 import ObjectMeta as KubeMeta
    from lightkube.resources.core_v1 import Service

    from istio_sdk.config import Resource

    obj = Service(
        metadata=KubeMeta(name="ignored"),
        spec=ServiceSpec(selector={"app": "web"}, ports=[ServicePort(port=80, name="http")]),
    )
    resource = Resource.new(obj, name="web", namespace="shop")
    assert (resource.api_version, resource.kind, resource.key) == (
        "v1",
        "Service",
        ("Service", "shop", "web"),
    )
    assert resource.spec.metadata is None
    assert load_resources(dump_resources([resource])) == [resource]
    with pytest.raises(ValueError, match="cannot tell the kind"):
        Resource.new(object(), name="x")  # type: ignore[arg-type]
