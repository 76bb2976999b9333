"""Peer-supplied text made safe for logs, and per-stream warnings that cannot flood them.

A node id, a type URL or a NACK reason comes from the peer: logged raw, a newline in it forges a
log line and a megabyte of it makes a megabyte line. :func:`peer_text` escapes control
characters (``repr`` style) and truncates with a marker. :class:`WarningBudget` lets a stream log
the first few warnings of a kind and then only says, once, that it stopped.
"""

from __future__ import annotations

import logging

__all__ = ["MAX_PEER_TEXT", "WarningBudget", "peer_text"]

MAX_PEER_TEXT = 200


def peer_text(value: object, limit: int = MAX_PEER_TEXT) -> str:
    """``value`` as one printable line of at most ``limit`` characters plus a marker.

    Control characters (newlines included) and other non-printable code points are escaped as
    ``repr`` escapes them; text longer than ``limit`` is cut and ends with a marker giving the
    original length.
    """
    text = value if isinstance(value, str) else str(value)
    head = text[:limit]
    if not head.isprintable():
        head = repr(head)[1:-1]
    if len(text) <= limit and len(head) <= limit:
        return head
    return f"{head[:limit]}...[truncated, {len(text)} chars]"


class WarningBudget:
    """At most ``limit`` warnings per kind, then one line saying the rest are suppressed."""

    def __init__(self, logger: logging.Logger, limit: int = 10) -> None:
        self._log = logger
        self._limit = limit
        self._counts: dict[str, int] = {}

    def warn(self, kind: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless the budget of ``kind`` is spent; True if logged."""
        seen = self._counts.get(kind, 0) + 1
        self._counts[kind] = seen
        if seen <= self._limit:
            self._log.warning(message, *args)
            return True
        if seen == self._limit + 1:
            self._log.warning(
                "%s: more than %d such warnings on this stream; suppressing the rest",
                kind,
                self._limit,
            )
        return False

    def suppressed(self, kind: str) -> int:
        """How many warnings of ``kind`` were not logged."""
        return max(0, self._counts.get(kind, 0) - self._limit)
