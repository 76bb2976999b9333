"""DestinationRule: host, subsets, traffic policy (pools, outlier detection, balancing, TLS)."""

from __future__ import annotations

import math
from typing import Any

from istio_sdk.config.semantic import _primitives as p
from istio_sdk.config.semantic._report import (
    Report,
    flag,
    has,
    items,
    mapping,
    number,
    obj,
    real,
    text,
)
from istio_sdk.config.semantic._virtualservice import destination, subset_name_problem

_TRAFFIC_FIELDS = (
    "outlierDetection",
    "connectionPool",
    "loadBalancer",
    "tls",
    "portLevelSettings",
    "tunnel",
    "proxyProtocol",
    "retryBudget",
)
_TOPOLOGY_LABELS = (
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
)


def check_destination_rule(report: Report, spec: dict[str, Any]) -> None:
    namespace = report.context.namespace
    report.add("spec.host", p.wildcard_domain_problem(text(spec, "host")))
    traffic_policy(report, "spec.trafficPolicy", obj(spec, "trafficPolicy"))
    names: set[str] = set()
    for i, subset in enumerate(items(spec, "subsets")):
        where = f"spec.subsets[{i}]"
        if not isinstance(subset, dict):
            report.error(where, "subset may not be null")
            continue
        name = text(subset, "name")
        if name in names:
            report.error(f"{where}.name", f"duplicate subset names: {p.clip(name)}")
        names.add(name)
        report.add(f"{where}.name", subset_name_problem(name))
        for problem in p.labels_problems(mapping(subset, "labels")):
            report.error(f"{where}.labels", problem)
        traffic_policy(report, f"{where}.trafficPolicy", obj(subset, "trafficPolicy"))
    selector = obj(spec, "workloadSelector")
    p.export_to(
        report,
        "spec.exportTo",
        namespace,
        items(spec, "exportTo"),
        dr_with_selector=selector is not None,
    )
    p.workload_selector(report, "spec.workloadSelector", selector)


def traffic_policy(report: Report, path: str, policy: dict[str, Any] | None) -> None:
    if policy is None:
        return
    if not any(has(policy, field) for field in _TRAFFIC_FIELDS):
        report.error(path, "traffic policy must have at least one field")
        return
    if has(policy, "tunnel") and has(policy, "proxyProtocol"):
        report.error(path, "tunnel and proxyProtocol must not be set together")
        return
    _policy_settings(report, path, policy)
    for i, port_policy in enumerate(items(policy, "portLevelSettings")):
        _port_policy(report, f"{path}.portLevelSettings[{i}]", port_policy)
    _tunnel(report, f"{path}.tunnel", obj(policy, "tunnel"))
    proxy_protocol = obj(policy, "proxyProtocol")
    if proxy_protocol is not None:
        version = proxy_protocol.get("version")
        if isinstance(version, int) and version not in (0, 1):  # a number no enum name has
            report.error(
                f"{path}.proxyProtocol.version", f"proxy protocol version is invalid: {version}"
            )


def _policy_settings(report: Report, path: str, policy: dict[str, Any]) -> None:
    """What a traffic policy and a port-level one have in common."""
    outlier = obj(policy, "outlierDetection")
    _outlier_detection(report, f"{path}.outlierDetection", outlier)
    connection_pool(report, f"{path}.connectionPool", obj(policy, "connectionPool"))
    _load_balancer(report, f"{path}.loadBalancer", obj(policy, "loadBalancer"), outlier)
    client_tls(report, f"{path}.tls", obj(policy, "tls"))


def _port_policy(report: Report, path: str, policy: Any) -> None:
    if not isinstance(policy, dict):
        report.error(path, "traffic policy may not be null")
        return
    if not has(policy, "port"):
        report.error(path, "portTrafficPolicy must have valid port")
    if not any(
        has(policy, f) for f in ("outlierDetection", "connectionPool", "loadBalancer", "tls")
    ):
        report.error(path, "port traffic policy must have at least one field")
        return
    _policy_settings(report, path, policy)


def _tunnel(report: Report, path: str, tunnel: dict[str, Any] | None) -> None:
    if tunnel is None:
        return
    protocol = text(tunnel, "protocol")
    if protocol and protocol not in ("CONNECT", "POST"):
        report.error(f"{path}.protocol", 'tunnel protocol must be "CONNECT" or "POST"')
    host = text(tunnel, "targetHost")
    fqdn, ip = p.fqdn_problem(host), p.ip_problem(host)
    if fqdn and ip:
        report.error(
            f"{path}.targetHost",
            f"tunnel target host must be valid FQDN or IP address: {fqdn}; {ip}",
        )
    port = p.port_problem(number(tunnel, "targetPort"))
    if port:
        report.error(f"{path}.targetPort", f"tunnel target port is invalid: {port}")


