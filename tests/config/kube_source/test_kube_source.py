"""KubernetesSource against the test API server: follows, resumes, relists, survives faults."""

from __future__ import annotations

import json
import logging
import os
import pathlib

import pytest
from support.kube import hosts, service, slice_for, source_for, until, vs

from istio_sdk.config import (
    ConfigError,
    ConfigStore,
    DirectorySource,
    KubeConfigError,
    KubernetesSource,
    kind_for,
)
from istio_sdk.pilot.push_context import PushContext
from istio_sdk.testing.kube_api import KubeApiServer


def watches(api: KubeApiServer, plural: str) -> list[dict[str, str]]:
    return [r.query for r in api.requests if r.watch and r.path.endswith("/" + plural)]


def lists(api: KubeApiServer, plural: str) -> int:
    return sum(1 for r in api.requests if not r.watch and r.path.endswith("/" + plural))


async def test_lists_then_follows_creates_updates_and_deletes(api: KubeApiServer) -> None:
    api.create(vs("a", "reviews"))
    store = ConfigStore()
    async with source_for(store, api.url) as source:
        assert hosts(store, "a") == ["reviews"]
        api.create(vs("b", "ratings"))
        await until(lambda: hosts(store, "b") == ["ratings"])
        api.put(vs("a", "details"))
        await until(lambda: hosts(store, "a") == ["details"])
        api.delete("networking.istio.io/v1", "VirtualService", "b", "shop")
        await until(lambda: store.get("VirtualService", "b", "shop") is None)
        assert source.errors == {}
        assert lists(api, "virtualservices") == 1  # one list, then only the watch


async def test_a_broken_watch_resumes_from_the_last_resource_version(api: KubeApiServer) -> None:
    store = ConfigStore()
    async with source_for(store, api.url) as source:
        api.create(vs("a", "reviews"))
        await until(lambda: hosts(store, "a") is not None)
        seen = source.resource_versions["VirtualService"]
        await until(lambda: api.open_watches == 5)
        assert api.break_watches() == 5
        api.create(vs("b", "ratings"))  # made while no watch is open
        await until(lambda: hosts(store, "b") == ["ratings"])
        assert watches(api, "virtualservices")[-1]["resourceVersion"] == seen
        assert lists(api, "virtualservices") == 1  # resumed, not listed again


async def test_bookmarks_move_the_resume_point(api: KubeApiServer) -> None:
    store = ConfigStore()
    async with source_for(store, api.url) as source:
        await until(lambda: api.open_watches == 5)
        assert all(w["allowWatchBookmarks"] == "true" for w in watches(api, "virtualservices"))
        api.create(service("reviews"))  # the cluster's version moves on; no VirtualService changed
        api.send_bookmarks()
        now = str(api.state.revision)
        await until(lambda: source.resource_versions["VirtualService"] == now)
        api.break_watches()
        await until(lambda: len(watches(api, "virtualservices")) == 2)
        assert watches(api, "virtualservices")[-1]["resourceVersion"] == now


async def test_410_gone_lists_again_and_drops_what_was_deleted_meanwhile(
    api: KubeApiServer,
) -> None:
    api.create(vs("a", "reviews"))
    api.create(vs("b", "ratings"))
    store = ConfigStore()
    async with source_for(store, api.url) as source:
        assert hosts(store, "b") == ["ratings"]
        await until(lambda: api.open_watches == 5)
        api.delete("networking.istio.io/v1", "VirtualService", "b", "shop")
        api.compact()  # the deletion is no longer in any history
        api.break_watches()
        await until(lambda: source.relists >= 1)
        await until(lambda: store.get("VirtualService", "b", "shop") is None)
        assert hosts(store, "a") == ["reviews"]
        assert lists(api, "virtualservices") >= 2


async def test_500s_are_reported_and_retried(api: KubeApiServer) -> None:
    api.create(vs("a", "reviews"))
    api.fail_next(3, path="virtualservices")
    store = ConfigStore()
    problems: list[str] = []
    async with source_for(store, api.url, on_error=lambda name, p: problems.append(name)):
        await until(lambda: hosts(store, "a") == ["reviews"])
        assert any("VirtualService" in name for name in problems)
        assert lists(api, "virtualservices") >= 2


async def test_survives_an_api_server_restart(api: KubeApiServer) -> None:
    api.create(vs("a", "reviews"))
    store = ConfigStore()
    async with source_for(store, api.url) as source:
        await until(lambda: api.open_watches == 5)
        await api.restart()
        api.put(vs("a", "details"))
        await until(lambda: hosts(store, "a") == ["details"])
        await until(lambda: source.errors == {})


