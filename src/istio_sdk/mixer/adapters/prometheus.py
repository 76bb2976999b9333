"""``prometheus``: metric instances become Prometheus series, in Istio 1.3's names.

Each handler owns a ``prometheus_client`` :class:`~prometheus_client.CollectorRegistry`
(``handler.registry``); :meth:`PrometheusHandler.render` gives the text format a scrape of
Mixer's ``:42422/metrics`` returns (the HTTP endpoint is the server's part). Params are
``adapter.prometheus.config.Params``: ``metrics`` (``name``, ``namespace`` (default ``istio``),
``instanceName`` (the metric instance's full name), ``description``, ``kind`` GAUGE / COUNTER /
DISTRIBUTION, ``buckets`` (linear, exponential or explicit), ``labelNames``) and
``metricsExpirationPolicy``. As in Istio: names and labels go through ``safeName`` (a leading
``/`` dropped, ``/ . space`` to ``_``, ``-`` deleted); linear and exponential definitions give
``numFiniteBuckets + 1`` bounds; a gauge is set, a counter added to, a distribution observed;
values may be numbers, numeric strings or durations (seconds); the dimensions must be exactly
the label names. :data:`ISTIO_METRICS` and :func:`istio_default_params` are the handler that
Istio 1.3's Helm chart installs (``istio_requests_total``, ``istio_request_duration_seconds``...).

One difference: the text format of ``prometheus_client`` names a counter's samples
``<name>_total``; Istio's counters all end in ``_total`` already, so their names are Istio's.
"""

from __future__ import annotations