def _outlier_detection(report: Report, path: str, outlier: dict[str, Any] | None) -> None:
    if outlier is None:
        return
    if has(outlier, "baseEjectionTime"):
        report.add(f"{path}.baseEjectionTime", p.duration_problem(outlier["baseEjectionTime"]))
    if number(outlier, "consecutiveErrors"):
        report.warn(
            f"{path}.consecutiveErrors",
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or "
            "consecutive5xxErrors instead",
        )
    if (
        not flag(outlier, "splitExternalLocalOriginErrors")
        and number(outlier, "consecutiveLocalOriginFailures") > 0
    ):
        report.error(
            f"{path}.consecutiveLocalOriginFailures",
            "outlier detection consecutive local origin failures is specified, but split "
            "external local origin errors is set to false",
        )
    if has(outlier, "interval"):
        report.add(f"{path}.interval", p.duration_problem(outlier["interval"]))
    report.add(
        f"{path}.maxEjectionPercent", p.percent_problem(number(outlier, "maxEjectionPercent"))
    )
    report.add(f"{path}.minHealthPercent", p.percent_problem(number(outlier, "minHealthPercent")))


def connection_pool(report: Report, path: str, pool: dict[str, Any] | None) -> None:
    if pool is None:
        return
    http, tcp = obj(pool, "http"), obj(pool, "tcp")
    if http is None and tcp is None:
        report.error(path, "connection pool must have at least one field")
        return
    if http is not None:
        here = f"{path}.http"
        for field, name in (
            ("http1MaxPendingRequests", "http1 max pending requests"),
            ("http2MaxRequests", "http2 max requests"),
            ("maxRequestsPerConnection", "max requests per connection"),
            ("maxRetries", "max retries"),
        ):
            if number(http, field) < 0:
                report.error(f"{here}.{field}", f"{name} must be non-negative")
        if has(http, "idleTimeout"):
            report.add(f"{here}.idleTimeout", p.duration_problem(http["idleTimeout"]))
        if text(http, "h2UpgradePolicy") == "UPGRADE" and flag(http, "useClientProtocol"):
            report.error(
                f"{here}.useClientProtocol",
                "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
            )
        if number(http, "maxConcurrentStreams") < 0:
            report.error(
                f"{here}.maxConcurrentStreams", "max concurrent streams must be non-negative"
            )
        keepalive = obj(http, "http2KeepAlive")
        if keepalive is not None:
            for field in ("interval", "timeout"):
                if not has(keepalive, field):
                    report.error(f"{here}.http2KeepAlive", f"http2 keepalive {field} is required")
                else:
                    report.add(
                        f"{here}.http2KeepAlive.{field}", p.duration_problem(keepalive[field])
                    )
    if tcp is not None:
        here = f"{path}.tcp"
        if number(tcp, "maxConnections") < 0:
            report.error(f"{here}.maxConnections", "max connections must be non-negative")
        for field in ("connectTimeout", "maxConnectionDuration"):
            if has(tcp, field):
                report.add(f"{here}.{field}", p.duration_problem(tcp[field]))
        if has(tcp, "idleTimeout"):
            nanos = p.duration_nanos(tcp["idleTimeout"])
            if nanos is None or abs(nanos) >= p.MS:  # 0s (under a millisecond) turns it off
                report.add(f"{here}.idleTimeout", p.duration_problem(tcp["idleTimeout"]))
        keepalive = obj(tcp, "tcpKeepalive")
        for field in ("time", "interval"):
            if has(keepalive, field):
                report.add(f"{here}.tcpKeepalive.{field}", p.duration_problem(keepalive[field]))  # type: ignore[index]


