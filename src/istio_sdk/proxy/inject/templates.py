"""Istio's injection templates (``sidecar``, ``gateway``, ``grpc-agent``, ``grpc-simple``) as
Pod objects.

istiod renders Go text templates from the ``istio-discovery`` chart
(``files/injection-template.yaml``, ``gateway-injection-template.yaml``, ``grpc-agent.yaml``,
``grpc-simple.yaml``)
into a partial Pod, which it then merges over the user's Pod. Here each template is a function
from a :class:`TemplateInput` to that partial Pod (``{"metadata": ..., "spec": ...}`` as
Kubernetes JSON), with the same fields, values, defaults and conditions, already in the form
Kubernetes' typed decoding leaves it (zero-valued fields dropped, quantities canonical).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from istio_sdk import protojson
from istio_sdk.api.istio.mesh.v1alpha1 import (
    MeshConfigInboundTrafficPolicyMode,
    ProxyConfig,
    ProxyConfigInboundInterceptionMode,
)
from istio_sdk.proxy.bootstrap import default_proxy_config
from istio_sdk.proxy.inject import _annotations as names
from istio_sdk.proxy.inject._errors import InjectionError
from istio_sdk.proxy.inject._quantity import canonical_quantity
from istio_sdk.proxy.inject.settings import InjectSettings, go_text

__all__ = ["TEMPLATES", "TemplateInput", "clean_proxy_config_json", "exclude_inbound_port"]

PROXY = "istio-proxy"
Json = dict[str, Any]


@attrs.frozen
class TemplateInput:
    """What a template sees (istiod's ``SidecarTemplateData``).

    ``annotations``, ``labels`` and ``spec`` are the Pod's (after a previous injection is
    stripped); ``deploy_name``/``deploy_namespace`` and ``api_version``/``kind`` name the
    workload that owns it; ``proxy_config`` is the mesh default with the Pod's
    ``proxy.istio.io/config`` applied.
    """

    annotations: Mapping[str, str]
    labels: Mapping[str, str]
    spec: Mapping[str, Any]
    deploy_name: str
    deploy_namespace: str
    api_version: str
    kind: str
    proxy_config: ProxyConfig
    settings: InjectSettings
    native_sidecar: bool
    proxy_image: str
    proxy_init_image: str
    proxy_uid: int = 1337
    proxy_gid: int = 1337

    def annotation(self, name: str, default: object) -> str:
        """The Pod's annotation ``name``, else ``default`` as the template prints it."""
        value = self.annotations.get(name)
        return value if value is not None else go_text(default)

    def value(self, path: str) -> Any:
        return self.settings.values.get(path)

    def text(self, path: str) -> str:
        return self.settings.values.text(path)

    def truthy(self, path: str) -> bool:
        return self.settings.values.truthy(path)

    @property
    def interception_mode(self) -> str:
        return self.annotation(names.INTERCEPTION_MODE, _mode_name(self.proxy_config))

    @property
    def app_containers(self) -> list[str]:
        return [c["name"] for c in self.spec.get("containers") or [] if c.get("name") != PROXY]


def _mode_name(config: ProxyConfig) -> str:
    mode = config.interception_mode
    return str(ProxyConfigInboundInterceptionMode(mode).name)


def _default(*values: object) -> str:
    """sprig's ``default`` chain: the first non-empty value, as text."""
    for value in values:
        if value:
            return go_text(value)
    return ""


def exclude_inbound_port(port: str, excluded: str) -> str:
    """The template's ``excludeInboundPort``: the status port added to the excluded ports."""
    port = port.strip()
    if not port or port == "0":
        return excluded
    kept = []
    for item in excluded.split(","):
        if item == port:
            return excluded
        if item.strip():
            kept.append(item.strip())
    kept.append(port)
    return ",".join(kept)


_DEFAULTS = default_proxy_config()  # compared with, never changed
_UNSET = ProxyConfig()


def clean_proxy_config_json(config: ProxyConfig) -> str:
    """``PROXY_CONFIG``: the ProxyConfig without the fields that equal Istio's defaults."""
    defaults = _DEFAULTS
    clean = ProxyConfig().parse(bytes(config))
    for name in (
        "config_path",
        "binary_path",
        "drain_duration",
        "termination_drain_duration",
        "discovery_address",
        "envoy_metrics_service",
        "envoy_access_log_service",
        "proxy_admin_port",
        "stat_name_length",
        "status_port",
        "concurrency",
    ):
        if getattr(clean, name) == getattr(defaults, name):
            setattr(clean, name, getattr(_UNSET, name))
    if clean.tracing is None or clean.tracing == defaults.tracing:
        clean.tracing = None
    if clean.control_plane_auth_policy == defaults.control_plane_auth_policy:
        clean.control_plane_auth_policy = _UNSET.control_plane_auth_policy
    if clean.service_cluster == defaults.service_cluster:
        clean.service_cluster = None
    return json.dumps(protojson.message_to_json(clean), separators=(",", ":"))


def _port_json(port: Mapping[str, Any]) -> str:
    ordered: Json = {}
    for key in ("name", "hostPort", "containerPort", "protocol", "hostIP"):
        if key == "containerPort" or port.get(key):
            ordered[key] = port.get(key, 0)
    return json.dumps(ordered, separators=(",", ":"))


def pod_ports_env(spec: Mapping[str, Any]) -> str:
    """``ISTIO_META_POD_PORTS``: every container port as JSON, one a line, as the template
    lays them out."""
    lines = ["["]
    first = True
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            lines.append("    " + ("" if first else ",") + _port_json(port))
            first = False
    lines.append("]")
    return "\n".join(lines)


