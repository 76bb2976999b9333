"""The building blocks Istio's validators share: ports, hosts, durations, regexes, labels.

Each function returns Istio's message for what is wrong (None or an empty list when the value
is fine), so the kind modules decide the field path and the level. Regular expressions are
RE2's (``config._go``), as in Istio; Go's ``regexp`` anchors ``$`` at the very end, so every
pattern here is applied with ``fullmatch``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from istio_sdk.config import _go as go
from istio_sdk.config.semantic._report import Report, items, join_key, mapping, obj, real, text

UNIX_PREFIX = "unix://"

_LABEL = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?")
_WILDCARD_LABEL = re.compile(r"\*|(?:\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?")
_QUALIFIED = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_DNS_PREFIX = (
    r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)*/"
)
_TAG_KEY = re.compile(f"({_DNS_PREFIX})?({_QUALIFIED})")
_LABEL_VALUE = re.compile(f"(?:{_QUALIFIED})?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~A-Za-z0-9]+")
_STRICT_HEADER = re.compile(r"[-_A-Za-z0-9]+")
_PROBE_HEADER = re.compile(r"[-A-Za-z0-9]+")
_HEADER_VALUE = re.compile("[^\u0000-\u0008\u000a-\u001f\u007f]*")
_DURATION = re.compile(r"(-)?([0-9]+)(?:\.([0-9]{1,9}))?s")
_PSEUDO_HEADERS = frozenset({":method", ":scheme", ":authority", ":path", ":status"})

_QUOTE_MAX = 256
MS = 1_000_000
SECOND = 1_000_000_000


# --- names and hosts ------------------------------------------------------------------------


def is_label(value: str) -> bool:
    """Istio's DNS-1123 label test (it accepts upper case letters)."""
    return len(value) <= 63 and _LABEL.fullmatch(value) is not None


def is_wildcard_label(value: str) -> bool:
    return len(value) <= 63 and _WILDCARD_LABEL.fullmatch(value) is not None


def _preconditions(name: str) -> str | None:
    if len(name) > 255:
        return f"domain name {go_quote(name)} too long (max 255)"
    if not name:
        return "empty domain name not allowed"
    return None


def _labels_problem(domain: str, whole: str) -> str | None:
    parts = domain.split(".")
    tld = parts[-1]
    if _is_go_atoi(tld):
        return (
            f"domain name {go_quote(whole)} invalid "
            f"(top level domain {go_quote(tld)} cannot be all-numeric)"
        )
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None
        if not is_label(label):
            return f"domain name {go_quote(whole)} invalid (label {go_quote(label)} invalid)"
    return None


def _is_go_atoi(value: str) -> bool:
    try:
        go.parse_int(value)
    except ValueError:
        return False
    return True


def fqdn_problem(fqdn: str) -> str | None:
    return _preconditions(fqdn) or _labels_problem(fqdn, fqdn)


def wildcard_domain_problem(domain: str) -> str | None:
    problem = _preconditions(domain)
    if problem:
        return problem
    first, dot, rest = domain.partition(".")
    if not is_wildcard_label(first):
        return f"domain name {go_quote(domain)} invalid (label {go_quote(first)} invalid)"
    if dot:
        # Istio checks the rest as a domain of its own and names it in the message.
        return _labels_problem(rest, rest)
    return None


def gateway_vs_domain_problem(sni: bool, domain: str) -> str | None:
    """A VirtualService host bound to a gateway: ``outbound_.PORT_._.HOST`` allowed with SNI."""
    problem = _preconditions(domain)
    if problem:
        return problem
    if sni and domain.startswith("outbound_"):
        parts = domain.split("_")
        fmt = "outbound_.<port>_._.<hostname>"
        if len(parts) < 4:
            return f"domain name {domain} invalid, should follow '{fmt}' format"
        port = parts[1].strip(".")
        hostname = parts[3].strip(".")
        if parts[0] != "outbound":
            return f"domain name {go_quote(domain)} invalid (label {go_quote(parts[0])} invalid)"
        if not re.search(r"[0-9]", port):
            return (
                f"domain name {go_quote(domain)} invalid (label {go_quote(port)} invalid). "
                f"should follow {fmt} format"
            )
        if not re.search(r"[a-zA-Z]", hostname):
            return (
                f"domain name {go_quote(domain)} invalid (label {go_quote(hostname)} invalid). "
                f"should follow {fmt} format"
            )
        return None
    return wildcard_domain_problem(domain)


