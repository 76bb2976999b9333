"""The validating webhook's pure core: whatever arrives is answered with an AdmissionReview
(or an HTTP error), never an exception; the request's uid and apiVersion come back."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from istio_sdk.galley.webhook import PATHS, answer_request, review

_KEYS = st.sampled_from(
    ["apiVersion", "kind", "metadata", "spec", "status", "name", "namespace", "hosts", "x"]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(
        ["networking.istio.io/v1", "VirtualService", "rule", "config.istio.io/v1alpha2"]
    )
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=25,
)
_KINDS = st.sampled_from(
    [
        "VirtualService",
        "DestinationRule",
        "Gateway",
        "ServiceEntry",
        "Sidecar",
        "rule",
        "handler",
        "instance",
        "Policy",
        "ServiceRole",
        "Foo",
        "",
    ]
)
_GROUPS = st.sampled_from(
    [
        "networking.istio.io/v1",
        "networking.istio.io/v1alpha3",
        "security.istio.io/v1",
        "config.istio.io/v1alpha2",
        "rbac.istio.io/v1alpha1",
        "v1",
        "",
    ]
)
_OBJECTS = _JSON | st.fixed_dictionaries(
    {"apiVersion": _GROUPS, "kind": _KINDS},
    optional={
        "metadata": st.fixed_dictionaries({}, optional={"name": _SCALARS, "namespace": _SCALARS}),
        "spec": _JSON,
        "status": _JSON,
        "extra": _JSON,
    },
)


@given(
    obj=_OBJECTS,
    operation=st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "", None]),
    version=st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]),
    path=st.sampled_from(PATHS),
    name=_SCALARS,
)
@example(
    obj={"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "spec": {"hosts": 1}},
    operation="CREATE",
    version="admission.k8s.io/v1",
    path="/validate",
    name=None,
)
def test_any_object_gets_a_verdict(
    obj: Any, operation: str | None, version: str, path: str, name: Any
) -> None:
    request: dict[str, Any] = {"uid": "u-7", "operation": operation, "object": obj, "name": name}
    answer = review(
        {"apiVersion": version, "kind": "AdmissionReview", "request": request}, path=path
    )
    assert (answer["apiVersion"], answer["kind"]) == (version, "AdmissionReview")
    response = answer["response"]
    assert response["uid"] == "u-7"
    assert isinstance(response["allowed"], bool)
    if not response["allowed"]:
        assert isinstance(response["status"]["message"], str) and response["status"]["message"]


@given(_JSON)
def test_any_json_value_as_the_review_gets_an_answer(value: Any) -> None:
    answer = review(value)
    assert answer["kind"] == "AdmissionReview"
    assert isinstance(answer["response"]["allowed"], bool)


@given(
    body=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    content_type=st.sampled_from([None, "application/json", "text/plain", "application/json; x"]),
    method=st.sampled_from(["POST", "GET", "PUT"]),
    path=st.sampled_from([*PATHS, "/validate/x?y", "/ready", "/", "/inject"]),
)
@example(body=b"{}", content_type="application/json", method="POST", path="/validate")
def test_any_http_request_gets_an_http_answer(
    body: bytes, content_type: str | None, method: str, path: str
) -> None:
    answer = answer_request(method=method, path=path, content_type=content_type, body=body)
    assert answer.status in (200, 400, 404, 405, 415)


def test_the_core_decodes_request_bodies_too() -> None:
    body = b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",'
    body += b' "request": {"uid": "b", "operation": "DELETE"}}'
    assert review(body, path="/admitpilot")["response"] == {"uid": "b", "allowed": True}
    assert review(body.decode())["apiVersion"] == "admission.k8s.io/v1beta1"


def test_an_unknown_path_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="/inject"):
        review({}, path="/inject")