async def test_a_malformed_event_is_reported_and_the_watch_goes_on(
    api: KubeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    api.create(vs("a", "reviews"))
    store = ConfigStore()
    async with source_for(store, api.url) as source:
        await until(lambda: api.open_watches == 5)
        before = store.revision
        deep = b'{"type":"ADDED","object":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        with caplog.at_level(logging.WARNING, "istio_sdk.config"):
            api.send_raw(b'{"type": "ADDED", "object": ')
            await until(
                lambda: any("malformed" in str(p) for v in source.errors.values() for p in v)
            )
            await until(lambda: api.open_watches == 5)
            api.send_raw(deep)
            await until(lambda: api.open_watches == 5)
            api.send_raw(json.dumps({"type": "MODIFIED", "object": {"metadata": {}}}).encode())
            await until(lambda: api.open_watches == 5)
            api.send_raw(b'{"type":"ADDED","object":{"metadata":{"resourceVersion":"9"},"x":NaN}}')
            await until(lambda: api.open_watches == 5)
            api.send_raw(b"\xff\xfe garbage \x00")
        assert "malformed watch event" in caplog.text
        assert store.revision == before and hosts(store, "a") == ["reviews"]
        api.put(vs("a", "details"))
        await until(lambda: hosts(store, "a") == ["details"])
        huge = vs("a", "details", annotations={"big": "x" * 2**20})
        huge["spec"]["http"][0]["timeout"] = "1" + "0" * 5000 + "s"
        api.put(huge)  # a 1 MB annotation and a 5,000-digit duration: reported, not fatal
        await until(lambda: "VirtualService shop/a" in source.errors)
        assert hosts(store, "a") == ["details"]


async def test_an_invalid_object_keeps_the_last_good_version(api: KubeApiServer) -> None:
    api.create(vs("a", "reviews"))
    store = ConfigStore()
    reported: dict[str, list[str]] = {}
    on_error = lambda name, problems: reported.__setitem__(name, [str(p) for p in problems])  # noqa: E731
    async with source_for(store, api.url, on_error=on_error) as source:
        bad = vs("a", "reviews")
        bad["spec"]["http"][0]["route"][0]["weight"] = "heavy"
        api.put(bad)
        await until(lambda: "VirtualService shop/a" in source.errors)
        assert hosts(store, "a") == ["reviews"]
        assert "weight" in reported["VirtualService shop/a"][0]
        api.create(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": "new", "namespace": "shop"},
                "spec": {"hosts": ["a"], "http": [{"route": [{"destination": {}}]}]},
            }
        )
        await until(lambda: "VirtualService shop/new" in source.errors)
        assert "destination.host" in reported["VirtualService shop/new"][0]
        assert store.get("VirtualService", "new", "shop") is None
        api.put(vs("a", "details"))
        await until(lambda: hosts(store, "a") == ["details"])
        assert "VirtualService shop/a" not in source.errors


async def test_strict_start_refuses_an_invalid_object(api: KubeApiServer) -> None:
    bad = vs("a", "reviews")
    bad["spec"]["hosts"] = [7]
    api.create(bad)
    source = source_for(ConfigStore(), api.url)
    with pytest.raises(ConfigError, match="hosts"):
        await source.start(strict=True)
    await source.aclose()


async def test_namespace_filter_and_label_selector(api: KubeApiServer) -> None:
    api.create(vs("a", "reviews", labels={"team": "x"}))
    api.create(vs("b", "ratings", labels={"team": "y"}))
    api.create(vs("c", "details", namespace="other", labels={"team": "x"}))
    store = ConfigStore()
    async with source_for(store, api.url, namespace="shop", label_selector="team=x"):
        assert [r.key for r in store.list()] == [("VirtualService", "shop", "a")]
        api.put(vs("b", "ratings", labels={"team": "x"}))  # starts matching
        await until(lambda: hosts(store, "b") == ["ratings"])
        api.put(vs("a", "reviews", labels={"team": "z"}))  # stops matching: gone
        await until(lambda: store.get("VirtualService", "a", "shop") is None)
        api.create(vs("d", "d", namespace="other", labels={"team": "x"}))
        api.create(vs("e", "e", labels={"team": "x"}))
        await until(lambda: hosts(store, "e") == ["e"])
        assert store.get("VirtualService", "d", "other") is None


