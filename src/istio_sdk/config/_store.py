"""``ConfigStore``: an in-memory set of resources with a revision counter and watchers.

Every change (a new resource, a different one under the same key, a delete) bumps the store's
revision by one; the stored resource carries that revision as ``metadata.resourceVersion``.
Applying a resource equal to the stored one changes nothing.

Watchers never slow writers down: each has a bounded queue. When a watcher falls so far
behind that its queue is full, it is cut off: its queue is dropped and its next read raises
:class:`WatchOverflowError` (the watcher has missed events and must re-list, as a Kubernetes
watch does after "resource version too old"). Callbacks run synchronously after each change.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
from collections.abc import Callable, Iterable
from types import TracebackType

import attrs

from istio_sdk.config._resource import Resource

log = logging.getLogger("istio_sdk.config")

Key = tuple[str, str, str]
"""``(kind, namespace, name)``."""


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@attrs.frozen
class Event:
    """A change in a :class:`ConfigStore`.

    For ``DELETED`` events ``resource`` is the last stored version. ``revision`` is the store's
    revision right after the change (for events replayed when a watch starts: the revision
    the watch started at).
    """

    type: EventType
    resource: Resource
    revision: int


class WatchOverflowError(RuntimeError):
    """A watcher's queue overflowed: it missed events and must list the store again."""


class NotFoundError(KeyError):
    """No resource with this kind, namespace and name."""


def _same_content(a: Resource, b: Resource) -> bool:
    """Equal apart from the fields the store itself maintains."""

    def bare(resource: Resource) -> Resource:
        meta = attrs.evolve(resource.metadata, resource_version="", generation=0)
        return attrs.evolve(resource, metadata=meta)

    return bare(a) == bare(b)


