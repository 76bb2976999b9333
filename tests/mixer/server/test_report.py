"""Report through the wire: Prometheus metrics at /metrics in Istio's names, stdio log lines."""

from __future__ import annotations

import datetime
import io
import json

import httpx
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from prometheus_client.parser import text_string_to_metric_families
from support.mixer_server import serve

from istio_sdk.mixer import ReportEncoding, encode_report

METRICS = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: prometheus, namespace: istio-system}
spec:
  compiledAdapter: prometheus
  params:
    metrics:
    - name: requests_total
      instanceName: requestcount.instance.istio-system
      kind: COUNTER
      labelNames: [reporter, source_workload, destination_service, response_code]
    - name: request_duration_seconds
      instanceName: requestduration.instance.istio-system
      kind: DISTRIBUTION
      labelNames: [destination_service]
      buckets:
        explicitBuckets: {bounds: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requestcount, namespace: istio-system}
spec:
  compiledTemplate: metric
  params:
    value: "1"
    dimensions:
      reporter: >-
        conditional((context.reporter.kind | "inbound") == "outbound", "source", "destination")
      source_workload: source.workload.name | "unknown"
      destination_service: destination.service.host | "unknown"
      response_code: response.code | 200
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requestduration, namespace: istio-system}
spec:
  compiledTemplate: metric
  params:
    value: response.duration | "0ms"
    dimensions:
      destination_service: destination.service.host | "unknown"
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: promhttp, namespace: istio-system}
spec:
  match: >-
    (context.protocol == "http" || context.protocol == "grpc") &&
    (match((request.useragent | "-"), "kube-probe*") == false)
  actions:
  - handler: prometheus
    instances: [requestcount, requestduration]
"""

CALL = {
    "context.protocol": "http",
    "source.workload.name": "productpage-v1",
    "destination.service.host": "reviews.default.svc.cluster.local",
    "response.code": 200,
    "response.duration": datetime.timedelta(milliseconds=30),
    "request.useragent": "curl/7.64",
}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


async def test_reports_show_up_at_metrics_under_istios_names() -> None:
    async with serve(METRICS) as (server, proxy):
        port = await server.start_prometheus("127.0.0.1", 0)
        probe = CALL | {"request.useragent": "kube-probe/1.15"}
        failed = CALL | {"response.code": 503}
        await proxy.report([CALL, CALL, probe, failed, {"context.protocol": "tcp"}])
        async with httpx.AsyncClient() as client:
            page = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert page.status_code == 200
        found = samples(page.text)
        labels = {
            "reporter": "destination",
            "source_workload": "productpage-v1",
            "destination_service": "reviews.default.svc.cluster.local",
        }
        ok = frozenset((labels | {"response_code": "200"}).items())
        bad = frozenset((labels | {"response_code": "503"}).items())
        assert found[("istio_requests_total", ok)] == 2.0  # the probe is not counted
        assert found[("istio_requests_total", bad)] == 1.0
        service = frozenset({"destination_service": labels["destination_service"]}.items())
        assert found[("istio_request_duration_seconds_count", service)] == 3.0
        assert found[("istio_request_duration_seconds_sum", service)] == pytest.approx(0.09)
        bucket = frozenset(service | {("le", "0.05")})
        assert found[("istio_request_duration_seconds_bucket", bucket)] == 3.0


async def test_delta_encoded_reports_are_counted_too() -> None:
    async with serve(METRICS) as (server, proxy):
        second = CALL | {"response.code": 404}
        for request in encode_report([CALL, second], encoding=ReportEncoding.DELTA):
            await proxy.stub.report(request, timeout=10)
        found = samples(server.metrics_text().decode())
        codes = {
            dict(labels)["response_code"]
            for (name, labels), _ in found.items()
            if name == "istio_requests_total"
        }
        assert codes == {"200", "404"}


ACCESS_LOG = """
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: stdio, namespace: istio-system}
spec:
  compiledAdapter: stdio
  params: {}
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: accesslog, namespace: istio-system}
spec:
  compiledTemplate: logentry
  params:
    severity: '"WARNING"'
    timestamp: request.time
    variables:
      source: source.workload.name | "unknown"
      responseCode: response.code | 0
      latency: response.duration | "0ms"
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: stdio, namespace: istio-system}
spec:
  match: context.protocol == "http"
  actions:
  - handler: stdio
    instances: [accesslog]
"""


async def test_stdio_writes_one_json_line_per_reported_request() -> None:
    out = io.StringIO()
    async with serve(ACCESS_LOG, adapter_options={"stdio": {"stream": out}}) as (_, proxy):
        when = datetime.datetime(2019, 9, 12, 8, 30, 1, tzinfo=datetime.UTC)
        await proxy.report([CALL | {"request.time": when}, {"context.protocol": "tcp"}])
        lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "level": "warn",
            "time": "2019-09-12T08:30:01.000000Z",
            "instance": "accesslog.instance.istio-system",
            "latency": "30ms",
            "responseCode": 200,
            "source": "productpage-v1",
        }
    ]


async def test_a_report_whose_instance_cannot_be_built_is_unknown_and_the_server_goes_on() -> None:
    out = io.StringIO()
    async with serve(ACCESS_LOG, adapter_options={"stdio": {"stream": out}}) as (_, proxy):
        with pytest.raises(GRPCError) as raised:
            await proxy.report([CALL])  # no request.time: the timestamp cannot be evaluated
        assert raised.value.status is Status.UNKNOWN
        assert "lookup failed: 'request.time'" in str(raised.value.message)
        when = datetime.datetime(2019, 9, 12, 8, 30, 1, tzinfo=datetime.UTC)
        await proxy.report([CALL | {"request.time": when}])
        assert len(out.getvalue().splitlines()) == 1
