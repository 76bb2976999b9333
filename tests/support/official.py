"""Google's protobuf runtime (upb) over the same schema as ``istio_sdk.api``.

The descriptors are exactly the ones codegen feeds to betterproto2 (``codegen/generate.py``'s
``build_request``: ``protos/`` compiled by grpcio-tools' protoc, plus the closure of Envoy files
from xds-protos), loaded into one private ``DescriptorPool`` so they never clash with the
xds-protos modules in protobuf's default pool. Building it takes about a second and is done once
per test session.

    official_class("envoy.config.cluster.v3.Cluster")  -> upb message class
    to_official(msg)   betterproto2 message -> upb message (through bytes)
    from_official(pb)  upb message -> betterproto2 message (through bytes)
"""

from __future__ import annotations

import functools
import pathlib
import sys
from typing import Any

import betterproto2
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message as OfficialMessage

from istio_sdk.testing import full_name, message_class

ROOT = pathlib.Path(__file__).resolve().parents[2]
CODEGEN = ROOT / "codegen"

__all__ = [
    "from_official",
    "official_class",
    "official_json",
    "official_pool",
    "to_official",
]


@functools.cache
def official_pool() -> descriptor_pool.DescriptorPool:
    """One DescriptorPool holding every file that codegen generates from."""
    if str(CODEGEN) not in sys.path:
        sys.path.insert(0, str(CODEGEN))
    import generate  # codegen/generate.py

    pool = descriptor_pool.DescriptorPool()
    # build_request lists files in dependency order, Istio's first (with the well-known types
    # protoc bundles), then the Envoy closure without duplicates.
    for file_proto in generate.build_request().proto_file:
        pool.Add(file_proto)
    return pool


@functools.cache
def official_class(name: str) -> type[OfficialMessage]:
    """The upb message class for a full proto name, e.g. ``istio.networking.v1alpha3.Gateway``."""
    descriptor = official_pool().FindMessageTypeByName(name)
    cls: type[OfficialMessage] = message_factory.GetMessageClass(descriptor)
    return cls


def to_official(msg: betterproto2.Message) -> OfficialMessage:
    """Parse ``bytes(msg)`` with the official runtime."""
    pb = official_class(full_name(type(msg)))()
    pb.ParseFromString(bytes(msg))
    return pb


def from_official(pb: OfficialMessage) -> betterproto2.Message:
    """Parse the official message's bytes with the generated betterproto2 class."""
    cls = message_class(pb.DESCRIPTOR.full_name)
    return cls.parse(pb.SerializeToString())


def official_json(msg: betterproto2.Message) -> Any:
    """``json_format.MessageToDict`` of ``msg`` as the official runtime reads its bytes."""
    return json_format.MessageToDict(
        to_official(msg), preserving_proto_field_name=False, descriptor_pool=official_pool()
    )
