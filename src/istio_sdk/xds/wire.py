"""Hand-written protobuf wire encoding of the xDS envelopes.

Resources are serialized once (as ``google.protobuf.Any`` bytes) and then spliced, unchanged,
into every ``DiscoveryResponse`` or ``DeltaDiscoveryResponse`` that carries them. Decoding the
envelope alone (version, nonce, type URL, the still-encoded resources) lets a client read a large
response without building a Python object per resource. Field numbers are those of
``envoy.service.discovery.v3``, ``google.protobuf.Any`` and MCP's ``istio.mcp.v1alpha1.Resources``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import attrs

from istio_sdk.codec import varint
from istio_sdk.xds.errors import MalformedMessageError

# Base-128 varint of an integer: the message codec's encoder (table lookup below 2**14).
encode_varint = varint


def _len_field(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def _str_field(tag: bytes, text: str) -> bytes:
    if not text:
        return b""
    return _len_field(tag, text.encode())


# (field_number << 3) | wire_type 2
_T1, _T2, _T3, _T4, _T5, _T6 = (bytes([(n << 3) | 2]) for n in range(1, 7))


def encode_any(type_url: str, value: bytes) -> bytes:
    """Serialized ``google.protobuf.Any{type_url, value}``."""
    return _str_field(_T1, type_url) + (_len_field(_T2, value) if value else b"")


def encode_discovery_response(
    *, version_info: str, type_url: str, nonce: str, resources: Iterable[bytes]
) -> bytes:
    """Serialized ``DiscoveryResponse`` whose ``resources`` are already-encoded ``Any`` bytes."""
    parts = [_str_field(_T1, version_info)]
    parts.extend(_len_field(_T2, r) for r in resources)
    parts.append(_str_field(_T4, type_url))
    parts.append(_str_field(_T5, nonce))
    return b"".join(parts)


def resource_field(any_bytes: bytes) -> bytes:
    """``any_bytes`` framed as field 2 (``resources``) of a ``DiscoveryResponse``.

    Caching this per resource makes assembling a response a single ``bytes.join``.
    """
    return _len_field(_T2, any_bytes)


def encode_discovery_response_framed(
    *, version_info: str, type_url: str, nonce: str, framed_resources: Iterable[bytes]
) -> bytes:
    """Like :func:`encode_discovery_response`, with resources already framed by
    :func:`resource_field`."""
    return b"".join(
        (
            _str_field(_T1, version_info),
            *framed_resources,
            _str_field(_T4, type_url),
            _str_field(_T5, nonce),
        )
    )


def encode_delta_resource(name: str, version: str, any_bytes: bytes) -> bytes:
    """Serialized ``envoy.service.discovery.v3.Resource{version=1, resource=2, name=3}``."""
    return _str_field(_T1, version) + _len_field(_T2, any_bytes) + _str_field(_T3, name)


def encode_delta_response(
    *,
    system_version_info: str,
    type_url: str,
    nonce: str,
    resources: Iterable[bytes],
    removed_resources: Sequence[str] = (),
) -> bytes:
    """Serialized ``DeltaDiscoveryResponse``; ``resources`` are encoded ``Resource`` messages."""
    parts = [_str_field(_T1, system_version_info)]
    parts.extend(_len_field(_T2, r) for r in resources)
    parts.append(_str_field(_T4, type_url))
    parts.append(_str_field(_T5, nonce))
    parts.extend(_len_field(_T6, n.encode()) for n in removed_resources)
    return b"".join(parts)


def encode_mcp_resources(
    *,
    system_version_info: str,
    collection: str,
    nonce: str,
    resources: Iterable[bytes],
    removed_resources: Sequence[str] = (),
    incremental: bool = False,
) -> bytes:
    """Serialized ``istio.mcp.v1alpha1.Resources``; ``resources`` are encoded ``Resource``s."""
    parts = [_str_field(_T1, system_version_info), _str_field(_T2, collection)]
    parts.extend(_len_field(_T3, r) for r in resources)
    parts.extend(_len_field(_T4, n.encode()) for n in removed_resources)
    parts.append(_str_field(_T5, nonce))
    if incremental:
        parts.append(b"\x30\x01")  # field 6, varint: true
    return b"".join(parts)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    if pos < len(data) and data[pos] < 0x80:  # one byte: most tags and short lengths
        return data[pos], pos + 1
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise MalformedMessageError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise MalformedMessageError("varint longer than 10 bytes")


def iter_fields(data: bytes) -> Iterable[tuple[int, int, int | bytes]]:
    """Yield ``(field_number, wire_type, value)``; length-delimited values as bytes."""
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(data, pos)
            yield number, 0, value
        elif wire_type == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > end:
                raise MalformedMessageError("length-delimited field runs past the end")
            yield number, 2, data[pos : pos + length]
            pos += length
        elif wire_type == 1:
            pos += 8
            yield number, 1, 0
        elif wire_type == 5:
            pos += 4
            yield number, 5, 0
        else:
            raise MalformedMessageError(f"unsupported wire type {wire_type}")
    if pos != end:
        raise MalformedMessageError("fixed-width field runs past the end")


def iter_bytes_fields(data: bytes) -> Iterable[tuple[int, bytes]]:
    """Yield ``(field_number, value)`` of the length-delimited fields only.

    The xDS envelopes keep every field the decoders read (strings, sub-messages) in
    length-delimited form; the others are checked for framing and skipped.
    """
    for number, wire_type, value in iter_fields(data):
        if wire_type == 2:
            assert isinstance(value, bytes)
            yield number, value


def peek_name(value: bytes) -> str:
    """Field 1 of an encoded resource as a string: the name of every xDS resource type.

    (``Listener``, ``Cluster``, ``RouteConfiguration``, ``Secret`` and the other types keep
    their name in field 1, ``ClusterLoadAssignment`` its ``cluster_name``.)
    """
    if value[:1] == b"\x0a":  # field 1 first, as encoders write it
        n, pos = _read_varint(value, 1)
        if pos + n <= len(value):
            return value[pos : pos + n].decode()
    for number, v in iter_bytes_fields(value):
        if number == 1:
            return v.decode()
    return ""


class RawAny(NamedTuple):
    """An ``Any`` left encoded: its type URL and the serialized message."""

    type_url: str
    value: bytes


def decode_any(data: bytes) -> RawAny:
    """Split serialized ``Any`` bytes into type URL and value."""
    type_url = ""
    value = b""
    for number, v in iter_bytes_fields(data):
        if number == 1:
            type_url = v.decode()
        elif number == 2:
            value = v
    return RawAny(type_url, value)


@attrs.frozen
class ResponseEnvelope:
    """A ``DiscoveryResponse`` with its resources still encoded."""

    version_info: str
    type_url: str
    nonce: str
    resources: tuple[RawAny, ...]


def decode_discovery_response(data: bytes) -> ResponseEnvelope:
    """Read version, type URL, nonce and the encoded resources of a ``DiscoveryResponse``."""
    version = type_url = nonce = ""
    resources: list[RawAny] = []
    pos, end = 0, len(data)
    read = _read_varint
    while pos < end:
        if data[pos] == 0x12:  # resources: by far the most frequent field
            n, pos = read(data, pos + 1)
            if pos + n > end:
                raise MalformedMessageError("length-delimited field runs past the end")
            resources.append(_decode_any_fast(data[pos : pos + n]))
            pos += n
            continue
        key, pos = read(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 2:
            n, pos = read(data, pos)
            if pos + n > end:
                raise MalformedMessageError("length-delimited field runs past the end")
            if number == 1:
                version = data[pos : pos + n].decode()
            elif number == 4:
                type_url = data[pos : pos + n].decode()
            elif number == 5:
                nonce = data[pos : pos + n].decode()
            pos += n
        elif wire_type == 0:
            _, pos = read(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise MalformedMessageError(f"unsupported wire type {wire_type}")
    if pos != end:
        raise MalformedMessageError("fixed-width field runs past the end")
    return ResponseEnvelope(version, type_url, nonce, tuple(resources))


def _decode_any_fast(data: bytes) -> RawAny:
    # The common layout, as every encoder writes it: field 1 (type_url) then field 2 (value),
    # each once. Anything else takes the general path.
    try:
        if data[0] == 0x0A:
            n, pos = _read_varint(data, 1)
            type_url = data[pos : pos + n].decode()
            pos += n
            if pos == len(data):
                return RawAny(type_url, b"")
            if data[pos] == 0x12:
                n, pos = _read_varint(data, pos + 1)
                if pos + n == len(data):
                    return RawAny(type_url, data[pos : pos + n])
    except (IndexError, UnicodeDecodeError, MalformedMessageError):
        pass
    return decode_any(data)


@attrs.frozen
class DeltaResource:
    """One ``Resource`` of a ``DeltaDiscoveryResponse``, its payload left encoded."""

    name: str
    version: str
    resource: RawAny | None


@attrs.frozen
class DeltaResponseEnvelope:
    """A ``DeltaDiscoveryResponse`` with its resources still encoded."""

    system_version_info: str
    type_url: str
    nonce: str
    resources: tuple[DeltaResource, ...]
    removed_resources: tuple[str, ...]


def _decode_delta_resource(data: bytes) -> DeltaResource:
    name = version = ""
    payload: RawAny | None = None
    for number, v in iter_bytes_fields(data):
        if number == 1:
            version = v.decode()
        elif number == 2:
            payload = decode_any(v)
        elif number == 3:
            name = v.decode()
    return DeltaResource(name, version, payload)


def decode_delta_response(data: bytes) -> DeltaResponseEnvelope:
    """Read a ``DeltaDiscoveryResponse`` without decoding the resources inside."""
    version = type_url = nonce = ""
    resources: list[DeltaResource] = []
    removed: list[str] = []
    for number, v in iter_bytes_fields(data):
        if number == 1:
            version = v.decode()
        elif number == 2:
            resources.append(_decode_delta_resource(v))
        elif number == 4:
            type_url = v.decode()
        elif number == 5:
            nonce = v.decode()
        elif number == 6:
            removed.append(v.decode())
    return DeltaResponseEnvelope(version, type_url, nonce, tuple(resources), tuple(removed))
