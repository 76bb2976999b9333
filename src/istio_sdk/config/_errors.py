"""Problems found in configuration and the exceptions that carry them.

A :class:`Problem` says where (source, document index, kind/namespace/name, field path, line)
and what. :func:`~istio_sdk.config.load_resources` raises the first problem as a
:class:`ConfigError` subclass; :func:`~istio_sdk.config.validate` returns all of them.
"""

from __future__ import annotations

from typing import Literal

import attrs


@attrs.frozen
class Problem:
    """One thing wrong with a configuration document."""

    message: str
    """What is wrong, e.g. ``unknown field "wieght"``."""
    source: str = "<string>"
    """Where the document came from: a file path or ``<string>``."""
    index: int | None = None
    """Position of the document in its source (0-based), or None for the whole source."""
    kind: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    """Field path inside the document, e.g. ``spec.http[0].route[0].weight``."""
    line: int | None = None
    """1-based line in the source, when known."""
    level: Literal["error", "warning"] = "error"
    """``"warning"`` for what Istio accepts but warns about (it never makes a document
    invalid); ``"error"`` for everything else."""

    @property
    def is_error(self) -> bool:
        """Whether this problem makes the document invalid (it is not a warning)."""
        return self.level == "error"

    @property
    def resource(self) -> str:
        """``Kind namespace/name`` (the parts that are known)."""
        ident = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return " ".join(part for part in (self.kind, ident) if part)

    def __str__(self) -> str:
        """``file[doc]:line: Kind namespace/name: field.path: message`` (known parts only)."""
        where = self.source
        if self.index is not None:
            where += f"[{self.index}]"
        if self.line is not None:
            where += f":{self.line}"
        parts = [where, self.resource, self.path, self.message]
        return ": ".join(part for part in parts if part)


class ConfigError(ValueError):
    """Configuration that cannot be loaded. ``problem`` says where and what."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class YamlSyntaxError(ConfigError):
    """The text is not valid YAML or JSON, or not UTF-8 (``problem.line`` says where)."""


class LimitError(ConfigError):
    """A source exceeds one of the loader's limits (:class:`~istio_sdk.config.LoadLimits`).

    ``limit`` names the limit hit (``max_bytes``, ``max_depth``, ``max_alias_nodes`` or
    ``max_int_digits``) and ``bound`` its value; ``problem`` names the file and document.
    """

    def __init__(self, problem: Problem, *, limit: str, bound: int) -> None:
        super().__init__(problem)
        self.limit = limit
        self.bound = bound


class NumberError(ConfigError):
    """A number JSON cannot hold: NaN, Infinity, or a float literal too large for a double.

    Kubernetes converts YAML to JSON before it stores an object, so it refuses these too.
    """


class DocumentError(ConfigError):
    """A document is not a Kubernetes object (not a mapping, no apiVersion/kind, bad List)."""


class UnknownKindError(ConfigError):
    """``kind`` (or its ``apiVersion``) is not a registered Istio kind."""


class UnknownApiVersionError(UnknownKindError):
    """The kind is known but not served under this ``apiVersion``."""


class MetadataError(ConfigError):
    """``metadata`` is malformed: a missing name, a wrong type, an unknown field."""


class FieldError(ConfigError):
    """The spec does not match its schema: unknown field, wrong type, bad enum value."""


class ValidationError(ConfigError):
    """A schema rule fails, e.g. a REQUIRED field is not set (reported by ``validate``)."""
