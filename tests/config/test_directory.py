"""DirectorySource: a folder of YAML/JSON files followed into a ConfigStore."""

from __future__ import annotations

import asyncio
import json
import pathlib

import pytest

from istio_sdk.config import ConfigStore, DirectorySource, EventType, Problem


def vs_yaml(name: str, host: str, weight: int = 100) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: shop}}
spec:
  hosts: [{host}]
  http:
  - route:
    - destination: {{host: {host}}}
      weight: {weight}
"""


def names(store: ConfigStore) -> list[str]:
    return [r.name for r in store.list()]


def test_loads_recursively_follows_changes_and_deletes(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.yaml").write_text(vs_yaml("a", "reviews"))
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    (tmp_path / "nested" / "deeper" / "b.yml").write_text(vs_yaml("b", "ratings"))
    (tmp_path / "nested" / "c.json").write_text(
        json.dumps(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "Gateway",
                "metadata": {"name": "c", "namespace": "shop"},
                "spec": {"selector": {"istio": "ingressgateway"}},
            }
        )
    )
    (tmp_path / "notes.txt").write_text("not config")
    (tmp_path / ".hidden.yaml").write_text("this: is: ignored")
    store = ConfigStore()
    source = DirectorySource(store, tmp_path)

    result = source.sync()
    assert result.applied == 3
    assert sorted(names(store)) == ["a", "b", "c"]
    assert source.sync().applied == 0  # nothing changed

    (tmp_path / "a.yaml").write_text(
        vs_yaml("a", "reviews", weight=50) + "---\n" + vs_yaml("d", "x")
    )
    result = source.sync()
    assert result.applied == 2
    stored = store.get("VirtualService", "a", "shop")
    assert stored is not None
    assert stored.spec.http[0].route[0].weight == 50

    (tmp_path / "a.yaml").write_text(vs_yaml("a", "reviews", weight=50))  # d removed from file
    assert source.sync().deleted == 1
    assert store.get("VirtualService", "d", "shop") is None

    (tmp_path / "nested" / "deeper" / "b.yml").unlink()
    assert source.sync().deleted == 1
    assert sorted(names(store)) == ["a", "c"]


def test_a_broken_file_keeps_its_previous_resources(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(vs_yaml("a", "reviews", weight=70))
    reported: list[tuple[str, list[Problem]]] = []
    store = ConfigStore()
    source = DirectorySource(store, tmp_path, on_error=lambda f, p: reported.append((f, p)))
    source.sync()
    revision = store.revision

    path.write_text(vs_yaml("a", "reviews", weight=70).replace("weight:", "wieght:"))
    result = source.sync()
    assert result.failed_files == (str(path),)
    assert store.revision == revision
    stored = store.get("VirtualService", "a", "shop")
    assert stored is not None and stored.spec.http[0].route[0].weight == 70
    assert len(reported) == 1
    assert reported[0][0] == str(path)
    assert "wieght" in str(reported[0][1][0])
    assert str(path) in source.errors

    source.sync()  # the same broken content is reported once, not on every scan
    assert len(reported) == 1

    path.write_text("kind: VirtualService\n  indented: wrongly\n")  # broken YAML
    source.sync()
    assert store.get("VirtualService", "a", "shop") is not None
    assert source.errors[str(path)][0].line == 2

    path.write_text(vs_yaml("a", "reviews", weight=30))  # fixed
    source.sync()
    stored = store.get("VirtualService", "a", "shop")
    assert stored is not None and stored.spec.http[0].route[0].weight == 30
    assert source.errors == {}


def test_missing_required_fields_reject_the_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "dr.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: dr, namespace: shop}\nspec:\n  subsets: [{name: v1}]\n"
    )
    store = ConfigStore()
    source = DirectorySource(store, tmp_path)
    source.sync()
    assert len(store) == 0
    [problem] = source.errors[str(tmp_path / "dr.yaml")]
    assert problem.path == "spec.host"
    assert problem.message == "missing required field"


def test_a_key_defined_in_two_files_belongs_to_the_first(tmp_path: pathlib.Path) -> None:
    (tmp_path / "1.yaml").write_text(vs_yaml("a", "reviews"))
    (tmp_path / "2.yaml").write_text(vs_yaml("a", "ratings"))
    store = ConfigStore()
    source = DirectorySource(store, tmp_path)
    source.sync()
    stored = store.get("VirtualService", "a", "shop")
    assert stored is not None and stored.spec.hosts == ["reviews"]
    assert "also defined in" in source.errors[str(tmp_path / "2.yaml")][0].message
    (tmp_path / "1.yaml").unlink()
    source.sync()  # the first file is gone: the second one now loads
    stored = store.get("VirtualService", "a", "shop")
    assert stored is not None and stored.spec.hosts == ["ratings"]


async def test_polling_task_follows_changes(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.yaml").write_text(vs_yaml("a", "reviews"))
    store = ConfigStore()
    async with DirectorySource(store, tmp_path, interval=0.02):
        assert names(store) == ["a"]  # loaded before start() returns
        watch = store.watch(replay=False)
        (tmp_path / "b.yaml").write_text(vs_yaml("b", "ratings"))
        event = await asyncio.wait_for(watch.next(), timeout=10)
        assert (event.type, event.resource.name) == (EventType.ADDED, "b")
        (tmp_path / "a.yaml").unlink()
        event = await asyncio.wait_for(watch.next(), timeout=10)
        assert (event.type, event.resource.name) == (EventType.DELETED, "a")


def test_missing_folder_and_bad_interval(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        DirectorySource(ConfigStore(), tmp_path / "nope").sync()
    with pytest.raises(ValueError, match="interval"):
        DirectorySource(ConfigStore(), tmp_path, interval=0)


def test_a_failing_error_callback_does_not_stop_the_scan(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "bad.yaml").write_text("kind: [\n")
    (tmp_path / "good.yaml").write_text(vs_yaml("a", "reviews"))

    def explode(name: str, problems: list[Problem]) -> None:
        raise RuntimeError("callback bug")

    store = ConfigStore()
    result = DirectorySource(store, tmp_path, on_error=explode).sync()
    assert result.failed_files == (str(tmp_path / "bad.yaml"),)
    assert names(store) == ["a"]
    assert "on_error callback failed" in caplog.text
