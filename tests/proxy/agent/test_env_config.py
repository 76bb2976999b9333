"""The injector's JSON in ISTIO_KUBE_APP_PROBERS and ISTIO_PROMETHEUS_ANNOTATIONS: what is
accepted as pilot-agent accepts it, and hostile input failing with AgentConfigError only."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from istio_sdk import AgentConfigError
from istio_sdk.proxy.agent.app_probers import AppProber, ProbeKind, parse_app_probers
from istio_sdk.proxy.agent.prometheus_merge import (
    ScrapeTarget,
    accept_for,
    merge_metrics,
    parse_scrape_config,
    scrape_timeout,
)


def test_probers_as_the_injector_writes_them() -> None:
    probers = parse_app_probers(
        json.dumps(
            {
                "/app-health/web/livez": {"httpGet": {"path": "hello", "port": 8080}},
                "/app-health/web/readyz": {
                    "httpGet": {"path": "/ready", "port": 8443, "scheme": "HTTPS"},
                    "timeoutSeconds": 5,
                },
                "/app-health/db/startupz": {"tcpSocket": {"port": 5432}},
                "/app-lifecycle/api/prestopz": {"grpc": {"port": 9090, "service": "api"}},
            }
        )
    )
    assert probers == {
        "/app-health/web/livez": AppProber(ProbeKind.HTTP, 8080, 1, "/hello"),
        "/app-health/web/readyz": AppProber(ProbeKind.HTTP, 8443, 5, "/ready", "HTTPS"),
        "/app-health/db/startupz": AppProber(ProbeKind.TCP, 5432),
        "/app-lifecycle/api/prestopz": AppProber(ProbeKind.GRPC, 9090, grpc_service="api"),
    }
    assert parse_app_probers("") == {} and parse_app_probers(None) == {}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"/healthz/ready": {"tcpSocket": {"port": 1}}}, "invalid path"),
        ({"/app-health/a/b/livez": {"tcpSocket": {"port": 1}}}, "invalid path"),
        ({"/app-health/a/livez": {}}, "invalid prober type"),
        (
            {"/app-health/a/livez": {"tcpSocket": {"port": 1}, "grpc": {"port": 2}}},
            "invalid prober type",
        ),
        ({"/app-health/a/livez": {"httpGet": {"port": "http"}}}, "must be an integer"),
        ({"/app-health/a/livez": {"tcpSocket": {"port": True}}}, "must be an integer"),
        ({"/app-health/a/livez": {"tcpSocket": {"port": 10**100}}}, "not in 1-65535"),
        ({"/app-health/a/livez": {"tcpSocket": {"port": 0}}}, "not in 1-65535"),
        (
            {"/app-health/a/livez": {"tcpSocket": {"port": 1}, "timeoutSeconds": -1}},
            "timeoutSeconds",
        ),
        (
            {"/app-health/a/livez": {"tcpSocket": {"port": 1}, "timeoutSeconds": 1.5}},
            "timeoutSeconds",
        ),
        ({"/app-health/a/livez": {"httpGet": {"port": 1, "path": "/a b"}}}, "httpGet.path"),
        ({"/app-health/a/livez": {"httpGet": {"port": 1, "scheme": "FTP"}}}, "scheme"),
        ({"/app-health/a/livez": {"grpc": {"port": 1, "service": 7}}}, "grpc.service"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_probers_pilot_agent_refuses(doc: object, message: str) -> None:
    with pytest.raises(AgentConfigError, match=message) as caught:
        parse_app_probers(json.dumps(doc))
    assert caught.value.source == "environment variable ISTIO_KUBE_APP_PROBERS"


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, "{" + " " * (2 << 20) + "}", "\x00garbage", '{"a": NaN'],
)
def test_hostile_text_is_a_config_error(text: str) -> None:
    with pytest.raises(AgentConfigError):
        parse_app_probers(text)
    with pytest.raises(AgentConfigError):
        parse_scrape_config(text)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))  # fmt: skip
def test_any_json_either_parses_or_is_a_config_error(doc: object) -> None:
    for parse in (parse_app_probers, parse_scrape_config):
        with contextlib.suppress(AgentConfigError):
            parse(json.dumps(doc))


def test_scrape_config_as_pilot_agent_reads_it() -> None:
    assert parse_scrape_config('{"scrape": "true"}') == (ScrapeTarget(80, "/metrics"),)
    assert parse_scrape_config('{"scrape": "true", "port": "9100", "path": "/m"}') == (
        ScrapeTarget(9100, "/m"),
    )
    assert parse_scrape_config('{"scrape": "false", "port": "9100"}') == ()
    targets = '{"targets": [{"port": "9100"}, {"port": "9200", "path": "/x"}]}'
    assert parse_scrape_config(targets) == (ScrapeTarget(9100), ScrapeTarget(9200, "/x"))
    with pytest.raises(AgentConfigError, match="recursive loop"):
        parse_scrape_config('{"port": "015020"}')  # leading zeros dial the status port
    with pytest.raises(AgentConfigError, match="recursive loop"):
        parse_scrape_config('{"port": "8080"}', status_port=8080)
    with pytest.raises(AgentConfigError, match="Envoy admin"):
        parse_scrape_config('{"port": "15000"}')
    with pytest.raises(AgentConfigError, match="invalid target port"):
        parse_scrape_config('{"port": "٣٣"}')  # digits, but not ASCII ones


def test_accept_and_timeout_headers() -> None:
    assert accept_for(None, ("text/plain",)) == "text/plain;version=0.0.4"
    assert accept_for("*/*", ("text/plain",)) == "text/plain;version=0.0.4;q=0.1"
    assert (
        accept_for("application/openmetrics-text;version=1.0.0,text/plain;q=0.5", ("text/plain",))
        == "text/plain;q=0.1"
    )
    assert scrape_timeout("2.5") == 2.5
    for bad in ("nan", "-1", "inf", "x", None):
        assert scrape_timeout(bad) == 10.0
    assert scrape_timeout("1e9") == 120.0


def test_mixed_app_formats_fall_back_to_text() -> None:
    content_type, body = merge_metrics(
        b"agent 1\n",
        b"envoy 2",
        [
            (b"a 1\n# EOF\n", "application/openmetrics-text; version=1.0.0"),
            (b"b 2\n", "text/plain"),
        ],
    )
    assert content_type.startswith("text/plain")
    assert body == b"agent 1\nenvoy 2\na 1\nb 2\n"


@pytest.mark.parametrize(
    ("stats", "problem"),
    [
        ("server.state: 0\nlistener_manager.workers_started: 1\n", None),
        ("listener_manager.workers_started: 1\n", "server.state is not yet updated"),
        ("server.state: 0\n", "listener_manager.workers_started is not yet updated"),
        (
            "server.state: 2\nlistener_manager.workers_started: 0\n",
            "server is not live, current state is: PRE_INITIALIZING",
        ),
        ("server.state: 0\nlistener_manager.workers_started: 0\n", "workers have not yet started"),
        ("server.state: zero\n", "has no integer value"),
    ],
)
def test_envoy_readiness_is_read_as_pilot_agent_reads_it(stats: str, problem: str | None) -> None:
    from istio_sdk.proxy.agent.readiness import envoy_readiness_problem

    found = envoy_readiness_problem(stats)
    assert found == problem if problem is None else (found is not None and problem in found)
