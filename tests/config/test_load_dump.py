"""Loading and dumping resources of every kind: round trips and equality with Google's runtime."""

from __future__ import annotations

import io
import json
import pathlib

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import istio_sdk
from istio_sdk import timeutil
from istio_sdk.config import (
    KINDS,
    ConfigError,
    LimitError,
    LoadLimits,
    NumberError,
    ObjectMeta,
    Resource,
    YamlSyntaxError,
    dump_resources,
    load_resources,
)
from istio_sdk.config._yaml import parse_documents
from istio_sdk.testing import messages

DATA = pathlib.Path(__file__).parent / "data"
EVERY_KIND = DATA / "every-kind.yaml"
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "src" / "istio_sdk" / "examples"


@pytest.fixture(scope="module")
def every_kind() -> list[Resource]:
    return load_resources(EVERY_KIND)


def test_fixture_covers_every_registered_kind(every_kind: list[Resource]) -> None:
    assert {(r.group, r.kind) for r in every_kind} == {(k.group, k.kind) for k in KINDS}


def test_specs_are_the_generated_messages(every_kind: list[Resource]) -> None:
    for resource in every_kind:
        assert type(resource.spec) is resource.info.spec_class()
    dr = every_kind[0]
    assert dr.spec.traffic_policy.outlier_detection.consecutive_5xx_errors == 7
    assert dr.metadata.labels == {"app": "reviews", "team": "catalog"}


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_dump_and_reload_unchanged(every_kind: list[Resource], fmt: str) -> None:
    text = dump_resources(every_kind, format=fmt)  # type: ignore[arg-type]
    again = load_resources(text)
    assert again == every_kind
    assert dump_resources(again, format=fmt) == text  # type: ignore[arg-type]


def test_bundled_examples_round_trip() -> None:
    resources = load_resources(EXAMPLES)
    assert len(resources) >= 20
    assert load_resources(dump_resources(resources)) == resources
    # Istio accepts every bundled example; it warns about any EnvoyFilter.
    problems = istio_sdk.validate(EXAMPLES)
    assert [(p.level, p.kind) for p in problems] == [("warning", "EnvoyFilter")]


def test_json_output_is_a_list_or_a_single_object(every_kind: list[Resource]) -> None:
    many = json.loads(dump_resources(every_kind, format="json"))
    assert (many["apiVersion"], many["kind"]) == ("v1", "List")
    assert len(many["items"]) == len(every_kind)
    one = json.loads(dump_resources(every_kind[:1], format="json"))
    assert (one["kind"], one["metadata"]["name"]) == ("DestinationRule", "reviews")
    assert one["spec"]["trafficPolicy"]["outlierDetection"]["baseEjectionTime"] == "300s"


def test_yaml_output_is_kubectl_shaped(every_kind: list[Resource]) -> None:
    text = dump_resources(every_kind[:2])
    first, second = text.split("---\n")
    assert first.startswith("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:")
    assert second.startswith("apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\n")
    with pytest.raises(ValueError, match="format"):
        dump_resources(every_kind, format="toml")  # type: ignore[arg-type]


def test_spec_wire_bytes_match_googles_runtime(every_kind: list[Resource]) -> None:
    from google.protobuf import json_format
    from support.official import official_class, official_pool

    documents = [d.value for d in parse_documents(EVERY_KIND.read_text()) if d.value]
    assert len(documents) == len(every_kind)
    for document, resource in zip(documents, every_kind, strict=True):
        assert isinstance(document, dict)
        official = official_class(resource.info.spec_type)()
        json_format.ParseDict(document.get("spec", {}), official, descriptor_pool=official_pool())
        ours = bytes(resource.spec)
        parsed = official_class(resource.info.spec_type)()
        parsed.ParseFromString(ours)
        assert parsed == official, resource.key
        # field-number order with map entries sorted by key, as upb's deterministic mode writes
        assert ours == official.SerializeToString(deterministic=True), resource.key


def test_istio_documentation_values_are_accepted() -> None:
    [doc_style] = load_resources(
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: n}
spec:
  host: r
  trafficPolicy:
    connectionPool: {tcp: {connectTimeout: 30ms}, http: {idleTimeout: 1h}}
    outlierDetection: {interval: 1m30s, baseEjectionTime: 5m}
"""
    )
    [canonical] = load_resources(
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: n}
spec:
  host: r
  trafficPolicy:
    connectionPool: {tcp: {connectTimeout: 0.030s}, http: {idleTimeout: 3600s}}
    outlierDetection: {interval: 90s, baseEjectionTime: 300s}
"""
    )
    assert doc_style == canonical


