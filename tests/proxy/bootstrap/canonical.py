"""Bootstrap JSON in a canonical form, through Google's protobuf runtime and xds-protos.

``canonical(text)`` parses proto3 JSON with ``json_format`` into xds-protos' ``Bootstrap``
(every ``Any`` resolved, unknown fields refused) and flattens ``MessageToDict`` into
``{path: value}``. Two bootstraps that Envoy reads the same way flatten the same: field
order, JSON versus proto names, defaults written out or left out, ``1s`` versus ``1.000s``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Every message type a bootstrap packs in an Any, so json_format can resolve @type.
_PB2_MODULES = (
    "envoy.config.bootstrap.v3.bootstrap_pb2",
    "envoy.config.trace.v3.zipkin_pb2",
    "envoy.config.trace.v3.datadog_pb2",
    "envoy.config.trace.v3.lightstep_pb2",
    "envoy.config.metrics.v3.metrics_service_pb2",
    "envoy.config.metrics.v3.stats_pb2",
    "envoy.extensions.access_loggers.file.v3.file_pb2",
    "envoy.extensions.compression.brotli.compressor.v3.brotli_pb2",
    "envoy.extensions.compression.gzip.compressor.v3.gzip_pb2",
    "envoy.extensions.compression.zstd.compressor.v3.zstd_pb2",
    "envoy.extensions.filters.http.compressor.v3.compressor_pb2",
    "envoy.extensions.filters.http.router.v3.router_pb2",
    "envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2",
    "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
    "envoy.extensions.resource_monitors.downstream_connections.v3.downstream_connections_pb2",
    "envoy.extensions.transport_sockets.tls.v3.tls_pb2",
    "envoy.extensions.upstreams.http.v3.http_protocol_options_pb2",
    "envoy.extensions.load_balancing_policies.least_request.v3.least_request_pb2",
    "envoy.extensions.filters.listener.proxy_protocol.v3.proxy_protocol_pb2",
    "udpa.type.v1.typed_struct_pb2",
)


def load_pb2() -> Any:
    """Import the modules and return xds-protos' Bootstrap class."""
    for name in _PB2_MODULES:
        importlib.import_module(name)
    from envoy.config.bootstrap.v3 import bootstrap_pb2

    return bootstrap_pb2.Bootstrap


def parse(text: str) -> Any:
    """Parse proto3 JSON text into xds-protos' Bootstrap (ParseError on anything unknown)."""
    from google.protobuf import json_format

    return json_format.Parse(text, load_pb2()())


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        if not value:
            out[path] = {}
        for key, item in value.items():
            _flatten(item, f"{path}/{key}", out)
    elif isinstance(value, list):
        if not value:
            out[path] = []
        for index, item in enumerate(value):
            _flatten(item, f"{path}[{index}]", out)
    else:
        out[path] = value


def canonical(text: str) -> dict[str, Any]:
    """``{path: value}`` for every leaf of the parsed bootstrap."""
    from google.protobuf import json_format

    as_dict = json_format.MessageToDict(parse(text), preserving_proto_field_name=True)
    out: dict[str, Any] = {}
    _flatten(as_dict, "", out)
    return out
