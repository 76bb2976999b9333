"""DirectorySource: a folder of YAML/JSON files followed into a ConfigStore."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pathlib
import shutil
from collections.abc import Callable

import pytest

from istio_sdk.config import ConfigError, ConfigStore, DirectorySource, EventType, Problem


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
                "spec": {
                    "selector": {"istio": "ingressgateway"},
                    "servers": [
                        {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
                    ],
                },
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
    problems = source.errors[str(tmp_path / "dr.yaml")]
    assert [(p.path, p.message) for p in problems] == [
        ("spec.host", "missing required field"),
        ("spec.host", "empty domain name not allowed"),  # Istio's rule for the same field
    ]


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


# -- following a folder: inotify, polling, hostile files, symlink swaps -------------------------

WAIT = 20.0  # bound on waiting for an event; never asserted on


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def weight_of(store: ConfigStore, name: str = "a") -> int | None:
    stored = store.get("VirtualService", name, "shop")
    return None if stored is None else int(stored.spec.http[0].route[0].weight)


def alias_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def write_oversized(path: pathlib.Path) -> None:
    with path.open("r+b") as file:  # sparse: 9 MiB long, nothing written
        file.truncate(9 * 1024 * 1024)


HOSTILE: dict[str, Callable[[pathlib.Path], object]] = {
    "json-2000-deep": lambda p: p.write_text("[" * 2000 + "]" * 2000),
    "json-5000-digit-int": lambda p: p.write_text('{"apiVersion": ' + "9" * 5000 + "}"),
    "yaml-alias-bomb": lambda p: p.write_text(alias_bomb()),
    "over-8-MiB": write_oversized,
    "invalid-utf8": lambda p: p.write_bytes(b"kind: VirtualService\nmetadata: {name: caf\xe9}\n"),
    "garbage-bytes": lambda p: p.write_bytes(bytes(range(256)) * 16),
    "nan": lambda p: p.write_text('{"apiVersion": NaN}'),
    "unforeseen-exception": lambda p: p.write_text("# BOOM\n" + vs_yaml("a", "reviews", 1)),
}


@pytest.fixture
def boom(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make validation crash (as a bug would) on any text that contains BOOM."""
    import istio_sdk.config._directory as directory

    real = directory.validate_text

    def crashing(text: str, *args: object, **kwargs: object) -> object:
        if "BOOM" in text:
            raise RecursionError("maximum recursion depth exceeded")
        return real(text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(directory, "validate_text", crashing)


@pytest.mark.usefixtures("boom")
@pytest.mark.parametrize("watch", [True, False], ids=["inotify", "polling"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_a_hostile_file_is_reported_and_the_last_good_config_stays(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, case: str, watch: bool
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(vs_yaml("a", "reviews", weight=70))
    reported: list[str] = []
    store = ConfigStore()
    # With inotify the poll interval is an hour: only notifications can drive these updates.
    interval = 3600 if watch else 0.05
    source = DirectorySource(
        store, tmp_path, interval=interval, watch=watch, on_error=lambda f, p: reported.append(f)
    )
    async with source:
        assert source.watching == ("inotify" if watch else "polling")
        assert weight_of(store) == 70
        HOSTILE[case](path)
        await until(lambda: reported == [str(path)], "the bad file to be reported")
        assert weight_of(store) == 70  # the last good config stays
        assert list(source.errors) == [str(path)]
        [record] = [r for r in caplog.records if str(path) in r.getMessage()]
        assert record.levelname == "WARNING" and "\n" not in record.getMessage()
        assert record.exc_info is None
        path.write_text(vs_yaml("a", "reviews", weight=30))  # a later good edit is applied
        await until(lambda: weight_of(store) == 30, "the good edit to be applied")
        assert source.errors == {}
        assert source.watching == ("inotify" if watch else "polling")


async def test_parsing_a_big_file_does_not_block_the_event_loop(tmp_path: pathlib.Path) -> None:
    annotations = "\n".join(f"    k{i}: value-{i}" for i in range(20_000))
    (tmp_path / "big.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        f"metadata:\n  name: big\n  namespace: shop\n  annotations:\n{annotations}\n"
        "spec: {hosts: [a.example.com], resolution: DNS,"
        " ports: [{number: 443, name: https, protocol: TLS}]}\n"
    )
    store = ConfigStore()
    source = DirectorySource(store, tmp_path)
    ticks = 0
    scanning = True

    async def ticker() -> None:
        nonlocal ticks
        while scanning:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    ticks = 0
    await source.refresh()  # about half a second of parsing and validation
    scanning = False
    await task
    assert len(store) == 1
    assert ticks >= 5  # on the loop, the parse would have let the ticker run zero times


def configmap_version(root: pathlib.Path, stamp: str, files: dict[str, str]) -> None:
    """Write a kubelet ConfigMap volume version and swap ``..data`` onto it atomically."""
    version = root / f"..2026_12_03_{stamp}"
    version.mkdir()
    old = 1_600_000_000_000_000_000  # old mtimes: only the swap itself says what changed
    for name, text in files.items():
        (version / name).write_text(text)
        os.utime(version / name, ns=(old, old))
        link = root / name
        if not link.is_symlink():
            link.symlink_to(pathlib.Path("..data") / name)
            os.utime(link, ns=(old, old), follow_symlinks=False)
    tmp_link = root / "..data_tmp"
    tmp_link.symlink_to(version.name)
    previous = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    os.rename(tmp_link, root / "..data")
    if previous is not None:
        shutil.rmtree(root / previous)


@pytest.mark.parametrize("watch", [True, False], ids=["inotify", "polling"])
async def test_a_configmap_symlink_swap_is_seen(tmp_path: pathlib.Path, watch: bool) -> None:
    configmap_version(tmp_path, "10_00_00.000000001", {"routes.yaml": vs_yaml("a", "r", 70)})
    assert (tmp_path / "routes.yaml").read_text() == vs_yaml("a", "r", 70)
    store = ConfigStore()
    interval = 3600 if watch else 0.05
    async with DirectorySource(store, tmp_path, interval=interval, watch=watch) as source:
        assert weight_of(store) == 70
        assert store.list() == store.list(kind="VirtualService")  # ..data is not read twice
        configmap_version(tmp_path, "10_01_00.000000002", {"routes.yaml": vs_yaml("a", "r", 40)})
        await until(lambda: weight_of(store) == 40, "the swapped version to be loaded")
        configmap_version(tmp_path, "10_02_00.000000003", {"routes.yaml": vs_yaml("a", "r", 10)})
        await until(lambda: weight_of(store) == 10, "the second swap to be loaded")
        assert source.errors == {}


async def test_polling_takes_over_when_inotify_fails(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import istio_sdk.config._directory as directory

    def no_inotify(*args: object, **kwargs: object) -> object:
        raise OSError("OS file watch limit reached")

    monkeypatch.setattr(directory, "awatch", no_inotify)
    (tmp_path / "a.yaml").write_text(vs_yaml("a", "reviews", weight=70))
    store = ConfigStore()
    async with DirectorySource(store, tmp_path, interval=0.05) as source:
        await until(lambda: source.watching == "polling", "the fallback")
        assert "polling it every 0.05s instead" in caplog.text
        assert "OS file watch limit reached" in caplog.text
        (tmp_path / "a.yaml").write_text(vs_yaml("a", "reviews", weight=20))
        await until(lambda: weight_of(store) == 20, "the edit to be polled")


def test_files_whose_stat_is_unchanged_are_not_read_again(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="istio_sdk.config")
    path = tmp_path / "a.yaml"
    old = 1_600_000_000_000_000_000  # an mtime long past: the stat can be trusted
    path.write_text(vs_yaml("a", "reviews", weight=70))
    os.utime(path, ns=(old, old))
    store = ConfigStore()
    source = DirectorySource(store, tmp_path)
    source.sync()
    assert f"reading {path}" in caplog.text
    caplog.clear()
    for _ in range(3):
        source.sync()
    assert "reading" not in caplog.text
    path.write_text(vs_yaml("a", "reviews", weight=30))  # same size, same mtime, new ctime
    os.utime(path, ns=(old, old))
    source.sync()
    assert f"reading {path}" in caplog.text
    assert weight_of(store) == 30


async def test_a_failing_scan_is_reported_and_following_goes_on(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "a.yaml").write_text(vs_yaml("a", "reviews", weight=70))
    reported: list[str] = []
    store = ConfigStore()
    source = DirectorySource(
        store, folder, interval=0.05, watch=False, on_error=lambda f, p: reported.append(f)
    )
    async with source:
        folder.rename(tmp_path / "away")
        await until(lambda: str(folder) in source.errors, "the scan failure to be reported")
        assert "does not exist" in source.errors[str(folder)][0].message
        assert reported == [str(folder)]  # once, not on every poll
        assert weight_of(store) == 70
        await asyncio.sleep(0.2)
        assert reported == [str(folder)]
        (tmp_path / "away").rename(folder)
        (folder / "a.yaml").write_text(vs_yaml("a", "reviews", weight=5))
        await until(lambda: weight_of(store) == 5, "following to resume")
        assert source.errors == {}


async def test_a_strict_start_raises_the_first_problem_without_logging_it(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a.yaml").write_text(vs_yaml("a", "reviews"))
    (tmp_path / "b.json").write_text("[" * 2000 + "]" * 2000)
    store = ConfigStore()
    source = DirectorySource(store, tmp_path)
    with pytest.raises(ConfigError, match=r"b\.json\[0\]: document is nested deeper") as info:
        await source.start(strict=True)
    assert info.value.problem.source == str(tmp_path / "b.json")
    assert len(store) == 1  # what loaded is in the store; the caller decides what to do
    assert source.watching == "stopped"
    assert "rejected" not in caplog.text


def test_problems_reach_the_log_as_few_bounded_lines(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    many = tmp_path / "many.yaml"
    many.write_text("".join(f"---\nkind: Frobnicator{i}\n" for i in range(50)))
    huge = tmp_path / "huge.yaml"
    key = "k\n" * 500_000  # a 1 MB key with newlines, which a log line must not carry raw
    huge.write_text(vs_yaml("a", "reviews").replace("spec:", f"spec:\n  {json.dumps(key)}: 1"))
    source = DirectorySource(ConfigStore(), tmp_path)
    source.sync()
    assert len(source.errors[str(many)]) == 50  # every problem is kept
    lines = [r.getMessage() for r in caplog.records]
    assert sum(str(many) in line for line in lines) == 21  # 20 problems, then a count
    assert any(f"{many} has 30 more problems" in line for line in lines)
    [huge_line] = [line for line in lines if str(huge) in line]
    assert len(huge_line) < 1200 and "\n" not in huge_line
