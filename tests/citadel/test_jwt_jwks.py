"""A jwksUri's keys: cached, refetched at most once per window, never waited for when known.

The JWKS endpoint is an ``httpx.MockTransport`` whose handler counts requests and can stall on an
event, so each test orders what happens by events, not by timing. One test uses a real HTTP
server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import httpx
import pytest
from citadel.test_jwt_tokens import AUDIENCE, ISSUER, claims, make_token
from cryptography.hazmat.primitives.asymmetric import ec

from istio_sdk.citadel import CallerContext, Identity, JwtAuthenticator, JwtError, JwtRule
from istio_sdk.citadel.jwt import public_key_to_jwk

URI = "https://issuer.example/jwks"
WAIT = 10.0  # generous bound on waits for events that must happen


@attrs.define
class Clock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@attrs.define
class JwksEndpoint:
    """Answers each GET with the next planned reply: a JWKS doc, an HTTP status, or an error."""

    plan: list[Any]
    requests: int = 0
    entered: asyncio.Event = attrs.field(factory=asyncio.Event)
    release: asyncio.Event = attrs.field(factory=asyncio.Event)
    stall_on: int | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        reply = self.plan[min(self.requests, len(self.plan)) - 1]
        if self.requests == self.stall_on:
            self.entered.set()
            await self.release.wait()
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, int):
            return httpx.Response(reply, json={"error": "nope"})
        if isinstance(reply, bytes):
            return httpx.Response(200, content=reply)
        return httpx.Response(200, json=reply)


def jwks(*keys: tuple[Any, str]) -> dict[str, Any]:
    return {"keys": [public_key_to_jwk(key.public_key(), kid) for key, kid in keys]}


@pytest.fixture(scope="module")
def k1() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def k2() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def caller(token: str) -> CallerContext:
    return CallerContext(metadata={"authorization": f"Bearer {token}"})


def authenticator(endpoint: JwksEndpoint, clock: Clock, **options: Any) -> JwtAuthenticator:
    rule = JwtRule(issuer=ISSUER, audiences=(AUDIENCE,), jwks_uri=URI)
    client = httpx.AsyncClient(transport=httpx.MockTransport(endpoint.handle))
    return JwtAuthenticator(
        rule,
        http_client=client,
        clock=clock,
        verified_cache_seconds=0,
        **({"min_refresh_seconds": 10.0, "jwks_cache_seconds": 300.0} | options),
    )


def token(key: Any, kid: str, clock: Clock, sa: str = "sleep") -> str:
    doc = claims(
        iat=int(clock.now),
        exp=int(clock.now) + 3600,
        sub=f"system:serviceaccount:default:{sa}",
    )
    return make_token(key, "ES256", doc, kid=kid)


async def wait_for(event: asyncio.Event | Awaitable[Any]) -> Any:
    waitable = event.wait() if isinstance(event, asyncio.Event) else event
    return await asyncio.wait_for(waitable, WAIT)


async def test_keys_are_fetched_once_and_cached(k1: Any) -> None:
    clock = Clock()
    endpoint = JwksEndpoint([jwks((k1, "k1"))])
    auth = authenticator(endpoint, clock)
    first = [auth.authenticate(caller(token(k1, "k1", clock, f"sa{i}"))) for i in range(10)]
    assert await asyncio.gather(*first) == [Identity("default", f"sa{i}") for i in range(10)]
    for sa in ("a", "b", "c"):
        identity = await auth.authenticate(caller(token(k1, "k1", clock, sa)))
        assert identity == Identity("default", sa)
    assert endpoint.requests == 1


async def test_a_failing_endpoint_is_asked_at_most_once_per_window(k1: Any) -> None:
    clock = Clock()
    endpoint = JwksEndpoint([503])
    auth = authenticator(endpoint, clock)
    tokens = [token(k1, f"kid-{i}", clock) for i in range(50)]
    for t in tokens[:25]:
        with pytest.raises(JwtError, match=r"HTTP 503|unavailable"):
            await auth.authenticate(caller(t))
    results = await asyncio.gather(
        *(auth.authenticate(caller(t)) for t in tokens[25:]), return_exceptions=True
    )
    assert all(isinstance(r, JwtError) for r in results)
    assert endpoint.requests == 1
    clock.now += 10.0
    with pytest.raises(JwtError):
        await auth.authenticate(caller(tokens[0]))
    assert endpoint.requests == 2


async def test_unknown_kids_refetch_at_most_once_per_window(k1: Any, k2: Any) -> None:
    clock = Clock()
    endpoint = JwksEndpoint([jwks((k1, "k1")), 500])
    auth = authenticator(endpoint, clock)
    assert await auth.authenticate(caller(token(k1, "k1", clock)))
    clock.now += 60.0  # well past the refetch window, inside the cache lifetime
    unknown = [token(k2, f"rotated-{i}", clock) for i in range(50)]
    for t in unknown[:25]:
        with pytest.raises(JwtError, match="no key in the JWKS matches"):
            await auth.authenticate(caller(t))
    results = await asyncio.gather(
        *(auth.authenticate(caller(t)) for t in unknown[25:]), return_exceptions=True
    )
    assert all(isinstance(r, JwtError) for r in results)
    assert endpoint.requests == 2
    # The keys it had are still good.
    assert await auth.authenticate(caller(token(k1, "k1", clock, "after")))
    assert endpoint.requests == 2


async def test_a_rotated_key_is_picked_up_by_one_shared_refetch(k1: Any, k2: Any) -> None:
    clock = Clock()
    endpoint = JwksEndpoint([jwks((k1, "k1")), jwks((k1, "k1"), (k2, "k2"))], stall_on=2)
    auth = authenticator(endpoint, clock)
    assert await auth.authenticate(caller(token(k1, "k1", clock)))
    clock.now += 60.0
    misses = [
        asyncio.create_task(auth.authenticate(caller(token(k2, "k2", clock, f"sa{i}"))))
        for i in range(20)
    ]
    await wait_for(endpoint.entered)
    endpoint.release.set()
    identities = await wait_for(asyncio.gather(*misses))
    assert identities == [Identity("default", f"sa{i}") for i in range(20)]
    assert endpoint.requests == 2


async def test_a_known_key_verifies_while_a_refetch_is_stalled(k1: Any, k2: Any) -> None:
    clock = Clock()
    endpoint = JwksEndpoint([jwks((k1, "k1")), jwks((k1, "k1"), (k2, "k2"))], stall_on=2)
    auth = authenticator(endpoint, clock, min_refresh_seconds=0.0)
    assert await auth.authenticate(caller(token(k1, "k1", clock)))
    miss = asyncio.create_task(auth.authenticate(caller(token(k2, "k2", clock, "rotated"))))
    await wait_for(endpoint.entered)  # the refetch for k2 is now stalled inside the endpoint
    known = await wait_for(auth.authenticate(caller(token(k1, "k1", clock, "known"))))
    assert known == Identity("default", "known")
    assert not miss.done()
    endpoint.release.set()
    assert await wait_for(miss) == Identity("default", "rotated")
    assert endpoint.requests == 2


async def test_an_expired_jwks_is_served_while_it_refreshes(k1: Any, k2: Any) -> None:
    clock = Clock()
    endpoint = JwksEndpoint([jwks((k1, "k1")), jwks((k2, "k2"))], stall_on=2)
    auth = authenticator(endpoint, clock, jwks_cache_seconds=300.0)
    assert await auth.authenticate(caller(token(k1, "k1", clock)))
    clock.now += 301.0
    # The cache is expired: this verification starts a refresh and does not wait for it.
    first = await wait_for(auth.authenticate(caller(token(k1, "k1", clock, "during"))))
    assert first == Identity("default", "during")
    await wait_for(endpoint.entered)
    assert await wait_for(auth.authenticate(caller(token(k1, "k1", clock, "still"))))
    assert endpoint.requests == 2  # one refresh, however many tokens arrive meanwhile
    endpoint.release.set()
    # Once the refresh lands, the new key verifies without another fetch; the old one is gone.
    new = token(k2, "k2", clock, "new")
    assert await wait_for(_first_success(lambda: auth.authenticate(caller(new))))
    assert endpoint.requests == 2
    with pytest.raises(JwtError, match="no key in the JWKS matches kid 'k1'"):
        await auth.authenticate(caller(token(k1, "k1", clock, "old")))
    assert endpoint.requests == 2


async def _first_success(attempt: Callable[[], Awaitable[Identity | None]]) -> Identity | None:
    """Retry until ``attempt`` stops raising JwtError (the caller bounds the wait)."""
    while True:
        try:
            return await attempt()
        except JwtError:
            await asyncio.sleep(0.01)


class LogWatch(logging.Handler):
    """Counts log records containing ``text`` and lets a test wait for the next one."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.count = 0
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.count += 1
            self.changed.set()

    async def reach(self, count: int) -> None:
        while self.count < count:
            self.changed.clear()
            await self.changed.wait()


