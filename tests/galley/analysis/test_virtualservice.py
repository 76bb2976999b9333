"""VirtualService analyzers: destination hosts and ports, subsets, gateways, host conflicts."""

from __future__ import annotations

from support.analysis import codes, lines, namespace, pod, service

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web]
  http:
  - route:
    - destination: {host: %s}
"""

MESH = (
    namespace("default")
    + pod("web-1")
    + service("web")
    + service("api", ports="[{name: http, port: 80}, {name: grpc, port: 90}]")
)


def test_unknown_destination_host_is_ist0101_at_the_host_line() -> None:
    out = lines(VS % "nowhere" + MESH)
    assert (
        "Error [IST0101] (VirtualService default/web mesh.yaml:8) Referenced host not "
        'found: "nowhere"' in out
    )


def test_known_hosts_short_and_fqdn_are_clean() -> None:
    assert "IST0101" not in codes(VS % "web" + MESH)
    assert "IST0101" not in codes(VS % "web.default.svc.cluster.local" + MESH)


def test_a_dotted_short_name_is_not_expanded() -> None:
    # istioctl treats "web.default" as already qualified: it is not web.default.svc.cluster.local
    assert "IST0101" in codes(VS % "web.default" + MESH)


def test_multi_port_service_without_port_is_ist0112() -> None:
    out = lines(VS % "api" + MESH)
    assert any(
        "[IST0112]" in line
        and 'routes to a service "api" that exposes multiple ports [80 90]' in line
        for line in out
    )


def test_port_selected_on_multi_port_service() -> None:
    text = (
        VS.replace("destination: {host: %s}", "destination: {host: api, port: {number: 90}}") + MESH
    )
    assert "IST0112" not in codes(text)
    bad = (
        VS.replace("destination: {host: %s}", "destination: {host: api, port: {number: 91}}") + MESH
    )
    assert 'Referenced host:port not found: "api:91"' in "\n".join(lines(bad))


def test_service_entry_hosts_and_wildcards_resolve() -> None:
    se = """
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: other}
spec:
  hosts: ["*.example.com"]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
"""
    assert "IST0101" not in codes(VS % "api.example.com" + MESH + se)
    private = se.replace("resolution: DNS", "resolution: DNS\n  exportTo: [.]")
    assert "IST0101" in codes(VS % "api.example.com" + MESH + private)


def test_service_export_to_annotation_hides_it() -> None:
    hidden = MESH.replace(
        "metadata: {name: web, namespace: default}\nspec:\n  selector",
        "metadata: {name: web, namespace: default}\nspec:\n  selector",
    ) + service("shy", ns="other")
    text = VS % "shy.other.svc.cluster.local" + hidden
    assert "IST0101" not in codes(text)
    exported = text.replace(
        "metadata: {name: shy, namespace: other}",
        "metadata: {name: shy, namespace: other, annotations: {networking.istio.io/exportTo: .}}",
    )
    assert "IST0101" in codes(exported)


def test_mirror_host_is_checked() -> None:
    text = (
        VS.replace(
            "    - destination: {host: %s}",
            "    - destination: {host: web}\n    mirror: {host: ghost}",
        )
        + MESH
    )
    assert 'Referenced mirror host not found: "ghost"' in "\n".join(lines(text))


def test_analyzer_needing_services_is_skipped_without_them() -> None:
    from support.analysis import analyze_yaml

    result = analyze_yaml(VS % "nowhere")
    assert "IST0101" not in [m.code for m in result.messages]
    assert any(s.startswith("virtualservice.DestinationHostAnalyzer") for s in result.skipped)


SUBSET_VS = VS.replace("destination: {host: %s}", "destination: {host: web, subset: v2}")
DR = """
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web.default.svc.cluster.local
  subsets: [{name: v1, labels: {app: web}}]
"""


def test_subset_missing_from_destination_rules_is_ist0101() -> None:
    assert 'Referenced host+subset in destinationrule not found: "web+v2"' in "\n".join(
        lines(SUBSET_VS + DR)
    )
    assert "host+subset" not in "\n".join(lines(SUBSET_VS + DR.replace("name: v1", "name: v2")))


GW_VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [%s]
  http:
  - route:
    - destination: {host: web}
"""
GATEWAY = """
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [%s]
"""


def test_missing_gateway_gives_ist0101_and_ist0132() -> None:
    out = lines(GW_VS % "nogw")
    assert (
        "Error [IST0101] (VirtualService default/front mesh.yaml:6) Referenced gateway not "
        'found: "nogw"' in out
    )
    assert (
        "Warning [IST0132] (VirtualService default/front mesh.yaml:6) one or more host "
        "[shop.example.com] defined in VirtualService default/front not found in Gateway "
        "default/nogw."
    ) in out


