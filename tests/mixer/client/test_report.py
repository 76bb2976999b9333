"""Report batching through MixerClient: by count, by time, on close, bounded; the wire form."""

from __future__ import annotations

import asyncio

import pytest
from support.fake_mixer import RunningMixer

from istio_sdk import MixerClient
from istio_sdk.api.istio.mixer.v1 import ReportRequestRepeatedAttributesSemantics
from istio_sdk.mixer import AttributesError, decode_report


def bags(count: int) -> list[dict[str, object]]:
    return [
        {
            "source.name": "productpage",
            "destination.service.host": "reviews.default.svc.cluster.local",
            "request.path": f"/reviews/{i}",
            "response.code": 200 + i,
            "request.headers": {"x-request-id": f"id-{i}"},
        }
        for i in range(count)
    ]


async def test_a_full_batch_is_sent_at_once(mixer: RunningMixer) -> None:
    async with MixerClient(
        "127.0.0.1", mixer.port, report_batch_entries=3, report_batch_time=3600
    ) as client:
        for bag in bags(7):
            client.report(bag)
        await mixer.service.wait_for(lambda: len(mixer.service.reports) == 2)
        assert [len(r.attributes) for r in mixer.service.reports] == [3, 3]
    # close sends the rest
    assert [len(r.attributes) for r in mixer.service.reports] == [3, 3, 1]


async def test_a_batch_is_sent_max_time_after_its_first_bag(mixer: RunningMixer) -> None:
    async with MixerClient(
        "127.0.0.1", mixer.port, report_batch_entries=100, report_batch_time=0.05
    ) as client:
        client.report(bags(1)[0])
        client.report(bags(2)[1])
        await mixer.service.wait_for(lambda: len(mixer.service.reports) == 1)
        assert len(mixer.service.reports[0].attributes) == 2
        client.report(bags(1)[0])
        await mixer.service.wait_for(lambda: len(mixer.service.reports) == 2)
        assert len(mixer.service.reports[1].attributes) == 1


async def test_close_sends_what_is_batched(mixer: RunningMixer) -> None:
    client = MixerClient("127.0.0.1", mixer.port, report_batch_time=3600)
    for bag in bags(5):
        client.report(bag)
    assert mixer.service.reports == []
    await client.close()
    assert [len(r.attributes) for r in mixer.service.reports] == [5]
    with pytest.raises(RuntimeError, match="closed"):
        client.report(bags(1)[0])


async def test_the_report_wire_form_is_the_1_3_proxy_s(mixer: RunningMixer) -> None:
    sent = bags(4)
    async with MixerClient("127.0.0.1", mixer.port) as client:
        for bag in sent:
            client.report(bag)
    [request] = mixer.service.reports
    assert (
        request.repeated_attributes_semantics
        == ReportRequestRepeatedAttributesSemantics.INDEPENDENT_ENCODING
    )
    assert request.global_word_count == 222
    assert request.default_words  # one word list for the batch...
    assert all(not s.words for s in request.attributes)  # ...and none per set
    assert len(set(request.default_words)) == len(request.default_words)
    assert decode_report(request) == sent


async def test_a_bad_bag_is_refused_when_reported_and_the_batch_stays_intact(
    mixer: RunningMixer,
) -> None:
    async with MixerClient("127.0.0.1", mixer.port) as client:
        client.report(bags(1)[0])
        with pytest.raises(AttributesError):
            client.report({"response.code": float("nan"), "request.size": 2**63})
        client.report(bags(2)[1])
    [request] = mixer.service.reports
    assert decode_report(request) == bags(2)


async def test_reports_to_a_server_that_is_down_are_counted_and_dropped(free_port: int) -> None:
    async with MixerClient("127.0.0.1", free_port, report_batch_entries=2) as client:
        for bag in bags(6):
            client.report(bag)
        await client.flush()
        assert client.stats.report_requests_failed == 3
        assert client.stats.report_requests_sent == 0


async def test_memory_stays_bounded_while_the_server_stalls(mixer: RunningMixer) -> None:
    mixer.service.stall = asyncio.Event()
    client = MixerClient(
        "127.0.0.1",
        mixer.port,
        report_batch_entries=1,
        max_queued_reports=3,
        timeout=0.5,
    )
    for bag in bags(50):
        client.report(bag)
    # reported faster than sent: three wait, the oldest are dropped
    assert client.stats.reports_dropped == 47
    await mixer.service.wait_for(lambda: len(mixer.service.reports) == 1)
    # one in flight (stalled), two waiting; ten more keep three waiting
    for bag in bags(60)[50:]:
        client.report(bag)
    assert client.stats.reports_dropped == 47 + 9
    mixer.service.stall.set()
    await client.close()
    assert sum(len(r.attributes) for r in mixer.service.reports) == 4
    # the newest were kept
    assert [b for r in mixer.service.reports[1:] for b in decode_report(r)] == bags(60)[-3:]
