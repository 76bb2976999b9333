"""The MCP collections of Galley 1.3: their names, body messages and the config kinds behind them.

Galley 1.3 (its default processor) named 60 metadata collections plus
``istio/mesh/v1alpha1/MeshConfig``; the five Kubernetes builtin kinds (Service, Node, Pod,
Endpoints, Namespace) were excluded by default, so it served 56. The names mix prefixes as
Galley's did (``istio/config/v1alpha2/httpapispecs`` beside
``istio/mixer/v1/config/client/quotaspecs``). A collection whose kind the config layer knows is
filled from a :class:`~istio_sdk.config.ConfigStore` and mirrored back into one by a sink
(the Mixer adapter and template kinds of ``legacy/`` included); the others (Ingress, the
synthetic service entries, the HTTPAPISpec and QuotaSpec kinds) are served, empty, so sinks that
ask for them are in sync.

Mixer's untyped kinds travel as ``google.protobuf.Struct`` (Galley's table doubled that type
URL, an artefact not repeated here).
"""

from __future__ import annotations

import attrs

from istio_sdk.config._kinds import LEGACY_MIXER_KINDS

__all__ = [
    "COLLECTIONS",
    "DEFAULT_COLLECTIONS",
    "MESH_CONFIG",
    "PILOT_COLLECTIONS",
    "Collection",
    "collection",
    "collection_of_kind",
]

STRUCT = "google.protobuf.Struct"


@attrs.frozen
class Collection:
    """One collection: its MCP name, the message of its bodies, the config kind it carries.

    ``kind`` is the :class:`~istio_sdk.config.ConfigStore` kind (``None``: no config kind, the
    collection is always empty); ``default`` is False for the collections Galley 1.3 left out
    unless service discovery was on.
    """

    name: str
    body_type: str
    kind: str | None = None
    default: bool = True

    @property
    def untyped(self) -> bool:
        """Bodies are ``google.protobuf.Struct`` (Mixer's adapter and template kinds)."""
        return self.body_type == STRUCT


_NET = "istio.networking.v1alpha3."
_CLIENT = "istio.mixer.v1.config.client."
_POLICY = "istio.policy.v1beta1."
_RBAC = "istio.rbac.v1alpha1."

MESH_CONFIG = "istio/mesh/v1alpha1/MeshConfig"


COLLECTIONS: tuple[Collection, ...] = (
    Collection("istio/networking/v1alpha3/virtualservices", _NET + "VirtualService",
               "VirtualService"),
    Collection("istio/networking/v1alpha3/gateways", _NET + "Gateway", "Gateway"),
    Collection("istio/networking/v1alpha3/serviceentries", _NET + "ServiceEntry", "ServiceEntry"),
    Collection("istio/networking/v1alpha3/destinationrules", _NET + "DestinationRule",
               "DestinationRule"),
    Collection("istio/networking/v1alpha3/envoyfilters", _NET + "EnvoyFilter", "EnvoyFilter"),
    Collection("istio/networking/v1alpha3/sidecars", _NET + "Sidecar", "Sidecar"),
    Collection("istio/networking/v1alpha3/synthetic/serviceentries", _NET + "ServiceEntry"),
    Collection("istio/authentication/v1alpha1/policies", "istio.authentication.v1alpha1.Policy",
               "Policy"),
    Collection("istio/authentication/v1alpha1/meshpolicies",
               "istio.authentication.v1alpha1.Policy", "MeshPolicy"),
    Collection("istio/rbac/v1alpha1/serviceroles", _RBAC + "ServiceRole", "ServiceRole"),
    Collection("istio/rbac/v1alpha1/servicerolebindings", _RBAC + "ServiceRoleBinding",
               "ServiceRoleBinding"),
    Collection("istio/rbac/v1alpha1/rbacconfigs", _RBAC + "RbacConfig", "RbacConfig"),
    Collection("istio/rbac/v1alpha1/clusterrbacconfigs", _RBAC + "RbacConfig",
               "ClusterRbacConfig"),
    Collection("istio/config/v1alpha2/httpapispecs", _CLIENT + "HTTPAPISpec"),
    Collection("istio/config/v1alpha2/httpapispecbindings", _CLIENT + "HTTPAPISpecBinding"),
    Collection("istio/mixer/v1/config/client/quotaspecs", _CLIENT + "QuotaSpec"),
    Collection("istio/mixer/v1/config/client/quotaspecbindings", _CLIENT + "QuotaSpecBinding"),
    Collection("istio/policy/v1beta1/rules", _POLICY + "Rule", "rule"),
    Collection("istio/policy/v1beta1/attributemanifests", _POLICY + "AttributeManifest",
               "attributemanifest"),
    Collection("istio/policy/v1beta1/instances", _POLICY + "Instance", "instance"),
    Collection("istio/policy/v1beta1/handlers", _POLICY + "Handler", "handler"),
    Collection("istio/config/v1alpha2/adapters", STRUCT, "adapter"),
    Collection("istio/config/v1alpha2/templates", STRUCT, "template"),
    *(Collection(f"istio/config/v1alpha2/legacy/{plural}", STRUCT, kind)
      for kind, plural in LEGACY_MIXER_KINDS),
    Collection("k8s/core/v1/services", "k8s.io.api.core.v1.ServiceSpec", default=False),
    Collection("k8s/core/v1/pods", "k8s.io.api.core.v1.Pod", default=False),
    Collection("k8s/core/v1/nodes", "k8s.io.api.core.v1.NodeSpec", default=False),
    Collection("k8s/core/v1/namespaces", "k8s.io.api.core.v1.NamespaceSpec", default=False),
    Collection("k8s/core/v1/endpoints", "k8s.io.api.core.v1.Endpoints", default=False),
    Collection("k8s/extensions/v1beta1/ingresses", "k8s.io.api.extensions.v1beta1.IngressSpec"),
    Collection(MESH_CONFIG, "istio.mesh.v1alpha1.MeshConfig"),
)  # fmt: skip

_BY_NAME = {c.name: c for c in COLLECTIONS}
_BY_KIND = {c.kind: c for c in COLLECTIONS if c.kind is not None}

DEFAULT_COLLECTIONS: tuple[str, ...] = tuple(c.name for c in COLLECTIONS if c.default)
"""What Galley 1.3 served by default (56)."""

PILOT_COLLECTIONS: tuple[str, ...] = tuple(
    "istio/" + tail
    for tail in (
        "networking/v1alpha3/virtualservices",
        "networking/v1alpha3/gateways",
        "networking/v1alpha3/serviceentries",
        "networking/v1alpha3/destinationrules",
        "networking/v1alpha3/envoyfilters",
        "networking/v1alpha3/sidecars",
        "config/v1alpha2/httpapispecs",
        "config/v1alpha2/httpapispecbindings",
        "mixer/v1/config/client/quotaspecs",
        "mixer/v1/config/client/quotaspecbindings",
        "authentication/v1alpha1/policies",
        "authentication/v1alpha1/meshpolicies",
        "rbac/v1alpha1/serviceroles",
        "rbac/v1alpha1/servicerolebindings",
        "rbac/v1alpha1/rbacconfigs",
        "rbac/v1alpha1/clusterrbacconfigs",
    )
)
"""The 16 collections Pilot 1.3 subscribed to (non-incremental)."""


def collection(name: str) -> Collection:
    """The collection called ``name``; raises ``KeyError`` for a name Galley 1.3 did not use."""
    return _BY_NAME[name]


def collection_of_kind(kind: str) -> Collection | None:
    """The collection carrying config kind ``kind`` (a store kind), if any."""
    return _BY_KIND.get(kind)