def partial_wildcard_problem(host: str) -> str | None:
    if "*" in host and len(host) != 1 and not host.startswith("*."):
        return f"partial wildcard {go_quote(host)} not allowed"
    return None


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def ip_problem(value: str) -> str | None:
    return None if is_ip(value) else f"{value} is not a valid IP"


def is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    address, _, bits = value.partition("/")
    return is_ip(address) and bits.isdigit() and (len(bits) == 1 or not bits.startswith("0"))


def subnet_problem(value: str) -> str | None:
    """An address or, with one ``/``, a prefix (IPv4 or IPv6)."""
    if value.count("/") == 1:
        return None if is_cidr(value) else f"{value} is not a valid CIDR block"
    return ip_problem(value)


def host_matches(a: str, b: str) -> bool:
    """Istio's ``host.Name.Matches``: either host covers the other (wildcards by suffix)."""
    aw, bw = a.startswith("*"), b.startswith("*")
    if aw and bw:
        return b[1:].endswith(a[1:]) if len(a) < len(b) else a[1:].endswith(b[1:])
    if aw:
        return b.endswith(a[1:])
    if bw:
        return a.endswith(b[1:])
    return a == b


def host_subset_of(a: str, b: str) -> bool:
    """Istio's ``host.Name.SubsetOf``: every name ``a`` covers is covered by ``b``."""
    aw, bw = a.startswith("*"), b.startswith("*")
    if aw:
        return bw and len(a) >= len(b) and a[1:].endswith(b[1:])
    if bw:
        return a.endswith(b[1:])
    return a == b


def _sidecar_or_gateway_host_part(hostname: str, is_gateway: bool) -> list[str]:
    problems = []
    if hostname != "*" and "." not in hostname:
        problems.append("short names (non FQDN) are not allowed")
    problem = wildcard_domain_problem(hostname)
    if problem:
        if not is_gateway:
            problems.append(problem)
        if not is_ip(hostname):
            problems.append(problem)
    partial = partial_wildcard_problem(hostname)
    if partial:
        problems.append(partial)
    return problems


def namespace_host_problems(hostname: str, *, is_gateway: bool) -> list[str]:
    """Sidecar and Gateway hosts: ``namespace/dnsName`` (a Gateway also takes a bare host)."""
    namespace, slash, name = hostname.partition("/")
    if not slash:
        if is_gateway:
            return _sidecar_or_gateway_host_part(hostname, True)
        return ["host must be of form namespace/dnsName"]
    problems = []
    if not namespace or not name:
        problems.append("config namespace and dnsName in host entry cannot be empty")
    if not is_gateway:
        ns = namespace.removeprefix("~")
        if ns not in ("", "*", ".") and not is_label(ns):
            problems.append(f"invalid namespace value {go_quote(namespace)} in sidecar")
    elif namespace not in ("*", ".") and not is_label(namespace):
        problems.append(f"invalid namespace value {go_quote(namespace)} in gateway")
    problems.extend(_sidecar_or_gateway_host_part(name, is_gateway))
    return problems


def labels_problems(labels: Mapping[str, Any]) -> list[str]:
    """Istio's ``labels.Instance.Validate``: qualified keys and values."""
    problems = []
    for key, value in labels.items():
        match = _TAG_KEY.fullmatch(key)
        if match is None:
            problems.append(f"invalid tag key: {go_quote(key)}")
        elif match.group(1) and len(match.group(1)) - 1 > 253:
            problems.append(f"invalid tag key: {go_quote(key)} (DNS prefix is too long)")
        elif len(match.group(2)) > 63:
            problems.append(f"invalid tag key: {go_quote(key)} (name is too long)")
        if not isinstance(value, str) or _LABEL_VALUE.fullmatch(value) is None:
            problems.append(f"invalid tag value: {go_quote(str(value))}")
    return problems


def unix_address_problem(address: str) -> str | None:
    if not address:
        return "unix address must not be empty"
    if address.startswith("@"):
        return None
    if not address.startswith("/") or address.endswith("/"):
        return f"{address} is not an absolute path to a file"
    return None


# --- ports and protocols ---------------------------------------------------------------------