def _quantities(source: str, resources: Mapping[str, Any]) -> Json:
    out: Json = {}
    for group in ("limits", "requests", "claims"):
        items = resources.get(group)
        if items is None:
            continue
        if group == "claims":
            out[group] = items
            continue
        if not isinstance(items, Mapping):
            raise InjectionError(source, f"{group}: expected a mapping, got {items!r:.80}")
        converted = {}
        for name, quantity in items.items():
            if quantity is None:
                continue
            try:
                converted[name] = canonical_quantity(go_text(quantity))
            except ValueError as exc:
                raise InjectionError(source, f"{group}.{name}: {exc}") from None
        if converted:
            out[group] = converted
    return out


def canonical_resources(container: Json, source: str) -> Json:
    """``container`` with its resource quantities in canonical form (in place), as Kubernetes
    stores them."""
    resources = container.get("resources")
    if isinstance(resources, Mapping) and resources:
        container["resources"] = {**resources, **_quantities(f"{source} resources", resources)}
    return container


_RESOURCE_ANNOTATIONS = (
    ("requests", "cpu", "sidecar.istio.io/proxyCPU"),
    ("requests", "memory", "sidecar.istio.io/proxyMemory"),
    ("limits", "cpu", "sidecar.istio.io/proxyCPULimit"),
    ("limits", "memory", "sidecar.istio.io/proxyMemoryLimit"),
)


def proxy_resources(data: TemplateInput) -> Json:
    """The ``resources`` block: the proxy* annotations when any is set, else the values'."""
    if any(name in data.annotations for _, _, name in _RESOURCE_ANNOTATIONS):
        chosen: dict[str, dict[str, Any]] = {}
        for group, resource, name in _RESOURCE_ANNOTATIONS:
            if name in data.annotations:
                chosen.setdefault(group, {})[resource] = data.annotations[name]
        return _quantities("annotations sidecar.istio.io/proxy*", chosen)
    resources = data.value("global.proxy.resources")
    if not resources:
        return {}
    if not isinstance(resources, Mapping):
        raise InjectionError("values global.proxy.resources", "expected a mapping")
    return _quantities("values global.proxy.resources", resources)


def _field_env(name: str, path: str) -> Json:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _resource_env(name: str, resource: str) -> Json:
    return {"name": name, "valueFrom": {"resourceFieldRef": {"divisor": "1", "resource": resource}}}


def _ca_address(data: TemplateInput) -> str:
    if data.truthy("global.caAddress"):
        return data.text("global.caAddress")
    revision = data.text("revision")
    suffix = f"-{revision}" if revision else ""
    return f"istiod{suffix}.{data.text('global.istioNamespace')}.svc:15012"


def _trust_domain(data: TemplateInput) -> str:
    return data.settings.mesh.trust_domain or data.text("global.trustDomain")


def _proxy_args(data: TemplateInput, role: str) -> list[str]:
    args = [
        "proxy",
        role,
        "--domain",
        f"$(POD_NAMESPACE).svc.{data.text('global.proxy.clusterDomain')}",
        "--proxyLogLevel="
        + data.annotation("sidecar.istio.io/logLevel", data.value("global.proxy.logLevel")),
        "--proxyComponentLogLevel="
        + data.annotation(
            "sidecar.istio.io/componentLogLevel", data.value("global.proxy.componentLogLevel")
        ),
        "--log_output_level="
        + data.annotation("sidecar.istio.io/agentLogLevel", data.value("global.logging.level")),
    ]
    if data.truthy("global.sts.servicePort"):
        args.append(f"--stsPort={data.text('global.sts.servicePort')}")
    if data.truthy("global.logAsJson"):
        args.append("--log_as_json")
    return args


def _image(data: TemplateInput, values_path: str, computed: str) -> str:
    chosen = data.annotation("sidecar.istio.io/proxyImage", data.value(values_path))
    return chosen if "/" in chosen else computed


def _owner_env(data: TemplateInput) -> list[Json]:
    env: list[Json] = []
    if data.api_version and data.deploy_name:
        namespace = data.deploy_namespace or "default"
        env.append(
            {
                "name": "ISTIO_META_OWNER",
                "value": f"kubernetes://apis/{data.api_version}/namespaces/{namespace}/"
                f"{data.kind.lower()}s/{data.deploy_name}",
            }
        )
    return env


def _mesh_env(data: TemplateInput) -> list[Json]:
    env: list[Json] = []
    if data.truthy("global.meshID"):
        env.append({"name": "ISTIO_META_MESH_ID", "value": data.text("global.meshID")})
    elif _trust_domain(data):
        env.append({"name": "ISTIO_META_MESH_ID", "value": _trust_domain(data)})
    if _trust_domain(data):
        env.append({"name": "TRUST_DOMAIN", "value": _trust_domain(data)})
    return env


def _env_tail(data: TemplateInput) -> list[Json]:
    """The proxy env the sidecar and gateway templates end with: the bootstrap override,
    mesh id and trust domain, then ``proxyMetadata``."""
    env: list[Json] = []
    if _bootstrap_override(data):
        env.append(
            {
                "name": "ISTIO_BOOTSTRAP_OVERRIDE",
                "value": "/etc/istio/custom-bootstrap/custom_bootstrap.json",
            }
        )
    return env + _mesh_env(data) + _metadata_env(data)


