"""What the Mixer end-to-end tests share: a mesh's policy config as a user writes it in YAML,
and the attribute bags Istio 1.3's sidecar sends (the ``istioproxy`` vocabulary).

The config mixes the two styles Mixer 1.3 read: ``handler``/``instance`` with
``compiledAdapter``/``compiledTemplate``, and the legacy kinds named after the adapter
(``denier``, ``listchecker``, ``memquota``) or the template (``checknothing``, ``listentry``,
``quota``) whose spec is the params.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

POLICY = """
# ratings v3 callers are denied outright
apiVersion: config.istio.io/v1alpha2
kind: denier
metadata: {name: closed, namespace: istio-system}
spec:
  status: {code: 7, message: ratings is closed to v3}
  validDuration: 60s
  validUseCount: 1000
---
apiVersion: config.istio.io/v1alpha2
kind: checknothing
metadata: {name: denyrequest, namespace: istio-system}
spec: {}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: denyratingsv3, namespace: istio-system}
spec:
  match: destination.service.name == "ratings" && source.labels["version"] == "v3"
  actions:
  - handler: closed.denier
    instances: [denyrequest.checknothing]
---
# reviews only takes callers labelled v1 or v2 (a whitelist of strings)
apiVersion: config.istio.io/v1alpha2
kind: listchecker
metadata: {name: versions, namespace: istio-system}
spec:
  overrides: [v1, v2]
  blacklist: false
  cachingInterval: 60s
  cachingUseCount: 3
---
apiVersion: config.istio.io/v1alpha2
kind: listentry
metadata: {name: sourceversion, namespace: istio-system}
spec:
  value: source.labels["version"] | "none"
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: checkversion, namespace: istio-system}
spec:
  match: destination.service.name == "reviews"
  actions:
  - handler: versions.listchecker
    instances: [sourceversion.listentry]
---
# details refuses a blacklisted IP range
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: badnets, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params:
    entryType: IP_ADDRESSES
    blacklist: true
    overrides: ["10.66.0.0/16", "192.0.2.7"]
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: sourceip, namespace: istio-system}
spec:
  compiledTemplate: listentry
  params:
    value: source.ip | ip("0.0.0.0")
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: checkip, namespace: istio-system}
spec:
  match: destination.service.name == "details"
  actions:
  - handler: badnets
    instances: [sourceip]
---
# productpage serves only versioned API paths (a whitelist of regexes)
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata: {name: apipaths, namespace: istio-system}
spec:
  compiledAdapter: listchecker
  params:
    entryType: REGEX
    blacklist: false
    overrides: ["^/api/v[0-9]+/"]
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata: {name: requestpath, namespace: istio-system}
spec:
  compiledTemplate: listentry
  params:
    value: request.path
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: checkpath, namespace: istio-system}
spec:
  match: destination.service.name == "productpage"
  actions:
  - handler: apipaths
    instances: [requestpath]
---
# three calls a minute per destination, in memory
apiVersion: config.istio.io/v1alpha2
kind: memquota
metadata: {name: handler, namespace: istio-system}
spec:
  quotas:
  - name: requestcount.quota.istio-system
    maxAmount: 3
    validDuration: 60s
---
apiVersion: config.istio.io/v1alpha2
kind: quota
metadata: {name: requestcount, namespace: istio-system}
spec:
  dimensions:
    destination: destination.service.name | "unknown"
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: quota, namespace: istio-system}
spec:
  actions:
  - handler: handler.memquota
    instances: [requestcount.quota]
---
# istio_requests_total, as Istio 1.3's Helm chart names it (a subset of its labels)
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
    monitored_resource_type: '"UNSPECIFIED"'
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: promhttp, namespace: istio-system}
spec:
  match: (context.protocol | "http") != "tcp"
  actions:
  - handler: prometheus
    instances: [requestcount]
"""

BROKEN_RULE = """
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: broken, namespace: istio-system}
spec:
  match: destination.service.name == 42
  actions:
  - handler: closed.denier
    instances: [denyrequest.checknothing]
"""
"""A rule whose match does not type-check (STRING == INT64): reported, the others keep working."""

REQUEST_TIME = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)


def inbound(destination: str, **overrides: Any) -> dict[str, Any]:
    """The bag a 1.3 sidecar's inbound listener sends to Mixer for a call to ``destination``
    (override or add attributes by name, with ``.`` written as ``__``: ``request__path``)."""
    bag: dict[str, Any] = {
        "context.reporter.kind": "inbound",
        "context.reporter.uid": f"kubernetes://{destination}-v1-5d9f8.default",
        "context.protocol": "http",
        "context.proxy_version": "1.3.8",
        "connection.mtls": True,
        "source.uid": "kubernetes://productpage-v1-6b746f74dc-9stvs.default",
        "source.ip": ipaddress.ip_address("10.44.1.12"),
        "source.namespace": "default",
        "source.principal": "cluster.local/ns/default/sa/bookinfo-productpage",
        "source.labels": {"app": "productpage", "version": "v1"},
        "source.workload.name": "productpage-v1",
        "destination.uid": f"kubernetes://{destination}-v1-5d9f8.default",
        "destination.ip": ipaddress.ip_address("10.44.2.9"),
        "destination.port": 9080,
        "destination.namespace": "default",
        "destination.service.host": f"{destination}.default.svc.cluster.local",
        "destination.service.name": destination,
        "destination.service.namespace": "default",
        "request.headers": {
            ":authority": f"{destination}:9080",
            ":method": "GET",
            ":path": "/",
            "user-agent": "curl/7.64.0",
            "x-request-id": "6f2b1c8e-1d9a-4d7e-9c57-cf3d1f0a8a11",
        },
        "request.host": f"{destination}:9080",
        "request.method": "GET",
        "request.path": "/",
        "request.scheme": "http",
        "request.time": REQUEST_TIME,
        "request.useragent": "curl/7.64.0",
        "request.id": "6f2b1c8e-1d9a-4d7e-9c57-cf3d1f0a8a11",
    }
    for name, value in overrides.items():
        bag[name.replace("__", ".")] = value
    return bag


def with_labels(bag: dict[str, Any], **labels: str) -> dict[str, Any]:
    """``bag`` with the caller's ``source.labels`` replaced."""
    return {**bag, "source.labels": dict(labels)}


def report_bag(destination: str, code: int, **overrides: Any) -> dict[str, Any]:
    """The bag of a finished request (what the proxy reports): the check bag plus response."""
    bag = inbound(destination, **overrides)
    bag.update(
        {
            "response.code": code,
            "response.size": 295,
            "response.total_size": 512,
            "response.time": REQUEST_TIME + datetime.timedelta(milliseconds=12),
            "response.duration": datetime.timedelta(milliseconds=12),
            "request.size": 0,
            "request.total_size": 213,
        }
    )
    return bag