_PROTOCOLS = {
    "tcp": "TCP",
    "udp": "UDP",
    "grpc": "GRPC",
    "grpc-web": "GRPC-Web",
    "http": "HTTP",
    "http_proxy": "HTTP_PROXY",
    "http2": "HTTP2",
    "https": "HTTPS",
    "tls": "TLS",
    "mongo": "Mongo",
    "redis": "Redis",
    "mysql": "MySQL",
}


def protocol(name: str) -> str:
    """The protocol Istio reads from a port's protocol text ("" when it is not one)."""
    return _PROTOCOLS.get(name.lower(), "")


def is_http(name: str) -> bool:
    return protocol(name) in ("HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web")


def is_tcp(name: str) -> bool:
    return protocol(name) in ("TCP", "HTTPS", "TLS", "Mongo", "Redis", "MySQL")


def is_tls(name: str) -> bool:
    return protocol(name) in ("HTTPS", "TLS")


def port_problem(port: int) -> str | None:
    if 1 <= port <= 65535:
        return None
    return f"port number {port} must be in the range 1..65535"


def port_name_problem(name: str) -> str | None:
    return None if is_label(name) else f"invalid port name: {name}"


def protocol_problem(name: str) -> str | None:
    if name and not protocol(name):
        return f"unsupported protocol: {name}"
    return None


def percent_problem(value: int) -> str | None:
    if 0 <= value <= 100:
        return None
    return f"percentage {value} is not in range 0..100"


def percentage_problem(percentage: dict[str, Any] | None) -> str | None:
    if percentage is None:
        return None
    value = real(percentage, "value")
    if value < 0.0 or value > 100.0 or 0.0 < value < 0.0001:
        return f"percentage {go.format_float(value)} is neither 0.0, nor in range [0.0001, 100.0]"
    return None


# --- durations -------------------------------------------------------------------------------


def duration_nanos(value: Any) -> int | None:
    """Nanoseconds of a proto3 JSON Duration (``"1.5s"``), or None when it is not one."""
    if not isinstance(value, str):
        return None
    match = _DURATION.fullmatch(value)
    if match is None:
        return None
    sign, whole, fraction = match.groups()
    nanos = int(whole) * SECOND + int((fraction or "").ljust(9, "0"))
    return -nanos if sign else nanos


def duration_problem(value: Any) -> str | None:
    """Istio's ``ValidateDuration``: at least 1ms (exactly 1ms passes), whole milliseconds."""
    nanos = duration_nanos(value)
    if nanos is None:
        return None  # not a Duration at all: the schema checks report it
    if nanos < MS:
        return "duration must be greater than 1ms"
    if nanos % MS:
        return "only durations to ms precision are supported"
    return None


# --- regular expressions and string matches -------------------------------------------------


def regex_problem(pattern: str, where: str) -> str | None:
    if len(pattern) > 1024:
        return f"{go_quote(where)}: regex is too large, max length allowed is 1024"
    try:
        go.compile_regex(pattern)
    except go.RegexError as exc:
        return (
            f"{go_quote(where)}: {exc}; Istio uses RE2 style regex-based match "
            "(https://github.com/google/re2/wiki/Syntax)"
        )
    return None


def string_match_regex_problem(match: dict[str, Any] | None, where: str) -> str | None:
    if match is None or "regex" not in match:
        return None
    pattern = text(match, "regex")
    if not pattern:
        return f"{go_quote(where)}: regex string match should not be empty"
    return regex_problem(pattern, where)


def string_match_problem(match: dict[str, Any] | None, where: str) -> str | None:
    if match is None:
        return None
    if "prefix" in match and not text(match, "prefix"):
        return f"{go_quote(where)}: prefix string match should not be empty"
    return string_match_regex_problem(match, where)


# --- headers ---------------------------------------------------------------------------------


def is_routing_claim(name: str) -> bool:
    """``@request.auth.claims.NAME`` or ``@request.auth.claims[NAME]...``: a JWT claim route."""
    prefix = "@request.auth.claims"
    if not name.startswith(prefix):
        return False
    rest = name[len(prefix) :]
    if rest.startswith("."):
        return len(rest) > 1
    return rest.startswith("[") and rest.endswith("]") and len(rest) > 2


def match_header_name_problem(name: str) -> str | None:
    if not name:
        return "header name cannot be empty"
    if is_routing_claim(name) or name in _PSEUDO_HEADERS:
        return None
    if _TOKEN.fullmatch(name) is None:
        return f"header name {name} is not a valid header name"
    return None


