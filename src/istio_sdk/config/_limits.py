"""``LoadLimits``: the bounds the loader puts on a source before hostile input can hurt.

A config file comes from users (or from whoever can write to a watched folder): one file must
not be able to stall a server or exhaust its memory. Every bound is far above what real Istio
and Kubernetes documents need, and hitting one raises :class:`~istio_sdk.config.LimitError`.
"""

from __future__ import annotations

import attrs


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value}")


@attrs.frozen
class LoadLimits:
    """Bounds on one source (a file, a string, a stream) read by the config loader."""

    max_bytes: int = attrs.field(default=8 * 1024 * 1024, validator=_positive)
    """Size of one source in bytes (UTF-8); a file is refused before it is read."""
    max_depth: int = attrs.field(default=100, validator=_positive)
    """Nesting of mappings and lists in one document, counted after aliases are expanded."""
    max_alias_nodes: int = attrs.field(default=100_000, validator=_positive)
    """Nodes one document may produce through YAML aliases (``*name``) in total; each use
    of an alias counts every node of what it points to. Stops "billion laughs" documents."""
    max_int_digits: int = attrs.field(default=4300, validator=_positive)
    """Length of one integer literal (Python refuses to convert longer ones by default)."""


DEFAULT_LIMITS = LoadLimits()
