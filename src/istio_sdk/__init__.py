"""istio-sdk: Istio's mesh control plane, programmable from Python.

The public names are re-exported here and imported lazily, so ``import istio_sdk`` stays
cheap: the generated API (``istio_sdk.api``) is only loaded when something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from istio_sdk._version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Resource": "istio_sdk.config",
    "ObjectMeta": "istio_sdk.config",
    "ConfigStore": "istio_sdk.config",
    "ConfigError": "istio_sdk.config",
    "load_resources": "istio_sdk.config",
    "dump_resources": "istio_sdk.config",
    "validate": "istio_sdk.config",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:
    from istio_sdk.config import (
        ConfigError,
        ConfigStore,
        ObjectMeta,
        Resource,
        dump_resources,
        load_resources,
        validate,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'istio_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