def _metadata_env(data: TemplateInput) -> list[Json]:
    metadata = data.proxy_config.proxy_metadata
    return [{"name": key, "value": metadata[key]} for key in sorted(metadata)]


def _common_env_head(data: TemplateInput) -> list[Json]:
    return [
        {"name": "PILOT_CERT_PROVIDER", "value": data.text("global.pilotCertProvider")},
        {"name": "CA_ADDR", "value": _ca_address(data)},
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("INSTANCE_IP", "status.podIP"),
        _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        _field_env("HOST_IP", "status.hostIP"),
    ]


def _proxy_config_env(data: TemplateInput) -> Json:
    return {"name": "PROXY_CONFIG", "value": clean_proxy_config_json(data.proxy_config) + "\n"}


def _cluster_env(data: TemplateInput) -> Json:
    return {
        "name": "ISTIO_META_CLUSTER_ID",
        "value": data.text("global.multiCluster.clusterName") or "Kubernetes",
    }


def _network_env(data: TemplateInput) -> list[Json]:
    if data.truthy("global.network"):
        return [{"name": "ISTIO_META_NETWORK", "value": data.text("global.network")}]
    return []


def _localhost_probes(data: TemplateInput) -> bool:
    policy = data.settings.mesh.inbound_traffic_policy
    return policy is not None and policy.mode == MeshConfigInboundTrafficPolicyMode.LOCALHOST


def _int_annotation(data: TemplateInput, name: str, values_path: str) -> int:
    raw = data.annotation(name, data.value(values_path))
    try:
        return int(raw)
    except ValueError:
        raise InjectionError(
            f"annotation {name}" if name in data.annotations else f"values {values_path}",
            f"expected an integer, got {raw!r:.80}",
        ) from None


def _probe(port: int, period: int, failure: int, initial: int = 0) -> Json:
    probe: Json = {"failureThreshold": failure, "httpGet": {"path": "/healthz/ready", "port": port}}
    if initial:
        probe["initialDelaySeconds"] = initial
    probe["periodSeconds"] = period
    probe["timeoutSeconds"] = 3
    return probe


def _readiness(data: TemplateInput, port: int) -> Json:
    return _probe(
        port,
        _int_annotation(
            data,
            "readiness.status.sidecar.istio.io/periodSeconds",
            "global.proxy.readinessPeriodSeconds",
        ),
        _int_annotation(
            data,
            "readiness.status.sidecar.istio.io/failureThreshold",
            "global.proxy.readinessFailureThreshold",
        ),
        _int_annotation(
            data,
            "readiness.status.sidecar.istio.io/initialDelaySeconds",
            "global.proxy.readinessInitialDelaySeconds",
        ),
    )


def _status_port_text(data: TemplateInput) -> str:
    return data.annotation(names.STATUS_PORT, data.value("global.proxy.statusPort"))


def _workload_certs_mount(data: TemplateInput) -> Json:
    if data.text("global.caName") == "GkeWorkloadCertificate":
        return {
            "mountPath": "/var/run/secrets/workload-spiffe-credentials",
            "name": "gke-workload-certificate",
            "readOnly": True,
        }
    return {"mountPath": "/var/run/secrets/workload-spiffe-credentials", "name": "workload-certs"}


def _workload_certs_volume(data: TemplateInput, empty: Json | None) -> Json:
    if data.text("global.caName") == "GkeWorkloadCertificate":
        return {
            "csi": {"driver": "workloadcertificates.security.cloud.google.com"},
            "name": "gke-workload-certificate",
        }
    volume: Json = {"name": "workload-certs"}
    if empty is not None:
        volume["emptyDir"] = empty
    return volume


def _user_json(data: TemplateInput, name: str) -> dict[str, Any]:
    raw = data.annotations.get(name)
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise InjectionError(f"annotation {name}", f"invalid JSON: {raw!r:.80}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise InjectionError(f"annotation {name}", "expected a JSON object of name -> object")
    return value


def _user_entries(data: TemplateInput, name: str) -> list[Json]:
    return [{**value, "name": key} for key, value in sorted(_user_json(data, name).items())]


def _bootstrap_override(data: TemplateInput) -> bool:
    return "sidecar.istio.io/bootstrapOverride" in data.annotations


def _podinfo_volume() -> Json:
    return {
        "downwardAPI": {
            "items": [
                {"fieldRef": {"fieldPath": "metadata.labels"}, "path": "labels"},
                {"fieldRef": {"fieldPath": "metadata.annotations"}, "path": "annotations"},
            ]
        },
        "name": "istio-podinfo",
    }


def _token_volume(data: TemplateInput) -> Json:
    return {
        "name": "istio-token",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": data.text("global.sds.token.aud"),
                        "expirationSeconds": 43200,
                        "path": "istio-token",
                    }
                }
            ]
        },
    }


def _ca_cert_volume(data: TemplateInput) -> list[Json]:
    if data.text("global.pilotCertProvider") != "istiod":
        return []
    env = data.value("pilot.env")
    if isinstance(env, Mapping) and env.get("ENABLE_CLUSTER_TRUST_BUNDLE_API") is True:
        bundle = data.text("global.trustBundleName") or "root-cert"
        return [
            {
                "name": "istiod-ca-cert",
                "projected": {
                    "sources": [
                        {
                            "clusterTrustBundle": {
                                "name": f"istio.io:istiod-ca:{bundle}",
                                "path": "root-cert.pem",
                            }
                        }
                    ]
                },
            }
        ]
    name = data.text("global.trustBundleName") or "istio-ca-root-cert"
    return [{"configMap": {"name": name}, "name": "istiod-ca-cert"}]