def _internal_header(name: str) -> bool:
    return name.startswith(":") or name.lower() == "host"


def _authority_header(name: str) -> bool:
    return name.lower() in (":authority", "host")


def request_header_set_problem(name: str) -> str | None:
    """A request header added or set: ``:authority`` and Host may be, other ``:`` may not."""
    if not name:
        return "header name cannot be empty"
    if _internal_header(name) and not _authority_header(name):
        return f'invalid header {go_quote(name)}: header cannot have ":" prefix'
    return None


def header_operation_problem(name: str) -> str | None:
    """A removed request header or any response header operation."""
    if not name:
        return "header name cannot be empty"
    if name.lower() == "host":
        return f"invalid header {go_quote(name)}: cannot set Host header"
    if _internal_header(name):
        return f'invalid header {go_quote(name)}: header cannot have ":" prefix'
    return None


def cors_header_problem(name: str) -> str | None:
    if not name:
        return "header name cannot be empty"
    if name == "*" or _TOKEN.fullmatch(name):
        return None
    return f"header name {name} is not a valid header name"


def strict_header_problem(name: str) -> str | None:
    if not name:
        return "header name cannot be empty"
    if _STRICT_HEADER.fullmatch(name) is None:
        return f"header name {name} is not a valid header name"
    return None


def probe_header_problem(name: str) -> str | None:
    if not name:
        return "header name cannot be empty"
    if _PROBE_HEADER.fullmatch(name) is None:
        return f"header name {name} is not a valid header name"
    return None


def header_value_problem(value: str) -> str | None:
    """No control characters, and Envoy's ``%VAR(...)%`` substitutions well formed."""
    if _HEADER_VALUE.fullmatch(value) is None:
        return f"header value configuration {value} is invalid"
    problem = _substitution_problem(value)
    return None if problem is None else f"header value configuration: {problem}"


def _substitution_problem(value: str) -> str | None:
    state = "literal"
    pos = 0
    while pos < len(value):
        ch = value[pos]
        has_next = pos + 1 < len(value)
        if state == "literal":
            if ch == "%":
                if not has_next:
                    return "invalid header configuration. Un-escaped %"
                if value[pos + 1] == "%":
                    pos += 1
                else:
                    state = "name"
        elif state == "name":
            if ch == "%":
                state = "literal"
            elif ch == "(":
                state = "array"
        elif state == "array":
            if ch == "[":
                state = "expect-string"
            elif ch != " ":
                state = "string"
        elif state == "delimiter":
            if ch == ",":
                state = "expect-string"
            elif ch == "]":
                state = "args-end"
            elif ch != " ":
                return "invalid header configuration. Expecting ',', ']', or whitespace"
        elif state == "expect-string":
            if ch == '"':
                state = "string"
            elif ch != " ":
                return "invalid header configuration. Expecting '\"'"
        elif state == "string":
            if ch == "\\":
                if not has_next:
                    return "invalid header configuration. Un-terminated backslash in JSON string"
                pos += 1
            elif ch == ")":
                state = "variable-end"
            elif ch == '"':
                state = "delimiter"
        elif state == "args-end":
            if ch == ")":
                state = "variable-end"
            elif ch != " ":
                return (
                    "invalid header configuration. Expecting ')' or whitespace after '{}', "
                    "but found '{}'"
                )
        elif state == "variable-end":
            if ch == "%":
                state = "literal"
            elif ch != " ":
                return "invalid header configuration. Expecting '%' or whitespace after"
        pos += 1
    if state != "literal":
        return f"invalid header configuration. Un-terminated variable expression '{value}'"
    return None


# --- selectors, target references, exportTo --------------------------------------------------


def selector_labels(report: Report, path: str, labels: Mapping[str, Any]) -> None:
    """Errors for an empty key or a ``*`` in a workload selector's labels."""
    for key, value in labels.items():
        pair = go_quote(f"{key}={value}")
        if key == "":
            report.error(join_key(path, key), f"empty key is not supported in selector: {pair}")
        if "*" in key or (isinstance(value, str) and "*" in value):
            report.error(join_key(path, key), f"wildcard is not supported in selector: {pair}")


def workload_selector(report: Report, path: str, selector: dict[str, Any] | None) -> None:
    """A ``selector: {matchLabels: ...}`` (security, telemetry, extensions, ProxyConfig)."""
    if selector is None:
        return
    labels = mapping(selector, "matchLabels")
    selector_labels(report, join_key(path, "matchLabels"), labels)
    if not labels:
        report.warn(path, "workload selector specified without labels")


