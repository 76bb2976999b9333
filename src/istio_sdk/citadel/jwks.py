"""Where a :class:`JwtRule`'s keys come from: inline, or fetched from its ``jwksUri`` and cached.

:class:`JwksCache` holds one issuer's JWKS, fetched over httpx, and decides when to fetch:

- A verification never waits on the network for keys the cache already holds. The first fetch is
  waited for (there is nothing to verify with before it); after that, an expired JWKS is still
  served while a refresh runs in the background, and a failed refresh keeps the last good keys.
- A token naming a key the cache lacks (a rotation at the issuer) may trigger a refetch, but at
  most one fetch attempt starts per ``min_refetch_seconds``, whatever its outcome, and concurrent
  misses share the fetch in flight (single flight). Inside the window such a token fails at once.
- A fetch is bounded in time and size; its failure is logged once and never carries a token.

:class:`JwtVerifier` verifies tokens against a rule with those keys; the CA's JWT authenticator
is a thin wrapper around it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from istio_sdk.citadel.errors import JwtError
from istio_sdk.citadel.jwt import (
    DEFAULT_LEEWAY_SECONDS,
    JsonWebKey,
    JwtRule,
    UnknownKeyError,
    UnverifiedJwt,
    parse_jwks,
    verify_jwt,
)

logger = logging.getLogger(__name__)

DEFAULT_CACHE_SECONDS = 20 * 60.0
DEFAULT_MIN_REFETCH_SECONDS = 10.0
DEFAULT_FETCH_TIMEOUT_SECONDS = 10.0
MAX_JWKS_BYTES = 1024 * 1024


class JwksCache:
    """One JWKS URI's keys, fetched with ``http_client`` (a fresh client per fetch if ``None``).

    ``clock`` (seconds) drives the cache age and the refetch rate limit, so tests can move time.
    """

    def __init__(
        self,
        uri: str,
        *,
        http_client: httpx.AsyncClient | None = None,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        min_refetch_seconds: float = DEFAULT_MIN_REFETCH_SECONDS,
        timeout: float = DEFAULT_FETCH_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.uri = uri
        self._client = http_client
        self._cache_seconds = cache_seconds
        self._min_refetch = min_refetch_seconds
        self._timeout = timeout
        self._clock = clock
        self._keys: tuple[JsonWebKey, ...] = ()
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._last_error: JwtError | None = None
        self._inflight: asyncio.Task[JwtError | None] | None = None
        #: Fetch attempts started (successful or not).
        self.fetches = 0

    @property
    def keys(self) -> tuple[JsonWebKey, ...]:
        """The keys of the last successful fetch (empty before the first)."""
        return self._keys

    async def current(self) -> tuple[JsonWebKey, ...]:
        """Keys to verify with now; waits only while no fetch has ever succeeded."""
        if self._fetched_at is None:
            await self._join_or_start_fetch()
            return self._keys
        expired = self._clock() - self._fetched_at >= self._cache_seconds
        if expired and self._inflight is None and self._may_attempt():
            self._start_fetch()
        return self._keys

    async def refetch(self) -> bool:
        """Fetch again for a token whose key is missing; ``False`` when the rate limit says no.

        Joins the fetch in flight if there is one. Raises :class:`JwtError` if the fetch fails.
        """
        if self._inflight is None and not self._may_attempt():
            return False
        await self._join_or_start_fetch()
        return True

    async def aclose(self) -> None:
        """Cancel a fetch in flight (call when the owner stops)."""
        task = self._inflight
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _may_attempt(self) -> bool:
        if self._last_attempt is None:
            return True
        elapsed = self._clock() - self._last_attempt
        # A clock stepped backwards must not freeze refetches until it catches up.
        return elapsed >= self._min_refetch or elapsed < 0

    async def _join_or_start_fetch(self) -> None:
        task = self._inflight
        if task is None:
            if not self._may_attempt():
                assert self._last_attempt is not None
                wait = self._min_refetch - (self._clock() - self._last_attempt)
                raise JwtError(
                    f"JWKS from {self.uri} is unavailable ({self._last_error}); "
                    f"next fetch in {wait:.0f} s"
                )
            task = self._start_fetch()
        # Shielded: a caller that gives up (its RPC is cancelled) leaves the fetch to the others.
        error = await asyncio.shield(task)
        if error is not None:
            raise JwtError(str(error))

    def _start_fetch(self) -> asyncio.Task[JwtError | None]:
        self._last_attempt = self._clock()
        self.fetches += 1
        task = asyncio.get_running_loop().create_task(self._fetch(), name=f"jwks {self.uri}")
        self._inflight = task
        return task

    async def _fetch(self) -> JwtError | None:
        try:
            keys = await self._download()
        except JwtError as exc:
            self._last_error = exc
            logger.warning("%s", exc)
            return exc
        except Exception as exc:  # a bug must not leave waiters hanging or kill the cache
            logger.exception("JWKS fetch from %s failed unexpectedly", self.uri)
            self._last_error = JwtError(f"JWKS fetch from {self.uri} failed: {type(exc).__name__}")
            return self._last_error
        finally:
            self._inflight = None
        self._keys = keys
        self._fetched_at = self._clock()
        self._last_error = None
        logger.info("JWKS from %s: %d usable keys", self.uri, len(keys))
        return None

    async def _download(self) -> tuple[JsonWebKey, ...]:
        client = self._client or httpx.AsyncClient(timeout=self._timeout)
        body = bytearray()
        try:
            async with asyncio.timeout(self._timeout):
                async with client.stream(
                    "GET", self.uri, headers={"Accept": "application/json"}
                ) as response:
                    if response.status_code != 200:
                        raise JwtError(f"JWKS URI {self.uri} answered HTTP {response.status_code}")
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_JWKS_BYTES:
                            raise JwtError(f"JWKS from {self.uri} is larger than 1 MiB")
        except TimeoutError:
            raise JwtError(
                f"JWKS fetch from {self.uri} took longer than {self._timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise JwtError(f"cannot fetch JWKS from {self.uri}: {type(exc).__name__}") from None
        finally:
            if self._client is None:
                await client.aclose()
        try:
            return parse_jwks(bytes(body))
        except JwtError as exc:
            raise JwtError(f"JWKS from {self.uri}: {exc}") from None


class JwtVerifier:
    """Verifies bearer tokens against ``rule``, with inline keys or a :class:`JwksCache`.

    ``clock`` is wall time in seconds (token ``exp``/``nbf``/``iat`` and the JWKS cache).
    """

    def __init__(
        self,
        rule: JwtRule,
        *,
        http_client: httpx.AsyncClient | None = None,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        min_refetch_seconds: float = DEFAULT_MIN_REFETCH_SECONDS,
        leeway: float = DEFAULT_LEEWAY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rule = rule
        self._leeway = leeway
        self._clock = clock
        self._inline = parse_jwks(rule.jwks) if rule.jwks is not None else ()
        self.jwks: JwksCache | None = None
        if rule.jwks_uri is not None:
            self.jwks = JwksCache(
                rule.jwks_uri,
                http_client=http_client,
                cache_seconds=cache_seconds,
                min_refetch_seconds=min_refetch_seconds,
                clock=clock,
            )

    async def verify(self, token: str) -> Mapping[str, Any]:
        """The verified claims of ``token``; raises :class:`JwtError` naming the failed check."""
        # Malformed tokens are refused before any key is looked up (or fetched).
        jwt = UnverifiedJwt.parse(token)
        if self.jwks is None:
            return verify_jwt(jwt, self.rule, self._inline, now=self._clock(), leeway=self._leeway)
        keys = await self.jwks.current()
        try:
            return verify_jwt(jwt, self.rule, keys, now=self._clock(), leeway=self._leeway)
        except UnknownKeyError as exc:
            try:
                fetched = await self.jwks.refetch()
            except JwtError as fetch_error:
                raise UnknownKeyError(f"{exc}; refetching the JWKS failed: {fetch_error}") from None
            if not fetched:
                raise UnknownKeyError(f"{exc} (JWKS refetched recently)") from None
        return verify_jwt(jwt, self.rule, self.jwks.keys, now=self._clock(), leeway=self._leeway)

    async def aclose(self) -> None:
        """Cancel a JWKS fetch in flight."""
        if self.jwks is not None:
            await self.jwks.aclose()