async def test_a_directory_and_the_api_feed_one_store(
    api: KubeApiServer, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "a.json").write_text(json.dumps(vs("a", "from-file")))
    api.create(vs("a", "from-api"))
    api.create(vs("b", "only-api"))
    store = ConfigStore()
    folder = DirectorySource(store, tmp_path, watch=False)
    await folder.refresh()
    async with source_for(store, api.url) as source:
        assert hosts(store, "a") == ["from-file"]  # the folder held it first
        assert hosts(store, "b") == ["only-api"]
        assert "another source" in str(source.errors["VirtualService shop/a"][0])
        api.delete("networking.istio.io/v1", "VirtualService", "a", "shop")
        await until(lambda: "VirtualService shop/a" not in source.errors)
        assert hosts(store, "a") == ["from-file"]  # not the API's to delete
        api.create(vs("a", "from-api"))
        await until(lambda: "VirtualService shop/a" in source.errors)  # held by the folder
        assert hosts(store, "a") == ["from-file"]
        (tmp_path / "a.json").unlink()
        await folder.refresh()
        await until(lambda: hosts(store, "a") == ["from-api"])


async def test_an_endpoint_slice_without_service_and_a_pod_without_ip(
    api: KubeApiServer,
) -> None:
    api.create(service("reviews"))
    api.create(slice_for("reviews", ["10.0.0.1"]))
    store = ConfigStore()
    async with source_for(store, api.url):
        api.create(slice_for("ghost", ["10.0.0.9"]))
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "reviews-1", "namespace": "shop", "labels": {"app": "x"}},
                "spec": {"containers": [{"name": "app", "image": "app"}]},
                "status": {"phase": "Pending"},
            }
        )
        await until(lambda: len(store.list("Pod")) == 1 and len(store.list("EndpointSlice")) == 2)
        context = PushContext.build(store.list())
        endpoints = {host: [e.address for e in eps] for (_, host), eps in context.endpoints.items()}
        assert endpoints["reviews.shop.svc.cluster.local"] == ["10.0.0.1"]
        assert any("ghost" in problem for problem in context.errors)


async def test_kubeconfig_with_tls_and_a_token(tmp_path: pathlib.Path) -> None:
    async with KubeApiServer(tls=True, token="s3cret") as api:
        api.create(vs("a", "reviews"))
        api.write_kubeconfig(tmp_path / "config")
        store = ConfigStore()
        async with KubernetesSource(
            store, kubeconfig=tmp_path / "config", kinds=[kind_for("VirtualService")]
        ):
            assert hosts(store, "a") == ["reviews"]
        api.token = "rotated"
        denied = KubernetesSource(
            ConfigStore(), kubeconfig=tmp_path / "config", kinds=[kind_for("VirtualService")]
        )
        with pytest.raises(ConfigError, match="401"):
            await denied.start(strict=True)
        await denied.aclose()


async def test_in_cluster_credentials(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with KubeApiServer(tls=True, token="pod-token") as api:
        api.create(vs("a", "reviews"))
        assert api.ca_pem is not None
        (tmp_path / "token").write_text("pod-token\n")
        (tmp_path / "ca.crt").write_bytes(api.ca_pem)
        (tmp_path / "namespace").write_text("shop")
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
            KubernetesSource(ConfigStore(), in_cluster=True)
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
        from istio_sdk.config import _kube_client

        monkeypatch.setattr(_kube_client, "SERVICE_ACCOUNT", os.fspath(tmp_path))
        store = ConfigStore()
        async with KubernetesSource(store, in_cluster=True, kinds=[kind_for("VirtualService")]):
            assert hosts(store, "a") == ["reviews"]


def test_a_missing_kubeconfig_is_a_typed_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(KubeConfigError, match="no such file"):
        KubernetesSource(ConfigStore(), kubeconfig=tmp_path / "nope")
    (tmp_path / "garbage").write_text("clusters: 7\n")
    with pytest.raises(KubeConfigError, match="garbage"):
        KubernetesSource(ConfigStore(), kubeconfig=tmp_path / "garbage")


async def test_an_object_with_only_istio_warnings_enters_the_store(api: KubeApiServer) -> None:
    # Istio warns about every EnvoyFilter; a warning must not keep the object out.
    api.create(
        {
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "EnvoyFilter",
            "metadata": {"name": "ef", "namespace": "shop"},
            "spec": {
                "configPatches": [
                    {
                        "applyTo": "CLUSTER",
                        "patch": {"operation": "MERGE", "value": {"connect_timeout": "1s"}},
                    }
                ]
            },
        }
    )
    store = ConfigStore()
    kinds = (kind_for("EnvoyFilter"),)
    async with source_for(store, api.url, kinds=kinds) as source:
        await until(lambda: store.get("EnvoyFilter", "ef", "shop") is not None)
        assert source.errors == {}
