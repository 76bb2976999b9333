"""``listchecker`` (Istio's ``list`` adapter): is a value on a list?

The list is the handler's ``overrides`` plus, when ``providerUrl`` is set, the body fetched from
that URL (newline-separated entries, not trimmed; for IP lists a YAML document with a
``whitelist:`` key, in either mode). Entries are exact strings, case-insensitive strings, IP
addresses or CIDR ranges (an entry without ``/`` gets ``/32`` appended, even an IPv6 one, as
Istio does) or RE2 regular expressions (unanchored: any match anywhere counts).

Istio 1.3's behaviour, kept here:

- the first fetch happens when the handler is built, then one every ``refreshInterval``; a
  failed fetch keeps the last good list (no fast retry), and a list not refreshed within
  ``ttl`` is dropped;
- a whitelist denies what is not found, a blacklist what is found, both with
  PERMISSION_DENIED (``V is not whitelisted`` / ``V is blacklisted``); a value that is not a
  string or IP address, or not an IP for an IP list, gets INVALID_ARGUMENT;
- every verdict is valid for ``cachingInterval`` and ``cachingUseCount`` uses;
- with no list yet, the result is empty (OK) unless a fetch failed: then the check fails with
  that error (INTERNAL through :func:`~istio_sdk.mixer.adapters.base.dispatch_check`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import hashlib
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import attrs
import httpx
import yaml
from grpclib.const import Status as Code

from istio_sdk.config import _go
from istio_sdk.mixer.adapters import _values
from istio_sdk.mixer.adapters._params import Reader
from istio_sdk.mixer.adapters.base import (
    OK,
    AdapterError,
    CheckResult,
    Handler,
    RpcStatus,
    shorten,
)
from istio_sdk.mixer.templates import CheckInstance

_LOG = logging.getLogger(__name__)
_READ = Reader("listchecker")
_SECOND = datetime.timedelta(seconds=1)
MAX_LIST_BYTES = 64 * 1024 * 1024
"""A fetched list larger than this is refused (the last good list stays)."""

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class EntryType(enum.Enum):
    STRINGS = 0
    CASE_INSENSITIVE_STRINGS = 1
    IP_ADDRESSES = 2
    REGEX = 3


def _network(entry: str) -> IpNetwork:
    text = entry if "/" in entry else entry + "/32"
    return ipaddress.ip_network(text, strict=False)


@attrs.frozen
class ListParams:
    provider_url: str = ""
    refresh_interval: datetime.timedelta = datetime.timedelta(seconds=60)
    ttl: datetime.timedelta = datetime.timedelta(seconds=300)
    caching_interval: datetime.timedelta = datetime.timedelta(seconds=300)
    caching_use_count: int = 10000
    overrides: tuple[str, ...] = ()
    entry_type: EntryType = EntryType.STRINGS
    blacklist: bool = False

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> ListParams:
        names = [
            "provider_url",
            "refresh_interval",
            "ttl",
            "caching_interval",
            "caching_use_count",
            "overrides",
            "entry_type",
            "blacklist",
        ]
        found = _READ.fields(params, "", names)
        values: dict[str, Any] = {}
        for name in ("refresh_interval", "ttl", "caching_interval"):
            if name in found:
                values[name] = _READ.duration(*found[name])
        if "provider_url" in found:
            values["provider_url"] = _READ.string(*found["provider_url"])
        if "caching_use_count" in found:
            values["caching_use_count"] = _READ.integer(*found["caching_use_count"], bits=32)
        if "overrides" in found:
            values["overrides"] = tuple(_READ.strings(*found["overrides"]))
        if "entry_type" in found:
            values["entry_type"] = _READ.enum(*found["entry_type"], EntryType)
        if "blacklist" in found:
            values["blacklist"] = _READ.boolean(*found["blacklist"])
        result = cls(**values)
        result._validate()
        return result

    def _validate(self) -> None:
        if self.provider_url:
            try:
                url = httpx.URL(self.provider_url)
            except httpx.InvalidURL as exc:
                raise _READ.error("providerUrl", str(exc)) from None
            except UnicodeError:  # a lone surrogate, from a JSON escape
                raise _READ.error("providerUrl", "the URL is not valid UTF-8") from None
            if not url.scheme or not url.host:
                raise _READ.error("providerUrl", "URL scheme and host cannot be empty")
            if url.scheme not in ("http", "https"):
                raise _READ.error("providerUrl", f"unsupported URL scheme {url.scheme!r}")
            if self.refresh_interval < _SECOND:
                raise _READ.error(
                    "refreshInterval",
                    f"refresh interval must be at least 1 second, it is {self.refresh_interval}",
                )
            if self.ttl < self.refresh_interval:
                raise _READ.error(
                    "ttl",
                    f"ttl must be > refreshInterval, ttl is {self.ttl} and refreshInterval is "
                    f"{self.refresh_interval}",
                )
        if self.caching_interval < datetime.timedelta(0):
            raise _READ.error("cachingInterval", "caching interval must be >= 0")
        if self.caching_use_count < 0:
            raise _READ.error("cachingUseCount", "caching use count must be >= 0")
        for index, entry in enumerate(self.overrides):
            try:
                if self.entry_type is EntryType.IP_ADDRESSES:
                    _network(entry)
                elif self.entry_type is EntryType.REGEX:
                    _go.compile_regex(entry)
            except ValueError as exc:
                raise _READ.error(
                    f"overrides[{index}]", f"could not parse override {entry!r}: {exc}"
                ) from None


def _go_upper(text: str) -> str:
    # Go's strings.ToUpper maps rune by rune; Python's upper() may grow a string ("ß" -> "SS").
    return "".join(c if len(c.upper()) != 1 else c.upper() for c in text)


class EntryList:
    """A parsed list; ``contains`` raises ValueError for a value the list cannot hold."""

    def __init__(self, entry_type: EntryType, entries: Iterable[str]) -> None:
        self.entry_type = entry_type
        self._strings: set[str] = set()
        self._networks: list[IpNetwork] = []
        self._regexes: list[Any] = []
        for entry in entries:
            if entry_type is EntryType.STRINGS:
                self._strings.add(entry)
            elif entry_type is EntryType.CASE_INSENSITIVE_STRINGS:
                self._strings.add(_go_upper(entry))
            elif entry_type is EntryType.IP_ADDRESSES:
                self._networks.append(_network(entry))
            else:
                self._regexes.append(_go.compile_regex(entry))

    def __len__(self) -> int:
        return len(self._strings) + len(self._networks) + len(self._regexes)

    def contains(self, value: str) -> bool:
        if self.entry_type is EntryType.STRINGS:
            return value in self._strings
        if self.entry_type is EntryType.CASE_INSENSITIVE_STRINGS:
            return _go_upper(value) in self._strings
        if self.entry_type is EntryType.REGEX:
            text = value.encode("utf-8", "replace").decode("utf-8")  # RE2 needs UTF-8
            return any(regex.search(text) is not None for regex in self._regexes)
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value} is not a valid IP address") from None
        return self.contains_address(address)

    def contains_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """An IP_ADDRESSES list's answer for an address already parsed (no text round trip)."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)


