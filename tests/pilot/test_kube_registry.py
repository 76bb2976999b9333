"""The Kubernetes service registry: Services, EndpointSlices, Endpoints, Pods and Nodes as istiod
reads them, and bad objects reported while the rest is served."""

from __future__ import annotations

import textwrap

import pytest

from istio_sdk.config import ConfigStore, load_resources
from istio_sdk.pilot.kube_registry import build_kube_registry, convert_protocol
from istio_sdk.pilot.push_context import PushContext, PushContextError
from istio_sdk.pilot.registry import HealthStatus, Resolution

HOST = "web.shop.svc.cluster.local"


def objects(text: str) -> list[object]:
    return list(load_resources(textwrap.dedent(text)))


NODE_AND_POD = """
apiVersion: v1
kind: Node
metadata:
  name: n1
  labels:
    topology.kubernetes.io/region: eu-west1
    topology.kubernetes.io/zone: eu-west1-a
    topology.istio.io/subzone: rack-1
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web, version: v2}}
spec:
  serviceAccountName: web-sa
  nodeName: n1
  containers: [{name: web, image: web, ports: [{name: http-web, containerPort: 8080}]}]
status: {phase: Running, podIP: 10.0.0.1, conditions: [{type: Ready, status: "True"}]}
"""

SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations: {networking.istio.io/exportTo: ".,istio-system"}
spec:
  clusterIP: 10.96.1.1
  selector: {app: web}
  ports:
  - {name: http-web, port: 80, targetPort: http-web}
  - {name: grpc, port: 90, targetPort: 9090}
  - {name: metrics, port: 9100, appProtocol: http}
  - {name: http-named, port: 91, appProtocol: kubernetes.io/h2c}
  - {name: dns, port: 53, protocol: UDP}
  - {name: db, port: 3306}
  - {name: other, port: 7000}
"""


def slice_doc(service: str = "web", ready: str = "true", target: str = "web-1") -> str:
    return f"""
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {service}-abc
  namespace: shop
  labels: {{kubernetes.io/service-name: {service}}}
addressType: IPv4
ports: [{{name: http-web, port: 8080}}, {{name: grpc, port: 9090}}]
endpoints:
- addresses: [10.0.0.1]
  conditions: {{ready: {ready}}}
  targetRef: {{kind: Pod, namespace: shop, name: {target}}}
