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
    "CitadelClient": "istio_sdk.citadel",
    "CitadelServer": "istio_sdk.citadel",
    "CitadelServerOptions": "istio_sdk.citadel",
    "CertificateAuthority": "istio_sdk.citadel",
    "CertificateBundle": "istio_sdk.citadel",
    "CitadelAgent": "istio_sdk.citadel.agent",
    "PushContext": "istio_sdk.pilot.push_context",
    "ServiceRegistry": "istio_sdk.pilot.registry",
    "PilotClient": "istio_sdk.pilot.client",
    "DiscoveryServer": "istio_sdk.pilot.server",
    "Mesh": "istio_sdk.mesh",
    "message_to_json": "istio_sdk.protojson",
    "message_from_json": "istio_sdk.protojson",
    "JsonParseError": "istio_sdk.protojson",
}

__all__ = [  # grouped like _EXPORTS; tests/core/test_public_api.py checks they agree
    "__version__",
    "Resource",
    "ObjectMeta",
    "ConfigStore",
    "ConfigError",
    "load_resources",
    "dump_resources",
    "validate",
    "CitadelClient",
    "CitadelServer",
    "CitadelServerOptions",
    "CertificateAuthority",
    "CertificateBundle",
    "CitadelAgent",
    "PushContext",
    "ServiceRegistry",
    "PilotClient",
    "DiscoveryServer",
    "Mesh",
    "message_to_json",
    "message_from_json",
    "JsonParseError",
]

if TYPE_CHECKING:
    from istio_sdk.citadel import CertificateAuthority as CertificateAuthority
    from istio_sdk.citadel import CertificateBundle as CertificateBundle
    from istio_sdk.citadel import CitadelClient as CitadelClient
    from istio_sdk.citadel import CitadelServer as CitadelServer
    from istio_sdk.citadel import CitadelServerOptions as CitadelServerOptions
    from istio_sdk.citadel.agent import CitadelAgent as CitadelAgent
    from istio_sdk.config import ConfigError as ConfigError
    from istio_sdk.config import ConfigStore as ConfigStore
    from istio_sdk.config import ObjectMeta as ObjectMeta
    from istio_sdk.config import Resource as Resource
    from istio_sdk.config import dump_resources as dump_resources
    from istio_sdk.config import load_resources as load_resources
    from istio_sdk.config import validate as validate
    from istio_sdk.mesh import Mesh as Mesh
    from istio_sdk.pilot.client import PilotClient as PilotClient
    from istio_sdk.pilot.push_context import PushContext as PushContext
    from istio_sdk.pilot.registry import ServiceRegistry as ServiceRegistry
    from istio_sdk.pilot.server import DiscoveryServer as DiscoveryServer
    from istio_sdk.protojson import JsonParseError as JsonParseError
    from istio_sdk.protojson import message_from_json as message_from_json
    from istio_sdk.protojson import message_to_json as message_to_json


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'istio_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