def test_gateway_host_forms() -> None:
    assert "IST0132" in codes(GW_VS % "public" + GATEWAY % "other.example.com")
    for host in (
        "shop.example.com",
        "'*.example.com'",
        "'*'",
        "'./shop.example.com'",
        "'*/*'",
        "'default/*'",
    ):
        assert codes(GW_VS % "public" + GATEWAY % host) == [], host
    assert "IST0132" in codes(GW_VS % "public" + GATEWAY % "'prod/shop.example.com'")
    assert "IST0132" not in codes(GW_VS % "default/public" + GATEWAY % "shop.example.com")


def test_mesh_gateway_is_not_looked_up() -> None:
    assert codes(GW_VS % "mesh") == []


CONFLICT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [web]
  http: [{route: [{destination: {host: web}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: default}
spec:
  hosts: [web.default.svc.cluster.local]
  http: [{route: [{destination: {host: web}}]}]
"""


def test_two_mesh_virtual_services_on_one_host_are_ist0109_each() -> None:
    out = [line for line in lines(CONFLICT) if "IST0109" in line]
    assert out == [
        "Error [IST0109] (VirtualService default/a mesh.yaml:3) The VirtualServices "
        "default/a,default/b "
        "associated with mesh gateway define the same host */web.default.svc.cluster.local "
        "which can "
        "lead to undefined behavior. This can be fixed by merging the conflicting "
        "VirtualServices into "
        "a single resource.",
        "Error [IST0109] (VirtualService default/b mesh.yaml:10) The VirtualServices "
        "default/a,default/b "
        "associated with mesh gateway define the same host */web.default.svc.cluster.local "
        "which can "
        "lead to undefined behavior. This can be fixed by merging the conflicting "
        "VirtualServices into "
        "a single resource.",
    ]


def test_hosts_in_separate_export_scopes_or_on_a_gateway_do_not_conflict() -> None:
    scoped = CONFLICT.replace("  hosts: [web]\n", "  hosts: [web]\n  exportTo: [other]\n", 1)
    scoped = scoped.replace("  hosts: [web.default", "  exportTo: [.]\n  hosts: [web.default")
    assert "IST0109" not in codes(scoped)
    on_gateway = CONFLICT.replace("  hosts: [web]\n", "  hosts: [web]\n  gateways: [public]\n", 1)
    assert "IST0109" not in codes(on_gateway)


RULES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: rules, namespace: default}
spec:
  hosts: [web]
  http:
%s
"""


def test_rule_after_catch_all_is_ist0130() -> None:
    http = """
  - route: [{destination: {host: web}}]
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: web}}]
"""
    assert (
        "Warning [IST0130] (VirtualService default/rules mesh.yaml:9) VirtualService rule "
        "#1 not used "
        "(route without matches defined before)."
    ) in lines(RULES % http)


def test_duplicate_match_is_ist0131_and_all_duplicates_ist0130() -> None:
    http = """
  - name: first
    match: [{uri: {exact: /a}}]
    route: [{destination: {host: web}}]
  - name: second
    match: [{name: again, uri: {exact: /a}}]
    route: [{destination: {host: web}}]
"""
    out = lines(RULES % http)
    assert (
        "Info [IST0131] (VirtualService default/rules mesh.yaml:12) VirtualService rule "
        '"second" match '
        '"again" is not used (duplicate/overlapping match in rule "first").'
    ) in out
    assert any(
        "[IST0130]" in line and 'rule "second" not used (all matches used by prior rules)' in line
        for line in out
    )


def test_prefix_covered_by_an_earlier_prefix_is_ist0131() -> None:
    http = """
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: web}}]
  - match: [{uri: {prefix: /api/v2}}]
    route: [{destination: {host: web}}]
"""
    out = lines(RULES % http)
    assert any(
        "[IST0131]" in line
        and "rule #1 match #0 of prefix /api/v2 is not used (duplicate/overlapping "
        "match in rule #0 of prefix /api on #0)."
        in line
        for line in out
    )


def test_distinct_rules_are_clean() -> None:
    http = """
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: web}}]
  - match: [{uri: {prefix: /web}}]
    route: [{destination: {host: web}}]
  - route: [{destination: {host: web}}]
"""
    assert codes(RULES % http) == []


def test_identical_messages_are_printed_once() -> None:
    # both references are on one line, so istioctl prints the two findings once
    out = lines(GW_VS % "nogw, nogw")
    missing = 'Referenced gateway not found: "nogw"'
    assert sum(line.endswith(missing) for line in out) == 1


K8S_GATEWAY = """
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP%s}
"""


def test_a_gateway_api_gateway_is_found_and_its_listener_hosts_matched() -> None:
    assert codes(GW_VS % "public" + K8S_GATEWAY % ", hostname: shop.example.com") == []
    assert codes(GW_VS % "public" + K8S_GATEWAY % "") == []  # a listener without hostname takes all
    assert codes(GW_VS % "public" + K8S_GATEWAY % ", hostname: api.example.com") == ["IST0132"]
