"""prometheus: Istio 1.3's default metrics and labels, rendered and parsed back."""

from __future__ import annotations

import datetime
import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from istio_sdk.mixer.adapters import AdapterError, AdapterParamsError, PrometheusHandler
from istio_sdk.mixer.adapters.prometheus import (
    HTTP_LABELS,
    TCP_LABELS,
    PrometheusParams,
    istio_default_params,
    safe_name,
)
from istio_sdk.mixer.templates import LogEntry, Metric

NS = "istio-system"


def default_handler(clock: object = None) -> PrometheusHandler:
    params = PrometheusParams.from_dict(istio_default_params(NS))
    if clock is None:
        return PrometheusHandler("prometheus.handler.istio-system", params)
    return PrometheusHandler("prometheus.handler.istio-system", params, clock=clock)  # type: ignore[arg-type]


def http_dims(**overrides: object) -> dict[str, object]:
    dims: dict[str, object] = dict.fromkeys(HTTP_LABELS, "unknown")
    dims.update(reporter="destination", response_code=200, request_protocol="http")
    dims.update(overrides)
    return dims


def families(handler: PrometheusHandler) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(handler.render().decode())}


def test_default_metrics_render_with_istios_names_and_labels() -> None:
    handler = default_handler()
    dims = http_dims()
    tcp = dict.fromkeys(TCP_LABELS, "unknown")
    handler.record(
        [
            Metric(f"requestcount.instance.{NS}", 1, dims),
            Metric(f"requestcount.instance.{NS}", "1", dims),
            Metric(f"requestduration.instance.{NS}", datetime.timedelta(milliseconds=30), dims),
            Metric(f"requestsize.instance.{NS}", 1500, dims),
            Metric(f"tcpbytesent.instance.{NS}", 512, tcp),
        ]
    )
    text = handler.render().decode()
    assert "# TYPE istio_requests_total counter" in text
    assert "# TYPE istio_request_duration_seconds histogram" in text
    assert "_created" not in text
    parsed = families(handler)
    samples = {(s.name, s.labels.get("le")): s for f in parsed.values() for s in f.samples}  # type: ignore[attr-defined]
    total = samples[("istio_requests_total", None)]
    assert total.value == 2
    assert set(total.labels) == set(HTTP_LABELS)
    assert total.labels["response_code"] == "200"
    assert samples[("istio_request_duration_seconds_bucket", "0.025")].value == 0
    assert samples[("istio_request_duration_seconds_bucket", "0.05")].value == 1
    assert samples[("istio_request_duration_seconds_sum", None)].value == pytest.approx(0.03)
    # exponential scale 1, factor 10, 8 finite buckets: 9 bounds 1..1e8, then +Inf
    size_bounds = sorted(
        float(s.labels["le"])
        for s in parsed["istio_request_bytes"].samples  # type: ignore[attr-defined]
        if s.name.endswith("_bucket")
    )
    assert size_bounds[:-1] == [10.0**i for i in range(9)] and math.isinf(size_bounds[-1])
    assert samples[("istio_request_bytes_bucket", "1000")].value == 0
    assert samples[("istio_request_bytes_bucket", "10000")].value == 1
    tcp_total = samples[("istio_tcp_sent_bytes_total", None)]
    assert (tcp_total.value, len(tcp_total.labels)) == (512, 16)


def test_bad_instances_are_reported_together_and_the_good_ones_recorded() -> None:
    handler = default_handler()
    with pytest.raises(AdapterError) as caught:
        handler.record(
            [
                Metric(f"requestcount.instance.{NS}", 1, {"reporter": "source"}),
                Metric(f"requestcount.instance.{NS}", "ten", http_dims()),
                Metric(f"requestcount.instance.{NS}", True, http_dims()),
                Metric(f"requestcount.instance.{NS}", -1, http_dims()),
                Metric("unknown.instance.ns", 1, http_dims()),
                LogEntry("accesslog.instance.ns"),
                Metric(f"requestcount.instance.{NS}", 1, http_dims(source_app="ok")),
            ]
        )
    message = str(caught.value)
    assert "are not the labels of istio_requests_total" in message
    assert "parsing 'ten': invalid syntax" in message
    assert "could not extract numeric value for True" in message
    assert "cannot decrease" in message
    assert "could not find metric info from adapter config for unknown.instance.ns" in message
    assert "metric instances only" in message
    parsed = families(handler)
    samples = parsed["istio_requests"].samples  # type: ignore[attr-defined]
    assert [s.labels["source_app"] for s in samples] == ["ok"]


def test_gauge_linear_buckets_and_safe_names() -> None:
    handler = PrometheusHandler(
        "p.handler.ns",
        PrometheusParams.from_dict(
            {
                "metrics": [
                    {
                        "namespace": "my-app",
                        "name": "queue.depth",
                        "instanceName": "q.instance.ns",
                        "kind": "GAUGE",
                        "labelNames": ["pod-name"],
                    },
                    {
                        "name": "/lat ency",
                        "instance_name": "l.instance.ns",
                        "kind": 3,
                        "buckets": {
                            "linearBuckets": {"numFiniteBuckets": 2, "width": 5, "offset": 1}
                        },
                    },
                ]
            }
        ),
    )
    handler.record(
        [
            Metric("q.instance.ns", 3.5, {"podname": "a"}),
            Metric("q.instance.ns", 2, {"podname": "a"}),
        ]
    )
    handler.record([Metric("l.instance.ns", 7, {})])
    parsed = families(handler)
    assert [s.value for s in parsed["myapp_queue_depth"].samples] == [2.0]  # type: ignore[attr-defined]
    bounds = [
        s.labels["le"] for s in parsed["istio_lat_ency"].samples if s.name.endswith("_bucket")
    ]  # type: ignore[attr-defined]
    assert bounds == ["1", "6", "11", "+Inf"]  # Go's %g, as Istio's exporter
    assert safe_name("/a.b c-d/e") == "a_b_cd_e"


