"""Debouncing push requests, as a pure object driven by a clock the caller owns.

Like istiod's ``PILOT_DEBOUNCE_AFTER`` and ``PILOT_DEBOUNCE_MAX``: a burst of changes is merged
into one push once it has been quiet for ``after`` seconds, and a steady stream of changes is
pushed at the latest ``max_delay`` seconds after its first change. :class:`Debouncer` has no
timer inside: the caller adds requests with the current time, asks :meth:`Debouncer.deadline`
when to come back and takes the merged request with :meth:`Debouncer.flush`.
"""

from __future__ import annotations

import attrs

from istio_sdk.pilot.push_request import PushRequest

__all__ = ["Debounced", "Debouncer"]


@attrs.frozen
class Debounced:
    """A merged request and the time its first change arrived (for convergence latency)."""

    request: PushRequest
    first_change: float
    changes: int


class Debouncer:
    """Merges push requests until the burst is quiet or has waited long enough."""

    def __init__(self, after: float, max_delay: float) -> None:
        if after < 0 or max_delay < after:
            raise ValueError("need 0 <= debounce_after <= debounce_max")
        self.after = after
        self.max_delay = max_delay
        self._pending: PushRequest | None = None
        self._first = 0.0
        self._last = 0.0
        self._changes = 0

    @property
    def pending(self) -> bool:
        """Whether a request waits to be flushed."""
        return self._pending is not None

    def add(self, request: PushRequest, now: float) -> None:
        """A change arrived at ``now``."""
        if self._pending is None:
            self._pending = request
            self._first = now
            self._changes = 0
        else:
            self._pending = self._pending.merge(request)
        self._last = now
        self._changes += 1

    def deadline(self) -> float | None:
        """When the pending request is due (``None`` when nothing is pending)."""
        if self._pending is None:
            return None
        return min(self._last + self.after, self._first + self.max_delay)

    def flush(self, now: float) -> Debounced | None:
        """The merged request if it is due at ``now`` (and forget it), else ``None``."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        assert self._pending is not None
        out = Debounced(self._pending, self._first, self._changes)
        self._pending = None
        return out
