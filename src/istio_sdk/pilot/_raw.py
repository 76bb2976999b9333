"""A message type that carries already-encoded protobuf bytes through grpclib's codec."""

from __future__ import annotations


class EncodedMessage:
    """Bytes that are already a serialized protobuf message.

    grpclib's protobuf codec calls ``SerializeToString`` to send and ``FromString`` to
    receive; this type makes both the identity, so responses assembled from cached bytes go
    out without re-encoding, and clients can read envelopes without a full decode.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        """The encoded bytes."""
        return self.data

    @classmethod
    def FromString(cls, data: bytes) -> EncodedMessage:
        """Wrap received bytes without decoding them."""
        return cls(bytes(data))

    def __len__(self) -> int:
        return len(self.data)
