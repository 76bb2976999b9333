"""listchecker: entry types, black/whitelists, refresh from providerUrl, ttl, bad input."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress

import httpx
import pytest
from grpclib.const import Status as Code

from istio_sdk.mixer.adapters import AdapterParamsError, ListHandler, build_handler, dispatch_check
from istio_sdk.mixer.adapters.listchecker import MAX_LIST_BYTES, ListParams
from istio_sdk.mixer.templates import ListEntry

URL = "http://lists.example/allowed"


class Provider:
    """An in-process list provider: its body and status can change between fetches."""

    def __init__(self, body: bytes, status: int = 200) -> None:
        self.body = body
        self.status = status
        self.refuse = False
        self.requests = 0
        self.second = asyncio.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.requests >= 2:
            self.second.set()
        if self.refuse:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(self.status, content=self.body)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(value: object) -> ListEntry:
    return ListEntry("source.listentry.istio-system", value)  # type: ignore[arg-type]


async def make(params: dict[str, object], **options: object) -> ListHandler:
    return await ListHandler.create("wl.handler.istio-system", params, refresh=False, **options)  # type: ignore[arg-type]


async def test_whitelist_of_strings_with_istios_caching_values() -> None:
    handler = await make(
        {"overrides": ["reviews", "ratings"], "cachingInterval": "10s", "cachingUseCount": 7}
    )
    allowed = handler.check(entry("reviews"))
    assert allowed.status.ok
    assert (allowed.valid_duration, allowed.valid_use_count) == (datetime.timedelta(seconds=10), 7)
    denied = handler.check(entry("Reviews"))
    assert (denied.status.code, denied.status.message) == (
        Code.PERMISSION_DENIED,
        "Reviews is not whitelisted",
    )
    assert denied.valid_use_count == 7


async def test_blacklist_case_insensitive() -> None:
    handler = await make(
        {"overrides": ["BadBot"], "entryType": "CASE_INSENSITIVE_STRINGS", "blacklist": True}
    )
    result = handler.check(entry("badbot"))
    assert (result.status.code, result.status.message) == (
        Code.PERMISSION_DENIED,
        "badbot is blacklisted",
    )
    assert handler.check(entry("goodbot")).status.ok


async def test_ip_ranges_and_istios_slash_32_for_bare_entries() -> None:
    handler = await make(
        {"overrides": ["10.0.0.0/8", "192.168.1.7", "2001:db8::1"], "entryType": 2}
    )
    assert handler.check(entry("10.200.0.1")).status.ok
    assert handler.check(entry(ipaddress.ip_address("192.168.1.7"))).status.ok
    assert handler.check(entry(bytes([10, 1, 2, 3]))).status.ok  # IP bytes as they travel
    assert handler.check(entry("::ffff:10.1.1.1")).status.ok  # IPv4-mapped, as Go's net.IP
    assert handler.check(entry("192.168.1.8")).status.code is Code.PERMISSION_DENIED
    # "2001:db8::1" became 2001:db8::1/32, a whole /32 of IPv6 (Istio's quirk)
    assert handler.check(entry("2001:db8:ffff::9")).status.ok
    bad = handler.check(entry("not-an-ip"))
    assert (bad.status.code, bad.status.message) == (
        Code.INVALID_ARGUMENT,
        "not-an-ip is not a valid IP address",
    )


async def test_regex_entries_match_anywhere_with_re2() -> None:
    handler = await make(
        {"overrides": ["^/admin", "secret"], "entryType": "REGEX", "blacklist": True}
    )
    assert handler.check(entry("/admin/users")).status.code is Code.PERMISSION_DENIED
    assert handler.check(entry("/api/secrets")).status.code is Code.PERMISSION_DENIED
    assert handler.check(entry("/api/public")).status.ok
    assert handler.check(entry("\ud800lone surrogate")).status.ok


async def test_values_that_are_not_strings_or_ips_are_invalid_argument() -> None:
    handler = await make({"overrides": ["x"]})
    for value in (42, 1.5, True, "", {"a": "b"}):
        result = handler.check(entry(value))
        assert result.status.code is Code.INVALID_ARGUMENT
        assert result.status.message.endswith("is not a valid string or IP address")


async def test_fetched_list_is_unioned_with_overrides_and_refreshed() -> None:
    provider = Provider(b"reviews\nratings\n\n details \n")
    handler = await make({"providerUrl": URL, "overrides": ["productpage"]}, http=provider.client())
    assert handler.entries == 4
    assert handler.check(entry("reviews")).status.ok
    assert handler.check(entry("productpage")).status.ok
    assert handler.check(entry(" details ")).status.ok  # lines are not trimmed
    assert not handler.check(entry("details")).status.ok
    provider.body = b"details\n"
    await handler.fetch()
    assert handler.check(entry("details")).status.ok
    assert not handler.check(entry("reviews")).status.ok
    await handler.close()


async def test_a_failed_fetch_keeps_the_last_good_list_until_the_ttl() -> None:
    provider = Provider(b"reviews\n")
    clock = Clock()
    handler = await make(
        {"providerUrl": URL, "refreshInterval": "1s", "ttl": "10s"},
        http=provider.client(),
        clock=clock,
    )
    for status, refuse in ((500, False), (200, True)):
        provider.status, provider.refuse = status, refuse
        clock.now += 4
        await handler.fetch()
        assert handler.check(entry("reviews")).status.ok  # still the last good list
    assert handler.last_error is not None and "connection refused" in handler.last_error
    clock.now += 3  # 11 s since the last good fetch: the list is purged; the error shows
    result = await dispatch_check(handler, entry("reviews"))
    assert result.status.code is Code.INTERNAL
    assert "could not fetch list from http://lists.example/allowed" in result.status.message
    await handler.close()


async def test_unreadable_ip_lists_are_rejected_and_the_old_one_kept() -> None:
    provider = Provider(b"whitelist:\n- 10.0.0.0/8\n")
    handler = await make({"providerUrl": URL, "entryType": "IP_ADDRESSES"}, http=provider.client())
    assert handler.check(entry("10.1.1.1")).status.ok
    for body in (
        b"whitelist: [300.1.1.1]",
        b"- just a list",
        b"whitelist: {a: b}",
        b"{{{",
        b"\x00\xff",
    ):
        provider.body = body
        await handler.fetch()
        assert handler.last_error is not None, body
        assert handler.check(entry("10.1.1.1")).status.ok
    await handler.close()


async def test_a_failed_first_fetch_is_internal_then_an_empty_whitelist_denies() -> None:
    provider = Provider(b"", status=404)
    handler = await make({"providerUrl": URL}, http=provider.client())
    failed = await dispatch_check(handler, entry("x"))
    assert failed.status.code is Code.INTERNAL and "404" in failed.status.message
    provider.status = 200
    await handler.fetch()
    assert not handler.check(entry("x")).status.ok  # an empty whitelist denies


async def test_an_oversized_list_is_refused() -> None:
    def huge(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"a" * (MAX_LIST_BYTES + 1))

    handler = await make(
        {"providerUrl": URL}, http=httpx.AsyncClient(transport=httpx.MockTransport(huge))
    )
    assert handler.last_error is not None and "larger than" in handler.last_error
    assert handler.entries is None


async def test_the_refresh_loop_fetches_every_interval_and_stops_on_close() -> None:
    provider = Provider(b"a\n")
    handler = await build_handler(
        "listchecker",
        "wl.handler.ns",
        {"providerUrl": URL, "refreshInterval": "1s"},
        http=provider.client(),
    )
    await asyncio.wait_for(provider.second.wait(), timeout=10)
    await handler.close()
    seen = provider.requests
    await asyncio.sleep(1.5)  # longer than one refresh interval: a live loop would fetch again
    assert provider.requests == seen


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"providerUrl": "lists.example/x"}, "providerUrl: URL scheme and host cannot be empty"),
        ({"providerUrl": "ftp://h/x"}, "unsupported URL scheme"),
        ({"providerUrl": URL, "refreshInterval": "500ms"}, "at least 1 second"),
        ({"providerUrl": URL, "ttl": "30s"}, "ttl must be > refreshInterval"),
        ({"cachingUseCount": -1}, "caching use count must be >= 0"),
        (
            {"entryType": "IP_ADDRESSES", "overrides": ["10.0.0.0/33"]},
            "overrides[0]: could not parse",
        ),
        ({"entryType": "REGEX", "overrides": ["ok", "(unclosed"]}, "overrides[1]: could not parse"),
        ({"entryType": "REGEX", "overrides": ["(?<=lookbehind)"]}, "overrides[0]"),
        ({"overrides": "a,b"}, "overrides: expected a list"),
        ({"entryType": "BLOOM"}, "entryType: unknown value 'BLOOM'"),
        ({"blacklist": "yes"}, "blacklist: expected true or false"),
        ({"providerUrl": "http://h/\ud800"}, "providerUrl: "),  # a JSON lone surrogate escape
    ],
)
def test_bad_params(params: dict[str, object], message: str) -> None:
    with pytest.raises(AdapterParamsError) as caught:
        ListParams.from_dict(params)
    assert message in str(caught.value)


async def test_a_huge_value_gets_a_short_status_message() -> None:
    handler = await make({"overrides": ["a"]})
    result = handler.check(entry("x" * 1_000_000))
    assert result.status.code is Code.PERMISSION_DENIED
    assert len(result.status.message) <= 1000 and result.status.message.endswith("...")


async def test_a_provider_that_never_answers_is_bounded_and_the_old_list_kept() -> None:
    stall = asyncio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        if stall.is_set():
            await asyncio.Event().wait()  # headers never come
        return httpx.Response(200, content=b"reviews\n")

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    handler = await make({"providerUrl": URL}, http=client, fetch_timeout=0.1)
    stall.set()
    await asyncio.wait_for(handler.fetch(), timeout=10)
    assert handler.last_error == f"could not fetch list from {URL}: no answer within 0.1s"
    assert handler.check(entry("reviews")).status.ok
