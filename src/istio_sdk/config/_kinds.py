"""The kind registry: which Istio kinds exist, under which apiVersions, and their spec messages.

Current kinds follow Istio's CRDs (group, plural, scope, served versions, storage version, short
names); every served version of a kind maps to the same generated message, as in Istio, where
``v1``, ``v1beta1`` and ``v1alpha3`` are the same schema. The 1.3-era kinds (Mixer's
``config.istio.io`` kinds, ``authentication.istio.io`` and ``rbac.istio.io``) follow Galley's
1.3 resource table:

- ``rule``, ``handler``, ``instance``, ``attributemanifest`` -> ``istio.policy.v1beta1`` Rule,
  Handler, Instance, AttributeManifest (handler and instance carry their adapter/template
  parameters in a ``google.protobuf.Struct`` field, ``params``);
- ``adapter`` -> ``istio.mixer.adapter.model.v1beta1.Info`` and ``template`` ->
  ``istio.mixer.adapter.model.v1beta1.Template`` (adapter and template descriptors);
- ``Policy`` and ``MeshPolicy`` -> ``istio.authentication.v1alpha1.Policy``;
- ``ServiceRole``, ``ServiceRoleBinding`` -> their ``istio.rbac.v1alpha1`` messages, and both
  ``RbacConfig`` and ``ClusterRbacConfig`` -> ``istio.rbac.v1alpha1.RbacConfig``.

The per-adapter and per-template kinds of Mixer's "old style" config (``memquota``,
``listchecker``, ``denier``, ``quota``, ``listentry``, ``metric``, ...: a handler of the adapter,
or an instance of the template, named by the kind) are registered as Galley 1.3 listed them under
``istio/config/v1alpha2/legacy/``: ``config.istio.io/v1alpha2``, the spec an untyped
``google.protobuf.Struct`` (the adapter's or template's parameters, as Mixer read them), so they
load from YAML and validate as the other kinds (metadata, names, a spec that is a JSON object);
the parameters themselves are checked by Mixer when it builds its configuration.

:data:`KUBERNETES_KINDS` are the Kubernetes kinds a mesh is made of (core/v1, apps/v1,
discovery.k8s.io/v1, admissionregistration.k8s.io/v1 and the Gateway API kinds Istio reads). Their
``model`` names the ``lightkube`` class of the object; Gateway API kinds have no typed model
and are checked against their CRD's schema (see ``_kube``). Looking a kind up by name alone
prefers the Istio kind: ``Gateway`` is ``networking.istio.io``'s, the Gateway API one needs its
group. In a :class:`ConfigStore` the Gateway API ``Gateway`` is keyed as
``Gateway.gateway.networking.k8s.io`` (:attr:`KindInfo.store_kind`) so it never collides with
Istio's.
"""

from __future__ import annotations

from typing import Literal

import attrs
import betterproto2

from istio_sdk._messages import find_message_class

Scope = Literal["Namespaced", "Cluster"]

ISTIO_STATUS = "istio.meta.v1alpha1.IstioStatus"


@attrs.frozen
class KindInfo:
    """What the SDK knows about one kind: its API group, versions and spec message."""

    kind: str
    group: str
    plural: str
    versions: tuple[str, ...]
    """Served versions, storage version first."""
    spec_type: str
    """Full protobuf name of the spec message, e.g. ``istio.networking.v1alpha3.Gateway``."""
    scope: Scope = "Namespaced"
    short_names: tuple[str, ...] = ()
    status_type: str | None = None
    """Full protobuf name of the typed status, when the kind has one."""
    legacy: bool = False
    """True for the 1.3-era kinds (Mixer, authentication v1alpha1, rbac v1alpha1)."""
    model: str = ""
    """Kubernetes kinds: ``module:Class`` of the lightkube resource class, or ``crd:FILE`` for a
    kind checked against a CRD kept in ``gateway_api_crds/``. Empty for Istio kinds."""
    key_kind: str = ""
    """The kind part of a store key when it differs from ``kind`` (see :attr:`store_kind`)."""

    @property
    def kubernetes(self) -> bool:
        """True for Kubernetes kinds (no protobuf spec; the object is a lightkube model)."""
        return bool(self.model)

    @property
    def store_kind(self) -> str:
        """The kind in :attr:`Resource.key` and :class:`ConfigStore` lookups."""
        return self.key_kind or self.kind

    @property
    def storage_version(self) -> str:
        """The version Kubernetes stores; the SDK uses it when it picks an apiVersion."""
        return self.versions[0]

    @property
    def api_version(self) -> str:
        """``group/storage_version``, the apiVersion the SDK writes for new resources."""
        return f"{self.group}/{self.storage_version}"

    @property
    def api_versions(self) -> tuple[str, ...]:
        """Every served ``group/version``."""
        return tuple(f"{self.group}/{version}" for version in self.versions)

    @property
    def namespaced(self) -> bool:
        return self.scope == "Namespaced"

    def spec_class(self) -> type[betterproto2.Message]:
        """The generated betterproto2 class of the spec (imported on first use).

        Raises :class:`KeyError` for Kubernetes kinds, which have no protobuf spec.
        """
        return message_class(self.spec_type)

    def status_class(self) -> type[betterproto2.Message] | None:
        """The generated class of the typed status, or None when the kind has none."""
        return None if self.status_type is None else message_class(self.status_type)


