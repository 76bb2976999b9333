"""Analysis messages: istioctl's codes, levels and wording, and how a message prints.

Each :class:`MessageType` carries the code, name, level and template of one entry of Istio's
``pkg/config/analysis/msg/messages.yaml`` (only the codes these analyzers emit, plus the
reserved ones). Templates are Python format strings; arguments arrive already rendered the way
Go's ``%v``/``%q`` would print them (see :func:`go_list` and :func:`go_quote`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence

import attrs

from istio_sdk.config._yaml import JsonValue

__all__ = [
    "DOCS_URL",
    "MESSAGE_TYPES",
    "Level",
    "Message",
    "MessageType",
    "Origin",
    "go_list",
    "go_quote",
    "sorted_unique",
]

DOCS_URL = "https://istio.io/latest/docs/reference/config/analysis"


class Level(enum.Enum):
    """A message's severity, in istioctl's order (``Error`` is the worst)."""

    ERROR = "Error"
    WARNING = "Warning"
    INFO = "Info"

    @property
    def rank(self) -> int:
        """0 for Error, 1 for Warning, 2 for Info: the sort order of istioctl's output."""
        return _RANKS[self]

    def at_least(self, threshold: Level) -> bool:
        """True when this level is ``threshold`` or worse."""
        return self.rank <= threshold.rank

    @classmethod
    def parse(cls, text: str) -> Level:
        """``Error``, ``warning``, ``INFO``... (any case); raises ValueError naming the choices."""
        for level in cls:
            if level.value.lower() == text.strip().lower():
                return level
        raise ValueError(f"{text!r} is not a level; valid levels: Error, Warning, Info")


_RANKS = {Level.ERROR: 0, Level.WARNING: 1, Level.INFO: 2}


@attrs.frozen
class MessageType:
    """One analysis code: ``IST0101`` ``ReferencedResourceNotFound``, its level and template."""

    code: str
    name: str
    level: Level
    template: str

    @property
    def documentation_url(self) -> str:
        return f"{DOCS_URL}/{self.code.lower()}/"


def _types(rows: Iterable[tuple[str, str, Level, str]]) -> dict[str, MessageType]:
    return {code: MessageType(code, name, level, template) for code, name, level, template in rows}


_E, _W, _I = Level.ERROR, Level.WARNING, Level.INFO

