"""pilot-agent with DNS capture, end to end: our Pilot serves a mesh, the agent's xDS proxy asks
it for the name table on the proxy's upstream stream, and dnspython asks the agent's DNS port.
Unknown names go to an upstream this test starts; the CLI runs the same as a process."""

from __future__ import annotations

import asyncio
import pathlib
import re
import signal
from collections.abc import AsyncIterator
from typing import Any

import attrs
import httpx
import pytest
from proxy.agent.test_cli_agent import banner, start_agent
from proxy.agent.test_xds_proxy import client_over, cluster, start_pilot
from proxy.dns.fake_upstream import FakeUpstream
from proxy.dns.test_dns_proxy import SEARCH, addresses, ask, eventually, mesh

from istio_sdk import AgentConfigError, DiscoveryServer, PilotClient
from istio_sdk._grpc import create_channel
from istio_sdk.api.envoy.config.listener.v3 import Listener
from istio_sdk.api.envoy.extensions.transport_sockets.tls.v3 import Secret
from istio_sdk.api.istio.networking.nds.v1 import NameTable, NameTableNameInfo
from istio_sdk.pilot.server import StaticGenerator
from istio_sdk.pilot.translate import PushContextGenerator
from istio_sdk.proxy.agent.agent import PilotAgent, PilotAgentOptions
from istio_sdk.proxy.agent.agent_dns import AgentDns, DnsOptions
from istio_sdk.proxy.agent.xds_proxy import XdsProxy
from istio_sdk.proxy.dns import dns_node
from istio_sdk.xds.types import CLUSTER, LISTENER, NAME_TABLE, SECRET

API_MOVED = """
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: bookinfo}
spec:
  hosts: [api.example.com]
  addresses: [192.0.2.99]
  ports: [{number: 443, name: tls}]
"""


@attrs.define
class Mesh:
    pilot: DiscoveryServer
    generator: PushContextGenerator
    upstream: FakeUpstream
    upstream_address: str


@pytest.fixture
async def world() -> AsyncIterator[Mesh]:
    generator = PushContextGenerator(mesh())
    pilot = DiscoveryServer(generator, debounce_after=0.01, debounce_max=0.5)
    await pilot.start("127.0.0.1", 0)
    upstream = FakeUpstream()
    address = await upstream.start()
    try:
        yield Mesh(pilot, generator, upstream, address)
    finally:
        await upstream.close()
        await pilot.stop()


def agent_options(world: Mesh, **kw: Any) -> PilotAgentOptions:
    dns = DnsOptions(
        port=0,
        namespace="bookinfo",
        upstream=[world.upstream_address],
        search=SEARCH,
        upstream_timeout=1.0,
        node=dns_node("10.1.0.1", "app", "bookinfo"),
    )
    return PilotAgentOptions(
        host="127.0.0.1",
        status_port=0,
        readiness_port=0,
        pilot_address=("127.0.0.1", world.pilot.port),
        xds_port=0,
        dns=dns,
        **kw,
    )


def envoy_like(agent: PilotAgent) -> PilotClient:
    """The proxy: a sidecar whose node says it captures DNS, dialling the agent's xDS port."""
    assert agent.xds_proxy is not None and agent.xds_proxy.port is not None
    channel = create_channel("127.0.0.1", agent.xds_proxy.port)
    return PilotClient("127.0.0.1:1", channel=channel, node=dns_node("10.1.0.1", "app", "bookinfo"))


def nds_status(pilot: DiscoveryServer) -> dict[str, Any]:
    proxies = pilot.proxies()
    return proxies[0].types.get(NAME_TABLE, {}) if proxies else {}


async def test_the_agent_answers_pilots_names_from_the_proxys_own_stream(world: Mesh) -> None:
    async with PilotAgent(agent_options(world)) as agent:
        assert agent.dns is not None and agent.readiness_server is not None
        where = agent.dns.address
        ready = f"http://127.0.0.1:{agent.readiness_server.port}/healthz/ready"
        async with envoy_like(agent) as proxy, httpx.AsyncClient(trust_env=False) as http:
            proxy.subscribe(CLUSTER)
            proxy.subscribe(LISTENER)
            await proxy.wait_for(LISTENER, [])
            await eventually(lambda: nds_status(world.pilot).get("acked_version"))
            assert len(world.pilot.proxies()) == 1  # one upstream stream: the proxy's
            for name in (
                "reviews.",
                "reviews.bookinfo.svc.",
                "reviews.bookinfo.svc.cluster.local.",
            ):
                assert addresses(await ask(where, name)) == ["10.96.0.10"], name
            assert addresses(await ask(where, "api.example.com.", tcp=True)) == ["192.0.2.10"]
            assert proxy.resources(NAME_TABLE) == {}  # the agent's, never forwarded
            assert world.upstream.seen == []
            # readiness is the proxy's config as before, whatever DNS does
            await eventually(
                lambda: agent.xds_proxy and agent.xds_proxy.config_status.first_config_received
            )
            assert (await http.get(ready)).status_code == 200

            # a config change in Pilot changes the answer
            acked = nds_status(world.pilot)["acked_version"]
            request = world.generator.apply(mesh(API_MOVED))
            assert request is not None
            world.pilot.push(request)
            await eventually(lambda: nds_status(world.pilot).get("acked_version") != acked)
            assert addresses(await ask(where, "api.example.com.")) == ["192.0.2.99"]

            # names Pilot does not know go upstream, answers relayed
            answer = await ask(where, "www.upstream.test.")
            assert addresses(answer) == ["192.0.2.53"]
            assert world.upstream.seen == ["www.upstream.test."]
            assert proxy.resources(NAME_TABLE) == {}