def _mtls_certs_volume(data: TemplateInput) -> list[Json]:
    if not data.truthy("global.mountMtlsCerts"):
        return []
    account = data.spec.get("serviceAccountName") or ""
    secret = f"istio.{account}" if account else "istio.default"
    return [{"name": "istio-certs", "secret": {"optional": True, "secretName": secret}}]


def _bootstrap_volume(data: TemplateInput) -> list[Json]:
    if not _bootstrap_override(data):
        return []
    name = data.annotations["sidecar.istio.io/bootstrapOverride"]
    return [{"configMap": {"name": name}, "name": "custom-bootstrap-volume"}]


def _pull_secrets(data: TemplateInput) -> list[Json]:
    secrets = data.value("global.imagePullSecrets")
    if not secrets:
        return []
    if not isinstance(secrets, Sequence) or isinstance(secrets, str):
        raise InjectionError("values global.imagePullSecrets", "expected a list of names")
    return [{"name": go_text(name)} for name in secrets]


def _pull_policy(data: TemplateInput, container: Json) -> None:
    if data.truthy("global.imagePullPolicy"):
        container["imagePullPolicy"] = data.text("global.imagePullPolicy")


def _seccomp(data: TemplateInput, security: Json) -> None:
    profile = data.value("global.proxy.seccompProfile")
    if profile:
        security["seccompProfile"] = profile


def _canonical_labels(data: TemplateInput, *, truncate: bool) -> Json:
    name = _default(
        data.labels.get("service.istio.io/canonical-name"),
        data.labels.get("app.kubernetes.io/name"),
        data.labels.get("app"),
        data.deploy_name,
    )
    if truncate:
        name = name[:63].strip("-_.")
    revision = _default(
        data.labels.get("service.istio.io/canonical-revision"),
        data.labels.get("app.kubernetes.io/version"),
        data.labels.get("version"),
        "latest",
    )
    return {
        "service.istio.io/canonical-name": name,
        "service.istio.io/canonical-revision": revision,
    }


def _container_annotations(data: TemplateInput) -> Json:
    out: Json = {"istio.io/rev": data.settings.revision or "default"}
    apps = data.app_containers
    if apps:
        for key in (
            "kubectl.kubernetes.io/default-logs-container",
            "kubectl.kubernetes.io/default-container",
        ):
            if key not in data.annotations:
                out[key] = apps[0]
    return out


def _multus(existing: str, network: str) -> str:
    if not existing:
        return network
    cut = existing.rfind("]")
    if cut != -1:
        try:
            entries = json.loads(existing)
        except (ValueError, RecursionError):
            return existing
        if not isinstance(entries, list):
            return existing
        namespace, _, name = network.rpartition("/")
        for entry in entries:
            same_name = isinstance(entry, dict) and entry.get("name") == name
            if same_name and (entry.get("namespace") or "") == namespace:
                return existing
        addition = (
            f', {{"name": "{name}", "namespace": "{namespace}"}}'
            if namespace
            else f', {{"name": "{name}"}}'
        )
        return existing[:cut] + addition + existing[cut:]
    if any(part.strip() == network for part in existing.split(",")):
        return existing
    return f"{existing}, {network}"


def _excluded_inbound(data: TemplateInput) -> str:
    return exclude_inbound_port(
        _status_port_text(data),
        data.annotation(
            "traffic.sidecar.istio.io/excludeInboundPorts",
            data.value("global.proxy.excludeInboundPorts"),
        ),
    )


def _has_outbound(data: TemplateInput, kind: str) -> bool:
    name = f"traffic.sidecar.istio.io/{kind}OutboundPorts"
    return name in data.annotations or bool(data.text(f"global.proxy.{kind}OutboundPorts"))


def _cni_annotations(data: TemplateInput) -> Json:
    out: Json = {}
    a = data.annotation
    if data.text("pilot.cni.provider") == "multus":
        out["k8s.v1.cni.cncf.io/networks"] = _multus(
            data.annotations.get("k8s.v1.cni.cncf.io/networks", ""), "default/istio-cni"
        )
    out[names.INTERCEPTION_MODE] = data.interception_mode
    include = a(
        "traffic.sidecar.istio.io/includeOutboundIPRanges",
        data.value("global.proxy.includeIPRanges"),
    )
    if include:
        out["traffic.sidecar.istio.io/includeOutboundIPRanges"] = include
    exclude = a(
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        data.value("global.proxy.excludeIPRanges"),
    )
    if exclude:
        out["traffic.sidecar.istio.io/excludeOutboundIPRanges"] = exclude
    out["traffic.sidecar.istio.io/includeInboundPorts"] = a(
        "traffic.sidecar.istio.io/includeInboundPorts",
        data.value("global.proxy.includeInboundPorts"),
    )
    out["traffic.sidecar.istio.io/excludeInboundPorts"] = _excluded_inbound(data)
    for kind in ("include", "exclude"):
        if _has_outbound(data, kind):
            name = f"traffic.sidecar.istio.io/{kind}OutboundPorts"
            out[name] = a(name, data.value(f"global.proxy.{kind}OutboundPorts"))
    for name in (
        "traffic.sidecar.istio.io/kubevirtInterfaces",
        "istio.io/reroute-virtual-interfaces",
        "traffic.sidecar.istio.io/excludeInterfaces",
    ):
        if data.annotations.get(name):
            out[name] = data.annotations[name]
    return out