MESSAGE_TYPES: Mapping[str, MessageType] = _types(
    [
        ("IST0001", "InternalError", _E, "Internal error: {}"),
        ("IST0002", "Deprecated", _W, "Deprecated: {}"),
        ("IST0101", "ReferencedResourceNotFound", _E, "Referenced {} not found: {}"),
        (
            "IST0102",
            "NamespaceNotInjected",
            _I,
            "The namespace is not enabled for Istio injection. Run 'kubectl label namespace {} "
            "istio-injection=enabled' to enable it, or 'kubectl label namespace {} "
            "istio-injection=disabled' to explicitly mark it as not needing injection.",
        ),
        (
            "IST0103",
            "PodMissingProxy",
            _W,
            "The pod {} is missing the Istio proxy. This can often be resolved by restarting or "
            "redeploying the workload.",
        ),
        ("IST0106", "SchemaValidationError", _E, "Schema validation error: {}"),
        (
            "IST0107",
            "MisplacedAnnotation",
            _W,
            "Misplaced annotation: {} can only be applied to {}",
        ),
        ("IST0108", "UnknownAnnotation", _W, "Unknown annotation: {}"),
        (
            "IST0109",
            "ConflictingMeshGatewayVirtualServiceHosts",
            _E,
            "The VirtualServices {} associated with mesh gateway define the same host {} which "
            "can lead to undefined behavior. This can be fixed by merging the conflicting "
            "VirtualServices into a single resource.",
        ),
        (
            "IST0110",
            "ConflictingSidecarWorkloadSelectors",
            _E,
            "The Sidecars {} in namespace {} select the same workload pod {}, which can lead to "
            "undefined behavior.",
        ),
        (
            "IST0111",
            "MultipleSidecarsWithoutWorkloadSelectors",
            _E,
            "The Sidecars {} in namespace {} have no workload selector, which can lead to "
            "undefined behavior.",
        ),
        (
            "IST0112",
            "VirtualServiceDestinationPortSelectorRequired",
            _E,
            "This VirtualService routes to a service {} that exposes multiple ports {}. "
            "Specifying a port in the destination is required to disambiguate.",
        ),
        (
            "IST0118",
            "PortNameIsNotUnderNamingConvention",
            _I,
            "Port name {} (port: {}, targetPort: {}) doesn't follow the naming convention of "
            "Istio port.",
        ),
        (
            "IST0123",
            "NamespaceMultipleInjectionLabels",
            _W,
            "The namespace has more than one type of injection labels {}, which may lead to "
            "undefined behavior. Make sure only one injection label exists.",
        ),
        (
            "IST0127",
            "NoMatchingWorkloadsFound",
            _W,
            "No matching workloads for this resource with the following labels: {}",
        ),
        (
            "IST0128",
            "NoServerCertificateVerificationDestinationLevel",
            _W,
            "DestinationRule {} in namespace {} has TLS mode set to {} but no caCertificates are "
            "set to validate server identity for host: {}",
        ),
        (
            "IST0129",
            "NoServerCertificateVerificationPortLevel",
            _W,
            "DestinationRule {} in namespace {} has TLS mode set to {} but no caCertificates are "
            "set to validate server identity for host: {} at port {}",
        ),
        ("IST0130", "VirtualServiceUnreachableRule", _W, "VirtualService rule {} not used ({})."),
        (
            "IST0131",
            "VirtualServiceIneffectiveMatch",
            _I,
            "VirtualService rule {} match {} is not used (duplicate/overlapping match in rule {}).",
        ),
        (
            "IST0132",
            "VirtualServiceHostNotFoundInGateway",
            _W,
            "one or more host {} defined in VirtualService {} not found in Gateway {}.",
        ),
        ("IST0133", "SchemaWarning", _W, "Schema validation warning: {}"),
        (
            "IST0135",
            "DeprecatedAnnotation",
            _I,
            "Annotation {} has been deprecated{} and may not work in future Istio versions.",
        ),
        (
            "IST0138",
            "GatewayDuplicateCertificate",
            _W,
            "Duplicate certificate in multiple gateways {} may cause 404s if clients re-use "
            "HTTP2 connections.",
        ),
        (
            "IST0144",
            "InvalidApplicationUID",
            _W,
            "User ID (UID) 1337 is reserved for the sidecar proxy.",
        ),
        (
            "IST0145",
            "ConflictingGateways",
            _E,
            "Conflict with gateways {} (workload selector {}, port {}, hosts {}).",
        ),
        (
            "IST0150",
            "ExternalNameServiceTypeInvalidPortName",
            _W,
            "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports "
            "and unmatched traffic for ports serving TCP protocol from being forwarded correctly",
        ),
        (
            "IST0151",
            "EnvoyFilterUsesRelativeOperation",
            _W,
            "This EnvoyFilter does not have a priority and has a relative patch operation set "
            "which can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST of ADD "
            "option or setting the priority may help in ensuring the EnvoyFilter is applied "
            "correctly.",
        ),
        (
            "IST0152",
            "EnvoyFilterUsesReplaceOperationIncorrectly",
            _E,
            "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER.",
        ),
        (
            "IST0153",
            "EnvoyFilterUsesAddOperationIncorrectly",
            _E,
            "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or "
            "HTTP_ROUTE.",
        ),
        (
            "IST0154",
            "EnvoyFilterUsesRemoveOperationIncorrectly",
            _E,
            "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, "
            "or HTTP_ROUTE.",
        ),
        (
            "IST0155",
            "EnvoyFilterUsesRelativeOperationWithProxyVersion",
            _W,
            # "NSTERT" is istioctl's spelling; the text is kept as istioctl prints it.
            "This EnvoyFilter does not have a priority and has a relative patch operation "
            "(NSTERT_BEFORE/AFTER, REPLACE, MERGE, DELETE) and proxyVersion set which can cause "
            "the EnvoyFilter not to be applied during an upgrade. Using the INSERT_FIRST or ADD "
            "option or setting the priority may help in ensuring the EnvoyFilter is applied "
            "correctly.",
        ),
        (
            "IST0159",
            "ConflictingTelemetryWorkloadSelectors",
            _E,
            "The Telemetries {} in namespace {} select the same workload pod {}, which can lead "
            "to undefined behavior.",
        ),
        (
            "IST0160",
            "MultipleTelemetriesWithoutWorkloadSelectors",
            _E,
            "The Telemetries {} in namespace {} have no workload selector, which can lead to "
            "undefined behavior.",
        ),
        (
            "IST0162",
            "GatewayPortNotDefinedOnService",
            _W,
            "The gateway is listening on a target port (port {}) that is not defined in the "
            "Service associated with its workload instances (Pod selector {}). If you need to "
            "access the gateway port through the gateway Service, it will not be available.",
        ),
        ("IST0167", "IneffectivePolicy", _W, "The policy has no impact: {}."),
        (
            "IST0173",
            "DestinationRuleSubsetNotSelectPods",
            _E,
            "The Subset {} defined in the DestinationRule does not select any pods. Which may "
            "lead to 503 UH (NoHealthyUpstream).",
        ),
        (
            "IST0174",
            "UnknownDestinationRuleHost",
            _W,
            "The host {} defined in the DestinationRule does not match any services in the mesh.",
        ),
        (
            "IST0177",
            "ConflictingServiceEntryProtocol",
            _W,
            "Multiple ServiceEntries ({}) define the same host {} and port {} with conflicting "
            "protocols ({}).",
        ),
    ]
)


