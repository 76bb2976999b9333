"""End to end: a proxy-shaped MixerClient against a MixerServer whose config is YAML.

The client is :class:`istio_sdk.MixerClient` with the proxy's defaults (check cache on, Report
batches in INDEPENDENT encoding); the server is :class:`istio_sdk.MixerServer` over a
ConfigStore loaded from :data:`support.mixer_e2e.POLICY`. Every assertion is on what the proxy
or an operator sees: a verdict, a cache hit, a scraped metric, a reported problem.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from grpclib.const import Status
from prometheus_client.parser import text_string_to_metric_families
from support.fake_mixer import FakeClock
from support.mixer_e2e import BROKEN_RULE, POLICY, inbound, report_bag, with_labels
from support.mixer_server import Proxy, eventually

from istio_sdk import MixerClient
from istio_sdk._grpc import create_channel
from istio_sdk.config import ConfigStore, load_resources
from istio_sdk.mixer import MixerServer


def _store(*texts: str) -> ConfigStore:
    store = ConfigStore()
    for text in texts:
        for resource in load_resources(text):
            store.apply(resource)
    return store


@contextlib.asynccontextmanager
async def _mixer(store: ConfigStore) -> AsyncIterator[MixerServer]:
    server = MixerServer(store)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop()


async def test_a_proxy_gets_the_verdicts_the_rules_say() -> None:
    async with (
        _mixer(_store(POLICY)) as server,
        MixerClient("127.0.0.1", server.port, check_cache_entries=0) as client,
    ):
        assert server.problems == ()
        # deny rule: ratings is closed to v3 callers only
        denied = await client.check(with_labels(inbound("ratings"), app="reviews", version="v3"))
        assert (denied.code, denied.message) == (
            Status.PERMISSION_DENIED,
            "closed.denier.istio-system:ratings is closed to v3",
        )
        assert (await client.check(inbound("ratings"))).ok
        # string whitelist: v1 and v2 may call reviews, v3 and an unlabelled caller may not
        assert (await client.check(with_labels(inbound("reviews"), version="v2"))).ok
        v3 = await client.check(with_labels(inbound("reviews"), version="v3"))
        assert v3.code is Status.PERMISSION_DENIED
        assert "v3 is not whitelisted" in v3.message
        unlabelled = await client.check(with_labels(inbound("reviews")))
        assert unlabelled.code is Status.PERMISSION_DENIED
        assert "none is not whitelisted" in unlabelled.message
        # IP blacklist: a range and a single address
        for address in ("10.66.3.4", "192.0.2.7"):
            bad = await client.check(inbound("details", source__ip=_ip(address)))
            assert bad.code is Status.PERMISSION_DENIED, address
            assert f"{address} is blacklisted" in bad.message
        assert (await client.check(inbound("details", source__ip=_ip("10.67.0.1")))).ok
        assert (await client.check(inbound("details", source__ip=_ip("192.0.2.8")))).ok
        # regex whitelist: versioned API paths only (RE2, anchored by the pattern itself)
        assert (await client.check(inbound("productpage", request__path="/api/v1/products"))).ok
        for path in ("/admin", "/v1/api/v2/"):
            refused = await client.check(inbound("productpage", request__path=path))
            assert refused.code is Status.PERMISSION_DENIED, path


async def test_memquota_grants_three_calls_then_refuses() -> None:
    async with (
        _mixer(_store(POLICY)) as server,
        MixerClient("127.0.0.1", server.port, quota_cache_entries=0) as client,
    ):
        results = [
            await client.check(inbound("ratings"), quotas={"requestcount": 1}) for _ in range(5)
        ]
        assert [r.code for r in results] == [Status.OK] * 3 + [Status.RESOURCE_EXHAUSTED] * 2
        assert results[-1].message == "Quota is exhausted for: requestcount"
        # the limit is per destination (the quota's dimension)
        assert (await client.check(inbound("details"), quotas={"requestcount": 1})).ok


async def test_the_check_cache_follows_the_referenced_attributes_and_the_valid_use_count() -> None:
    clock = FakeClock()
    async with (
        _mixer(_store(POLICY)) as server,
        MixerClient("127.0.0.1", server.port, clock=clock) as client,
    ):
        v1 = with_labels(inbound("reviews"), version="v1")
        first = await client.check(v1)
        assert first.ok and not first.check_cache_hit
        again = await client.check(v1)
        assert again.ok and again.check_cache_hit
        # request.id and the user agent are not referenced by any rule: still a hit
        other_request = {**v1, "request.id": "another", "request.useragent": "wget"}
        assert (await client.check(other_request)).check_cache_hit
        assert (await client.check(v1)).check_cache_hit
        # the listchecker said 3 uses: after three hits the next check asks Mixer again
        fifth = await client.check(v1)
        assert fifth.ok and not fifth.check_cache_hit
        assert client.stats.remote_checks == 2
        # a referenced attribute that differs (source.labels["version"]) is not a hit
        v3 = await client.check(with_labels(inbound("reviews"), version="v3"))
        assert v3.code is Status.PERMISSION_DENIED and not v3.check_cache_hit
        # and a denial is cached by its referenced attributes too
        assert (await client.check(with_labels(inbound("reviews"), version="v3"))).check_cache_hit
        # past valid_duration (the listchecker's 60 s) nothing is a hit
        clock.advance(61)
        assert not (await client.check(v1)).check_cache_hit


async def test_reports_are_batched_and_become_istio_metrics() -> None:
    async with _mixer(_store(POLICY)) as server:
        port = await server.start_prometheus("127.0.0.1", 0)
        async with MixerClient(
            "127.0.0.1", server.port, report_batch_entries=5, report_batch_time=60
        ) as client:
            for number in range(12):
                code = 200 if number % 4 else 503
                client.report(report_bag("reviews", code, request__id=f"req-{number}"))
            # two full batches go at once; the last two bags wait for the batch timer or flush
            await eventually(_value(lambda: client.stats.report_requests_sent), lambda n: n == 2)
            await client.flush()
            assert client.stats.report_requests_sent == 3
            assert client.stats.reports == 12
        async with httpx.AsyncClient() as http:
            scraped = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=10)).text
    samples = {
        (s.labels["response_code"], s.labels["reporter"], s.labels["destination_service"]): s
        for family in text_string_to_metric_families(scraped)
        if family.name == "istio_requests"  # the parser drops a counter's _total
        for s in family.samples
        if s.name == "istio_requests_total"
    }
    host = "reviews.default.svc.cluster.local"
    assert samples[("200", "destination", host)].value == 9
    assert samples[("503", "destination", host)].value == 3
    assert samples[("200", "destination", host)].labels["source_workload"] == "productpage-v1"


async def test_a_rule_that_does_not_compile_is_reported_and_the_others_keep_working() -> None:
    async with (
        _mixer(_store(POLICY, BROKEN_RULE)) as server,
        MixerClient("127.0.0.1", server.port, check_cache_entries=0) as client,
    ):
        (problem,) = server.problems
        assert problem.name == "broken.rule.istio-system"
        assert "typeError got INT64, expected STRING" in problem.message
        assert (await client.check(with_labels(inbound("reviews"), version="v3"))).code is (
            Status.PERMISSION_DENIED
        )
        assert (await client.check(with_labels(inbound("reviews"), version="v1"))).ok
        denied = await client.check(with_labels(inbound("ratings"), version="v3"))
        assert denied.code is Status.PERMISSION_DENIED


async def test_a_config_change_reaches_the_client_once_its_cache_expires() -> None:
    clock = FakeClock()
    store = _store(POLICY)
    async with (
        _mixer(store) as server,
        MixerClient("127.0.0.1", server.port, clock=clock) as client,
    ):
        v2 = with_labels(inbound("reviews"), version="v2")
        assert (await client.check(v2)).ok
        # v2 leaves the whitelist; no restart
        for resource in load_resources(POLICY.replace("overrides: [v1, v2]", "overrides: [v1]")):
            store.apply(resource)
        probe = Proxy(create_channel("127.0.0.1", server.port))
        try:  # wait until the server answers with the new list
            await eventually(
                lambda: probe.check(v2),
                lambda r: (
                    r.precondition is not None
                    and r.precondition.status is not None
                    and r.precondition.status.code == Status.PERMISSION_DENIED.value
                ),
            )
        finally:
            probe.channel.close()
        cached = await client.check(v2)  # the proxy still holds the old verdict
        assert cached.ok and cached.check_cache_hit
        clock.advance(61)  # the verdict was valid for the listchecker's 60 s
        fresh = await client.check(v2)
        assert fresh.code is Status.PERMISSION_DENIED and not fresh.check_cache_hit


def _ip(text: str) -> object:
    import ipaddress

    return ipaddress.ip_address(text)


def _value(read: object) -> object:
    async def probe() -> object:
        assert callable(read)
        return read()

    return probe