def _load_balancer(
    report: Report, path: str, settings: dict[str, Any] | None, outlier: dict[str, Any] | None
) -> None:
    if settings is None:
        return
    hashing = obj(settings, "consistentHash")
    if hashing is not None:
        here = f"{path}.consistentHash"
        cookie = obj(hashing, "httpCookie")
        if cookie is not None:
            if not text(cookie, "name"):
                report.error(f"{here}.httpCookie.name", "name required for HttpCookie")
            names: set[str] = set()
            for i, attribute in enumerate(items(cookie, "attributes")):
                name = text(attribute, "name")
                where = f"{here}.httpCookie.attributes[{i}]"
                if not name:
                    report.error(where, "cookie attribute name cannot be empty")
                    continue
                if name in names:
                    report.error(where, f"duplicate cookie attribute name: {p.clip(name)}")
                names.add(name)
        ring = number(hashing, "minimumRingSize")
        if ring:
            report.warn(
                f"{here}.minimumRingSize",
                "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash "
                "configuration instead",
            )
            if has(hashing, "maglev") or has(hashing, "ringHash"):
                report.error(
                    here, "only one of MinimumRingSize or Maglev/Ringhash can be specified"
                )
        maglev = obj(hashing, "maglev")
        if maglev is not None:
            size = number(maglev, "tableSize")
            if size == 0:
                report.error(f"{here}.maglev.tableSize", "tableSize must be set for maglev")
            if size >= 5000011:
                report.error(
                    f"{here}.maglev.tableSize", "tableSize must be less than 5000011 for maglev"
                )
            if not _is_prime(size):
                report.error(
                    f"{here}.maglev.tableSize", "tableSize must be a prime number for maglev"
                )
    locality, zone_aware = obj(settings, "localityLbSetting"), obj(settings, "zoneAwareLbSetting")
    if locality is not None and zone_aware is not None:
        report.error(path, "only one of localityLbSetting and zoneAwareLbSetting can be set")
    _locality(report, f"{path}.localityLbSetting", locality, outlier)
    _zone_aware(report, f"{path}.zoneAwareLbSetting", zone_aware, outlier)
    warmup = obj(settings, "warmup")
    if warmup is not None:
        if not has(warmup, "duration"):
            report.error(f"{path}.warmup", "duration is required")
        else:
            report.add(f"{path}.warmup.duration", p.duration_problem(warmup["duration"]))
        if has(warmup, "minimumPercent") and real(warmup, "minimumPercent") > 100:
            report.error(
                f"{path}.warmup.minimumPercent",
                "minimumPercent value should be less than or equal to 100",
            )
        if has(warmup, "aggression") and not real(warmup, "aggression") > 0:
            report.error(f"{path}.warmup.aggression", "aggression should be greater than 0")


def _is_prime(x: int) -> bool:
    if 0 < x < 4:
        return True
    if x % 2 == 0:
        return False
    return all(x % factor for factor in range(3, math.isqrt(x) + 1, 2))


def _locality(
    report: Report, path: str, lb: dict[str, Any] | None, outlier: dict[str, Any] | None
) -> None:
    if lb is None:
        return
    distribute, failover = items(lb, "distribute"), items(lb, "failover")
    priority = [x for x in items(lb, "failoverPriority") if isinstance(x, str)]
    if distribute and failover:
        report.error(path, "can not simultaneously specify 'distribute' and 'failover'")
        return
    if failover:
        for label in priority:
            if label in _TOPOLOGY_LABELS:
                report.error(
                    f"{path}.failoverPriority",
                    f"can not simultaneously set 'failover' and topology label '{label}' in "
                    "'failover_priority'",
                )
                return
    sources = []
    for i, rule in enumerate(distribute):
        sources.append(text(rule, "from"))
        total = 0
        for value in mapping(rule, "to").values():
            weight = value if isinstance(value, int) else 0
            if weight <= 0 or weight > 100:
                report.error(
                    f"{path}.distribute[{i}].to", "locality weight must be in range [1, 100]"
                )
                return
            total += weight
        if total != 100:
            report.error(f"{path}.distribute[{i}].to", f"total locality weight {total} != 100")
            return
        report.add(f"{path}.distribute[{i}].to", _localities_problem(list(mapping(rule, "to"))))
    report.add(f"{path}.distribute", _localities_problem(sources))
    _failover(report, path, failover, priority, outlier, "locality lb", "only specify region")


def _failover(  # noqa: PLR0917
    report: Report,
    path: str,
    failover: list[Any],
    priority: list[str],
    outlier: dict[str, Any] | None,
    what: str,
    region_only: str,
) -> None:
    """The failover rules locality and zone-aware balancing share (their texts differ)."""
    if (failover or priority) and outlier is None:
        report.warn(path, "outlier detection policy must be provided for failover")
    for i, rule in enumerate(failover):
        where = f"{path}.failover[{i}]"
        source, target = text(rule, "from"), text(rule, "to")
        if source == target:
            report.error(where, f"{what} failover settings must specify different regions")
        if "/" in source or "/" in target:
            report.error(where, f"{what} failover {region_only}")
        if "*" in source or "*" in target:
            report.error(where, f"{what} failover region should not contain '*' wildcard")


