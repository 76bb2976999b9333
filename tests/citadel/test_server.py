"""The CA server over real TLS with grpclib: each authenticator, status codes and counters."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpclib.const
import pytest
from cryptography import x509
from grpclib.exceptions import GRPCError
from support.grpc_xds import free_port

from istio_sdk.citadel import (
    CaUnavailableError,
    CertificateAuthority,
    CertificateBundle,
    CertificateRequestError,
    CitadelClient,
    CitadelServer,
    CitadelServerOptions,
    Identity,
    JwtRule,
    KeyAlgorithm,
    TokenReviewOptions,
    create_csr,
    generate_private_key,
)
from istio_sdk.citadel._tls import client_ssl_context
from istio_sdk.citadel.keys import private_key_pem

SLEEP = Identity("default", "sleep")


def _uris(pem: str) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


@pytest.fixture
async def jwt_server(ca: CertificateAuthority, ec_issuer: Any) -> Any:
    options = CitadelServerOptions(jwt_rule=JwtRule.from_json(ec_issuer.rule()))
    async with CitadelServer(options, ca=ca) as server:
        yield server


def _client(server: CitadelServer, **kwargs: Any) -> CitadelClient:
    return CitadelClient("127.0.0.1", server.port, root_cert_pem=server.root_pem, **kwargs)


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.ECDSA_P256, KeyAlgorithm.RSA_2048])
async def test_jwt_caller_gets_its_identity(
    jwt_server: CitadelServer, ec_issuer: Any, algorithm: KeyAlgorithm
) -> None:
    async with _client(jwt_server, key_algorithm=algorithm) as client:
        bundle = await client.request_certificate(token=ec_issuer.token("prod", "reviews"))
    assert bundle.identity == Identity("prod", "reviews")
    assert bundle.root_cert_pem == jwt_server.root_pem
    assert _uris(bundle.leaf_pem) == ["spiffe://cluster.local/ns/prod/sa/reviews"]
    stats = jwt_server.stats()
    assert stats.signed == 1
    assert stats.authenticated_by == {"jwt": 1}


async def test_serving_certificate_names(jwt_server: CitadelServer) -> None:
    context = client_ssl_context(jwt_server.root_pem)
    context.check_hostname = False
    _reader, writer = await asyncio.open_connection("127.0.0.1", jwt_server.port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    async with CitadelClient(
        "127.0.0.1",
        jwt_server.port,
        root_cert_pem=jwt_server.root_pem,
        server_name="istiod.istio-system.svc",
    ) as client:
        with pytest.raises(CertificateRequestError, match="UNAUTHENTICATED"):
            await client.request_certificate()


async def test_mtls_renewal_keeps_identity(jwt_server: CitadelServer, ec_issuer: Any) -> None:
    async with _client(jwt_server) as client:
        first = await client.request_certificate(token=ec_issuer.token("prod", "ratings"))
        # Renewal over mTLS, asking (in the CSR) for someone else: the cert decides.
        renewed = await client.request_certificate(
            mtls=first, requested_identity=Identity("kube-system", "admin")
        )
    assert renewed.identity == Identity("prod", "ratings")
    assert renewed.leaf_pem != first.leaf_pem
    assert jwt_server.stats().authenticated_by == {"jwt": 1, "client-certificate": 1}


async def test_client_certificate_from_another_ca_is_refused(
    jwt_server: CitadelServer, rsa_ca: CertificateAuthority
) -> None:
    key = generate_private_key()
    foreign = rsa_ca.sign_csr(create_csr(key, SLEEP), SLEEP)
    bundle = CertificateBundle.from_response(private_key_pem(key), list(foreign.chain_pem))
    async with _client(jwt_server) as client:
        with pytest.raises((CaUnavailableError, CertificateRequestError)):
            await client.request_certificate(mtls=bundle)
        # The server keeps serving.
        with pytest.raises(CertificateRequestError, match="UNAUTHENTICATED"):
            await client.request_certificate()
    assert jwt_server.stats().signed == 0


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": 1_000_000}, "expired"),
        ({"iss": "https://evil.example.com"}, "issuer"),
        ({"aud": ["not-istio"]}, "audience"),
    ],
)
async def test_bad_tokens_are_unauthenticated(
    jwt_server: CitadelServer, ec_issuer: Any, overrides: dict[str, Any], reason: str
) -> None:
    async with _client(jwt_server) as client:
        with pytest.raises(CertificateRequestError) as info:
            await client.request_certificate(token=ec_issuer.token(**overrides))
    assert info.value.status == "UNAUTHENTICATED"
    assert reason in info.value.message
    assert jwt_server.stats().failed == {"unauthenticated": 1}


async def test_forged_and_missing_tokens(
    jwt_server: CitadelServer, ec_issuer: Any, rsa_issuer: Any
) -> None:
    forged = type(ec_issuer)(generate_private_key(), ec_issuer.kid).token()
    async with _client(jwt_server) as client:
        for token in (forged, rsa_issuer.token(), "not-a-jwt", None):
            with pytest.raises(CertificateRequestError) as info:
                await client.request_certificate(token=token)
            assert info.value.status == "UNAUTHENTICATED"
        # Still serving after the failures.
        bundle = await client.request_certificate(token=ec_issuer.token())
    assert bundle.identity == SLEEP
    assert jwt_server.stats().failed == {"unauthenticated": 4}


async def test_token_for_another_identity_than_the_csr_asks(
    jwt_server: CitadelServer, ec_issuer: Any
) -> None:
    async with _client(jwt_server) as client:
        bundle = await client.request_certificate(
            token=ec_issuer.token("default", "sleep"),
            requested_identity=Identity("istio-system", "istiod"),
        )
    assert _uris(bundle.leaf_pem) == [SLEEP.spiffe_uri]


@pytest.mark.parametrize(
    ("csr", "ttl", "reason"),
    [
        ("garbage", 0, "invalid_csr"),
        ("", 0, "invalid_csr"),
        ("-----BEGIN CERTIFICATE REQUEST-----\n" + "A" * 70000, 0, "invalid_csr"),
        (None, 91 * 86400, "invalid_ttl"),
        (None, -1, "invalid_ttl"),
    ],
)
async def test_malformed_requests_are_invalid_argument(
    jwt_server: CitadelServer, ec_issuer: Any, csr: str | None, ttl: int, reason: str
) -> None:
    good_csr = create_csr(generate_private_key(), SLEEP).decode()
    async with _client(jwt_server) as client:
        with pytest.raises(CertificateRequestError) as info:
            await client.create_certificate(
                good_csr if csr is None else csr, token=ec_issuer.token(), ttl_seconds=ttl
            )
        assert info.value.status == "INVALID_ARGUMENT"
        chain = await client.create_certificate(good_csr, token=ec_issuer.token())
    assert len(chain) == 2
    assert jwt_server.stats().failed == {reason: 1}


async def test_jwks_uri_is_fetched_and_cached(
    ca: CertificateAuthority, ec_issuer: Any, http_server: Any
) -> None:
    http_server.routes[("GET", "/keys")] = lambda _body, _headers: (200, ec_issuer.jwks())
    rule = JwtRule.from_json(
        {
            "issuer": ec_issuer.issuer,
            "jwksUri": f"{http_server.url}/keys",
            "audiences": ["istio-ca"],
        }
    )
    async with (
        CitadelServer(CitadelServerOptions(jwt_rule=rule), ca=ca) as server,
        _client(server) as client,
    ):
        for _ in range(3):
            bundle = await client.request_certificate(token=ec_issuer.token("a", "b"))
            assert bundle.identity == Identity("a", "b")
    assert [r[1] for r in http_server.requests] == ["/keys"]


async def test_unreachable_jwks_uri_is_unauthenticated(
    ca: CertificateAuthority, ec_issuer: Any, http_server: Any
) -> None:
    rule = JwtRule.from_json({"issuer": ec_issuer.issuer, "jwksUri": f"{http_server.url}/nope"})
    async with (
        CitadelServer(CitadelServerOptions(jwt_rule=rule), ca=ca) as server,
        _client(server) as client,
    ):
        with pytest.raises(CertificateRequestError, match=r"UNAUTHENTICATED.*HTTP 404"):
            await client.request_certificate(token=ec_issuer.token())


def _token_review_api(http_server: Any, valid: dict[str, str]) -> None:
    def review(body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        if headers.get("authorization") != "Bearer reviewer-secret":
            return 401, {"kind": "Status", "code": 401}
        token = body["spec"]["token"]
        user = valid.get(token)
        status: dict[str, Any] = {"authenticated": user is not None}
        if user is not None:
            status["user"] = {"username": user}
            status["audiences"] = body["spec"].get("audiences", [])
        else:
            status["error"] = "invalid bearer token"
        return 201, {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "status": status,
        }

    http_server.routes[("POST", "/apis/authentication.k8s.io/v1/tokenreviews")] = review


async def test_token_review_authenticator(ca: CertificateAuthority, http_server: Any) -> None:
    _token_review_api(
        http_server,
        {
            "sa-token": "system:serviceaccount:prod:productpage",
            "node-token": "system:node:worker-1",
        },
    )
    options = CitadelServerOptions(
        token_review=TokenReviewOptions(
            http_server.url, reviewer_token="reviewer-secret", audiences=("istio-ca",)
        )
    )
    async with CitadelServer(options, ca=ca) as server, _client(server) as client:
        bundle = await client.request_certificate(token="sa-token")
        assert bundle.identity == Identity("prod", "productpage")
        for token, reason in (
            ("bad-token", "invalid bearer token"),
            ("node-token", "not a service account"),
        ):
            with pytest.raises(CertificateRequestError, match=reason) as info:
                await client.request_certificate(token=token)
            assert info.value.status == "UNAUTHENTICATED"
        stats = server.stats()
    assert stats.authenticated_by == {"kubernetes-token-review": 1}
    assert stats.failed == {"unauthenticated": 2}
    method, path, _headers, body = http_server.requests[0]
    assert (method, path) == ("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert body["spec"] == {"token": "sa-token", "audiences": ["istio-ca"]}


async def test_token_review_api_down_is_unauthenticated(ca: CertificateAuthority) -> None:
    options = CitadelServerOptions(
        token_review=TokenReviewOptions(f"http://127.0.0.1:{free_port()}")
    )
    async with CitadelServer(options, ca=ca) as server, _client(server) as client:
        with pytest.raises(CertificateRequestError, match=r"UNAUTHENTICATED.*TokenReview"):
            await client.request_certificate(token="anything")


async def test_authenticators_are_tried_in_order(
    ca: CertificateAuthority, ec_issuer: Any, http_server: Any
) -> None:
    # A JWT the JWT rule rejects (other issuer) still passes TokenReview when the API server
    # vouches for it; a JWT the rule accepts never reaches TokenReview.
    other = type(ec_issuer)(generate_private_key(), "k", issuer="other")
    other_token = other.token("ns2", "sa2")
    _token_review_api(http_server, {other_token: "system:serviceaccount:ns2:sa2"})
    options = CitadelServerOptions(
        jwt_rule=JwtRule.from_json(ec_issuer.rule()),
        token_review=TokenReviewOptions(http_server.url, reviewer_token="reviewer-secret"),
    )
    async with CitadelServer(options, ca=ca) as server, _client(server) as client:
        assert (await client.request_certificate(token=ec_issuer.token())).identity == SLEEP
        assert len(http_server.requests) == 0
        bundle = await client.request_certificate(token=other_token)
        assert bundle.identity == Identity("ns2", "sa2")
        assert server.stats().authenticated_by == {"jwt": 1, "kubernetes-token-review": 1}


async def test_ca_dir_and_plain_tls_rejection(tmp_path: Any, ec_issuer: Any) -> None:
    options = CitadelServerOptions(
        ca_dir=str(tmp_path / "ca"), jwt_rule=JwtRule.from_json(ec_issuer.rule())
    )
    async with CitadelServer(options) as server:
        assert (tmp_path / "ca" / "root-cert.pem").read_text() == server.root_pem
        # A client that does not trust our root cannot talk to the server.
        plain = CitadelClient(
            "127.0.0.1",
            server.port,
            root_cert_pem=CertificateAuthority.create_self_signed(options.ca_options).root_pem,
        )
        with pytest.raises(CaUnavailableError, match="SSL"):
            await plain.request_certificate(token=ec_issuer.token())
        await plain.close()
    again = CitadelServer(options)
    assert again.root_pem == server.root_pem


async def test_unreachable_ca(ca: CertificateAuthority) -> None:
    async with CitadelClient(
        "127.0.0.1", free_port(), root_cert_pem=ca.root_pem, timeout=2
    ) as client:
        with pytest.raises(CaUnavailableError, match="unreachable"):
            await client.request_certificate(token="t")


async def test_signing_in_worker_processes(ca: CertificateAuthority, ec_issuer: Any) -> None:
    options = CitadelServerOptions(
        jwt_rule=JwtRule.from_json(ec_issuer.rule()), signing_processes=1
    )
    async with CitadelServer(options, ca=ca) as server, _client(server) as client:
        bundles = await asyncio.gather(
            *(client.request_certificate(token=ec_issuer.token("w", f"sa{i}")) for i in range(4))
        )
        assert [b.identity.service_account for b in bundles] == ["sa0", "sa1", "sa2", "sa3"]
        with pytest.raises(CertificateRequestError, match="INVALID_ARGUMENT"):
            await client.create_certificate("garbage", token=ec_issuer.token())
        assert server.stats().failed == {"invalid_csr": 1}


async def test_verified_tokens_are_remembered_only_until_expiry(ec_issuer: Any) -> None:
    from istio_sdk.citadel import CallerContext, JwtAuthenticator, JwtError

    now = [time.time()]
    authenticator = JwtAuthenticator(JwtRule.from_json(ec_issuer.rule()), clock=lambda: now[0])
    token = ec_issuer.token("a", "b", lifetime=30)
    caller = CallerContext(metadata={"authorization": f"Bearer {token}"})
    assert await authenticator.authenticate(caller) == Identity("a", "b")
    assert await authenticator.authenticate(caller) == Identity("a", "b")
    now[0] += 3600
    with pytest.raises(JwtError, match="expired"):
        await authenticator.authenticate(caller)


@pytest.mark.parametrize("signing_processes", [0, 1])
async def test_self_signed_root_rotates_inside_grace_period(
    tmp_path: Any, ec_issuer: Any, signing_processes: int
) -> None:
    import datetime

    from istio_sdk.citadel import CaOptions

    ca_options = CaOptions(
        key_algorithm=KeyAlgorithm.ECDSA_P256, root_ttl=datetime.timedelta(days=10)
    )
    # A root made nine days ago with a ten-day life: inside the 20% grace period now.
    nine_days_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=9)
    CertificateAuthority.create_self_signed(ca_options, now=nine_days_ago).write_directory(tmp_path)
    options = CitadelServerOptions(
        ca_dir=str(tmp_path),
        ca_options=ca_options,
        jwt_rule=JwtRule.from_json(ec_issuer.rule()),
        signing_processes=signing_processes,  # with workers, the rotated CA goes to new ones
    )
    async with CitadelServer(options) as server:
        old_root = server.root_pem
        async with _client(server) as client:
            before = await client.request_certificate(token=ec_issuer.token())
        assert not server.rotate_root_if_needed(nine_days_ago)
        assert server.rotate_root_if_needed()
        assert server.root_pem != old_root
        assert (tmp_path / "root-cert.pem").read_text() == server.root_pem
        # Clients holding either root keep working; old leaves verify under the new root.
        for root in (old_root, server.root_pem):
            async with CitadelClient("127.0.0.1", server.port, root_cert_pem=root) as client:
                after = await client.request_certificate(token=ec_issuer.token())
            assert after.root_cert_pem == server.root_pem
        new_root = x509.load_pem_x509_certificate(server.root_pem.encode())
        x509.load_pem_x509_certificate(before.leaf_pem.encode()).verify_directly_issued_by(new_root)


async def test_tokens_and_keys_never_reach_the_logs(
    jwt_server: CitadelServer, ec_issuer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    good = ec_issuer.token("prod", "logs")
    expired = ec_issuer.token(exp=1_000_000)
    async with _client(jwt_server) as client:
        bundle = await client.request_certificate(token=good)
        with pytest.raises(CertificateRequestError):
            await client.request_certificate(token=expired)
        with pytest.raises(CertificateRequestError):
            await client.create_certificate("garbage", token=good)
    # Only our loggers: hpack (under h2) logs raw headers at DEBUG, see docs/citadel.md.
    ours = [r for r in caplog.records if r.name.startswith("istio_sdk")]
    assert ours  # the server did log what it did
    text = "\n".join(r.getMessage() for r in ours)
    for secret in (good, expired, good.split(".")[2], bundle.private_key_pem.decode()):
        assert secret not in text
    assert "PRIVATE KEY" not in text


async def test_token_review_over_https_with_a_ca_file(
    ca: CertificateAuthority, tmp_path: Any, http_server: Any
) -> None:
    import ssl

    from istio_sdk.citadel._tls import load_key_pair

    key_pem, chain = ca.issue_serving_certificate(("kubernetes.default.svc",), ("127.0.0.1",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    load_key_pair(context, key_pem, chain[:-1])
    api = type(http_server)(ssl_context=context)
    _token_review_api(api, {"tok": "system:serviceaccount:kube-system:dns"})
    await api.start()
    (tmp_path / "api-ca.pem").write_text(ca.root_pem)
    try:
        options = CitadelServerOptions(
            token_review=TokenReviewOptions(
                api.url, reviewer_token="reviewer-secret", ca_file=str(tmp_path / "api-ca.pem")
            )
        )
        async with CitadelServer(options, ca=ca) as server, _client(server) as client:
            bundle = await client.request_certificate(token="tok")
        assert bundle.identity == Identity("kube-system", "dns")
        assert api.url.startswith("https://")
    finally:
        await api.stop()


async def test_private_keys_never_touch_a_filesystem(
    ca: CertificateAuthority,
    ec_issuer: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tempfile

    # Every temporary file goes to a directory of our own, and creating one fails outright.
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))

    def no_temporary_files(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a temporary file was created")

    for name in (
        "mkstemp",
        "mkdtemp",
        "NamedTemporaryFile",
        "TemporaryFile",
        "TemporaryDirectory",
        "SpooledTemporaryFile",
    ):
        monkeypatch.setattr(tempfile, name, no_temporary_files)
    options = CitadelServerOptions(jwt_rule=JwtRule.from_json(ec_issuer.rule()))
    async with CitadelServer(options, ca=ca) as server, _client(server) as client:
        first = await client.request_certificate(token=ec_issuer.token("prod", "keys"))
        # Renewal over mTLS loads the workload key into the client's context as well.
        renewed = await client.request_certificate(mtls=first)
    assert renewed.identity == Identity("prod", "keys")
    assert server.stats().authenticated_by == {"jwt": 1, "client-certificate": 1}
    assert list(private_tmp.iterdir()) == []


def test_without_memory_files_loading_a_key_fails_clearly(
    ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import ssl

    from istio_sdk.citadel import CaConfigError
    from istio_sdk.citadel._tls import load_key_pair

    key_pem, chain = ca.issue_serving_certificate()
    monkeypatch.delattr(os, "memfd_create", raising=False)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with pytest.raises(CaConfigError, match="memfd_create"):
        load_key_pair(context, key_pem, chain)


async def test_client_over_an_injected_channel(
    ca: CertificateAuthority, ec_issuer: Any, tmp_path: Any
) -> None:
    # An in-process CA service on a Unix socket, without TLS: the JWT authenticates.
    from istio_sdk._grpc import create_channel, create_server
    from istio_sdk.citadel import CitadelService, JwtAuthenticator

    service = CitadelService(ca, [JwtAuthenticator(JwtRule.from_json(ec_issuer.rule()))])
    server = create_server([service])
    path = str(tmp_path / "ca.sock")
    await server.start(path=path)
    channel = create_channel(path=path)
    try:
        async with CitadelClient(channel=channel) as client:
            bundle = await client.request_certificate(token=ec_issuer.token("prod", "local"))
            with pytest.raises(CertificateRequestError, match="UNAUTHENTICATED"):
                await client.request_certificate()
        assert bundle.identity == Identity("prod", "local")
        assert service.stats().signed == 1
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
    with pytest.raises(TypeError, match="or a channel"):
        CitadelClient("127.0.0.1", 1)


async def test_metrics_endpoint_speaks_prometheus_with_istio_names(
    ca: CertificateAuthority, ec_issuer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    from istio_sdk._grpc import create_channel
    from istio_sdk.api.istio.v1.auth import IstioCertificateRequest
    from istio_sdk.citadel.server import CREATE_CERTIFICATE_PATH

    options = CitadelServerOptions(jwt_rule=JwtRule.from_json(ec_issuer.rule()), monitoring_port=0)
    csr = create_csr(generate_private_key(), SLEEP).decode()

    async with (
        CitadelServer(options, ca=ca) as server,
        _client(server) as client,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.monitoring_port}") as http,
    ):

        async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            response = await http.get("/metrics")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
            found = {}
            for family in text_string_to_metric_families(response.text):
                for sample in family.samples:
                    found[(family.name, tuple(sorted(sample.labels.items())))] = sample.value
            assert f"citadel_server_csr_count {found['citadel_server_csr_count', ()]}" in (
                response.text
            )  # Istio's series name, without prometheus_client's _total
            return found

        def counts(found: dict[Any, float]) -> tuple[float, ...]:
            return (
                found["citadel_server_csr_count", ()],
                found["citadel_server_success_cert_issuance_count", ()],
                found["citadel_server_authentication_failure_count", ()],
                found["citadel_server_csr_parsing_err_count", ()],
                found["citadel_server_csr_sign_err_count", (("error", "TTL_ERROR"),)],
                found["citadel_server_csr_sign_err_count", (("error", "CERT_GEN_ERROR"),)],
            )

        found = await scrape()
        assert counts(found) == (0, 0, 0, 0, 0, 0)
        assert found["citadel_server_id_extraction_err_count", ()] == 0
        assert found["citadel_server_root_cert_expiry_timestamp", ()] == (
            ca.root_certificate.not_valid_after_utc.timestamp()
        )
        assert found["citadel_server_cert_chain_expiry_timestamp", ()] == (
            ca.signing_certificate.not_valid_after_utc.timestamp()
        )

        await client.create_certificate(csr, token=ec_issuer.token())
        assert counts(await scrape()) == (1, 1, 0, 0, 0, 0)
        with pytest.raises(CertificateRequestError):
            await client.create_certificate(csr, token="not-a-jwt")
        assert counts(await scrape()) == (2, 1, 1, 0, 0, 0)
        with pytest.raises(CertificateRequestError):
            await client.create_certificate("garbage", token=ec_issuer.token())
        assert counts(await scrape()) == (3, 1, 1, 1, 0, 0)
        with pytest.raises(CertificateRequestError):
            await client.create_certificate(csr, token=ec_issuer.token(), ttl_seconds=10**9)
        assert counts(await scrape()) == (4, 1, 1, 1, 1, 0)
        # A request that is not even protobuf counts as a parsing error.
        raw = create_channel(
            "127.0.0.1", server.port, ssl_context=client_ssl_context(server.root_pem)
        )
        async with raw.request(
            CREATE_CERTIFICATE_PATH,
            grpclib.const.Cardinality.UNARY_UNARY,
            IstioCertificateRequest,
            IstioCertificateRequest,
            metadata={"authorization": f"Bearer {ec_issuer.token()}"},
        ) as stream:
            await stream.send_request()
            await stream._stream.send_data(b"\x00\x00\x00\x00\x02\xff\xff", end_stream=True)
            stream._end_done = True
            with pytest.raises(GRPCError):
                await stream.recv_message()
        raw.close()
        assert counts(await scrape()) == (5, 1, 1, 2, 1, 0)

        def broken_signer(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("HSM unplugged")

        monkeypatch.setattr(server.service.ca, "sign_csr", broken_signer)
        with pytest.raises(CertificateRequestError, match="INTERNAL"):
            await client.create_certificate(csr, token=ec_issuer.token())
        assert counts(await scrape()) == (6, 1, 1, 2, 1, 1)

        assert (await http.get("/other")).status_code == 404
        assert (await http.post("/metrics")).status_code == 405
