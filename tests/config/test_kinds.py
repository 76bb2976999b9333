"""The kind registry against Istio's CRDs, and the 1.3-era kinds."""

from __future__ import annotations

import json
import pathlib

import pytest

from istio_sdk.config import KINDS, find_kind, kind_for
from istio_sdk.config._kinds import message_class

LEGACY = {
    ("config.istio.io", "rule"): "istio.policy.v1beta1.Rule",
    ("config.istio.io", "handler"): "istio.policy.v1beta1.Handler",
    ("config.istio.io", "instance"): "istio.policy.v1beta1.Instance",
    ("config.istio.io", "attributemanifest"): "istio.policy.v1beta1.AttributeManifest",
    ("config.istio.io", "adapter"): "istio.mixer.adapter.model.v1beta1.Info",
    ("config.istio.io", "template"): "istio.mixer.adapter.model.v1beta1.Template",
    ("authentication.istio.io", "Policy"): "istio.authentication.v1alpha1.Policy",
    ("authentication.istio.io", "MeshPolicy"): "istio.authentication.v1alpha1.Policy",
    ("rbac.istio.io", "ServiceRole"): "istio.rbac.v1alpha1.ServiceRole",
    ("rbac.istio.io", "ServiceRoleBinding"): "istio.rbac.v1alpha1.ServiceRoleBinding",
    ("rbac.istio.io", "RbacConfig"): "istio.rbac.v1alpha1.RbacConfig",
    ("rbac.istio.io", "ClusterRbacConfig"): "istio.rbac.v1alpha1.RbacConfig",
}
# Mixer 1.3's per-adapter and per-template kinds (Galley 1.3's legacy collections): untyped
MIXER_LEGACY = (
    "apikey", "authorization", "bypass", "checknothing", "circonus", "cloudwatch", "denier",
    "dogstatsd", "edge", "fluentd", "kubernetesenv", "kubernetes", "listchecker", "listentry",
    "logentry", "memquota", "metric", "noop", "opa", "prometheus", "quota", "rbac", "redisquota",
    "reportnothing", "signalfx", "solarwinds", "stackdriver", "statsd", "stdio", "tracespan",
    "zipkin",
)  # fmt: skip
LEGACY.update({("config.istio.io", kind): "google.protobuf.Struct" for kind in MIXER_LEGACY})


def test_registry_matches_istio_crds(shared_dir: pathlib.Path) -> None:
    crds = json.loads((shared_dir / "istio-api" / "crd-kinds.json").read_text())
    current = {(k.group, k.kind): k for k in KINDS if not k.legacy}
    assert set(current) == {(crd["group"], crd["kind"]) for crd in crds}
    for crd in crds:
        info = current[(crd["group"], crd["kind"])]
        served = {v["name"] for v in crd["versions"] if v["served"]}
        storage = [v["name"] for v in crd["versions"] if v["storage"]]
        assert set(info.versions) == served, info.kind
        assert len(info.versions) == len(served), info.kind
        assert [info.storage_version] == storage, info.kind
        assert info.plural == crd["plural"], info.kind
        assert info.scope == crd["scope"], info.kind
        assert set(info.short_names) == set(crd["shortNames"]), info.kind


def test_legacy_kinds_map_to_their_1_3_messages() -> None:
    legacy = {(k.group, k.kind): k.spec_type for k in KINDS if k.legacy}
    assert legacy == LEGACY
    assert kind_for("MeshPolicy").scope == "Cluster"
    assert kind_for("ClusterRbacConfig").scope == "Cluster"
    assert kind_for("rule").api_version == "config.istio.io/v1alpha2"


def test_every_kind_mixer_reads_is_registered_as_galley_named_it() -> None:
    from istio_sdk.galley.mcp.collections import COLLECTIONS
    from istio_sdk.mixer.runtime import config as mixer_config

    read = mixer_config.LEGACY_ADAPTER_KINDS | mixer_config.LEGACY_TEMPLATE_KINDS
    untyped = {k.kind: k for k in KINDS if k.spec_type == "google.protobuf.Struct"}
    assert read <= set(untyped)
    legacy_collections = {c.name.rpartition("/")[2] for c in COLLECTIONS if "/legacy/" in c.name}
    assert {k.plural for k in untyped.values()} == legacy_collections
    assert all(k.api_version == "config.istio.io/v1alpha2" for k in untyped.values())


@pytest.mark.parametrize("info", KINDS, ids=lambda k: f"{k.group}/{k.kind}")
def test_every_spec_class_is_generated(info: object) -> None:
    from istio_sdk.config import KindInfo

    assert isinstance(info, KindInfo)
    cls = info.spec_class()
    assert cls.__name__ == info.spec_type.rsplit(".", 1)[1]
    assert cls.__module__ == "istio_sdk.api." + info.spec_type.rsplit(".", 1)[0]


def test_all_served_versions_share_one_message() -> None:
    vs = kind_for("VirtualService")
    assert vs.api_versions == (
        "networking.istio.io/v1",
        "networking.istio.io/v1alpha3",
        "networking.istio.io/v1beta1",
    )
    for api_version in vs.api_versions:
        found = find_kind(api_version, "VirtualService")
        assert found is vs


def test_lookups_fail_clearly() -> None:
    assert find_kind("networking.istio.io/v1", "Frobnicator") is None
    with pytest.raises(KeyError, match="Frobnicator"):
        kind_for("Frobnicator")
    with pytest.raises(KeyError, match="not a generated message"):
        message_class("istio.networking.v1alpha3.Percent.value")
    with pytest.raises(KeyError, match="not a generated message"):
        message_class("istio.nothing.v1.Thing")


def test_a_legacy_mixer_kind_loads_from_yaml_and_validates() -> None:
    from istio_sdk.config import FieldError, load_resources, validate
    from istio_sdk.protojson import message_to_json

    text = """
apiVersion: config.istio.io/v1alpha2
kind: listchecker
metadata: {name: whitelist, namespace: istio-system}
spec:
  overrides: [v1, v2]
  blacklist: false
"""
    (resource,) = load_resources(text)
    assert resource.key == ("listchecker", "istio-system", "whitelist")
    assert message_to_json(resource.spec) == {"overrides": ["v1", "v2"], "blacklist": False}
    assert validate(resource) == []
    with pytest.raises(FieldError, match=r"spec: expected an object"):
        load_resources(text.replace("spec:\n  overrides: [v1, v2]\n  blacklist: false", "spec: 7"))
    (bad,) = load_resources(text.replace("name: whitelist", "name: White_List"))
    assert [p.path for p in validate(bad)] == ["metadata.name"]