def message_class(full_name: str) -> type[betterproto2.Message]:
    """Import the generated class for a protobuf message full name.

    ``istio.networking.v1alpha3.VirtualService`` lives in ``istio_sdk.api.istio.networking.
    v1alpha3``; only that package is imported. Raises :class:`KeyError`
    when no such message was generated.
    """
    # the pool knows the class under its proto name (betterproto2 renames e.g. HTTPRoute)
    cls = find_message_class(full_name, import_all=False)
    if cls is None:
        raise KeyError(f"{full_name!r} is not a generated message")
    return cls


_NETWORKING_V1 = ("v1", "v1alpha3", "v1beta1")
_SECURITY_V1 = ("v1", "v1beta1")


def _current(  # noqa: PLR0917  (a compact table row)
    kind: str,
    group: str,
    plural: str,
    versions: tuple[str, ...],
    spec_type: str,
    short_names: tuple[str, ...] = (),
) -> KindInfo:
    return KindInfo(
        kind=kind,
        group=group,
        plural=plural,
        versions=versions,
        spec_type=spec_type,
        short_names=short_names,
        status_type=ISTIO_STATUS,
    )


def _legacy(  # noqa: PLR0917  (a compact table row)
    kind: str, group: str, version: str, plural: str, spec_type: str, scope: Scope = "Namespaced"
) -> KindInfo:
    return KindInfo(
        kind=kind,
        group=group,
        plural=plural,
        versions=(version,),
        spec_type=spec_type,
        scope=scope,
        legacy=True,
    )


_NET = "istio.networking.v1alpha3."
_SEC = "istio.security.v1beta1."
_POLICY = "istio.policy.v1beta1."
_ADAPTER = "istio.mixer.adapter.model.v1beta1."
_RBAC = "istio.rbac.v1alpha1."
_STRUCT = "google.protobuf.Struct"

LEGACY_MIXER_KINDS: tuple[tuple[str, str], ...] = (
    ("apikey", "apikeys"), ("authorization", "authorizations"), ("bypass", "bypasses"),
    ("checknothing", "checknothings"), ("circonus", "circonuses"),
    ("cloudwatch", "cloudwatches"), ("denier", "deniers"), ("dogstatsd", "dogstatsds"),
    ("edge", "edges"), ("fluentd", "fluentds"), ("kubernetesenv", "kubernetesenvs"),
    ("kubernetes", "kuberneteses"), ("listchecker", "listcheckers"),
    ("listentry", "listentries"), ("logentry", "logentries"), ("memquota", "memquotas"),
    ("metric", "metrics"), ("noop", "noops"), ("opa", "opas"), ("prometheus", "prometheuses"),
    ("quota", "quotas"), ("rbac", "rbacs"), ("redisquota", "redisquotas"),
    ("reportnothing", "reportnothings"), ("signalfx", "signalfxs"),
    ("solarwinds", "solarwindses"), ("stackdriver", "stackdrivers"), ("statsd", "statsds"),
    ("stdio", "stdios"), ("tracespan", "tracespans"), ("zipkin", "zipkins"),
)  # fmt: skip
"""``(kind, plural)`` of Mixer 1.3's per-adapter and per-template kinds (Galley 1.3's legacy
collections); each is registered with an untyped ``google.protobuf.Struct`` spec."""

