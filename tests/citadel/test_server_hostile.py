"""Hostile CreateCertificate calls over a real grpclib channel: raw protobuf bytes, broken gRPC
framing, JWTs built to break a parser, TokenReview answers of every wrong shape.

Each must get INVALID_ARGUMENT (malformed request) or UNAUTHENTICATED (bad credential), be
counted, and leave no traceback in the log; the server keeps serving afterwards.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import struct
from collections.abc import AsyncIterator
from typing import Any

import grpclib.const
import httpx
import pytest
from grpclib.client import Channel
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError

from istio_sdk.api.istio.v1.auth import IstioCertificateRequest
from istio_sdk.citadel import (
    CertificateAuthority,
    CitadelClient,
    CitadelServer,
    ClientCertificateAuthenticator,
    Identity,
    JwtAuthenticator,
    JwtRule,
    TokenReviewAuthenticator,
    create_csr,
    generate_private_key,
)
from istio_sdk.citadel._tls import client_ssl_context
from istio_sdk.citadel.server import CREATE_CERTIFICATE_PATH
from istio_sdk.codec import varint

SLEEP = Identity("default", "sleep")
Status = grpclib.const.Status


class _BytesCodec(ProtoCodec):
    """Sends and returns raw bytes: what goes on the wire is exactly what the test built."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        assert isinstance(message, bytes)
        return message

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


def _field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _nested_struct(depth: int) -> bytes:
    # google.protobuf.Struct {fields: {"a": Value {struct_value: Struct {...}}}}, depth times.
    struct_bytes = b""
    for _ in range(depth):
        value = _field(5, struct_bytes)  # Value.struct_value
        entry = _field(1, b"a") + _field(2, value)  # map entry: key, value
        struct_bytes = _field(1, entry)  # Struct.fields
    return struct_bytes


def _good_request() -> bytes:
    csr = create_csr(generate_private_key(), SLEEP).decode()
    return bytes(IstioCertificateRequest(csr=csr))


async def _call(
    server: CitadelServer,
    *,
    message: bytes | None = None,
    frame: bytes | None = None,
    token: str | None = None,
) -> GRPCError:
    """Send one CreateCertificate (a message, or hand-made gRPC framing) and return the error."""
    channel = Channel(
        "127.0.0.1", server.port, ssl=client_ssl_context(server.root_pem), codec=_BytesCodec()
    )
    metadata = {"authorization": f"Bearer {token}"} if token else None
    try:
        async with channel.request(
            CREATE_CERTIFICATE_PATH,
            grpclib.const.Cardinality.UNARY_UNARY,
            bytes,
            bytes,
            timeout=20,
            metadata=metadata,
        ) as stream:
            if frame is None:
                await stream.send_message(message, end=True)
            else:
                await stream.send_request()
                await stream._stream.send_data(frame, end_stream=True)
                stream._end_done = True  # tell grpclib the request side is over
            with pytest.raises(GRPCError) as info:
                await stream.recv_message()
            return info.value
    finally:
        channel.close()


def _assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert [r for r in caplog.records if r.exc_info] == []
    assert "Traceback" not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.fixture
async def jwt_server(ca: CertificateAuthority, ec_issuer: Any) -> AsyncIterator[CitadelServer]:
    authenticators = [
        ClientCertificateAuthenticator(ca.trust_domain),
        JwtAuthenticator(JwtRule.from_json(ec_issuer.rule())),
    ]
    async with CitadelServer(ca=ca, authenticators=authenticators) as server:
        yield server


_RANDOM = random.Random(7)

MALFORMED_MESSAGES = {
    "invalid UTF-8 in csr": _field(1, b"\xff\xfe-----BEGIN"),
    "random bytes": b"\x07" + _RANDOM.randbytes(300),
    "truncated": _good_request()[:100],
    "huge length prefix": b"\x0a" + varint(2**62) + b"abc",
    "metadata Struct nested 5,000 deep": _field(4, _nested_struct(5000)),
}


