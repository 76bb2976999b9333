"""Exceptions raised by the xDS protocol cores."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

S = TypeVar("S", bound=enum.Enum)
E = TypeVar("E", bound=enum.Enum)


class XdsError(Exception):
    """Base class of every xDS protocol error raised by istio-sdk."""


class UnknownTypeUrlError(XdsError, KeyError):
    """A type URL (or short name) that the registry does not know."""

    def __init__(self, type_url: str) -> None:
        super().__init__(type_url)
        self.type_url = type_url

    def __str__(self) -> str:
        return f"unknown xDS type URL {self.type_url!r}"


class XdsProtocolError(XdsError):
    """An event that is illegal in the current protocol state.

    ``state`` names the state the stream (or one of its types) was in, ``event`` what was tried.
    """

    def __init__(self, message: str, *, state: str, event: str, type_url: str = "") -> None:
        where = f" for {type_url}" if type_url else ""
        super().__init__(f"{message} (event {event} in state {state}{where})")
        self.state = state
        self.event = event
        self.type_url = type_url


def next_state(
    transitions: Mapping[tuple[S, E], S], state: S, event: E, *, type_url: str, illegal: str
) -> S:
    """The state ``transitions`` moves to from ``state`` on ``event``.

    Raises :class:`XdsProtocolError` when the table has no such move; its message is
    ``illegal`` with ``{event}`` replaced by the event's value.
    """
    new = transitions.get((state, event))
    if new is None:
        raise XdsProtocolError(
            illegal.format(event=event.value),
            state=str(state.value),
            event=str(event.value),
            type_url=type_url,
        )
    return new


class UnknownCollectionError(XdsError):
    """An MCP request for a collection the source does not serve.

    Galley ends the stream with ``INVALID_ARGUMENT`` and this message.
    """

    def __init__(self, collection: str) -> None:
        super().__init__(collection)
        self.collection = collection

    def __str__(self) -> str:
        from istio_sdk.xds._logsafe import peer_text

        return f'unsupported collection "{peer_text(self.collection)}"'


class MalformedMessageError(XdsError, ValueError):
    """Bytes that do not decode as the expected xDS envelope."""
