"""Peer authentication: which mTLS mode a workload's ports accept, and the TLS contexts for it.

PeerAuthentication resources are resolved as istiod resolves them for one workload
(namespace + labels):

* mesh-wide: a policy without ``selector`` in the root namespace (``istio-system``);
* namespace-wide: a policy without ``selector`` in the workload's namespace;
* workload: a policy in the workload's namespace whose ``selector.matchLabels`` all match;
  only these may carry ``portLevelMtls`` (keyed by the port the workload listens on).

Where several policies of one level apply, Istio takes the oldest; config here carries no
creation time, so the first by name wins. ``UNSET`` inherits: a port from its workload policy,
a workload from its namespace, a namespace from the mesh, and the mesh defaults to
``PERMISSIVE`` (as it does when no policy exists at all).

The TLS contexts built here name the workload certificate ``default`` and the trust bundle
``ROOTCA``: over SDS for Envoy sidecars, as gRPC certificate provider instances (instance
``default``, the name Istio's proxyless bootstrap declares) for proxyless gRPC.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs

from istio_sdk.api.envoy.config.core import v3 as core
from istio_sdk.api.envoy.extensions.transport_sockets.tls import v3 as tls
from istio_sdk.api.envoy.type.matcher import v3 as matcher
from istio_sdk.api.istio.security import v1beta1 as security
from istio_sdk.pilot.config_entry import ConfigEntry
from istio_sdk.pilot.labels import labels_match
from istio_sdk.pilot.proxy import ProxyInfo
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.pilot.registry import Service
from istio_sdk.pilot.translate._common import TLS_TRANSPORT_SOCKET, pack
from istio_sdk.spiffe import is_spiffe_uri, spiffe_uri

__all__ = [
    "CERTIFICATE_PROVIDER_INSTANCE",
    "ISTIO_MTLS_ALPNS",
    "ROOT_CERTIFICATE_NAME",
    "TLS_MODE_LABEL",
    "WORKLOAD_CERTIFICATE_NAME",
    "MtlsMode",
    "MtlsPolicy",
    "certificate_provider_tls_context",
    "grpc_server_tls_context",
    "mtls_policy",
    "proxy_mtls_policy",
    "sds_source",
    "service_identities",
    "sidecar_inbound_tls_context",
    "spiffe_identity",
    "tls_transport_socket",
]

WORKLOAD_CERTIFICATE_NAME = "default"
"""The SDS secret / certificate name of the workload certificate."""
ROOT_CERTIFICATE_NAME = "ROOTCA"
"""The SDS secret / certificate name of the trust bundle."""
CERTIFICATE_PROVIDER_INSTANCE = "default"
"""The certificate provider instance Istio's proxyless gRPC bootstrap declares."""
TLS_MODE_LABEL = "security.istio.io/tlsMode"
"""Workload label Istio's injector sets to ``istio`` on workloads that hold a certificate."""

ISTIO_MTLS_ALPNS = ("istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2")
"""ALPN values sidecar clients offer on Istio mTLS; PERMISSIVE chains match on them."""
_ALPN_HTTP = ["h2", "http/1.1"]
_ALPN_TCP = ["istio-peer-exchange", "h2", "http/1.1"]
# Istio's server-side cipher suites for sidecars (TLS 1.2; TLS 1.3 suites are fixed).
_CIPHER_SUITES = [
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
]


class MtlsMode(enum.Enum):
    """The effective mutual TLS mode of a workload port (``UNSET`` never survives resolution)."""

    DISABLE = "DISABLE"
    PERMISSIVE = "PERMISSIVE"
    STRICT = "STRICT"


_FROM_SPEC = {
    security.PeerAuthenticationMutualTlsMode.DISABLE: MtlsMode.DISABLE,
    security.PeerAuthenticationMutualTlsMode.PERMISSIVE: MtlsMode.PERMISSIVE,
    security.PeerAuthenticationMutualTlsMode.STRICT: MtlsMode.STRICT,
}


def _frozen_ports(value: Mapping[int, MtlsMode]) -> Mapping[int, MtlsMode]:
    return MappingProxyType(dict(sorted(value.items())))