KINDS: tuple[KindInfo, ...] = (
    # networking.istio.io
    _current("DestinationRule", "networking.istio.io", "destinationrules", _NETWORKING_V1,
             _NET + "DestinationRule", ("dr",)),
    _current("EnvoyFilter", "networking.istio.io", "envoyfilters", ("v1alpha3",),
             _NET + "EnvoyFilter"),
    _current("Gateway", "networking.istio.io", "gateways", _NETWORKING_V1, _NET + "Gateway",
             ("gw",)),
    _current("ProxyConfig", "networking.istio.io", "proxyconfigs", ("v1beta1",),
             "istio.networking.v1beta1.ProxyConfig"),
    _current("ServiceEntry", "networking.istio.io", "serviceentries", _NETWORKING_V1,
             _NET + "ServiceEntry", ("se",)),
    _current("Sidecar", "networking.istio.io", "sidecars", _NETWORKING_V1, _NET + "Sidecar"),
    _current("VirtualService", "networking.istio.io", "virtualservices", _NETWORKING_V1,
             _NET + "VirtualService", ("vs",)),
    _current("WorkloadEntry", "networking.istio.io", "workloadentries", _NETWORKING_V1,
             _NET + "WorkloadEntry", ("we",)),
    _current("WorkloadGroup", "networking.istio.io", "workloadgroups", _NETWORKING_V1,
             _NET + "WorkloadGroup", ("wg",)),
    # security.istio.io
    _current("AuthorizationPolicy", "security.istio.io", "authorizationpolicies", _SECURITY_V1,
             _SEC + "AuthorizationPolicy", ("ap",)),
    _current("PeerAuthentication", "security.istio.io", "peerauthentications", _SECURITY_V1,
             _SEC + "PeerAuthentication", ("pa",)),
    _current("RequestAuthentication", "security.istio.io", "requestauthentications",
             _SECURITY_V1, _SEC + "RequestAuthentication", ("ra",)),
    # telemetry.istio.io
    _current("Telemetry", "telemetry.istio.io", "telemetries", ("v1alpha1", "v1"),
             "istio.telemetry.v1alpha1.Telemetry", ("telemetry",)),
    # extensions.istio.io
    _current("WasmPlugin", "extensions.istio.io", "wasmplugins", ("v1alpha1",),
             "istio.extensions.v1alpha1.WasmPlugin"),
    _current("TrafficExtension", "extensions.istio.io", "trafficextensions", ("v1alpha1",),
             "istio.extensions.v1alpha1.TrafficExtension"),
    # 1.3-era Mixer configuration (config.istio.io/v1alpha2)
    _legacy("rule", "config.istio.io", "v1alpha2", "rules", _POLICY + "Rule"),
    _legacy("handler", "config.istio.io", "v1alpha2", "handlers", _POLICY + "Handler"),
    _legacy("instance", "config.istio.io", "v1alpha2", "instances", _POLICY + "Instance"),
    _legacy("attributemanifest", "config.istio.io", "v1alpha2", "attributemanifests",
            _POLICY + "AttributeManifest"),
    _legacy("adapter", "config.istio.io", "v1alpha2", "adapters", _ADAPTER + "Info"),
    _legacy("template", "config.istio.io", "v1alpha2", "templates", _ADAPTER + "Template"),
    *(_legacy(kind, "config.istio.io", "v1alpha2", plural, _STRUCT)
      for kind, plural in LEGACY_MIXER_KINDS),
    # 1.3-era authentication and RBAC
    _legacy("Policy", "authentication.istio.io", "v1alpha1", "policies",
            "istio.authentication.v1alpha1.Policy"),
    _legacy("MeshPolicy", "authentication.istio.io", "v1alpha1", "meshpolicies",
            "istio.authentication.v1alpha1.Policy", scope="Cluster"),
    _legacy("ServiceRole", "rbac.istio.io", "v1alpha1", "serviceroles", _RBAC + "ServiceRole"),
    _legacy("ServiceRoleBinding", "rbac.istio.io", "v1alpha1", "servicerolebindings",
            _RBAC + "ServiceRoleBinding"),
    _legacy("RbacConfig", "rbac.istio.io", "v1alpha1", "rbacconfigs", _RBAC + "RbacConfig"),
    _legacy("ClusterRbacConfig", "rbac.istio.io", "v1alpha1", "clusterrbacconfigs",
            _RBAC + "RbacConfig", scope="Cluster"),
)  # fmt: skip


def _kube(  # noqa: PLR0917  (a compact table row)
    kind: str,
    group: str,
    plural: str,
    versions: tuple[str, ...],
    model: str,
    short_names: tuple[str, ...] = (),
    scope: Scope = "Namespaced",
    key_kind: str = "",
) -> KindInfo:
    return KindInfo(
        kind=kind,
        group=group,
        plural=plural,
        versions=versions,
        spec_type="",
        scope=scope,
        short_names=short_names,
        model=model,
        key_kind=key_kind,
    )


_CORE = "lightkube.resources.core_v1:"
_APPS = "lightkube.resources.apps_v1:"
_ADMISSION = "lightkube.resources.admissionregistration_v1:"
_GW = "gateway.networking.k8s.io"

