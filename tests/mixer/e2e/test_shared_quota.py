"""End to end: two MixerServer replicas share one rate limit through one real Redis.

Each replica is a MixerServer over its own ConfigStore loaded from the same YAML (a
``redisquota`` handler with a fixed-window and a rolling-window quota); two proxy-shaped
clients, one per replica, charge the quotas alternately. The clients run with the quota cache
off, so each Check charges exactly its amount and the counts below are Redis's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import redis
from grpclib.const import Status
from support.mixer_e2e import inbound
from support.redis_server import RedisServer

from istio_sdk import MixerClient
from istio_sdk.config import ConfigStore, load_resources
from istio_sdk.mixer import MixerServer

SHARED = """
apiVersion: config.istio.io/v1alpha2
kind: redisquota
metadata: {name: shared, namespace: istio-system}
spec:
  redisServerUrl: REDIS
  connectionPoolSize: 4
  quotas:
  - name: fixedcount.quota.istio-system
    maxAmount: 4
    validDuration: 60s
    rateLimitAlgorithm: FIXED_WINDOW
  - name: rollingcount.quota.istio-system
    maxAmount: 3
    validDuration: 60s
    bucketDuration: 1s
    rateLimitAlgorithm: ROLLING_WINDOW
    overrides:
    - dimensions: {destination: details}
      maxAmount: 1
---
apiVersion: config.istio.io/v1alpha2
kind: quota
metadata: {name: fixedcount, namespace: istio-system}
spec:
  dimensions:
    destination: destination.service.name | "unknown"
---
apiVersion: config.istio.io/v1alpha2
kind: quota
metadata: {name: rollingcount, namespace: istio-system}
spec:
  dimensions:
    destination: destination.service.name | "unknown"
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: quota, namespace: istio-system}
spec:
  actions:
  - handler: shared.redisquota
    instances: [fixedcount.quota, rollingcount.quota]
"""


@contextlib.asynccontextmanager
async def _replicas(redis_url: str) -> AsyncIterator[tuple[MixerClient, MixerClient]]:
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            store = ConfigStore()
            for resource in load_resources(SHARED.replace("REDIS", redis_url)):
                store.apply(resource)
            server = MixerServer(store)
            await server.start("127.0.0.1", 0)
            stack.push_async_callback(server.stop)
            assert server.problems == ()
            client = MixerClient("127.0.0.1", server.port, quota_cache_entries=0)
            clients.append(await stack.enter_async_context(client))
        yield clients[0], clients[1]


async def _alternate(
    clients: tuple[MixerClient, MixerClient], quota: str, destination: str, calls: int
) -> list[Status]:
    codes = []
    for number in range(calls):
        result = await clients[number % 2].check(inbound(destination), quotas={quota: 1})
        codes.append(result.code)
    return codes


async def test_two_replicas_share_a_fixed_window(redis_server: RedisServer) -> None:
    redis.Redis(port=redis_server.port).flushall()
    async with _replicas(redis_server.url) as clients:
        codes = await _alternate(clients, "fixedcount", "reviews", 7)
        assert codes == [Status.OK] * 4 + [Status.RESOURCE_EXHAUSTED] * 3
        # one limit per destination (the key carries the dimensions)
        assert await _alternate(clients, "fixedcount", "ratings", 1) == [Status.OK]


async def test_two_replicas_share_a_rolling_window_and_its_override(
    redis_server: RedisServer,
) -> None:
    redis.Redis(port=redis_server.port).flushall()
    async with _replicas(redis_server.url) as clients:
        codes = await _alternate(clients, "rollingcount", "reviews", 5)
        assert codes == [Status.OK] * 3 + [Status.RESOURCE_EXHAUSTED] * 2
        details = await _alternate(clients, "rollingcount", "details", 3)
        assert details == [Status.OK] + [Status.RESOURCE_EXHAUSTED] * 2
        keys = {key.decode() for key in redis.Redis(port=redis_server.port).keys("*")}
        assert any(key.startswith("rollingcount.quota.istio-system;") for key in keys), keys
