"""xDS resource types: type URLs, the generated class behind each, ``Any`` packing, push order.

Type URLs are plain strings (what travels on the wire). The generated betterproto2 classes are
imported lazily, on first use, so importing :mod:`istio_sdk.xds` stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Final

import attrs
import betterproto2

from istio_sdk._messages import find_message_class
from istio_sdk.xds.errors import UnknownTypeUrlError

TYPE_PREFIX: Final = "type.googleapis.com/"

LISTENER: Final = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
ROUTE: Final = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
SCOPED_ROUTE: Final = TYPE_PREFIX + "envoy.config.route.v3.ScopedRouteConfiguration"
VIRTUAL_HOST: Final = TYPE_PREFIX + "envoy.config.route.v3.VirtualHost"
CLUSTER: Final = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT: Final = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET: Final = TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
EXTENSION_CONFIG: Final = TYPE_PREFIX + "envoy.config.core.v3.TypedExtensionConfig"
RUNTIME: Final = TYPE_PREFIX + "envoy.service.runtime.v3.Runtime"
NAME_TABLE: Final = TYPE_PREFIX + "istio.networking.nds.v1.NameTable"
"""Istio's NDS: the one name table istiod sends an agent for its DNS proxy."""


@attrs.frozen
class ResourceType:
    """One xDS resource type: its wire URL, short name and the module of its generated class.

    ``sotw_full_state`` marks the types whose State-of-the-World responses must carry every
    subscribed resource (LDS and CDS): a resource missing from such a response is deleted.
    ``legacy_wildcard`` marks the types where a first request naming no resources means
    "everything" (the pre-``*`` wildcard rule, again LDS and CDS).
    """

    type_url: str
    short_name: str
    module: str
    class_name: str
    sotw_full_state: bool = False
    legacy_wildcard: bool = False

    def message_class(self) -> type[betterproto2.Message]:
        """The generated betterproto2 class for this type (imported on first use)."""
        cls: type[betterproto2.Message] = getattr(
            importlib.import_module(self.module), self.class_name
        )
        return cls


_API = "istio_sdk.api."

_TYPES: dict[str, ResourceType] = {
    t.type_url: t
    for t in (
        ResourceType(LISTENER, "LDS", _API + "envoy.config.listener.v3", "Listener", True, True),
        ResourceType(CLUSTER, "CDS", _API + "envoy.config.cluster.v3", "Cluster", True, True),
        ResourceType(ROUTE, "RDS", _API + "envoy.config.route.v3", "RouteConfiguration"),
        ResourceType(ENDPOINT, "EDS", _API + "envoy.config.endpoint.v3", "ClusterLoadAssignment"),
        ResourceType(SECRET, "SDS", _API + "envoy.extensions.transport_sockets.tls.v3", "Secret"),
        ResourceType(
            EXTENSION_CONFIG, "ECDS", _API + "envoy.config.core.v3", "TypedExtensionConfig"
        ),
        ResourceType(
            SCOPED_ROUTE, "SRDS", _API + "envoy.config.route.v3", "ScopedRouteConfiguration"
        ),
        ResourceType(VIRTUAL_HOST, "VHDS", _API + "envoy.config.route.v3", "VirtualHost"),
        # One unnamed resource, asked for with no names (istiod treats its own types as
        # wildcard), so a response always carries the whole table.
        ResourceType(NAME_TABLE, "NDS", _API + "istio.networking.nds.v1", "NameTable", True, True),
    )
}

# Istio's own config kinds, as Galley/MCP and istiod's debug endpoints send them.
for _name in (
    "VirtualService",
    "DestinationRule",
    "ServiceEntry",
    "Gateway",
    "Sidecar",
    "WorkloadEntry",
    "WorkloadGroup",
    "EnvoyFilter",
):
    _url = f"{TYPE_PREFIX}istio.networking.v1alpha3.{_name}"
    _TYPES[_url] = ResourceType(_url, _name, _API + "istio.networking.v1alpha3", _name)
for _name in ("AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication"):
    _url = f"{TYPE_PREFIX}istio.security.v1beta1.{_name}"
    _TYPES[_url] = ResourceType(_url, _name, _API + "istio.security.v1beta1", _name)

SHORT_NAMES: Final[dict[str, str]] = {
    "lds": LISTENER,
    "listeners": LISTENER,
    "rds": ROUTE,
    "routes": ROUTE,
    "cds": CLUSTER,
    "clusters": CLUSTER,
    "eds": ENDPOINT,
    "endpoints": ENDPOINT,
    "sds": SECRET,
    "secrets": SECRET,
    "ecds": EXTENSION_CONFIG,
    "nds": NAME_TABLE,
    "nametable": NAME_TABLE,
}

