"""Leader election over a Lease, and status written by server-side apply only by the leader."""

from __future__ import annotations

import asyncio
from typing import Any

from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.config.models import Cluster, User
from support.kube import source_for, until, vs

from istio_sdk.config import ConfigStore, LeaderElector, StatusWriter
from istio_sdk.testing.kube_api import KubeApiServer

FAST: dict[str, float] = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.05}


def elector(api: KubeApiServer, identity: str, **kwargs: Any) -> LeaderElector:
    config = KubeConfig.from_one(cluster=Cluster(server=api.url), user=User())
    client = AsyncClient(config=config, trust_env=False)
    return LeaderElector(
        client,
        name="istio-leader",
        namespace="istio-system",
        identity=identity,
        **{**FAST, **kwargs},
    )


def lease(api: KubeApiServer) -> dict[str, Any]:
    found = api.get("coordination.k8s.io/v1", "Lease", "istio-leader", "istio-system")
    assert found is not None
    spec: dict[str, Any] = found["spec"]
    return spec


class NeverBoth:
    """Samples two electors every few milliseconds and remembers whether both ever led."""

    def __init__(self, a: LeaderElector, b: LeaderElector) -> None:
        self.a, self.b, self.both = a, b, False
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.both = self.both or (self.a.is_leader and self.b.is_leader)
            await asyncio.sleep(0.002)

    async def stop(self) -> bool:
        self.task.cancel()
        return not self.both


async def test_one_of_two_leads_and_a_killed_leader_is_replaced(api: KubeApiServer) -> None:
    a, b = elector(api, "pilot-a"), elector(api, "pilot-b")
    await a.start()
    await until(lambda: a.is_leader)
    await b.start()
    watch = NeverBoth(a, b)
    await asyncio.sleep(0.3)  # b tries several times against a live lease
    assert not b.is_leader
    first = lease(api)
    assert first["holderIdentity"] == "pilot-a" and first["leaseTransitions"] == 0
    assert first["leaseDurationSeconds"] == 1
    await a.stop(release=False)  # killed: the lease is left to expire
    await until(lambda: b.is_leader)
    assert lease(api)["holderIdentity"] == "pilot-b"
    assert lease(api)["leaseTransitions"] == 1
    assert await watch.stop()
    await b.stop()


async def test_the_leader_renews_and_releases_on_stop(api: KubeApiServer) -> None:
    a, b = (
        elector(api, "pilot-a"),
        elector(api, "pilot-b", lease_duration=30.0, renew_deadline=20.0),
    )
    await a.start()
    await until(lambda: a.is_leader)
    renewed = lease(api)["renewTime"]
    await until(lambda: lease(api)["renewTime"] != renewed)  # renewed while leading
    await b.start()
    await a.stop()  # release: b need not wait for the lease to expire
    assert lease(api)["holderIdentity"] == ""
    await until(lambda: b.is_leader, timeout=5)
    assert lease(api)["holderIdentity"] == "pilot-b"
    await b.stop()


async def test_a_race_for_an_expired_lease_has_one_winner(api: KubeApiServer) -> None:
    a, b = elector(api, "pilot-a"), elector(api, "pilot-b")
    assert await a.try_acquire_or_renew()
    api.put(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "istio-leader", "namespace": "istio-system"},
            "spec": {"holderIdentity": "", "leaseDurationSeconds": 1, "leaseTransitions": 3},
        }
    )
    won = await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew())
    assert sorted(won) == [False, True]
    assert lease(api)["leaseTransitions"] == 4


async def test_a_leader_that_cannot_renew_steps_down(api: KubeApiServer) -> None:
    a = elector(api, "pilot-a")
    await a.start()
    await until(lambda: a.is_leader)
    api.fail_next(1000, path="leases")
    await until(lambda: not a.is_leader)  # renew_deadline passed without a renewal
    await a.stop()


async def test_status_is_written_by_server_side_apply(api: KubeApiServer) -> None:
    bad = vs("bad", "reviews")
    bad["spec"]["http"][0]["route"][0]["destination"] = {}
    api.create(bad)
    api.create(vs("good", "reviews"))
    store = ConfigStore()
    async with source_for(store, api.url) as source:
        writer = StatusWriter(source)
        await writer.start()

        def status(name: str) -> dict[str, Any]:
            found = api.get("networking.istio.io/v1", "VirtualService", name, "shop")
            assert found is not None
            value: dict[str, Any] = found.get("status", {})
            return value

        await until(lambda: status("bad").get("validationMessages"))
        assert status("bad")["validationMessages"] == [
            {
                "type": {"name": "SchemaValidationError", "code": "IST0106"},
                "level": "ERROR",
                "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0106/",
            }
        ]
        assert status("bad")["observedGeneration"] == "1"
        await until(lambda: status("good").get("observedGeneration") == "1")
        assert "validationMessages" not in status("good")
        managers = api.get("networking.istio.io/v1", "VirtualService", "good", "shop")
        assert managers is not None
        assert [m["manager"] for m in managers["metadata"]["managedFields"]] == ["istio-sdk"]
        api.put(vs("bad", "reviews"))  # fixed: generation 2, no message
        await until(lambda: status("bad").get("observedGeneration") == "2")
        assert "validationMessages" not in status("bad")
        await asyncio.sleep(0.2)  # our own status changes come back as events
        assert writer.writes == 3  # ... and write nothing more: bad, good, bad once fixed
        await writer.stop()


async def test_two_replicas_never_both_write(api: KubeApiServer) -> None:
    api.create(vs("a", "reviews"))
    replicas = []
    for name in ("pilot-a", "pilot-b"):
        source = source_for(ConfigStore(), api.url)
        chosen = elector(api, name)
        writer = StatusWriter(source, elector=chosen, field_manager=name)
        await source.start()
        await writer.start()
        await chosen.start()
        if name == "pilot-a":
            await until(lambda e=chosen: e.is_leader)  # type: ignore[misc]
        replicas.append((source, chosen, writer))
    (source_a, elector_a, writer_a), (source_b, elector_b, writer_b) = replicas
    watch = NeverBoth(elector_a, elector_b)

    def managers() -> list[str]:
        found = api.get("networking.istio.io/v1", "VirtualService", "a", "shop")
        assert found is not None
        return [m["manager"] for m in found["metadata"].get("managedFields", [])]

    await until(lambda: managers() == ["pilot-a"])
    api.put(vs("a", "details"))
    await until(lambda: writer_a.writes == 2)  # generation 2 written by the leader
    await writer_a.stop()  # the leader's writer stalls: a change stays unwritten
    api.put(vs("a", "ratings"))
    await until(lambda: source_b.observed[("VirtualService", "shop", "a")].generation == 3)
    await asyncio.sleep(0.2)
    assert writer_b.writes == 0  # b sees the change and, not leading, writes nothing
    assert not [r for r in api.requests if r.query.get("fieldManager") == "pilot-b"]
    await elector_a.stop(release=False)  # the leader dies
    await source_a.aclose()
    await until(lambda: elector_b.is_leader)
    await until(lambda: managers() == ["pilot-b"])  # the new leader wrote generation 3
    assert writer_a.writes == 2
    assert await watch.stop()
    await elector_b.stop()
    await writer_b.stop()
    await source_b.aclose()