KNOWN_CODES: frozenset[str] = frozenset(
    {
        "IST0001",
        "IST0002",
        "IST0101",
        "IST0102",
        "IST0103",
        "IST0106",
        "IST0107",
        "IST0108",
        "IST0109",
        "IST0110",
        "IST0111",
        "IST0112",
        "IST0116",
        "IST0118",
        "IST0123",
        "IST0125",
        "IST0126",
        "IST0127",
        "IST0128",
        "IST0129",
        "IST0130",
        "IST0131",
        "IST0132",
        "IST0133",
        "IST0134",
        "IST0135",
        "IST0136",
        "IST0137",
        "IST0138",
        "IST0139",
        "IST0140",
        "IST0141",
        "IST0142",
        "IST0143",
        "IST0144",
        "IST0145",
        "IST0146",
        "IST0147",
        "IST0148",
        "IST0149",
        "IST0150",
        "IST0151",
        "IST0152",
        "IST0153",
        "IST0154",
        "IST0155",
        "IST0156",
        "IST0157",
        "IST0158",
        "IST0159",
        "IST0160",
        "IST0161",
        "IST0162",
        "IST0163",
        "IST0164",
        "IST0165",
        "IST0166",
        "IST0167",
        "IST0168",
        "IST0169",
        "IST0170",
        "IST0171",
        "IST0172",
        "IST0173",
        "IST0174",
        "IST0175",
        "IST0176",
        "IST0177",
    }
)
"""Every current istioctl code (68, from Istio's messages.yaml), for ``-S`` checks."""


def go_quote(text: str) -> str:
    """``text`` as Go's ``%q`` prints it (double quotes, backslash escapes)."""
    return json.dumps(text, ensure_ascii=False)


def go_list(items: Iterable[object]) -> str:
    """A slice as Go's ``%v`` prints it: ``[a b c]``."""
    return "[" + " ".join(str(item) for item in items) + "]"


@attrs.frozen
class Origin:
    """Where a message points: the resource (``Kind namespace/name``) and its place in a file."""

    kind: str
    namespace: str
    name: str
    file: str | None = None
    line: int | None = None

    @property
    def friendly_name(self) -> str:
        """``VirtualService bookinfo/reviews`` (``Namespace bookinfo`` when cluster-scoped)."""
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"

    @property
    def reference(self) -> str | None:
        """``file.yaml:3``; the file alone for JSON files (as istioctl); None without a file."""
        if not self.file:
            return None
        if self.line and not self.file.endswith(".json"):
            return f"{self.file}:{self.line}"
        return self.file

    @property
    def comparator(self) -> str:
        return f"{self.kind}/{self.name}/{self.namespace}"


@attrs.frozen
class Message:
    """One analysis finding, as istioctl reports it."""

    type: MessageType
    arguments: tuple[str, ...]
    origin: Origin | None

    @property
    def code(self) -> str:
        return self.type.code

    @property
    def level(self) -> Level:
        return self.type.level

    @property
    def text(self) -> str:
        """The rendered template: ``Referenced host not found: "ratings.bad"``."""
        return self.type.template.format(*self.arguments)

    @property
    def documentation_url(self) -> str:
        return self.type.documentation_url

    def __str__(self) -> str:
        """``Error [IST0101] (VirtualService bookinfo/reviews file.yaml:3) Referenced ...``."""
        where = ""
        if self.origin is not None:
            ref = self.origin.reference
            where = f" ({self.origin.friendly_name}{' ' + ref if ref else ''})"
        return f"{self.level.value} [{self.code}]{where} {self.text}"

    def to_dict(self, doc_ref: str = "") -> dict[str, JsonValue]:
        """istioctl's ``-o json`` object: code, level, origin, reference, message, URL."""
        out: dict[str, JsonValue] = {"code": self.code, "level": self.level.value}
        if self.origin is not None:
            out["origin"] = self.origin.friendly_name
            if self.origin.reference is not None:
                out["reference"] = self.origin.reference
        out["message"] = self.text
        query = f"?ref={doc_ref}" if doc_ref else ""
        out["documentationUrl"] = self.documentation_url + query
        return out


def _sort_key(message: Message) -> tuple[int, str, int, str, str]:
    origin = message.origin
    return (
        message.level.rank,
        message.code,
        0 if origin is None else 1,
        "" if origin is None else origin.comparator,
        str(message),
    )


def sorted_unique(messages: Sequence[Message]) -> list[Message]:
    """istioctl's order (level, code, resource, text) with identical lines collapsed."""
    out: list[Message] = []
    for message in sorted(messages, key=_sort_key):
        if out and str(out[-1]) == str(message):
            continue
        out.append(message)
    return out
