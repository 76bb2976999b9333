"""``KubernetesSource``: keep a :class:`ConfigStore` in step with a Kubernetes API server.

For every kind it follows (by default each current Istio kind and every Kubernetes kind of
:data:`~istio_sdk.config.KUBERNETES_KINDS`) the source does what client-go's reflector does:
list (paged), then watch from the list's resourceVersion with ``allowWatchBookmarks``, and
keep the last resourceVersion seen (an event's or a BOOKMARK's). A watch that ends or breaks
resumes from that version; a 410 Gone (an ERROR event or the HTTP status) lists again and
replaces what the kind held; any other failure (connection refused, a 500, a malformed event)
is reported and retried after an exponential backoff with jitter (:mod:`istio_sdk._backoff`).

Bodies are decoded and validated in a worker thread, under
:class:`~istio_sdk.config.LoadLimits`; only the store update runs on the event loop. An object
that does not validate is reported (:attr:`KubernetesSource.errors`, ``on_error``, the log) with
the reason and does not replace the last good version in the store. ``namespace`` and
``label_selector`` narrow what is listed and watched.

Several sources can feed one store: a key another source holds stays with it; this source
reports the clash and takes the key when the other source deletes it. It deletes only what it
stored itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import attrs
import httpx

from istio_sdk._backoff import backoff_delay, check_backoff
from istio_sdk.config._directory import _log_line
from istio_sdk.config._errors import ConfigError, Problem
from istio_sdk.config._kinds import KINDS, KUBERNETES_KINDS, KindInfo
from istio_sdk.config._kube_client import http_client, kind_path, kube_config
from istio_sdk.config._limits import DEFAULT_LIMITS, LoadLimits
from istio_sdk.config._resource import Resource, resource_from_json
from istio_sdk.config._store import ConfigStore, Event, EventType, Key
from istio_sdk.config._validate import _problems_of
from istio_sdk.config._yaml import JsonValue, parse_json

__all__ = ["DEFAULT_KINDS", "KubernetesSource", "Observed"]

log = logging.getLogger("istio_sdk.config.kubernetes")

DEFAULT_KINDS: tuple[KindInfo, ...] = (
    *(k for k in KINDS if not k.legacy),
    *KUBERNETES_KINDS,
)
"""What a :class:`KubernetesSource` follows unless told otherwise."""

_PAGE = 500
_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})


class _Gone(Exception):
    """410: the version is too old; list again."""


class _Failure(Exception):
    """A failed request or a broken stream: report it and retry after a backoff."""


@attrs.frozen
class Observed:
    """An object as the API server holds it, and whether it validated."""

    info: KindInfo
    namespace: str
    name: str
    generation: int
    status: JsonValue
    problems: tuple[Problem, ...]


@attrs.frozen
class _Decoded:
    key: Key
    version: str
    resource: Resource | None
    observed: Observed


@attrs.frozen
class _Line:
    type: str
    version: str
    decoded: _Decoded | None = None
    status: JsonValue = None


def _key_of(info: KindInfo, value: dict[str, Any]) -> Key:
    meta = value.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    return (
        info.store_kind,
        namespace if isinstance(namespace, str) else "",
        name if isinstance(name, str) else "",
    )


def decode_object(info: KindInfo, value: JsonValue, source: str) -> _Decoded:
    """One object from the API as a resource and its problems (blocking: worker thread)."""
    if not isinstance(value, dict) or not isinstance(value.get("metadata"), dict):
        raise _Failure(f"{source}: an object without metadata")
    value = dict(value)
    value.setdefault("apiVersion", info.api_version)
    value.setdefault("kind", info.kind)
    meta: dict[str, Any] = dict(value["metadata"])  # type: ignore[arg-type]
    meta.pop("managedFields", None)  # who wrote which field: noise for the mesh
    value["metadata"] = meta
    key = _key_of(info, value)
    version = meta.get("resourceVersion")
    if not isinstance(version, str) or not key[2]:
        raise _Failure(f"{source}: an object without metadata.name or resourceVersion")
    where = f"{source} {key[1] + '/' if key[1] else ''}{key[2]}"
    resource: Resource | None = None
    problems: list[Problem] = []
    try:
        resource = resource_from_json(value, source=where, index=None)
        written = value if resource.kubernetes else value.get("spec")
        problems = list(_problems_of(resource, source=where, index=None, spec_json=written))
    except ConfigError as exc:
        problems = [exc.problem]
    except Exception as exc:  # an input nobody foresaw: report it, never die
        problems = [Problem(message=f"cannot load: {type(exc).__name__}: {exc}", source=where)]
    generation = meta.get("generation")
    observed = Observed(
        info=info,
        namespace=key[1],
        name=key[2],
        generation=generation if isinstance(generation, int) else 0,
        status=value.get("status"),
        problems=tuple(problems),
    )
    # Warnings (Istio's) do not keep an object out: only errors do, as for files.
    usable = resource is not None and not any(p.is_error for p in problems)
    return _Decoded(key, version, resource if usable else None, observed)


def decode_list(
    info: KindInfo, body: str, source: str, limits: LoadLimits
) -> tuple[str, str, list[_Decoded]]:
    """A List response: its resourceVersion, continue token and decoded items."""
    try:
        (document,) = parse_json(body, source, limits)
    except ConfigError as exc:
        raise _Failure(f"{source}: unreadable list: {exc}") from exc
    value = document.value
    if not isinstance(value, dict) or not isinstance(value.get("items"), list):
        raise _Failure(f"{source}: the response is not a List")
    meta = value.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    version, token = meta.get("resourceVersion", ""), meta.get("continue", "")
    if not isinstance(version, str) or not isinstance(token, str):
        raise _Failure(f"{source}: the List has no resourceVersion")
    items = value["items"]
    assert isinstance(items, list)
    return version, token, [decode_object(info, item, source) for item in items]


def decode_line(info: KindInfo, line: str, source: str, limits: LoadLimits) -> _Line:
    """One watch event line (blocking: worker thread). Raises ``_Failure`` when malformed."""
    try:
        (document,) = parse_json(line, source, limits)
    except ConfigError as exc:
        raise _Failure(f"{source}: malformed watch event: {exc}") from exc
    event = document.value
    if not isinstance(event, dict) or event.get("type") not in _EVENT_TYPES:
        raise _Failure(f"{source}: malformed watch event (no known type)")
    kind, obj = event["type"], event.get("object")
    if not isinstance(obj, dict):
        raise _Failure(f"{source}: malformed {kind} event (no object)")
    assert isinstance(kind, str)
    if kind == "ERROR":
        return _Line(kind, "", status=obj)
    meta = obj.get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    if not isinstance(version, str) or not version:
        raise _Failure(f"{source}: malformed {kind} event (no resourceVersion)")
    if kind == "BOOKMARK":
        return _Line(kind, version)
    return _Line(kind, version, decode_object(info, obj, source))


def _status_failure(code: int, body: str, source: str) -> Exception:
    message = body.strip()[:300]
    if code == 410:
        return _Gone(f"{source}: 410 Gone: {message}")
    return _Failure(f"{source}: HTTP {code}: {message}")


class KubernetesSource:
    """Load the objects of an API server into ``store`` and follow their changes.

    Credentials: ``kubeconfig`` (a file; ``context`` picks one of its contexts), or
    ``in_cluster=True`` (the Pod's service account), or a ready ``client`` (an
    ``httpx.AsyncClient`` with the server as ``base_url``). ``kinds`` (default
    :data:`DEFAULT_KINDS`) are followed, in ``namespace`` only when given, matching
    ``label_selector`` when given. ``on_error(object, problems)`` is called for each new
    problem state of an object (or of a kind's list or watch).
    """

    def __init__(
        self,
        store: ConfigStore,
        *,
        kubeconfig: str | os.PathLike[str] | None = None,
        in_cluster: bool = False,
        context: str | None = None,
        client: httpx.AsyncClient | None = None,
        kinds: Iterable[KindInfo] | None = None,
        namespace: str | None = None,
        label_selector: str | None = None,
        limits: LoadLimits | None = None,
        on_error: Callable[[str, list[Problem]], None] | None = None,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        watch_timeout: int = 300,
    ) -> None:
        check_backoff(backoff_initial, backoff_max, 0.5)
        self.store = store
        self.config: object | None = None
        if client is None:
            self.config = kube_config(kubeconfig, in_cluster=in_cluster, context=context)
            client = http_client(self.config)
        self.client = client
        self.kinds = tuple(DEFAULT_KINDS if kinds is None else kinds)
        self.namespace = namespace
        self.label_selector = label_selector
        self.limits = DEFAULT_LIMITS if limits is None else limits
        self.on_error = on_error
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.watch_timeout = watch_timeout
        self.errors: dict[str, list[Problem]] = {}
        """Current problems by object (``KIND NS/NAME``) or by kind for a failed list/watch."""
        self.resource_versions: dict[str, str] = {}
        """The last resourceVersion seen per kind (``store_kind``), where watches resume."""
        self.observed: dict[Key, Observed] = {}
        """Every object the API server holds, valid or not (status writers read this)."""
        self.relists = 0
        """How many times a kind was listed again after a 410 Gone."""
        self._listeners: list[Callable[[Key, Observed | None], None]] = []
        self._mine: dict[Key, Resource] = {}
        self._kind_keys: dict[str, set[Key]] = {}
        self._blocked: dict[Key, Resource] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._synced: dict[str, asyncio.Event] = {}

    # -- reporting -------------------------------------------------------------------------
    def on_observed(self, listener: Callable[[Key, Observed | None], None]) -> None:
        """Call ``listener(key, observed)`` when an object changes (None: it was deleted)."""
        self._listeners.append(listener)

    def _report(self, name: str, problems: list[Problem]) -> None:
        if [str(p) for p in self.errors.get(name, [])] == [str(p) for p in problems]:
            return
        self.errors[name] = problems
        what = (
            "kubernetes list/watch failed, retrying"
            if name.endswith(_KIND_SUFFIX)
            else "kubernetes config rejected, keeping the last good version"
        )
        for problem in problems[:20]:
            log.warning("%s: %s", what, _log_line(problem))  # one bounded line each
        if self.on_error is not None:
            try:
                self.on_error(name, problems)
            except Exception:  # a broken callback must not stop following the API
                log.exception("KubernetesSource on_error callback failed for %s", name)

    def _clear(self, name: str) -> None:
        if self.errors.pop(name, None) is not None:
            log.info("kubernetes config %s is good again", name)

    # -- store updates (event loop) --------------------------------------------------------
    def _observe(self, key: Key, observed: Observed | None) -> None:
        if observed is None:
            self.observed.pop(key, None)
        else:
            self.observed[key] = observed
        for listener in list(self._listeners):
            try:
                listener(key, observed)
            except Exception:
                log.exception("KubernetesSource listener failed for %s", key)

    def _upsert(self, decoded: _Decoded) -> None:
        key, name = decoded.key, _name(decoded.key)
        self._kind_keys.setdefault(key[0], set()).add(key)
        self._observe(key, decoded.observed)
        if decoded.resource is None:
            self._report(name, list(decoded.observed.problems))
            return
        self._clear(name)
        self._put(key, decoded.resource)

    def _put(self, key: Key, resource: Resource) -> None:
        current = self.store.get(key[0], key[2], key[1])
        if current is not None and current is not self._mine.get(key):
            self._mine.pop(key, None)
            self._blocked[key] = resource
            self._report(
                _name(key),
                [Problem(message="held by another source of the store", source="kubernetes")],
            )
            return
        self._blocked.pop(key, None)
        self._mine[key] = self.store.apply(resource)

    def _remove(self, key: Key) -> None:
        self._kind_keys.get(key[0], set()).discard(key)
        self._blocked.pop(key, None)
        self._clear(_name(key))
        self._observe(key, None)
        mine = self._mine.pop(key, None)
        if mine is not None and self.store.get(key[0], key[2], key[1]) is mine:
            self.store.delete(key[0], key[2], key[1])

    def _replace_kind(self, info: KindInfo, items: list[_Decoded]) -> None:
        listed = {d.key for d in items}
        for key in sorted(self._kind_keys.get(info.store_kind, set()) - listed):
            self._remove(key)
        for decoded in items:
            self._upsert(decoded)

    def _store_changed(self, event: Event) -> None:
        if event.type is EventType.DELETED:
            key = event.resource.key
            waiting = self._blocked.pop(key, None)
            if waiting is not None:
                self._put(key, waiting)
                if key in self._mine:
                    self._clear(_name(key))

    # -- the API ---------------------------------------------------------------------------
    def _params(self) -> dict[str, str]:
        return {"labelSelector": self.label_selector} if self.label_selector else {}

    async def _list(self, info: KindInfo) -> str:
        """List the kind (all pages) and replace what it holds; returns the resourceVersion."""
        path = kind_path(info, self.namespace)
        items: list[_Decoded] = []
        token, version = "", ""
        while True:
            params = {**self._params(), "limit": str(_PAGE)}
            if token:
                params["continue"] = token
            try:
                response = await self.client.get(path, params=params)
            except httpx.HTTPError as exc:
                raise _Failure(f"{path}: {type(exc).__name__}: {exc}") from exc
            if response.status_code != 200:
                raise _status_failure(response.status_code, response.text, path)
            version, token, page = await asyncio.to_thread(
                decode_list, info, response.text, path, self.limits
            )
            items.extend(page)
            if not token:
                break
        self._replace_kind(info, items)
        self.resource_versions[info.store_kind] = version
        return version

    async def _watch(self, info: KindInfo, version: str) -> bool:
        """Watch from ``version`` until the stream ends; True when it delivered anything."""
        path = kind_path(info, self.namespace)
        timeout = self.watch_timeout + random.randint(0, self.watch_timeout)
        params = {
            **self._params(),
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout),
        }
        delivered = False
        stream_timeout = httpx.Timeout(10.0, read=timeout + 30.0)
        try:
            async with self.client.stream(
                "GET", path, params=params, timeout=stream_timeout
            ) as response:
                if response.status_code != 200:
                    body = (await response.aread()).decode("utf-8", "replace")
                    raise _status_failure(response.status_code, body, path)
                self._clear(_kind_name(info))
                async for text in response.aiter_lines():
                    if not text.strip():
                        continue
                    line = await asyncio.to_thread(decode_line, info, text, path, self.limits)
                    self._apply_line(info, line, path)
                    delivered = True
        except httpx.HTTPError as exc:
            raise _Failure(f"{path}: watch broke: {type(exc).__name__}: {exc}") from exc
        return delivered

    def _apply_line(self, info: KindInfo, line: _Line, path: str) -> None:
        if line.type == "ERROR":
            status = line.status if isinstance(line.status, dict) else {}
            code = status.get("code")
            message = status.get("message", "")
            if code == 410:
                raise _Gone(f"{path}: watch: 410 Gone: {message}")
            raise _Failure(f"{path}: watch ERROR event: {code} {message}")
        if line.decoded is not None:
            if line.type == "DELETED":
                self._remove(line.decoded.key)
            else:
                self._upsert(line.decoded)
        self.resource_versions[info.store_kind] = line.version

    async def _follow(self, info: KindInfo, version: str | None) -> None:
        attempt = 0
        name = _kind_name(info)
        while True:
            try:
                if version is None:
                    version = await self._list(info)
                    self._synced.setdefault(info.store_kind, asyncio.Event()).set()
                    self._clear(name)
                delivered = await self._watch(info, version)
                version = self.resource_versions.get(info.store_kind, version)
                if delivered:  # the server ended the watch (timeoutSeconds): resume at once
                    attempt = 0
                    self._clear(name)
                    continue
            except _Gone as exc:
                log.info("%s; listing %s again", exc, info.kind)
                self.relists += 1
                listing, version = version is None, None
                if not listing:  # a watch too old: list at once; a list refused: back off
                    continue
            except _Failure as exc:
                self._report(name, [Problem(message=str(exc), source="kubernetes")])
                version = self.resource_versions.get(info.store_kind, version)
            delay = backoff_delay(attempt, self.backoff_initial, self.backoff_max)
            attempt += 1
            await asyncio.sleep(delay)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, *, strict: bool = False) -> None:
        """List every kind once, then follow each with a watch.

        A kind whose first list fails is reported and retried in the background. With
        ``strict`` the first problem (an invalid object, or a list that failed) raises
        :class:`~istio_sdk.config.ConfigError` and the source does not start.
        """
        if self._tasks:
            return
        self._unsubscribe = self.store.subscribe(self._store_changed)
        firsts = await asyncio.gather(
            *(self._first_list(info) for info in self.kinds), return_exceptions=False
        )
        if strict and self.errors:
            first = min(self.errors)
            await self.stop()
            raise ConfigError(self.errors[first][0])
        loop = asyncio.get_running_loop()
        for info, version in zip(self.kinds, firsts, strict=True):
            self._tasks.append(loop.create_task(self._follow(info, version)))

    async def _first_list(self, info: KindInfo) -> str | None:
        try:
            version = await self._list(info)
        except (_Gone, _Failure) as exc:
            self._report(_kind_name(info), [Problem(message=str(exc), source="kubernetes")])
            return None
        self._synced.setdefault(info.store_kind, asyncio.Event()).set()
        return version

    @property
    def synced(self) -> bool:
        """Every kind has been listed at least once."""
        return all(
            self._synced.get(info.store_kind, asyncio.Event()).is_set() for info in self.kinds
        )

    async def stop(self) -> None:
        """Stop following the API server (the store keeps what it holds)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def aclose(self) -> None:
        """Stop and close the HTTP client."""
        await self.stop()
        await self.client.aclose()

    async def __aenter__(self) -> KubernetesSource:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


_KIND_SUFFIX = " (list/watch)"


def _kind_name(info: KindInfo) -> str:
    return f"{info.kind}.{info.group or 'core'}{_KIND_SUFFIX}"


def _name(key: Key) -> str:
    return f"{key[0]} {key[1] + '/' if key[1] else ''}{key[2]}"
