"""The client's Check cache: Mixer's verdicts, keyed by the attributes each one depended on.

Istio 1.3's proxy (src/istio/mixerclient/check_cache.cc), without I/O; the caller passes the
time (seconds on a monotonic clock):

- a verdict is stored under its :class:`~istio_sdk.mixer.client.referenced.Referenced` shape
  and the request's signature under it; denials are cached too; an uncacheable shape (REGEX)
  stores nothing;
- it expires ``valid_duration`` after it arrived (never, when the response has none) and after
  ``valid_use_count`` hits: each hit spends one use, so 0 is never usable and a negative count
  is unlimited; an expired entry is dropped when a lookup finds it, and the lookup misses;
- a lookup tries the known shapes in the order they were learned; the first hit wins;
- entries are an LRU of at most ``max_entries`` (the proxy's default: 10,000; 0 turns the cache
  off), and at most ``max_shapes`` shapes are kept (a server inventing a new shape per answer
  must not make every lookup slower without bound).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

import attrs
from grpclib.const import Status

from istio_sdk.api.istio.mixer.v1 import (
    CheckResponsePreconditionResult,
    RouteDirective,
)
from istio_sdk.mixer.client.referenced import Referenced, Signature

__all__ = ["CachedVerdict", "CheckCache", "Verdict", "verdict_of"]

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_SHAPES = 1_000


@attrs.frozen
class Verdict:
    """What a precondition says: a gRPC status and, when Mixer sent one, a route directive."""

    code: Status
    message: str = ""
    route_directive: RouteDirective | None = None

    @property
    def ok(self) -> bool:
        return self.code is Status.OK


def status_of(code: int) -> Status:
    """A ``google.rpc.Status`` code as grpclib's enum; an unknown number is UNKNOWN."""
    try:
        return Status(code)
    except ValueError:
        return Status.UNKNOWN


def verdict_of(precondition: CheckResponsePreconditionResult | None, *, fail_open: bool) -> Verdict:
    """The proxy's reading of a precondition: none is INVALID_ARGUMENT, and INTERNAL (Mixer
    failed to decide) is OK when failing open."""
    if precondition is None:
        return Verdict(Status.INVALID_ARGUMENT, "CheckResponse doesn't have PreconditionResult")
    status = precondition.status
    code = status_of(status.code) if status is not None else Status.OK
    if code is Status.INTERNAL and fail_open:
        return Verdict(Status.OK, "", precondition.route_directive)
    return Verdict(code, status.message if status is not None else "", precondition.route_directive)


@attrs.define
class CachedVerdict:
    verdict: Verdict
    expires_at: float | None
    """Monotonic seconds; None never expires."""
    uses_left: int
    """Negative is unlimited."""


class CheckCache:
    """Verdicts by shape and signature; see the module docstring."""

    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, max_shapes: int = DEFAULT_MAX_SHAPES
    ) -> None:
        if max_entries < 0 or max_shapes < 1:
            raise ValueError("max_entries must be >= 0 and max_shapes >= 1")
        self.max_entries = max_entries
        self.max_shapes = max_shapes
        self._shapes: dict[Referenced, None] = {}
        self._entries: collections.OrderedDict[Signature, CachedVerdict] = collections.OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, request: Mapping[str, object], now: float) -> Verdict | None:
        """The cached verdict for ``request`` (spending one use), or None on a miss."""
        entries = self._entries
        for shape in self._shapes:
            signature = shape.signature(request)
            if signature is None:
                continue
            try:
                entry = entries.get(signature)
            except TypeError:  # an unhashable value: not a valid attribute, never cached
                return None
            if entry is None:
                continue
            if (entry.expires_at is not None and now >= entry.expires_at) or not entry.uses_left:
                del entries[signature]
                return None
            if entry.uses_left > 0:
                entry.uses_left -= 1
            entries.move_to_end(signature)
            return entry.verdict
        return None

    def store(
        self,
        request: Mapping[str, object],
        precondition: CheckResponsePreconditionResult,
        verdict: Verdict,
        now: float,
    ) -> bool:
        """Cache ``verdict`` (read from ``precondition``) for requests like ``request``; False
        when the response cannot be cached."""
        if not self.max_entries:
            return False
        shape = Referenced.from_response(request, precondition.referenced_attributes)
        if shape is None:
            return False
        signature = shape.signature(request)
        if signature is None:  # the shape contradicts the request it came with
            return False
        if shape not in self._shapes:
            if len(self._shapes) >= self.max_shapes:
                del self._shapes[next(iter(self._shapes))]
            self._shapes[shape] = None
        duration = precondition.valid_duration
        expires_at = None if duration is None else now + duration.total_seconds()
        self._entries[signature] = CachedVerdict(verdict, expires_at, precondition.valid_use_count)
        self._entries.move_to_end(signature)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True