- addresses: [10.0.0.7]
"""


def test_service_hostname_ports_protocols_addresses_export_to() -> None:
    registry = build_kube_registry(objects(SERVICE))
    service = registry.services[("shop", HOST)]
    assert service.addresses == ("10.96.1.1",)
    assert service.resolution is Resolution.STATIC
    assert service.export_to == (".", "istio-system")
    assert [(p.number, p.protocol) for p in service.ports] == [
        (80, "HTTP"),
        (90, "GRPC"),
        (9100, "HTTP"),  # appProtocol wins over the name
        (91, "HTTP2"),  # kubernetes.io/h2c
        (53, "UDP"),
        (3306, "TCP"),  # a well-known port
        (7000, "TCP"),  # unknown: istiod sniffs, the SDK treats it as TCP
    ]
    assert registry.problems == ()


@pytest.mark.parametrize(
    ("port", "name", "protocol", "app_protocol", "expected"),
    [
        (80, "http", None, None, "HTTP"),
        (80, "HTTP2-x", None, None, "HTTP2"),
        (80, "grpc-web-ui", None, None, "GRPC-WEB"),
        (80, "grpc-x", None, None, "GRPC"),
        (80, "tls", None, None, "TLS"),
        (80, "https-a", None, None, "HTTPS"),
        (80, "mongo", None, None, "MONGO"),
        (80, "redis-cache", None, None, "REDIS"),
        (80, "mysql", None, None, "MYSQL"),
        (80, "tcp-x", None, None, "TCP"),
        (80, "http", "UDP", None, "UDP"),
        (80, "http", None, "grpc", "GRPC"),
        (80, "http", None, "kubernetes.io/wss", "HTTPS"),
        (80, "web", None, None, "UNSUPPORTED"),
        (27017, "web", None, None, "TCP"),
    ],
)
def test_convert_protocol_follows_istiod(
    port: int, name: str, protocol: str | None, app_protocol: str | None, expected: str
) -> None:
    assert convert_protocol(port, name, protocol, app_protocol) == expected


def test_headless_and_external_name_services() -> None:
    registry = build_kube_registry(
        objects("""
        apiVersion: v1
        kind: Service
        metadata: {name: db, namespace: shop}
        spec: {clusterIP: None, ports: [{name: tcp, port: 5432}]}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: ext, namespace: shop}
        spec: {type: ExternalName, externalName: api.example.com, ports: [{name: https, port: 443}]}
        """)
    )
    db = registry.services[("shop", "db.shop.svc.cluster.local")]
    assert db.resolution is Resolution.NONE and db.addresses == ()
    ext = registry.services[("shop", "ext.shop.svc.cluster.local")]
    assert ext.mesh_external and ext.resolution is Resolution.DNS
    assert [e.address for e in registry.endpoints[ext.key]] == ["api.example.com"]


def test_slices_join_pods_for_labels_identity_and_locality() -> None:
    registry = build_kube_registry(objects(NODE_AND_POD + "---" + SERVICE + "---" + slice_doc()))
    first, second = registry.endpoints[("shop", HOST)]
    assert first.address == "10.0.0.1"
    assert dict(first.labels) == {"app": "web", "version": "v2"}
    assert first.service_account == "spiffe://cluster.local/ns/shop/sa/web-sa"
    assert first.locality == "eu-west1/eu-west1-a/rack-1"
    assert dict(first.ports) == {"http-web": 8080, "grpc": 9090}
    assert first.health is HealthStatus.HEALTHY
    # an address with no Pod behind it (no targetRef, no Pod with that IP) is still served
    assert second.address == "10.0.0.7" and second.service_account == ""
    assert registry.problems == ()


def test_trust_domain_and_locality_label_override() -> None:
    pod = NODE_AND_POD.replace("version: v2}", "version: v2, istio-locality: r.z.s}")
    registry = build_kube_registry(
        objects(pod + "---" + SERVICE + "---" + slice_doc()), trust_domain="example.org"
    )
    first = registry.endpoints[("shop", HOST)][0]
    assert first.service_account == "spiffe://example.org/ns/shop/sa/web-sa"
    assert first.locality == "r/z/s"


def test_not_ready_endpoints_are_left_out_unless_published() -> None:
    docs = NODE_AND_POD + "---" + SERVICE + "---" + slice_doc(ready="false")
    registry = build_kube_registry(objects(docs))
    assert [e.address for e in registry.endpoints[("shop", HOST)]] == ["10.0.0.7"]
    published = docs.replace(
        "clusterIP: 10.96.1.1", "clusterIP: 10.96.1.1\n  publishNotReadyAddresses: true"
    )
    registry = build_kube_registry(objects(published))
    health = {e.address: e.health for e in registry.endpoints[("shop", HOST)]}
    assert health == {"10.0.0.1": HealthStatus.UNHEALTHY, "10.0.0.7": HealthStatus.HEALTHY}


def test_endpoints_object_when_there_are_no_slices() -> None:
    endpoints = """
    apiVersion: v1
    kind: Endpoints
    metadata: {name: web, namespace: shop}
    subsets:
    - addresses: [{ip: 10.0.0.1, targetRef: {kind: Pod, namespace: shop, name: web-1}}]
      notReadyAddresses: [{ip: 10.0.0.2}]
      ports: [{name: http-web, port: 8080}]
    """
    docs = NODE_AND_POD + "---" + SERVICE + "---" + textwrap.dedent(endpoints)
    registry = build_kube_registry(objects(docs))
    (only,) = registry.endpoints[("shop", HOST)]
    assert (only.address, dict(only.ports), only.labels["version"]) == (
        "10.0.0.1",
        {"http-web": 8080},
        "v2",
    )
    # with a slice too, the slice wins
    registry = build_kube_registry(objects(docs + "---" + slice_doc()))
    assert {e.address for e in registry.endpoints[("shop", HOST)]} == {"10.0.0.1", "10.0.0.7"}


def test_selected_pods_when_there_are_no_endpoint_objects() -> None:
    registry = build_kube_registry(objects(NODE_AND_POD + "---" + SERVICE))
    (only,) = registry.endpoints[("shop", HOST)]
    assert only.address == "10.0.0.1"
    # named targetPort resolved through the container port; numeric taken as written
    assert only.ports["http-web"] == 8080 and only.ports["grpc"] == 9090


def test_a_slice_address_without_target_ref_is_joined_with_the_pod_of_that_ip() -> None:
    untargeted = slice_doc().replace("  targetRef: {kind: Pod, namespace: shop, name: web-1}\n", "")
    registry = build_kube_registry(objects("---".join([NODE_AND_POD, SERVICE, untargeted])))
    first = registry.endpoints[("shop", HOST)][0]
    assert (first.address, first.service_account) == (
        "10.0.0.1",
        "spiffe://cluster.local/ns/shop/sa/web-sa",
    )


def test_the_same_address_in_two_slices_is_one_endpoint() -> None:
    twice = slice_doc() + "---" + slice_doc().replace("web-abc", "web-def")
    registry = build_kube_registry(objects("---".join([NODE_AND_POD, SERVICE, twice])))
    assert [e.address for e in registry.endpoints[("shop", HOST)]] == ["10.0.0.1", "10.0.0.7"]


def test_fqdn_slices_give_no_endpoints() -> None:
    fqdn = slice_doc().replace("addressType: IPv4", "addressType: FQDN")
    registry = build_kube_registry(objects("---".join([SERVICE, fqdn])))
    assert registry.endpoints[("shop", HOST)] == ()


@pytest.mark.parametrize(
    ("status", "served"),
    [
        ('{phase: Running, podIP: 10.0.0.1, conditions: [{type: Ready, status: "False"}]}', False),
        # a finished Pod is not served whatever its last Ready condition said
        ('{phase: Succeeded, podIP: 10.0.0.1, conditions: [{type: Ready, status: "True"}]}', False),
        ('{phase: Failed, podIP: 10.0.0.1, conditions: [{type: Ready, status: "True"}]}', False),
        ("{phase: Pending, podIP: 10.0.0.1}", False),
        ("{phase: Running, podIP: 10.0.0.1}", True),
    ],
)
def test_selected_pods_are_served_when_ready(status: str, served: bool) -> None:
    pod = NODE_AND_POD.replace(
        'status: {phase: Running, podIP: 10.0.0.1, conditions: [{type: Ready, status: "True"}]}',
        f"status: {status}",
    )
    registry = build_kube_registry(objects("---".join([pod, SERVICE])))
    assert [e.address for e in registry.endpoints[("shop", HOST)]] == (
        ["10.0.0.1"] if served else []
    )


def test_network_label_and_no_locality() -> None:
    pod = NODE_AND_POD.replace("version: v2}", "version: v2, topology.istio.io/network: n2}")
    pod = pod.replace("nodeName: n1", "nodeName: n9")
    node = "apiVersion: v1\nkind: Node\nmetadata: {name: n9}\n"  # no topology labels
    registry = build_kube_registry(objects("---".join([node, pod, SERVICE])))
    (only,) = registry.endpoints[("shop", HOST)]
    assert (only.network, only.locality) == ("n2", "")
    registry = build_kube_registry(objects("---".join([NODE_AND_POD, SERVICE])))
    assert registry.endpoints[("shop", HOST)][0].network == ""


def test_an_external_name_service_with_a_selector_gets_only_its_name() -> None:
    ext = """
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: shop}
    spec:
      type: ExternalName
      externalName: api.example.com
      selector: {app: web}
      ports: [{port: 80}]
    """
    registry = build_kube_registry(objects("---".join([NODE_AND_POD, textwrap.dedent(ext)])))
    assert [e.address for e in registry.endpoints[("shop", HOST)]] == ["api.example.com"]


def test_bad_objects_are_reported_and_the_rest_is_served() -> None:
    no_ip = """
    apiVersion: v1
    kind: Pod
    metadata: {name: web-2, namespace: shop, labels: {app: web}}
    spec: {containers: [{name: web, image: web}]}
    status: {phase: Pending}
    """
    docs = "---".join(
        [
            NODE_AND_POD,
            SERVICE,
            textwrap.dedent(no_ip),
            slice_doc(service="gone"),
            slice_doc(target="web-9").replace("web-abc", "web-xyz"),
        ]
    )
    registry = build_kube_registry(objects(docs))
    assert registry.problems == (
        "EndpointSlice shop/gone-abc: no Service shop/gone",
        "EndpointSlice shop/web-xyz: address 10.0.0.1: no Pod shop/web-9",
    )
    assert [e.address for e in registry.endpoints[("shop", HOST)]] == ["10.0.0.7"]
    # the Pod without an IP is reported when its Service's endpoints come from Pods
    registry = build_kube_registry(
        objects("---".join([NODE_AND_POD, SERVICE, textwrap.dedent(no_ip)]))
    )
    assert registry.problems == ("Pod shop/web-2: selected by Service shop/web but has no IP",)
    assert [e.address for e in registry.endpoints[("shop", HOST)]] == ["10.0.0.1"]


GARBAGE_SLICE = """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-bad, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http-web, port: 8080}]
endpoints:
- addresses: ["", "10.0.0.1\\n; rm -rf /", "fd00::1", "10.0.0.9"]
"""
GARBAGE_POD_IP = """
apiVersion: v1
kind: Pod
metadata: {name: web-3, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, image: web}]}
status: {phase: Running, podIP: "not-an-ip"}
"""


def test_garbage_endpoint_addresses_are_reported_and_the_good_ones_served() -> None:
    registry = build_kube_registry(objects("---".join([SERVICE, GARBAGE_SLICE, GARBAGE_POD_IP])))
    assert registry.problems == (
        "Pod shop/web-3: status.podIP 'not-an-ip': not an IP",
        "EndpointSlice shop/web-bad: address '': not an IP address",
        "EndpointSlice shop/web-bad: address '10.0.0.1\\n; rm -rf /': not an IP address",
        "EndpointSlice shop/web-bad: address 'fd00::1': not an IPv4 address",
    )
    assert [e.address for e in registry.endpoints[("shop", HOST)]] == ["10.0.0.9"]
    endpoints = """
    apiVersion: v1
    kind: Endpoints
    metadata: {name: web, namespace: shop}
    subsets: [{addresses: [{ip: "10.0.0.2"}, {ip: "300.1.1.1"}], ports: [{port: 8080}]}]
    """
    registry = build_kube_registry(objects("---".join([SERVICE, textwrap.dedent(endpoints)])))
    assert registry.problems == ("Endpoints shop/web: address '300.1.1.1': not an IP address",)
    assert [e.address for e in registry.endpoints[("shop", HOST)]] == ["10.0.0.2"]
    # a Pod whose podIP is garbage is a Pod without an IP when its Service selects it
    registry = build_kube_registry(objects("---".join([SERVICE, GARBAGE_POD_IP])))
    assert registry.problems[-1] == "Pod shop/web-3: selected by Service shop/web but has no IP"
    assert registry.endpoints[("shop", HOST)] == ()


def test_endpoint_ports_that_are_no_tcp_port_are_reported_not_truncated() -> None:
    # 2**40 written as an EDS port_value (uint32) reached Envoy as port 0
    huge = slice_doc().replace("port: 8080", "port: 1099511627776")
    registry = build_kube_registry(objects("---".join([NODE_AND_POD, SERVICE, huge])))
    assert registry.problems == (
        "EndpointSlice shop/web-abc: port 'http-web': 1099511627776 is not a port number (1-65535)",
    )
    assert {dict(e.ports).get("http-web") for e in registry.endpoints[("shop", HOST)]} == {None}
    endpoints = """
    apiVersion: v1
    kind: Endpoints
    metadata: {name: web, namespace: shop}
    subsets: [{addresses: [{ip: "10.0.0.2"}], ports: [{name: a, port: -5}, {name: b, port: 81}]}]
    """
    registry = build_kube_registry(objects("---".join([SERVICE, textwrap.dedent(endpoints)])))
    assert registry.problems == ("Endpoints shop/web: port 'a': -5 is not a port number (1-65535)",)
    assert [dict(e.ports) for e in registry.endpoints[("shop", HOST)]] == [{"b": 81}]
    pod = NODE_AND_POD.replace("containerPort: 8080", "containerPort: 70000")
    registry = build_kube_registry(objects("---".join([pod, SERVICE])))
    assert "Pod shop/web-1: port 'http-web': 70000 is not a port number (1-65535)" in (
        registry.problems
    )
    assert "http-web" not in registry.endpoints[("shop", HOST)][0].ports


@pytest.mark.parametrize(
    ("spec", "problem", "addresses"),
    [
        (
            "{clusterIP: '10.96.0.1 -j DROP', ports: [{port: 80}]}",
            "Service shop/web: cluster IP '10.96.0.1 -j DROP': not an IP address",
            (),
        ),
        (
            "{clusterIP: 10.96.0.1, clusterIPs: [10.96.0.1, junk], ports: [{port: 80}]}",
            "Service shop/web: cluster IP 'junk': not an IP address",
            ("10.96.0.1",),
        ),
    ],
)
def test_a_cluster_ip_that_is_no_ip_is_reported_and_the_service_served(
    spec: str, problem: str, addresses: tuple[str, ...]
) -> None:
    doc = f"apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec: {spec}\n"
    registry = build_kube_registry(objects(doc))
    assert registry.problems == (problem,)
    assert registry.services[("shop", HOST)].addresses == addresses


def test_an_external_name_that_is_no_dns_name_is_reported_and_not_served() -> None:
    doc = """
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: shop}
    spec: {type: ExternalName, externalName: "api.example.com\\n-x", ports: [{port: 80}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: api, namespace: shop}
    spec: {type: ExternalName, externalName: api.example.com., ports: [{port: 80}]}
    """
    registry = build_kube_registry(objects(doc))
    assert registry.problems == (
        "Service shop/web: spec.externalName 'api.example.com\\n-x': not a DNS name "
        "(RFC 1123 subdomain)",
    )
    assert list(registry.services) == [("shop", "api.shop.svc.cluster.local")]
    assert [e.address for e in registry.endpoints[("shop", "api.shop.svc.cluster.local")]] == [
        "api.example.com."
    ]


def test_push_context_from_store_serves_kubernetes_beside_service_entries() -> None:
    service_entry = """
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {name: api, namespace: shop}
    spec:
      hosts: [api.example.com]
      ports: [{number: 443, name: https, protocol: HTTPS}]
      resolution: DNS
    """
    docs = "---".join(
        [NODE_AND_POD, SERVICE, slice_doc(service="gone"), textwrap.dedent(service_entry)]
    )
    store = ConfigStore(objects(docs))
    context = PushContext.from_store(store)
    assert ("shop", HOST) in context.services
    assert ("shop", "api.example.com") in context.services
    assert context.errors == ("EndpointSlice shop/gone-abc: no Service shop/gone",)
    with pytest.raises(PushContextError, match="no Service shop/gone"):
        PushContext.from_store(store, strict=True)