def _zone_aware(
    report: Report, path: str, lb: dict[str, Any] | None, outlier: dict[str, Any] | None
) -> None:
    if lb is None:
        return
    priority = [x for x in items(lb, "failoverPriority") if isinstance(x, str)]
    for label in priority:
        if label in _TOPOLOGY_LABELS:
            report.error(
                f"{path}.failoverPriority",
                f"'failover_priority' for zone aware lb must not use topology label '{label}'; "
                "region- and zone-level routing are handled automatically",
            )
    _failover(
        report,
        path,
        items(lb, "failover"),
        priority,
        outlier,
        "zone aware lb",
        "only specifies region; zone and subzone failover are handled automatically",
    )


def _localities_problem(localities: list[str]) -> str | None:
    """Localities (``region/zone/subzone``, ``*`` only last) that do not overlap."""
    tree: dict[str, dict[str, dict[str, bool]]] = {}
    for locality in localities:
        stars = locality.count("*")
        if stars and (stars > 1 or not locality.endswith("*")):
            return (
                f"locality {locality} wildcard '*' number can not exceed 1 and must be in the end"
            )
        if "*" in tree:
            return f"locality {locality} overlap with previous specified ones"
        parts = locality.split("/", 2)
        if any(part == "" for part in parts):
            return f"locality {locality} must not contain empty region/zone/subzone info"
        overlap = f"locality {locality} overlap with previous specified ones"
        region = parts[0]
        if len(parts) == 1:
            if region in tree:
                return overlap
            tree[region] = {"*": {"*": True}}
        elif len(parts) == 2:
            zones = tree.get(region)
            if zones is None:
                tree[region] = {parts[1]: {"*": True}}
            elif "*" in zones or parts[1] in zones:
                return overlap
            else:
                zones[parts[1]] = {"*": True}
        else:
            zones = tree.get(region)
            if zones is None:
                tree[region] = {parts[1]: {parts[2]: True}}
            elif "*" in zones:
                return overlap
            elif parts[1] in zones:
                subzones = zones[parts[1]]
                if subzones.get("*") or subzones.get(parts[2]):
                    return overlap
                subzones[parts[2]] = True
            else:
                zones[parts[1]] = {parts[2]: True}
    return None


def client_tls(report: Report, path: str, tls: dict[str, Any] | None) -> None:
    if tls is None:
        return
    namespace = report.context.namespace
    credential = text(tls, "credentialName")
    if credential.startswith("configmap://"):
        rest = credential.removeprefix("configmap://")
        parts = rest.split("/")
        if len(parts) == 1 and parts[0]:
            target = namespace
        elif len(parts) == 2 and all(parts):
            target = parts[0]
        else:
            target = None
            report.error(
                f"{path}.credentialName",
                "invalid configmap:// credentialName: invalid resource name "
                f"{p.go_quote(credential)}. "
                "Expected name or namespace/name",
            )
        if target is not None and (target != namespace or not namespace):
            report.error(
                f"{path}.credentialName",
                "invalid configmap:// credentialName: namespace must match the configuration "
                f"namespace {p.go_quote(namespace)}",
            )
    mode = text(tls, "mode") or "DISABLE"
    if tls.get("insecureSkipVerify") is True:
        sans = "subjectAltNames" in tls
        if mode == "SIMPLE" and (text(tls, "caCertificates") or credential or sans):
            report.error(
                path,
                "cannot specify CaCertificates or CredentialName or SubjectAltNames when "
                "InsecureSkipVerify is set true",
            )
        if mode == "MUTUAL" and (text(tls, "caCertificates") or sans):
            report.error(
                path,
                "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set "
                "true",
            )
    if mode in ("SIMPLE", "MUTUAL") and credential:
        if any(
            text(tls, f) for f in ("clientCertificate", "caCertificates", "privateKey", "caCrl")
        ):
            report.error(
                path,
                "cannot specify client certificates or CA certificate or CA CRL If credentialName "
                "is set",
            )
        return
    if mode == "MUTUAL":
        if not text(tls, "clientCertificate"):
            report.error(f"{path}.clientCertificate", "client certificate required for mutual tls")
        if not text(tls, "privateKey"):
            report.error(f"{path}.privateKey", "private key required for mutual tls")


__all__ = [
    "check_destination_rule",
    "client_tls",
    "connection_pool",
    "destination",
    "traffic_policy",
]