KUBERNETES_KINDS: tuple[KindInfo, ...] = (
    _kube("ConfigMap", "", "configmaps", ("v1",), _CORE + "ConfigMap", ("cm",)),
    _kube("Endpoints", "", "endpoints", ("v1",), _CORE + "Endpoints", ("ep",)),
    _kube("Namespace", "", "namespaces", ("v1",), _CORE + "Namespace", ("ns",), "Cluster"),
    _kube("Node", "", "nodes", ("v1",), _CORE + "Node", ("no",), "Cluster"),
    _kube("Pod", "", "pods", ("v1",), _CORE + "Pod", ("po",)),
    _kube("Secret", "", "secrets", ("v1",), _CORE + "Secret"),
    _kube("Service", "", "services", ("v1",), _CORE + "Service", ("svc",)),
    _kube("ServiceAccount", "", "serviceaccounts", ("v1",), _CORE + "ServiceAccount", ("sa",)),
    _kube("EndpointSlice", "discovery.k8s.io", "endpointslices", ("v1",),
          "lightkube.resources.discovery_v1:EndpointSlice"),
    _kube("DaemonSet", "apps", "daemonsets", ("v1",), _APPS + "DaemonSet", ("ds",)),
    _kube("Deployment", "apps", "deployments", ("v1",), _APPS + "Deployment", ("deploy",)),
    _kube("ReplicaSet", "apps", "replicasets", ("v1",), _APPS + "ReplicaSet", ("rs",)),
    _kube("StatefulSet", "apps", "statefulsets", ("v1",), _APPS + "StatefulSet", ("sts",)),
    _kube("MutatingWebhookConfiguration", "admissionregistration.k8s.io",
          "mutatingwebhookconfigurations", ("v1",), _ADMISSION + "MutatingWebhookConfiguration",
          scope="Cluster"),
    _kube("ValidatingWebhookConfiguration", "admissionregistration.k8s.io",
          "validatingwebhookconfigurations", ("v1",),
          _ADMISSION + "ValidatingWebhookConfiguration", scope="Cluster"),
    # Gateway API, standard channel (the CRDs in gateway_api_crds/)
    _kube("GatewayClass", _GW, "gatewayclasses", ("v1", "v1beta1"), "crd:gatewayclasses.yaml",
          ("gc",), "Cluster"),
    _kube("Gateway", _GW, "gateways", ("v1", "v1beta1"), "crd:gateways.yaml", ("gtw",),
          key_kind="Gateway." + _GW),
    _kube("HTTPRoute", _GW, "httproutes", ("v1", "v1beta1"), "crd:httproutes.yaml"),
    _kube("GRPCRoute", _GW, "grpcroutes", ("v1",), "crd:grpcroutes.yaml"),
    _kube("ReferenceGrant", _GW, "referencegrants", ("v1beta1", "v1"),
          "crd:referencegrants.yaml", ("refgrant",)),
)  # fmt: skip

_BY_GROUP_KIND: dict[tuple[str, str], KindInfo] = {
    (k.group, k.kind): k for k in (*KINDS, *KUBERNETES_KINDS)
}
_BY_KIND: dict[str, list[KindInfo]] = {}
for _info in (*KINDS, *KUBERNETES_KINDS):  # Istio kinds first: they win a lookup by name
    _BY_KIND.setdefault(_info.kind, []).append(_info)


def split_api_version(api_version: str) -> tuple[str, str]:
    """Split an apiVersion: ``"networking.istio.io/v1"`` -> ``("networking.istio.io", "v1")``.

    The core group has no prefix: ``"v1"`` -> ``("", "v1")``.
    """
    group, sep, version = api_version.rpartition("/")
    return (group, version) if sep else ("", api_version)


def find_kind(api_version: str, kind: str) -> KindInfo | None:
    """The registered kind for an ``apiVersion``/``kind`` pair (served version or not)."""
    group, _ = split_api_version(api_version)
    return _BY_GROUP_KIND.get((group, kind))


def kinds_named(kind: str) -> list[KindInfo]:
    """Every registered kind with this name (in any group)."""
    return list(_BY_KIND.get(kind, ()))


def kind_for(kind: str, group: str | None = None) -> KindInfo:
    """Look a kind up by name (and group when the name alone is ambiguous).

    Without ``group``, an Istio kind wins over a Kubernetes kind of the same name (``Gateway``
    is ``networking.istio.io``'s). Raises :class:`KeyError` naming the kind when it is not
    registered or ambiguous.
    """
    matches = [k for k in _BY_KIND.get(kind, ()) if group is None or k.group == group]
    if group is None and len(matches) > 1:
        istio = [k for k in matches if not k.kubernetes]
        matches = istio or matches
    if len(matches) != 1:
        problem = "is ambiguous; pass group=" if matches else "is not a registered kind"
        raise KeyError(f"kind {kind!r} {problem}")
    return matches[0]
