"""Arbitrary JSON in Kubernetes objects: loading gives a typed error or a resource, and the
Kubernetes registry serves what it can and reports the rest, never a traceback."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from istio_sdk.config import ConfigError, Resource, validate
from istio_sdk.pilot.kube_registry import build_kube_registry

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=8),
    st.sampled_from(["None", "Pod", "ExternalName", "FQDN", "IPv4", "http", "10.0.0.1", "web"]),
)
KEYS = st.sampled_from(
    [
        "ports", "port", "name", "targetPort", "selector", "clusterIP", "type", "externalName",
        "endpoints", "addresses", "conditions", "ready", "targetRef", "kind", "namespace",
        "subsets", "ip", "containers", "podIP", "nodeName", "serviceAccountName", "appProtocol",
        "protocol", "addressType", "labels", "zzz",
    ]
)  # fmt: skip
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)
KINDS = [
    ("v1", "Service"),
    ("v1", "Pod"),
    ("v1", "Endpoints"),
    ("v1", "Node"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
]


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    api_version, kind = draw(st.sampled_from(KINDS))
    doc: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": draw(st.sampled_from(["web", "web-1", "n1"])),
            "namespace": "shop",
            "labels": draw(
                st.dictionaries(
                    st.sampled_from(["app", "kubernetes.io/service-name"]),
                    st.sampled_from(["web", "gone"]),
                    max_size=2,
                )
            ),
        },
    }
    body = draw(st.dictionaries(KEYS | st.just("spec"), JSON, max_size=4))
    doc.update({k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")})
    if draw(st.booleans()):
        doc["status"] = draw(JSON)
    return doc


def _maybe(value: Any) -> st.SearchStrategy[Any]:
    """Mostly the well-formed value, one time in eight anything."""
    return st.integers(0, 7).flatmap(lambda i: JSON if i == 0 else st.just(value))


@st.composite
def well_formed(draw: st.DrawFn) -> dict[str, Any]:
    """Objects close to real ones (a Service, its Pods and slices), with parts replaced."""
    choice = draw(st.sampled_from(["service", "pod", "slice", "endpoints"]))
    meta = {"name": draw(st.sampled_from(["web", "web-1"])), "namespace": "shop"}
    if choice == "service":
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "clusterIP": draw(_maybe("10.96.0.1")),
                "type": draw(st.sampled_from(["ClusterIP", "ClusterIP", "ExternalName"])),
                "externalName": draw(_maybe("api.example.com")),
                "selector": draw(_maybe({"app": "web"})),
                "publishNotReadyAddresses": draw(st.booleans()),
                "ports": [
                    {"name": draw(_maybe("http")), "port": 80, "targetPort": draw(_maybe("http"))}
                ],
            },
        }
    if choice == "pod":
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**meta, "labels": {"app": "web"}},
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}],
            },
            "status": draw(
                _maybe(
                    {
                        "phase": draw(st.sampled_from(["Running", "Pending", "Failed"])),
                        "podIP": draw(st.sampled_from(["10.0.0.1", "10.0.0.2", None])),
                    }
                )
            ),
        }
    if choice == "slice":
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {**meta, "labels": {"kubernetes.io/service-name": draw(_maybe("web"))}},
            "addressType": draw(st.sampled_from(["IPv4", "FQDN"])),
            "ports": draw(_maybe([{"name": "http", "port": 8080}])),
            "endpoints": [
                {
                    "addresses": ["10.0.0.1"],
                    "conditions": draw(_maybe({"ready": draw(st.booleans())})),
                    "targetRef": draw(_maybe({"kind": "Pod", "name": "web-1"})),
                }
            ],
        }
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": meta,
        "subsets": [
            {
                "addresses": draw(_maybe([{"ip": "10.0.0.2"}])),
                "notReadyAddresses": draw(_maybe([{"ip": "10.0.0.3"}])),
                "ports": draw(_maybe([{"name": "http", "port": 8080}])),
            }
        ],
    }


# Cases the search must not depend on luck to reach (the `ci` profile draws only 25 lists).
SELECTED_POD_WITHOUT_IP = [
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.1", "selector": {"app": "web"}, "ports": [{"port": 80}]},
    },
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c"}]},
        "status": {"phase": "Running"},
    },
]
SLICE_WITH_GARBAGE_ADDRESSES = [
    SELECTED_POD_WITHOUT_IP[0],
    {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "", "port": 8080}],
        "endpoints": [{"addresses": ["", "not an address", "10.0.0.1"]}],
    },
]


@given(st.lists(st.one_of(well_formed(), well_formed(), documents()), max_size=8))
@example(SELECTED_POD_WITHOUT_IP)
@example(SLICE_WITH_GARBAGE_ADDRESSES)
def test_any_objects_load_or_fail_typed_and_the_registry_never_raises(
    docs: list[dict[str, Any]],
) -> None:
    loaded = []
    for doc in docs:
        try:
            resource = Resource.from_dict(doc)
        except ConfigError:
            continue
        validate(resource)
        loaded.append(resource)
    registry = build_kube_registry(loaded)
    for endpoints in registry.endpoints.values():
        assert all(ep.address for ep in endpoints)