# Make-before-break: a proxy must know a cluster (CDS) and its endpoints (EDS) before a listener
# (LDS) or route (RDS) points at it. Types not listed here go after these four.
PUSH_ORDER: Final[tuple[str, ...]] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, EXTENSION_CONFIG)


def known_type_urls() -> list[str]:
    """Every type URL this registry knows, Envoy's first."""
    return list(_TYPES)


def is_known(type_url: str) -> bool:
    """Whether ``type_url`` is a registered resource type."""
    return type_url in _TYPES


def resource_type(type_url: str) -> ResourceType:
    """The registered type for ``type_url``; raises :class:`UnknownTypeUrlError` otherwise."""
    try:
        return _TYPES[type_url]
    except KeyError:
        raise UnknownTypeUrlError(type_url) from None


def resolve_type_url(name: str) -> str:
    """Accept a full type URL, a short name (``clusters``, ``CDS``) or a bare message name."""
    if name in _TYPES:
        return name
    short = SHORT_NAMES.get(name.lower())
    if short is not None:
        return short
    if TYPE_PREFIX + name in _TYPES:
        return TYPE_PREFIX + name
    raise UnknownTypeUrlError(name)


def is_full_state(type_url: str) -> bool:
    """True for types whose SotW responses carry every resource (LDS, CDS)."""
    t = _TYPES.get(type_url)
    return t is not None and t.sotw_full_state


def is_legacy_wildcard(type_url: str) -> bool:
    """True for types where an empty first subscription means wildcard (LDS, CDS)."""
    t = _TYPES.get(type_url)
    return t is not None and t.legacy_wildcard


def push_order_key(type_url: str) -> tuple[int, str]:
    """Sort key putting types in make-before-break order (CDS, EDS, LDS, RDS, then the rest)."""
    try:
        return (PUSH_ORDER.index(type_url), type_url)
    except ValueError:
        return (len(PUSH_ORDER), type_url)


def in_push_order(type_urls: Iterable[str]) -> list[str]:
    """``type_urls`` sorted into make-before-break order."""
    return sorted(set(type_urls), key=push_order_key)


def type_url_of(message: betterproto2.Message | type[betterproto2.Message]) -> str:
    """The type URL of a generated message (instance or class)."""
    from istio_sdk.api.message_pool import default_message_pool

    cls = message if isinstance(message, type) else type(message)
    try:
        url: str = default_message_pool.type_to_url[cls]
    except KeyError:
        raise UnknownTypeUrlError(repr(cls)) from None
    return url


def resource_name(message: betterproto2.Message) -> str:
    """The xDS name of a resource: ``name`` for most types, ``cluster_name`` for endpoints."""
    name = getattr(message, "cluster_name", None)
    if isinstance(name, str) and type_url_of(message) == ENDPOINT:
        return name
    name = getattr(message, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"{type(message).__name__} has no resource name field")
    return name


def pack(message: betterproto2.Message) -> betterproto2.Message:
    """Wrap ``message`` in a ``google.protobuf.Any`` using the shared message pool."""
    from istio_sdk.api.google.protobuf import Any

    packed: betterproto2.Message = Any(type_url=type_url_of(message), value=bytes(message))
    return packed


def unpack(
    any_message: betterproto2.Message, expected_type_url: str | None = None
) -> betterproto2.Message:
    """Decode the message inside an ``Any``.

    Raises :class:`UnknownTypeUrlError` when the type is not registered, and ``ValueError``
    when ``expected_type_url`` is given and the ``Any`` holds something else.
    """
    type_url = getattr(any_message, "type_url", "")
    value = getattr(any_message, "value", b"")
    return unpack_bytes(type_url, value, expected_type_url)


def unpack_bytes(
    type_url: str, value: bytes, expected_type_url: str | None = None
) -> betterproto2.Message:
    """Decode ``value`` as the message named by ``type_url`` (see :func:`unpack`)."""
    if expected_type_url is not None and type_url != expected_type_url:
        raise ValueError(f"expected an Any of {expected_type_url}, got {type_url!r}")
    cls = message_class(type_url)
    message: betterproto2.Message = cls.parse(value)
    return message


def message_class(type_url: str) -> type[betterproto2.Message]:
    """The generated class for ``type_url``: registry first, then the shared message pool."""
    t = _TYPES.get(type_url)
    if t is not None:
        return t.message_class()
    cls = None
    if type_url.startswith(TYPE_PREFIX):
        # Not the whole of istio_sdk.api: only the package the name points at is imported.
        cls = find_message_class(type_url[len(TYPE_PREFIX) :], import_all=False)
    if cls is None:
        raise UnknownTypeUrlError(type_url)
    return cls