async def test_a_failed_refresh_keeps_the_last_good_keys(k1: Any) -> None:
    clock = Clock()
    endpoint = JwksEndpoint([jwks((k1, "k1")), httpx.ConnectError("refused")])
    auth = authenticator(endpoint, clock, jwks_cache_seconds=300.0)
    watch = LogWatch("cannot fetch JWKS")
    logging.getLogger("istio_sdk.citadel").addHandler(watch)
    try:
        assert await auth.authenticate(caller(token(k1, "k1", clock)))
        for step in range(1, 4):
            clock.now += 301.0
            assert await auth.authenticate(caller(token(k1, "k1", clock, f"sa{step}")))
            await wait_for(watch.reach(step))
            assert await auth.authenticate(caller(token(k1, "k1", clock, f"after{step}")))
    finally:
        logging.getLogger("istio_sdk.citadel").removeHandler(watch)
    assert endpoint.requests == 4


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (404, "HTTP 404"),
        (httpx.ConnectError("refused"), "ConnectError"),
        (httpx.ReadTimeout("slow"), "ReadTimeout"),
        (b"not json", "not JSON"),
        (b"[" * 5000 + b"]" * 5000, "deeper"),
        (b'{"keys": [' + b"1" * 5000 + b"]}", "digits"),
        (b'{"keys": "none"}', "no 'keys' list"),
        (b" " * (1024 * 1024 + 1), "larger than 1 MiB"),
    ],
    ids=["404", "refused", "timeout", "text", "deep", "bigint", "shape", "huge"],
)
async def test_a_bad_jwks_fetch_is_a_typed_error_and_logged_without_the_token(
    k1: Any, reply: Any, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    auth = authenticator(JwksEndpoint([reply]), clock)
    t = token(k1, "k1", clock)
    with pytest.raises(JwtError, match=message) as raised:
        await auth.authenticate(caller(t))
    assert message in caplog.text
    for segment in t.split("."):
        assert segment not in caplog.text
        assert segment not in str(raised.value)


async def test_a_stalled_fetch_ends_at_the_timeout(k1: Any) -> None:
    from istio_sdk.citadel.jwks import JwksCache

    endpoint = JwksEndpoint([jwks((k1, "k1"))], stall_on=1)
    client = httpx.AsyncClient(transport=httpx.MockTransport(endpoint.handle))
    cache = JwksCache(URI, http_client=client, timeout=0.05)
    with pytest.raises(JwtError, match=r"took longer than 0\.05 s"):
        await wait_for(cache.current())
    endpoint.release.set()
    await cache.aclose()


async def test_keys_come_from_a_real_http_server(http_server: Any, k1: Any) -> None:
    http_server.routes[("GET", "/jwks")] = lambda _body, _headers: (200, jwks((k1, "k1")))
    rule = JwtRule.from_json({"issuer": ISSUER, "jwksUri": f"{http_server.url}/jwks"})
    auth = JwtAuthenticator(rule)
    clock = Clock(now=time.time())
    assert await auth.authenticate(caller(token(k1, "k1", clock))) == Identity("default", "sleep")
    assert [(m, p) for m, p, _h, _b in http_server.requests] == [("GET", "/jwks")]
    await auth.aclose()


def test_an_inline_jwks_never_fetches(k1: Any) -> None:
    rule = JwtRule(issuer=ISSUER, jwks=json.dumps(jwks((k1, "k1"))))
    auth = JwtAuthenticator(rule)
    clock = Clock(now=time.time())
    assert asyncio.run(auth.authenticate(caller(token(k1, "k1", clock)))) == Identity(
        "default", "sleep"
    )
    assert auth.jwks_fetches == 0