def test_nanosecond_durations_dump_and_reload_unchanged() -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: n}
spec:
  host: r
  trafficPolicy:
    connectionPool: {tcp: {connectTimeout: 0.000000001s}, http: {idleTimeout: 1m0.5000001s}}
    outlierDetection: {interval: 1ns, baseEjectionTime: 2.123456789s}
"""
    [resource] = load_resources(text)
    pool = resource.spec.traffic_policy.connection_pool
    assert pool.tcp.connect_timeout == timeutil.Duration(nanoseconds=1)
    assert pool.http.idle_timeout == timeutil.Duration(
        seconds=60, microseconds=500_000, nanoseconds=100
    )
    for fmt in ("yaml", "json"):
        dumped = dump_resources([resource], format=fmt)
        assert "0.000000001s" in dumped
        assert "60.500000100s" in dumped
        assert "2.123456789s" in dumped
        [again] = load_resources(dumped)
        assert again == resource
        assert dump_resources([again], format=fmt) == dumped
        assert bytes(again.spec) == bytes(resource.spec)


def test_sources_lists_and_empty_documents(tmp_path: pathlib.Path) -> None:
    text = EVERY_KIND.read_text()
    expected = load_resources(text)
    path = tmp_path / "all.yaml"
    path.write_text("---\n# only a comment\n---\n" + text + "\n---\n")
    assert load_resources(path) == expected
    assert load_resources(str(path)) == expected
    assert load_resources(path.read_bytes()) == expected
    assert load_resources(io.StringIO(path.read_text())) == expected
    with path.open("rb") as handle:
        assert load_resources(handle) == expected
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "list.json").write_text(dump_resources(expected[:3], format="json"))
    assert load_resources(tmp_path) == expected + expected[:3]
    kube_list = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [r.to_dict() for r in expected[:2]],
    }
    assert load_resources(json.dumps(kube_list)) == expected[:2]
    with pytest.raises(FileNotFoundError):
        load_resources(str(tmp_path / "missing.yaml"))


def test_metadata_and_status_round_trip() -> None:
    text = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
  uid: 5d4c9a9e-0c0f-4c55-8c5f-0f4b2b0b7a10
  resourceVersion: "81723"
  generation: 3
  creationTimestamp: "2024-05-01T10:00:00Z"
  generateName: pa-
  labels: {app.kubernetes.io/managed-by: helm}
  annotations: {kubectl.kubernetes.io/last-applied-configuration: "{}"}
  finalizers: [example.com/cleanup]
  ownerReferences:
  - {apiVersion: v1, kind: ConfigMap, name: owner, uid: abc, controller: true}
  managedFields:
  - {manager: kubectl, operation: Apply, apiVersion: security.istio.io/v1}
  deletionGracePeriodSeconds: 30
spec:
  mtls: {mode: STRICT}
status:
  conditions:
  - {type: Reconciled, status: "True", reason: Done}
  observedGeneration: "3"
  validationMessages:
  - {documentationUrl: https://istio.io, level: WARNING, type: {code: IST0102, name: X}}
"""
    [resource] = load_resources(text)
    meta = resource.metadata
    assert meta.resource_version == "81723"
    assert meta.generation == 3
    assert meta.creation_timestamp == "2024-05-01T10:00:00Z"
    assert meta.finalizers == ("example.com/cleanup",)
    assert meta.extra["deletionGracePeriodSeconds"] == 30
    assert "managedFields" in meta.extra
    assert load_resources(dump_resources([resource])) == [resource]
    assert resource.status is not None
    status = resource.typed_status()
    assert status is not None
    assert status.conditions[0].reason == "Done"
    assert status.observed_generation == 3
    # kubectl writes "creationTimestamp: null" for objects that were never stored
    [fresh] = load_resources(text.replace('"2024-05-01T10:00:00Z"', "null"))
    assert fresh.metadata.creation_timestamp == ""


_NAME = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")
_LABELS = st.dictionaries(
    st.from_regex(r"\A[a-z]([a-z0-9.-/]{0,8}[a-z0-9])?\Z"), st.text(max_size=8), max_size=3
)


@st.composite
def resources(draw: st.DrawFn) -> Resource:
    info = draw(st.sampled_from(KINDS))
    spec = draw(messages(info.spec_class(), max_depth=3))
    return Resource(
        api_version=draw(st.sampled_from(info.api_versions)),
        kind=info.kind,
        metadata=ObjectMeta(
            name=draw(_NAME),
            namespace=draw(_NAME) if info.namespaced else "",
            labels=draw(_LABELS),
            annotations=draw(_LABELS),
            generation=draw(st.integers(0, 2**40)),
        ),
        spec=spec,
        status=draw(st.none() | st.fixed_dictionaries({"observedGeneration": st.just("1")})),
    )


