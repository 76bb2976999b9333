"""CEXL, Mixer's default attribute expression language (Istio 1.3), compiled to closures.

``compile(text, manifest)`` parses the text as Mixer does (Go's expression syntax), checks its
types against ``manifest`` (attribute name -> ``ValueType``) and Mixer's function table, and
builds an :class:`Expression` whose :meth:`~Expression.evaluate` runs a tree of closures over
any ``Mapping[str, value]``. Errors are :class:`ExpressionError` subclasses:
:class:`ParseError` (with ``line``/``column``), :class:`TypeCheckError` and
:class:`EvaluationError`, with Mixer's messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from istio_sdk.api.istio.policy.v1beta1 import ValueType
from istio_sdk.mixer.attributes import AttributeBag
from istio_sdk.mixer.errors import EvaluationError, ExpressionError, ParseError, TypeCheckError
from istio_sdk.mixer.expr._compile import Evaluator, compile_tree
from istio_sdk.mixer.expr._syntax import MAX_DEPTH, parse
from istio_sdk.mixer.expr._types import FUNCTIONS, FunctionInfo
from istio_sdk.mixer.manifests import DEFAULT_MANIFEST

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "FunctionInfo",
    "ParseError",
    "TypeCheckError",
    "compile",
]


class Expression:
    """A compiled CEXL expression: its text, its result type, and a fast evaluator."""

    __slots__ = ("_run", "result_type", "text")

    def __init__(self, text: str, result_type: ValueType, run: Evaluator) -> None:
        self.text = text
        self.result_type = result_type
        self._run = run

    def evaluate(self, attributes: Mapping[str, Any]) -> Any:
        """The value for one attribute mapping; :class:`EvaluationError` when Mixer's fails."""
        if type(attributes) is AttributeBag:
            attributes = attributes._values  # its read-only dict: C-level lookups
        try:
            return self._run(attributes)
        except ExpressionError:
            raise
        except Exception as exc:  # a hostile Mapping or value: still a typed error
            raise EvaluationError(f"evaluation failed: {type(exc).__name__}: {exc}") from None

    def __repr__(self) -> str:
        return f"Expression({self.text!r}, result_type={self.result_type.name})"


def compile(text: str, manifest: Mapping[str, ValueType] = DEFAULT_MANIFEST) -> Expression:
    """``text`` parsed, type-checked against ``manifest`` and compiled."""
    if not isinstance(text, str):
        raise TypeError(f"expression text must be str, not {type(text).__name__}")
    tree = parse(text)
    result_type, run = compile_tree(tree, manifest)
    return Expression(text, result_type, run)
