"""Injection decisions the golden files do not cover: the namespace policy, hold-application
ordering without native sidecars, template choice, and malformed Pods."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from istio_sdk.proxy.inject import InjectionError, InjectSettings, inject_pod


def _pod(**meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "shop", **meta},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }


def _names(pod: dict[str, Any], group: str) -> list[str]:
    return [c["name"] for c in pod["spec"].get(group) or []]


def test_a_disabled_namespace_policy_injects_only_pods_that_ask() -> None:
    settings = InjectSettings(policy="disabled")
    assert inject_pod(_pod(), settings).skipped is not None
    asked = inject_pod(_pod(labels={"sidecar.istio.io/inject": "true"}), settings)
    assert asked.skipped is None and "istio-proxy" in _names(asked.pod, "containers")
    # the label wins over the annotation
    both = _pod(
        labels={"sidecar.istio.io/inject": "false"}, annotations={"sidecar.istio.io/inject": "true"}
    )
    assert inject_pod(both, InjectSettings()).skipped == "sidecar.istio.io/inject is false"


def test_system_namespaces_are_never_injected() -> None:
    result = inject_pod(_pod(namespace="kube-system"), InjectSettings())
    assert result.skipped is not None and result.pod == _pod(namespace="kube-system")


def test_holding_the_application_puts_the_proxy_first_and_waits_for_it() -> None:
    settings = InjectSettings.build(
        values={"global": {"proxy": {"holdApplicationUntilProxyStarts": True}}}
    )
    pod = inject_pod(_pod(), settings).pod
    assert _names(pod, "containers") == ["istio-proxy", "app"]
    proxy = pod["spec"]["containers"][0]
    assert proxy["lifecycle"] == {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}
    plain = inject_pod(_pod(), InjectSettings()).pod
    assert _names(plain, "containers") == ["app", "istio-proxy"]


def test_native_sidecars_put_the_proxy_among_init_containers() -> None:
    pod = inject_pod(_pod(), InjectSettings(native_sidecars=True)).pod
    assert _names(pod, "initContainers") == ["istio-init", "istio-proxy"]
    assert pod["spec"]["initContainers"][1]["restartPolicy"] == "Always"
    opt_out = inject_pod(
        _pod(annotations={"sidecar.istio.io/nativeSidecar": "false"}),
        InjectSettings(native_sidecars=True),
    )
    assert _names(opt_out.pod, "containers") == ["app", "istio-proxy"]


def test_cni_mode_validates_instead_of_writing_rules() -> None:
    settings = InjectSettings.build(values={"pilot": {"cni": {"enabled": True}}})
    pod = inject_pod(_pod(), settings).pod
    (init,) = pod["spec"]["initContainers"]
    assert init["name"] == "istio-validation"
    assert init["args"][-2:] == ["--run-validation", "--skip-rule-apply"]
    assert "add" not in init["securityContext"]["capabilities"]
    assert pod["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeInboundPorts"] == "15020"


def test_interception_none_has_no_init_container() -> None:
    pod = inject_pod(
        _pod(annotations={"sidecar.istio.io/interceptionMode": "NONE"}), InjectSettings()
    ).pod
    assert _names(pod, "initContainers") == []
    assert _names(pod, "containers") == ["app", "istio-proxy"]


def test_resource_annotations_replace_the_default_resources() -> None:
    annotations = {
        "sidecar.istio.io/proxyCPU": "0.5",
        "sidecar.istio.io/proxyMemoryLimit": "2048Mi",
    }
    pod = inject_pod(_pod(annotations=annotations), InjectSettings()).pod
    proxy = pod["spec"]["containers"][1]
    assert proxy["resources"] == {"limits": {"memory": "2Gi"}, "requests": {"cpu": "500m"}}


def test_an_unknown_template_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(
        InjectionError, match="'nope' not found; have gateway, grpc-agent, grpc-simple, sidecar"
    ):
        inject_pod(
            _pod(annotations={"inject.istio.io/templates": "sidecar,nope"}), InjectSettings()
        )


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"metadata": {"annotations": {"a": 1}}}, "metadata.annotations.a"),
        ({"metadata": "x"}, "metadata"),
        ({"spec": {"containers": [{"image": "x"}]}}, "spec.containers[0].name"),
        ({"spec": {"containers": [{"name": "a", "env": {"A": "1"}}]}}, "spec.containers[0].env"),
        (
            {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": True}]}]}},
            "containerPort",
        ),
        ({"spec": {"containers": [{"name": "a", "readinessProbe": []}]}}, "readinessProbe"),
        ({"spec": {"containers": [], "hostNetwork": "yes"}}, "spec.hostNetwork"),
        ({"spec": {"containers": [], "volumes": {"a": 1}}}, "spec.volumes"),
        (
            {"metadata": {"annotations": {"proxy.istio.io/config": "concurrency: [1"}}},
            "proxy.istio.io/config",
        ),
        (
            {"metadata": {"annotations": {"proxy.istio.io/config": "noSuchField: 1"}}},
            "proxy.istio.io/config",
        ),
        ({"metadata": {"annotations": {"sidecar.istio.io/userVolume": '{"v": 1}'}}}, "userVolume"),
        (
            {"metadata": {"annotations": {"proxy.istio.io/overrides": "{"}}},
            "proxy.istio.io/overrides",
        ),
        (
            {"metadata": {"annotations": {"status.sidecar.istio.io/port": "99999"}}},
            "status.sidecar.istio.io/port",
        ),
        ({"metadata": {"annotations": {"prometheus.io/port": "15090"}}}, "reserved for Istio"),
    ],
)
def test_malformed_pods_are_errors_naming_the_field(change: dict[str, Any], where: str) -> None:
    pod = _pod()
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(pod.get(key), dict):
            pod[key] = {**pod[key], **value}
        else:
            pod[key] = value
    before = copy.deepcopy(pod)
    with pytest.raises(InjectionError) as caught:
        inject_pod(pod, InjectSettings())
    assert where in str(caught.value)
    assert pod == before  # the input is never changed


def test_a_pod_injected_twice_is_the_same_pod() -> None:
    settings = InjectSettings.build(
        values={"global": {"proxy": {"holdApplicationUntilProxyStarts": True}}}
    )
    probed = _pod()
    probed["spec"]["containers"][0]["livenessProbe"] = {"tcpSocket": {"port": 8080}}
    once = inject_pod(probed, settings).pod
    assert inject_pod(once, settings).pod == once


def test_managed_fields_are_neither_changed_nor_patched() -> None:
    import base64
    import json

    from istio_sdk.proxy.inject.webhook import review_response

    pod = _pod(managedFields=[{"manager": "kubectl", "operation": "Update"}] * 3)
    before = copy.deepcopy(pod)
    inject_pod(pod, InjectSettings())
    assert pod == before
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u", "object": pod},
    }
    answer = json.loads(review_response(review, InjectSettings()).body)["response"]
    patch = json.loads(base64.b64decode(answer["patch"]))
    assert patch and not [op for op in patch if "managedFields" in op["path"]]
    assert pod == before