@attrs.frozen
class MtlsPolicy:
    """The resolved peer authentication of one workload.

    ``mode`` applies to every port not in ``port_modes``. ``sources`` names the policies that
    decided it (``namespace/name``, mesh first), for debugging output.
    """

    mode: MtlsMode = MtlsMode.PERMISSIVE
    port_modes: Mapping[int, MtlsMode] = attrs.field(factory=dict, converter=_frozen_ports)
    sources: tuple[str, ...] = ()

    def mode_for_port(self, port: int) -> MtlsMode:
        """The mode for traffic arriving on workload port ``port``."""
        return self.port_modes.get(port, self.mode)


def _mode(mtls: security.PeerAuthenticationMutualTls | None, inherited: MtlsMode) -> MtlsMode:
    if mtls is None:
        return inherited
    return _FROM_SPEC.get(mtls.mode, inherited)


def _selector(spec: security.PeerAuthentication) -> Mapping[str, str]:
    return spec.selector.match_labels if spec.selector is not None else {}


def _first(entries: Iterable[ConfigEntry]) -> ConfigEntry | None:
    ordered = sorted(entries, key=lambda e: e.name)
    return ordered[0] if ordered else None


def mtls_policy(
    context: PushContext, namespace: str, labels: Mapping[str, str] | None = None
) -> MtlsPolicy:
    """Resolve PeerAuthentication for a workload in ``namespace`` with ``labels``.

    Memoised per snapshot (in ``context.cache``).
    """
    labels = labels or {}
    key = ("peer-authentication", namespace, tuple(sorted(labels.items())))
    cached: MtlsPolicy | None = context.cache.get(key)
    if cached is not None:
        return cached
    root = context.root_namespace
    mesh: list[ConfigEntry] = []
    ns_wide: list[ConfigEntry] = []
    workload: list[ConfigEntry] = []
    for entry in context.entries("PeerAuthentication"):
        spec = entry.spec
        if not isinstance(spec, security.PeerAuthentication):
            continue
        selector = _selector(spec)
        if not selector:
            if entry.namespace == root:
                mesh.append(entry)
            elif entry.namespace == namespace:
                ns_wide.append(entry)
        elif entry.namespace == namespace and labels_match(selector, labels):
            workload.append(entry)
    mode = MtlsMode.PERMISSIVE
    sources: list[str] = []
    port_modes: dict[int, MtlsMode] = {}
    levels = [_first(mesh), _first(ns_wide) if namespace != root else None, _first(workload)]
    for level, chosen in enumerate(levels):
        if chosen is None:
            continue
        spec = chosen.spec
        assert isinstance(spec, security.PeerAuthentication)
        mode = _mode(spec.mtls, mode)
        sources.append(f"{chosen.namespace}/{chosen.name}")
        if level == 2:
            port_modes = {
                int(port): _mode(setting, mode) for port, setting in spec.port_level_mtls.items()
            }
    policy = MtlsPolicy(mode=mode, port_modes=port_modes, sources=tuple(sources))
    context.cache[key] = policy
    return policy


def proxy_mtls_policy(context: PushContext, proxy: ProxyInfo) -> MtlsPolicy:
    """:func:`mtls_policy` for the workload behind ``proxy``."""
    return mtls_policy(context, proxy.namespace, proxy.labels)


# -- identities -------------------------------------------------------------------------


def spiffe_identity(trust_domain: str, namespace: str, service_account: str) -> str:
    """``spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`` (a full URI passes through)."""
    if is_spiffe_uri(service_account):
        return service_account
    return spiffe_uri(trust_domain, namespace, service_account)


def service_identities(context: PushContext, service: Service) -> list[str]:
    """The SPIFFE identities of the workloads behind ``service``, sorted, without repeats.

    Istio's default SAN match for ISTIO_MUTUAL when the DestinationRule names none.
    Endpoints without a service account contribute nothing. Memoised per snapshot.
    """
    key = ("service-identities", service.key)
    cached: list[str] | None = context.cache.get(key)
    if cached is None:
        found = {
            spiffe_identity(context.trust_domain, service.namespace, ep.service_account)
            for ep in context.endpoints_of(service)
            if ep.service_account
        }
        cached = context.cache[key] = sorted(found)
    return list(cached)