import bisect
import datetime
import enum
import itertools
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import attrs
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import (
    Metric as PromMetric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from istio_sdk._metrics import render_metrics
from istio_sdk.config import _go
from istio_sdk.mixer.adapters import _values
from istio_sdk.mixer.adapters._params import Reader
from istio_sdk.mixer.adapters.base import AdapterError, Handler
from istio_sdk.mixer.templates import Metric, ReportInstance, Value

_READ = Reader("prometheus")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Go client's ``prometheus.DefBuckets``, used when a distribution defines none."""


class Kind(enum.Enum):
    UNSPECIFIED = 0
    GAUGE = 1
    COUNTER = 2
    DISTRIBUTION = 3


def safe_name(name: str) -> str:
    """Istio's ``safeName``: drop a leading ``/``, map ``/ . space`` to ``_``, delete ``-``."""
    text = name.removeprefix("/")
    return text.replace("/", "_").replace(".", "_").replace(" ", "_").replace("-", "")


@attrs.frozen
class MetricInfo:
    instance_name: str
    full_name: str  # namespace_name, as exported
    description: str
    kind: Kind
    label_names: tuple[str, ...]
    buckets: tuple[float, ...] = ()


def _buckets(path: str, value: object) -> tuple[float, ...]:
    kinds = ["linear_buckets", "exponential_buckets", "explicit_buckets"]
    found = _READ.fields(value, path, kinds)
    if len(found) > 1:
        raise _READ.error(
            path, "give only one of linearBuckets, exponentialBuckets, explicitBuckets"
        )
    if not found:
        return DEFAULT_BUCKETS
    name, (bpath, definition) = next(iter(found.items()))
    if name == "explicit_buckets":
        parts = _READ.fields(definition, bpath, ["bounds"])
        bounds = [_READ.number(p, v) for p, v in (_READ.items(*parts["bounds"]) if parts else [])]
        if not bounds:
            return DEFAULT_BUCKETS
        if any(not math.isfinite(b) for b in bounds):
            raise _READ.error(f"{bpath}.bounds", "bounds must be finite numbers")
        if any(a >= b for a, b in itertools.pairwise(bounds)):
            raise _READ.error(f"{bpath}.bounds", "bounds must be in increasing order")
        return tuple(bounds)
    if name == "linear_buckets":
        parts = _READ.fields(definition, bpath, ["num_finite_buckets", "width", "offset"])
        count = (
            _READ.integer(*parts["num_finite_buckets"], bits=32)
            if "num_finite_buckets" in parts
            else 0
        )
        width = _READ.number(*parts["width"]) if "width" in parts else 0.0
        offset = _READ.number(*parts["offset"]) if "offset" in parts else 0.0
        if count < 0 or count > 10_000:
            raise _READ.error(f"{bpath}.numFiniteBuckets", "must be between 0 and 10000")
        if not (width > 0 and math.isfinite(width) and math.isfinite(offset)):
            raise _READ.error(f"{bpath}.width", "width must be a finite number > 0")
        return tuple(offset + width * i for i in range(count + 1))
    parts = _READ.fields(definition, bpath, ["num_finite_buckets", "growth_factor", "scale"])
    count = (
        _READ.integer(*parts["num_finite_buckets"], bits=32) if "num_finite_buckets" in parts else 0
    )
    growth = _READ.number(*parts["growth_factor"]) if "growth_factor" in parts else 0.0
    scale = _READ.number(*parts["scale"]) if "scale" in parts else 0.0
    if count < 0 or count > 10_000:
        raise _READ.error(f"{bpath}.numFiniteBuckets", "must be between 0 and 10000")
    if not (growth > 1 and math.isfinite(growth)):
        raise _READ.error(f"{bpath}.growthFactor", "growth factor must be > 1")
    if not (scale > 0 and math.isfinite(scale)):
        raise _READ.error(f"{bpath}.scale", "scale must be > 0")
    try:
        exponential = tuple(scale * growth**i for i in range(count + 1))
    except OverflowError:
        exponential = (math.inf,)
    if not all(math.isfinite(b) for b in exponential):
        raise _READ.error(bpath, "the largest bound is not a finite number")
    return exponential


def _metric(path: str, value: object) -> MetricInfo:
    names = ["namespace", "name", "instance_name", "description", "kind", "buckets", "label_names"]
    m = _READ.fields(value, path, names)
    instance = _READ.string(*m["instance_name"]) if "instance_name" in m else ""
    if not instance:
        raise _READ.error(f"{path}.instanceName", "a metric needs the instance's full name")
    namespace = safe_name(_READ.string(*m["namespace"])) if "namespace" in m else ""
    name = _READ.string(*m["name"]) if "name" in m else ""
    full = f"{namespace or 'istio'}_{safe_name(name or instance)}"
    if not _METRIC_NAME.fullmatch(full):
        raise _READ.error(f"{path}.name", f"{full!r} is not a valid Prometheus metric name")
    kind = _READ.enum(*m["kind"], Kind) if "kind" in m else Kind.UNSPECIFIED
    if kind is Kind.UNSPECIFIED:
        raise _READ.error(
            f"{path}.kind", "unknown metric kind: give GAUGE, COUNTER or DISTRIBUTION"
        )
    labels = (
        tuple(safe_name(label) for label in _READ.strings(*m["label_names"]))
        if ("label_names" in m)
        else ()
    )
    seen: set[str] = set()
    for index, label in enumerate(labels):
        if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
            raise _READ.error(f"{path}.labelNames[{index}]", f"{label!r} is not a valid label name")
        if kind is Kind.DISTRIBUTION and label == "le":
            raise _READ.error(f"{path}.labelNames[{index}]", "'le' is reserved for histograms")
        if label in seen:
            raise _READ.error(f"{path}.labelNames[{index}]", f"label {label!r} is given twice")
        seen.add(label)
    buckets: tuple[float, ...] = ()
    if kind is Kind.DISTRIBUTION:
        buckets = _buckets(*m["buckets"]) if "buckets" in m else DEFAULT_BUCKETS
    description = _READ.string(*m["description"]) if "description" in m else ""
    return MetricInfo(instance, full, description or name or instance, kind, labels, buckets)


@attrs.frozen
class PrometheusParams:
    metrics: tuple[MetricInfo, ...] = ()
    metrics_expiry_duration: datetime.timedelta | None = None
    expiry_check_interval_duration: datetime.timedelta | None = None

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> PrometheusParams:
        found = _READ.fields(params, "", ["metrics", "metrics_expiration_policy"])
        metrics = [
            _metric(p, v) for p, v in (_READ.items(*found["metrics"]) if "metrics" in found else [])
        ]
        instances: set[str] = set()
        names: set[str] = set()
        for index, info in enumerate(metrics):
            if info.instance_name in instances:
                raise _READ.error(
                    f"metrics[{index}].instanceName", f"{info.instance_name!r} is given twice"
                )
            if info.full_name in names:
                raise _READ.error(
                    f"metrics[{index}].name", f"metric {info.full_name!r} is defined twice"
                )
            instances.add(info.instance_name)
            names.add(info.full_name)
        expiry = check = None
        if "metrics_expiration_policy" in found:
            ppath, policy = found["metrics_expiration_policy"]
            p = _READ.fields(
                policy, ppath, ["metrics_expiry_duration", "expiry_check_interval_duration"]
            )
            expiry = (
                _READ.duration(*p["metrics_expiry_duration"])
                if "metrics_expiry_duration" in p
                else datetime.timedelta(0)
            )
            if expiry <= datetime.timedelta(0):
                raise _READ.error(
                    f"{ppath}.metricsExpiryDuration",
                    f"metricsExpiryDuration {expiry} is invalid, must be > 0",
                )
            check = expiry / 2
            if "expiry_check_interval_duration" in p:
                check = _READ.duration(*p["expiry_check_interval_duration"]) or check
        return cls(tuple(metrics), expiry, check)


class _Series:
    __slots__ = ("buckets", "count", "touched", "value")

    def __init__(self, size: int) -> None:
        self.value = 0.0  # gauge/counter value, or the histogram's sum
        self.count = 0
        self.buckets = [0] * size
        self.touched = 0.0


def prom_value(value: Value) -> float:
    """Istio's ``promValue``: numbers, numeric strings and durations (in seconds)."""
    if isinstance(value, bool):
        raise ValueError(f"could not extract numeric value for {value}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        if not value or any(c.isspace() or c == "_" for c in value):
            raise ValueError(f"strconv.ParseFloat: parsing {value!r}: invalid syntax")
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"strconv.ParseFloat: parsing {value!r}: invalid syntax") from None
    raise ValueError(f"could not extract numeric value for {_values.stringify(value)}")


class _Family(Collector):
    """One configured metric and its series; collected by the handler's registry."""

    def __init__(self, info: MetricInfo) -> None:
        self.info = info
        self.series: dict[tuple[str, ...], _Series] = {}
        self._labels = frozenset(info.label_names)

    def record(self, instance: Metric, now: float) -> None:
        info = self.info
        if instance.dimensions.keys() != self._labels:
            got = ", ".join(sorted(instance.dimensions)) or "none"
            raise ValueError(
                f"dimensions of {instance.name} ({got}) are not the labels of {info.full_name} "
                f"({', '.join(sorted(info.label_names)) or 'none'})"
            )
        amount = prom_value(instance.value)
        if info.kind is Kind.COUNTER and not amount >= 0:
            raise ValueError(f"counter {info.full_name} cannot decrease (value {amount})")
        key = tuple(_values.stringify(instance.dimensions[label]) for label in info.label_names)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = _Series(len(info.buckets))
        series.touched = now
        if info.kind is Kind.GAUGE:
            series.value = amount
        elif info.kind is Kind.COUNTER:
            series.value += amount
        else:
            series.value += amount
            series.count += 1
            index = bisect.bisect_left(info.buckets, amount)
            if index < len(info.buckets):
                series.buckets[index] += 1

    def collect(self) -> Iterable[PromMetric]:
        info = self.info
        labels = list(info.label_names)
        family: GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily
        if info.kind is Kind.GAUGE:
            family = GaugeMetricFamily(info.full_name, info.description, labels=labels)
        elif info.kind is Kind.COUNTER:
            family = CounterMetricFamily(info.full_name, info.description, labels=labels)
            # prometheus_client strips a "_total" ending from the family; give it back, so that
            # render_metrics serves the configured name either way (Go's client adds nothing)
            family.name = info.full_name
        else:
            family = HistogramMetricFamily(info.full_name, info.description, labels=labels)
        for key, series in list(self.series.items()):
            if isinstance(family, HistogramMetricFamily):
                cumulative, running = [], 0
                for bound, hits in zip(info.buckets, series.buckets, strict=True):
                    running += hits
                    cumulative.append((_go.format_float(bound), float(running)))
                cumulative.append(("+Inf", float(series.count)))
                family.add_metric(list(key), cumulative, series.value)
            else:
                family.add_metric(list(key), series.value)
        yield family


class PrometheusHandler(Handler):
    adapter: ClassVar[str] = "prometheus"
    templates: ClassVar[frozenset[str]] = frozenset({"metric"})

    def __init__(
        self,
        name: str,
        params: PrometheusParams,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name)
        self.params = params
        self._clock = clock
        self.registry = CollectorRegistry(auto_describe=False)
        self._families = {info.instance_name: _Family(info) for info in params.metrics}
        for family in self._families.values():
            self.registry.register(family)
        self._next_sweep = clock()

    @classmethod
    async def create(
        cls,
        name: str,
        params: Mapping[str, Any] | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> PrometheusHandler:
        return cls(name, PrometheusParams.from_dict(params), clock=clock)

    def expire(self) -> None:
        """Drop series not updated within ``metricsExpiryDuration`` (checked at most once per
        ``expiryCheckIntervalDuration``; reports and renders call this)."""
        expiry, check = (
            self.params.metrics_expiry_duration,
            self.params.expiry_check_interval_duration,
        )
        now = self._clock()
        if expiry is None or check is None or now < self._next_sweep:
            return
        self._next_sweep = now + check.total_seconds()
        oldest = now - expiry.total_seconds()
        for family in self._families.values():
            for key in [k for k, s in family.series.items() if s.touched <= oldest]:
                del family.series[key]

    async def handle_report(self, instances: Sequence[ReportInstance]) -> None:
        self.record(instances)

    def record(self, instances: Sequence[ReportInstance]) -> None:
        """The synchronous core of :meth:`handle_report`: every valid instance is recorded,
        then one :class:`AdapterError` lists the ones that were not."""
        self.expire()
        now = self._clock()
        problems: list[str] = []
        for instance in instances:
            if not isinstance(instance, Metric):
                problems.append(f"{instance.name}: prometheus handles metric instances only")
                continue
            family = self._families.get(instance.name)
            if family is None:
                problems.append(
                    f"could not find metric info from adapter config for {instance.name}"
                )
                continue
            try:
                family.record(instance, now)
            except ValueError as exc:
                problems.append(f"could not record metric {instance.name}: {exc}")
        if problems:
            raise AdapterError("; ".join(problems))

    def render(self) -> bytes:
        """The Prometheus text format (0.0.4) of this handler's metrics."""
        self.expire()
        return render_metrics(self.registry)


HTTP_LABELS = (
    "reporter",
    "source_app",
    "source_principal",
    "source_workload",
    "source_workload_namespace",
    "source_version",
    "destination_app",
    "destination_principal",
    "destination_workload",
    "destination_workload_namespace",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "request_protocol",
    "response_code",
    "response_flags",
    "permissive_response_code",
    "permissive_response_policyid",
    "connection_security_policy",
)
"""The 20 labels of Istio 1.3's HTTP metrics."""

TCP_LABELS = tuple(
    label
    for label in HTTP_LABELS
    if label
    not in {
        "request_protocol",
        "response_code",
        "permissive_response_code",
        "permissive_response_policyid",
    }
)
"""The 16 labels of Istio 1.3's TCP metrics."""

_SIZE_BUCKETS = {"exponentialBuckets": {"numFiniteBuckets": 8, "scale": 1, "growthFactor": 10}}

ISTIO_METRICS: Sequence[tuple[str, str, str, Mapping[str, Any] | None, tuple[str, ...]]] = (
    ("requests_total", "requestcount", "COUNTER", None, HTTP_LABELS),
    (
        "request_duration_seconds",
        "requestduration",
        "DISTRIBUTION",
        {"explicitBuckets": {"bounds": list(DEFAULT_BUCKETS)}},
        HTTP_LABELS,
    ),
    ("request_bytes", "requestsize", "DISTRIBUTION", _SIZE_BUCKETS, HTTP_LABELS),
    ("response_bytes", "responsesize", "DISTRIBUTION", _SIZE_BUCKETS, HTTP_LABELS),
    ("tcp_sent_bytes_total", "tcpbytesent", "COUNTER", None, TCP_LABELS),
    ("tcp_received_bytes_total", "tcpbytereceived", "COUNTER", None, TCP_LABELS),
    ("tcp_connections_opened_total", "tcpconnectionsopened", "COUNTER", None, TCP_LABELS),
    ("tcp_connections_closed_total", "tcpconnectionsclosed", "COUNTER", None, TCP_LABELS),
)
"""Istio 1.3's default metrics: (name, instance short name, kind, buckets, labels)."""


def istio_default_params(namespace: str = "istio-system", expiry: str = "10m") -> dict[str, Any]:
    """The params of the ``prometheus`` handler Istio 1.3's Helm chart installs."""
    metrics: list[dict[str, Any]] = []
    for name, instance, kind, buckets, labels in ISTIO_METRICS:
        metric: dict[str, Any] = {
            "name": name,
            "instanceName": f"{instance}.instance.{namespace}",
            "kind": kind,
            "labelNames": list(labels),
        }
        if buckets is not None:
            metric["buckets"] = dict(buckets)
        metrics.append(metric)
    return {"metricsExpirationPolicy": {"metricsExpiryDuration": expiry}, "metrics": metrics}