class Watch:
    """An async iterator of :class:`Event` from one :class:`ConfigStore`.

    Use ``async for event in watch`` (or ``await watch.next()``); ``close()`` ends the
    iteration. Also an async context manager that closes on exit.
    """

    def __init__(
        self,
        store: ConfigStore,
        *,
        kinds: frozenset[str] | None,
        namespace: str | None,
        max_queue: int,
    ) -> None:
        self._store = store
        self._kinds = kinds
        self._namespace = namespace
        self._max_queue = max_queue
        self._queue: collections.deque[Event] = collections.deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._overflowed = False
        self._replayed = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Events queued and not read yet."""
        return len(self._queue)

    def matches(self, resource: Resource) -> bool:
        if self._kinds is not None and resource.key[0] not in self._kinds:
            return False
        return self._namespace is None or resource.namespace == self._namespace

    def _offer(self, event: Event) -> None:
        if self._closed or self._overflowed or not self.matches(event.resource):
            return
        if len(self._queue) >= self._max_queue + self._replayed:
            log.warning(
                "config watch fell %d events behind at revision %d; cutting it off",
                len(self._queue),
                event.revision,
            )
            self._overflowed = True
            self._queue.clear()
            self._store._detach(self)
        else:
            self._queue.append(event)
        self._wakeup.set()

    async def next(self) -> Event:
        """The next event; raises StopAsyncIteration when closed, WatchOverflowError on overflow."""
        while True:
            if self._queue:
                self._replayed = max(0, self._replayed - 1)
                return self._queue.popleft()
            if self._overflowed:
                self._overflowed = False
                self._closed = True
                raise WatchOverflowError(
                    f"watch queue exceeded {self._max_queue} events; list the store again"
                )
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    def close(self) -> None:
        """Stop watching; a pending or later read ends the iteration."""
        if not self._closed:
            self._closed = True
            self._store._detach(self)
            self._wakeup.set()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Event:
        return await self.next()

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ConfigStore:
    """In-memory Istio configuration keyed by ``(kind, namespace, name)``.

    Not thread-safe: use it from one asyncio event loop (or plain synchronous code).
    """

    DEFAULT_WATCH_QUEUE = 10_000

    def __init__(
        self, resources: Iterable[Resource] = (), *, watch_queue: int = DEFAULT_WATCH_QUEUE
    ) -> None:
        if watch_queue < 1:
            raise ValueError("watch_queue must be at least 1")
        self._items: dict[Key, Resource] = {}
        self._revision = 0
        self._watch_queue = watch_queue
        self._watches: list[Watch] = []
        self._callbacks: list[Callable[[Event], None]] = []
        for resource in resources:
            self.apply(resource)

    @property
    def revision(self) -> int:
        """Bumped by one on every change; 0 for a store that never changed."""
        return self._revision

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, kind: str, name: str, namespace: str = "") -> Resource | None:
        """The stored resource, or None."""
        return self._items.get((kind, namespace, name))

    def list(self, kind: str | None = None, namespace: str | None = None) -> list[Resource]:
        """Stored resources of ``kind`` (all kinds when None) in ``namespace`` (all when None),
        sorted by kind, namespace and name."""
        return [
            resource
            for key, resource in sorted(self._items.items())
            if (kind is None or key[0] == kind) and (namespace is None or key[1] == namespace)
        ]

    def apply(self, resource: Resource) -> Resource:
        """Create or replace the resource under its key and return the stored version.

        The stored version has ``resourceVersion`` set to the new revision and ``generation``
        1 on creation, bumped when the spec changes. Applying what is already stored (apart
        from those two fields) changes nothing and returns the stored resource.
        """
        if not resource.metadata.name:
            raise ValueError(f"cannot store a {resource.kind} without metadata.name")
        key = resource.key
        current = self._items.get(key)
        if current is not None and _same_content(current, resource):
            return current
        if current is None:
            generation = 1
        elif current.spec != resource.spec:
            generation = current.metadata.generation + 1
        else:
            generation = current.metadata.generation
        self._revision += 1
        stored = attrs.evolve(
            resource,
            metadata=attrs.evolve(
                resource.metadata,
                resource_version=str(self._revision),
                generation=generation,
            ),
        )
        self._items[key] = stored
        kind = EventType.ADDED if current is None else EventType.MODIFIED
        self._publish(Event(kind, stored, self._revision))
        return stored

    def delete(self, kind: str, name: str, namespace: str = "") -> Resource:
        """Remove a resource and return it; raises :class:`NotFoundError` when absent."""
        key = (kind, namespace, name)
        current = self._items.pop(key, None)
        if current is None:
            raise NotFoundError(f"no {kind} {namespace + '/' if namespace else ''}{name}")
        self._revision += 1
        self._publish(Event(EventType.DELETED, current, self._revision))
        return current

    def watch(
        self,
        *,
        kinds: Iterable[str] | None = None,
        namespace: str | None = None,
        replay: bool = True,
        max_queue: int | None = None,
    ) -> Watch:
        """Watch changes (optionally only some kinds / one namespace).

        With ``replay`` the watch first yields an ``ADDED`` event for every matching resource
        already stored, so "list then watch" needs no second call. ``max_queue`` overrides the
        store's per-watcher queue bound.
        """
        watch = Watch(
            self,
            kinds=None if kinds is None else frozenset(kinds),
            namespace=namespace,
            max_queue=max_queue or self._watch_queue,
        )
        if replay:  # the snapshot is queued whole: only later events count against the bound
            for resource in self.list(namespace=namespace):
                if watch.matches(resource):
                    watch._queue.append(Event(EventType.ADDED, resource, self._revision))
                    watch._replayed += 1
        self._watches.append(watch)
        return watch

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` after every change; returns a function that unsubscribes.

        An exception from a callback is logged and does not stop the change or other callbacks.
        """
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def _detach(self, watch: Watch) -> None:
        if watch in self._watches:
            self._watches.remove(watch)

    def _publish(self, event: Event) -> None:
        for watch in list(self._watches):
            watch._offer(event)
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:
                log.exception("config store callback %r failed on %s", callback, event.type.value)