@pytest.mark.parametrize("message", MALFORMED_MESSAGES.values(), ids=MALFORMED_MESSAGES.keys())
async def test_malformed_protobuf_is_invalid_argument(
    jwt_server: CitadelServer,
    ec_issuer: Any,
    message: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    error = await _call(jwt_server, message=message, token=ec_issuer.token())
    assert error.status is Status.INVALID_ARGUMENT
    assert error.message is not None
    assert error.message.startswith("malformed CreateCertificate request")
    assert jwt_server.stats().failed == {"invalid_request": 1}
    _assert_no_traceback(caplog)
    # Still serving.
    async with CitadelClient(
        "127.0.0.1", jwt_server.port, root_cert_pem=jwt_server.root_pem
    ) as client:
        assert (await client.request_certificate(token=ec_issuer.token())).identity == SLEEP


@pytest.mark.parametrize(
    ("frame", "status", "reason"),
    [
        # The 5-byte gRPC prefix announces 4 GiB; three bytes follow, then the stream ends.
        (struct.pack(">?I", False, 2**32 - 1) + b"abc", Status.RESOURCE_EXHAUSTED, "exceeds"),
        # Announces 100 bytes, sends 10, ends.
        (struct.pack(">?I", False, 100) + b"x" * 10, Status.INVALID_ARGUMENT, "ended inside"),
        # Two bytes of the prefix, then the end.
        (b"\x00\x00", Status.INVALID_ARGUMENT, "truncated gRPC message prefix"),
        (struct.pack(">?I", True, 3) + b"abc", Status.UNIMPLEMENTED, "compressed"),
    ],
    ids=["4 GiB announced", "short body", "short prefix", "compressed flag"],
)
async def test_broken_grpc_framing_gets_a_status(
    jwt_server: CitadelServer,
    ec_issuer: Any,
    *,
    frame: bytes,
    status: Status,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    error = await _call(jwt_server, frame=frame, token=ec_issuer.token())
    assert error.status is status
    assert reason in (error.message or "")
    assert jwt_server.stats().failed == {"invalid_request": 1}
    _assert_no_traceback(caplog)


@pytest.mark.parametrize("ttl", [2**63 - 1, -(2**63)], ids=["max int64", "min int64"])
async def test_extreme_validity_durations_are_invalid_argument(
    jwt_server: CitadelServer, ec_issuer: Any, ttl: int, caplog: pytest.LogCaptureFixture
) -> None:
    csr = create_csr(generate_private_key(), SLEEP).decode()
    message = bytes(IstioCertificateRequest(csr=csr, validity_duration=ttl))
    error = await _call(jwt_server, message=message, token=ec_issuer.token())
    assert error.status is Status.INVALID_ARGUMENT
    assert jwt_server.stats().failed == {"invalid_ttl": 1}
    _assert_no_traceback(caplog)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(header: str, payload: str) -> str:
    return f"{_b64(header.encode())}.{_b64(payload.encode())}.{_b64(b'signature')}"


_DEEP = "[" * 5000 + "]" * 5000
_CLAIMS = json.dumps({"iss": "x", "sub": "system:serviceaccount:default:sleep", "exp": 2**31})
HOSTILE_JWTS = {
    "alg is a list": _jwt('{"alg": ["ES256"], "kid": "ec-1"}', _CLAIMS),
    "alg is an object": _jwt('{"alg": {"ES256": 1}, "kid": "ec-1"}', _CLAIMS),
    "kid is a list": _jwt('{"alg": "ES256", "kid": ["ec-1"]}', _CLAIMS),
    "header nested 5,000 deep": _jwt('{"alg": "ES256", "x": ' + _DEEP + "}", _CLAIMS),
    "payload nested 5,000 deep": _jwt('{"alg": "ES256"}', _DEEP),
    "payload with a 5,000-digit integer": _jwt('{"alg": "ES256"}', '{"exp": ' + "9" * 5000 + "}"),
    "header with a 5,000-digit integer": _jwt('{"alg": "ES256", "n": ' + "1" * 5000 + "}", _CLAIMS),
    "header is a list": _jwt('["ES256"]', _CLAIMS),
    "header is not UTF-8": ".".join((_b64(b'{"alg": "\xff"}'), _b64(_CLAIMS.encode()), "c2ln")),
}


@pytest.mark.parametrize("token", HOSTILE_JWTS.values(), ids=HOSTILE_JWTS.keys())
async def test_hostile_jwts_are_unauthenticated(
    jwt_server: CitadelServer, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    error = await _call(jwt_server, message=_good_request(), token=token)
    assert error.status is Status.UNAUTHENTICATED
    assert (error.message or "").startswith("jwt: ")
    assert jwt_server.stats().failed == {"unauthenticated": 1}
    _assert_no_traceback(caplog)


class _ExplodingAuthenticator:
    """A verifier with a bug: whatever it is handed, it raises something unexpected."""

    name = "exploding"

    async def authenticate(self, caller: Any) -> Identity | None:
        raise RecursionError("maximum recursion depth exceeded")


async def test_any_exception_from_an_authenticator_is_unauthenticated(
    ca: CertificateAuthority, ec_issuer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with CitadelServer(ca=ca, authenticators=[_ExplodingAuthenticator()]) as server:
        error = await _call(server, message=_good_request(), token="anything")
        assert error.status is Status.UNAUTHENTICATED
        assert error.message == "exploding: the credential could not be verified"
        assert server.stats().failed == {"unauthenticated": 1}
    _assert_no_traceback(caplog)
    assert "RecursionError" in caplog.text  # named in one log line, without a traceback


_BIG = "x" * (2 * 1024 * 1024)

TOKEN_REVIEW_ANSWERS: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"<html>oops</html>", "not JSON"),
    "a JSON list": (b"[1, 2]", "a JSON list"),
    "a JSON string": (b'"status"', "a JSON str"),
    "status missing": (b'{"kind": "TokenReview"}', "no status"),
    "status a list": (b'{"status": []}', "no status"),
    "authenticated a string": (b'{"status": {"authenticated": "true"}}', "unauthenticated"),
    "user a list": (
        b'{"status": {"authenticated": true, "audiences": ["istio-ca"], "user": ["a"]}}',
        "no user name",
    ),
    "username a number": (
        b'{"status": {"authenticated": true, "audiences": ["istio-ca"], "user": {"username": 7}}}',
        "no user name",
    ),
    "audiences not a list": (
        b'{"status": {"authenticated": true, "audiences": 5, "user": {"username": "x"}}}',
        "audience",
    ),
    "audiences of numbers": (
        b'{"status": {"authenticated": true, "audiences": [1], "user": {"username": "x"}}}',
        "audience",
    ),
    "nested 5,000 deep": (b'{"status": ' + b"[" * 5000 + b"]" * 5000 + b"}", "not JSON"),
    "5,000-digit integer": (b'{"status": {"authenticated": ' + b"1" * 5000 + b"}}", "not JSON"),
    "huge": (json.dumps({"status": {"error": _BIG}}).encode(), "larger than"),
    "huge error text": (
        json.dumps({"status": {"authenticated": False, "error": "e\n" * 100_000}}).encode(),
        "token rejected by TokenReview: e\\ne\\n",
    ),
    "huge user name": (
        json.dumps(
            {
                "status": {
                    "authenticated": True,
                    "audiences": ["istio-ca"],
                    "user": {"username": "u" * 500_000},
                }
            }
        ).encode(),
        "not a service account",
    ),
}


@pytest.mark.parametrize(
    ("body", "reason"), TOKEN_REVIEW_ANSWERS.values(), ids=TOKEN_REVIEW_ANSWERS.keys()
)
async def test_wrongly_shaped_token_review_answers_are_unauthenticated(
    ca: CertificateAuthority, body: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, content=body, headers={"content-type": "application/json"})

    review = TokenReviewAuthenticator(
        "https://kubernetes.invalid",
        audiences=("istio-ca",),
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    async with CitadelServer(ca=ca, authenticators=[review]) as server:
        error = await _call(server, message=_good_request(), token="a-token")
        assert error.status is Status.UNAUTHENTICATED
        message = error.message or ""
        assert message.startswith("kubernetes-token-review: ")
        assert reason in message
        assert len(message) < 1000
        assert "\n" not in message
        assert server.stats().failed == {"unauthenticated": 1}
    _assert_no_traceback(caplog)
