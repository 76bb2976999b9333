"""A message type that carries already-encoded protobuf bytes through grpclib's codec.

It lives in :mod:`istio_sdk._grpc` beside the rest of the grpclib setup (Galley's MCP source
sends pre-encoded bytes too); Pilot's modules import it from here.
"""

from __future__ import annotations

from istio_sdk._grpc import EncodedMessage

__all__ = ["EncodedMessage"]