def test_series_expire_after_the_expiry_duration() -> None:
    now = [0.0]
    handler = default_handler(clock=lambda: now[0])
    handler.record([Metric(f"requestcount.instance.{NS}", 1, http_dims(source_app="old"))])
    now[0] = 400
    handler.record([Metric(f"requestcount.instance.{NS}", 1, http_dims(source_app="new"))])
    now[0] = 701  # the check after 10 m (checks run every 5 m): "old" is gone, "new" is not
    samples = families(handler)["istio_requests"].samples  # type: ignore[attr-defined]
    assert [s.labels["source_app"] for s in samples] == ["new"]


def test_handlers_have_their_own_registries() -> None:
    first, second = default_handler(), default_handler()
    first.record([Metric(f"requestcount.instance.{NS}", 1, http_dims())])
    assert "istio_requests_total{" in first.render().decode()
    assert "istio_requests_total{" not in second.render().decode()


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ({"name": "x", "kind": "COUNTER"}, "instanceName: a metric needs"),
        ({"instanceName": "a.b", "kind": "HISTOGRAM"}, "unknown value 'HISTOGRAM'"),
        ({"instanceName": "a.b"}, "unknown metric kind"),
        ({"instanceName": "a.b", "name": "a!b", "kind": 1}, "'istio_a!b'"),
        ({"instanceName": "a.b", "kind": 1, "labelNames": ["a", "a"]}, "given twice"),
        ({"instanceName": "a.b", "kind": 1, "labelNames": ["__x"]}, "not a valid label name"),
        ({"instanceName": "a.b", "kind": 3, "labelNames": ["le"]}, "reserved"),
        (
            {"instanceName": "a.b", "kind": 3, "buckets": {"explicitBuckets": {"bounds": [2, 1]}}},
            "increasing",
        ),
        (
            {"instanceName": "a.b", "kind": 3, "buckets": {"explicitBuckets": {"bounds": ["NaN"]}}},
            "finite",
        ),
        (
            {
                "instanceName": "a.b",
                "kind": 3,
                "buckets": {
                    "exponentialBuckets": {"numFiniteBuckets": 3, "growthFactor": 1, "scale": 1}
                },
            },
            "growth factor must be > 1",
        ),
        (
            {
                "instanceName": "a.b",
                "kind": 3,
                "buckets": {
                    "exponentialBuckets": {
                        "numFiniteBuckets": 5000,
                        "growthFactor": 1e10,
                        "scale": 1,
                    }
                },
            },
            "not a finite number",
        ),
        (
            {
                "instanceName": "a.b",
                "kind": 3,
                "buckets": {"linearBuckets": {"numFiniteBuckets": 3, "width": 0}},
            },
            "width must be",
        ),
        (
            {
                "instanceName": "a.b",
                "kind": 3,
                "buckets": {"linearBuckets": {}, "explicitBuckets": {}},
            },
            "only one",
        ),
    ],
)
def test_bad_metric_params(metric: dict[str, object], message: str) -> None:
    with pytest.raises(AdapterParamsError) as caught:
        PrometheusParams.from_dict({"metrics": [metric]})
    assert message in str(caught.value)


def test_bad_policy_and_duplicates() -> None:
    with pytest.raises(AdapterParamsError, match="metricsExpiryDuration 0:00:00 is invalid"):
        PrometheusParams.from_dict({"metricsExpirationPolicy": {}})
    twice = {"instanceName": "a.b", "kind": 1}
    with pytest.raises(AdapterParamsError, match="is given twice"):
        PrometheusParams.from_dict({"metrics": [twice, twice]})


def test_a_counter_is_served_under_its_configured_name() -> None:
    # Mixer's Go client never appends _total: a counter named foo_count is scraped as
    # istio_foo_count, and Istio's own requests_total keeps its one _total
    handler = PrometheusHandler(
        "p.handler.ns",
        PrometheusParams.from_dict(
            {
                "metrics": [
                    {"name": "foo_count", "instanceName": "f.instance.ns", "kind": "COUNTER"},
                    {"name": "requests_total", "instanceName": "r.instance.ns", "kind": "COUNTER"},
                ]
            }
        ),
    )
    handler.record([Metric("f.instance.ns", 3, {}), Metric("r.instance.ns", 2, {})])
    lines = handler.render().decode().splitlines()
    assert "# TYPE istio_foo_count counter" in lines
    assert "istio_foo_count 3.0" in lines
    assert "# TYPE istio_requests_total counter" in lines
    assert "istio_requests_total 2.0" in lines
    assert not [line for line in lines if "_total_total" in line or "foo_count_total" in line]