@given(st.lists(resources(), min_size=1, max_size=3), st.sampled_from(["yaml", "json"]))
def test_any_resources_dump_and_reload_unchanged(items: list[Resource], fmt: str) -> None:
    text = dump_resources(items, format=fmt)  # type: ignore[arg-type]
    assert load_resources(text) == items


def test_resource_helpers() -> None:
    [vs] = load_resources(EXAMPLES / "virtual-services.yaml")[:1]
    assert (vs.group, vs.version) == ("networking.istio.io", "v1")
    assert vs.key == ("VirtualService", "bookinfo", "productpage")
    moved = attrs.evolve(vs, metadata=attrs.evolve(vs.metadata, namespace="other"))
    assert moved.key == ("VirtualService", "other", "productpage")
    assert Resource.from_dict(vs.to_dict()) == vs


def test_new_with_shared_messages_and_typed_status_errors() -> None:
    from istio_sdk.api.istio.authentication.v1alpha1 import Policy
    from istio_sdk.config import FieldError

    mesh = Resource.new(Policy(), name="default", kind="MeshPolicy")
    assert (mesh.api_version, mesh.kind) == ("authentication.istio.io/v1alpha1", "MeshPolicy")
    with pytest.raises(ValueError, match="cannot tell the kind"):
        Resource.new(Policy(), name="default")  # Policy or MeshPolicy?
    with pytest.raises(ValueError, match="not a registered"):
        Resource.new(Policy(), name="default", kind="Nope")
    assert mesh.typed_status() is None  # 1.3 kinds have no typed status
    [pa] = load_resources(EVERY_KIND)[10:11]
    assert pa.kind == "PeerAuthentication"
    broken = attrs.evolve(pa, status={"conditions": "not-a-list"})
    with pytest.raises(FieldError) as info:
        broken.typed_status()
    assert info.value.problem.path == "status.conditions"
    unregistered = attrs.evolve(pa, kind="Unknown")
    with pytest.raises(KeyError, match="not a registered kind"):
        _ = unregistered.info


def test_validate_takes_any_iterable_of_resources() -> None:
    resources_ = load_resources(EVERY_KIND)
    problems = istio_sdk.validate(r for r in resources_)
    assert [(p.level, p.kind, p.path) for p in problems] == [("warning", "EnvoyFilter", "spec")]
    with pytest.raises(TypeError, match="Resources or a source"):
        istio_sdk.validate([1, 2])  # type: ignore[list-item]


def test_a_file_over_the_size_limit_is_refused_naming_it(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:  # sparse: 9 MiB on paper, nothing on disk
        file.truncate(9 * 1024 * 1024)
    with pytest.raises(LimitError) as info:
        load_resources(path)
    assert info.value.limit == "max_bytes"
    assert str(info.value) == (
        f"{path}: source is larger than 8388608 bytes (limit max_bytes=8388608)"
    )
    small = tmp_path / "small.yaml"
    small.write_text(EVERY_KIND.read_text())
    with pytest.raises(LimitError):
        load_resources(small, limits=LoadLimits(max_bytes=1000))
    with pytest.raises(LimitError):
        load_resources(io.BytesIO(b"a: b\n" * 300), limits=LoadLimits(max_bytes=1000))
    with pytest.raises(LimitError):
        load_resources(b"a: b\n" * 300, limits=LoadLimits(max_bytes=1000))


def test_hostile_files_raise_typed_errors_naming_the_file(tmp_path: pathlib.Path) -> None:
    cases: dict[str, tuple[bytes, type[ConfigError]]] = {
        "deep.json": (b"[" * 2000 + b"]" * 2000, LimitError),
        "digits.json": (b'{"apiVersion": ' + b"7" * 5000 + b"}", LimitError),
        "nan.json": (b'{"apiVersion": NaN}', NumberError),
        "latin1.yaml": (b"kind: caf\xe9\n", YamlSyntaxError),
        "random.yaml": (bytes(range(256)) * 4, YamlSyntaxError),
    }
    for name, (data, error) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(error) as info:
            load_resources(tmp_path / name)
        assert info.value.problem.source == str(tmp_path / name)
    with pytest.raises(YamlSyntaxError, match=r"^<bytes>: not UTF-8 text: byte 0xe9 at offset 9$"):
        load_resources(b"kind: caf\xe9\n")