def parse_list(entry_type: EntryType, body: bytes, overrides: Iterable[str]) -> EntryList:
    """A fetched body plus the overrides, as Istio reads them; ValueError if unreadable."""
    text = body.decode("utf-8", "replace")
    if entry_type is EntryType.IP_ADDRESSES:
        try:
            document = yaml.safe_load(text) if text.strip() else {}
        except yaml.YAMLError as exc:
            raise ValueError(f"could not unmarshal data from list: {exc}") from None
        if document is None:
            document = {}
        if not isinstance(document, dict):
            raise ValueError("could not unmarshal data from list: expected a whitelist: key")
        listed = document.get("whitelist") or []
        if not isinstance(listed, list) or not all(isinstance(e, str) for e in listed):
            raise ValueError("could not unmarshal data from list: whitelist must list strings")
        for entry in listed:
            try:
                _network(entry)
            except ValueError as exc:
                raise ValueError(f"could not parse list entry {entry}: {exc}") from None
        return EntryList(entry_type, [*listed, *overrides])
    lines = [line for line in text.split("\n") if line]
    return EntryList(entry_type, [*lines, *(o for o in overrides if o)])


def _lookup_text(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, bytes | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return _values.ip_text(value)
    return None


class ListHandler(Handler):
    adapter: ClassVar[str] = "listchecker"
    templates: ClassVar[frozenset[str]] = frozenset({"listentry"})

    def __init__(
        self,
        name: str,
        params: ListParams,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        fetch_timeout: float | None = None,
    ) -> None:
        super().__init__(name)
        self.params = params
        self._ok = CheckResult(OK, params.caching_interval, params.caching_use_count)
        # a whole fetch (connect, headers, body) is bounded; by default by the refresh interval
        self.fetch_timeout = fetch_timeout or min(params.refresh_interval.total_seconds(), 30.0)
        self._http = http
        self._own_http = http is None
        self._clock = clock
        self._list: EntryList | None = None
        self._last_error: str | None = None
        self._last_sha: bytes | None = None
        self._refreshed_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.fetches = 0  # attempts so far, for tests and metrics

    @classmethod
    async def create(
        cls,
        name: str,
        params: Mapping[str, Any] | None,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        refresh: bool = True,
        fetch_timeout: float | None = None,
    ) -> ListHandler:
        """Parse ``params``, fetch the list once, and (with ``refresh``) keep refreshing it."""
        parsed = ListParams.from_dict(params)
        handler = cls(name, parsed, http=http, clock=clock, fetch_timeout=fetch_timeout)
        await handler.fetch()
        if refresh and handler.params.provider_url:
            handler._task = asyncio.create_task(handler._refresh_loop(), name=f"list:{name}")
        return handler

    @property
    def last_error(self) -> str | None:
        """Why the latest fetch failed, or None after a good one."""
        return self._last_error

    @property
    def entries(self) -> int | None:
        """How many entries the current list holds (None: no list)."""
        current = self._current()
        return None if current is None else len(current)

    def _current(self) -> EntryList | None:
        if (
            self._list is not None
            and self.params.provider_url
            and self._clock() - self._refreshed_at >= self.params.ttl.total_seconds()
        ):
            _LOG.warning("%s: purging the list: not refreshed within its ttl", self.name)
            self._list = None
        return self._list

    async def fetch(self) -> None:
        """Fetch and install the list once; a failure keeps the last good list."""
        self.fetches += 1
        params = self.params
        body = b""
        if params.provider_url:
            try:
                async with asyncio.timeout(self.fetch_timeout):
                    body = await self._get(params.provider_url)
            except (httpx.HTTPError, AdapterError, TimeoutError) as exc:
                reason = str(exc) or f"no answer within {self.fetch_timeout:g}s"
                self._last_error = f"could not fetch list from {params.provider_url}: {reason}"
                _LOG.warning("%s: %s", self.name, self._last_error)
                return
            sha = hashlib.sha1(body, usedforsecurity=False).digest()
            if sha == self._last_sha and self._list is not None:
                self._refreshed_at = self._clock()
                self._last_error = None
                return
            self._last_sha = sha
        try:
            parsed = await asyncio.to_thread(parse_list, params.entry_type, body, params.overrides)
        except ValueError as exc:
            self._last_sha = None
            self._last_error = f"could not parse data from {params.provider_url}: {exc}"
            _LOG.warning("%s: %s", self.name, self._last_error)
            return
        self._list = parsed
        self._last_error = None
        self._refreshed_at = self._clock()

    async def _get(self, url: str) -> bytes:
        timeout = self.fetch_timeout
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=timeout)
        chunks: list[bytes] = []
        size = 0
        async with self._http.stream("GET", url, timeout=timeout) as response:
            if response.status_code != 200:
                raise AdapterError(f"HTTP status {response.status_code}")
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_LIST_BYTES:
                    raise AdapterError(f"list is larger than {MAX_LIST_BYTES} bytes")
                chunks.append(chunk)
        return b"".join(chunks)

    async def _refresh_loop(self) -> None:
        interval = self.params.refresh_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            await self.fetch()

    def _result(self, code: Code = Code.OK, message: str = "") -> CheckResult:
        if code is Code.OK and not message:
            return self._ok
        return CheckResult(
            RpcStatus(code, shorten(message)),
            self.params.caching_interval,
            self.params.caching_use_count,
        )

    answers_checks_now: ClassVar[bool] = True

    async def handle_check(self, instance: CheckInstance) -> CheckResult:
        return self.check(instance)

    def check(self, instance: CheckInstance) -> CheckResult:
        """The synchronous core of :meth:`handle_check`."""
        if instance.template != "listentry":
            raise self._unsupported(instance.template)
        current = self._current()
        if current is None:
            if self._last_error is not None:
                raise AdapterError(self._last_error)
            return CheckResult()
        value = getattr(instance, "value", None)
        text = _lookup_text(value)
        if text is None:
            shown = _values.stringify(value) if value is not None else "<nil>"
            return self._result(
                Code.INVALID_ARGUMENT, f"{shown} is not a valid string or IP address"
            )
        try:
            if current.entry_type is EntryType.IP_ADDRESSES and isinstance(
                value, ipaddress.IPv4Address | ipaddress.IPv6Address
            ):
                found = current.contains_address(value)
            else:
                found = current.contains(text)
        except ValueError as exc:
            return self._result(Code.INVALID_ARGUMENT, str(exc))
        if self.params.blacklist:
            if found:
                return self._result(Code.PERMISSION_DENIED, f"{text} is blacklisted")
        elif not found:
            return self._result(Code.PERMISSION_DENIED, f"{text} is not whitelisted")
        return self._result()

    check_now = check

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None
