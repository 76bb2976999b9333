"""The errors of Mixer's pure cores: attribute decoding and the expression language.

Every error a caller can act on is a subclass of :class:`MixerError`. The server (a later
layer) turns them into the gRPC statuses Istio 1.3's Mixer answers with.
"""

from __future__ import annotations

__all__ = [
    "AttributesError",
    "EvaluationError",
    "ExpressionError",
    "DispatchError",
    "GlobalWordCountError",
    "InstanceParamsError",
    "MixerError",
    "ParseError",
    "TypeCheckError",
]


class MixerError(Exception):
    """Base class of every Mixer error."""


class AttributesError(MixerError, ValueError):
    """An attribute bag that cannot be built or decoded: a bad value, an unknown word index."""


class GlobalWordCountError(AttributesError):
    """The caller's global dictionary is larger than Mixer's (Mixer answers INTERNAL)."""

    def __init__(self, known: int, caller: int) -> None:
        super().__init__(
            "inconsistent global dictionary versions used: "
            f"mixer knows {known} words, caller knows {caller}"
        )
        self.known = known
        self.caller = caller


class ExpressionError(MixerError, ValueError):
    """An attribute expression that does not parse, type-check or evaluate."""


class ParseError(ExpressionError):
    """The expression text is not a CEXL expression; ``position`` is where (line, column)."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.line = line
        self.column = column

    @property
    def position(self) -> tuple[int, int]:
        """(line, column) of the problem, both counted from 1."""
        return (self.line, self.column)


class TypeCheckError(ExpressionError):
    """The expression parses but its types do not fit the manifest and the function table."""


class EvaluationError(ExpressionError):
    """The expression failed on one attribute bag (a missing attribute, a bad conversion)."""


class InstanceParamsError(MixerError, ValueError):
    """An ``instance`` resource's params do not fit its template (an unknown or misshapen field)."""


class DispatchError(MixerError):
    """A Check or Report could not be dispatched: an instance failed to build from the request's
    attributes, or (Report) a handler failed. Mixer answers INTERNAL (Check) or UNKNOWN (Report)."""