def _init_container(data: TemplateInput, *, tproxy: bool) -> Json:
    a = data.annotation
    cni = data.truthy("pilot.cni.enabled")
    mesh = data.settings.mesh
    args = [
        "istio-iptables",
        "-p",
        str(mesh.proxy_listen_port or 15001),
        "-z",
        str(mesh.proxy_inbound_listen_port or 15006),
        "-u",
        "1337" if tproxy else str(data.proxy_uid or 1337),
        "-m",
        data.interception_mode,
        "-i",
        a(
            "traffic.sidecar.istio.io/includeOutboundIPRanges",
            data.value("global.proxy.includeIPRanges"),
        ),
        "-x",
        a(
            "traffic.sidecar.istio.io/excludeOutboundIPRanges",
            data.value("global.proxy.excludeIPRanges"),
        ),
        "-b",
        a(
            "traffic.sidecar.istio.io/includeInboundPorts",
            data.value("global.proxy.includeInboundPorts"),
        ),
        "-d",
    ]
    excluded = _excluded_inbound(data)
    args.append(f"15090,15021,{excluded}" if excluded else "15090,15021")
    if _has_outbound(data, "include"):
        args += [
            "-q",
            a(
                "traffic.sidecar.istio.io/includeOutboundPorts",
                data.value("global.proxy.includeOutboundPorts"),
            ),
        ]
    if _has_outbound(data, "exclude"):
        args += [
            "-o",
            a(
                "traffic.sidecar.istio.io/excludeOutboundPorts",
                data.value("global.proxy.excludeOutboundPorts"),
            ),
        ]
    if "istio.io/reroute-virtual-interfaces" in data.annotations:
        args += ["-k", data.annotations["istio.io/reroute-virtual-interfaces"]]
    elif "traffic.sidecar.istio.io/kubevirtInterfaces" in data.annotations:
        args += ["-k", data.annotations["traffic.sidecar.istio.io/kubevirtInterfaces"]]
    if "traffic.sidecar.istio.io/excludeInterfaces" in data.annotations:
        args += ["-c", data.annotations["traffic.sidecar.istio.io/excludeInterfaces"]]
    args.append(
        "--log_output_level="
        + a("sidecar.istio.io/agentLogLevel", data.value("global.logging.level"))
    )
    if data.truthy("global.logAsJson"):
        args.append("--log_as_json")
    if cni:
        args += ["--run-validation", "--skip-rule-apply"]
    elif data.truthy("global.proxy_init.forceApplyIptables"):
        args.append("--force-apply")
    if data.truthy("global.nativeNftables"):
        args.append("--native-nftables")
    container: Json = {
        "args": args,
        "image": _image(data, "global.proxy_init.image", data.proxy_init_image),
        "name": "istio-validation" if cni else "istio-init",
    }
    _pull_policy(data, container)
    env = _metadata_env(data)
    if env:
        container["env"] = env
    container["resources"] = proxy_resources(data)
    privileged = data.value("global.proxy.privileged")
    capabilities: Json = {} if cni else {"add": ["NET_ADMIN", "NET_RAW"]}
    capabilities["drop"] = ["ALL"]
    security: Json = {
        "allowPrivilegeEscalation": bool(privileged),
        "capabilities": capabilities,
        "privileged": bool(privileged),
    }
    if not cni:
        security.update(readOnlyRootFilesystem=False, runAsGroup=0, runAsNonRoot=False, runAsUser=0)
    else:
        security.update(
            readOnlyRootFilesystem=True,
            runAsGroup=1337 if tproxy else (data.proxy_gid or 1337),
            runAsNonRoot=True,
            runAsUser=1337 if tproxy else (data.proxy_uid or 1337),
        )
    _seccomp(data, security)
    container["securityContext"] = security
    return container


def _sidecar_lifecycle(data: TemplateInput, *, hold: bool, native: bool) -> Json | None:
    lifecycle = data.value("global.proxy.lifecycle")
    if lifecycle:
        return dict(lifecycle)
    if hold:
        return {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}
    if native:
        return {
            "preStop": {
                "exec": {
                    "command": [
                        "pilot-agent",
                        "request",
                        f"--debug-port={_status_port_text(data)}",
                        "POST",
                        "drain",
                    ]
                }
            }
        }
    return None


def _proxy_security(data: TemplateInput, *, tproxy: bool, bind: bool) -> Json:
    if data.proxy_config.proxy_metadata.get("IPTABLES_TRACE_LOGGING") == "true":
        security: Json = {
            "allowPrivilegeEscalation": True,
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
            "privileged": True,
            "readOnlyRootFilesystem": True,
            "runAsGroup": data.proxy_gid or 1337,
            "runAsNonRoot": False,
            "runAsUser": 0,
        }
    else:
        privileged = bool(data.value("global.proxy.privileged"))
        capabilities: Json = {}
        added = (["NET_ADMIN"] if tproxy else []) + (["NET_BIND_SERVICE"] if bind else [])
        if added:
            capabilities["add"] = added
        capabilities["drop"] = ["ALL"]
        security = {
            "allowPrivilegeEscalation": privileged,
            "capabilities": capabilities,
            "privileged": privileged,
            "readOnlyRootFilesystem": True,
        }
        if tproxy or bind:
            security.update(runAsGroup=1337, runAsNonRoot=False, runAsUser=0)
        else:
            security.update(
                runAsGroup=data.proxy_gid or 1337,
                runAsNonRoot=True,
                runAsUser=data.proxy_uid or 1337,
            )
    _seccomp(data, security)
    return security


