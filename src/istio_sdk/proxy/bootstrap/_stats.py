"""Stats tags and the stats matcher of a bootstrap, with the sidecar.istio.io annotations."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence

from istio_sdk.api.istio.mesh.v1alpha1 import ProxyConfig

log = logging.getLogger("istio_sdk.proxy.bootstrap")

EXTRA_STAT_TAGS_ANNOTATION = "sidecar.istio.io/extraStatTags"
INCLUSION_PREFIXES_ANNOTATION = "sidecar.istio.io/statsInclusionPrefixes"
INCLUSION_SUFFIXES_ANNOTATION = "sidecar.istio.io/statsInclusionSuffixes"
INCLUSION_REGEXPS_ANNOTATION = "sidecar.istio.io/statsInclusionRegexps"
HISTOGRAM_BUCKETS_ANNOTATION = "sidecar.istio.io/statsHistogramBuckets"
FLUSH_INTERVAL_ANNOTATION = "sidecar.istio.io/statsFlushInterval"
EVICTION_INTERVAL_ANNOTATION = "sidecar.istio.io/statsEvictionInterval"

# Stats the agent itself needs (readiness and draining read them).
REQUIRED_PREFIXES = ("cluster_manager", "listener_manager", "server", "cluster.xds-grpc", "wasm")
RBAC_SUFFIXES = ("rbac.allowed", "rbac.denied", "shadow_allowed", "shadow_denied")
DRAIN_SUFFIX = "downstream_cx_active"
REQUIRED_REGEXPS = (r"vhost\..*\.route\..*",)

# Envoy's built-in tag extractors that Istio keeps, in Istio's order; then the extra tags,
# then Istio's own.
BUILTIN_TAGS: tuple[tuple[str, str], ...] = (
    ("cluster_name", r"^cluster(\.(.+);)"),
    (
        "http_conn_manager_prefix",
        r"^http\.(((?:[_.[:digit:]\w]*|[_\[\]aAbBcCdDeEfF[:digit:]\w\:]*));\.)",
    ),
    ("thread_name", r"^server(\.(.+))\.watchdog"),
    ("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
    ("response_code", r"_rq(_(\d{3}))$"),
    ("response_code_class", r"_rq(_(\dxx))$"),
    (
        "http_conn_manager_listener_prefix",
        r"^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
    ),
    ("listener_address", r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"),
    ("mongo_prefix", r"^mongo\.(.+?)\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$"),
)
ISTIO_TAGS: tuple[tuple[str, str], ...] = (
    ("cache", r"(cache\.(.+?)\.)"),
    ("component", r"(component\.(.+?)\.)"),
    ("tag", r"(tag\.(.+?);\.)"),
    ("wasm_filter", r"(wasm_filter\.(.+?)\.)"),
    ("authz_enforce_result", r"rbac(\.(allowed|denied))"),
    ("authz_dry_run_action", r"(\.istio_dry_run_(allow|deny)_)"),
    ("authz_dry_run_result", r"(\.shadow_(allowed|denied))"),
)


def extra_stat_tags(proxy_config: ProxyConfig, annotations: Mapping[str, str]) -> list[str]:
    """ProxyConfig's ``extraStatTags`` then the annotation's, empty names and repeats dropped."""
    tags = [t for t in proxy_config.extra_stat_tags if t]
    tags += [t for t in annotations.get(EXTRA_STAT_TAGS_ANNOTATION, "").split(",") if t]
    return list(dict.fromkeys(tags))


def stat_tags(extra: Sequence[str]) -> list[tuple[str, str]]:
    """``(tag name, regex)`` for every tag extractor, extra tags between Envoy's and Istio's."""
    extra_tags = [(tag, rf"({tag}=\.=(.*?);\.;)") for tag in extra]
    return [*BUILTIN_TAGS, *extra_tags, *ISTIO_TAGS]


def _inclusion(
    annotation: str, required: Sequence[str], configured: Sequence[str] | None, ips: Sequence[str]
) -> list[str]:
    # The annotation replaces ProxyConfig's list (they are not merged); the required
    # patterns are always added.
    patterns = annotation.split(",") if annotation else list(configured or ())
    patterns += list(required)
    result: list[str] = []
    for pattern in patterns:
        if "{pod_ip}" in pattern:
            result += [pattern.replace("{pod_ip}", ip) for ip in ips]
        else:
            result.append(pattern)
    return result


def inclusion_patterns(
    proxy_config: ProxyConfig,
    annotations: Mapping[str, str],
    instance_ips: Sequence[str],
    *,
    exit_on_zero_active_connections: bool,
) -> tuple[list[str], list[str], list[str]]:
    """The stats matcher's prefixes, suffixes and regexes (``{pod_ip}`` expanded per IP)."""
    matcher = proxy_config.proxy_stats_matcher
    suffixes = [*RBAC_SUFFIXES, DRAIN_SUFFIX] if exit_on_zero_active_connections else RBAC_SUFFIXES
    return (
        _inclusion(
            annotations.get(INCLUSION_PREFIXES_ANNOTATION, ""),
            REQUIRED_PREFIXES,
            matcher.inclusion_prefixes if matcher else None,
            instance_ips,
        ),
        _inclusion(
            annotations.get(INCLUSION_SUFFIXES_ANNOTATION, ""),
            suffixes,
            matcher.inclusion_suffixes if matcher else None,
            instance_ips,
        ),
        _inclusion(
            annotations.get(INCLUSION_REGEXPS_ANNOTATION, ""),
            REQUIRED_REGEXPS,
            matcher.inclusion_regexps if matcher else None,
            instance_ips,
        ),
    )


def histogram_buckets(annotations: Mapping[str, str]) -> list[tuple[str, list[float]]]:
    """``(prefix, buckets)`` from the annotation, sorted by prefix; a malformed value is
    logged and ignored, as pilot-agent does."""
    text = annotations.get(HISTOGRAM_BUCKETS_ANNOTATION)
    if text is None:
        return []
    try:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        buckets = []
        for prefix, numbers in value.items():
            if not isinstance(numbers, list) or not all(
                isinstance(n, int | float) and not isinstance(n, bool) and math.isfinite(n)
                for n in numbers
            ):
                raise ValueError(f"buckets of {prefix!r} are not a list of numbers")
            buckets.append((prefix, [float(n) for n in numbers]))
    except (ValueError, RecursionError) as exc:  # RecursionError: the decoder's depth guard
        log.warning("ignoring annotation %s: %s", HISTOGRAM_BUCKETS_ANNOTATION, exc)
        return []
    return sorted(buckets)