async def test_without_an_xds_proxy_the_dns_proxy_follows_pilot_itself(world: Mesh) -> None:
    async with PilotAgent(agent_options(world, xds_proxy=False)) as agent:
        assert agent.xds_proxy is None and agent.dns is not None
        await agent.dns.proxy.wait_ready()
        assert addresses(await ask(agent.dns.address, "reviews.")) == ["10.96.0.10"]
        assert world.pilot.proxies()[0].proxy_id.startswith("sidecar~10.1.0.1~app.bookinfo")


def table(ip: str) -> bytes:
    info = NameTableNameInfo(ips=[ip], registry="External")
    return bytes(NameTable(table={"api.example.com": info}))


@pytest.mark.parametrize(
    "bad",
    [b"\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x0a" * 100_000],
    ids=["garbage", "length past the end", "100 kB of field headers"],
)
async def test_a_name_table_that_does_not_decode_is_nacked_and_the_last_one_kept(
    bad: bytes,
) -> None:
    dns = AgentDns(DnsOptions(port=0, upstream=[], search=[]))
    await dns.start()
    try:
        assert await dns.on_name_table(table("192.0.2.1")) is None
        problem = await dns.on_name_table(bad)
        assert problem is not None and problem.startswith("name table refused: "), problem
        assert len(problem) < 300
        assert addresses(await ask(dns.address, "api.example.com.")) == ["192.0.2.1"]
        assert (dns.tables, dns.rejected) == (1, 1)
    finally:
        await dns.stop()


def test_bad_dns_settings_are_agent_config_errors() -> None:
    with pytest.raises(AgentConfigError, match="needs a Pilot address"):
        PilotAgent(PilotAgentOptions(status_port=0, dns=DnsOptions()))
    with pytest.raises(AgentConfigError, match="DNS: upstream 'nope'"):
        AgentDns(DnsOptions(upstream=["nope"], search=[]))
    with pytest.raises(AgentConfigError, match=r"DNS: .*resolv"):
        AgentDns(DnsOptions(resolv_conf="/nonexistent/resolv.conf"))


def test_dns_capture_comes_from_pilot_agents_environment() -> None:
    assert DnsOptions.from_env({}) is None
    assert DnsOptions.from_env({"ISTIO_META_DNS_CAPTURE": "false"}) is None
    options = DnsOptions.from_env({"ISTIO_META_DNS_CAPTURE": "true", "POD_NAMESPACE": "bookinfo"})
    assert options is not None
    assert (options.port, options.dns_domain) == (15053, "bookinfo.svc.cluster.local")


async def test_the_agent_command_runs_the_dns_proxy(world: Mesh) -> None:
    process = await start_agent(
        "--status-port=0",
        "--status-host=127.0.0.1",
        f"--pilot-address=127.0.0.1:{world.pilot.port}",
        "--xds-port=0",
        "--dns-port=0",
        f"--dns-upstream={world.upstream_address}",
        env={"POD_NAMESPACE": "bookinfo", "ISTIO_META_DNS_CAPTURE": ""},
    )
    try:
        line = await banner(process)
        dns_match = re.search(r"DNS proxy on 127\.0\.0\.1:(\d+)", line)
        xds_match = re.search(r"xDS proxy on 127\.0\.0\.1:(\d+)", line)
        assert dns_match and xds_match, line
        where = ("127.0.0.1", int(dns_match.group(1)))
        channel = create_channel("127.0.0.1", int(xds_match.group(1)))
        node = dns_node("10.1.0.1", "app", "bookinfo")
        async with PilotClient("127.0.0.1:1", channel=channel, node=node) as proxy:
            proxy.subscribe(LISTENER)
            await proxy.wait_for(LISTENER, [])
            await eventually(lambda: nds_status(world.pilot).get("acked_version"))
            assert addresses(await ask(where, "reviews.")) == ["10.96.0.10"]
            assert addresses(await ask(where, "mail.upstream.test.")) == ["192.0.2.53"]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_an_async_handler_that_raises_nacks_and_the_stream_goes_on(
    tmp_path: pathlib.Path,
) -> None:
    generator = StaticGenerator([cluster("a"), Listener(name="l1"), Secret(name="names")])
    server = await start_pilot(generator)
    seen: list[str] = []

    async def handle(value: bytes) -> str | None:
        await asyncio.sleep(0)
        seen.append(Secret.FromString(value).name)
        if len(seen) > 1:
            raise RuntimeError("boom\nsecond line")
        return None

    proxy = XdsProxy("127.0.0.1", server.port, handlers={SECRET: handle})
    await proxy.start(path=str(tmp_path / "XDS"))
    try:
        async with client_over(proxy) as client:
            client.subscribe(CLUSTER)
            client.subscribe(LISTENER)
            await client.wait_for(LISTENER, ["l1"])
            await eventually(lambda: server.proxies()[0].types[SECRET].get("acked_version"))
            server.push(generator.set(Secret(name="other"), cluster("b")))
            await eventually(lambda: server.proxies()[0].types[SECRET].get("nack_reason"))
            reason = server.proxies()[0].types[SECRET]["nack_reason"]
            assert reason.startswith("agent handler failed: ") and "\n" not in reason, reason
            await client.wait_for(CLUSTER, ["b"])  # the same stream still relays pushes
            assert client.resources(SECRET) == {}
            assert proxy.upstream_connects == 1
    finally:
        await proxy.close()
        await server.stop()
