"""Invalid configuration: every error names the document, resource, field path and problem."""

from __future__ import annotations

import pytest

from istio_sdk.config import (
    ConfigError,
    DocumentError,
    FieldError,
    MetadataError,
    UnknownApiVersionError,
    UnknownKindError,
    YamlSyntaxError,
    load_resources,
    validate,
)

HEAD = (
    "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
    "metadata: {name: reviews, namespace: shop}\n"
)
ROUTE = """\
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      %s
"""


def load_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_resources(text)
    return info.value


def test_unknown_spec_field() -> None:
    error = load_error(HEAD + ROUTE % "wieght: 10")
    assert isinstance(error, FieldError)
    problem = error.problem
    assert (problem.kind, problem.namespace, problem.name) == ("VirtualService", "shop", "reviews")
    assert problem.path.startswith("spec.http[0].route[1]")
    assert "wieght" in problem.message
    assert problem.index == 0
    assert problem.line == 11


def test_wrong_type() -> None:
    error = load_error(HEAD + ROUTE % "weight: ten")
    assert isinstance(error, FieldError)
    assert error.problem.path == "spec.http[0].route[1].weight"
    assert error.problem.line == 11
    assert "ten" in error.problem.message


def test_bad_enum_value() -> None:
    text = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: dr, namespace: shop}\n"
        "spec:\n  host: reviews\n  trafficPolicy:\n    tls:\n      mode: MUTUALLY\n"
    )
    error = load_error(text)
    assert isinstance(error, FieldError)
    assert error.problem.path == "spec.trafficPolicy.tls.mode"
    assert "MUTUALLY" in error.problem.message
    assert error.problem.line == 8


def test_unknown_kind_and_version() -> None:
    error = load_error("apiVersion: networking.istio.io/v1\nkind: Route\nmetadata: {name: x}\n")
    assert type(error) is UnknownKindError
    assert error.problem.path == "kind"
    assert "unknown kind 'Route'" in error.problem.message
    error = load_error(
        "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: x}\n"
    )
    assert isinstance(error, UnknownApiVersionError)
    assert "networking.istio.io/v1alpha3" in error.problem.message
    error = load_error("apiVersion: apps/v1\nkind: VirtualService\nmetadata: {name: x}\n")
    assert isinstance(error, UnknownKindError)
    assert "known in networking.istio.io" in error.problem.message


def test_bad_yaml_names_the_line() -> None:
    error = load_error(HEAD + "spec:\n  hosts: [reviews\n  http: []\n")
    assert isinstance(error, YamlSyntaxError)
    assert error.problem.line is not None and error.problem.line >= 5
    assert "invalid YAML" in error.problem.message
    error = load_error(HEAD + "spec:\n  hosts: [a]\n  hosts: [b]\n")
    assert isinstance(error, YamlSyntaxError)
    assert "'hosts' is repeated" in error.problem.message
    assert error.problem.path == "spec.hosts"
    assert error.problem.line == 6


def test_documents_are_numbered_and_lists_give_item_paths() -> None:
    good = HEAD + "spec: {hosts: [reviews]}\n"
    error = load_error(good + "---\n" + good + "---\n" + HEAD + "spec: {hosts: 5}\n")
    assert error.problem.index == 2
    assert error.problem.path == "spec.hosts"
    assert str(error).startswith("<string>[2]:")
    listed = (
        '{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "networking.istio.io/v1",'
        ' "kind": "Gateway", "metadata": {"name": "g"}, "spec": {"servers": 1}}]}'
    )
    error = load_error(listed)
    assert error.problem.path == "items[0].spec.servers"


def test_document_shape_errors() -> None:
    assert isinstance(load_error("- a\n- b\n"), DocumentError)
    assert isinstance(load_error("kind: VirtualService\nmetadata: {name: x}\n"), DocumentError)
    error = load_error(HEAD + "spec: {}\nextra: 1\n")
    assert error.problem.path == "extra"


def test_metadata_errors() -> None:
    nameless = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {namespace: a}\n"
    error = load_error(nameless)
    assert isinstance(error, MetadataError)
    assert error.problem.path == "metadata.name"
    error = load_error(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g, labels: {app: 5}}\n"
    )
    assert error.problem.path == "metadata.labels.app"
    error = load_error(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g, colour: red}\n"
    )
    assert error.problem.path == "metadata.colour"
    assert "unknown field" in error.problem.message


def test_validate_collects_every_problem_including_required_fields() -> None:
    text = (
        HEAD
        + "spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {subset: v1}\n"
        + "---\n"
        + "apiVersion: networking.istio.io/v1\nkind: Nope\nmetadata: {name: x}\n"
        + "---\n"
        + "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        + "metadata: {name: Bad_Name, namespace: shop}\n"
        + "spec:\n  ports: [{number: 80, protocol: HTTP}]\n"
    )
    problems = validate(text)
    summary = [(p.index, p.kind, p.path, p.message) for p in problems]
    assert summary == [
        (0, "VirtualService", "spec.http[0].route[0].destination.host", "missing required field"),
        (
            0,
            "VirtualService",
            "spec.http[0].route[0].destination.host",
            "empty domain name not allowed",
        ),
        (
            1,
            "Nope",
            "kind",
            "unknown kind 'Nope' in apiVersion 'networking.istio.io/v1'",
        ),
        (
            2,
            "ServiceEntry",
            "metadata.name",
            "invalid name 'Bad_Name': must be a lowercase RFC 1123 subdomain "
            "(a-z, 0-9, '-', '.'; at most 253 characters)",
        ),
        (2, "ServiceEntry", "spec.hosts", "missing required field"),
        (2, "ServiceEntry", "spec.ports[0].name", "missing required field"),
        (2, "ServiceEntry", "spec.hosts", "service entry must have at least one host"),
        (2, "ServiceEntry", "spec.ports[0].name", "invalid port name: "),
    ]
    assert problems[0].line == 8
    valid = "spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}\n"
    assert validate(load_resources(HEAD + valid)) == []


def test_validate_reports_bad_yaml_once() -> None:
    [problem] = validate("a: [1\n")
    assert problem.index == 0
    assert problem.line is not None


def test_validate_reports_values_json_cannot_express() -> None:
    import datetime

    from istio_sdk.api.istio.networking.v1alpha3 import (
        DestinationRule,
        OutlierDetection,
        TrafficPolicy,
    )
    from istio_sdk.config import Resource

    far = OutlierDetection(interval=datetime.timedelta(days=10**8))
    resource = Resource.new(
        DestinationRule(host="x", traffic_policy=TrafficPolicy(outlier_detection=far)),
        name="d",
        namespace="n",
    )
    [problem] = validate([resource])
    assert problem.path == "spec.trafficPolicy.outlierDetection.interval"
    assert "out of range" in problem.message
