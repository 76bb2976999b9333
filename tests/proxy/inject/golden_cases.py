"""Istio's injection golden tests (``pkg/kube/inject/inject_test.go``) as data.

Each case names an input and a golden file in ``testdata/`` (Istio's
``pkg/kube/inject/testdata/inject`` at istio/istio commit
86c9f01fd735fb01d8192f5bcaf0d424afb7f14c, the commit the bootstrap golden files come from,
kept verbatim; Apache 2.0) and the settings Istio's test used, translated from its
``--set`` flags and mesh edits into a values overlay, a mesh config overlay and whether native
sidecars are on (Istio's test detects them from fake 1.33/1.34 nodes, so they are on unless
the case turns them off).

Comparison is of parsed objects. Deliberately ignored (Go's typed round trip writes them, the
injector does not change them): ``creationTimestamp: null``, a workload's ``status`` (Go writes
zero counters), empty ``metadata``/``strategy``/``updateStrategy``/``resources`` mappings, a
DeploymentConfig's zero ``minReadySeconds``/``paused``/``test``. JSON held in strings (the
``sidecar.istio.io/status`` and ``proxy.istio.io/overrides`` annotations, ``PROXY_CONFIG``) is
compared parsed, since Go's field order is not the injector's concern. Images are compared as
they are: the chart's test hub and tag (``registry.istio.io/testing/proxyv2:latest``) are the
default values here too.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import attrs
import yaml

from istio_sdk.proxy.inject import InjectSettings

TESTDATA = pathlib.Path(__file__).resolve().parent / "testdata"


@attrs.frozen
class Case:
    input: str
    golden: str
    values: Mapping[str, Any] = attrs.field(factory=dict)
    mesh: Mapping[str, Any] = attrs.field(factory=dict)
    native: bool = True
    error: str | None = None

    def settings(self) -> InjectSettings:
        return InjectSettings.build(values=self.values, mesh=self.mesh, native_sidecars=self.native)


def _g(**proxy: Any) -> dict[str, Any]:
    return {"global": {"proxy": proxy}}


_CNI = {"pilot": {"cni": {"enabled": True}}}
_OLD = {"native": False}
_STATUS = _g(
    statusPort=123,
    readinessInitialDelaySeconds=100,
    readinessPeriodSeconds=200,
    readinessFailureThreshold=300,
)

SPECIAL: list[Case] = [
    Case(
        "hello.yaml",
        "hello.yaml.cni.injected",
        {"pilot": {"cni": {"enabled": True}}, "global": {"network": "network1"}},
    ),
    Case("hello.yaml", "hello.yaml.proxyImageName.injected", _g(image="proxyTest")),
    Case(
        "hello.yaml",
        "hello.yaml.proxyInitImageName.injected",
        {"global": {"proxy_init": {"image": "proxyInitTest"}}},
    ),
    Case(
        "hello.yaml",
        "hello-tproxy.yaml.injected",
        mesh={"defaultConfig": {"interceptionMode": "TPROXY"}},
    ),
    Case("hello.yaml", "hello-always.yaml.injected", {"global": {"imagePullPolicy": "Always"}}),
    Case("hello.yaml", "hello-never.yaml.injected", {"global": {"imagePullPolicy": "Never"}}),
    Case("hello.yaml", "hello-old-version.yaml.injected", native=False),
    Case(
        "format-duration.yaml",
        "format-duration.yaml.injected",
        mesh={"defaultConfig": {"drainDuration": "23s"}},
    ),
    Case(
        "traffic-params.yaml",
        "traffic-params.yaml.injected",
        _g(
            includeIPRanges="127.0.0.1/24,10.96.0.1/24",
            excludeIPRanges="10.96.0.2/24,10.96.0.3/24",
            excludeInboundPorts="4,5,6",
            statusPort=0,
        ),
    ),
    Case("status_params.yaml", "status_params.yaml.injected", _STATUS),
    Case("kubevirtInterfaces.yaml", "kubevirtInterfaces.yaml.injected", _STATUS),
    Case("reroute-virtual-interfaces.yaml", "reroute-virtual-interfaces.yaml.injected", _STATUS),
    Case(
        "hello.yaml",
        "hello-image-secrets-in-values.yaml.injected",
        {"global": {"imagePullSecrets": ["barSecret"]}},
    ),
    Case(
        "hello-image-pull-secret.yaml",
        "hello-multiple-image-secrets.yaml.injected",
        {"global": {"imagePullSecrets": ["barSecret"]}},
    ),
    Case(
        "hello.yaml", "hello-mount-mtls-certs.yaml.injected", {"global": {"mountMtlsCerts": True}}
    ),
    Case(
        "hello.yaml",
        "hello-cncf-networks.yaml.injected",
        {"pilot": {"cni": {"enabled": True, "provider": "multus"}}},
    ),
    Case(
        "hello-existing-cncf-networks.yaml",
        "hello-existing-cncf-networks.yaml.injected",
        {"pilot": {"cni": {"enabled": True, "provider": "multus"}}},
    ),
    Case(
        "hello-existing-cncf-networks-json.yaml",
        "hello-existing-cncf-networks-json.yaml.injected",
        {"pilot": {"cni": {"enabled": True, "provider": "multus"}}},
    ),
    Case(
        "hello.yaml",
        "hello.proxyHoldsApplication.yaml.injected",
        _g(holdApplicationUntilProxyStarts=True),
    ),
    Case(
        "hello-probes.yaml",
        "hello-probes.proxyHoldsApplication.yaml.injected",
        _g(holdApplicationUntilProxyStarts=True),
    ),
    Case(
        "hello-probes-noProxyHoldApplication-ProxyConfig.yaml",
        "hello-probes-noProxyHoldApplication-ProxyConfig.yaml.injected",
        _g(holdApplicationUntilProxyStarts=True),
    ),
    Case("cronjob.yaml", "cronjob-old-version.yaml.injected", native=False),
    Case("daemonset.yaml", "daemonset-old-version.yaml.injected", native=False),
    Case("job.yaml", "job-old-version.yaml.injected", native=False),
    Case("pod.yaml", "pod-old-version.yaml.injected", native=False),
    Case("replicaset.yaml", "replicaset-old-version.yaml.injected", native=False),
    Case("statefulset.yaml", "statefulset-old-version.yaml.injected", native=False),
    Case("traffic-annotations-bad-includeipranges.yaml", "", error="includeipranges"),
    Case("traffic-annotations-bad-excludeipranges.yaml", "", error="excludeipranges"),
    Case("traffic-annotations-bad-includeinboundports.yaml", "", error="includeinboundports"),
    Case("traffic-annotations-bad-excludeinboundports.yaml", "", error="excludeinboundports"),
    Case("traffic-annotations-bad-excludeoutboundports.yaml", "", error="excludeoutboundports"),
    Case(
        "traffic-annotations.yaml",
        "traffic-annotations.yaml.injected",
        mesh={
            "defaultConfig": {
                "proxyMetadata": {
                    "ISTIO_META_TLS_CLIENT_KEY": "/etc/identity/client/keys/client-key.pem"
                }
            }
        },
    ),
    Case("proxy-override-runas.yaml", "proxy-override-runas.yaml.cni.injected", _CNI),
    Case(
        "proxy-override-runas.yaml",
        "proxy-override-runas.yaml.tproxy.injected",
        mesh={"defaultConfig": {"interceptionMode": "TPROXY"}},
    ),
    Case("proxy-override-args.yaml", "proxy-override-args-native.yaml.injected"),
    Case("native-sidecar.yaml", "native-sidecar-old-version.yaml.injected", native=False),
    Case("native-sidecar-opt-in.yaml", "native-sidecar-opt-in.yaml.injected", native=False),
    Case("native-sidecar-opt-out.yaml", "native-sidecar-opt-out.yaml.injected", native=False),
    Case(
        "merge-probers.yaml",
        "merge-probers.yaml.injected",
        _g(holdApplicationUntilProxyStarts=True),
    ),
    Case(
        "hello-tracing-disabled.yaml",
        "hello-tracing-disabled.yaml.injected",
        mesh={"defaultConfig": {"tracing": {}}},
    ),
    Case(
        "hello-probes-localhost.yaml",
        "hello-probes-localhost.yaml.injected",
        mesh={"inboundTrafficPolicy": {"mode": "LOCALHOST"}},
    ),
    Case(
        "proxy-resources-null.yaml",
        "proxy-resources-null.yaml.injected",
        _g(
            resources={
                "limits": {"cpu": None, "memory": "500Mi"},
                "requests": {"cpu": None, "memory": "150Mi"},
            }
        ),
    ),
    Case(
        "proxy-resources-null-no-init.yaml",
        "proxy-resources-null-no-init.yaml.injected",
        _g(
            resources={
                "limits": {"cpu": None, "memory": "500Mi"},
                "requests": {"cpu": None, "memory": "150Mi"},
            }
        ),
    ),
    Case(
        "proxy-resources-zero.yaml",
        "proxy-resources-zero.yaml.injected",
        _g(
            resources={
                "limits": {"cpu": "0", "memory": "500Mi"},
                "requests": {"cpu": "0", "memory": "150Mi"},
            }
        ),
    ),
    Case(
        "proxy-resources-memory-null.yaml",
        "proxy-resources-memory-null.yaml.injected",
        _g(
            resources={
                "limits": {"cpu": "100m", "memory": None},
                "requests": {"cpu": "50m", "memory": None},
            }
        ),
    ),
    Case(
        "proxy-resources-mixed-null.yaml",
        "proxy-resources-mixed-null.yaml.injected",
        _g(
            resources={
                "limits": {"cpu": None, "memory": "500Mi", "ephemeral-storage": None},
                "requests": {"cpu": "100m", "memory": None, "ephemeral-storage": "1Gi"},
            }
        ),
    ),
]

# Golden files of Istio's test that this injector does not reproduce, and why.
NOT_COVERED: Mapping[str, str] = {
    "custom-template.yaml.injected": "a user-written Go template (no Go template engine here)",
    "sidecar-spire.yaml.injected": "a user-written Go template (no Go template engine here)",
    "gateway-spire.yaml.injected": "a user-written Go template (no Go template engine here)",
    "hello-template-in-values.yaml.injected": "Go template text inside values",
    "hello-openshift.yaml.injected": "OpenShift UID ranges from the Namespace",
    "hello-openshift-custom-injection.yaml.injected": "OpenShift UID ranges from the Namespace",
    "hello-openshift-tproxy.yaml.injected": "OpenShift UID ranges from the Namespace",
    "hello-otel-semconv.yaml.injected": "OpenTelemetry resource attributes",
    "hello-fips-140-3.yaml.injected": "the istiod build's compliance policy",
    "hello-service.yaml.injected": "no Pod in it: nothing to inject",
}


def all_cases() -> list[Case]:
    """The special cases plus every other ``X.yaml``/``X.yaml.injected`` pair, with the
    default settings (as Istio's test adds them)."""
    cases = list(SPECIAL)
    taken = {case.golden for case in cases if case.golden}
    for path in sorted(TESTDATA.glob("*.yaml")):
        golden = path.name + ".injected"
        if golden in taken or golden in NOT_COVERED or not (TESTDATA / golden).exists():
            continue
        cases.append(Case(path.name, golden))
    return [case for case in cases if case.golden not in NOT_COVERED]


_JSON_ANNOTATIONS = ("sidecar.istio.io/status", "proxy.istio.io/overrides")
_ZERO_MAPS = ("status", "strategy", "updateStrategy", "resources", "metadata")
# Zero values of OpenShift DeploymentConfig fields that Go's typed round trip adds or drops.
_DEPLOYMENT_CONFIG_ZEROES = {"minReadySeconds": 0, "paused": False, "test": False}


def normalize(value: Any, top: bool = True) -> Any:
    """Drop what Go's typed round trip writes and parse the JSON held in strings."""
    if top and isinstance(value, list):
        return [normalize(item) for item in value]
    if top and isinstance(value, dict):
        value = {
            k: v for k, v in value.items() if k != "status" and not (k == "metadata" and v == {})
        }
        if value.get("kind") == "DeploymentConfig" and isinstance(value.get("spec"), dict):
            spec = value["spec"]
            value["spec"] = {
                k: v for k, v in spec.items() if _DEPLOYMENT_CONFIG_ZEROES.get(k, ...) != v
            }
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "creationTimestamp" and item is None:
                continue
            if key in _ZERO_MAPS and item == {}:
                continue
            parsed = item
            if key == "annotations" and isinstance(item, dict):
                parsed = {
                    k: json.loads(v) if k in _JSON_ANNOTATIONS else v for k, v in item.items()
                }
            if key == "env" and isinstance(item, list):
                parsed = [
                    {**e, "value": json.loads(e["value"])} if e.get("name") == "PROXY_CONFIG" else e
                    for e in item
                ]
            out[key] = normalize(parsed, key == "items")
        return out
    if isinstance(value, list):
        return [normalize(item, False) for item in value]
    return value


def load_documents(text: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]
