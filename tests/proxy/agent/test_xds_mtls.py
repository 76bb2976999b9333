"""The xDS proxy dials Pilot over mutual TLS with the workload certificate the Citadel agent
wrote, re-read at every connect: no certificate, no config; once the files appear, the next
connection presents them and the proxy gets its config."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import pathlib
import ssl
from collections.abc import AsyncIterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families
from proxy.agent.test_xds_proxy import cluster

from istio_sdk._grpc import create_channel
from istio_sdk._metrics import render_metrics
from istio_sdk.api.envoy.config.listener.v3 import Listener
from istio_sdk.pilot.client import PilotClient
from istio_sdk.pilot.server import DiscoveryServer, StaticGenerator
from istio_sdk.proxy.agent.xds_proxy import XdsProxy
from istio_sdk.proxy.agent.xds_tls import workload_tls
from istio_sdk.xds.types import CLUSTER

SPIFFE = "spiffe://cluster.local/ns/default/sa/web"


Issuer = tuple[x509.Name, ec.EllipticCurvePrivateKey]


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: Issuer | None,
    san: x509.GeneralName | None,
    ca: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class MtlsFront:
    """Pilot's mTLS port: requires a client certificate from the CA, records its SAN, and
    relays the decrypted HTTP/2 to the plaintext Pilot."""

    def __init__(self, pilot_port: int, tmp: pathlib.Path) -> None:
        self.pilot_port = pilot_port
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("mesh root", ca_key, None, None, ca=True)
        self.root_pem = _pem(ca).decode()
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = _cert(
            "istiod",
            server_key,
            (ca.subject, ca_key),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        )
        (tmp / "server.pem").write_bytes(_pem(server))
        (tmp / "server-key.pem").write_bytes(_key_pem(server_key))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=self.root_pem)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.set_alpn_protocols(["h2"])
        self.context.load_cert_chain(tmp / "server.pem", tmp / "server-key.pem")
        self.workload_key = ec.generate_private_key(ec.SECP256R1())
        self.workload = _cert(
            "web", self.workload_key, (ca.subject, ca_key), x509.UniformResourceIdentifier(SPIFFE)
        )
        self.peers: list[str] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        self.peers += [value for kind, value in peer.get("subjectAltName", ()) if kind == "URI"]
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.pilot_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def upstream_failures(proxy: XdsProxy) -> float:
    text = render_metrics(proxy.metrics.registry).decode()
    for family in text_string_to_metric_families(text):
        if family.name == "istio_agent_istiod_connection_failures":
            return float(family.samples[0].value)
    return 0.0


@pytest.fixture
async def front(tmp_path: pathlib.Path) -> AsyncIterator[tuple[MtlsFront, DiscoveryServer]]:
    pilot = DiscoveryServer(StaticGenerator([cluster("a"), Listener(name="l1")]))
    await pilot.start("127.0.0.1", 0)
    mtls = MtlsFront(pilot.port, tmp_path)
    await mtls.start()
    try:
        yield mtls, pilot
    finally:
        await mtls.close()
        await pilot.stop()


async def test_the_agent_presents_the_workload_certificate_it_finds(
    front: tuple[MtlsFront, DiscoveryServer], tmp_path: pathlib.Path
) -> None:
    mtls, pilot = front
    certs = tmp_path / "certs"
    certs.mkdir()
    proxy = XdsProxy(
        "127.0.0.1",
        mtls.port,
        ssl_context=workload_tls(mtls.root_pem, str(certs)),
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    await proxy.start(host="127.0.0.1", port=0)
    assert proxy.port is not None
    try:
        channel = create_channel("127.0.0.1", proxy.port)
        async with PilotClient("127.0.0.1:1", channel=channel) as client:
            client.subscribe(CLUSTER)
            for _ in range(200):  # upstream attempts, each refused without a certificate
                if upstream_failures(proxy) >= 2:
                    break
                await asyncio.sleep(0.05)
            assert upstream_failures(proxy) >= 2
            assert client.resources(CLUSTER) == {} and pilot.proxies() == []
            # the Citadel agent writes the workload certificate: the next connect presents it
            (certs / "key.pem").write_bytes(_key_pem(mtls.workload_key))
            (certs / "cert-chain.pem").write_bytes(_pem(mtls.workload))
            assert set(await client.wait_for(CLUSTER, ["a"])) == {"a"}
            assert client.reconnects == 0
        channel.close()
        assert mtls.peers == [SPIFFE]
    finally:
        await proxy.close()
