"""ConfigStore: keys, revisions, generations, watchers and callbacks."""

from __future__ import annotations

import asyncio

import attrs
import pytest

from istio_sdk.api.istio.networking.v1alpha3 import Gateway, Server, VirtualService
from istio_sdk.config import (
    ConfigStore,
    Event,
    EventType,
    NotFoundError,
    Resource,
    WatchOverflowError,
)


def vs(name: str, host: str = "reviews", namespace: str = "shop") -> Resource:
    return Resource.new(VirtualService(hosts=[host]), name=name, namespace=namespace)


def gw(name: str, namespace: str = "shop") -> Resource:
    return Resource.new(Gateway(selector={"istio": "ingress"}), name=name, namespace=namespace)


def test_apply_get_list_delete_and_revisions() -> None:
    store = ConfigStore()
    assert store.revision == 0
    stored = store.apply(vs("a"))
    assert store.revision == 1
    assert stored.metadata.resource_version == "1"
    assert stored.metadata.generation == 1
    assert store.get("VirtualService", "a", "shop") == stored
    assert store.get("VirtualService", "a", "other") is None
    store.apply(gw("g"))
    store.apply(vs("b", namespace="other"))
    assert store.revision == 3
    assert [r.name for r in store.list()] == ["g", "b", "a"]  # by kind, namespace, name
    assert [r.name for r in store.list("VirtualService")] == ["b", "a"]
    assert [r.name for r in store.list(namespace="shop")] == ["g", "a"]
    removed = store.delete("VirtualService", "a", "shop")
    assert removed.name == "a"
    assert store.revision == 4
    assert len(store) == 2
    with pytest.raises(NotFoundError, match="VirtualService shop/a"):
        store.delete("VirtualService", "a", "shop")


def test_unchanged_apply_is_a_no_op_and_generation_follows_spec() -> None:
    store = ConfigStore()
    first = store.apply(vs("a"))
    again = store.apply(vs("a"))
    assert again is first
    assert store.revision == 1
    relabeled = store.apply(
        attrs.evolve(vs("a"), metadata=attrs.evolve(first.metadata, labels={"x": "y"}))
    )
    assert store.revision == 2
    assert relabeled.metadata.generation == 1  # metadata-only change
    changed = store.apply(vs("a", host="ratings"))
    assert changed.metadata.generation == 2
    assert changed.metadata.resource_version == "3"


def test_store_requires_a_name() -> None:
    with pytest.raises(ValueError, match=r"metadata\.name"):
        ConfigStore().apply(vs(""))


async def test_watch_replays_then_streams_events() -> None:
    store = ConfigStore([vs("a")])
    watch = store.watch()
    store.apply(vs("a", host="ratings"))
    store.delete("VirtualService", "a", "shop")
    events = [await watch.next() for _ in range(3)]
    assert [(e.type, e.revision) for e in events] == [
        (EventType.ADDED, 1),
        (EventType.MODIFIED, 2),
        (EventType.DELETED, 3),
    ]
    assert events[1].resource.spec == VirtualService(hosts=["ratings"])
    watch.close()
    with pytest.raises(StopAsyncIteration):
        await watch.next()


async def test_watch_filters_by_kind_and_namespace_and_wakes_a_waiting_reader() -> None:
    store = ConfigStore()
    watch = store.watch(kinds=["Gateway"], namespace="shop", replay=False)
    reader = asyncio.create_task(watch.next())
    await asyncio.sleep(0)
    store.apply(vs("ignored"))
    store.apply(gw("g", namespace="other"))
    store.apply(gw("g"))
    event = await asyncio.wait_for(reader, timeout=5)
    assert event.resource.key == ("Gateway", "shop", "g")
    assert watch.pending == 0


async def test_async_for_ends_when_closed() -> None:
    store = ConfigStore([vs("a"), vs("b")])
    seen = []
    async with store.watch() as watch:
        async for event in watch:
            seen.append(event.resource.name)
            if len(seen) == 2:
                watch.close()
    assert seen == ["a", "b"]
    assert watch.closed


async def test_slow_watcher_is_cut_off_without_blocking_writers() -> None:
    store = ConfigStore(watch_queue=3)
    slow = store.watch(replay=False)
    fast = store.watch(replay=False, max_queue=100)
    for i in range(10):  # never awaits: writers do not wait for watchers
        store.apply(vs(f"r{i}"))
    assert store.revision == 10
    with pytest.raises(WatchOverflowError, match="list the store again"):
        await slow.next()
    assert slow.closed
    assert fast.pending == 10


async def test_replayed_snapshot_does_not_count_against_the_bound() -> None:
    store = ConfigStore([vs(f"r{i}") for i in range(5)], watch_queue=2)
    watch = store.watch()
    store.apply(vs("late"))
    names = [(await watch.next()).resource.name for _ in range(6)]
    assert names == ["r0", "r1", "r2", "r3", "r4", "late"]


def test_callbacks_run_per_change_and_failures_are_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ConfigStore()
    got: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    store.subscribe(broken)
    unsubscribe = store.subscribe(got.append)
    store.apply(vs("a"))
    unsubscribe()
    store.apply(vs("b"))
    assert [(e.type, e.resource.name) for e in got] == [(EventType.ADDED, "a")]
    assert store.revision == 2
    assert "callback" in caplog.text


def test_new_picks_kind_and_storage_version_from_the_spec() -> None:
    r = vs("a")
    assert r.api_version == "networking.istio.io/v1"
    assert r.kind == "VirtualService"
    with pytest.raises(ValueError, match="cannot tell the kind"):
        Resource.new(Server(), name="s")
