"""The test Kubernetes API server answers as the Kubernetes API documents it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support.kube import vs

from istio_sdk.testing.kube_api import KubeApiServer

VS = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices"
APPLY = {"Content-Type": "application/apply-patch+yaml"}


@pytest.fixture
async def http(api: KubeApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api.url) as client:
        yield client


async def watch_lines(
    http: httpx.AsyncClient, path: str, count: int, **params: str
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with http.stream("GET", path, params={"watch": "1", **params}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            out.append(json.loads(line))
            if len(out) == count:
                break
    return out


async def test_list_pages_and_an_expired_continue_token_is_410(
    api: KubeApiServer, http: httpx.AsyncClient
) -> None:
    for name in "abc":
        api.create(vs(name, name))
    first = (await http.get(VS, params={"limit": "2"})).json()
    assert [o["metadata"]["name"] for o in first["items"]] == ["a", "b"]
    token = first["metadata"]["continue"]
    rest = (await http.get(VS, params={"limit": "2", "continue": token})).json()
    assert [o["metadata"]["name"] for o in rest["items"]] == ["c"]
    assert "continue" not in rest["metadata"]
    api.create(vs("d", "d"))
    api.compact()  # the version the token lists at is gone from storage
    gone = await http.get(VS, params={"limit": "2", "continue": token})
    assert gone.status_code == 410
    assert gone.json()["reason"] == "Expired" and gone.json()["kind"] == "Status"


async def test_watch_resumes_and_a_too_old_version_is_an_error_event(
    api: KubeApiServer, http: httpx.AsyncClient
) -> None:
    start = (await http.get(VS)).json()["metadata"]["resourceVersion"]
    api.create(vs("a", "a"))
    api.delete("networking.istio.io/v1", "VirtualService", "a", "shop")
    events = await watch_lines(http, VS, 2, resourceVersion=start)
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(
        events[0]["object"]["metadata"]["resourceVersion"]
    )
    api.compact()
    (error,) = await watch_lines(http, VS, 1, resourceVersion=start)
    assert error["type"] == "ERROR" and error["object"]["code"] == 410


async def test_a_label_selector_watch_sees_objects_enter_and_leave(
    api: KubeApiServer, http: httpx.AsyncClient
) -> None:
    start = (await http.get(VS)).json()["metadata"]["resourceVersion"]
    api.create(vs("a", "a", labels={"app": "x"}))
    api.put(vs("a", "a", labels={"app": "y"}))
    api.put(vs("a", "a", labels={"app": "x", "v": "1"}))
    api.put(vs("a", "a", labels={"app": "z", "canary": ""}))
    events = await watch_lines(
        http, VS, 4, resourceVersion=start, labelSelector="app in (x, z),!canary"
    )
    assert [e["type"] for e in events] == ["ADDED", "DELETED", "ADDED", "DELETED"]
    bad = await http.get(VS, params={"labelSelector": "app=(x"})
    assert bad.status_code == 400


async def test_bookmarks_only_when_allowed_and_timeout_ends_the_watch(
    api: KubeApiServer, http: httpx.AsyncClient
) -> None:
    async with http.stream(
        "GET", VS, params={"watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": "1"}
    ) as response:
        api.send_bookmarks()
        lines = [json.loads(line) async for line in response.aiter_lines()]
    assert lines == [
        {
            "type": "BOOKMARK",
            "object": {
                "kind": "VirtualService",
                "apiVersion": "networking.istio.io/v1",
                "metadata": {"resourceVersion": str(api.state.revision)},
            },
        }
    ]


async def test_conflicts_on_create_and_on_a_stale_update(
    api: KubeApiServer, http: httpx.AsyncClient
) -> None:
    created = await http.post(VS, json=vs("a", "a"))
    assert created.status_code == 201
    assert (await http.post(VS, json=vs("a", "a"))).status_code == 409
    stale = vs("a", "b")
    stale["metadata"]["resourceVersion"] = "1"
    answer = await http.put(f"{VS}/a", json=stale)
    assert answer.status_code == 409 and answer.json()["reason"] == "Conflict"
    fresh = vs("a", "b")
    fresh["metadata"]["resourceVersion"] = created.json()["metadata"]["resourceVersion"]
    updated = (await http.put(f"{VS}/a", json=fresh)).json()
    assert updated["metadata"]["generation"] == 2
    assert (await http.get(f"{VS}/nope")).status_code == 404
    assert (await http.get("/apis/nothing.io/v1/things")).status_code == 404


async def test_status_apply_owns_fields_and_conflicts_without_force(
    api: KubeApiServer, http: httpx.AsyncClient
) -> None:
    api.create(vs("a", "a"))
    body = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService"}
    one = {**body, "metadata": {"name": "a"}, "status": {"observedGeneration": "1"}}
    no_manager = await http.patch(f"{VS}/a/status", json=one, headers=APPLY)
    assert no_manager.status_code == 400
    first = await http.patch(
        f"{VS}/a/status", params={"fieldManager": "m1"}, json=one, headers=APPLY
    )
    assert first.status_code == 200
    version = first.json()["metadata"]["resourceVersion"]
    again = await http.patch(
        f"{VS}/a/status", params={"fieldManager": "m1"}, json=one, headers=APPLY
    )
    assert again.json()["metadata"]["resourceVersion"] == version  # a no-op writes nothing
    two = {**one, "status": {"observedGeneration": "2"}}
    clash = await http.patch(
        f"{VS}/a/status", params={"fieldManager": "m2"}, json=two, headers=APPLY
    )
    assert clash.status_code == 409 and "m1" in clash.json()["message"]
    forced = await http.patch(
        f"{VS}/a/status", params={"fieldManager": "m2", "force": "true"}, json=two, headers=APPLY
    )
    assert forced.json()["status"] == {"observedGeneration": "2"}
    assert [m["manager"] for m in forced.json()["metadata"]["managedFields"]] == ["m2"]
    merge = await http.patch(
        f"{VS}/a/status", json=two, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert merge.status_code == 415


async def test_a_token_is_required_when_set(api: KubeApiServer, http: httpx.AsyncClient) -> None:
    api.token = "t"
    assert (await http.get(VS)).status_code == 401
    assert (await http.get(VS, headers={"Authorization": "Bearer t"})).status_code == 200


async def test_garbage_requests_get_a_status_not_a_crash(
    api: KubeApiServer, http: httpx.AsyncClient
) -> None:
    assert (await http.post(VS, content=b"\xff" * 100)).status_code == 400
    assert (await http.post(VS, content=b"[1, 2]")).status_code == 400
    assert (await http.post(VS, json={"metadata": {}})).status_code == 422
    assert (await http.get(VS, params={"limit": "-1"})).status_code == 400
    assert (await http.get(VS, params={"continue": "garbage!"})).status_code == 400
    assert (await http.get(VS, params={"watch": "1", "resourceVersion": "x"})).status_code == 400
    assert (await http.get(VS)).status_code == 200  # still serving
