"""Fixtures for the Citadel tests: CAs, JWT signers and a fake Kubernetes API server."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest

from istio_sdk._net import bound_port
from istio_sdk.citadel import CaOptions, CertificateAuthority, KeyAlgorithm, generate_private_key
from istio_sdk.citadel.jwt import encode_jwt, public_key_to_jwk

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "istio-ca"


@pytest.fixture(scope="session")
def ca() -> CertificateAuthority:
    """A self-signed CA with an ECDSA P-256 root (quick to create, quick to sign with)."""
    return CertificateAuthority.create_self_signed(CaOptions(key_algorithm=KeyAlgorithm.ECDSA_P256))


@pytest.fixture(scope="session")
def rsa_ca() -> CertificateAuthority:
    """A self-signed CA with Istio's default RSA 2048 root."""
    return CertificateAuthority.create_self_signed()


@attrs.frozen
class TokenIssuer:
    """Signs Kubernetes-like service account JWTs with one key."""

    key: Any
    kid: str
    issuer: str = ISSUER

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_key_to_jwk(self.key.public_key(), self.kid)]}

    def rule(self, **extra: Any) -> dict[str, Any]:
        return {"issuer": ISSUER, "jwks": json.dumps(self.jwks()), "audiences": [AUDIENCE], **extra}

    def token(
        self,
        namespace: str = "default",
        service_account: str = "sleep",
        *,
        lifetime: float = 600,
        **overrides: Any,
    ) -> str:
        now = time.time()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": [AUDIENCE],
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + lifetime),
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": service_account}},
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return encode_jwt(claims, self.key, kid=self.kid)


@pytest.fixture(scope="session")
def ec_issuer() -> TokenIssuer:
    return TokenIssuer(generate_private_key(KeyAlgorithm.ECDSA_P256), "ec-1")


@pytest.fixture(scope="session")
def rsa_issuer() -> TokenIssuer:
    return TokenIssuer(generate_private_key(KeyAlgorithm.RSA_2048), "rsa-1")


@attrs.define
class FakeHttpServer:
    """A tiny HTTP/1.1 server on 127.0.0.1: routes (method, path) to a handler.

    A handler gets the parsed JSON body (or None) and the request headers and returns
    ``(status, json_document)``. Requests are recorded.
    """

    routes: dict[tuple[str, str], Callable[[Any, dict[str, str]], tuple[int, Any]]] = attrs.field(
        factory=dict
    )
    requests: list[tuple[str, str, dict[str, str], Any]] = attrs.field(factory=list)
    port: int = 0
    ssl_context: ssl.SSLContext | None = None
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = bound_port(self._server)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _version = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    header = (await reader.readline()).decode("latin-1").strip()
                    if not header:
                        break
                    name, _, value = header.partition(":")
                    headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                body = json.loads(raw) if raw else None
                self.requests.append((method, path, headers, body))
                handler = self.routes.get((method, path))
                status, doc = handler(body, headers) if handler else (404, {"error": "not found"})
                payload = json.dumps(doc).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


@pytest.fixture
async def http_server() -> AsyncIterator[FakeHttpServer]:
    server = FakeHttpServer()
    await server.start()
    yield server
    await server.stop()
