"""istio-sdk: Istio's mesh control plane, programmable from Python.

The public API is re-exported here, as httpx does: the entry points of every component and
every error type a caller may catch, each defined in (and listed in ``__all__`` of) its
component package (``istio_sdk.config``, ``istio_sdk.pilot``, ``istio_sdk.citadel``, ...).
Names are imported lazily, so ``import istio_sdk`` stays cheap: the generated API
(``istio_sdk.api``) is only loaded when something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from istio_sdk._lazy_deps import defer_pydantic
from istio_sdk._version import __version__

defer_pydantic()  # before anything imports betterproto2 (see istio_sdk._lazy_deps)

# public name -> the component package that exports it
_EXPORTS: dict[str, str] = {
    # configuration: Istio resources, YAML/JSON, validation, the store
    "Resource": "istio_sdk.config",
    "ObjectMeta": "istio_sdk.config",
    "ConfigStore": "istio_sdk.config",
    "DirectorySource": "istio_sdk.config",
    "KubernetesSource": "istio_sdk.config",
    "KubeConfigError": "istio_sdk.config",
    "load_resources": "istio_sdk.config",
    "dump_resources": "istio_sdk.config",
    "validate": "istio_sdk.config",
    "analyze": "istio_sdk.galley.analysis",
    "AnalysisResult": "istio_sdk.galley.analysis",
    "ConfigError": "istio_sdk.config",
    "YamlSyntaxError": "istio_sdk.config",
    "DocumentError": "istio_sdk.config",
    "UnknownKindError": "istio_sdk.config",
    "UnknownApiVersionError": "istio_sdk.config",
    "MetadataError": "istio_sdk.config",
    "FieldError": "istio_sdk.config",
    "ValidationError": "istio_sdk.config",
    "NotFoundError": "istio_sdk.config",
    "WatchOverflowError": "istio_sdk.config",
    # Pilot: the ADS client, the discovery server, translation inputs
    "PilotClient": "istio_sdk.pilot",
    "DiscoveryServer": "istio_sdk.pilot",
    "StaticGenerator": "istio_sdk.pilot",
    "PushContext": "istio_sdk.pilot",
    "ServiceRegistry": "istio_sdk.pilot",
    "sidecar_node": "istio_sdk.pilot",
    "grpc_node": "istio_sdk.pilot",
    "PilotClientError": "istio_sdk.pilot",
    "PushContextError": "istio_sdk.pilot",
    "RegistryError": "istio_sdk.pilot",
    # Citadel: the CA, its server and client, the node agent
    "CitadelClient": "istio_sdk.citadel",
    "CitadelServer": "istio_sdk.citadel",
    "CitadelServerOptions": "istio_sdk.citadel",
    "CertificateAuthority": "istio_sdk.citadel",
    "CertificateBundle": "istio_sdk.citadel",
    "CitadelAgent": "istio_sdk.citadel",
    "CitadelError": "istio_sdk.citadel",
    "AuthenticationError": "istio_sdk.citadel",
    "JwtError": "istio_sdk.citadel",
    "IdentityError": "istio_sdk.citadel",
    "CsrError": "istio_sdk.citadel",
    "TtlError": "istio_sdk.citadel",
    "CaConfigError": "istio_sdk.citadel",
    "CertificateRequestError": "istio_sdk.citadel",
    "CaUnavailableError": "istio_sdk.citadel",
    "NoCredentialError": "istio_sdk.citadel",
    # Galley: MCP
    "GalleyClient": "istio_sdk.galley.mcp",
    "McpSource": "istio_sdk.galley.mcp",
    # every component in one process
    "Mesh": "istio_sdk.mesh",
    # the data plane: Envoy bootstraps
    "BootstrapError": "istio_sdk.proxy.bootstrap",
    # the xDS protocol core's errors
    "XdsError": "istio_sdk.xds",
    "XdsProtocolError": "istio_sdk.xds",
    "UnknownTypeUrlError": "istio_sdk.xds",
    "UnknownCollectionError": "istio_sdk.xds",
    "MalformedMessageError": "istio_sdk.xds",
    # the binary codec's error
    "UnknownKeyError": "istio_sdk.citadel",
    "SpiffeError": "istio_sdk.spiffe",
    "LimitError": "istio_sdk.config",
    "NumberError": "istio_sdk.config",
    "LoadLimits": "istio_sdk.config",
    "MeshListenError": "istio_sdk.mesh",
    "MeshComponentError": "istio_sdk.mesh",
    "MeshNotConvergedError": "istio_sdk.mesh",
    "MixerClient": "istio_sdk.mixer",
    "MixerError": "istio_sdk.mixer",
    "AttributesError": "istio_sdk.mixer",
    "GlobalWordCountError": "istio_sdk.mixer",
    "ExpressionError": "istio_sdk.mixer",
    "ParseError": "istio_sdk.mixer",
    "TypeCheckError": "istio_sdk.mixer",
    "EvaluationError": "istio_sdk.mixer",
    "AdapterError": "istio_sdk.mixer",
    "AdapterParamsError": "istio_sdk.mixer",
    "HandlerBuildError": "istio_sdk.mixer",
    "UnknownAdapterError": "istio_sdk.mixer",
    "UnsupportedTemplateError": "istio_sdk.mixer",
    "MixerServer": "istio_sdk.mixer",
    "DispatchError": "istio_sdk.mixer",
    "InstanceParamsError": "istio_sdk.mixer",
    "DecodeError": "istio_sdk.codec",
    # proto3 JSON
    "message_to_json": "istio_sdk.protojson",
    "message_from_json": "istio_sdk.protojson",
    "ProtoJsonError": "istio_sdk.protojson",
    "JsonParseError": "istio_sdk.protojson",
    "JsonSerializeError": "istio_sdk.protojson",
    # istio-iptables
    "IptablesError": "istio_sdk.proxy.iptables",
    "InjectionError": "istio_sdk.proxy.inject",
    "JsonPatchError": "istio_sdk.proxy.inject",
    "IptablesConfigError": "istio_sdk.proxy.iptables",
    # pilot-agent
    "AgentConfigError": "istio_sdk.proxy.agent",
    # the agent's DNS proxy
    "DnsProxyError": "istio_sdk.proxy.dns",
}

__all__ = [  # grouped like _EXPORTS; tests/core/test_public_api.py checks they agree
    "__version__",
    "Resource",
    "ObjectMeta",
    "ConfigStore",
    "DirectorySource",
    "KubernetesSource",
    "KubeConfigError",
    "load_resources",
    "dump_resources",
    "validate",
    "analyze",
    "AnalysisResult",
    "ConfigError",
    "YamlSyntaxError",
    "DocumentError",
    "UnknownKindError",
    "UnknownApiVersionError",
    "MetadataError",
    "FieldError",
    "ValidationError",
    "NotFoundError",
    "WatchOverflowError",
    "PilotClient",
    "DiscoveryServer",
    "StaticGenerator",
    "PushContext",
    "ServiceRegistry",
    "sidecar_node",
    "grpc_node",
    "PilotClientError",
    "PushContextError",
    "RegistryError",
    "CitadelClient",
    "CitadelServer",
    "CitadelServerOptions",
    "CertificateAuthority",
    "CertificateBundle",
    "CitadelAgent",
    "CitadelError",
    "AuthenticationError",
    "JwtError",
    "IdentityError",
    "CsrError",
    "TtlError",
    "CaConfigError",
    "CertificateRequestError",
    "CaUnavailableError",
    "NoCredentialError",
    "GalleyClient",
    "McpSource",
    "Mesh",
    "BootstrapError",
    "XdsError",
    "XdsProtocolError",
    "UnknownTypeUrlError",
    "UnknownCollectionError",
    "MalformedMessageError",
    "DecodeError",
    "message_to_json",
    "message_from_json",
    "ProtoJsonError",
    "JsonParseError",
    "JsonSerializeError",
    "InjectionError",
    "JsonPatchError",
    "IptablesError",
    "IptablesConfigError",
    "AgentConfigError",
    "DnsProxyError",
    "UnknownKeyError",
    "SpiffeError",
    "LimitError",
    "NumberError",
    "LoadLimits",
    "MeshListenError",
    "MeshComponentError",
    "MeshNotConvergedError",
    "MixerClient",
    "MixerError",
    "AttributesError",
    "GlobalWordCountError",
    "ExpressionError",
    "ParseError",
    "TypeCheckError",
    "EvaluationError",
    "AdapterError",
    "AdapterParamsError",
    "HandlerBuildError",
    "UnknownAdapterError",
    "UnsupportedTemplateError",
    "MixerServer",
    "DispatchError",
    "InstanceParamsError",
]

if TYPE_CHECKING:
    from istio_sdk.citadel import AuthenticationError as AuthenticationError
    from istio_sdk.citadel import CaConfigError as CaConfigError
    from istio_sdk.citadel import CaUnavailableError as CaUnavailableError
    from istio_sdk.citadel import CertificateAuthority as CertificateAuthority
    from istio_sdk.citadel import CertificateBundle as CertificateBundle
    from istio_sdk.citadel import CertificateRequestError as CertificateRequestError
    from istio_sdk.citadel import CitadelAgent as CitadelAgent
    from istio_sdk.citadel import CitadelClient as CitadelClient
    from istio_sdk.citadel import CitadelError as CitadelError
    from istio_sdk.citadel import CitadelServer as CitadelServer
    from istio_sdk.citadel import CitadelServerOptions as CitadelServerOptions
    from istio_sdk.citadel import CsrError as CsrError
    from istio_sdk.citadel import IdentityError as IdentityError
    from istio_sdk.citadel import JwtError as JwtError
    from istio_sdk.citadel import NoCredentialError as NoCredentialError
    from istio_sdk.citadel import TtlError as TtlError
    from istio_sdk.citadel import UnknownKeyError as UnknownKeyError
    from istio_sdk.codec import DecodeError as DecodeError
    from istio_sdk.config import ConfigError as ConfigError
    from istio_sdk.config import ConfigStore as ConfigStore
    from istio_sdk.config import DirectorySource as DirectorySource
    from istio_sdk.config import DocumentError as DocumentError
    from istio_sdk.config import FieldError as FieldError
    from istio_sdk.config import KubeConfigError as KubeConfigError
    from istio_sdk.config import KubernetesSource as KubernetesSource
    from istio_sdk.config import LimitError as LimitError
    from istio_sdk.config import LoadLimits as LoadLimits
    from istio_sdk.config import MetadataError as MetadataError
    from istio_sdk.config import NotFoundError as NotFoundError
    from istio_sdk.config import NumberError as NumberError
    from istio_sdk.config import ObjectMeta as ObjectMeta
    from istio_sdk.config import Resource as Resource
    from istio_sdk.config import UnknownApiVersionError as UnknownApiVersionError
    from istio_sdk.config import UnknownKindError as UnknownKindError
    from istio_sdk.config import ValidationError as ValidationError
    from istio_sdk.config import WatchOverflowError as WatchOverflowError
    from istio_sdk.config import YamlSyntaxError as YamlSyntaxError
    from istio_sdk.config import dump_resources as dump_resources
    from istio_sdk.config import load_resources as load_resources
    from istio_sdk.config import validate as validate
    from istio_sdk.galley.analysis import AnalysisResult as AnalysisResult
    from istio_sdk.galley.analysis import analyze as analyze
    from istio_sdk.galley.mcp import GalleyClient as GalleyClient
    from istio_sdk.galley.mcp import McpSource as McpSource
    from istio_sdk.mesh import Mesh as Mesh
    from istio_sdk.mesh import MeshComponentError as MeshComponentError
    from istio_sdk.mesh import MeshListenError as MeshListenError
    from istio_sdk.mesh import MeshNotConvergedError as MeshNotConvergedError
    from istio_sdk.mixer import AdapterError as AdapterError
    from istio_sdk.mixer import AdapterParamsError as AdapterParamsError
    from istio_sdk.mixer import AttributesError as AttributesError
    from istio_sdk.mixer import DispatchError as DispatchError
    from istio_sdk.mixer import EvaluationError as EvaluationError
    from istio_sdk.mixer import ExpressionError as ExpressionError
    from istio_sdk.mixer import GlobalWordCountError as GlobalWordCountError
    from istio_sdk.mixer import HandlerBuildError as HandlerBuildError
    from istio_sdk.mixer import InstanceParamsError as InstanceParamsError
    from istio_sdk.mixer import MixerClient as MixerClient
    from istio_sdk.mixer import MixerError as MixerError
    from istio_sdk.mixer import MixerServer as MixerServer
    from istio_sdk.mixer import ParseError as ParseError
    from istio_sdk.mixer import TypeCheckError as TypeCheckError
    from istio_sdk.mixer import UnknownAdapterError as UnknownAdapterError
    from istio_sdk.mixer import UnsupportedTemplateError as UnsupportedTemplateError
    from istio_sdk.pilot import DiscoveryServer as DiscoveryServer
    from istio_sdk.pilot import PilotClient as PilotClient
    from istio_sdk.pilot import PilotClientError as PilotClientError
    from istio_sdk.pilot import PushContext as PushContext
    from istio_sdk.pilot import PushContextError as PushContextError
    from istio_sdk.pilot import RegistryError as RegistryError
    from istio_sdk.pilot import ServiceRegistry as ServiceRegistry
    from istio_sdk.pilot import StaticGenerator as StaticGenerator
    from istio_sdk.pilot import grpc_node as grpc_node
    from istio_sdk.pilot import sidecar_node as sidecar_node
    from istio_sdk.protojson import JsonParseError as JsonParseError
    from istio_sdk.protojson import JsonSerializeError as JsonSerializeError
    from istio_sdk.protojson import ProtoJsonError as ProtoJsonError
    from istio_sdk.protojson import message_from_json as message_from_json
    from istio_sdk.protojson import message_to_json as message_to_json
    from istio_sdk.proxy.bootstrap import BootstrapError as BootstrapError
    from istio_sdk.proxy.inject import InjectionError as InjectionError
    from istio_sdk.proxy.inject import JsonPatchError as JsonPatchError
    from istio_sdk.spiffe import SpiffeError as SpiffeError
    from istio_sdk.xds import MalformedMessageError as MalformedMessageError
    from istio_sdk.xds import UnknownCollectionError as UnknownCollectionError
    from istio_sdk.xds import UnknownTypeUrlError as UnknownTypeUrlError
    from istio_sdk.xds import XdsError as XdsError
    from istio_sdk.xds import XdsProtocolError as XdsProtocolError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'istio_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