# -- TLS contexts -----------------------------------------------------------------------


def _provider(certificate_name: str) -> tls.CertificateProviderPluginInstance:
    return tls.CertificateProviderPluginInstance(
        instance_name=CERTIFICATE_PROVIDER_INSTANCE, certificate_name=certificate_name
    )


def certificate_provider_tls_context(sans: Iterable[str] = ()) -> tls.CommonTlsContext:
    """The common TLS context proxyless gRPC uses for Istio mTLS (gRFC A29).

    Workload certificate and trust bundle both come from certificate provider instance
    ``default``; ``sans`` (exact matches on the peer's SAN, e.g. SPIFFE URIs) restrict which
    peers are accepted, when given.
    """
    validation = tls.CertificateValidationContext(
        ca_certificate_provider_instance=_provider(ROOT_CERTIFICATE_NAME)
    )
    # Deprecated for Envoy in favour of the typed matchers, but the field gRPC reads (A29).
    validation.match_subject_alt_names = [matcher.StringMatcher(exact=n) for n in sans]
    return tls.CommonTlsContext(
        tls_certificate_provider_instance=_provider(WORKLOAD_CERTIFICATE_NAME),
        validation_context=validation,
    )


def grpc_server_tls_context() -> tls.DownstreamTlsContext:
    """The DownstreamTlsContext of an xDS-enabled gRPC server under STRICT mTLS."""
    return tls.DownstreamTlsContext(
        common_tls_context=certificate_provider_tls_context(),
        require_client_certificate=True,
    )


def sds_source() -> core.ConfigSource:
    """Where sidecars fetch secrets: the agent's SDS server (cluster ``sds-grpc``)."""
    return core.ConfigSource(
        api_config_source=core.ApiConfigSource(
            api_type=core.ApiConfigSourceApiType.GRPC,
            transport_api_version=core.ApiVersion.V3,
            set_node_on_first_message_only=True,
            grpc_services=[
                core.GrpcService(envoy_grpc=core.GrpcServiceEnvoyGrpc(cluster_name="sds-grpc"))
            ],
        ),
        initial_fetch_timeout=datetime.timedelta(0),
        resource_api_version=core.ApiVersion.V3,
    )


def sidecar_inbound_tls_context(*, http: bool) -> tls.DownstreamTlsContext:
    """The DownstreamTlsContext a sidecar terminates Istio mTLS with on an inbound port.

    Certificate ``default`` and trust bundle ``ROOTCA`` over SDS, client certificate required,
    TLS 1.2 to 1.3 with Istio's cipher suites; ALPN ``h2, http/1.1`` for HTTP ports (plus
    ``istio-peer-exchange`` for TCP ports, for metadata exchange).
    """
    return tls.DownstreamTlsContext(
        common_tls_context=tls.CommonTlsContext(
            alpn_protocols=list(_ALPN_HTTP if http else _ALPN_TCP),
            tls_params=tls.TlsParameters(
                tls_minimum_protocol_version=tls.TlsParametersTlsProtocol.TLSv1_2,
                tls_maximum_protocol_version=tls.TlsParametersTlsProtocol.TLSv1_3,
                cipher_suites=list(_CIPHER_SUITES),
            ),
            tls_certificate_sds_secret_configs=[
                tls.SdsSecretConfig(name=WORKLOAD_CERTIFICATE_NAME, sds_config=sds_source())
            ],
            combined_validation_context=tls.CommonTlsContextCombinedCertificateValidationContext(
                default_validation_context=tls.CertificateValidationContext(),
                validation_context_sds_secret_config=tls.SdsSecretConfig(
                    name=ROOT_CERTIFICATE_NAME, sds_config=sds_source()
                ),
            ),
        ),
        require_client_certificate=True,
    )


def tls_transport_socket(
    context: tls.DownstreamTlsContext | tls.UpstreamTlsContext,
) -> core.TransportSocket:
    """``envoy.transport_sockets.tls`` holding ``context`` (the name gRPC insists on)."""
    return core.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))