def _proxy_mounts(data: TemplateInput, *, crl: bool) -> list[Json]:
    """istio-proxy's mounts in the sidecar and gateway templates (``crl``: the sidecar's CRL)."""
    mounts: list[Json] = [
        {"mountPath": "/var/run/secrets/workload-spiffe-uds", "name": "workload-socket"},
        {"mountPath": "/var/run/secrets/credential-uds", "name": "credential-socket"},
        _workload_certs_mount(data),
    ]
    if data.text("global.pilotCertProvider") == "istiod":
        mounts.append({"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"})
        if crl:
            mounts.append({"mountPath": "/var/run/secrets/istio/crl", "name": "istio-ca-crl"})
    mounts.append({"mountPath": "/var/lib/istio/data", "name": "istio-data"})
    if _bootstrap_override(data):
        mounts.append(
            {"mountPath": "/etc/istio/custom-bootstrap", "name": "custom-bootstrap-volume"}
        )
    mounts += [
        {"mountPath": "/etc/istio/proxy", "name": "istio-envoy"},
        {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"},
    ]
    if data.truthy("global.mountMtlsCerts"):
        mounts.append({"mountPath": "/etc/certs/", "name": "istio-certs", "readOnly": True})
    mounts.append({"mountPath": "/etc/istio/pod", "name": "istio-podinfo"})
    return mounts


def _sidecar_volumes(data: TemplateInput) -> list[Json]:
    volumes: list[Json] = [
        {"name": "workload-socket"},
        {"name": "credential-socket"},
        _workload_certs_volume(data, None),
        *_bootstrap_volume(data),
        {"emptyDir": {"medium": "Memory"}, "name": "istio-envoy"},
        {"emptyDir": {}, "name": "istio-data"},
        _podinfo_volume(),
        _token_volume(data),
        *_ca_cert_volume(data),
        {
            "configMap": {
                "name": data.text("pilot.crlConfigMapName") or "istio-ca-crl",
                "optional": True,
            },
            "name": "istio-ca-crl",
        },
        *_mtls_certs_volume(data),
    ]
    volumes += _user_entries(data, "sidecar.istio.io/userVolume")
    return volumes


def render_sidecar(data: TemplateInput) -> Json:
    """The ``sidecar`` template: ``istio-init`` (or ``istio-validation`` with CNI) and
    ``istio-proxy``, their volumes, labels and annotations."""
    mode = data.interception_mode
    tproxy = mode == "TPROXY"
    bind = (
        data.annotation(
            "sidecar.istio.io/capNetBindService", data.value("global.proxy.capNetBindService")
        )
        == "true"
    )
    native = data.native_sidecar
    hold_config = data.proxy_config.hold_application_until_proxy_starts
    hold = (
        bool(hold_config) or data.truthy("global.proxy.holdApplicationUntilProxyStarts")
    ) and not native
    labels: Json = {
        "security.istio.io/tlsMode": data.labels.get("security.istio.io/tlsMode") or "istio"
    }
    if data.proxy_config.proxy_metadata.get("ISTIO_META_ENABLE_HBONE") == "true":
        labels["networking.istio.io/tunnel"] = (
            data.labels.get("networking.istio.io/tunnel") or "http"
        )
    labels.update(_canonical_labels(data, truncate=True))
    annotations = _container_annotations(data)
    if data.truthy("pilot.cni.enabled"):
        annotations.update(_cni_annotations(data))

    proxy: Json = {
        "args": _proxy_args(data, "sidecar"),
        "image": _image(data, "global.proxy.image", data.proxy_image),
        "name": PROXY,
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
    }
    if native:
        proxy["restartPolicy"] = "Always"
    if data.truthy("global.proxy.outlierLogPath"):
        proxy["args"].append(f"--outlierLogPath={data.text('global.proxy.outlierLogPath')}")
    lifecycle = _sidecar_lifecycle(data, hold=hold, native=native)
    if lifecycle is not None:
        proxy["lifecycle"] = lifecycle
    env: list[Json] = []
    if _localhost_probes(data):
        env.append({"name": "REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION", "value": "true"})
    env += _common_env_head(data)
    env += [
        _resource_env("ISTIO_CPU_LIMIT", "limits.cpu"),
        _proxy_config_env(data),
        {"name": "ISTIO_META_POD_PORTS", "value": pod_ports_env(data.spec)},
        {"name": "ISTIO_META_APP_CONTAINERS", "value": ",".join(data.app_containers)},
        _resource_env("GOMEMLIMIT", "limits.memory"),
        _cluster_env(data),
        _field_env("ISTIO_META_NODE_NAME", "spec.nodeName"),
        {
            "name": "ISTIO_META_INTERCEPTION_MODE",
            "value": data.annotations.get(names.INTERCEPTION_MODE) or _mode_name(data.proxy_config),
        },
        *_network_env(data),
    ]
    workload = data.labels.get("service.istio.io/workload-name") or data.deploy_name
    if workload:
        env.append({"name": "ISTIO_META_WORKLOAD_NAME", "value": workload})
    env += _owner_env(data)
    env += _env_tail(data)
    proxy["env"] = env
    _pull_policy(data, proxy)
    if _status_port_text(data) != "0":
        if data.truthy("global.proxy.startupProbe.enabled"):
            proxy["startupProbe"] = _probe(
                15021, 1, data.settings.values.integer("global.proxy.startupProbe.failureThreshold")
            )
        proxy["readinessProbe"] = _readiness(data, 15021)
    proxy["securityContext"] = _proxy_security(data, tproxy=tproxy, bind=bind)
    proxy["resources"] = proxy_resources(data)
    proxy["volumeMounts"] = _proxy_mounts(data, crl=True) + _user_entries(
        data, "sidecar.istio.io/userVolumeMount"
    )

    spec: Json = {}
    no_init = mode == "NONE" and not native
    init: list[Json] = []
    if not no_init and mode != "NONE":
        init.append(_init_container(data, tproxy=tproxy))
    if native:
        init.append(proxy)
    else:
        spec["containers"] = [proxy]
    if init:
        spec["initContainers"] = init
    spec["volumes"] = _sidecar_volumes(data)
    secrets = _pull_secrets(data)
    if secrets:
        spec["imagePullSecrets"] = secrets
    return {"metadata": {"annotations": annotations, "labels": labels}, "spec": spec}


def _simple_owner_env(data: TemplateInput) -> list[Json]:
    env: list[Json] = []
    if data.deploy_name:
        env.append({"name": "ISTIO_META_WORKLOAD_NAME", "value": data.deploy_name})
    return env + _owner_env(data)


def render_gateway(data: TemplateInput) -> Json:
    """The ``gateway`` template: ``istio-proxy`` as a router (``proxy router``), no init."""
    proxy: Json = {
        "args": _proxy_args(data, "router"),
        "image": _image(data, "global.proxy.image", data.proxy_image),
        "name": PROXY,
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
    }
    lifecycle = data.value("global.proxy.lifecycle")
    if lifecycle:
        proxy["lifecycle"] = dict(lifecycle)
    proxy["securityContext"] = {
        "runAsGroup": data.proxy_gid or 1337,
        "runAsUser": data.proxy_uid or 1337,
    }
    env = _common_env_head(data)
    env += [
        _resource_env("ISTIO_CPU_LIMIT", "limits.cpu"),
        _proxy_config_env(data),
        {"name": "ISTIO_META_POD_PORTS", "value": pod_ports_env(data.spec)},
        _resource_env("GOMEMLIMIT", "limits.memory"),
        {"name": "ISTIO_META_APP_CONTAINERS", "value": ",".join(data.app_containers)},
        _cluster_env(data),
        _field_env("ISTIO_META_NODE_NAME", "spec.nodeName"),
        {"name": "ISTIO_META_INTERCEPTION_MODE", "value": _mode_name(data.proxy_config)},
        *_network_env(data),
        *_simple_owner_env(data),
    ]
    env += _env_tail(data)
    proxy["env"] = env
    _pull_policy(data, proxy)
    proxy["readinessProbe"] = _probe(
        15021,
        data.settings.values.integer("global.proxy.readinessPeriodSeconds"),
        data.settings.values.integer("global.proxy.readinessFailureThreshold"),
        data.settings.values.integer("global.proxy.readinessInitialDelaySeconds"),
    )
    proxy["volumeMounts"] = _proxy_mounts(data, crl=False)
    volumes: list[Json] = [
        {"name": "workload-socket"},
        {"emptyDir": {}, "name": "credential-socket"},
        _workload_certs_volume(data, {}),
        *_bootstrap_volume(data),
        {"emptyDir": {"medium": "Memory"}, "name": "istio-envoy"},
        {"emptyDir": {}, "name": "istio-data"},
        _podinfo_volume(),
        _token_volume(data),
        *_ca_cert_volume(data),
        *_mtls_certs_volume(data),
    ]
    security = data.value("gateways.securityContext")
    pod_security = (
        dict(security)
        if security
        else {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]}
    )
    spec: Json = {"containers": [proxy], "securityContext": pod_security, "volumes": volumes}
    secrets = _pull_secrets(data)
    if secrets:
        spec["imagePullSecrets"] = secrets
    annotations: Json = {"istio.io/rev": data.settings.revision or "default"}
    annotations.update(_container_annotations(data))
    return {
        "metadata": {"annotations": annotations, "labels": _canonical_labels(data, truncate=False)},
        "spec": spec,
    }


