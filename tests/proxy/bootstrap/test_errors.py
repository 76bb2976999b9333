"""Bad input gets a BootstrapError naming where the bad value came from, never a traceback."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proxy.bootstrap.canonical import parse

from istio_sdk import BootstrapError
from istio_sdk.proxy.bootstrap import bootstrap_for_pod, bootstrap_to_json, parse_downward_api

_POD = {"POD_NAME": "p", "POD_NAMESPACE": "ns", "INSTANCE_IP": "10.0.0.1"}
_ANNOTATION = "annotation proxy.istio.io/config"


def _error(
    env: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    mesh_config: str | None = None,
) -> BootstrapError:
    with pytest.raises(BootstrapError) as info:
        bootstrap_for_pod({**_POD, **(env or {})}, annotations=annotations, mesh_config=mesh_config)
    return info.value


@pytest.mark.parametrize(
    ("annotation", "problem"),
    [
        ("concurrency: [1, 2", "invalid YAML"),
        ("concurency: 2", 'unknown field "concurency"'),
        ("tracing: {zipkn: {address: a:1}}", 'unknown field "zipkn"'),
        ("concurrency: two", "concurrency"),
        ("drainDuration: forever", "drainDuration"),
        ("- a\n- b", "expected a mapping"),
        ("concurrency: .nan", "NaN"),
        ("a: 1\n---\nb: 2", "one YAML document"),
    ],
)
def test_bad_proxy_config_annotation(annotation: str, problem: str) -> None:
    error = _error(annotations={"proxy.istio.io/config": annotation})
    assert error.source == _ANNOTATION
    assert problem in error.problem


def test_unknown_field_in_proxy_config_env_and_mesh_file() -> None:
    error = _error(env={"PROXY_CONFIG": '{"statusPrt": 1}'})
    assert error.source == "environment variable PROXY_CONFIG"
    assert 'unknown field "statusPrt"' in error.problem
    error = _error(mesh_config="defaultConfig:\n  adminPort: 1\n")
    assert error.source == "mesh config file: defaultConfig"
    error = _error(mesh_config="[1, 2]")
    assert error.source == "mesh config file"


@pytest.mark.parametrize(
    ("env", "source"),
    [
        ({"ENVOY_STATUS_PORT": "abc"}, "environment variable ENVOY_STATUS_PORT"),
        ({"ENVOY_PROMETHEUS_PORT": "70000"}, "environment variable ENVOY_PROMETHEUS_PORT"),
        (
            {"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "maybe"},
            "environment variable EXIT_ON_ZERO_ACTIVE_CONNECTIONS",
        ),
        ({"INSTANCE_IP": "10.0.0.300"}, "environment variable INSTANCE_IP"),
        ({"ISTIO_METAJSON_LABELS": "{app: x}"}, "environment variable ISTIO_METAJSON_LABELS"),
        ({"ISTIO_METAJSON_LABELS": '{"app": 1}'}, "environment variable ISTIO_METAJSON_LABELS"),
        ({"ISTIO_METAJSON_EXTRA": "[1]"}, "environment variable ISTIO_METAJSON_EXTRA"),
        ({"ISTIO_DELTA_XDS": "yes"}, "environment variable ISTIO_DELTA_XDS"),
    ],
)
def test_bad_environment_values(env: dict[str, str], source: str) -> None:
    assert _error(env=env).source == source


def test_bad_boolean_metadata_names_the_variable() -> None:
    error = _error(env={"ISTIO_META_DNS_CAPTURE": "yes"})
    assert "ISTIO_META_DNS_CAPTURE" in error.source
    assert "true or false" in error.problem


def test_bad_tracer_address_and_status_port_annotation() -> None:
    error = _error(annotations={"proxy.istio.io/config": "tracing: {zipkin: {address: zipkin}}"})
    assert error.source == "ProxyConfig tracing.zipkin.address"
    for port in ("15020x", "70000"):
        error = _error(annotations={"status.sidecar.istio.io/port": port})
        assert error.source == "annotation status.sidecar.istio.io/port"


def test_hostile_annotations() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    assert _error(annotations={"proxy.istio.io/config": bomb}).source == _ANNOTATION
    deep = "[" * 5000 + "]" * 5000
    assert _error(annotations={"proxy.istio.io/config": deep}).source == _ANNOTATION
    huge = "concurrency: 2\n" + "#" * (2 << 20)
    error = _error(annotations={"proxy.istio.io/config": huge})
    assert error.source == _ANNOTATION
    assert "limit" in error.problem
    big_number = "concurrency: " + "9" * 5000
    assert _error(annotations={"proxy.istio.io/config": big_number}).source == _ANNOTATION


DEEP_JSON = "[" * 100_000  # beyond the JSON decoder's own recursion guard


@pytest.mark.parametrize(
    ("env", "annotations", "source"),
    [
        # str.isdigit() holds for '²' and int() refuses it
        ({}, {"status.sidecar.istio.io/port": "²"}, "annotation status.sidecar.istio.io/port"),
        ({"ENVOY_STATUS_PORT": "²"}, {}, "environment variable ENVOY_STATUS_PORT"),
        ({"ENVOY_PROMETHEUS_PORT": "١٥٠٩٠"}, {}, "environment variable ENVOY_PROMETHEUS_PORT"),
        (
            {},
            {"proxy.istio.io/config": "statsdUdpAddress: statsd:²"},
            "ProxyConfig statsdUdpAddress",
        ),
        ({"ISTIO_META_POD_PORTS": DEEP_JSON}, {}, "ISTIO_META_POD_PORTS"),
        ({"ISTIO_METAJSON_LABELS": DEEP_JSON}, {}, "environment variable ISTIO_METAJSON_LABELS"),
    ],
)
def test_non_ascii_digits_and_deep_json_are_bootstrap_errors(
    env: dict[str, str], annotations: dict[str, str], source: str
) -> None:
    assert source in _error(env=env, annotations=annotations).source


@pytest.mark.parametrize("field", ["statusPort", "proxyAdminPort"])
@pytest.mark.parametrize("port", [-1, 70000])
def test_a_proxy_config_port_out_of_range_is_a_bootstrap_error(field: str, port: int) -> None:
    # Envoy refuses a port value past 65535 (and -1 is no uint32): no bootstrap is written
    error = _error(annotations={"proxy.istio.io/config": f"{field}: {port}"})
    assert (error.source, error.problem) == (f"ProxyConfig {field}", f"port {port} is out of range")
    error = _error(env={"PROXY_CONFIG": f'{{"{field}": {port}}}'})
    assert error.source == f"ProxyConfig {field}"


def test_deep_json_in_a_histogram_annotation_is_ignored_like_any_malformed_value() -> None:
    annotations = {"sidecar.istio.io/statsHistogramBuckets": DEEP_JSON}
    doc = json.loads(bootstrap_to_json(bootstrap_for_pod(_POD, annotations=annotations)))
    assert "histogramBucketSettings" not in doc["statsConfig"]
    with pytest.raises(BootstrapError, match=r"labels:1"):
        parse_downward_api(f"app={DEEP_JSON}\n", "labels")


def test_garbage_in_downward_api_file() -> None:
    assert parse_downward_api('app="reviews"\nbroken line\nv="a=b"\n', "labels") == {
        "app": "reviews",
        "v": "a=b",
    }
    with pytest.raises(BootstrapError, match=r"labels:2"):
        parse_downward_api('app="reviews"\nversion=v1\n', "labels")


def test_ignored_stats_annotations_behave_like_pilot_agent() -> None:
    """Malformed sidecar.istio.io/stats* values are logged and ignored, as in Istio."""
    doc = json.loads(
        bootstrap_to_json(
            bootstrap_for_pod(
                _POD,
                annotations={
                    "sidecar.istio.io/statsHistogramBuckets": "{not json",
                    "sidecar.istio.io/statsFlushInterval": "soon",
                },
            )
        )
    )
    assert "histogramBucketSettings" not in doc["statsConfig"]
    assert "statsFlushInterval" not in doc


_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)


@settings(max_examples=60)
@given(
    meta=st.dictionaries(
        st.sampled_from(["DNS_CAPTURE", "LABELS", "NAME", "CLUSTER_ID", "ENABLE_HBONE"])
        | st.text("ABCDEFGHIJ_", min_size=1, max_size=8),
        _TEXT | st.sampled_from(["true", "False", "1"]),
        max_size=5,
    ),
    annotation=_TEXT | st.sampled_from(["concurrency: 3", "proxyAdminPort: 15001", "{}"]),
)
def test_any_environment_gives_a_valid_bootstrap_or_a_bootstrap_error(
    meta: dict[str, str], annotation: str
) -> None:
    env = {**_POD, **{f"ISTIO_META_{k}": v for k, v in meta.items()}}
    try:
        result = bootstrap_for_pod(env, annotations={"proxy.istio.io/config": annotation})
    except BootstrapError as exc:
        assert exc.source
        return
    parsed = parse(bootstrap_to_json(result))
    assert parsed.node.id == "sidecar~10.0.0.1~p.ns~ns.svc.cluster.local"


def test_pod_ports_are_reencoded_and_checked() -> None:
    env = {**_POD, "ISTIO_META_POD_PORTS": '[ {"containerPort": 9080, "name": "http"} ]'}
    result = bootstrap_for_pod(env)
    assert result.node is not None and result.node.metadata is not None
    ports = result.node.metadata.to_dict()["POD_PORTS"]
    assert ports == '[{"name":"http","containerPort":9080,"protocol":""}]'
    for bad in ('[{"containerPort": "9080"}]', "{oops", '{"a": 1}'):
        error = _error(env={"ISTIO_META_POD_PORTS": bad})
        assert "ISTIO_META_POD_PORTS" in error.source