_TARGET_KINDS = (
    ("Service", "core"),
    ("ServiceEntry", "networking.istio.io"),
    ("Gateway", "gateway.networking.k8s.io"),
    ("GatewayClass", "gateway.networking.k8s.io"),
)
_TARGET_TEXT = (
    "[/v1, Kind=Service networking.istio.io/v1, Kind=ServiceEntry "
    "gateway.networking.k8s.io/v1, Kind=Gateway gateway.networking.k8s.io/v1, Kind=GatewayClass]"
)


def target_ref(report: Report, path: str, ref: dict[str, Any] | None) -> None:
    if ref is None:
        return
    if not text(ref, "name"):
        report.error(path, "targetRef name must be set")
    if text(ref, "namespace"):
        report.error(
            join_key(path, "namespace"),
            "targetRef namespace must not be set; cross namespace referencing is not supported",
        )
    group = text(ref, "group") or "core"
    if (text(ref, "kind"), group) not in _TARGET_KINDS:
        report.error(
            path,
            f"targetRef must be to one of {_TARGET_TEXT} but was "
            f"{text(ref, 'group')}/{text(ref, 'kind')}",
        )


def policy_targets(report: Report, spec: dict[str, Any], *, single_ref: bool = True) -> None:
    """``selector``, ``targetRef`` and ``targetRefs``: at most one kind of them, each valid."""
    selector = obj(spec, "selector")
    ref = obj(spec, "targetRef") if single_ref else None
    refs = items(spec, "targetRefs")
    if sum((selector is not None, ref is not None, bool(refs))) > 1:
        report.error("spec", "only one of targetRefs or workloadSelector can be set")
    workload_selector(report, "spec.selector", selector)
    target_ref(report, "spec.targetRef", ref)
    for i, item in enumerate(refs):
        target_ref(report, f"spec.targetRefs[{i}]", item if isinstance(item, dict) else None)


def export_to(
    report: Report,
    path: str,
    namespace: str,
    entries: list[Any],
    *,
    service_entry: bool = False,
    dr_with_selector: bool = False,
) -> None:
    """``exportTo``: ``.``, ``*``, a namespace (and ``~`` for a ServiceEntry), no repeats."""
    if not entries:
        return
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, str):
            continue
        here = f"{path}[{i}]"
        key = namespace if entry == "." else entry
        if key in seen:
            if key != entry:
                report.error(
                    here, f"duplicate entries in exportTo: . and current namespace {namespace}"
                )
            else:
                report.error(here, f"duplicate entries in exportTo for entry {entry}")
        elif service_entry and entry == "~":
            seen.add(key)
        elif key == "~":
            report.error(here, "exportTo ~ (none) is not allowed for Istio configuration objects")
        elif key not in (".", "*") and not is_label(key):
            report.error(here, "only .,*, or a valid DNS 1123 label is allowed as exportTo entry")
        else:
            seen.add(key)
    if dr_with_selector and seen:
        if namespace in seen:
            if len(seen) > 1:
                report.error(
                    path,
                    "destination rule with workload selector cannot have multiple entries "
                    "in exportTo",
                )
        else:
            report.error(
                path,
                "destination rule with workload selector cannot have exportTo beyond current "
                "namespace",
            )
    if "*" in seen and len(entries) > 1:
        report.error(
            path, "cannot have both public (*) and non-public exportTo values for a resource"
        )
    if "~" in seen and len(entries) > 1:
        report.error(path, "cannot export service entry to no one (~) and someone")


# --- Go formatting ---------------------------------------------------------------------------


def go_quote(value: str) -> str:
    """Go's ``%q`` of a string (double quotes, backslash escapes), cut short when very long.

    Values come from users: a 1 MB host would otherwise make a 1 MB message.
    """
    cut = len(value) > _QUOTE_MAX
    out = ['"']
    for char in value[:_QUOTE_MAX]:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        else:
            out.append(char)
    out.append('"')
    if cut:
        out.append(f"... ({len(value)} characters)")
    return "".join(out)


def clip(value: str) -> str:
    """``value`` for a message where Go prints it bare (``%s``), cut short when very long."""
    if len(value) <= _QUOTE_MAX:
        return value
    return f"{value[:_QUOTE_MAX]}... ({len(value)} characters)"