def render_grpc_agent(data: TemplateInput) -> Json:
    """The ``grpc-agent`` template: the agent alone (``DISABLE_ENVOY``) serving proxyless gRPC
    its bootstrap and certificates, and the application containers pointed at them."""
    proxy: Json = {
        "args": _proxy_args(data, "sidecar"),
        "image": _image(data, "global.proxy.image", data.proxy_image),
        "lifecycle": {
            "postStart": {
                "exec": {
                    "command": [
                        "pilot-agent",
                        "wait",
                        "--url=http://localhost:15020/healthz/ready",
                    ]
                }
            }
        },
        "name": PROXY,
        "ports": [{"containerPort": 15020, "name": "mesh-metrics", "protocol": "TCP"}],
    }
    env: list[Json] = [
        {"name": "ISTIO_META_GENERATOR", "value": "grpc"},
        {"name": "OUTPUT_CERTS", "value": "/var/lib/istio/data"},
    ]
    if _localhost_probes(data):
        env.append({"name": "REWRITE_PROBE_LEGACY_LOCALHOST_DESTINATION", "value": "true"})
    env += _common_env_head(data)
    env += [
        _proxy_config_env(data),
        {"name": "ISTIO_META_POD_PORTS", "value": pod_ports_env(data.spec)},
        {"name": "ISTIO_META_APP_CONTAINERS", "value": ",".join(data.app_containers)},
        _cluster_env(data),
        _field_env("ISTIO_META_NODE_NAME", "spec.nodeName"),
        *_network_env(data),
        *_simple_owner_env(data),
        *_mesh_env(data),
        *_metadata_env(data),
        {"name": "ISTIO_META_DNS_CAPTURE", "value": "false"},
        {"name": "DISABLE_ENVOY", "value": "true"},
    ]
    proxy["env"] = env
    _pull_policy(data, proxy)
    mounts: list[Json] = []
    if _status_port_text(data) != "0":
        proxy["readinessProbe"] = _readiness(data, 15020)
        proxy["resources"] = proxy_resources(data)
        mounts = [
            {"mountPath": "/var/run/secrets/workload-spiffe-uds", "name": "workload-socket"},
            _workload_certs_mount(data),
        ]
        if data.text("global.pilotCertProvider") == "istiod":
            mounts.append({"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"})
        mounts += [
            {"mountPath": "/var/lib/istio/data", "name": "istio-data"},
            {"mountPath": "/etc/istio/proxy", "name": "istio-xds"},
            {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"},
        ]
        if data.truthy("global.mountMtlsCerts"):
            mounts.append({"mountPath": "/etc/certs/", "name": "istio-certs", "readOnly": True})
        mounts.append({"mountPath": "/etc/istio/pod", "name": "istio-podinfo"})
    mounts += _user_entries(data, "sidecar.istio.io/userVolumeMount")
    if mounts:
        proxy["volumeMounts"] = mounts
    containers: list[Json] = [proxy]
    for name in data.app_containers:
        containers.append(
            {
                "env": [
                    {"name": "GRPC_XDS_EXPERIMENTAL_SECURITY_SUPPORT", "value": "true"},
                    {"name": "GRPC_XDS_BOOTSTRAP", "value": "/etc/istio/proxy/grpc-bootstrap.json"},
                ],
                "name": name,
                "volumeMounts": [
                    {"mountPath": "/var/lib/istio/data", "name": "istio-data"},
                    {"mountPath": "/etc/istio/proxy", "name": "istio-xds"},
                    _workload_certs_mount(data),
                ],
            }
        )
    volumes: list[Json] = [
        {"name": "workload-socket"},
        _workload_certs_volume(data, None),
        *_bootstrap_volume(data),
        {"emptyDir": {"medium": "Memory"}, "name": "istio-xds"},
        {"emptyDir": {}, "name": "istio-data"},
        _podinfo_volume(),
        _token_volume(data),
        *_ca_cert_volume(data),
        *_mtls_certs_volume(data),
        *_user_entries(data, "sidecar.istio.io/userVolume"),
    ]
    spec: Json = {"containers": containers, "volumes": volumes}
    secrets = _pull_secrets(data)
    if secrets:
        spec["imagePullSecrets"] = secrets
    annotations = _container_annotations(data)
    annotations[names.REWRITE_PROBERS] = "false"
    return {
        "metadata": {"annotations": annotations, "labels": _canonical_labels(data, truncate=False)},
        "spec": spec,
    }


_GRPC_BOOTSTRAP_SCRIPT = """\
NODE_ID="sidecar~${INSTANCE_IP}~${POD_NAME}.${POD_NAMESPACE}~cluster.local"
SERVER_URI="dns:///istiod.${ISTIO_NAMESPACE}.svc:15010"
echo '
{
  "xds_servers": [
    {
      "server_uri": "'${SERVER_URI}'",
      "channel_creds": [{"type": "insecure"}],
      "server_features" : ["xds_v3"]
    }
  ],
  "node": {
    "id": "'${NODE_ID}'",
    "metadata": {
      "GENERATOR": "grpc"
    }
  }
}' > /var/lib/grpc/data/bootstrap.json"""


def render_grpc_simple(data: TemplateInput) -> Json:
    """The ``grpc-simple`` template: no agent at all, an init container writing a plain-text
    gRPC xDS bootstrap for the application containers."""
    mount = {"mountPath": "/var/lib/grpc/data/", "name": "grpc-io-proxyless-bootstrap"}
    init = {
        "command": ["sh", "-c", _GRPC_BOOTSTRAP_SCRIPT],
        "env": [
            _field_env("INSTANCE_IP", "status.podIP"),
            _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace"),
            {"name": "ISTIO_NAMESPACE", "value": data.text("global.istioNamespace") + "\n"},
        ],
        "image": "busybox:1.28",
        "name": "grpc-bootstrap-init",
        "volumeMounts": [mount],
    }
    containers = [
        {
            "env": [
                {"name": "GRPC_XDS_BOOTSTRAP", "value": "/var/lib/grpc/data/bootstrap.json"},
                {"name": "GRPC_GO_LOG_VERBOSITY_LEVEL", "value": "99"},
                {"name": "GRPC_GO_LOG_SEVERITY_LEVEL", "value": "info"},
            ],
            "name": str(container.get("name")),
            "volumeMounts": [mount],
        }
        for container in data.spec.get("containers") or []
    ]
    spec: Json = {
        "containers": containers,
        "initContainers": [init],
        "volumes": [{"emptyDir": {}, "name": "grpc-io-proxyless-bootstrap"}],
    }
    return {"metadata": {"annotations": {names.REWRITE_PROBERS: "false"}}, "spec": spec}


TEMPLATES: Mapping[str, Callable[[TemplateInput], Json]] = {
    "sidecar": render_sidecar,
    "gateway": render_gateway,
    "grpc-agent": render_grpc_agent,
    "grpc-simple": render_grpc_simple,
}
"""The templates by the names Pods ask for in ``inject.istio.io/templates``."""
